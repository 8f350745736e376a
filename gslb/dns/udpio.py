"""How UDP datagrams reach the answerer: in batches through the compiled extension, or one by one.

`batched`: gslb/dns/_udpbatch.c, an optional C extension (built by `pip install .` where a
compiler and recvmmsg/sendmmsg exist: Linux, FreeBSD). A `BatchedUdpReader` registers the socket
with `loop.add_reader`; each wakeup drains up to MAX_BATCHES batches of BATCH datagrams with
recvmmsg, calls the answerer's `respond_udp(data, source)` per datagram (Python, as on the other
path) and sends the batch's replies, in order, with one sendmmsg. Two syscalls per batch instead
of two per datagram: the socket and event-loop path was most of a static answer's cost.
`per-datagram`: the pure-Python fallback, asyncio's datagram transport (UdpListener in
gslb/dns/server.py), one recvfrom and one sendto per query.

The mode is chosen once, at start: the server config's `udp_io:`, else $GSLB_UDP_IO, else
`batched` when the extension is importable. `describe()` is the start-up line's words.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

try:
    from gslb.dns import _udpbatch
except ImportError:  # not built here: no compiler at install time, or not Linux/FreeBSD
    _udpbatch = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

ENV = "GSLB_UDP_IO"
BATCHED, PER_DATAGRAM, AUTO = "batched", "per-datagram", "auto"
MODES = (BATCHED, PER_DATAGRAM)
# Datagrams per wakeup at most (MAX_BATCHES x BATCH = 256): then the event loop runs its timers,
# the probes and the API before coming back to a socket that is still readable.
MAX_BATCHES = 4
# Bytes per datagram slot. A larger datagram is no DNS query gslb answers (queries carry one
# question and a few options): it is dropped and counted as truncated.
SLOT = 4096
Limit = Callable[[bytes, str], "bytes | None"]


def available() -> bool:
    return _udpbatch is not None


def parse(value: object, where: str) -> str:
    """A mode as written in the config or the environment: batched, per-datagram or auto."""
    if not isinstance(value, str) or value.strip().lower() not in (*MODES, AUTO):
        raise ValueError(f"{where} must be batched, per-datagram or auto, got {value!r}")
    return value.strip().lower()


def choose(requested: str | None = None) -> str:
    """The mode to run: `requested` (the config's udp_io) unless auto or None, else $GSLB_UDP_IO,
    else batched when the extension is built. Asking for batched without it is an error."""
    mode = parse(requested, "udp_io") if requested is not None else AUTO
    if mode == AUTO and os.environ.get(ENV):
        mode = parse(os.environ[ENV], f"the environment variable {ENV}")
    if mode == AUTO:
        return BATCHED if available() else PER_DATAGRAM
    if mode == BATCHED and not available():
        raise ValueError("batched UDP I/O needs the compiled extension gslb.dns._udpbatch, which is not built "
                         "here (reinstall gslb with a C compiler: pip install .); use per-datagram or auto")
    return mode


def describe(mode: str) -> str:
    """`batched (recvmmsg)` or `per-datagram`, and why when the extension is missing."""
    if mode == BATCHED:
        return "batched (recvmmsg)"
    return PER_DATAGRAM if available() else f"{PER_DATAGRAM} (gslb.dns._udpbatch is not built)"


class Responder(Protocol):
    def respond_udp(self, packet: bytes, source: str) -> bytes | None: ...


class HasAnswerer(Protocol):
    answerer: Responder


@dataclass
class UdpCounters:
    """Datagrams one reader has seen. `truncated`: larger than SLOT, not answered; `dropped`:
    replies the kernel would not take (socket buffer full, or refused), not sent."""

    received: int = 0
    sent: int = 0
    truncated: int = 0
    dropped: int = 0


class BatchedUdpReader:
    """One UDP socket answered in batches from the event loop (add_reader). The answerer is read
    from `server.answerer` at every wakeup, so a reload takes effect at the next batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, server: HasAnswerer,
                 limit: Limit | None = None) -> None:
        if _udpbatch is None:
            raise RuntimeError("gslb.dns._udpbatch is not built")
        self.loop = loop
        self.sock = sock
        self.server = server
        self.limit = limit
        self.fd = sock.fileno()
        self.buffer = bytearray(_udpbatch.BATCH * SLOT)
        self.counters = UdpCounters()
        self._drain = _udpbatch.drain
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        received, sent, truncated, dropped, error = self._drain(
            self.fd, self.buffer, self.server.answerer.respond_udp, self.limit, MAX_BATCHES)
        counters = self.counters
        counters.received += received
        counters.sent += sent
        counters.truncated += truncated
        counters.dropped += dropped
        if error is not None:
            if not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: not ours to swallow
            if isinstance(error, OSError):
                log.debug("UDP receive error: %s", error)  # as asyncio's error_received: keep going
            else:
                log.error("UDP query not answered: %s", error, exc_info=error)

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            self.fd = -1
            self.sock.close()
