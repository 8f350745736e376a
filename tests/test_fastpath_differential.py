"""The fast path and the general (dnslib) path give the same response, field for field.

A large generated query set - names that exist, do not, are empty non-terminals, sit at or below
delegations, in mixed case; every common type and some unusual ones; with and without EDNS, DO,
payload sizes, ECS (IPv4, IPv6, source 0, malformed), NSID and unknown options; and malformed
packets - goes through both paths in one process. Where the fast path answers, dnspython must
read both replies as the same message (names compare case-insensitively, the one freedom the
fast path takes: it compresses owner names to the question).

Stateful policies (weighted, round_robin, hash, failover, and all with `answers`) are compared
against the same policy state: two servers loaded from the same zones, one answering by the
general path alone and the other by its fast path (or its general path where the fast path
declines), fed the same query sequence.
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
from gslb.dnssec.keys import keygen
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
    # signed (tests/data/zones_dnssec): DO queries get RRSIGs and compact denial on both paths
    "signed.example.", "static.signed.example.", "WWW.signed.example.", "both.signed.example.", "alias.signed.example.",
    "geo-alias.signed.example.", "lost.signed.example.", "b.signed.example.", "nope.signed.example.",
    "big.signed.example.", "deleg.signed.example.", "x.deleg.signed.example.",
    "out.pools.example.", "OUT.Pools.example.", "in.pools.example.", "cross.pools.example.", "mixed.pools.example.",
    "alias.pools.example.", "down.pools.example.", "x.out.pools.example.",
]
# GSLB CNAME records (pools of host names): targets outside every zone (the fast path answers A,
# AAAA and CNAME from pre-packed bytes), in this zone, in another zone served here (geo.example,
# a GSLB A there) and a mix (the general path follows them), a static CNAME to one, and one with
# a fixed when_all_down name. Stateless policies only: both paths
# answer from one policy state here (the stateful ones are compared below).
POOLS_ZONE = """
origin: pools.example.
ttl: 300
soa: {mname: ns1.pools.example., rname: hostmaster.pools.example., serial: 1, minimum: 60}
ns: [ns1.pools.example.]
regions:
  us-east: {location: [39.04, -77.49], serves: [NA]}
  eu:      {location: [50.11, 8.68], serves: [EU]}
  asia:    {location: [1.35, 103.82], serves: [AS]}
subnets:
  127.0.0.0/8: eu
default_region: us-east
records:
  ns1: {type: A, value: 192.0.2.53}
  static: {type: A, value: 192.0.2.1}
  out:
    type: CNAME
    ttl: 120
    pools:
      us-east: [lb-us.example.net.]
      eu: [lb-eu1.example.net., lb-eu2.example.net.]
      asia: [{value: lb-asia.example.net., weight: 2}]
  in: {type: CNAME, policy: hash, pools: {eu: [static.pools.example., ns1.pools.example.], us-east: [www.geo.example.]}}
  cross: {type: CNAME, pools: {eu: [www.geo.example.], asia: [www6.geo.example.]}}
  mixed: {type: CNAME, pools: {eu: [static.pools.example.], us-east: [lb-us.example.net.]}}
  alias: {type: CNAME, value: out.pools.example.}
  down: {type: CNAME, when_all_down: [fixed.example.net.], pools: {eu: [lb-eu1.example.net.]}}
"""
TYPES = ["A", "AAAA", "NS", "SOA", "MX", "TXT", "SRV", "CAA", "PTR", "CNAME", "ANY", "DS", "HTTPS", 65280, "AXFR",
         "DNSKEY", "CDS"]
SUBNETS = ["81.2.69.160/27", "175.16.199.0/24", "216.160.83.56/29", "10.1.2.0/24", "8.8.8.0/24", "0.0.0.0/0",
           "2001:218::/32", "2001:480:10::/48", "fd00::/16", "81.2.69.142/32"]
BAD_ECS = [b"\x00\x01\x18", b"\x00\x07\x18\x00\x0a\x00\x00", b"\x00\x01\x17\x00\x0a\x00\x01"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    zones = tmp_path_factory.mktemp("zones")
    for source in (DATA / "zones_wire", DATA / "zones_geo"):
        for file in source.glob("*.yaml"):
            shutil.copy(file, zones / file.name)
    shutil.copy(DATA / "zones_dnssec" / "signed.example.yaml", zones)
    keygen(zones / "keys", (b"signed", b"example"), "csk")
    (zones / "pools.example.yaml").write_text(POOLS_ZONE)
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
    for _ in range(1500):  # mutated packets
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
        outcome = fast.answer(packet, "127.0.0.1")
        if outcome is None:
            declined += 1
            continue
        got = outcome[0]
        handled += 1
        assert expected is not None, f"fast path answered a packet the general path drops: {packet.hex()}"
        assert len(got) <= max(512, len(expected)), packet.hex()
        assert normalised(got) == normalised(expected), packet.hex()
    # The test means something only when the fast path takes most well-formed queries.
    assert handled > 3000, (handled, declined)


def test_question_case_is_kept_by_the_fast_path(loaded) -> None:
    query = dns.message.make_query("WwW.GeO.ExAmPlE.", "A")
    outcome = loaded.answerer.fast.answer(query.to_wire(), "127.0.0.1")
    assert outcome is not None
    assert dns.message.from_wire(outcome[0]).question[0].name.to_text() == "WwW.GeO.ExAmPlE."


# -- stateful policies -------------------------------------------------------------------------------

POLICY_ZONE = """
origin: policy.example.
ttl: 300
soa: {mname: ns1.policy.example., rname: hostmaster.policy.example., serial: 1, minimum: 60}
ns: [ns1.policy.example.]
regions:
  eu: {location: [50.11, 8.68]}
  us-east: {location: [39.04, -77.49]}
  asia: {location: [1.35, 103.82]}
subnets:
  10.1.0.0/16: eu
  10.2.0.0/16: us-east
  10.3.0.0/16: asia
  127.0.0.0/8: eu
  "2001:db8:1::/48": eu
  "2001:db8:2::/48": us-east
default_region: us-east
records:
  ns1: {type: A, value: 192.0.2.53}
  weighted:
    type: A
    policy: weighted
    pools:
      eu: [{value: 192.0.2.1, weight: 5}, {value: 192.0.2.2, weight: 1}, {value: 192.0.2.3, weight: 2}]
      us-east: [{value: 198.51.100.1, weight: 1}, {value: 198.51.100.2, weight: 3}]
  weighted2: {type: A, policy: weighted, answers: 2,
              pools: {eu: [{value: 192.0.2.11, weight: 2}, 192.0.2.12, 192.0.2.13]}}
  rr: {type: A, policy: round_robin, pools: {eu: [192.0.2.21, 192.0.2.22, 192.0.2.23], us-east: [198.51.100.21, 198.51.100.22]}}
  rr2: {type: AAAA, policy: round_robin, answers: 2, pools: {eu: ["2001:db8::1", "2001:db8::2", "2001:db8::3"]}}
  hash: {type: A, policy: hash, pools: {eu: [192.0.2.31, 192.0.2.32, 192.0.2.33, 192.0.2.34], us-east: [198.51.100.31]}}
  hash2: {type: A, policy: hash, answers: 2, pools: {us-east: [198.51.100.41, 198.51.100.42, 198.51.100.43]}}
  failover: {type: A, policy: failover, pools: {eu: [192.0.2.51, 192.0.2.52], us-east: [198.51.100.51]}}
  all2: {type: A, policy: all, answers: 2, pools: {asia: [203.0.113.1, 203.0.113.2, 203.0.113.3]}}
  alias: {type: CNAME, value: rr.policy.example.}
  cname-rr: {type: CNAME, policy: round_robin,
             pools: {eu: [a.cdn.example.net., b.cdn.example.net., c.cdn.example.net.], us-east: [us.cdn.example.net.]}}
  cname-weighted: {type: CNAME, policy: weighted,
                   pools: {eu: [{value: w1.cdn.example.net., weight: 3}, w2.cdn.example.net., w3.cdn.example.net.]}}
  cname-hash: {type: CNAME, policy: hash, pools: {eu: [h1.cdn.example.net., h2.cdn.example.net., h3.cdn.example.net.],
                                                  us-east: [h4.cdn.example.net.]}}
  cname-in: {type: CNAME, policy: round_robin, pools: {eu: [rr.policy.example., hash.policy.example.],
                                                       us-east: [weighted.policy.example.]}}
  cname-alias: {type: CNAME, value: cname-rr.policy.example.}
"""
POLICY_NAMES = ["weighted", "weighted2", "rr", "rr2", "hash", "hash2", "failover", "all2", "alias", "ns1",
                "cname-rr", "cname-weighted", "cname-hash", "cname-in", "cname-alias"]
POLICY_SUBNETS = ["10.1.0.0/24", "10.1.7.0/24", "10.2.0.0/24", "10.2.99.0/24", "10.3.5.0/24", "10.9.0.0/16",
                  "10.1.0.0/0", "2001:db8:1::/56", "2001:db8:2:ff00::/56", "10.1.2.3/32"]


@pytest.fixture(scope="module")
def policy_zones(tmp_path_factory):
    zones = tmp_path_factory.mktemp("policy-zones")
    (zones / "policy.example.yaml").write_text(POLICY_ZONE)
    return zones


def _load(zones: Path):
    result, problems = service.load(ServerSettings(zones=zones, geoip=DATA / "geo" / "GeoIP2-City-Test.mmdb"))
    assert result is not None, problems
    return result


def policy_queries(seed: int = 11, count: int = 3000):
    rng = random.Random(seed)
    for index in range(count):
        name = rng.choice(POLICY_NAMES) + ".policy.example."
        rdtype = "AAAA" if name.startswith("rr2") else rng.choice(["A", "A", "A", "AAAA", "TXT"] if not
                                                                  name.startswith("cname") else ["A", "A", "AAAA", "CNAME", "TXT"])
        options = []
        if rng.random() < 0.8:
            network = ipaddress.ip_network(rng.choice(POLICY_SUBNETS), strict=False)
            options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
        message = dns.message.make_query(name, rdtype, use_edns=0 if options or rng.random() < 0.5 else False,
                                         options=options)
        message.id = index & 0xFFFF
        yield message.to_wire()


def test_fast_and_general_paths_agree_on_stateful_policies(policy_zones) -> None:
    general, served = _load(policy_zones).answerer, _load(policy_zones).answerer
    client = ipaddress.ip_address("127.0.0.1")
    handled = 0
    seen: dict[str, set] = {}
    for packet in policy_queries():
        expected = general.respond(packet, client, False)
        outcome = served.fast.answer(packet, "127.0.0.1")
        if outcome is None:
            got = served.respond(packet, client, False)  # the general path keeps the state in step
        else:
            handled += 1
            got = outcome[0]
        assert expected is not None and got is not None
        assert normalised(got) == normalised(expected), packet.hex()
        message = dns.message.from_wire(bytes(expected))
        seen.setdefault(message.question[0].name.to_text(), set()).add(
            tuple(r.to_text() for rrset in message.answer for r in rrset))
    assert handled > 2200, handled
    # The comparison means something only if the policies really moved between answers.
    for name in ("weighted", "weighted2", "rr", "rr2", "hash", "alias", "cname-rr", "cname-weighted", "cname-hash",
                 "cname-in", "cname-alias"):
        assert len(seen[f"{name}.policy.example."]) > 2, (name, seen[f"{name}.policy.example."])


def test_the_general_path_alone_follows_the_same_sequence(policy_zones) -> None:
    """Guards the test above: a second answerer that skips its fast path sees the same sequence,
    so any difference there comes from the fast path, not from two policy states drifting."""
    one, two = _load(policy_zones).answerer, _load(policy_zones).answerer
    client = ipaddress.ip_address("127.0.0.1")
    for packet in policy_queries(count=500):
        assert one.respond(packet, client, False) == two.respond(packet, client, False)
