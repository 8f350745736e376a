"""Client address -> region, with the widest correct ECS scope (RFC 7871 SCOPE PREFIX-LENGTH).

    database = GeoDatabase.open("geodata/dbip-city-lite.mmdb")     # GeoDataError if unusable
    locator = build_locator(rules, database, TableCache.at(None))  # at load, off the event loop
    placement = locator.locate(ip_address("203.0.113.7"))          # region, scope_prefix, rule, facts
    region, scope = locator.place(ip_address("203.0.113.7"))       # the same, minus the why

A Locator answers from its zone's RegionTable (regiontable.py), which is complete before the
locator exists: ``build_locator`` takes it from memory or the disk cache, or builds it (~1 s for
the bundled data), so a query never waits for, polls or checks a table. Why an address gets its
region (the rule and the GeoIP facts, for /explain and the general path's logs) is worked out
only when asked: one walk down the GeoIP tree and a record decode, ~10 us.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from gslb.geo.facts import GeoFacts
from gslb.geo.mmdb import AsnDatabase, GeoDatabase
from gslb.geo.regiontable import RegionTable, subnet_tables
from gslb.geo.rules import RegionRules, asn_text
from gslb.geo.subnets import SubnetTable
from gslb.geo.tablecache import TableCache
from gslb.zone import Catalog

PLACEMENT_CACHE_SIZE = 65536  # placements kept by locate(), by address


class Placement:
    """Where a client address goes, and over how wide a prefix that answer holds.

    Immutable, compared by its four fields. ``rule`` and ``facts`` say why, for logs and explain;
    a placement made by a lookup works them out on first use (a tree walk and a record decode,
    ~10 us), as a DNS answer needs only ``region`` and ``scope_prefix``.
    """

    __slots__ = ("_address", "_facts", "_rule", "_source", "region", "scope_prefix")

    region: str | None
    scope_prefix: int  # widest prefix (of the looked-up address) over which region is constant
    _rule: str
    _facts: GeoFacts | None
    _source: _Explainer | None  # who works out rule and facts, until they are known
    _address: IPv4Address | IPv6Address | None

    def __init__(self, region: str | None, scope_prefix: int, rule: str, facts: GeoFacts | None) -> None:
        _set(self, "region", region)
        _set(self, "scope_prefix", scope_prefix)
        _set(self, "_rule", rule)
        _set(self, "_facts", facts)
        _set(self, "_source", None)
        _set(self, "_address", None)

    @property
    def rule(self) -> str:
        """"subnet 198.18.0.0/15" | "asn AS13335" | "subdivision NA-US-CA" | "country NA-US" |
        "continent EU" | "nearest us-west (1234 km)" | "default" | "none"."""
        source = self._source
        if source is not None:
            self._explain(source)
        return self._rule

    @property
    def facts(self) -> GeoFacts | None:
        """What GeoIP says about the address (None: no database or no data)."""
        source = self._source
        if source is not None:
            self._explain(source)
        return self._facts

    def _explain(self, source: _Explainer) -> None:
        rule, facts = source.describe(self._address)  # type: ignore[arg-type]
        _set(self, "_rule", rule)
        _set(self, "_facts", facts)
        _set(self, "_source", None)
        _set(self, "_address", None)

    def _fields(self) -> tuple[str | None, int, str, GeoFacts | None]:
        return self.region, self.scope_prefix, self.rule, self.facts

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Placement:
            return NotImplemented
        assert isinstance(other, Placement)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Placement(region={self.region!r}, scope_prefix={self.scope_prefix!r}, "
                f"rule={self.rule!r}, facts={self.facts!r})")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Placement is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Placement is immutable: cannot delete {name}")

    def __reduce__(self) -> tuple[Any, ...]:
        return Placement, self._fields()


_set = object.__setattr__
_new = object.__new__


def _deferred(region: str | None, scope_prefix: int, source: _Explainer,
              address: IPv4Address | IPv6Address) -> Placement:
    """A Placement whose rule and facts ``source.describe(address)`` gives when first asked."""
    placement = _new(Placement)
    _set(placement, "region", region)
    _set(placement, "scope_prefix", scope_prefix)
    _set(placement, "_rule", None)
    _set(placement, "_facts", None)
    _set(placement, "_source", source)
    _set(placement, "_address", address)
    return placement


class Locator:
    """Locates client addresses for one zone's rules, from their complete region table.

    ``asn_database``: the ASN file the table's ASN rules came from (None: no ASN rules apply).

    ``cache_size``: placements ``locate`` keeps, by address (the caller passes ECS addresses
    already cut to their source prefix, so equal clients share entries). Single-threaded (the
    DNS event loop's): the placement cache takes no lock.
    """

    __slots__ = ("_cache", "_cache_size", "_explainer", "_names", "asn_database", "database", "place_number", "rules",
                 "table")

    def __init__(self, table: RegionTable, rules: RegionRules, database: GeoDatabase | None, *,
                 cache_size: int = PLACEMENT_CACHE_SIZE, asn_database: AsnDatabase | None = None) -> None:
        """Use ``build_locator``; ``table`` must be the table of (database, rules, asn_database)."""
        self.rules = rules
        self.database = database
        self.asn_database = asn_database if rules.asns else None
        self.table = table
        self._names = table.regions  # table region index -> region
        self._explainer = _Explainer(database, rules, subnet_tables(rules), self.asn_database)
        self._cache: OrderedDict[IPv4Address | IPv6Address, Placement] = OrderedDict()
        self._cache_size = cache_size
        # (region, scope_prefix) of an address given as (int, IP version): ``place`` for callers
        # that hold the address as an int already (the fast path's ECS placements); the table's
        # own method, so a placement costs no call in between.
        self.place_number: Callable[[int, int], tuple[str | None, int]] = table.place

    def locate(self, address: IPv4Address | IPv6Address) -> Placement:
        """The region for ``address`` and the widest prefix of it that shares that region."""
        placement = self._cache.get(address)
        if placement is None:
            code, scope = self.table.lookup(int(address), address.version)
            placement = _deferred(self._names[code], scope, self._explainer, address)
            if self._cache_size > 0:
                if len(self._cache) >= self._cache_size:
                    self._cache.popitem(last=False)  # oldest first: cheap, and hot clients come back
                self._cache[address] = placement
        return placement

    def place(self, address: IPv4Address | IPv6Address) -> tuple[str | None, int]:
        """(region, scope_prefix) of ``locate(address)``, without building a Placement."""
        code, scope = self.table.lookup(int(address), address.version)
        return self._names[code], scope

    def describe(self, address: IPv4Address | IPv6Address) -> tuple[str, GeoFacts | None]:
        """(rule, facts) of ``address``: why it gets its region. A walk down the tree, ~10 us."""
        return self._explainer.describe(address)

    def asn(self, address: IPv4Address | IPv6Address) -> int | None:
        """The autonomous system the ASN database puts ``address`` in (None: no ASN rules, or
        the database does not know the address); for explain."""
        return self.asn_database.lookup(address)[0] if self.asn_database is not None else None

    def __repr__(self) -> str:
        return f"<Locator {len(self.rules.regions)} regions over {self.database!r}: {self.table!r}>"


class _Explainer:
    """Rule and facts of an address, the slow way: what a placement says when asked why."""

    __slots__ = ("_asn", "_database", "_rules", "_tables")

    def __init__(self, database: GeoDatabase | None, rules: RegionRules,
                 tables: dict[int, SubnetTable], asn: AsnDatabase | None = None) -> None:
        self._database, self._rules, self._tables, self._asn = database, rules, tables, asn

    def describe(self, address: IPv4Address | IPv6Address) -> tuple[str, GeoFacts | None]:
        # The table's precedence: subnet rule, then ASN rule, then GeoIP and the rules.
        facts = self._database.lookup(address)[0] if self._database is not None else None
        table = self._tables[address.version]
        rule = table.covering(int(address), address.max_prefixlen) if table else None
        if rule is not None:
            return rule.rule, facts
        if self._asn is not None:
            number = self._asn.lookup(address)[0]
            if self._rules.asn_region(number) is not None:
                return f"asn {asn_text(number)}", facts  # type: ignore[arg-type]
        return self._rules.match(facts)[1], facts


def build_locator(rules: RegionRules, database: GeoDatabase | None, cache: TableCache | None = None,
                  *, cache_size: int = PLACEMENT_CACHE_SIZE, asn: AsnDatabase | None = None) -> Locator:
    """The locator of one zone's ``rules`` over ``database`` (None: rules only) and, for the
    rules' ASN rules, ``asn``; its table complete: from ``cache`` (memory, then disk) or built
    now (~1 s for the bundled data; call it off the event loop). ``cache`` None: built in
    memory, not kept. ASN rules without an ``asn`` database apply to no one (``gslb check``
    refuses that configuration: gslb/build.py).

    Raises GeoDataError (one line) when the GeoIP or ASN file cannot be walked.
    """
    if cache is None:
        cache = TableCache(None)
    return Locator(cache.table(database, rules, asn), rules, database, cache_size=cache_size, asn_database=asn)


def locate_catalog(catalog: Catalog, database: GeoDatabase | None, cache: TableCache | None,
                   asn: AsnDatabase | None = None) -> Catalog:
    """``catalog`` with a locator on every zone that has regions (``zone.region_map``).

    The build step between validation and serving: a reload calls it in its worker thread with
    the validated catalog and the opened GeoIP (and ASN) database. Zones of the same rules share
    one table. Raises GeoDataError (one line) when the GeoIP or ASN file cannot be walked.
    """
    zones = tuple(
        replace(zone, region_map=build_locator(zone.region_rules, database, cache, asn=asn))
        if zone.region_rules is not None else zone
        for zone in catalog.zones)
    return Catalog(zones)
