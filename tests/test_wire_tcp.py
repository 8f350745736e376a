"""DNS over TCP (RFC 1035 4.2.2, RFC 7766): framing, pipelining, idle timeout, connection cap."""

from __future__ import annotations

import socket
import time

import dns.message
import dns.rcode
import pytest

from dnsserver import WIRE_ZONES, frame, rrset_texts, wait_for

IDLE_TIMEOUT = 1.0
MAX_CONNECTIONS = 3


def config_file(directory, text: str):
    path = directory / "gslb.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def idle_server(start_server, tmp_path_factory):
    """A server that closes TCP connections idle for 1 second. (Both tcp keys are given: either one
    alone is rejected, see test_check_cli.py::test_config_tcp_key_alone_is_accepted.)"""
    config = config_file(tmp_path_factory.mktemp("idle"),
                         f"tcp: {{idle_timeout: {IDLE_TIMEOUT:g}, max_connections: 256}}\n")
    return start_server(WIRE_ZONES, config=config)


@pytest.fixture(scope="module")
def capped_server(start_server, tmp_path_factory):
    """A server that holds at most 3 TCP connections at once (and keeps the long idle timeout
    under pressure, so these tests see the cap alone; tests/test_tcp_hardening.py tests the rest)."""
    config = config_file(tmp_path_factory.mktemp("capped"),
                         f"tcp: {{max_connections: {MAX_CONNECTIONS}, idle_timeout: 30, busy_idle_timeout: 30}}\n")
    return start_server(WIRE_ZONES, config=config)


def query_wire(name: str, rdtype: str = "A", ident: int = 0) -> bytes:
    return dns.message.make_query(name, rdtype, id=ident).to_wire()


def answers_on(stream, name: str = "www.wire.example.", ident: int = 7) -> bool:
    """One query over an open connection; True when its reply came back on it."""
    try:
        stream.send(query_wire(name, ident=ident))
    except (ConnectionResetError, BrokenPipeError):
        return False
    wire = stream.recv_message(timeout=2)
    return wire is not None and dns.message.from_wire(wire).id == ident


# -- framing -------------------------------------------------------------------------------------

def test_tcp_reply_is_framed_with_a_2_byte_length_rfc1035_4_2_2(wire_server):
    with wire_server.tcp() as stream:
        stream.send(query_wire("www.wire.example.", ident=99))
        length = stream.sock.recv(2, socket.MSG_WAITALL)
        assert len(length) == 2
        size = int.from_bytes(length, "big")
        body = stream.sock.recv(size, socket.MSG_WAITALL)
        assert len(body) == size
    reply = dns.message.from_wire(body)
    assert reply.id == 99
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.10"}


def test_query_split_across_segments_is_reassembled_rfc7766_8(wire_server):
    wire = frame(query_wire("mail.wire.example.", ident=5))
    with wire_server.tcp() as stream:
        stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (wire[:1], wire[1:2], wire[2:9], wire[9:]):
            stream.send_raw(piece)
        reply = dns.message.from_wire(stream.recv_message())
    assert reply.id == 5
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.25"}


def test_connection_stays_open_for_several_queries_in_turn_rfc7766_6_2_1(wire_server):
    with wire_server.tcp() as stream:
        for ident in range(1, 6):
            assert answers_on(stream, ident=ident)


# -- pipelining (RFC 7766 section 6.2.1.1) -----------------------------------------------------------

PIPELINED = {
    101: ("www.wire.example.", "A", {"192.0.2.10"}),
    102: ("mail.wire.example.", "A", {"192.0.2.25"}),
    103: ("www.wire.example.", "AAAA", {"2001:db8::10"}),
    104: ("_sip._tcp.wire.example.", "SRV", {"10 5 5060 sip.wire.example."}),
    105: ("10.2.0.192.in-addr.arpa.", "PTR", {"www.wire.example."}),
    106: ("www.child.wire.example.", "A", {"192.0.2.111"}),
    107: ("nope.wire.example.", "A", set()),
    108: ("big1232.wire.example.", "AAAA", {f"2001:db8:1232::{i:x}" for i in range(1, 61)}),
}


def test_pipelined_queries_on_one_connection_are_all_answered_rfc7766_6_2_1_1(wire_server):
    data = b"".join(frame(query_wire(name, rdtype, ident)) for ident, (name, rdtype, _) in PIPELINED.items())
    with wire_server.tcp() as stream:
        stream.send_raw(data)  # every query written before any reply is read
        replies = [stream.recv_message(timeout=2) for _ in PIPELINED]
    assert None not in replies
    by_id = {reply.id: reply for reply in map(dns.message.from_wire, replies)}
    assert set(by_id) == set(PIPELINED)
    for ident, (name, rdtype, expected) in PIPELINED.items():
        reply = by_id[ident]
        assert reply.question[0].name.to_text() == name
        assert rrset_texts(reply.answer, name, rdtype) == expected


# -- idle timeout (RFC 7766 section 6.2.3) ----------------------------------------------------------

def test_silent_connection_is_closed_after_the_idle_timeout_rfc7766_6_2_3(idle_server):
    started = time.monotonic()
    with idle_server.tcp() as stream:
        assert stream.closed_by_peer(timeout=IDLE_TIMEOUT + 4), "still open well past the idle timeout"
    elapsed = time.monotonic() - started
    assert elapsed >= IDLE_TIMEOUT * 0.8, f"closed after {elapsed:.2f}s, before the idle timeout"


def test_idle_timeout_counts_from_the_last_query(idle_server):
    with idle_server.tcp() as stream:
        assert answers_on(stream, ident=1)
        last = time.monotonic()
        assert stream.closed_by_peer(timeout=IDLE_TIMEOUT + 4)
        assert time.monotonic() - last >= IDLE_TIMEOUT * 0.8


def test_idle_server_still_answers_new_connections(idle_server, tcp):
    reply = idle_server.query("www.wire.example.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR


# -- connection cap ----------------------------------------------------------------------------

def open_served(server, count: int) -> list:
    """`count` connections, each proven served by one query. A connection from an earlier test
    may still hold a slot for a moment after its close, so a refused one is retried."""
    streams = []

    def one_more() -> bool:
        stream = server.tcp()
        if answers_on(stream, ident=len(streams) + 1):
            streams.append(stream)
            return True
        stream.close()
        return False

    try:
        for _ in range(count):
            wait_for(one_more, timeout=5, what=f"connection {len(streams) + 1} to be served")
    except BaseException:
        for stream in streams:
            stream.close()
        raise
    return streams


def test_a_connection_beyond_the_cap_closes_the_longest_idle_one_rfc7766_6_2_3(capped_server):
    """At the cap the server makes room as NSD does: the new connection is served and the one
    idle the longest is closed; the others keep working. (Issue 11: refusing the new one let
    idle connections hold every slot.)"""
    streams = open_served(capped_server, MAX_CONNECTIONS)
    try:
        for ident, stream in enumerate(streams[1:], 21):  # streams[0] is now the longest idle
            assert answers_on(stream, ident=ident)
        with capped_server.tcp() as extra:
            assert answers_on(extra, ident=42), "a connection over the cap was not served"
            assert streams[0].closed_by_peer(timeout=2), "the longest-idle connection was not closed"
            for ident, stream in enumerate(streams[1:], 11):
                assert answers_on(stream, ident=ident), "a recently used connection was closed"
    finally:
        for stream in streams:
            stream.close()


def test_a_closed_connection_frees_its_slot(capped_server):
    streams = open_served(capped_server, MAX_CONNECTIONS)
    try:
        streams.pop().close()

        def new_connection_served() -> bool:
            with capped_server.tcp() as stream:
                return answers_on(stream, ident=77)

        wait_for(new_connection_served, timeout=5, what="a new connection after one was closed")
    finally:
        for stream in streams:
            stream.close()


def test_udp_is_not_limited_by_the_tcp_cap(capped_server):
    streams = open_served(capped_server, MAX_CONNECTIONS)
    try:
        reply = capped_server.query("www.wire.example.", "A")
        assert reply.rcode() == dns.rcode.NOERROR
    finally:
        for stream in streams:
            stream.close()


def test_replies_are_sent_after_the_client_half_closes_rfc7766_6_2_4(wire_server):
    queries = {201: "www.wire.example.", 202: "mail.wire.example.", 203: "sip.wire.example."}
    with wire_server.tcp() as stream:
        stream.send_raw(b"".join(frame(query_wire(name, ident=ident)) for ident, name in queries.items()))
        stream.sock.shutdown(socket.SHUT_WR)  # "no more queries", not "no more replies"
        replies = [stream.recv_message(timeout=2) for _ in queries]
        assert None not in replies
        assert {dns.message.from_wire(reply).id for reply in replies} == set(queries)
        assert stream.closed_by_peer(timeout=2), "the server kept the connection open after EOF"
