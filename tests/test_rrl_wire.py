"""Response rate limiting over real sockets: a server with `rrl: {rate: 5, slip: 2, ...}`, asked
from several 127.0.0.0/8 source addresses (each /24 is one client prefix)."""

from __future__ import annotations

import socket
import urllib.request

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsserver import WIRE_ZONES

RATE = 5
BURST = 40


@pytest.fixture(scope="module")
def rrl_server(start_server, tmp_path_factory):
    from opsserver import read_api_url

    config = tmp_path_factory.mktemp("rrl") / "gslb.yaml"
    config.write_text(f"rrl: {{rate: {RATE}, slip: 2, window: 5, exempt: [127.0.3.0/24]}}\n")
    server = start_server(WIRE_ZONES, config=config, extra=["--api", "127.0.0.1:0"])
    server.api = read_api_url(server)
    return server


def burst(server, source: str, count: int = BURST, ecs: bool = False) -> dict[str, list[dns.message.Message]]:
    """`count` A queries from `source` back to back, then an NXDOMAIN query (another kind, so
    its own credit) as a fence: replies come in order, so once the fence's is in, every reply
    that was sent is in. Returns the replies as {"full": [...], "slipped": [...]}; the rest
    were dropped."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        for ident in range(1, count + 1):
            options = [dns.edns.ECSOption(f"10.{ident}.0.0", 16)] if ecs else None
            query = dns.message.make_query("www.wire.example.", "A", id=ident, use_edns=0 if ecs else None,
                                           options=options)
            sock.sendto(query.to_wire(), (server.host, server.port))
        fence = dns.message.make_query("nope.wire.example.", "A", id=60000)
        sock.sendto(fence.to_wire(), (server.host, server.port))
        replies: dict[str, list[dns.message.Message]] = {"full": [], "slipped": []}
        while True:
            reply = dns.message.from_wire(sock.recv(65535))
            if reply.id == fence.id:
                return replies
            replies["slipped" if reply.flags & dns.flags.TC else "full"].append(reply)


def test_over_the_rate_replies_are_dropped_and_every_other_one_slips_truncated(rrl_server):
    replies = burst(rrl_server, "127.0.4.1")
    full, slipped = replies["full"], replies["slipped"]
    dropped = BURST - len(full) - len(slipped)
    assert RATE <= len(full) <= 2 * RATE, f"{len(full)} full answers at {RATE}/s"  # a second may turn mid-burst
    assert all(reply.answer for reply in full)
    assert slipped and dropped, f"{len(slipped)} slipped, {dropped} dropped"
    assert abs(len(slipped) - dropped) <= 1, "slip 2: every other limited reply slips"
    for reply in slipped:
        assert reply.flags & dns.flags.TC
        assert not reply.answer and not reply.authority
        assert reply.question[0].name.to_text() == "www.wire.example."


def test_a_real_client_retries_a_slipped_reply_over_tcp_and_gets_the_answer(rrl_server):
    burst(rrl_server, "127.0.5.1")  # the prefix is over its rate now
    query = dns.message.make_query("www.wire.example.", "A")
    over_tcp = 0
    for _ in range(6):  # the prefix stays limited for the 5 s window; half the limited replies slip
        try:
            reply, used_tcp = dns.query.udp_with_fallback(query, rrl_server.host, port=rrl_server.port,
                                                          timeout=0.5, source="127.0.5.1")
        except dns.exception.Timeout:
            continue  # dropped: a resolver would ask again
        assert reply.answer
        over_tcp += used_tcp
        if over_tcp >= 2:
            break
    assert over_tcp >= 1, "no slipped reply was retried over TCP"


def test_tcp_is_never_limited(rrl_server):
    burst(rrl_server, "127.0.6.1")
    for ident in range(30):
        query = dns.message.make_query("www.wire.example.", "A", id=ident)
        reply = dns.query.tcp(query, rrl_server.host, port=rrl_server.port, timeout=2, source="127.0.6.1")
        assert reply.answer and not reply.flags & dns.flags.TC


def test_an_exempt_prefix_is_not_limited(rrl_server):
    replies = burst(rrl_server, "127.0.3.9")
    assert len(replies["full"]) == BURST and not replies["slipped"]


def test_ecs_does_not_change_the_limit_key_the_packet_source_does(rrl_server):
    """Each query claims another client subnet: still one source prefix, still limited."""
    replies = burst(rrl_server, "127.0.7.1", ecs=True)
    assert len(replies["full"]) <= 2 * RATE
    other = burst(rrl_server, "127.0.8.1", count=RATE)
    assert len(other["full"]) == RATE, "another source prefix has its own credit"


def test_limited_responses_are_counted_by_action(rrl_server):
    burst(rrl_server, "127.0.9.1")
    with urllib.request.urlopen(rrl_server.api + "/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("gslb_dns_rrl_limited_total{"):
            action = line.split('action="', 1)[1].split('"', 1)[0]
            counts[action] = counts.get(action, 0) + float(line.rsplit(" ", 1)[1])
    assert counts.get("slipped", 0) > 0 and counts.get("dropped", 0) > 0, counts
