"""Batched UDP I/O (gslb/dns/_udpbatch.c, gslb/dns/udpio.py) over real sockets.

The extension's `drain()` is driven directly against sockets a plain client writes to and reads
from; then the reader on an event loop (asyncio's and uvloop's); then `gslb serve` itself, which
reports its mode and can be forced to either one. The wire tests (tests/test_wire_*.py) run
against whichever mode $GSLB_UDP_IO picks: .ci/run runs them once per mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import pytest
from conftest import IPV6
from dnsserver import WIRE_ZONES, gslb_command, wait_for
from opsserver import start_with_api

from gslb.dns import udpio
from gslb.settings import load_settings

needs_extension = pytest.mark.skipif(not udpio.available(), reason="gslb.dns._udpbatch is not built "
                                     "(pip install . or python tools/build_udpbatch.py)")
if udpio.available():
    from gslb.dns._udpbatch import BATCH, MIN_SLOT, drain
else:
    BATCH = MIN_SLOT = 0

DEADLINE = 5.0


def server_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setblocking(False)
    return sock


def client_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.settimeout(DEADLINE)
    return sock


def drain_until(sock: socket.socket, respond, expected: int, *, limit=None, max_batches: int = 4,
                slot: int = udpio.SLOT) -> tuple[list[int], list[tuple[int, ...]], list[BaseException]]:
    """Call drain() whenever the socket is readable until `expected` datagrams were received.
    Returns the totals (received, sent, truncated, dropped), each call's counts, and the errors."""
    buffer = bytearray(BATCH * slot)
    totals, calls, errors = [0, 0, 0, 0], [], []
    deadline = time.monotonic() + DEADLINE
    while totals[0] < expected:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"received {totals[0]} of {expected} datagrams within {DEADLINE}s"
        select.select([sock], [], [], remaining)
        *counts, error = drain(sock.fileno(), buffer, respond, limit, max_batches)
        calls.append(tuple(counts))
        totals = [a + b for a, b in zip(totals, counts)]
        if error is not None:
            errors.append(error)
    return totals, calls, errors


def receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recvfrom(65535)[0] for _ in range(count)]


def echo(data: bytes, source: str) -> bytes:
    return b"R" + data


# -- the extension ------------------------------------------------------------------------------

@needs_extension
def test_a_burst_larger_than_a_batch_is_answered_in_arrival_order():
    with server_socket() as server, client_socket() as client:
        queries = [b"q%04d" % i for i in range(3 * BATCH + 7)]
        for query in queries:
            client.sendto(query, server.getsockname())
        totals, _, errors = drain_until(server, echo, len(queries))
        assert totals == [len(queries), len(queries), 0, 0] and not errors
        assert receive(client, len(queries)) == [b"R" + query for query in queries]


@needs_extension
def test_each_call_reads_at_most_max_batches_batches():
    """Bounded work per wakeup: the event loop gets the thread back after max_batches batches."""
    with server_socket() as server, client_socket() as client:
        for i in range(5 * BATCH):
            client.sendto(b"q%d" % i, server.getsockname())
        _, calls, _ = drain_until(server, lambda data, source: None, 5 * BATCH, max_batches=2)
        assert max(received for received, *_ in calls) <= 2 * BATCH
        assert len(calls) >= 3


@needs_extension
def test_respond_gets_the_source_address_as_asyncio_gives_it_ipv4():
    with server_socket() as server, client_socket() as client:
        client.bind(("127.0.0.1", 0))
        sources: list[str] = []
        client.sendto(b"x", server.getsockname())
        drain_until(server, lambda data, source: sources.append(source), 1)
        assert sources == [client.getsockname()[0]] == ["127.0.0.1"]


@needs_extension
@pytest.mark.skipif(not IPV6, reason="IPv6 loopback ([::1]) is not available on this host")
def test_ipv6_queries_are_answered_with_the_source_as_asyncio_gives_it():
    with server_socket(socket.AF_INET6) as server, client_socket(socket.AF_INET6) as client:
        sources: list[str] = []
        for i in range(3):
            client.sendto(b"six%d" % i, server.getsockname()[:2])

        def respond(data: bytes, source: str) -> bytes:
            sources.append(source)
            return b"R" + data

        totals, _, _ = drain_until(server, respond, 3)
        assert totals[:2] == [3, 3] and sources == ["::1"] * 3
        assert receive(client, 3) == [b"Rsix0", b"Rsix1", b"Rsix2"]


@needs_extension
def test_a_datagram_larger_than_a_slot_is_dropped_and_counted():
    with server_socket() as server, client_socket() as client:
        client.sendto(b"a", server.getsockname())
        client.sendto(b"B" * (MIN_SLOT + 1), server.getsockname())  # one byte over the slot
        client.sendto(b"c" * MIN_SLOT, server.getsockname())  # exactly a slot: answered
        seen: list[int] = []

        def respond(data: bytes, source: str) -> bytes:
            seen.append(len(data))
            return b"R" + data[:1]

        totals, _, errors = drain_until(server, respond, 3, slot=MIN_SLOT)
        assert totals == [3, 2, 1, 0] and not errors
        assert seen == [1, MIN_SLOT]
        assert receive(client, 2) == [b"Ra", b"Rc"]


@needs_extension
def test_a_none_reply_sends_nothing_and_later_replies_keep_their_order():
    with server_socket() as server, client_socket() as client:
        for query in (b"1", b"drop", b"2", b"drop", b"3"):
            client.sendto(query, server.getsockname())
        totals, _, _ = drain_until(server, lambda data, source: None if data == b"drop" else b"R" + data, 5)
        assert totals == [5, 3, 0, 0]
        assert receive(client, 3) == [b"R1", b"R2", b"R3"]
        client.settimeout(0.05)
        with pytest.raises(socket.timeout):  # nothing more: the fence is the three replies above
            client.recvfrom(65535)


@needs_extension
def test_an_exception_in_respond_is_returned_and_the_other_datagrams_are_answered():
    with server_socket() as server, client_socket() as client:
        for query in (b"1", b"boom", b"2"):
            client.sendto(query, server.getsockname())

        def respond(data: bytes, source: str) -> bytes:
            if data == b"boom":
                raise ValueError("bad packet")
            return b"R" + data

        totals, _, errors = drain_until(server, respond, 3)
        assert totals[:2] == [3, 2]
        assert len(errors) == 1 and isinstance(errors[0], ValueError) and str(errors[0]) == "bad packet"
        assert receive(client, 2) == [b"R1", b"R2"]


@needs_extension
def test_a_reply_that_is_not_bytes_like_is_a_type_error_not_a_crash():
    with server_socket() as server, client_socket() as client:
        client.sendto(b"1", server.getsockname())
        client.sendto(b"2", server.getsockname())
        totals, _, errors = drain_until(server, lambda data, source: "text" if data == b"1" else bytearray(b"R2"), 2)
        assert totals[:2] == [2, 1] and isinstance(errors[0], TypeError)
        assert receive(client, 1) == [b"R2"]


@needs_extension
def test_limit_sees_each_reply_and_its_source_and_decides_what_is_sent():
    """The response rate limiting hook: limit(reply, source) -> bytes | None, per reply."""
    with server_socket() as server, client_socket() as client:
        for query in (b"1", b"2", b"3"):
            client.sendto(query, server.getsockname())
        seen: list[tuple[bytes, str]] = []

        def limit(reply: bytes, source: str) -> bytes | None:
            seen.append((reply, source))
            return None if reply == b"R2" else reply + b"!"

        totals, _, _ = drain_until(server, echo, 3, limit=limit)
        assert totals[:2] == [3, 2]
        assert seen == [(b"R1", "127.0.0.1"), (b"R2", "127.0.0.1"), (b"R3", "127.0.0.1")]
        assert receive(client, 2) == [b"R1!", b"R3!"]


@needs_extension
def test_a_reply_the_kernel_refuses_is_skipped_and_the_rest_of_the_batch_still_goes_out():
    """EMSGSIZE (a reply over IPv4's 65,507-byte limit) fails one message of the sendmmsg:
    the partial send is resumed after it."""
    with server_socket() as server, client_socket() as client:
        for query in (b"1", b"huge", b"2"):
            client.sendto(query, server.getsockname())
        totals, _, _ = drain_until(server, lambda data, source: b"x" * 70000 if data == b"huge" else b"R" + data, 3)
        assert totals == [3, 2, 0, 1]
        assert receive(client, 2) == [b"R1", b"R2"]


@needs_extension
def test_replies_to_a_client_that_does_not_read_are_dropped_without_blocking(tmp_path):
    """EAGAIN on send: a datagram socket whose peer's queue is full (AF_UNIX datagrams, where the
    kernel pushes back instead of dropping as it does on UDP loopback). drain() drops the rest of
    the batch and returns at once; it neither blocks nor retries."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        server.bind(str(tmp_path / "server"))
        server.setblocking(False)
        client.bind(str(tmp_path / "client"))
        client.setblocking(False)
        received = dropped = sent = 0
        for _ in range(4):  # the client never reads: its queue fills, then every send would block
            count = 0
            while True:
                try:
                    client.sendto(b"q", str(tmp_path / "server"))
                    count += 1
                except BlockingIOError:
                    break
            started = time.monotonic()
            totals, _, errors = drain_until(server, lambda data, source: b"r" * 100, count)
            assert time.monotonic() - started < 1.0 and not errors
            received += totals[0]
            sent += totals[1]
            dropped += totals[3]
        assert dropped > 0 and sent > 0 and sent + dropped == received


@needs_extension
def test_drain_keeps_no_reference_to_replies_sources_or_errors():
    """The reference counting of _udpbatch.c (see the ownership notes at its top): after many
    datagrams through every path - reply, limited reply, None, exception, truncated - the objects
    the callables returned are held by nobody new."""
    reply, other, limited, failure = b"reply", b"other", bytearray(b"limited"), ValueError("kept once")
    things = (reply, other, limited, failure)
    answers = {b"send": reply, b"limit": other, b"none": None}
    counts_before = [sys.getrefcount(thing) for thing in things]

    def respond(data: bytes, source: str):
        if data == b"fail":
            raise failure
        return answers[data]

    kinds = [b"send", b"limit", b"none", b"fail", b"x" * (MIN_SLOT + 1)]
    total = 6 * BATCH
    with server_socket() as server, client_socket() as client:
        for i in range(total):
            client.sendto(kinds[i % len(kinds)], server.getsockname())
        totals, _, errors = drain_until(server, respond, total, slot=MIN_SLOT,
                                        limit=lambda r, source: limited if r is other else r)
        assert totals[2] == sum(1 for i in range(total) if i % len(kinds) == 4)
        assert totals[1] == sum(1 for i in range(total) if i % len(kinds) in (0, 1))
        assert errors and all(error is failure for error in errors)
    del errors
    failure.__traceback__ = None  # the traceback refers to respond's frame, not to a leak
    assert [sys.getrefcount(thing) for thing in things] == counts_before


@needs_extension
def test_drain_refuses_a_buffer_too_small_for_a_batch():
    with server_socket() as server:
        with pytest.raises(ValueError, match="slots"):
            drain(server.fileno(), bytearray(BATCH * MIN_SLOT - 1), echo, None, 1)
        with pytest.raises(TypeError):
            drain(server.fileno(), b"read-only" * 10000, echo, None, 1)


# -- the reader on an event loop ----------------------------------------------------------------

def loops() -> list:
    kinds = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
        kinds.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    except ImportError:
        pass
    return kinds


class Answerer:
    """respond_udp: `prefix` + the query, or no reply when prefix is None."""

    def __init__(self, prefix: bytes | None, on_query=None) -> None:
        self.prefix = prefix
        self.on_query = on_query
        self.queries = 0

    def respond_udp(self, packet: bytes, source: str) -> bytes | None:
        self.queries += 1
        if self.on_query is not None:
            self.on_query()
        return None if self.prefix is None else self.prefix + packet


class Server:
    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer


@needs_extension
@pytest.mark.parametrize("new_loop", loops())
def test_the_reader_answers_from_the_current_answerer_after_a_swap(new_loop):
    """A reload replaces server.answerer: the next batch is answered by the new one."""
    loop = new_loop()
    sock, client = server_socket(), client_socket()
    server = Server(Answerer(b"old:"))
    reader = udpio.BatchedUdpReader(loop, sock, server)
    try:
        async def exchange(query: bytes) -> bytes:
            client.sendto(query, sock.getsockname())
            return await loop.run_in_executor(None, lambda: client.recvfrom(65535)[0])

        assert loop.run_until_complete(exchange(b"1")) == b"old:1"
        server.answerer = Answerer(b"new:")
        assert loop.run_until_complete(exchange(b"2")) == b"new:2"
        assert reader.counters.received == reader.counters.sent == 2
    finally:
        reader.close()
        client.close()
        loop.close()
    assert sock.fileno() == -1  # close() closed the socket


@needs_extension
@pytest.mark.parametrize("new_loop", loops())
def test_a_flood_does_not_starve_the_event_loop(new_loop, monkeypatch):
    """With datagrams still waiting, the reader hands the loop back after MAX_BATCHES batches:
    a callback scheduled during the first batch runs before the backlog is drained."""
    monkeypatch.setattr(udpio, "MAX_BATCHES", 1)
    loop = new_loop()
    sock, client = server_socket(), client_socket()
    total = 4 * BATCH
    answered_when_callback_ran: list[int] = []
    done = loop.create_future()

    def on_query() -> None:
        answerer = server.answerer
        if answerer.queries == 1:
            loop.call_soon(lambda: answered_when_callback_ran.append(answerer.queries))
        if answerer.queries == total and not done.done():
            done.set_result(None)

    server = Server(Answerer(None, on_query))
    for i in range(total):
        client.sendto(b"q%d" % i, sock.getsockname())
    reader = udpio.BatchedUdpReader(loop, sock, server)
    try:
        loop.run_until_complete(asyncio.wait_for(done, DEADLINE))
        assert answered_when_callback_ran and answered_when_callback_ran[0] <= BATCH < total
    finally:
        reader.close()
        client.close()
        loop.close()


# -- the choice of mode -------------------------------------------------------------------------

def test_the_mode_is_batched_by_default_when_built_and_the_environment_can_force_it(monkeypatch):
    monkeypatch.delenv(udpio.ENV, raising=False)
    assert udpio.choose(None) == (udpio.BATCHED if udpio.available() else udpio.PER_DATAGRAM)
    monkeypatch.setenv(udpio.ENV, "per-datagram")
    assert udpio.choose(None) == udpio.choose("auto") == udpio.PER_DATAGRAM
    assert udpio.describe(udpio.PER_DATAGRAM).startswith("per-datagram")
    assert udpio.describe(udpio.BATCHED) == "batched (recvmmsg)"


def test_the_config_key_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(udpio.ENV, "batched" if udpio.available() else "auto")
    config = tmp_path / "gslb.yaml"
    config.write_text("udp_io: per-datagram\n")
    settings, problems = load_settings(config, {})
    assert not problems and settings.udp_io == "per-datagram"


def test_an_unknown_mode_is_one_line_naming_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv(udpio.ENV, "fast")
    _, problems = load_settings(None, {})
    assert [str(p) for p in problems] == [
        "the environment variable GSLB_UDP_IO must be batched, per-datagram or auto, got 'fast'"]
    monkeypatch.delenv(udpio.ENV)
    config = tmp_path / "gslb.yaml"
    config.write_text("udp_io: quick\n")
    _, problems = load_settings(config, {})
    assert [str(p) for p in problems] == [f"{config}: udp_io: must be batched, per-datagram or auto, got 'quick'"]


def test_batched_without_the_extension_is_refused_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(udpio, "_udpbatch", None)
    monkeypatch.delenv(udpio.ENV, raising=False)
    config = tmp_path / "gslb.yaml"
    config.write_text("udp_io: batched\n")
    _, problems = load_settings(config, {})
    assert len(problems) == 1 and "gslb.dns._udpbatch" in str(problems[0]) and "per-datagram" in str(problems[0])
    assert udpio.choose(None) == udpio.PER_DATAGRAM
    assert udpio.describe(udpio.PER_DATAGRAM) == "per-datagram (gslb.dns._udpbatch is not built)"


# -- gslb serve ---------------------------------------------------------------------------------

def udp_line(server) -> str:
    return next(line for line in server.stdout_lines if line.startswith("gslb: udp: "))


@pytest.mark.parametrize("mode", ["batched", "per-datagram"])
def test_serve_reports_the_forced_mode_and_answers_in_it(start_server, monkeypatch, mode):
    if mode == "batched" and not udpio.available():
        pytest.skip("gslb.dns._udpbatch is not built")
    monkeypatch.setenv(udpio.ENV, mode)
    listen = ["127.0.0.1:0"] + (["[::1]:0"] if IPV6 else [])
    server = start_server(WIRE_ZONES, listen=listen)
    assert udp_line(server) == f"gslb: udp: {udpio.describe(mode)}"
    for client in server.clients:
        reply = client.query("www.wire.example.", "A")
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer


@pytest.mark.parametrize("mode", ["batched", "per-datagram"])
def test_status_and_metrics_name_the_udp_path(monkeypatch, tmp_path, mode):
    if mode == "batched" and not udpio.available():
        pytest.skip("gslb.dns._udpbatch is not built")
    monkeypatch.setenv(udpio.ENV, mode)
    server, url = start_with_api(WIRE_ZONES, tmp_path / "logs")
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=DEADLINE) as response:
            assert json.load(response)["udp_io"] == mode
        with urllib.request.urlopen(f"{url}/metrics", timeout=DEADLINE) as response:
            assert f'gslb_udp_io_info{{mode="{mode}"}} 1.0' in response.read().decode().splitlines()
        if mode == "batched":  # a query over the 4,096-byte slot is counted, not answered
            client = server.client
            assert client.send_udp_fenced(b"\x12\x34" + b"\x00" * (udpio.SLOT + 100)) is None

            def truncated_counted() -> bool:
                with urllib.request.urlopen(f"{url}/metrics", timeout=DEADLINE) as response:
                    return 'gslb_dns_udp_dropped_total{reason="truncated"} 1.0' in response.read().decode().splitlines()

            wait_for(truncated_counted, DEADLINE, "the truncated datagram in /metrics")
    finally:
        server.stop()


def test_serve_without_a_mode_says_which_one_it_chose(wire_server):
    expected = udpio.choose(None)
    assert udp_line(wire_server) == f"gslb: udp: {udpio.describe(expected)}"


def test_serve_refuses_an_unknown_mode_in_one_line():
    env = {**os.environ, udpio.ENV: "fast"}
    result = subprocess.run(gslb_command("serve", "--zones", str(WIRE_ZONES), "--listen", "127.0.0.1:0", "--api", "off"),
                            capture_output=True, text=True, env=env, timeout=60, check=False, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode != 0
    assert "GSLB_UDP_IO must be batched, per-datagram or auto, got 'fast'" in result.stderr


def test_a_client_that_never_reads_its_replies_does_not_stop_the_server(wire_server):
    """A flood from a socket that reads nothing (its tiny receive buffer overflows): the server
    keeps answering everyone else, in whichever mode it runs."""
    client = wire_server.client
    query = dns.message.make_query("www.wire.example.", "A").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        flood.setblocking(False)
        for _ in range(3000):
            try:
                flood.sendto(query, (client.host, client.port))
            except BlockingIOError:
                select.select([], [flood], [], 1.0)
        reply = wait_for(lambda: _answered(client), DEADLINE, "an answer to another client after the flood")
        assert reply.rcode() == dns.rcode.NOERROR
    assert wire_server.alive()


def _answered(client):
    try:
        return client.query("www.wire.example.", "A", timeout=0.5)
    except dns.exception.Timeout:
        return None


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
