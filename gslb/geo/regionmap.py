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

Memory: one byte per tree node for the node memo (an array, allocated zeroed at build), plus
dicts for records seen, prefixes above subnet rules and the bounded placement cache.
Single-threaded by design (the DNS server runs on one event loop): nothing here takes a lock.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from gslb.geo.database import GeoDataError, GeoDatabase
from gslb.geo.facts import GeoFacts
from gslb.geo.rules import RegionRules
from gslb.geo.subnets import SubnetTable

_IPV4_MAPPED = int(IPv6Address("::ffff:0:0"))

# Regions are small integers inside the scope machinery, so that the per-node memo can be one
# array slot per tree node (1 byte each: 5 MB for a 5M-node City file, where a dict would take
# ~100 bytes a node). Codes: 0 = not known yet, 1 = MIXED (addresses under the node get different
# regions), 2 = no region (None), 3.. = the zone's regions in YAML order. _INCOMPLETE is never
# stored: the lookup's work budget ran out before the answer was known.
_UNKNOWN, _MIXED, _NO_REGION, _INCOMPLETE = 0, 1, 2, -1


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a client address goes, and over how wide a prefix that answer holds."""

    region: str | None
    scope_prefix: int  # widest prefix (of the looked-up address) over which region is constant
    rule: str  # "subnet 198.18.0.0/15" | "subdivision NA-US-CA" | "country NA-US" |
    # "continent EU" | "nearest us-west (1234 km)" | "default" | "none"
    facts: GeoFacts | None  # what GeoIP says about the address (None: no database or no data)


class RegionMap:
    """Locates client addresses for one zone's rules over one GeoIP database.

    ``database`` None means no GeoIP: only subnet rules and the default region apply.
    ``cache_size``: placements kept, by address (the caller passes ECS addresses already cut to
    their source prefix, so equal clients share entries). ``work_budget``: roughly the tree
    nodes one lookup may visit while widening its scope (~1 us each; a record decode counts 10).
    ``record_memo_limit``: record regions memoised before that memo is dropped and rebuilt
    lazily (~100 bytes each; the per-node memo is an array and needs no limit).
    """

    def __init__(self, database: GeoDatabase | None, rules: RegionRules, *,
                 cache_size: int = 65536, work_budget: int = 2000,
                 record_memo_limit: int = 1_000_000) -> None:
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
        # tree node -> region code; zero-filled, so every node starts "not known yet".
        typecode = "B" if len(self._regions) <= 0xFF else "H"
        self._node_regions = array(typecode, bytes(self._node_count * array(typecode).itemsize))
        self._record_regions: dict[int, int] = {}  # record value -> region code
        # (bits, prefix, network) -> region code, for prefixes with subnet rules strictly inside
        self._split_regions: dict[tuple[int, int, int], int] = {}
        v4 = [(net, region, f"subnet {net}") for net, region in rules.subnets if net.version == 4]
        v6 = [(net, region, f"subnet {net}") for net, region in rules.subnets if net.version == 6]
        # An IPv4 rule also holds the IPv4-mapped form of its addresses (::ffff:a.b.c.d), as
        # GeoIP databases do; listed first so that an explicit IPv6 rule for them wins.
        mapped = [(_ipv4_mapped(net), region, description) for net, region, description in v4]
        self._tables = {4: SubnetTable(v4, 32), 6: SubnetTable(mapped + v6, 128)}

    def locate(self, address: IPv4Address | IPv6Address) -> Placement:
        """The region for ``address`` and the widest prefix of it that shares that region."""
        placement = self._cache.get(address)
        if placement is None:
            placement = self._locate(address)
        return placement

    # -- the slow path -------------------------------------------------------------------------
    def _locate(self, address: IPv4Address | IPv6Address) -> Placement:
        if len(self._record_regions) > self._record_memo_limit:
            self._record_regions.clear()
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
                raise GeoDataError(f"GeoIP file {self.database.path}: corrupt (search tree "
                                   f"deeper than {bits} bits); download it again")
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
        if complete and self._cache_size > 0:
            if len(self._cache) >= self._cache_size:
                self._cache.popitem(last=False)  # oldest first: cheap, and hot clients come back
            self._cache[address] = placement
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


def _ipv4_mapped(network: IPv4Network) -> IPv6Network:
    return IPv6Network((_IPV4_MAPPED | int(network.network_address), 96 + network.prefixlen))


def _no_children(node: int) -> tuple[int, int]:
    raise AssertionError("no GeoIP database: the tree has no nodes")
