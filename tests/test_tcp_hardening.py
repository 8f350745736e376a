"""TCP DNS under hostile clients (issue 11): every slot is reclaimed, and one client cannot take
TCP, or UDP, away from the others."""

from __future__ import annotations

import socket
import struct
import time

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


def warm(server):
    """The server, once it answers TCP (a loaded machine may still be busy starting it)."""
    wait_for(lambda: tcp_answered(server), timeout=15, what="the first TCP answer")
    return server


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
    return warm(start_server(WIRE_ZONES))


def test_connections_reset_right_after_connecting_do_not_use_up_the_tcp_slots(default_server):
    assert tcp_answered(default_server)
    for _ in range(600):  # well past the 256-connection cap
        reset_right_after_connect(default_server.host, default_server.port)
    wait_for(lambda: tcp_answered(default_server), timeout=10, what="a TCP query answered after 600 resets")
    for _ in range(5):
        assert tcp_answered(default_server)
    assert default_server.alive()


# -- item 2: slots are reclaimed --------------------------------------------------------------------

def query_wire(name: str = "www.wire.example.", ident: int = 0) -> bytes:
    return dns.message.make_query(name, "A", id=ident).to_wire()


def answers_on(stream, ident: int = 7) -> bool:
    """One query over an open connection; True when its reply came back on it."""
    try:
        stream.send(query_wire(ident=ident))
    except OSError:
        return False
    wire = stream.recv_message(timeout=2)
    return wire is not None and dns.message.from_wire(wire).id == ident


PER_CLIENT = 2
SLOTS = 8


@pytest.fixture(scope="module")
def slots_server(start_server, tmp_path_factory):
    """8 slots, 2 per client address; the idle timeouts long, so only the caps reclaim slots."""
    config = config_file(tmp_path_factory.mktemp("slots"),
                         f"tcp: {{max_connections: {SLOTS}, max_connections_per_client: {PER_CLIENT},"
                         " idle_timeout: 30, busy_idle_timeout: 30}\n")
    return warm(start_server(WIRE_ZONES, config=config))


def test_a_client_address_holds_at_most_its_cap_its_longest_idle_one_makes_room(slots_server):
    other = slots_server.tcp(source="127.0.0.62")
    mine = [slots_server.tcp(source="127.0.0.61") for _ in range(PER_CLIENT)]
    try:
        assert answers_on(other, ident=1)
        for ident, stream in enumerate(mine, 2):
            assert answers_on(stream, ident=ident)
        with slots_server.tcp(source="127.0.0.61") as extra:
            assert answers_on(extra, ident=9)
            assert mine[0].closed_by_peer(timeout=2), "the address held more than its cap"
            assert answers_on(mine[1], ident=10)
            assert answers_on(other, ident=11), "another address's connection was closed"
    finally:
        for stream in [other, *mine]:
            stream.close()


def test_connections_trickling_bytes_do_not_keep_fresh_queries_out(slots_server):
    """Issue 11: 300 clients trickling a byte every few seconds held every slot, and 0 of 119
    fresh TCP queries were answered. Here 3 times the slots, from many addresses."""
    tricklers = []
    try:
        for index in range(3 * SLOTS):
            stream = slots_server.tcp(source=f"127.0.1.{index + 1}")
            stream.send_raw(b"\x00")  # the first byte of a length: a query that never completes
            tricklers.append(stream)
        for stream in tricklers:
            try:
                stream.send_raw(b"\x1d")
            except OSError:
                pass  # already closed to make room
        for _ in range(10):
            assert tcp_answered(slots_server), "a fresh TCP query was not answered"
    finally:
        for stream in tricklers:
            stream.close()


@pytest.fixture(scope="module")
def pressure_server(start_server, tmp_path_factory):
    """4 slots: above 2 open, the idle timeout drops from 30 s to 0.3 s."""
    config = config_file(tmp_path_factory.mktemp("pressure"),
                         "tcp: {max_connections: 4, idle_timeout: 30, busy_idle_timeout: 0.3}\n")
    return warm(start_server(WIRE_ZONES, config=config))


def test_idle_timeout_is_lowered_under_pressure_rfc7766_6_2_3(pressure_server):
    """3 of 4 slots taken: idle connections are closed after 0.3 s, not 30 s, until the pressure
    is gone (2 or fewer open)."""
    streams = [pressure_server.tcp(source=f"127.0.2.{index + 1}") for index in range(3)]
    try:
        for ident, stream in enumerate(streams, 1):
            assert answers_on(stream, ident=ident)
        started = time.monotonic()
        wait_for(lambda: any(stream.closed_by_peer(timeout=0.05) for stream in streams), timeout=10,
                 what="an idle connection closed under pressure")
        assert time.monotonic() - started < 10  # far below the 30 s idle timeout
    finally:
        for stream in streams:
            stream.close()


IDLE = 1.0
LIFETIME = 3.0
QUEUED = 4096


@pytest.fixture(scope="module")
def deadline_server(start_server, tmp_path_factory):
    """Idle timeout 1 s, lifetime 3 s, 4 KiB of queued replies per connection; the API on, for
    the query counters."""
    from opsserver import read_api_url

    config = config_file(tmp_path_factory.mktemp("deadlines"),
                         f"tcp: {{idle_timeout: {IDLE}, lifetime: {LIFETIME}, max_queued_bytes: {QUEUED}}}\n")
    server = start_server(WIRE_ZONES, config=config, extra=["--api", "127.0.0.1:0"])
    server.api = read_api_url(server)
    return warm(server)


def test_a_client_trickling_one_byte_at_a_time_is_closed_after_the_idle_timeout(deadline_server):
    """Every byte used to restart the idle timer: a byte every few seconds held a slot forever.
    A query must now complete within the idle timeout."""
    wire = frame_of(query_wire(ident=3))
    started = time.monotonic()
    with deadline_server.tcp() as stream:
        stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closed = False
        for byte in wire:
            try:
                stream.send_raw(bytes([byte]))
            except OSError:
                closed = True
                break
            if stream.closed_by_peer(timeout=IDLE / 4):  # the pace of the trickle
                closed = True
                break
        assert closed, "a trickling client outlived the idle timeout"
    elapsed = time.monotonic() - started
    assert IDLE * 0.8 <= elapsed < IDLE + 2, f"closed after {elapsed:.2f}s"


def test_a_busy_connection_is_closed_at_the_end_of_its_lifetime(deadline_server):
    started = time.monotonic()
    with deadline_server.tcp() as stream:
        ident = 0
        while time.monotonic() - started < LIFETIME + 5:
            ident += 1
            if not answers_on(stream, ident=ident):
                break
            if stream.closed_by_peer(timeout=IDLE / 4):
                break
        else:
            pytest.fail("a busy connection outlived its lifetime")
    elapsed = time.monotonic() - started
    assert LIFETIME * 0.8 <= elapsed < LIFETIME + 2, f"closed after {elapsed:.2f}s"
    assert ident > 3, "the connection was not served while it lived"


def tcp_answers_counted(server) -> float:
    """The server's count of TCP responses, from /metrics."""
    import urllib.request

    with urllib.request.urlopen(server.api + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gslb_dns_queries_total{") and 'transport="tcp"' in line)


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of a socket (1 = ESTABLISHED), read without reading any data."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def test_a_client_that_never_reads_its_replies_is_closed_with_bounded_output_queued(deadline_server):
    """Issue 11: a client pipelining queries and reading nothing stayed connected past the idle
    timeout with megabytes of replies queued for it."""
    data = b"".join(frame_of(query_wire(ident=i % 65536)) for i in range(20000))
    before = tcp_answers_counted(deadline_server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect((deadline_server.host, deadline_server.port))
        sock.setblocking(False)
        sent = 0
        started = time.monotonic()

        def closed() -> bool:
            nonlocal sent
            if sent < len(data):
                try:
                    sent += sock.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
                except OSError:
                    return True
            return tcp_state(sock) != 1

        wait_for(closed, timeout=IDLE + 8, what="the server to close a connection whose client reads nothing")
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    answered = wait_for(lambda: tcp_answers_counted(deadline_server) - before, timeout=5, what="the TCP counter")
    sent_queries = sent // len(frame_of(query_wire()))
    # ~55 bytes a reply: what the client's receive buffer, the kernel's send buffer (the queued
    # cap, doubled) and the queued cap hold, with room to spare (about 300 here; before the fix
    # about 5,400, and the connection stayed open).
    assert answered < 1500, f"{answered:.0f} of {sent_queries} queries answered for a client that reads nothing"
    assert elapsed < IDLE + 6


def frame_of(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


# -- item 5: a TCP flood does not starve UDP -----------------------------------------------------------

FLOOD = 20000


def test_udp_is_answered_while_one_tcp_connection_pipelines_20000_queries(default_server):
    """Issue 11: one connection with 60,000 pipelined queries held the event loop ~3 s, and UDP
    went unanswered meanwhile (20,000 held it over a second here before the fix). Every UDP query
    must be answered within 0.5 s during the flood."""
    import threading

    data = b"".join(frame_of(query_wire(ident=i % 65536)) for i in range(FLOOD))
    replies = 0
    finished = threading.Event()
    sock = socket.create_connection((default_server.host, default_server.port), timeout=30)

    def read_replies() -> None:
        nonlocal replies
        pending = b""
        try:
            while replies < FLOOD:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                pending += chunk
                while len(pending) >= 2 and len(pending) >= 2 + int.from_bytes(pending[:2], "big"):
                    pending = pending[2 + int.from_bytes(pending[:2], "big"):]
                    replies += 1
        except OSError:
            pass
        finally:
            finished.set()

    reader = threading.Thread(target=read_replies, daemon=True)
    reader.start()
    threading.Thread(target=sock.sendall, args=(data,), daemon=True).start()
    latencies = []
    try:
        wait_for(lambda: replies > 0, timeout=10, what="the first reply to the TCP flood")
        while not finished.is_set():
            started = time.monotonic()
            reply = dns.query.udp(dns.message.make_query("mail.wire.example.", "A"), default_server.host,
                                  port=default_server.port, timeout=5)
            latencies.append(time.monotonic() - started)
            assert reply.rcode() == dns.rcode.NOERROR
        assert finished.wait(timeout=60)
    finally:
        sock.close()
        reader.join(timeout=5)
    assert replies == FLOOD, f"{replies} of {FLOOD} pipelined queries answered"
    assert len(latencies) >= 5, "the flood was over before UDP was measured"
    assert max(latencies) < 0.5, f"a UDP query waited {max(latencies):.2f}s behind the TCP flood " \
                                 f"({len(latencies)} asked, median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms)"
