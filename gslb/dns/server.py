"""UDP and TCP listeners that hand every message to one `respond(packet, client, tcp)` callable.

The listeners know nothing about DNS beyond TCP's 2-byte length framing (RFC 1035 section 4.2.2):
the whole decision is the answerer's, so a faster answer path can be swapped in here alone. The
answerer is read through `self.answerer` at each query, so a reload swaps it atomically.

What a client may hold is bounded here too: TCP slots (TcpLimits: caps, idle and message deadlines,
lifetime, queued output), the work per event-loop turn (so a TCP flood cannot starve UDP), and with
`rrl:` configured, the UDP responses per client prefix (gslb/dns/rrl.py).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gslb.dns import udpio
from gslb.dns.client import client_address
from gslb.dns.rrl import ResponseRateLimiter, RrlSettings

log = logging.getLogger(__name__)


class Responder(Protocol):
    def respond(self, packet: bytes, client: ipaddress.IPv4Address | ipaddress.IPv6Address,
                tcp: bool = False) -> bytes | None: ...

    def respond_udp(self, packet: bytes, source: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """What one TCP client may hold. Every slot is reclaimed: by the idle timeout (lower while
    more than half the slots are taken, RFC 7766 section 6.2.3), by the lifetime, or by a new
    connection at a cap, which closes the longest-idle one (NSD's way) rather than being refused."""

    idle_timeout: float = 10.0  # seconds without a complete query; partial bytes do not count
    max_connections: int = 256
    max_connections_per_client: int = 64  # per client address; its own longest-idle one makes room
    busy_idle_timeout: float = 0.5  # the idle timeout while more than half of max_connections are open
    lifetime: float = 120.0  # seconds a connection may live, however busy
    max_queued_bytes: int = 131072  # replies queued for a client that does not read, per connection

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "busy_idle_timeout", "lifetime"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"tcp {name.replace('_', ' ')} must be > 0 seconds")
        for name, low in (("max_connections", 1), ("max_connections_per_client", 1), ("max_queued_bytes", 512)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"tcp {name.replace('_', ' ')} must be >= {low}")

    @property
    def pressure(self) -> int:
        """Above this many open connections the server is under pressure."""
        return self.max_connections // 2


# Work per event-loop turn is bounded, so one client pipelining thousands of queries cannot hold
# the loop (and UDP) for long: a turn answers at most this many TCP messages, across all
# connections, and stops early once it has run TURN_SECONDS; one connection gets at most a share
# of a turn before the next one's.
MESSAGES_PER_TURN = 64
MESSAGES_PER_CONNECTION_TURN = 8
TURN_SECONDS = 0.002
# Unanswered bytes buffered per connection before reading from it pauses.
READ_AHEAD = 65536
RRL_CLOCK_SECONDS = 0.2


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.sendto: Callable[[bytes, tuple[Any, ...]], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        response = self.server.answerer.respond_udp(data, addr[0])
        if response is not None and self.sendto is not None:
            self.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client went away) must not stop the listener.
        log.debug("UDP error: %s", exc)


class RateLimitedUdpListener(UdpListener):
    """UdpListener with response rate limiting: a class of its own, so that with RRL off the
    UDP path does not even test for it."""

    def __init__(self, server: DnsServer, limit: Callable[[bytes, str], bytes | None]) -> None:
        super().__init__(server)
        self.limit = limit

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        response = self.server.answerer.respond_udp(data, addr[0])
        if response is not None and self.sendto is not None:
            response = self.limit(response, addr[0])
            if response is not None:
                self.sendto(response, addr)


class TcpConnection(asyncio.Protocol):
    """One client connection. Its messages are answered in turns run by the server (bounded work
    per loop turn); `mark` is when it last had a query answered (or connected), and the idle
    deadline counts from it, so bytes that do not complete a query never extend the deadline.
    `active` orders the same events across connections: uvloop's clock moves in whole
    milliseconds, once per loop iteration, so two connections answered in the same millisecond
    have equal marks, and the longest-idle one to close at a cap must not be left to chance."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.client: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self.buffer = b""
        self.born = 0.0
        self.mark = 0.0
        self.active = 0
        self.timer: asyncio.TimerHandle | None = None
        self.queued = False  # waiting in the server's turn queue
        self.reading = True  # reading not paused by us
        self.write_blocked = False  # the transport's write buffer is over max_queued_bytes
        self.eof = False  # the client half-closed; close once its queries are answered
        self.done = False  # closing or closed: answer nothing more, hold no slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A connection reset before we got here has no peer address any more: nothing to serve.
        # Decide that before taking a slot, so a failure here can never leak one.
        peer = transport.get_extra_info("peername")
        try:
            client = client_address(peer[0]) if peer else None
        except (ValueError, TypeError):
            client = None
        if client is None:
            log.debug("TCP connection closed: reset before it was served")
            transport.abort()  # type: ignore[attr-defined]
            return
        self.transport = transport  # type: ignore[assignment]
        self.client = client
        limits = self.server.tcp_limits
        transport.set_write_buffer_limits(high=limits.max_queued_bytes)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # the kernel's share of the queued replies, bounded too (it doubles the value)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.max_queued_bytes)
            except OSError:
                pass
        self.born = self.mark = self.server.loop.time()
        self.active = self.server.next_activity()
        self.server.admit(self)
        self.arm()

    # -- deadlines ---------------------------------------------------------------------------------
    def deadline(self) -> float:
        server = self.server
        limits = server.tcp_limits
        idle = min(limits.busy_idle_timeout, limits.idle_timeout) if server.busy else limits.idle_timeout
        return min(self.mark + idle, self.born + limits.lifetime)

    def arm(self) -> None:
        """One timer per connection, set for its deadline. Answering a query moves `mark` but not
        the timer: when it fires early it is set again for the new deadline (no timer churn per
        query)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.server.loop.call_at(self.deadline(), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.done or self.transport is None:
            return
        deadline = self.deadline()
        if self.server.loop.time() < deadline - 0.001:
            self.timer = self.server.loop.call_at(deadline, self._on_timer)
            return
        if self.born + self.server.tcp_limits.lifetime <= deadline:
            self.shut("its lifetime is over", graceful=True)
        else:
            # Output still queued after a whole idle period: the client is not reading it.
            self.shut("idle" if not self.transport.get_write_buffer_size() else "not reading its replies")

    def shut(self, reason: str, graceful: bool = False) -> None:
        """Close and give the slot back now. Queued replies are flushed when the client reads
        them; a client that is not reading is reset instead (a close would wait for it forever)."""
        if self.done or self.transport is None:
            return
        self.done = True
        self.server.release(self)
        transport = self.transport
        log.debug("TCP connection from %s closed: %s", self.client, reason)
        if not transport.get_write_buffer_size():
            transport.close()
        elif graceful:
            transport.close()
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.server.loop.call_later(self.server.tcp_limits.busy_idle_timeout, transport.abort)
        else:
            transport.abort()

    # -- reading and answering ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        buffer = self.buffer + data if self.buffer else data
        self.buffer = buffer
        if not self.queued and not self.write_blocked and _complete(buffer):
            self.server.enqueue(self)
        if len(buffer) > READ_AHEAD and self.reading:
            self.reading = False
            self.transport.pause_reading()  # type: ignore[union-attr]

    def answer(self, budget: int) -> int:
        """Answer up to `budget` complete messages, in order (RFC 7766 section 6.2.1.1); their
        replies go out in one write. Returns how many were answered."""
        transport = self.transport
        if self.done or transport is None:
            return 0
        if transport.is_closing():  # reset by the client; connection_lost is on its way
            self.shut("closed by the client")
            return 0
        client = self.client
        respond = self.server.answerer.respond  # read each turn: a reload swaps the answerer
        room = self.server.tcp_limits.max_queued_bytes - transport.get_write_buffer_size()
        buffer = self.buffer
        size_of = len(buffer)
        position = answered = 0
        out: list[bytes] = []
        drop = False
        while answered < budget and size_of - position >= 2 and room > 0:
            end = position + 2 + (buffer[position] << 8 | buffer[position + 1])
            if end > size_of:
                break
            message = buffer[position + 2:end]
            position = end
            answered += 1
            response = respond(message, client, True)  # type: ignore[arg-type]
            if response is None:
                # A message we would drop on UDP: over TCP the stream is suspect, so close it.
                drop = True
                break
            out.append(len(response).to_bytes(2, "big"))
            out.append(response)
            room -= 2 + len(response)
        self.buffer = buffer[position:] if position else buffer
        if answered:
            self.mark = self.server.loop.time()
            self.active = self.server.next_activity()
        if out:
            transport.write(b"".join(out))  # may call pause_writing() before it returns
        if drop:
            self.shut("a message that is not a query", graceful=True)
        elif not self.ready():
            self._after_backlog()
        return answered

    def ready(self) -> bool:
        """Has a complete message to answer and may answer it now."""
        return not self.done and not self.write_blocked and _complete(self.buffer)

    def _after_backlog(self) -> None:
        if self.done or self.transport is None:
            return
        if self.eof and not _complete(self.buffer):
            self.shut("the client closed its side and every query is answered", graceful=True)
        elif not self.reading and not self.write_blocked and len(self.buffer) <= READ_AHEAD:
            self.reading = True
            self.transport.resume_reading()

    # Back-pressure: a client that pipelines queries but does not read its replies fills our
    # write buffer; stop reading and answering its queries until the buffer drains
    # (RFC 7766 section 6.2.1.1). Its idle deadline keeps running meanwhile.
    def pause_writing(self) -> None:
        self.write_blocked = True
        if self.reading and self.transport is not None and not self.done:
            self.reading = False
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_blocked = False
        if self.done:
            return
        if self.ready():
            if not self.queued:
                self.server.enqueue(self)
        else:
            self._after_backlog()

    def eof_received(self) -> bool:
        if self.ready() or self.queued:
            self.eof = True
            return True  # half-closed: answer what was sent, then close (RFC 7766 section 6.2.4)
        return False  # close once our writes are flushed

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.done:
            self.done = True
            self.server.release(self)
        self.buffer = b""


def _idle_since(connection: TcpConnection) -> int:
    return connection.active


def _complete(buffer: bytes) -> bool:
    """The buffer holds at least one whole length-prefixed message (RFC 1035 section 4.2.2)."""
    return len(buffer) >= 2 and len(buffer) >= 2 + (buffer[0] << 8 | buffer[1])


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listener:
        """'127.0.0.1:1053', '[::1]:1053', '0.0.0.0:53'."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"listen address {text!r} must be HOST:PORT, like 127.0.0.1:1053 or [::1]:1053")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"listen address {text!r}: {host!r} is not an IP address") from None
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(f"listen address {text!r}: port must be 0-65535")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class DnsServer:
    """Owns the sockets. `answerer` may be replaced at any time (hot reload)."""

    def __init__(self, answerer: Responder, tcp_limits: TcpLimits = TcpLimits(), reuse_port: bool = False,
                 rrl: RrlSettings | None = None, udp_io: str | None = None) -> None:
        self.answerer = answerer
        self.tcp_limits = tcp_limits
        self.reuse_port = reuse_port
        self.rrl = ResponseRateLimiter(rrl) if rrl is not None else None
        self.udp_io = udpio.choose(udp_io)  # "batched" | "per-datagram" (gslb/dns/udpio.py)
        self.connections: set[TcpConnection] = set()  # open and not closing: the slots taken
        self.by_client: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, set[TcpConnection]] = {}
        self.busy = False  # more than half of the TCP slots are taken: the short idle timeout applies
        self._activity = 0  # counts TCP connects and answered turns: TcpConnection.active
        self._turns: deque[TcpConnection] = deque()
        self._turn_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rrl_clock: asyncio.TimerHandle | None = None
        self._udp: list[asyncio.DatagramTransport] = []
        self._udp_readers: list[udpio.BatchedUdpReader] = []
        self._tcp: list[asyncio.AbstractServer] = []
        self.bound: list[tuple[str, str, int]] = []  # (proto, host, port) actually bound

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _tick_rrl(self) -> None:
        """The rate limiter's clock, read here a few times a second rather than per reply."""
        assert self.rrl is not None
        self.rrl.tick()
        self._rrl_clock = self.loop.call_later(RRL_CLOCK_SECONDS, self._tick_rrl)

    # -- TCP slots --------------------------------------------------------------------------------
    def next_activity(self) -> int:
        self._activity += 1
        return self._activity

    def admit(self, connection: TcpConnection) -> None:
        """Take a slot for a new connection; at a cap, the longest-idle connection (of the same
        client at the per-client cap) is closed to make room."""
        limits = self.tcp_limits
        client = connection.client
        assert client is not None
        same = self.by_client.get(client)
        if same is not None and len(same) >= limits.max_connections_per_client:
            min(same, key=_idle_since).shut(f"{client} is at its cap of {limits.max_connections_per_client} connections")
        if len(self.connections) >= limits.max_connections:
            min(self.connections, key=_idle_since).shut(f"the cap of {limits.max_connections} connections is reached")
        self.connections.add(connection)
        self.by_client.setdefault(client, set()).add(connection)
        if not self.busy and len(self.connections) > limits.pressure:
            # Pressure starts: every connection's deadline moves in to the short idle timeout.
            self.busy = True
            log.debug("TCP: %d connections open, idle timeout lowered to %gs", len(self.connections),
                      min(limits.busy_idle_timeout, limits.idle_timeout))
            for other in self.connections:
                if other is not connection:
                    other.arm()

    def release(self, connection: TcpConnection) -> None:
        self.connections.discard(connection)
        same = self.by_client.get(connection.client)  # type: ignore[arg-type]
        if same is not None:
            same.discard(connection)
            if not same:
                del self.by_client[connection.client]  # type: ignore[arg-type]
        if self.busy and len(self.connections) <= self.tcp_limits.pressure:
            self.busy = False  # deadlines lengthen lazily, when each connection's timer fires

    # -- bounded work per loop turn -------------------------------------------------------------------
    def enqueue(self, connection: TcpConnection) -> None:
        connection.queued = True
        self._turns.append(connection)
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        """Answer up to MESSAGES_PER_TURN queued TCP messages, round robin, then give the loop
        back (UDP, new connections, timers) before the next turn."""
        self._turn_scheduled = False
        turns = self._turns
        budget = MESSAGES_PER_TURN
        stop = time.perf_counter() + TURN_SECONDS
        while turns and budget > 0:
            connection = turns.popleft()
            connection.queued = False
            try:
                budget -= connection.answer(min(budget, MESSAGES_PER_CONNECTION_TURN))
            except Exception:  # noqa: BLE001 - a bug here must cost one connection, not TCP
                log.exception("internal error on a TCP connection from %s; closing it", connection.client)
                connection.shut("internal error")
                continue
            if connection.ready():
                connection.queued = True
                turns.append(connection)
            if time.perf_counter() > stop:
                break
        if turns and not self._turn_scheduled:
            self._turn_scheduled = True
            self.loop.call_soon(self._turn)

    async def listen(self, listener: Listener) -> Listener:
        """Bind UDP and TCP on the same port. For port 0 the kernel picks UDP's port, which TCP
        may already use elsewhere: then both are closed and another port is tried."""
        loop = asyncio.get_running_loop()
        attempts = 20 if listener.port == 0 else 1
        for attempt in range(attempts):
            try:
                udp_sock, tcp_sock = self._bind_pair(listener)
                break
            except OSError:
                if attempt == attempts - 1:
                    raise
        self._loop = loop
        rrl = self.rrl
        if rrl is not None and self._rrl_clock is None:
            self._tick_rrl()
        if self.udp_io == udpio.BATCHED:
            # The same RRL hook as RateLimitedUdpListener's, called by the extension on each reply.
            limit = rrl.limit if rrl is not None else None
            # DnsServer.answerer is a server.Responder, a subtype of udpio.Responder; mypy refuses it only
            # because HasAnswerer declares a settable attribute (invariant) where it only reads it.
            self._udp_readers.append(udpio.BatchedUdpReader(loop, udp_sock, self, limit=limit))  # type: ignore[arg-type]
        else:
            if rrl is not None:
                protocol: Callable[[], UdpListener] = functools.partial(RateLimitedUdpListener, self, rrl.limit)
            else:
                protocol = functools.partial(UdpListener, self)
            transport, _ = await loop.create_datagram_endpoint(protocol, sock=udp_sock)
            self._udp.append(transport)
        tcp_server = await loop.create_server(lambda: TcpConnection(self), sock=tcp_sock)
        self._tcp.append(tcp_server)
        port = udp_sock.getsockname()[1]
        self.bound.append(("udp+tcp", listener.host, port))
        return Listener(listener.host, port)

    def udp_counters(self) -> udpio.UdpCounters | None:
        """The batched readers' counts, summed; None on the per-datagram path."""
        if self.udp_io != udpio.BATCHED:
            return None
        total = udpio.UdpCounters()
        for reader in self._udp_readers:
            counts = reader.counters
            total.received += counts.received
            total.sent += counts.sent
            total.truncated += counts.truncated
            total.dropped += counts.dropped
        return total

    def _bind_pair(self, listener: Listener) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
        udp_sock = socket.socket(family, socket.SOCK_DGRAM)
        tcp_sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for sock in (udp_sock, tcp_sock):
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp_sock.bind((listener.host, listener.port))
            port = udp_sock.getsockname()[1]
            try:
                udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            except OSError:
                pass
            tcp_sock.bind((listener.host, port))
            tcp_sock.listen(1024)
        except OSError:
            udp_sock.close()
            tcp_sock.close()
            raise
        udp_sock.setblocking(False)
        tcp_sock.setblocking(False)
        return udp_sock, tcp_sock

    async def close(self) -> None:
        if self._rrl_clock is not None:
            self._rrl_clock.cancel()
            self._rrl_clock = None
        for transport in self._udp:
            transport.close()
        for reader in self._udp_readers:
            reader.close()
        for server in self._tcp:
            server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.done = True
                connection.transport.abort()
        self.connections.clear()
        self.by_client.clear()
        for server in self._tcp:
            await server.wait_closed()
        self._udp.clear()
        self._udp_readers.clear()
        self._tcp.clear()
