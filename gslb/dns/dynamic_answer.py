"""Answers for GSLB records: the client's region from geo, endpoints from the selector.

Installed into the Answerer as its `dynamic` hook. The client is the ECS address when the query
carries one with a non-zero source prefix, else the packet's source (RFC 7871 section 7.1.1); the
reply's ECS scope is the geo lookup's scope, widened never, narrowed by what the policy needs.
"""

from __future__ import annotations

import ipaddress

from dnslib import RR

from gslb.dns.answer import SERVFAIL, Reply, Request
from gslb.selection import Selector
from gslb.zone import Node, Zone


def client_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return int(address)


class DynamicAnswers:
    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def __call__(self, zone: Zone, node: Node, qtype: int, request: Request, reply: Reply) -> None:
        record = node.dynamic[qtype]
        subnet = request.subnet
        from_subnet = subnet is not None and subnet.source_prefix > 0
        address = subnet.address if from_subnet else request.client  # type: ignore[union-attr]
        region_map = zone.region_map
        placement = region_map.locate(address) if region_map is not None else None
        region = placement.region if placement is not None else None
        selection = self.selector.select(record, region, client_key(address))
        request.region = selection.region or ""
        if selection.servfail:
            reply.rcode = SERVFAIL
            reply.authoritative = False
            reply.answer.clear()
            return
        owner = request.question.qname if node.name == request.qname else None
        for endpoint in selection.endpoints:
            rr = endpoint.degraded_record if selection.degraded else endpoint.record
            reply.answer.append(RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata) if owner is not None else rr)
        if from_subnet and placement is not None:
            scope = self.selector.policy(record).scope(address.version, placement.scope_prefix)
            reply.scope_prefix = max(reply.scope_prefix, scope)
