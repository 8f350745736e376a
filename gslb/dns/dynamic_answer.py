"""GSLB answers on the general path: a Decision from `gslb.resolve`, encoded as dnslib RRs.

Installed into the Answerer as its `dynamic` hook (the `GslbAnswers` of `lookup.py`). Which
endpoints, which TTL and which ECS scope are all the Resolver's; this only writes them into the
reply's sections.
"""

from __future__ import annotations

from dnslib import RR, DNSLabel

from gslb.dns.ecs import ClientSubnet
from gslb.dns.lookup import SERVFAIL, T_SOA, Address, Reply, negative_soa
from gslb.resolve import Resolver
from gslb.selection import Selector
from gslb.zone import Node, Zone


class DynamicAnswers:
    def __init__(self, selector: Selector) -> None:
        self.selector = selector
        self.resolver = Resolver(selector)

    def __call__(self, zone: Zone, node: Node, qtype: int, owner: DNSLabel | None, client: Address | None,
                 subnet: ClientSubnet | None, reply: Reply) -> None:
        if client is None:
            raise ValueError("a GSLB answer needs the client's address")
        decision = self.resolver.resolve(node.dynamic[qtype], zone.region_map, client, subnet)
        reply.region = decision.region or ""
        if decision.servfail:
            reply.rcode = SERVFAIL
            reply.authoritative = False
            reply.answer.clear()
            return
        if not decision.endpoints:
            # Every endpoint forced down under `when_all_down: all`: nothing to say, so a NODATA
            # with the SOA (RFC 2308) - which DNSSEC can then prove - not a bare empty answer.
            if not any(rr.rtype == T_SOA for rr in reply.authority):
                reply.authority.append(negative_soa(zone))
            return
        degraded = decision.degraded
        for endpoint in decision.endpoints:
            rr = endpoint.degraded_record if degraded else endpoint.record
            reply.answer.append(RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata) if owner is not None else rr)
        reply.scope_prefix = max(reply.scope_prefix, decision.scope)
