"""One question against the catalog: RFC 1034 section 4.3.2, as the sections of a reply.

What goes in the answer, authority and additional sections (dnslib RRs) and with which RCODE and
AA - nothing about the wire, EDNS or the transport beyond "TCP may carry every RRset of ANY".
The general path (`answer.py`) packs what this returns for each query; the fast path's build
step (`fastpath.py`) packs it once per name and type at load. Both import this module and not
each other.

GSLB records are the one part that depends on the client: `lookup` hands them to a `GslbAnswers`
hook (`dynamic_answer.py`, over `gslb.resolve`) and marks the reply `client_dependent`, which
tells the fast path's build step not to keep it.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Protocol

from dnslib import RD, RR, DNSLabel

from gslb.dns.ecs import ClientSubnet
from gslb.names import Name
from gslb.zone import Catalog, Found, Node, Referral, RRset, Zone

log = logging.getLogger(__name__)

# RCODEs (RFC 1035, RFC 6891)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
# Types and classes
T_A, T_NS, T_CNAME, T_SOA, T_TXT, T_AAAA, T_OPT, T_IXFR, T_AXFR, T_ANY, T_HINFO = 1, 2, 5, 6, 16, 28, 41, 251, 252, 255, 13
T_DS = 43
C_IN, C_CH, C_ANY = 1, 3, 255

# CNAMEs followed in one answer. BIND restarts a query at most 11 times by default and answers
# with the chain so far beyond that; a resolver follows the rest.
MAX_CNAME_CHAIN = 8

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(slots=True)
class Reply:
    """The sections of one reply, before packing."""

    rcode: int = NOERROR
    authoritative: bool = True
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    scope_prefix: int = 0  # ECS scope: 0 unless the answer depends on the client's address
    zone: str = ""  # the zone asked, for metrics and the query log ("" = none of ours)
    region: str = ""  # the region a GSLB answer came from ("" = none)
    client_dependent: bool = False  # a GSLB record was reached: the same question may get another reply


class GslbAnswers(Protocol):
    """Adds the answer RRs of a GSLB record for this client to `reply` (and its scope, region,
    or SERVFAIL). `owner` is the question's name as the client wrote it when the record is at the
    question's name, None at the end of a CNAME chain (the record's own name is used)."""

    def __call__(self, zone: Zone, node: Node, qtype: int, owner: DNSLabel | None, client: Address | None,
                 subnet: ClientSubnet | None, reply: Reply) -> None: ...


def negative_soa(zone: Zone) -> RR:
    """The SOA of a negative answer, with the negative TTL (RFC 2308 section 3)."""
    soa = zone.soa.records[0]
    return RR(soa.rname, T_SOA, C_IN, zone.negative_ttl, soa.rdata)


def nxdomain(zone: Zone) -> Reply:
    return Reply(rcode=NXDOMAIN, authority=[negative_soa(zone)], zone=zone.label)


def nodata(zone: Zone) -> Reply:
    return Reply(authority=[negative_soa(zone)], zone=zone.label)


def owned(rrset: RRset, owner: DNSLabel) -> list[RR]:
    """The RRset with the owner name as the client wrote it: the bytes then compress to the
    question's name, and 0x20-randomising resolvers see their own case back."""
    return [RR(owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in rrset.records]


def lookup(catalog: Catalog, qname: Name, owner: DNSLabel, qtype: int, *, tcp: bool = False,
           client: Address | None = None, subnet: ClientSubnet | None = None,
           gslb: GslbAnswers | None = None) -> Reply:
    """The reply to (qname, qtype) in class IN. `owner` is qname as the client wrote it."""
    zone = catalog.zone_for(qname)
    if zone is None:
        return Reply(rcode=REFUSED, authoritative=False)
    reply = Reply(zone=zone.label)
    name = qname
    seen = {qname}
    for _ in range(MAX_CNAME_CHAIN + 1):
        found, where = zone.find(name)
        if found is Found.NXDOMAIN:
            reply.rcode = NXDOMAIN  # RFC 6604: the RCODE is about the last name of a chain
            reply.authority.append(negative_soa(zone))
            return reply
        if found is Found.EMPTY_NONTERMINAL:
            reply.authority.append(negative_soa(zone))
            return reply
        if found is Found.REFERRAL:
            assert isinstance(where, Referral)
            if where.cut == name and qtype == T_DS and not reply.answer:  # DS lives in the parent
                reply.authority.append(negative_soa(zone))
                return reply
            # Only the part before the cut is ours: AA clear when nothing else was answered.
            reply.authoritative = bool(reply.answer)
            reply.authority.extend(where.ns.records)
            for rrset in where.glue:
                reply.additional.extend(rrset.records)
            return reply
        assert isinstance(where, Node)
        node = where
        cname = node.cname
        if qtype in (T_CNAME, T_ANY):
            break
        if cname is not None:
            reply.answer.extend(owned(cname, owner))
            target_label = cname.records[0].rdata.label
        elif T_CNAME in node.dynamic:
            # A GSLB CNAME: the name chosen for this client, then followed like a static one.
            reply.client_dependent = True
            if gslb is None:  # NODATA, as for GSLB A records (and the fast path's build keeps nothing)
                reply.authority.append(negative_soa(zone))
                return reply
            before = len(reply.answer)
            gslb(zone, node, T_CNAME, owner, client, subnet, reply)
            if reply.rcode != NOERROR or len(reply.answer) == before:
                return reply  # SERVFAIL, or every endpoint set down: answered as at the record itself
            target_label = reply.answer[-1].rdata.label
        else:
            break
        target = tuple(label.lower() for label in target_label.label)
        if target in seen:
            # A loop: the chain so far, each CNAME once, NOERROR - as BIND and NSD answer it;
            # a resolver that follows it finds the loop itself.
            return reply
        seen.add(target)
        # RFC 1034 4.3.2 step 3a: go back to step 1, which searches every zone served here.
        next_zone = catalog.zone_for(target)
        if next_zone is None:
            return reply  # pointing outside everything served here: the resolver follows it
        zone, name, owner = next_zone, target, target_label
    else:
        log.debug("CNAME chain longer than %d at %s: answered with the chain so far", MAX_CNAME_CHAIN, owner)
        return reply
    # A wildcard's answer is synthesised: its owner is always the name asked (RFC 4592 section 3.3.1).
    gslb_owner = owner if name == qname or found is Found.WILDCARD else None
    _node_answer(zone, node, qtype, gslb_owner, owner, tcp, client, subnet, gslb, reply)
    return reply


def _node_answer(zone: Zone, node: Node, qtype: int, gslb_owner: DNSLabel | None, owner: DNSLabel, tcp: bool,
                 client: Address | None, subnet: ClientSubnet | None, gslb: GslbAnswers | None,
                 reply: Reply) -> None:
    if qtype == T_ANY:
        _any(zone, node, gslb_owner, owner, tcp, client, subnet, gslb, reply)
        return
    rrset = node.rrsets.get(qtype)
    if rrset is not None:
        reply.answer.extend(owned(rrset, owner))
        if qtype == T_NS and node.name == zone.origin:
            for glue in zone.apex_glue:
                reply.additional.extend(glue.records)
        return
    if qtype in node.dynamic:
        reply.client_dependent = True
        if gslb is not None:
            gslb(zone, node, qtype, gslb_owner, client, subnet, reply)
            return
    reply.authority.append(negative_soa(zone))  # NODATA (RFC 2308 section 2.2)


def _any(zone: Zone, node: Node, gslb_owner: DNSLabel | None, owner: DNSLabel, tcp: bool, client: Address | None,
         subnet: ClientSubnet | None, gslb: GslbAnswers | None, reply: Reply) -> None:
    """RFC 8482: over UDP one RRset (or a synthesised HINFO) instead of everything; TCP,
    where size costs nothing extra, gets every RRset."""
    rrsets = [node.rrsets[t] for t in sorted(node.rrsets)]
    if tcp:
        for rrset in rrsets:
            reply.answer.extend(owned(rrset, owner))
        for qtype in sorted(node.dynamic):
            reply.client_dependent = True
            if gslb is not None:
                gslb(zone, node, qtype, gslb_owner, client, subnet, reply)
        if not reply.answer:
            reply.authority.append(negative_soa(zone))
        return
    if rrsets:
        reply.answer.extend(owned(rrsets[0], owner))
    elif node.dynamic and gslb is not None:
        reply.client_dependent = True
        gslb(zone, node, min(node.dynamic), gslb_owner, client, subnet, reply)
    else:
        reply.client_dependent = bool(node.dynamic)
        hinfo = RD(b"\x07RFC8482\x00")
        reply.answer.append(RR(owner, T_HINFO, C_IN, zone.soa.ttl, hinfo))
