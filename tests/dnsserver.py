"""A real `gslb serve` in a subprocess, and the client helpers the wire tests talk to it with.

`GslbProcess.start(...)` runs `python -m gslb serve` on port 0, reads the bound ports from its
stdout within a deadline, and `stop()` always ends it (SIGTERM, then SIGKILL after a deadline).
`DnsClient` is one listening address: `query()` built on dnspython, `send_udp()` and
`send_tcp_raw()` for packets dnspython would refuse to build.
"""

from __future__ import annotations

import os
import random
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
EXAMPLE_ZONES = REPO / "zones"
WIRE_ZONES = TESTS / "data" / "zones_wire"
BROKEN_ZONES = TESTS / "data" / "zones_broken"
TEST_GEOIP = TESTS / "data" / "geo" / "GeoIP2-City-Test.mmdb"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LISTENING = re.compile(r"^gslb: listening on (\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\s]+)):(?P<port>\d+) ")

T = TypeVar("T")


class DeadlineExceeded(AssertionError):
    pass


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ipv6_loopback_works() -> bool:
    """True when this host can bind and reach [::1] (containers often have IPv6 disabled)."""
    if not socket.has_ipv6:
        return False
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET6, kind) as sock:
                sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def gslb_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gslb", *args]


def free_port(addresses: list[str]) -> int:
    """A TCP port free on every one of `addresses` (a check probes one port on all of them)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 60000)
        sockets = []
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no common free port found on the test addresses")


# -- the client side -------------------------------------------------------------------------

def frame(message: bytes) -> bytes:
    """RFC 1035 section 4.2.2: a 2-byte big-endian length before every message on TCP."""
    return len(message).to_bytes(2, "big") + message


class TcpStream:
    """One TCP connection to the server, read and written in whole DNS messages."""

    def __init__(self, host: str, port: int, timeout: float = 2.0, source: str | None = None) -> None:
        """`source`: the local address to connect from (any 127.0.0.0/8 address works on Linux),
        for tests that need several client addresses."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self._buffer = b""

    def __enter__(self) -> TcpStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: bytes | dns.message.Message) -> None:
        wire = message.to_wire() if isinstance(message, dns.message.Message) else message
        self.sock.sendall(frame(wire))

    def _fill(self, size: int, deadline: float) -> bool:
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return False
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def recv_message(self, timeout: float = 2.0) -> bytes | None:
        """The next framed message, or None on EOF, reset or timeout."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        size = int.from_bytes(self._buffer[:2], "big")
        if not self._fill(2 + size, deadline):
            return None
        message, self._buffer = self._buffer[2:2 + size], self._buffer[2 + size:]
        return message

    def closed_by_peer(self, timeout: float) -> bool:
        """Wait up to `timeout` for the server to close (EOF or reset); False if still open.
        Any reply data that arrives meanwhile is kept for `recv_message`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self._buffer += chunk


@dataclass(frozen=True)
class DnsClient:
    """Talks to one listening address of the server."""

    host: str
    port: int
    probe_name: str = "wire.example."  # a zone apex the server serves, for fence queries

    def make_query(self, name: str, rdtype: str | int, *, rdclass: str | int = "IN", **options) -> dns.message.QueryMessage:
        """A dnspython query; `options` are `dns.message.make_query`'s (use_edns, payload,
        ednsflags, options, flags, want_dnssec, id)."""
        return dns.message.make_query(name, rdtype, rdclass, **options)

    def query(
        self,
        name: str,
        rdtype: str | int,
        *,
        tcp: bool = False,
        rdclass: str | int = "IN",
        timeout: float = 2.0,
        **options,
    ) -> dns.message.Message:
        return self.exchange(self.make_query(name, rdtype, rdclass=rdclass, **options), tcp=tcp, timeout=timeout)

    def exchange(self, message: dns.message.Message, *, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
        if tcp:
            return dns.query.tcp(message, self.host, timeout=timeout, port=self.port)
        return dns.query.udp(message, self.host, timeout=timeout, port=self.port)

    def send_udp(self, packet: bytes, timeout: float = 2.0) -> bytes | None:
        """One datagram out, the reply's bytes back, or None when nothing came within `timeout`.
        To show that the server stays silent, use `send_udp_fenced` (no timeout to wait out)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(packet, (self.host, self.port))
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                return None
            return data

    def send_udp_fenced(self, packet: bytes, timeout: float = 2.0) -> bytes | None:
        """`packet`, then a normal query (the fence) from the same socket. The server answers
        datagrams in order, so a reply to `packet` arrives before the fence's reply: returns that
        reply, or None when the fence's reply came first. No waiting out a timeout for silence."""
        fence_id = 0xFFFF ^ (int.from_bytes(packet[:2], "big") if len(packet) >= 2 else 0)
        fence = self.make_query(self.probe_name, "SOA", id=fence_id).to_wire()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(packet, (self.host, self.port))
            sock.sendto(fence, (self.host, self.port))
            first, _ = sock.recvfrom(65535)  # socket.timeout here: not even the fence was answered
            if first[:2] == fence[:2]:  # the ids differ by construction
                return None
            return first

    def send_tcp_raw(self, message: bytes, timeout: float = 2.0) -> bytes | None:
        """`message` framed on a fresh connection; the framed reply, or None when the server
        closed the connection or said nothing within `timeout`."""
        with self.tcp() as stream:
            try:
                stream.send(message)
            except (ConnectionResetError, BrokenPipeError):
                return None
            return stream.recv_message(timeout)

    def send_raw(self, packet: bytes, *, tcp: bool, timeout: float = 2.0) -> bytes | None:
        """`send_tcp_raw` or `send_udp`, for tests parametrized over the transport."""
        if tcp:
            return self.send_tcp_raw(packet, timeout)
        return self.send_udp(packet, timeout)

    def tcp(self, timeout: float = 2.0, source: str | None = None) -> TcpStream:
        return TcpStream(self.host, self.port, timeout, source)


# -- the server process ----------------------------------------------------------------------

@dataclass
class GslbProcess:
    """A running `gslb serve`; `clients` holds one DnsClient per listening address."""

    process: subprocess.Popen
    clients: list[DnsClient]
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        zones: Path,
        *,
        log_dir: Path,
        listen: Iterable[str] = ("127.0.0.1:0",),
        node_name: str | None = None,
        config: Path | None = None,
        geoip: Path | None = TEST_GEOIP,
        probe_name: str = "wire.example.",
        extra: Iterable[str] = (),
    ) -> GslbProcess:
        listen = list(listen)
        args = ["serve", "--zones", str(zones)]
        for address in listen:
            args += ["--listen", address]
        if node_name is not None:
            args += ["--node-name", node_name]
        if config is not None:
            args += ["--config", str(config)]
        if geoip is not None:
            args += ["--geoip", str(geoip)]
        args += list(extra)
        log_dir.mkdir(parents=True, exist_ok=True)
        stderr_path = log_dir / f"gslb-{os.getpid()}-{time.monotonic_ns()}.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(gslb_command(*args), stdout=subprocess.PIPE, stderr=stderr, cwd=REPO)
        server = cls(process, [], stderr_path)
        try:
            server._read_listeners(len(listen), probe_name)
        except BaseException:
            server.stop()
            raise
        return server

    def _read_listeners(self, expected: int, probe_name: str) -> None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while len(self.clients) < expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded(f"gslb serve did not report {expected} listeners within "
                                           f"{START_TIMEOUT}s\n{self.describe()}")
                if not selector.select(remaining):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.process.wait(STOP_TIMEOUT)
                    raise AssertionError(f"gslb serve exited with {self.process.returncode} before "
                                         f"listening\n{self.describe()}")
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace")
                    self.stdout_lines.append(line)
                    match = LISTENING.match(line)
                    if match:
                        host = match.group("v6") or match.group("v4")
                        self.clients.append(DnsClient(host, int(match.group("port")), probe_name))

    @property
    def client(self) -> DnsClient:
        return self.clients[0]

    def client_for(self, family: int) -> DnsClient | None:
        for client in self.clients:
            if (":" in client.host) == (family == socket.AF_INET6):
                return client
        return None

    # The first address's helpers, so a test can write `server.query(...)`.
    def query(self, *args, **kwargs) -> dns.message.Message:
        return self.client.query(*args, **kwargs)

    def exchange(self, *args, **kwargs) -> dns.message.Message:
        return self.client.exchange(*args, **kwargs)

    def send_udp(self, *args, **kwargs) -> bytes | None:
        return self.client.send_udp(*args, **kwargs)

    def send_tcp_raw(self, *args, **kwargs) -> bytes | None:
        return self.client.send_tcp_raw(*args, **kwargs)

    def send_raw(self, *args, **kwargs) -> bytes | None:
        return self.client.send_raw(*args, **kwargs)

    def tcp(self, *args, **kwargs) -> TcpStream:
        return self.client.tcp(*args, **kwargs)

    @property
    def port(self) -> int:
        return self.client.port

    @property
    def host(self) -> str:
        return self.client.host

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def describe(self) -> str:
        stderr = self.stderr_text()
        tail = "\n".join(stderr.splitlines()[-30:])
        return "stdout:\n" + "\n".join(self.stdout_lines) + f"\nstderr (last lines):\n{tail}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server, wait for it with a deadline, kill it if it does not go."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


# -- reading replies -------------------------------------------------------------------------

def rrset_texts(section: list, name: str | None = None, rdtype: str | None = None) -> set[str]:
    """The rdata of `section`'s RRsets (optionally one name and type) as presentation text."""
    texts = set()
    for rrset in section:
        if name is not None and rrset.name != dns.name.from_text(name):
            continue
        if rdtype is not None and rrset.rdtype != dns.rdatatype.from_text(rdtype):
            continue
        texts.update(rdata.to_text() for rdata in rrset)
    return texts


def rrset_types(section: list) -> list[str]:
    return [dns.rdatatype.to_text(rrset.rdtype) for rrset in section]


def flag_names(message: dns.message.Message) -> set[str]:
    return set(dns.flags.to_text(message.flags).split())
