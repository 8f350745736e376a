"""TCP DNS under hostile clients (issue 11): every slot is reclaimed, and one client cannot take
TCP, or UDP, away from the others."""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.query
import dns.rcode
import pytest

from dnsserver import WIRE_ZONES, wait_for


def config_file(directory, text: str):
    path = directory / "gslb.yaml"
    path.write_text(text)
    return path


def tcp_answered(server, name: str = "www.wire.example.") -> bool:
    """One query over a fresh TCP connection, by dnspython: True when it was answered."""
    try:
        reply = dns.query.tcp(dns.message.make_query(name, "A"), server.host, port=server.port, timeout=2)
    except (OSError, EOFError, dns.exception.DNSException):
        return False
    return reply.rcode() == dns.rcode.NOERROR


def reset_right_after_connect(host: str, port: int) -> None:
    """Connect, send nothing, close with SO_LINGER 0: the server sees an RST, often before it
    has even accepted the connection (then the accepted socket has no peer address any more)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        sock.connect((host, port))
    finally:
        sock.close()


# -- item 1: connections reset before they are served -----------------------------------------------

@pytest.fixture(scope="module")
def default_server(start_server):
    """The default TCP limits (256 connections): the cap the resets used to exhaust."""
    return start_server(WIRE_ZONES)


def test_connections_reset_right_after_connecting_do_not_use_up_the_tcp_slots(default_server):
    assert tcp_answered(default_server)
    for _ in range(600):  # well past the 256-connection cap
        reset_right_after_connect(default_server.host, default_server.port)
    wait_for(lambda: tcp_answered(default_server), timeout=10, what="a TCP query answered after 600 resets")
    for _ in range(5):
        assert tcp_answered(default_server)
    assert default_server.alive()
