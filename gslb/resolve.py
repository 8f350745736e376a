"""The one GSLB decision: a record, a client and its ECS option -> a Decision.

The general path (`dns/answer.py`), the fast path (`dns/fastpath.py`) and explain all come here;
they differ only in how they encode the Decision and in what they remember between queries.
Two steps, so the fast path can cache the first:

- `place`: who the client is - the ECS address when the option carries a non-zero SOURCE
  PREFIX-LENGTH, else the packet's source (RFC 7871 section 7.1.1) - and which region it falls
  in, with the widest prefix over which that region holds. It depends only on the address, so
  the fast path keeps it per ECS option bytes or per source address.
- `Resolver.decide`: the region's pools, health and the record's policy (through the Selector)
  -> endpoints, TTL and ECS scope. It runs for every general-path answer: policies keep state.
  The fast path takes the same decision in two parts instead: what depends only on the region
  and the health version, kept as a `gslb.plan.Plan`, and the policy's pick (or one step along
  its laid-out schedule) per query.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple, Protocol

from gslb.dns.ecs import ClientSubnet, subnet_number
from gslb.dynamic import DynamicRecord
from gslb.model.decision import (
    WHY_ALL_DOWN_ALL,
    WHY_ALL_DOWN_FIXED,
    WHY_ALL_DOWN_SERVFAIL,
    WHY_FALLBACK,
    WHY_PARTIAL,
    WHY_REGION,
    WHY_UNPLACED,
    Decision,
)
from gslb.selection import Selector

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Decision(...) goes through NamedTuple's generated __new__ (~370 ns); tuple.__new__ with the
# fields in order builds the same value in ~150 ns, and a GSLB answer on the fast path is ~8 us.
_decision = tuple.__new__


class Located(Protocol):
    @property
    def region(self) -> str | None: ...
    @property
    def scope_prefix(self) -> int: ...


class RegionLocator(Protocol):
    """What resolve needs of a zone's region map (gslb/geo)."""

    def locate(self, address: Address) -> Located: ...
    def place_number(self, number: int, version: int) -> tuple[str | None, int]: ...


class Place(NamedTuple):
    region: str | None  # None: no rule placed the client (or the zone has no region map)
    region_scope: int  # the prefix of the address over which `region` holds
    version: int  # 4 or 6
    key: int  # the address as an int, for the policies that hash the client
    from_subnet: bool  # the address came from ECS, so the reply carries a real scope


def place(region_map: RegionLocator | None, client: Address, subnet: ClientSubnet | None) -> Place:
    """Where the client of a query falls; `client` is the packet's source address."""
    if subnet is not None and subnet.source_prefix > 0:
        address, from_subnet = subnet.address, True
    else:
        address, from_subnet = client, False
    if region_map is None:
        return Place(None, 0, address.version, int(address), from_subnet)
    located = region_map.locate(address)
    return Place(located.region, located.scope_prefix, address.version, int(address), from_subnet)


_place = tuple.__new__  # Place without NamedTuple's Python-level __new__, as _decision above


def place_subnet(region_map: RegionLocator | None, option: bytes) -> Place | None:
    """`place` of a query whose ECS option (its raw bytes) has a non-zero SOURCE PREFIX-LENGTH,
    straight from the bytes; None for a malformed option (FORMERR). The same Place as
    `place(region_map, client, ecs.decode(option))`, at a fraction of the cost: the fast path
    calls it for each subnet its cache has not seen."""
    number = subnet_number(option)
    if number is None:
        return None
    version, value = number
    if region_map is None:
        return _place(Place, (None, 0, version, value, True))
    region, scope = region_map.place_number(value, version)
    return _place(Place, (region, scope, version, value, True))


class Resolver:
    """Decisions over one Selector (its pools, health view and per-record policy state)."""

    __slots__ = ("selector",)

    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def resolve(self, record: DynamicRecord, region_map: RegionLocator | None, client: Address,
                subnet: ClientSubnet | None) -> Decision:
        """The answer to a query for `record` from `client` (the packet's source) carrying
        `subnet` (its ECS option, decoded; None without one)."""
        return self.decide(record, place(region_map, client, subnet))

    def decide(self, record: DynamicRecord, where: Place) -> Decision:
        region, region_scope, version, key, from_subnet = where
        selector = self.selector
        selection = selector.select(record, region, key)
        # The scope says over which clients this answer holds: the region's prefix, narrowed to
        # what the policy reads of the address (hash reads the /24 or /56).
        if not selection.degraded:  # the common case (never SERVFAIL or all down)
            scope = selector.policy(record).scope(version, region_scope) if from_subnet else 0
            return _decision(Decision, (selection.region, selection.endpoints, scope, record.ttl, False, WHY_REGION,
                                        False))
        if selection.servfail:
            return _decision(Decision, (None, (), 0, record.ttl_degraded, True, WHY_ALL_DOWN_SERVFAIL, True))
        scope = selector.policy(record).scope(version, region_scope) if from_subnet else 0
        answered = selection.region
        if selection.all_down:
            why = WHY_ALL_DOWN_ALL if answered is not None else WHY_ALL_DOWN_FIXED
        elif region is None:
            why = WHY_UNPLACED
        elif answered != region:
            why = WHY_FALLBACK
        else:
            why = WHY_PARTIAL
        return _decision(Decision, (answered, selection.endpoints, scope, record.ttl_degraded, True, why, False))
