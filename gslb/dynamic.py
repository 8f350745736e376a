"""GSLB records: answers chosen per client from regional pools of endpoints.

A `DynamicRecord` is built once at load. Everything a query needs that does not depend on the
client or on health is precomputed here: each endpoint's answer RR, and for every region the
order in which regions are tried (its own pool, then its fallbacks), so the hot path only walks
a short tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dnslib import RR

from gslb.names import Name, to_text

TYPE_NAMES = {1: "A", 28: "AAAA", 5: "CNAME"}  # the types a GSLB record may have


@dataclass(frozen=True, slots=True)
class Endpoint:
    region: str
    # The key for health state and admin overrides, in canonical text form: the address of an
    # A/AAAA endpoint, the host name (lower case, with the trailing dot) of a CNAME endpoint.
    address: str
    weight: int
    record: RR  # the answer RR (owner = the record's name, the record's TTL), built at load
    degraded_record: RR  # the same with the degraded TTL
    # The same two as wire bytes whose owner is a pointer to the question's name (offset 12),
    # for the fast path: an answer is then these bytes joined, with no packing per query.
    wire: bytes = b""
    degraded_wire: bytes = b""
    # A CNAME endpoint's `probe:` address: where its health checks connect instead of the name
    # resolved through the system resolver. None for A/AAAA endpoints (probed at `address`).
    probe: str | None = None

    @property
    def host(self) -> str | None:
        """A CNAME endpoint's host name without the trailing dot (HTTP Host, TLS SNI); None for
        an address."""
        return self.address[:-1] if self.address.endswith(".") else None


@dataclass(frozen=True, slots=True)
class DynamicRecord:
    name: Name
    rtype: int  # 1 (A), 28 (AAAA) or 5 (CNAME: pools of host names, one per answer)
    ttl: int
    ttl_degraded: int
    policy: str
    answers: int  # addresses per response; 0 = every selected endpoint
    pools: Mapping[str, tuple[Endpoint, ...]]  # region -> endpoints, YAML order
    # region -> regions to try, in order: its own (when it has a pool), then its fallbacks.
    # The key None is for clients no rule placed: every pool in YAML order.
    order: Mapping[str | None, tuple[str, ...]]
    check: str | None
    when_all_down: str | tuple[Endpoint, ...]  # "all" | "servfail" | fixed endpoints
    path: str  # the YAML key path, for configuration problems (`records.app`)
    # The policy's options, validated by its kind (gslb/policy/); empty: its defaults.
    policy_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # `min_healthy:` as written (2 or "50%"; None: not set), and what it means per region: the
    # healthy endpoints a region's pool needs to serve (empty: 1, and drained ones serve as a
    # last resort). Never more than the pool holds: the loader refuses that.
    min_healthy: int | str | None = None
    min_up: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def display_name(self) -> str:
        """`app.example.org. A`: how runtime logs, metrics and status name the record (its DNS
        name and type); `path` is for problems in the zone file."""
        return f"{to_text(self.name)} {TYPE_NAMES.get(self.rtype, self.rtype)}"

    def regions_for(self, region: str | None) -> tuple[str, ...]:
        found = self.order.get(region)
        return found if found is not None else self.order[None]

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for pool in self.pools.values() for e in pool)
