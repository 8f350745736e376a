"""UDP and TCP listeners that hand every message to one `respond(packet, client, tcp)` callable.

The listeners know nothing about DNS beyond TCP's 2-byte length framing (RFC 1035 section 4.2.2):
the whole decision is the answerer's, so a faster answer path can be swapped in here alone. The
answerer is read through `self.answerer` at each query, so a reload swaps it atomically.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Callable, Protocol

from gslb.dns import udpio
from gslb.dns.client import client_address

log = logging.getLogger(__name__)


class Responder(Protocol):
    def respond(self, packet: bytes, client: ipaddress.IPv4Address | ipaddress.IPv6Address, tcp: bool = False) -> bytes | None: ...

    def respond_udp(self, packet: bytes, source: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class TcpLimits:
    idle_timeout: float = 10.0  # RFC 7766 section 6.2.3: seconds, not minutes
    max_connections: int = 256

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0:
            raise ValueError("tcp idle timeout must be > 0 seconds")
        if self.max_connections < 1:
            raise ValueError("tcp max connections must be >= 1")


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, server: "DnsServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.sendto: Callable[[bytes, tuple], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        response = self.server.answerer.respond_udp(data, addr[0])
        if response is not None and self.sendto is not None:
            self.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client went away) must not stop the listener.
        log.debug("UDP error: %s", exc)


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: "DnsServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.client: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.connections) >= server.tcp_limits.max_connections:
            log.debug("TCP connection refused: %d open, the cap", len(server.connections))
            transport.abort()  # type: ignore[attr-defined]
            return
        server.connections.add(self)
        self.client = client_address(transport.get_extra_info("peername")[0])
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.server.tcp_limits.idle_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        log.debug("TCP connection from %s closed: idle", self.client)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.client is None or self.transport is None:
            return
        self.buffer += data
        self._arm_idle()
        buffer = self.buffer
        # Pipelined queries are answered in the order they arrive (RFC 7766 section 6.2.1.1).
        while len(buffer) >= 2:
            size = int.from_bytes(buffer[0:2], "big")
            if len(buffer) < 2 + size:
                break
            message = bytes(buffer[2:2 + size])
            del buffer[:2 + size]
            response = self.server.answerer.respond(message, self.client, True)
            if response is None:
                # A message we would drop on UDP: over TCP the stream is suspect, so close it.
                self.transport.close()
                return
            self.transport.write(len(response).to_bytes(2, "big") + response)

    # Back-pressure: a client that pipelines queries but does not read its replies fills our
    # write buffer; stop reading its queries until the buffer drains (RFC 7766 section 6.2.1.1).
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close once our writes are flushed

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.server.connections.discard(self)


@dataclass(frozen=True, slots=True)
class Listener:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Listener":
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
                 udp_io: str | None = None) -> None:
        self.answerer = answerer
        self.tcp_limits = tcp_limits
        self.reuse_port = reuse_port
        self.udp_io = udpio.choose(udp_io)  # "batched" | "per-datagram" (gslb/dns/udpio.py)
        self.connections: set[TcpConnection] = set()
        self._udp: list[asyncio.DatagramTransport] = []
        self._udp_readers: list[udpio.BatchedUdpReader] = []
        self._tcp: list[asyncio.AbstractServer] = []
        self.bound: list[tuple[str, str, int]] = []  # (proto, host, port) actually bound

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
        if self.udp_io == udpio.BATCHED:
            # RRL goes here (h-tcp, not merged yet): limit=<the limiter's limit(reply, source)> when
            # rate limiting is on, so each batched reply passes the same check as UdpListener's.
            self._udp_readers.append(udpio.BatchedUdpReader(loop, udp_sock, self, limit=None))
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda: UdpListener(self), sock=udp_sock)
            self._udp.append(transport)
        tcp_server = await loop.create_server(lambda: TcpConnection(self), sock=tcp_sock)
        self._tcp.append(tcp_server)
        port = udp_sock.getsockname()[1]
        self.bound.append(("udp+tcp", listener.host, port))
        return Listener(listener.host, port)

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
        for transport in self._udp:
            transport.close()
        for reader in self._udp_readers:
            reader.close()
        for server in self._tcp:
            server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for server in self._tcp:
            await server.wait_closed()
        self._udp.clear()
        self._udp_readers.clear()
        self._tcp.clear()
