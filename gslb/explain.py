"""Why a client gets the answer it gets: geo facts, the rule that matched, region, scope, answer.

The answer part is not recomputed by a second code path: a real query (with the ECS option the
client would carry) goes through an Answerer over the live catalog and health, so what `explain`
says is what DNS answers. gslb/whatif.py gives it one over a fork of the live selection state,
so explaining never moves the rotation DNS clients see.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from dnslib import EDNS0, QTYPE, DNSRecord, EDNSOption

from gslb.dns import ecs
from gslb.dns.answer import Answerer
from gslb.dns.lookup import T_CNAME
from gslb.geo.rules import asn_text
from gslb.health.status import HealthView
from gslb.names import NameError_, parse_absolute, to_text
from gslb.selection import trace
from gslb.zone import Catalog


class ExplainError(ValueError):
    """Bad input to explain (a name, type or address); the message says which."""


@dataclass
class Explanation:
    name: str
    type: str
    client: str  # the address geo looked up
    subnet: str | None  # the ECS subnet sent, if any
    zone: str | None
    wildcard: str | None = None  # the '*' record that answers a name with no node of its own
    geo: dict[str, Any] | None = None  # continent, country, subdivision, latitude, longitude
    rule: str | None = None
    region: str | None = None
    scope_prefix: int | None = None  # the ECS scope the reply carries (None without ECS)
    rcode: str = ""
    answer: list[str] = field(default_factory=list)
    ttl: int | None = None
    record: dict[str, Any] | None = None  # policy, pools, region order, min_healthy (GSLB records)
    asn: str | None = None  # "AS13335": the client's AS, when the zone has ASN rules
    # The nearest-region rule's comparison: [{region, km, bias, biased_km}], when it decided
    distances: list[dict[str, Any]] | None = None
    # The selection's walk: [{region, up, drain, size, need, serves, why}], in the order tried
    regions: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_text(self) -> str:
        lines = [f"query:   {self.name} {self.type}"]
        lines.append(f"client:  {self.subnet} (ECS)" if self.subnet else f"client:  {self.client}")
        lines.append(f"zone:    {self.zone or '(none: REFUSED)'}")
        if self.wildcard is not None:
            lines.append(f"record:  {self.wildcard} (a wildcard: the name has no node of its own)")
        if self.geo is not None:
            facts = ", ".join(f"{k} {v}" for k, v in self.geo.items() if v is not None) or "nothing known"
            lines.append(f"geoip:   {facts}")
        if self.asn is not None:
            lines.append(f"asn:     {self.asn}")
        if self.rule is not None:
            lines.append(f"rule:    {self.rule}")
            if self.distances:
                lines.append("distance: " + "; ".join(
                    f"{d['region']} {d['km']:.0f} km" + (f" (bias {d['bias']:+d}: {d['biased_km']:.0f} km)"
                                                         if d["bias"] else "")
                    for d in self.distances))
            lines.append(f"region:  {self.region}")
        if self.record is not None:
            lines.append(f"policy:  {self.record['policy']}; regions tried: {' > '.join(self.record['order'])}")
            if self.record.get("min_healthy") is not None:
                lines.append(f"min_healthy: {self.record['min_healthy']} per region")
            probes = self.record.get("probes", {})
            for region, addresses in self.record["pools"].items():
                shown = [f"{a} (probe {probes[a]})" if a in probes else a for a in addresses]
                lines.append(f"pool:    {region}: {', '.join(shown)}")
            for address, why in self.record.get("not_serving", {}).items():
                lines.append(f"down:    {address}: {why}")
        if self.regions:
            lines.append("health:  " + "; ".join(f"{step['region']}: {step['why']}" for step in self.regions))
        if self.scope_prefix is not None:
            lines.append(f"scope:   /{self.scope_prefix}")
        lines.append(f"rcode:   {self.rcode}")
        if self.answer:
            lines.append(f"answer:  {', '.join(self.answer)}" + (f" (ttl {self.ttl})" if self.ttl is not None else ""))
        return "\n".join(lines)


def explain(answerer: Answerer, name: str, rtype: str = "A", client: str | None = None, subnet: str | None = None,
            health: HealthView | None = None) -> Explanation:
    """What `answerer` answers and why; with `health` (the view its selection reads), also
    the selection's walk region by region (why a region was skipped)."""
    catalog: Catalog = answerer.catalog
    try:
        qname = parse_absolute(name if name.endswith(".") else name + ".", wildcard=True)
    except NameError_ as error:
        raise ExplainError(f"name: {error}") from None
    type_name = rtype.upper()
    if type_name not in QTYPE.reverse:
        raise ExplainError(f"type: unknown record type {rtype!r}")
    if client is not None and subnet is not None:
        raise ExplainError("give --client or --subnet, not both")
    source = ipaddress.ip_address("127.0.0.1")
    network = None
    try:
        if subnet is not None:
            network = ipaddress.ip_network(subnet, strict=False)
            address = network.network_address
        else:
            address = ipaddress.ip_address(client) if client is not None else source
            source = address
    except ValueError as error:
        raise ExplainError(f"client: {error}") from None

    option = ecs.encode_query(str(network.network_address), network.prefixlen) if network is not None else None
    zone = catalog.zone_for(qname)
    node = zone.answering(qname) if zone is not None else None  # its own, or the wildcard's (RFC 4592)
    gslb = node.dynamic.get(QTYPE.reverse[type_name]) if node is not None else None
    if gslb is not None and answerer.dynamic is not None and zone is not None:
        # A GSLB record: the decision itself (gslb.resolve), as both DNS paths make it.
        decision = answerer.dynamic.resolver.resolve(gslb, zone.region_map, source,
                                                     ecs.decode(option) if option is not None else None)
        response = None
    else:
        query = DNSRecord.question(to_text(qname), type_name)
        if option is not None:
            query.add_ar(EDNS0(udp_len=4096, opts=[EDNSOption(ecs.OPTION_CODE, option)]))
        raw = answerer.respond(query.pack(), source, tcp=True)
        response = DNSRecord.parse(raw) if raw else None
        decision = None

    result = Explanation(
        name=to_text(qname), type=type_name, client=str(address),
        subnet=str(network) if network is not None else None,
        zone=to_text(zone.origin) if zone else None,
    )
    if decision is not None:
        result.rcode = "SERVFAIL" if decision.servfail else "NOERROR"
        records = [e.degraded_record if decision.degraded else e.record for e in decision.endpoints]
        result.answer = [str(rr.rdata) for rr in records]
        result.ttl = records[-1].ttl if records else None
        result.scope_prefix = decision.scope if network is not None else None
    if response is not None:
        result.rcode = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}.get(
            response.header.rcode, str(response.header.rcode))
        result.answer = [str(rr.rdata) for rr in response.rr]
        result.ttl = response.rr[-1].ttl if response.rr else None
        for rr in response.ar:
            if rr.rtype == 41:
                for option in rr.rdata or ():
                    if option.code == ecs.OPTION_CODE:
                        result.scope_prefix = option.data[3]
    if node is not None and node.name != qname:
        result.wildcard = to_text(node.name)
    if zone is not None and zone.region_map is not None:
        found = node
        dynamic = found.dynamic.get(QTYPE.reverse[type_name]) if found is not None else None
        if dynamic is None and found is not None and type_name != "ANY":
            dynamic = found.dynamic.get(T_CNAME)  # a GSLB CNAME answers every type with its choice
        if dynamic is not None:
            placement = zone.region_map.locate(address)
            result.rule = placement.rule
            result.region = placement.region
            if placement.facts is not None:
                result.geo = {k: getattr(placement.facts, k)
                              for k in ("continent", "country", "subdivision", "latitude", "longitude")}
            else:
                result.geo = {}
            result.record = {
                "policy": dynamic.policy,
                "order": list(dynamic.regions_for(placement.region)),
                "pools": {region: [e.address for e in pool] for region, pool in dynamic.pools.items()},
                "not_serving": not_serving(answerer, dynamic),
                "min_healthy": dynamic.min_healthy,
            }
            probes = {e.address: e.probe for e in dynamic.endpoints if e.probe is not None}
            if probes:  # CNAME pools: where the host names are probed instead of resolving them
                result.record["probes"] = probes
            rules = zone.region_map.rules
            asn_of = getattr(zone.region_map, "asn", None)
            number = asn_of(address) if asn_of is not None else None
            if number is not None:
                result.asn = asn_text(number)
            point = rules.point_of(placement.facts)
            if point is not None and placement.rule.startswith("nearest"):
                result.distances = [{"region": region, "km": round(km, 1), "bias": rules.bias.get(region, 0),
                                     "biased_km": round(biased, 1)}
                                    for region, km, biased in rules.distances(point)]
            if health is not None:
                walked = trace(dynamic, placement.region, health)
                result.regions = [{"region": step.region, "up": step.up, "drain": step.drain, "size": step.size,
                                   "need": step.need, "serves": step.serves, "why": step.why}
                                  for step in walked.steps]
    return result


def not_serving(answerer: Answerer, record: Any) -> dict[str, str]:
    """The record's endpoints that are not UP, each with why, in the words of the log and /status
    (with shared health: the vantages that withdrew it, "DOWN by vantages a, b (2 of 3, ...)")."""
    selector = getattr(answerer.dynamic, "selector", None)
    health = getattr(selector, "health", None)
    if health is None:
        return {}
    found: dict[str, str] = {}
    for pool in record.pools.values():
        for endpoint in pool:
            status = health.status(record.check, endpoint.address)
            if status.name == "UP" or endpoint.address in found:
                continue
            view = health
            while not hasattr(view, "report") and hasattr(view, "view"):  # an overlay (what-if) over the board
                if endpoint.address in getattr(view, "addresses", ()):
                    break
                view = view.view
            report = view.report(record.check, endpoint.address) if hasattr(view, "report") else None
            found[endpoint.address] = f"{status.name} {report.reason}" if report is not None else \
                f"{status.name} (assumed for this explanation)"
    return found
