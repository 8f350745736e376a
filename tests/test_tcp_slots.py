"""Which TCP connection makes room at a cap, with a clock that does not move between queries.

uvloop's loop.time() advances in whole milliseconds, once per loop iteration, so on a fast machine
two connections answered one after the other can carry the same time. The CI run that found this
closed the most recently used connection instead of the longest idle one
(tests/test_tcp_hardening.py, at random). Here the clock is frozen, so the order is all there is.
"""

from __future__ import annotations

import ipaddress

import dns.message

from gslb.dns.server import DnsServer, TcpConnection, TcpLimits


class FrozenLoop:
    """The loop calls TcpConnection makes, with a clock stuck on one millisecond."""

    def time(self) -> float:
        return 1000.0

    def call_at(self, when: float, callback, *args):
        return Handle()

    def call_later(self, delay: float, callback, *args):
        return Handle()

    def call_soon(self, callback, *args):
        return Handle()


class Handle:
    def cancel(self) -> None:
        pass


class Transport:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.closed = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default=None):
        return (self.peer, 53000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    abort = close


class Echo:
    def respond(self, packet: bytes, client, tcp: bool = False) -> bytes:
        return packet


def server_with(limits: TcpLimits) -> DnsServer:
    server = DnsServer(Echo(), tcp_limits=limits)  # type: ignore[arg-type]
    server._loop = FrozenLoop()  # type: ignore[assignment]
    return server


def connect(server: DnsServer, peer: str) -> tuple[TcpConnection, Transport]:
    connection = TcpConnection(server)
    transport = Transport(peer)
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def ask(connection: TcpConnection) -> None:
    wire = dns.message.make_query("www.example.", "A").to_wire()
    connection.data_received(len(wire).to_bytes(2, "big") + wire)
    assert connection.answer(8) == 1


def test_at_a_client_cap_the_connection_answered_longest_ago_closes_even_in_the_same_millisecond():
    for order in range(6):  # sets iterate in hash order: several rounds, so chance cannot pass it
        server = server_with(TcpLimits(max_connections=64, max_connections_per_client=2))
        (first, first_transport), (second, second_transport) = connect(server, "192.0.2.1"), connect(server, "192.0.2.1")
        if order % 2:
            ask(second)
            ask(first)
            expected_closed, expected_open = second_transport, first_transport
        else:
            ask(first)
            ask(second)
            expected_closed, expected_open = first_transport, second_transport
        connect(server, "192.0.2.1")
        assert expected_closed.closed, "the most recently answered connection was closed instead"
        assert not expected_open.closed
        assert len(server.by_client[ipaddress.ip_address("192.0.2.1")]) == 2


def test_at_the_server_cap_the_longest_idle_connection_of_any_client_closes_in_the_same_millisecond():
    for order in range(6):
        server = server_with(TcpLimits(max_connections=3, max_connections_per_client=3))
        peers = [connect(server, f"192.0.2.{index}") for index in range(1, 4)]
        sequence = peers[order % 3:] + peers[:order % 3]
        for connection, _ in sequence:
            ask(connection)
        connect(server, "192.0.2.9")
        assert [transport.closed for _, transport in sequence] == [True, False, False]
        assert len(server.connections) == 3
