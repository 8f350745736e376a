"""Starting and stopping `gslb serve`: the listening lines, and a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import signal

import dns.rcode
import pytest

from conftest import IPV6
from dnsserver import WIRE_ZONES


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_exits_0_promptly_on_a_stop_signal(start_server, sig):
    server = start_server(WIRE_ZONES)
    assert server.query("www.wire.example.", "A").rcode() == dns.rcode.NOERROR
    with server.tcp() as stream:  # an open TCP connection must not hold up the shutdown
        assert server.stop(sig) == 0, server.describe()
        assert stream.closed_by_peer(timeout=2)
    assert "Traceback" not in server.stderr_text()


def test_port_0_binds_udp_and_tcp_on_the_same_port(start_server):
    server = start_server(WIRE_ZONES)
    (client,) = server.clients
    assert client.port != 0
    assert server.query("www.wire.example.", "A").rcode() == dns.rcode.NOERROR
    assert server.query("www.wire.example.", "A", tcp=True).rcode() == dns.rcode.NOERROR


def test_each_listen_address_is_reported_and_served(start_server):
    listen = ["127.0.0.1:0", "127.0.0.1:0"] + (["[::1]:0"] if IPV6 else [])
    server = start_server(WIRE_ZONES, listen=listen)
    assert [client.host for client in server.clients] == [address.rsplit(":", 1)[0].strip("[]") for address in listen]
    assert len({client.port for client in server.clients}) == len(listen)  # port 0 picks one each
    for client in server.clients:
        for tcp in (False, True):
            assert client.query("www.wire.example.", "A", tcp=tcp).rcode() == dns.rcode.NOERROR
