"""A zone as the server reads it: immutable, built once by the loader, looked up per query.

`Zone.find` does the name-tree part of RFC 1034 section 4.3.2 (delegation cuts, existing names,
empty non-terminals, wildcards as RFC 4592 defines them, NXDOMAIN); what goes in each section of
the reply is `dns/answer.py`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from dnslib import RR

from gslb.names import Name, is_subdomain, to_text

if TYPE_CHECKING:
    from gslb.dnssec.signer import ZoneSigner
    from gslb.dynamic import DynamicRecord
    from gslb.geo.facts import GeoFacts
    from gslb.geo.rules import RegionRules
    from gslb.health.checks import Check


class Placed(Protocol):
    """Where a client goes (gslb/geo/locator.py's Placement): the region, the ECS scope, and why."""

    @property
    def region(self) -> str | None: ...
    @property
    def scope_prefix(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def facts(self) -> GeoFacts | None: ...


class RegionLocator(Protocol):
    """What answering asks of a zone's region locator (gslb/geo/locator.py's Locator), built for
    the zone's `region_rules` by the build step (gslb.geo.locate_catalog) before it serves."""

    @property
    def rules(self) -> RegionRules: ...
    def locate(self, address: IPv4Address | IPv6Address) -> Placed: ...
    def place(self, address: IPv4Address | IPv6Address) -> tuple[str | None, int]: ...
    def place_number(self, number: int, version: int) -> tuple[str | None, int]: ...


@dataclass(frozen=True, slots=True)
class RRset:
    name: Name
    rtype: int
    ttl: int
    records: tuple[RR, ...]  # dnslib RRs with the canonical owner name, built at load


@dataclass(frozen=True, slots=True)
class Node:
    name: Name
    rrsets: Mapping[int, RRset]
    dynamic: Mapping[int, DynamicRecord] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def cname(self) -> RRset | None:
        return self.rrsets.get(5)


@dataclass(frozen=True, slots=True)
class Referral:
    """What a query at or below a delegation point gets: the child's NS and their glue."""

    cut: Name
    ns: RRset
    glue: tuple[RRset, ...]


class Found(Enum):
    NODE = "node"
    EMPTY_NONTERMINAL = "empty non-terminal"
    NXDOMAIN = "nxdomain"
    REFERRAL = "referral"
    WILDCARD = "wildcard"  # no node, but the closest encloser's '*' child answers (RFC 4592)


@dataclass(frozen=True, slots=True)
class Zone:
    origin: Name
    file: str
    serial: int
    soa: RRset
    negative_ttl: int  # RFC 2308 section 5: min(SOA TTL, SOA MINIMUM)
    nodes: Mapping[Name, Node]
    nonterminals: frozenset[Name]
    referrals: Mapping[Name, Referral]  # delegation point -> referral
    apex_glue: tuple[RRset, ...]  # A/AAAA of in-zone name servers, for NS answers
    region_map: RegionLocator | None = None  # set by the build step (gslb.geo.locate_catalog), not by config
    checks: Mapping[str, Check] = field(default_factory=lambda: MappingProxyType({}))  # health checks by name
    region_rules: RegionRules | None = None  # regions:, subnets:, default_region:, validated
    signer: ZoneSigner | None = None  # dnssec: the zone's online signer, its keys read at load; None: unsigned
    # RFC 4592: closest encloser -> its source of synthesis (the '*' node below it), from the loader
    wildcards: Mapping[Name, Node] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def label(self) -> str:
        """The origin as text, for metrics labels, logs and the API."""
        return to_text(self.origin)

    @property
    def apex(self) -> Node:
        return self.nodes[self.origin]

    def find(self, name: Name) -> tuple[Found, Node | Referral | None]:
        """Where `name` (at or below the origin) stands in this zone."""
        if self.referrals:
            # The cut nearest the apex wins: everything below it belongs to the child zone.
            depth = len(self.origin)
            for length in range(depth + 1, len(name) + 1):
                referral = self.referrals.get(name[len(name) - length:])
                if referral is not None:
                    return Found.REFERRAL, referral
        node = self.nodes.get(name)
        if node is not None:
            return Found.NODE, node
        if name in self.nonterminals:
            return Found.EMPTY_NONTERMINAL, None
        if self.wildcards:
            # RFC 4592 section 3.3.1: the closest encloser is the nearest ancestor that exists (a
            # node or an empty non-terminal); only its own '*' child may synthesise the answer,
            # so a '*' higher up never reaches past an existing name.
            nodes, nonterminals = self.nodes, self.nonterminals
            for start in range(1, len(name) - len(self.origin) + 1):
                ancestor = name[start:]
                if ancestor in nodes or ancestor in nonterminals:
                    source = self.wildcards.get(ancestor)
                    if source is not None:
                        return Found.WILDCARD, source
                    break
        return Found.NXDOMAIN, None

    def answering(self, name: Name) -> Node | None:
        """The node whose records answer `name`: its own, or the wildcard that synthesises it;
        None for a referral, an empty non-terminal or NXDOMAIN."""
        where = self.find(name)[1]
        return where if isinstance(where, Node) else None

    def contains(self, name: Name) -> bool:
        return is_subdomain(name, self.origin)


class Catalog:
    """Every zone served, found by the longest origin that contains a name."""

    __slots__ = ("zones", "_by_origin", "_depths")

    def __init__(self, zones: tuple[Zone, ...]) -> None:
        self.zones = zones
        self._by_origin: Mapping[Name, Zone] = MappingProxyType({z.origin: z for z in zones})
        # Longest first, so a child zone served here beats its parent.
        self._depths = tuple(sorted({len(z.origin) for z in zones}, reverse=True))

    def zone_for(self, name: Name) -> Zone | None:
        size = len(name)
        for depth in self._depths:
            if depth <= size:
                zone = self._by_origin.get(name[size - depth:])
                if zone is not None:
                    return zone
        return None
