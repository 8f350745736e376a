"""Client address -> region, with the widest correct ECS scope (RFC 7871 SCOPE PREFIX-LENGTH).

The scope we answer with is the widest prefix of the client address whose every address gets the
same region: gdnsd's "merge networks into the largest same-region supernet", but computed lazily.
Claiming a wider prefix than that would make resolvers serve our answer to clients of another
region; a narrower one only costs cache hits, so every shortcut below errs narrow.

How: the GeoIP search tree is a binary trie over address bits. For a tree node, "the region of
every address under it, or MIXED" is a pure function of the node (records decide regions, and the
same node may hang under several prefixes: MaxMind aliases ::ffff:0:0/96 and 2002::/16 to the
IPv4 subtree), so it is memoised per node and shared by all lookups; total work over the life of
the map is bounded by the tree size. A lookup walks down to the address's record, then climbs:
address/p-1 has one region iff address/p does and its sibling half is uniformly the same region.
Subnet rules overlay the tree: a prefix that holds a rule inside it is split and both halves
checked; a prefix inside a rule takes the rule's region.

Cost: the first lookup in a large area that is all one region may have to visit that whole area
once. So each lookup gets a work budget; when it runs out, the climb stops where it is (a narrower,
still correct scope), the result is not cached, and the work done so far stays memoised, so the
same area answers wider and cheaper on the next queries. Nothing is walked at start.

Memory: one byte per tree node for the node memo (an array, allocated zeroed on the first lazy
lookup), plus dicts for records seen, prefixes above subnet rules and the bounded placement cache.
Single-threaded by design (the DNS server runs on one event loop): nothing here takes a lock.

Compiled: the lazy walk is the way in, not the way to stay. With ``compile`` "background" (the
default) or "sync", RegionMap gets a RegionTable (compiled.py: the whole map as sorted ranges, ~1 us
a lookup, the same answers with no budget cut) from memory or the disk cache at once, else from a
compile (compiled_cache.py) in a background process, checked for every POLL_INTERVAL seconds from
the lazy path (or by ``ready()``); from then on ``locate`` reads the table and the lazy memos go.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import OrderedDict
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from gslb.geo import compiled_cache
from gslb.geo.compiled import RegionTable, subnet_tables
from gslb.geo.database import GeoDataError, GeoDatabase
from gslb.geo.facts import GeoFacts
from gslb.geo.rules import RegionRules
from gslb.geo.subnets import SubnetTable

log = logging.getLogger(__name__)

COMPILE_MODES = ("background", "sync", "off")
POLL_INTERVAL = 0.2  # seconds between checks, from lazy lookups, for a background compile's table

# Regions are small integers inside the scope machinery, so that the per-node memo can be one
# array slot per tree node (1 byte each: 5 MB for a 5M-node City file, where a dict would take
# ~100 bytes a node). Codes: 0 = not known yet, 1 = MIXED (addresses under the node get different
# regions), 2 = no region (None), 3.. = the zone's regions in YAML order. _INCOMPLETE is never
# stored: the lookup's work budget ran out before the answer was known.
_UNKNOWN, _MIXED, _NO_REGION, _INCOMPLETE = 0, 1, 2, -1


class Placement:
    """Where a client address goes, and over how wide a prefix that answer holds.

    Immutable, compared by its four fields. ``rule`` and ``facts`` say why, for logs and explain;
    a placement read from a compiled table works them out on first use (a tree walk and a record
    decode, ~10 us), as a DNS answer needs only ``region`` and ``scope_prefix``.
    """

    __slots__ = ("region", "scope_prefix", "_rule", "_facts", "_source", "_address")

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
        """"subnet 198.18.0.0/15" | "subdivision NA-US-CA" | "country NA-US" | "continent EU" |
        "nearest us-west (1234 km)" | "default" | "none"."""
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
        return self._fields() == other._fields()  # type: ignore[attr-defined]

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
_NO_MEMO = array("B")  # the lazy node memo before its first use, and after the table came


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


class RegionMap:
    """Locates client addresses for one zone's rules over one GeoIP database.

    ``database`` None means no GeoIP: only subnet rules and the default region apply.
    ``cache_size``: placements kept, by address (the caller passes ECS addresses already cut to
    their source prefix, so equal clients share entries). ``work_budget``: roughly the tree
    nodes one lazy lookup may visit while widening its scope (~1 us each; a record decode counts
    10). ``record_memo_limit``: record regions memoised before that memo is dropped and rebuilt
    lazily (~100 bytes each; the per-node memo is an array and needs no limit).
    ``compile``: "background" (a cached table at once, else lazy lookups until a background
    process has compiled one), "sync" (the table now: from the cache or compiled here, raising
    GeoDataError on a corrupt file) or "off" (lazy lookups only).
    """

    def __init__(self, database: GeoDatabase | None, rules: RegionRules, *,
                 cache_size: int = 65536, work_budget: int = 2000,
                 record_memo_limit: int = 1_000_000, compile: str = "background") -> None:
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {compile!r}")
        self.database = database
        self.rules = rules
        self._cache_size = cache_size
        self._work_budget = work_budget
        self._record_memo_limit = record_memo_limit
        self._cache: OrderedDict[IPv4Address | IPv6Address, Placement] = OrderedDict()
        # code -> region; codes 0 and 1 are not regions (see _UNKNOWN, _MIXED), 2 is None.
        self._regions: tuple[str | None, ...] = (None, None, None, *rules.regions)
        self._codes = {region: code for code, region in enumerate(self._regions) if code >= _NO_REGION}
        self._budget = 0
        if database is not None:
            self._node_count = database.node_count
            self._children = database.children
            self._starts = {4: database.start(4), 6: database.start(6)}
        else:
            # A tree of zero nodes: every value is a record and 0 is "no data".
            self._node_count = 0
            self._children = _no_children
            self._starts = {4: 0, 6: 0}
        # tree node -> region code, allocated zero-filled ("not known yet") by the first lazy
        # lookup: a map that has its table from the start never needs it.
        self._node_regions = _NO_MEMO
        self._record_regions: dict[int, int] = {}  # record value -> region code
        # (bits, prefix, network) -> region code, for prefixes with subnet rules strictly inside
        self._split_regions: dict[tuple[int, int, int], int] = {}
        self._tables = subnet_tables(rules)
        # Works out rule and facts for placements from the table (which hold it, not this map).
        self._explainer = _Explainer(database, rules, self._tables)
        # The compiled table, once there; until then, the background compile to ask for it.
        self._compiled: RegionTable | None = None
        self._names: tuple[str | None, ...] = ()  # table region index -> region
        self._pending: compiled_cache.Pending | None = None
        self._next_poll = 0.0
        if compile == "sync":
            found = compiled_cache.obtain(database, rules, background=False)
        elif compile == "background":
            try:
                found = compiled_cache.obtain(database, rules, background=True)
            except Exception as error:  # noqa: BLE001 (a table is an optimisation: serve without)
                log.warning("GeoIP regions: no compiled table (%s: %s); lookups stay lazy",
                            type(error).__name__, error)
                found = None
        else:
            found = None
        if isinstance(found, RegionTable):
            self._use(found)
        elif found is not None:
            self._pending = found

    def locate(self, address: IPv4Address | IPv6Address) -> Placement:
        """The region for ``address`` and the widest prefix of it that shares that region."""
        placement = self._cache.get(address)
        if placement is None:
            compiled = self._compiled
            if compiled is None and self._pending is not None and time.monotonic() >= self._next_poll:
                compiled = self._poll()
            if compiled is not None:
                code, scope = compiled.lookup(int(address), address.version)
                placement = _deferred(self._names[code], scope, self._explainer, address)
                self._remember(address, placement)
            else:
                placement = self._locate(address)
        return placement

    def place(self, address: IPv4Address | IPv6Address) -> tuple[str | None, int]:
        """(region, scope_prefix) of ``locate(address)``, without building a Placement."""
        compiled = self._compiled
        if compiled is not None:
            code, scope = compiled.lookup(int(address), address.version)
            return self._names[code], scope
        placement = self.locate(address)
        return placement.region, placement.scope_prefix

    def ready(self) -> bool:
        """Whether lookups read the compiled table; checks on a background compile first.

        The server may call this from a timer; lazy lookups also check, every POLL_INTERVAL.
        """
        if self._compiled is None and self._pending is not None:
            self._poll()
        return self._compiled is not None

    @property
    def table(self) -> RegionTable | None:
        """The compiled table in use, if any."""
        return self._compiled

    @property
    def table_status(self) -> str:
        """"compiled" (lookups read the table), "compiling" (lazy until a background compile is
        done) or "lazy" (no table is coming: compile="off", or it could not be made)."""
        if self._compiled is not None:
            return "compiled"
        return "compiling" if self._pending is not None else "lazy"

    def describe(self, address: IPv4Address | IPv6Address) -> tuple[str, GeoFacts | None]:
        """(rule, facts) of ``address``: why it gets its region. A walk down the tree, ~10 us."""
        return self._explainer.describe(address)

    def _corrupt(self, bits: int) -> GeoDataError:
        return _corrupt(self.database, bits)

    def _use(self, table: RegionTable) -> None:
        self._compiled = table
        self._names = table.regions
        self._pending = None
        # The lazy memos are done with (placements they made stay cached: they are the same).
        self._node_regions = _NO_MEMO
        self._record_regions = {}
        self._split_regions = {}

    def _poll(self) -> RegionTable | None:
        self._next_poll = time.monotonic() + POLL_INTERVAL
        pending = self._pending
        if pending is None:
            return None
        try:
            table = pending.poll()
        except Exception as error:  # noqa: BLE001 (never let the optimisation break a lookup)
            log.warning("GeoIP regions: background compile unusable (%s: %s); lookups stay lazy",
                        type(error).__name__, error)
            self._pending = None
            return None
        if table is not None:
            self._use(table)
        elif pending.failed:
            self._pending = None
        return table

    def _remember(self, address: IPv4Address | IPv6Address, placement: Placement) -> None:
        if self._cache_size > 0:
            if len(self._cache) >= self._cache_size:
                self._cache.popitem(last=False)  # oldest first: cheap, and hot clients come back
            self._cache[address] = placement

    # -- the slow path -------------------------------------------------------------------------
    def _locate(self, address: IPv4Address | IPv6Address) -> Placement:
        if len(self._record_regions) > self._record_memo_limit:
            self._record_regions.clear()
        if self._node_regions is _NO_MEMO and self._node_count:
            typecode = "B" if len(self._regions) <= 0xFF else "H"
            self._node_regions = array(typecode, bytes(self._node_count * array(typecode).itemsize))
        self._budget = self._work_budget
        version = address.version
        bits = 32 if version == 4 else 128
        number = int(address)
        table = self._tables[version]
        node_count, children = self._node_count, self._children

        # Down to the record that holds the address, noting the sibling at each depth.
        siblings: list[int] = []
        value = self._starts[version]
        depth = 0
        while value < node_count:
            left, right = children(value)
            if (number >> (bits - 1 - depth)) & 1:
                value, sibling = right, left
            else:
                value, sibling = left, right
            siblings.append(sibling)
            depth += 1
            if depth > bits:  # only a corrupt tree (a cycle) is deeper than the address
                raise self._corrupt(bits)
        record = value

        facts = self.database.facts(record) if self.database is not None else None
        region, description = self.rules.match(facts)
        self._record_regions[record] = self._codes[region]
        rule = table.covering(number, bits) if table else None
        if rule is not None:
            region, description = rule.region, rule.rule
        code = self._codes[region]

        # address/prefix is one region once no rule lies strictly inside it and it is within
        # the record's network; from there, widen while the sibling half agrees.
        prefix = table.deepest_inside(number, depth) if table else depth
        complete = True
        while prefix > 0:
            shift = bits - prefix
            sibling_network = ((number >> shift) ^ 1) << shift
            sibling_value = siblings[prefix - 1] if prefix <= depth else record
            sibling_code = self._uniform(sibling_value, sibling_network, prefix, table, bits)
            if sibling_code != code:
                complete = sibling_code != _INCOMPLETE
                break
            prefix -= 1

        placement = Placement(region, prefix, description, facts)
        if complete:
            self._remember(address, placement)
        return placement

    def _uniform(self, value: int, network: int, prefix: int, table: SubnetTable, bits: int) -> int:
        """Region code of all of ``network``/``prefix`` (tree ``value`` there), or _MIXED/_INCOMPLETE."""
        if table:
            if table.has_inside(network, prefix):
                # A rule inside may make part of this prefix differ: decide each half. Only
                # prefixes above a rule get here; memoised, as climbs to the root pass them all.
                key = (bits, prefix, network)
                known = self._split_regions.get(key)
                if known is not None:
                    return known
                if value < self._node_count:
                    left, right = self._children(value)
                else:
                    left = right = value  # the record's network goes on below this prefix
                code = self._uniform(left, network, prefix + 1, table, bits)
                if code == _INCOMPLETE:
                    return code
                if code != _MIXED:
                    second = self._uniform(right, network | (1 << (bits - prefix - 1)), prefix + 1,
                                           table, bits)
                    if second == _INCOMPLETE:
                        return second
                    if second != code:
                        code = _MIXED
                self._split_regions[key] = code
                return code
            rule = table.covering(network, prefix)
            if rule is not None:
                return self._codes[rule.region]
        return self._tree_uniform(value)

    def _tree_uniform(self, value: int) -> int:
        """Region code of every address under tree ``value`` (GeoIP only), or _MIXED/_INCOMPLETE.

        Depth-first with an explicit stack (no recursion limit, and the budget can stop it
        anywhere). A node is memoised only once both its halves are known, so a stopped walk
        leaves only true answers behind.
        """
        node_count = self._node_count
        if value >= node_count:
            return self._record_region(value)
        memo = self._node_regions
        known = memo[value]
        if known != _UNKNOWN:
            return known
        children = self._children
        stack = [(value, *children(value))]
        while stack:
            node, left, right = stack[-1]
            first = memo[left] if left < node_count else self._record_region(left)
            if first == _UNKNOWN:
                if not self._spend() or len(stack) > 128:  # >128 deep: a cycle, i.e. corrupt
                    return _INCOMPLETE
                stack.append((left, *children(left)))
                continue
            if first != _MIXED:
                second = memo[right] if right < node_count else self._record_region(right)
                if second == _UNKNOWN:
                    if not self._spend() or len(stack) > 128:
                        return _INCOMPLETE
                    stack.append((right, *children(right)))
                    continue
                if second != first:
                    first = _MIXED
            memo[node] = first
            stack.pop()
        return memo[value]

    def _record_region(self, value: int) -> int:
        code = self._record_regions.get(value)
        if code is None:
            self._budget -= 10  # a decode costs ~10 node visits
            facts = self.database.facts(value) if self.database is not None else None
            code = self._record_regions[value] = self._codes[self.rules.match(facts)[0]]
        return code

    def _spend(self) -> bool:
        self._budget -= 1
        return self._budget > 0


class _Explainer:
    """Rule and facts of an address, the slow way: what a table placement says when asked why."""

    __slots__ = ("_database", "_rules", "_tables", "_node_count", "_children", "_starts")

    def __init__(self, database: GeoDatabase | None, rules: RegionRules,
                 tables: dict[int, SubnetTable]) -> None:
        self._database, self._rules, self._tables = database, rules, tables
        if database is not None:
            self._node_count, self._children = database.node_count, database.children
            self._starts = {4: database.start(4), 6: database.start(6)}
        else:
            self._node_count, self._children, self._starts = 0, _no_children, {4: 0, 6: 0}

    def describe(self, address: IPv4Address | IPv6Address) -> tuple[str, GeoFacts | None]:
        version = address.version
        bits = 32 if version == 4 else 128
        number = int(address)
        node_count, children = self._node_count, self._children
        value = self._starts[version]
        depth = 0
        while value < node_count:
            value = children(value)[(number >> (bits - 1 - depth)) & 1]
            depth += 1
            if depth > bits:
                raise _corrupt(self._database, bits)
        facts = self._database.facts(value) if self._database is not None else None
        description = self._rules.match(facts)[1]
        table = self._tables[version]
        rule = table.covering(number, bits) if table else None
        return (rule.rule if rule is not None else description), facts


def _corrupt(database: GeoDatabase | None, bits: int) -> GeoDataError:
    path = database.path if database is not None else "(none)"
    return GeoDataError(f"GeoIP file {path}: corrupt (search tree deeper than {bits} bits); "
                        f"download it again")


def _no_children(node: int) -> tuple[int, int]:
    raise AssertionError("no GeoIP database: the tree has no nodes")
