"""`gslb.dns.lookup` on zones built by hand: what no zone file can hold once `gslb check` rejects
it (a CNAME loop inside one zone), answered the way RFC 1034 servers do if it ever loads."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from dnslib import CNAME, RR, SOA, A, DNSLabel

from gslb.dns.lookup import MAX_CNAME_CHAIN, NOERROR, lookup
from gslb.names import Name
from gslb.zone import Catalog, Node, RRset, Zone

ORIGIN: Name = (b"loop", b"test")


def name(text: str) -> Name:
    return tuple(label.encode() for label in text.rstrip(".").split("."))


def rrset(owner: str, rtype: int, rdata) -> RRset:  # type: ignore[no-untyped-def]
    return RRset(name(owner), rtype, 300, (RR(DNSLabel(owner), rtype, 1, 300, rdata),))


def zone_with(cnames: dict[str, str], addresses: dict[str, str] | None = None) -> Catalog:
    soa = rrset("loop.test.", 6, SOA("ns1.loop.test.", "hostmaster.loop.test.", (1, 3600, 600, 86400, 60)))
    nodes = {ORIGIN: Node(ORIGIN, MappingProxyType({6: soa}))}
    for owner, target in cnames.items():
        nodes[name(owner)] = Node(name(owner), MappingProxyType({5: rrset(owner, 5, CNAME(target))}))
    for owner, address in (addresses or {}).items():
        nodes[name(owner)] = Node(name(owner), MappingProxyType({1: rrset(owner, 1, A(address))}))
    zone = Zone(ORIGIN, "loop.test.yaml", 1, soa, 60, MappingProxyType(nodes), frozenset(), MappingProxyType({}), ())
    return Catalog((zone,))


def ask(catalog: Catalog, owner: str, qtype: int = 1):  # type: ignore[no-untyped-def]
    return lookup(catalog, name(owner), DNSLabel(owner), qtype)


def chain(reply) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(str(rr.rname), str(rr.rdata)) for rr in reply.answer]


def test_a_cname_to_itself_is_answered_once_noerror():
    reply = ask(zone_with({"self.loop.test.": "self.loop.test."}), "self.loop.test.")
    assert (reply.rcode, reply.authoritative) == (NOERROR, True)
    assert chain(reply) == [("self.loop.test.", "self.loop.test.")]
    assert reply.authority == []


@pytest.mark.parametrize("qtype", [1, 28, 15])
def test_a_two_name_loop_inside_a_zone_is_the_chain_once_noerror(qtype):
    catalog = zone_with({"a.loop.test.": "b.loop.test.", "b.loop.test.": "a.loop.test."})
    reply = ask(catalog, "a.loop.test.", qtype)
    assert reply.rcode == NOERROR
    assert chain(reply) == [("a.loop.test.", "b.loop.test."), ("b.loop.test.", "a.loop.test.")]


def test_a_chain_longer_than_the_limit_is_the_chain_so_far_noerror():
    links = {f"c{i}.loop.test.": f"c{i + 1}.loop.test." for i in range(MAX_CNAME_CHAIN + 3)}
    reply = ask(zone_with(links, {f"c{MAX_CNAME_CHAIN + 3}.loop.test.": "192.0.2.1"}), "c0.loop.test.")
    assert reply.rcode == NOERROR
    assert [owner for owner, _ in chain(reply)] == [f"c{i}.loop.test." for i in range(MAX_CNAME_CHAIN + 1)]


def test_a_chain_within_the_limit_ends_at_the_address():
    links = {f"c{i}.loop.test.": f"c{i + 1}.loop.test." for i in range(MAX_CNAME_CHAIN)}
    reply = ask(zone_with(links, {f"c{MAX_CNAME_CHAIN}.loop.test.": "192.0.2.1"}), "c0.loop.test.")
    assert reply.rcode == NOERROR
    assert chain(reply)[-1] == (f"c{MAX_CNAME_CHAIN}.loop.test.", "192.0.2.1")
