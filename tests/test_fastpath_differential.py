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
from gslb.health.admin import Overrides
from gslb.health.probes import ProbeResult
from gslb.health.status import Status
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
    # wildcards (RFC 4592): hits at several depths, the literal '*', NODATA, ENTs, NXDOMAIN, CNAMEs, GSLB
    "foo.apps.wild.example.", "Foo.APPS.wild.example.", "a.b.c.apps.wild.example.", "*.apps.wild.example.",
    "x.*.apps.wild.example.", "real.apps.wild.example.", "y.apps.wild.example.", "z.y.apps.wild.example.",
    "apps.wild.example.", "nothing.wild.example.", "nope.target.wild.example.", "q.alias.wild.example.",
    "q.chain.wild.example.", "q.out.wild.example.", "x.deleg.wild.example.", "Shop.Geo.wild.example.",
    "*.geo.wild.example.", "v6.geo6.wild.example.", "Api.Pool.wild.example.", "x.inpool.wild.example.",
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
    return load_every_zone(tmp_path_factory.mktemp("zones"))


def load_every_zone(zones: Path):
    """The wire, geo, wildcard, signed and CNAME-pool zones, loaded into one generation."""
    for source in (DATA / "zones_wire", DATA / "zones_geo", DATA / "zones_wild"):
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


@pytest.mark.parametrize("name, rdtype", [("Foo.Apps.wild.example.", "A"), ("a.b.apps.wild.example.", "TXT"),
                                          ("foo.apps.wild.example.", "AAAA"), ("Any.Geo.wild.example.", "A"),
                                          ("q.alias.wild.example.", "A"), ("nothing.wild.example.", "MX")])
def test_wildcard_hits_and_nodata_are_answered_by_the_fast_path(loaded, name: str, rdtype: str) -> None:
    """The fast path keeps its speed for names a wildcard synthesises: it answers them itself,
    with the question's name (and case) as the owner, instead of declining to the general path."""
    query = dns.message.make_query(name, rdtype, use_edns=0)
    outcome = loaded.answerer.fast.answer(query.to_wire(), "127.0.0.1")
    assert outcome is not None
    reply = dns.message.from_wire(bytes(outcome[0]))
    assert all(rrset.name.to_text() == name for rrset in reply.answer[:1])
    assert normalised(outcome[0]) == normalised(loaded.answerer.respond(query.to_wire(), ipaddress.ip_address("127.0.0.1"), False))


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
  "*.wrr": {type: A, policy: round_robin, pools: {eu: [192.0.2.61, 192.0.2.62, 192.0.2.63], us-east: [198.51.100.61]}}
"""
POLICY_NAMES = ["weighted", "weighted2", "rr", "rr2", "hash", "hash2", "failover", "all2", "alias", "ns1",
                "cname-rr", "cname-weighted", "cname-hash", "cname-in", "cname-alias",
                "a.wrr", "B.c.wrr"]
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
                 "cname-in", "cname-alias", "a.wrr"):
        assert len(seen[f"{name}.policy.example."]) > 2, (name, seen[f"{name}.policy.example."])


def test_the_general_path_alone_follows_the_same_sequence(policy_zones) -> None:
    """Guards the test above: a second answerer that skips its fast path sees the same sequence,
    so any difference there comes from the fast path, not from two policy states drifting."""
    one, two = _load(policy_zones).answerer, _load(policy_zones).answerer
    client = ipaddress.ip_address("127.0.0.1")
    for packet in policy_queries(count=500):
        assert one.respond(packet, client, False) == two.respond(packet, client, False)


# -- every policy and every health rule, through the fast path's plans, with health changing -------

HEALTH_ZONE = """
origin: health.example.
ttl: 300
soa: {mname: ns1.health.example., rname: hostmaster.health.example., serial: 1, minimum: 60}
ns: [ns1.health.example.]
regions:
  eu: {location: [50.11, 8.68]}
  us-east: {location: [39.04, -77.49]}
  asia: {location: [1.35, 103.82]}
subnets:
  10.1.0.0/16: eu
  10.2.0.0/16: us-east
  10.3.0.0/16: asia
  127.0.0.0/8: eu
default_region: us-east
checks:
  web: {http: {path: /healthz}}
  loaded: {http: {path: /healthz, load: {json: load}}}
records:
  ns1: {type: A, value: 192.0.2.53}
  weighted:
    type: A
    policy: weighted
    pools:
      eu: [{value: 10.10.0.1, weight: 5}, {value: 10.10.0.2, weight: 1}, {value: 10.10.0.3, weight: 0}]
      us-east: [{value: 10.10.1.1, weight: 2}, {value: 10.10.1.2, weight: 3}]
  weighted2: {type: A, policy: weighted, answers: 2,
              pools: {eu: [{value: 10.11.0.1, weight: 3}, 10.11.0.2, 10.11.0.3], asia: [10.11.2.1, 10.11.2.2]}}
  rr: {type: A, policy: round_robin, pools: {eu: [10.12.0.1, 10.12.0.2, 10.12.0.3], us-east: [10.12.1.1, 10.12.1.2]}}
  rr2: {type: A, policy: round_robin, answers: 2, pools: {eu: [10.13.0.1, 10.13.0.2, 10.13.0.3], asia: [10.13.2.1]}}
  hash: {type: A, policy: hash, pools: {eu: [10.14.0.1, 10.14.0.2, 10.14.0.3], us-east: [10.14.1.1, 10.14.1.2]}}
  failover: {type: A, policy: failover, pools: {eu: [10.15.0.1, 10.15.0.2], us-east: [10.15.1.1]}}
  all: {type: A, policy: all, pools: {eu: [10.16.0.1, 10.16.0.2, 10.16.0.3], asia: [10.16.2.1]}}
  random: {type: A, policy: random, pools: {eu: [10.17.0.1, 10.17.0.2, 10.17.0.3], us-east: [10.17.1.1]}}
  fastest: {type: A, policy: fastest, check: web,
            pools: {eu: [10.18.0.1, 10.18.0.2, 10.18.0.3], us-east: [10.18.1.1, 10.18.1.2]}}
  leastloaded: {type: A, policy: least_loaded, check: loaded,
                pools: {eu: [10.19.0.1, 10.19.0.2, 10.19.0.3], us-east: [10.19.1.1]}}
  minhealthy: {type: A, policy: weighted, min_healthy: 2,
               pools: {eu: [10.20.0.1, 10.20.0.2, 10.20.0.3], us-east: [10.20.1.1, 10.20.1.2], asia: [10.20.2.1, 10.20.2.2]}}
  servfail: {type: A, policy: round_robin, when_all_down: servfail, pools: {eu: [10.21.0.1, 10.21.0.2], us-east: [10.21.1.1]}}
  fixed: {type: A, policy: weighted, when_all_down: [10.22.9.9, 10.22.9.8], pools: {eu: [10.22.0.1, 10.22.0.2]}}
  failopen: {type: A, policy: round_robin, check: web, when_all_down: all,
             pools: {eu: [10.23.0.1, 10.23.0.2], asia: [10.23.2.1]}}
"""
HEALTH_RECORDS = ["weighted", "weighted2", "rr", "rr2", "hash", "failover", "all", "random", "fastest", "leastloaded",
                  "minhealthy", "servfail", "fixed", "failopen"]
HEALTH_SUBNETS = ["10.1.0.0/24", "10.1.9.0/24", "10.2.0.0/24", "10.2.5.0/24", "10.3.0.0/24", "10.9.0.0/16", "10.1.2.3/32"]


def _records(loaded) -> dict[str, object]:
    return {r.path.removeprefix("records."): r for zone in loaded.catalog.zones
            for node in zone.nodes.values() for r in node.dynamic.values()}


def _addresses(record) -> list[str]:
    return [e.address for e in record.endpoints]


class Twins:
    """Two generations of one zone: `general` answers by the general path only, `served` by its
    fast path (or its general path where the fast path declines). Every health change is made on
    both boards at the same point of the query sequence."""

    def __init__(self, zones: Path) -> None:
        self.general, self.served = _load(zones), _load(zones)
        self.records = _records(self.general)
        for loaded in (self.general, self.served):  # the same random draws on both sides
            loaded.selector.policy(_records(loaded)["random"])._random.seed(12)
        self.client = ipaddress.ip_address("127.0.0.1")
        self.handled = 0

    def boards(self):
        return (self.general.selector.health, self.served.selector.health)

    def overrides(self, statuses: dict[str, Status]) -> None:
        for board in self.boards():
            board.set_overrides(Overrides(by_address=dict(statuses)))

    def probe(self, check: str, address: str, ok: bool, rtt: float | None = None, load: float | None = None,
              times: int = 1) -> None:
        for board in self.boards():
            for _ in range(times):
                board.record(check, address, ProbeResult(ok, "HTTP 200" if ok else "HTTP 503", rtt=rtt, load=load))

    def ask(self, packet: bytes) -> bytes:
        expected = self.general.answerer.respond(packet, self.client, False)
        outcome = self.served.answerer.fast.answer(packet, "127.0.0.1")
        if outcome is None:
            got = self.served.answerer.respond(packet, self.client, False)
        else:
            self.handled += 1
            got = outcome[0]
        assert expected is not None and got is not None
        assert normalised(got) == normalised(expected), packet.hex()
        return bytes(expected)


def health_query(rng: random.Random, name: str, index: int) -> bytes:
    options = []
    if rng.random() < 0.85:
        network = ipaddress.ip_network(rng.choice(HEALTH_SUBNETS), strict=False)
        options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
    message = dns.message.make_query(f"{name}.health.example.", "A", use_edns=0 if options or rng.random() < 0.5 else False,
                                     options=options)
    message.id = index & 0xFFFF
    return message.to_wire()


@pytest.fixture()
def twins(tmp_path) -> Twins:
    (tmp_path / "health.example.yaml").write_text(HEALTH_ZONE)
    return Twins(tmp_path)


def test_fast_and_general_paths_agree_while_health_changes(twins) -> None:
    """Every policy, min_healthy, drain, fallback and each when_all_down through the fast path's
    plans: health changes every few queries (overrides and probe results, RTT and load), and the
    very next query after each change must already agree with the general path."""
    rng = random.Random(21)
    records = twins.records
    everything = sorted({a for r in records.values() for a in _addresses(r)})

    answers: dict[str, set] = {}
    for index in range(6000):
        if index % 60 == 0:
            change = rng.random()
            if change < 0.15:
                twins.overrides({})  # everything back up
            elif change < 0.35:
                whole = records[rng.choice(HEALTH_RECORDS)]  # one record entirely down: when_all_down
                twins.overrides({a: Status.DOWN for a in _addresses(whole)})
            elif change < 0.8:
                twins.overrides({a: rng.choice([Status.DOWN, Status.DRAIN, Status.UP])
                                 for a in rng.sample(everything, rng.randint(1, 12))})
            else:
                for address in _addresses(records["fastest"]):
                    twins.probe("web", address, True, rtt=rng.uniform(0.001, 0.2))
                for address in _addresses(records["leastloaded"]):
                    twins.probe("loaded", address, True, rtt=0.01, load=rng.choice([0.1, 0.2, 0.5, 0.9]))
                for address in _addresses(records["failopen"]):  # probes down (not forced): fail open
                    twins.probe("web", address, rng.random() < 0.5, rtt=0.01, times=3)
        name = rng.choice(HEALTH_RECORDS)
        reply = dns.message.from_wire(twins.ask(health_query(rng, name, index)))
        answers.setdefault(name, set()).add(tuple(sorted(r.to_text() for rrset in reply.answer for r in rrset)))
    assert twins.handled > 4000, twins.handled
    for name in HEALTH_RECORDS:  # each record's answer really moved with health and rotation
        assert len(answers[name]) > 2, (name, answers[name])


def test_a_health_change_reaches_the_very_next_fast_answer(twins) -> None:
    """Scripted: a plan made while everything is up must not outlive a change, including one
    that moves only `forced_down` (an operator sets `down` on an endpoint the probes already
    failed: its status stays DOWN, but fail-open must now leave it out)."""
    rng = random.Random(3)
    failopen = _addresses(twins.records["failopen"])
    fixed = _addresses(twins.records["fixed"])

    def fast_addresses(name: str, subnet: str = "10.1.0.0/24") -> set[str]:
        query = dns.message.make_query(f"{name}.health.example.", "A", use_edns=0,
                                       options=[dns.edns.ECSOption(subnet.split("/")[0], int(subnet.split("/")[1]))])
        wire = twins.ask(query.to_wire())
        return {r.address for rrset in dns.message.from_wire(wire).answer for r in rrset}

    for _ in range(3):
        assert fast_addresses("failopen") <= set(failopen[:2])  # eu's pool, planned
    for address in failopen:
        twins.probe("web", address, False, times=3)  # every endpoint down by its probes: fail open
    assert fast_addresses("failopen") <= set(failopen[:2]) and twins.handled
    twins.overrides({failopen[0]: Status.DOWN})  # forced down: status unchanged, fail-open changes
    assert all(fast_addresses("failopen") == {failopen[1]} for _ in range(4))
    twins.overrides({failopen[0]: Status.DOWN, failopen[1]: Status.DOWN})  # eu all forced: asia fails open
    assert fast_addresses("failopen") == {failopen[2]}
    assert fast_addresses("fixed") <= set(fixed[:2])
    twins.overrides({fixed[0]: Status.DOWN, fixed[1]: Status.DOWN})
    assert fast_addresses("fixed") == {"10.22.9.9", "10.22.9.8"}  # the fixed when_all_down answer
    twins.overrides({})
    assert fast_addresses("fixed") <= set(fixed[:2])
    for _ in range(50):  # and the rotation goes on in step with the general path
        twins.ask(health_query(rng, rng.choice(HEALTH_RECORDS), 7))


def test_explain_forks_see_the_rotation_the_fast_path_moved(twins) -> None:
    """Selector.fork (explain, what-if) copies the policies' state, schedules included: a fork
    picks what the next fast-path answer will be, and picking from it moves nothing live."""
    served = twins.served
    for name in ("weighted", "weighted2", "rr", "rr2"):
        record = twins.records[name]
        live_record = _records(served)[name]
        query = dns.message.make_query(f"{name}.health.example.", "A").to_wire()
        for _ in range(5):
            assert served.answerer.fast.answer(query, "127.0.0.1") is not None
        fork = served.selector.fork()
        predicted = [sorted(e.address for e in fork.select(live_record, "eu").endpoints) for _ in range(6)]
        got = [sorted(r.address for rrset in dns.message.from_wire(served.answerer.fast.answer(query, "127.0.0.1")[0]).answer
                      for r in rrset) for _ in range(6)]
        assert got == predicted, (name, record)


# -- wildcard CNAME chains across zones ----------------------------------------------------------------

LOOP_ONE = """origin: one.test.
soa: {mname: ns1.one.test., rname: hostmaster.one.test., serial: 1}
ns: [ns1.one.test.]
records:
  ns1: {type: A, value: 192.0.2.53}
  "*.a": {type: CNAME, value: x.two.test.}
  "*.b": {type: CNAME, value: plain.two.test.}
"""
LOOP_TWO = """origin: two.test.
soa: {mname: ns1.two.test., rname: hostmaster.two.test., serial: 1}
ns: [ns1.two.test.]
records:
  ns1: {type: A, value: 192.0.2.54}
  plain: {type: A, value: 192.0.2.55}
  "*": {type: CNAME, value: y.a.one.test.}
"""


def test_wildcard_cname_loops_across_zones_agree(tmp_path) -> None:
    """Two zones whose wildcard CNAMEs point at each other (no one file holds the loop, so `gslb
    check` cannot refuse it): where the chain stops depends on the question - `y.a.one.test`
    stops one step earlier than `q.a.one.test` - so the '*' name's own entries cannot answer for
    every name it synthesises. The fast path must give the general path's reply or decline."""
    (tmp_path / "one.test.yaml").write_text(LOOP_ONE)
    (tmp_path / "two.test.yaml").write_text(LOOP_TWO)
    answerer = _load(tmp_path).answerer
    client = ipaddress.ip_address("127.0.0.1")
    handled = 0
    for name in ("q.a.one.test.", "y.a.one.test.", "Y.A.one.test.", "x.two.test.", "z.two.test.", "r.b.one.test.",
                 "*.a.one.test.", "*.two.test."):
        for rdtype in ("A", "AAAA", "CNAME", "TXT"):
            packet = dns.message.make_query(name, rdtype, use_edns=0).to_wire()
            outcome = answerer.fast.answer(packet, "127.0.0.1")
            if outcome is not None:
                handled += 1
                expected = answerer.respond(packet, client, False)
                assert normalised(outcome[0]) == normalised(expected), (name, rdtype)
                # dnspython merges a CNAME sent twice into one RRset: the counts tell them apart.
                assert outcome[0][6:12] == expected[6:12], (name, rdtype)
    assert handled >= 8  # the literal '*' names and *.b's uniform chain stay on the fast path


def test_a_wildcard_under_a_child_zone_served_here_is_the_child_zones_business(tmp_path) -> None:
    """`*.c` (and `x.c`) in p.test while c.p.test is a zone of its own here: the most specific zone
    answers names below c.p.test (RFC 1034 4.3.2 step 2), and it has neither - NXDOMAIN with the
    child's SOA on both paths. (The fast path once answered from the parent's entries there.)"""
    (tmp_path / "p.test.yaml").write_text("""origin: p.test.
soa: {mname: ns1.p.test., rname: hostmaster.p.test., serial: 1}
ns: [ns1.p.test.]
records:
  ns1: {type: A, value: 192.0.2.53}
  "*.c": {type: A, value: 192.0.2.1}
  x.c: {type: A, value: 192.0.2.3}
""")
    (tmp_path / "c.p.test.yaml").write_text("""origin: c.p.test.
soa: {mname: ns1.p.test., rname: hostmaster.p.test., serial: 1}
ns: [ns1.p.test.]
records:
  www: {type: A, value: 192.0.2.2}
""")
    answerer = _load(tmp_path).answerer
    for name in ("x.c.p.test.", "y.c.p.test.", "a.b.c.p.test.", "www.c.p.test.", "c.p.test.", "ns1.p.test."):
        packet = dns.message.make_query(name, "A", use_edns=0).to_wire()
        expected = answerer.respond(packet, ipaddress.ip_address("127.0.0.1"), False)
        outcome = answerer.fast.answer(packet, "127.0.0.1")
        assert outcome is None or normalised(outcome[0]) == normalised(expected), name
