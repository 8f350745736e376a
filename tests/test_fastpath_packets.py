"""The fast path's packet cache (issue 12): a query seen before, by its bytes after the ID, is
answered from the parts kept for it. Its replies must be the replies the fast path builds without
it, field for field, whatever the ID and flags; health must still take effect at the next query;
what depends on more than the packet (DNSSEC signatures, the source address) is never kept; and it
stays bounded."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from gslb.dns import fastpath
from gslb.health.admin import Overrides
from gslb.health.status import Status
from test_fastpath_differential import POLICY_ZONE, _load, load_every_zone, normalised, queries

CLIENT = ipaddress.ip_address("127.0.0.1")


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    zones = tmp_path_factory.mktemp("packets-policy")
    (zones / "policy.example.yaml").write_text(POLICY_ZONE)
    return zones


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_every_zone(tmp_path_factory.mktemp("packets-zones"))


def fresh(zones: Path):
    return _load(zones)


def kept(fast, wire: bytes):
    """What the caches hold for `wire`: a static reply, a Seen, a Shape, or None."""
    found = fast._packets.get(wire[2:])
    for size, shapes in fast._shapes:
        found = found or shapes.get(wire[2:len(wire) - size])
    return found


def ecs_query(name: str, subnet: str = "10.1.0.0/24", ident: int = 1, **flags) -> bytes:
    network = ipaddress.ip_network(subnet)
    query = dns.message.make_query(name, "A", use_edns=0,
                                   options=[dns.edns.ECSOption(str(network.network_address), network.prefixlen)],
                                   **flags)
    query.id = ident
    return query.to_wire()


def test_a_second_pass_over_every_kind_of_query_agrees_with_the_general_path(loaded) -> None:
    """The differential query set twice: the second pass is answered mostly from the cache."""
    fast, general = loaded.answerer.fast, loaded.answerer
    packets = list(queries(seed=17, count=3000))
    for packet in packets:
        fast.answer(packet, "127.0.0.1")
    kept = len(fast._packets)
    assert kept > 300, kept
    handled = 0
    for index, packet in enumerate(packets):
        packet = (index ^ 0x5A5A).to_bytes(2, "big") + packet[2:]  # other IDs than the first pass
        outcome = fast.answer(packet, "127.0.0.1")
        if outcome is None:
            continue
        handled += 1
        expected = general.respond(packet, CLIENT, False)
        assert expected is not None and normalised(outcome[0]) == normalised(expected), packet.hex()
    assert handled > 1500, handled


def test_a_kept_static_reply_is_the_reply_built_without_the_cache_for_any_id_and_flags(loaded, tmp_path) -> None:
    fast = loaded.answerer.fast
    for flags in (dns.flags.RD, 0, dns.flags.CD, dns.flags.RD | dns.flags.CD):
        for ident in (1, 0xBEEF, 0):
            query = dns.message.make_query("www.wire.example.", "A", use_edns=0)
            query.flags = flags
            query.id = ident
            wire = query.to_wire()
            first = fast.answer(wire, "127.0.0.1")
            assert first is not None and wire[2:] in fast._packets
            again = fast.answer(wire, "127.0.0.1")
            assert again == first  # from the cache: the same bytes, the same metrics key
            reply = dns.message.from_wire(bytes(again[0]))
            assert reply.id == ident and reply.flags & (dns.flags.RD | dns.flags.CD) == flags


def test_what_depends_on_more_than_the_packet_is_never_kept(loaded) -> None:
    fast = loaded.answerer.fast
    signed = dns.message.make_query("signed.example.", "SOA", want_dnssec=True).to_wire()
    no_ecs = dns.message.make_query("www.geo.example.", "A", use_edns=0).to_wire()  # placed by the source
    zero = dns.message.make_query("www.geo.example.", "A", use_edns=0,
                                  options=[dns.edns.ECSOption("0.0.0.0", 0)]).to_wire()
    padded = dns.message.make_query("www.wire.example.", "A", use_edns=0,
                                    options=[dns.edns.GenericOption(12, bytes(600))]).to_wire()
    big = dns.message.make_query("big512.wire.example.", "A", use_edns=0, payload=1232).to_wire()
    for wire, why in ((big, "a static reply over 512 bytes"), (signed, "a signed DO answer"), (no_ecs, "a GSLB answer placed by the source"),
                      (zero, "a GSLB answer with ECS source prefix 0"), (padded, "a query over 320 bytes")):
        outcome = fast.answer(wire, "127.0.0.1")
        assert outcome is not None, why
        assert kept(fast, wire) is None, why


def test_a_kept_gslb_query_sees_a_health_change_at_the_very_next_answer(policy) -> None:
    loaded = fresh(policy)
    fast = loaded.answerer.fast
    wire = ecs_query("failover.policy.example.")
    board = loaded.selector.health

    def addresses() -> set[str]:
        outcome = fast.answer(wire, "127.0.0.1")
        assert outcome is not None
        return {r.address for rrset in dns.message.from_wire(bytes(outcome[0])).answer for r in rrset}

    assert addresses() == {"192.0.2.51"}
    assert isinstance(kept(fast, wire), fastpath.Shape)
    assert addresses() == {"192.0.2.51"}
    board.set_overrides(Overrides(by_address={"192.0.2.51": Status.DOWN}))
    assert addresses() == {"192.0.2.52"}
    board.set_overrides(Overrides(by_address={"192.0.2.51": Status.DOWN, "192.0.2.52": Status.DOWN}))
    assert addresses() == {"198.51.100.51"}  # eu is down: the next region answers
    board.set_overrides(Overrides(by_address={}))
    assert addresses() == {"192.0.2.51"}


def test_kept_gslb_answers_rotate_as_the_policy_says_and_keep_the_ecs_scope(policy) -> None:
    """Twice the same rotation: one generation answers from the cache, the other with an empty
    cache before every query."""
    cached, uncached = fresh(policy).answerer.fast, fresh(policy).answerer.fast
    for name in ("weighted", "weighted2", "rr", "hash", "cname-rr", "a.wrr"):
        for ident in range(40):
            wire = ecs_query(f"{name}.policy.example.", "10.1.7.0/24", ident=ident)
            uncached._packets.clear()
            for _, shapes in uncached._shapes:
                shapes.clear()
            expected, got = uncached.answer(wire, "127.0.0.1"), cached.answer(wire, "127.0.0.1")
            assert got is not None and got == expected, (name, ident)
        assert isinstance(kept(cached, wire), fastpath.Shape), name


def test_the_caches_are_bounded(policy, monkeypatch) -> None:
    monkeypatch.setattr(fastpath, "MAX_PACKETS", 50)
    fast = fresh(policy).answerer.fast
    for third in range(256):  # 256 payload sizes: 256 shapes and 256 static replies
        for name in ("weighted.policy.example.", "ns1.policy.example."):
            query = dns.message.make_query(name, "A", use_edns=0, payload=1000 + third,
                                           options=[dns.edns.ECSOption(f"10.1.{third}.0", 24)])
            assert fast.answer(query.to_wire(), "127.0.0.1") is not None
        plain = dns.message.make_query("weighted.policy.example.", "A", use_edns=0, payload=1000 + third)
        assert fast.answer(plain.to_wire(), "127.0.0.1") is not None
        assert len(fast._packets) <= 50 and len(fast._sourced) <= 50
        assert sum(len(shapes) for _, shapes in fast._shapes) <= 50


SHAPE_SUBNETS = [f"10.1.{n}.0/24" for n in range(0, 250, 7)] + [f"10.2.{n}.0/24" for n in range(0, 250, 11)] \
    + [f"10.{n}.0.0/24" for n in range(3, 60, 5)] + [f"2001:db8:1:{n:x}00::/56" for n in range(0, 250, 13)] \
    + [f"2001:db8:2:{n:x}00::/56" for n in range(0, 250, 17)] + ["10.1.6.0/23", "10.9.0.0/17", "2001:db8:1::/49"]


def test_one_shape_answers_every_subnet_as_the_uncached_path_does(policy) -> None:
    """Each policy asked from ~100 client subnets (/24, /23, /17, /56, /49: 3- and 7-byte
    addresses) in several regions: the second subnet on is answered by the shape; every reply,
    scope included, is the one an empty cache gives."""
    cached, uncached = fresh(policy).answerer.fast, fresh(policy).answerer.fast
    for name in ("weighted", "weighted2", "rr", "rr2", "hash", "hash2", "failover", "cname-rr", "cname-hash", "a.wrr"):
        rdtype = "AAAA" if name == "rr2" else "A"
        for ident, subnet in enumerate(SHAPE_SUBNETS):
            network = ipaddress.ip_network(subnet)
            query = dns.message.make_query(f"{name}.policy.example.", rdtype, use_edns=0, options=[
                dns.edns.ECSOption(str(network.network_address), network.prefixlen)])
            query.id = ident
            wire = query.to_wire()
            uncached._packets.clear()
            for _, shapes in uncached._shapes:
                shapes.clear()
            expected, got = uncached.answer(wire, "127.0.0.1"), cached.answer(wire, "127.0.0.1")
            assert got is not None and got == expected, (name, subnet)
            assert isinstance(kept(cached, wire), fastpath.Shape), (name, subnet)


def ecs_option(data: bytes):
    return dns.edns.GenericOption(8, data)


def test_a_shape_never_answers_what_the_parse_would_refuse(policy) -> None:
    loaded = fresh(policy)
    fast = loaded.answerer.fast

    def query(option: bytes, extra=()) -> bytes:
        return dns.message.make_query("weighted.policy.example.", "A", use_edns=0,
                                      options=[ecs_option(option), *extra]).to_wire()

    good = query(b"\x00\x01\x17\x00\x0a\x01\x06")  # 10.1.6.0/23
    assert fast.answer(good, "127.0.0.1") is not None and isinstance(kept(fast, good), fastpath.Shape)
    bad_bits = query(b"\x00\x01\x17\x00\x0a\x01\x07")  # 10.1.7.0/23: a bit past the prefix
    assert fast.answer(bad_bits, "127.0.0.1") is None
    assert dns.message.from_wire(bytes(loaded.answerer.respond(bad_bits, CLIENT, False))).rcode() == dns.rcode.FORMERR
    for trailing in (good + b"\x00", good + b"\x00\x00\x00\x00", good[:-1]):
        assert fast.answer(trailing, "127.0.0.1") is None, trailing.hex()
    # ECS before another option: not a shape (the address is not at the end), kept exactly instead.
    not_last = query(b"\x00\x01\x18\x00\x0a\x01\x06", [dns.edns.GenericOption(65001, b"hi")])
    assert fast.answer(not_last, "127.0.0.1") is not None
    assert isinstance(kept(fast, not_last), fastpath.Seen)


def test_a_signed_gslb_answer_from_a_shape_carries_a_valid_rrsig_over_the_answer_it_gives(loaded) -> None:
    """DO to a signed zone: the shape keeps no signature, it asks the signer at each hit, so every
    rotation and region gets the RRSIG of the RRset it answers, valid under the zone's DNSKEY."""
    from dnssec_check import dns  # dnspython's validator switched on (see tests/dnssec_check.py)

    fast = loaded.answerer.fast
    keys = dns.message.from_wire(bytes(fast.answer(
        dns.message.make_query("signed.example.", "DNSKEY", want_dnssec=True).to_wire(), "127.0.0.1")[0]))
    keyset = {dns.name.from_text("signed.example."): keys.find_rrset(
        keys.answer, dns.name.from_text("signed.example."), dns.rdataclass.IN, dns.rdatatype.DNSKEY)}
    seen = set()
    for ident, subnet in enumerate(["10.1.0.0/24", "10.1.9.0/24", "10.7.0.0/24", "10.8.1.0/24"] * 3):
        network = ipaddress.ip_network(subnet)
        query = dns.message.make_query("both.signed.example.", "A", want_dnssec=True, options=[
            dns.edns.ECSOption(str(network.network_address), network.prefixlen)])
        query.id = ident
        wire = query.to_wire()
        outcome = fast.answer(wire, "127.0.0.1")
        assert outcome is not None
        shape = kept(fast, wire)
        assert isinstance(shape, fastpath.Shape) and shape.signed is not None
        reply = dns.message.from_wire(bytes(outcome[0]))
        answer = reply.find_rrset(reply.answer, query.question[0].name, dns.rdataclass.IN, dns.rdatatype.A)
        sigs = reply.find_rrset(reply.answer, query.question[0].name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                dns.rdatatype.A)
        dns.dnssec.validate(answer, sigs, keyset)
        seen.add(frozenset(r.address for r in answer))
    assert len(seen) == 2  # both regions' pools, each signed


def test_a_gslb_answer_placed_by_the_source_address_is_kept_per_source(policy) -> None:
    """Without an ECS address the source places the client: the entry is the packet's and the
    source's, so one resolver's region never answers another's."""
    cached, uncached = fresh(policy).answerer.fast, fresh(policy).answerer.fast
    regions = {}
    for name in ("weighted", "rr", "hash", "failover", "cname-rr"):
        for ident in range(30):
            for source in ("127.0.0.1", "10.2.0.1", "192.0.2.99"):  # eu, us-east, the default
                query = dns.message.make_query(f"{name}.policy.example.", "A", use_edns=ident % 2 == 0)
                query.id = ident
                wire = query.to_wire()
                uncached._sourced.clear()
                expected, got = uncached.answer(wire, source), cached.answer(wire, source)
                assert got is not None and got == expected, (name, source)
                assert (wire[2:], source) in cached._sourced
                regions.setdefault(source, set()).add(got[1][4])
    assert regions["127.0.0.1"] == {"eu"} and regions["10.2.0.1"] == {"us-east"}
