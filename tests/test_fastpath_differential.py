"""The fast path and the general (dnslib) path give the same response, field for field.

A large generated query set - names that exist, do not, are empty non-terminals, sit at or below
delegations, in mixed case; every common type and some unusual ones; with and without EDNS, DO,
payload sizes, ECS (IPv4, IPv6, source 0, malformed), NSID and unknown options; and malformed
packets - goes through both paths in one process. Where the fast path answers, dnspython must
read both replies as the same message (names compare case-insensitively, the one freedom the
fast path takes: it compresses owner names to the question).
"""

from __future__ import annotations

import ipaddress
import random
import shutil
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rrset
import pytest

from gslb import service
from gslb.settings import ServerSettings

DATA = Path(__file__).resolve().parent / "data"
NAMES = [
    "wire.example.", "www.wire.example.", "WwW.Wire.EXAMPLE.", "mail.wire.example.", "mx2.wire.example.",
    "_sip._tcp.wire.example.", "long-txt.wire.example.", "mid.wire.example.", "big512.wire.example.",
    "big1232.wire.example.", "chain1.wire.example.", "chain2.wire.example.", "outside.wire.example.",
    "dangling.wire.example.", "a.b.wire.example.", "b.wire.example.", "x.a.b.wire.example.",
    "deleg.wire.example.", "ns1.deleg.wire.example.", "x.deleg.wire.example.", "child.wire.example.",
    "www.child.wire.example.", "nope.child.wire.example.", "nope.wire.example.", "a.b.c.nope.wire.example.",
    "10.2.0.192.in-addr.arpa.", "99.2.0.192.in-addr.arpa.", "example.org.", "wire.example.org.", ".",
    "geo.example.", "www.geo.example.", "WWW.GEO.example.", "www6.geo.example.", "partial.geo.example.",
    "static.geo.example.", "nope.geo.example.",
]
TYPES = ["A", "AAAA", "NS", "SOA", "MX", "TXT", "SRV", "CAA", "PTR", "CNAME", "ANY", "DS", "HTTPS", 65280, "AXFR"]
SUBNETS = ["81.2.69.160/27", "175.16.199.0/24", "216.160.83.56/29", "10.1.2.0/24", "8.8.8.0/24", "0.0.0.0/0",
           "2001:218::/32", "2001:480:10::/48", "fd00::/16", "81.2.69.142/32"]
BAD_ECS = [b"\x00\x01\x18", b"\x00\x07\x18\x00\x0a\x00\x00", b"\x00\x01\x17\x00\x0a\x00\x01"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    zones = tmp_path_factory.mktemp("zones")
    for source in (DATA / "zones_wire", DATA / "zones_geo"):
        for file in source.glob("*.yaml"):
            shutil.copy(file, zones / file.name)
    settings = ServerSettings(zones=zones, geoip=DATA / "geo" / "GeoIP2-City-Test.mmdb", node_name="diff-node")
    result, problems = service.load(settings)
    assert result is not None, problems
    return result


def queries(seed: int = 7, count: int = 6000):
    rng = random.Random(seed)
    for index in range(count):
        name = rng.choice(NAMES)
        rdtype = rng.choice(TYPES)
        kind = rng.random()
        options: list = []
        if kind < 0.25:
            message = dns.message.make_query(name, rdtype, use_edns=False)
        else:
            if rng.random() < 0.6:
                network = ipaddress.ip_network(rng.choice(SUBNETS))
                options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
            if rng.random() < 0.05:
                options.append(dns.edns.GenericOption(8, rng.choice(BAD_ECS)))
            if rng.random() < 0.05:
                options.append(dns.edns.GenericOption(3, b""))
            if rng.random() < 0.1:
                options.append(dns.edns.GenericOption(65001, b"hello"))
            message = dns.message.make_query(
                name, rdtype, use_edns=0, payload=rng.choice([0, 100, 512, 1232, 4096]),
                want_dnssec=rng.random() < 0.3, options=options)
        if rng.random() < 0.5:
            message.flags &= ~dns.flags.RD
        if rng.random() < 0.1:
            message.flags |= dns.flags.CD
        message.id = index & 0xFFFF
        yield message.to_wire()
    for index in range(1500):  # mutated packets
        base = bytearray(dns.message.make_query(rng.choice(NAMES), rng.choice(TYPES[:10]), use_edns=0).to_wire())
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        if rng.random() < 0.3:
            del base[rng.randrange(len(base)):]
        yield bytes(base)


def normalised(wire: bytes) -> tuple:
    message = dns.message.from_wire(bytes(wire))
    sections = tuple(
        sorted((rrset.name.canonicalize().to_text(), rrset.rdtype, rrset.ttl, tuple(sorted(r.to_text() for r in rrset)))
               for rrset in section)
        for section in (message.answer, message.authority, message.additional)
    )
    opt = None
    if message.edns >= 0:
        opt = (message.edns, message.payload, message.ednsflags, tuple(o.to_wire() for o in message.options))
    return (message.id, message.flags, message.rcode(), [q.to_text() for q in message.question], sections, opt)


def test_fast_and_general_paths_agree(loaded) -> None:
    fast, general = loaded.answerer.fast, loaded.answerer
    client = ipaddress.ip_address("127.0.0.1")
    handled = declined = 0
    for packet in queries():
        expected = general.respond(packet, client, False)
        got = fast.answer(packet, "127.0.0.1")
        if got is None:
            declined += 1
            continue
        handled += 1
        assert expected is not None, f"fast path answered a packet the general path drops: {packet.hex()}"
        assert len(got) <= max(512, len(expected)), packet.hex()
        assert normalised(got) == normalised(expected), packet.hex()
    # The test means something only when the fast path takes most well-formed queries.
    assert handled > 3000, (handled, declined)


def test_question_case_is_kept_by_the_fast_path(loaded) -> None:
    query = dns.message.make_query("WwW.GeO.ExAmPlE.", "A")
    reply = loaded.answerer.fast.answer(query.to_wire(), "127.0.0.1")
    assert reply is not None
    assert dns.message.from_wire(reply).question[0].name.to_text() == "WwW.GeO.ExAmPlE."
