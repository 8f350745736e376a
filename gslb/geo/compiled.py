"""A zone's whole region map, compiled: sorted address ranges of one region each.

RegionMap (regionmap.py) answers "which region, over how wide a prefix" lazily, walking the GeoIP
search tree per lookup. A RegionTable answers the same question for every address at once, built
by one walk of the whole tree in address order: each distinct data record is matched against the
zone's rules once, subnet rules are painted over the result (the most specific wins) and adjacent
ranges of one region are merged. A lookup is a bisect for the range that holds the address, and
the scope is the widest prefix of the address lying inside that range: a prefix is one region
exactly when it lies inside one maximal same-region range, so this is the widest correct ECS
scope, the very answer RegionMap computes when its work budget does not run out.

Layout, per family: the ranges' first addresses (sorted) and their region indexes, in parallel
``array``s. IPv4 starts are 32-bit; IPv6 starts keep their top 64 bits in an array and the low 64
bits, almost always zero (networks are /64 or wider), in a small dict of exceptions. Region index
0 is "no region" (None), i >= 1 is ``rules.regions[i - 1]``.

Aliases: MaxMind-style files hang the IPv4 subtree (the node at ::/96) under ::ffff:0:0/96 and
2002::/16 too. The IPv6 walk does not walk it again: the IPv6 table holds one range there whose
index (>= len(regions)) names an alias, and a lookup inside it reads the IPv4 table (with the
zone's IPv4 rules for ::ffff:0:0/96, which they also cover, and without them elsewhere) and adds
the alias depth to the scope. A scope never reaches past an alias unless the whole IPv4 space is
one region, and then the alias is stored as a plain range that merges with its neighbours.

Cost, with the example zone's four regions, in pure Python: on geodata/dbip-city-lite.mmdb (3.2M
nodes) 0.94 s to compile, 298,362 ranges in 1.6 MB; on its earlier 8.4M-node build 2.4 s (0.2 s of
it decoding the tree into two arrays in bulk, the rest walking it), 804,499 ranges in 6.2 MB. A
lookup is 0.6-0.8 us (IPv4-mapped and 6to4 addresses ~1.5 us).
"""

from __future__ import annotations

import hashlib
import json
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Any

from gslb.geo.database import GeoDataError, GeoDatabase
from gslb.geo.rules import RegionRules
from gslb.geo.subnets import SubnetRule, SubnetTable

FORMAT_VERSION = 1  # of the bytes dumps() writes; bump on any change to the layout or the walk
_MAGIC = b"gslb region table\n"
_IPV4_MAPPED = int(IPv6Address("::ffff:0:0"))
_LOW64 = (1 << 64) - 1
_U32 = "I" if array("I").itemsize == 4 else "L"  # a 4-byte unsigned typecode
_ALIAS_RAW, _ALIAS_RULED = 0, 1  # which IPv4 table an alias reads: without / with the IPv4 rules

# How each record size packs a node's two records: (bytes per node, then for the left and the
# right record the source byte of each of its 4 big-endian bytes, None for a zero byte, and
# whether to keep the high or low nibble of it). 28-bit records share a middle byte.
_HIGH_NIBBLE = bytes(value >> 4 for value in range(256))
_LOW_NIBBLE = bytes(value & 0x0F for value in range(256))
_NODE_LAYOUTS = {
    24: (6, ((None, None), (0, None), (1, None), (2, None)),
         ((None, None), (3, None), (4, None), (5, None))),
    28: (7, ((3, _HIGH_NIBBLE), (0, None), (1, None), (2, None)),
         ((3, _LOW_NIBBLE), (4, None), (5, None), (6, None))),
    32: (8, ((0, None), (1, None), (2, None), (3, None)),
         ((4, None), (5, None), (6, None), (7, None))),
}


class TableFormatError(Exception):
    """Bytes that are not a region table this version of gslb wrote (or were damaged)."""


def subnet_tables(rules: RegionRules) -> dict[int, SubnetTable]:
    """The zone's subnet rules per family, as RegionMap and the table apply them.

    An IPv4 rule also holds the IPv4-mapped form of its addresses (::ffff:a.b.c.d), as GeoIP
    databases do; listed first, so that an explicit IPv6 rule for the same network wins.
    """
    v4 = [(net, region, f"subnet {net}") for net, region in rules.subnets if net.version == 4]
    v6 = [(net, region, f"subnet {net}") for net, region in rules.subnets if net.version == 6]
    mapped = [(_ipv4_mapped(net), region, description) for net, region, description in v4]
    return {4: SubnetTable(v4, 32), 6: SubnetTable(mapped + v6, 128)}


class RegionTable:
    """Region and widest correct scope of every address, for one GeoIP file and one zone's rules.

    Build with ``RegionTable.compile(database, rules)``; keep with ``dumps``/``loads``. Immutable,
    and shared by every RegionMap of the same file and rules.
    """

    __slots__ = ("regions", "ranges", "_starts4", "_codes4", "_count4", "_raw4", "_high6",
                 "_codes6", "_count6", "_lows6", "_aliases", "_alias_specs", "_first_alias",
                 "__weakref__")

    regions: tuple[str | None, ...]  # index -> region; 0 is None (no region)
    ranges: int  # how many ranges the table holds, over both families

    def __init__(self, regions: tuple[str | None, ...], ipv4: tuple[array, array],
                 ipv4_raw: tuple[array, array] | None, ipv6_high: array, ipv6_codes: array,
                 ipv6_lows: Mapping[int, int], aliases: tuple[tuple[int, int, int], ...]) -> None:
        """Use ``compile`` or ``loads``. ``aliases``: (first address, depth, _ALIAS_RAW|_RULED)."""
        self.regions = regions
        self._starts4, self._codes4 = ipv4
        self._count4 = len(self._starts4)
        # The IPv4 table without the IPv4 rules, for ::/96 and 2002::/16; None: the same table.
        self._raw4 = ipv4_raw if ipv4_raw is not None else ipv4
        self._high6, self._codes6 = ipv6_high, ipv6_codes
        self._count6 = len(ipv6_high)
        self._lows6 = dict(ipv6_lows)  # range index -> low 64 bits of its start, where not 0
        self._first_alias = len(regions)
        self._alias_specs = aliases
        self._aliases = tuple(
            (base, depth, self._raw4 if which == _ALIAS_RAW else ipv4)
            for base, depth, which in aliases)
        self.ranges = self._count4 + self._count6

    # -- lookups -------------------------------------------------------------------------------
    def lookup(self, number: int, version: int) -> tuple[int, int]:
        """(region index, widest correct scope prefix) of address ``number`` of IP ``version``."""
        if version == 4:  # _lookup32, inlined: this is the hot path
            starts = self._starts4
            index = bisect_right(starts, number) - 1
            start = starts[index]
            end = starts[index + 1] if index + 1 < self._count4 else 0x1_0000_0000
            below = (number ^ (start - 1)).bit_length() if start else 33
            above = (number ^ end).bit_length()
            return self._codes4[index], 33 - (below if below < above else above)
        return self.lookup6(number)

    def lookup6(self, number: int) -> tuple[int, int]:
        """``lookup(number, 6)``."""
        high = self._high6
        upper = number >> 64
        index = bisect_right(high, upper) - 1  # the last range whose top 64 bits are <= ours
        lows = self._lows6
        if lows:  # some starts have low bits: make them exact
            low = lows.get(index, 0)
            if low > (number & _LOW64) and high[index] == upper:
                index = self._before(number, upper, index)
                low = lows.get(index, 0)
            start = (high[index] << 64) | low
            end = (((high[index + 1] << 64) | lows.get(index + 1, 0)) if index + 1 < self._count6
                   else 1 << 128)
        else:
            start = high[index] << 64
            end = high[index + 1] << 64 if index + 1 < self._count6 else 1 << 128
        code = self._codes6[index]
        if code >= self._first_alias:
            base, depth, (starts, codes) = self._aliases[code - self._first_alias]
            code, scope = _lookup32((number - base) >> (96 - depth), starts, codes)
            return code, depth + scope
        below = (number ^ (start - 1)).bit_length() if start else 129
        above = (number ^ end).bit_length()
        return code, 129 - (below if below < above else above)

    def _before(self, number: int, upper: int, index: int) -> int:
        """The range holding ``number`` when range ``index`` (same top 64 bits) starts after it.

        Ranges sharing their top 64 bits are ordered by their low bits: bisect over those.
        """
        high, lows = self._high6, self._lows6
        lower = number & _LOW64
        low, limit = bisect_left(high, upper, 0, index), index  # the answer: in [low - 1, index - 1]
        while low < limit:
            middle = (low + limit) // 2
            if lows.get(middle, 0) <= lower:
                low = middle + 1
            else:
                limit = middle
        return low - 1

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def compile(cls, database: GeoDatabase | None, rules: RegionRules) -> RegionTable:
        """Walk all of ``database`` (None: no GeoIP, rules only) and build the table.

        Raises GeoDataError on a corrupt search tree or data section, and on a file whose tree
        is not a tree (shared subtrees other than the IPv4 aliases) which the walk cannot handle.
        """
        regions: tuple[str | None, ...] = (None, *rules.regions)
        code_of_region = {region: index for index, region in enumerate(regions)}
        record_codes: dict[int, int] = {}

        def record_code(record: int) -> int:
            facts = database.facts(record) if database is not None else None
            code = record_codes[record] = code_of_region[rules.match(facts)[0]]
            return code

        if database is None:
            raw4 = ([0], [record_code(0)])
            raw6: tuple[list[int], list[int]] = ([0], [raw4[1][0]])
            aliases: list[tuple[int, int]] = []
        else:
            walk = _Walk(database, record_codes, record_code)
            start4 = database.start(4)
            raw4 = walk.runs(start4, 32)
            raw6, aliases = walk.runs(database.start(6), 128, alias=start4, with_aliases=True)
            del walk
        tables = subnet_tables(rules)
        ruled4 = _overlay(*raw4, tables[4], 32, code_of_region)

        # Decide what each alias of the IPv4 subtree becomes in the IPv6 table.
        table6 = tables[6]
        mapped = {(_IPV4_MAPPED | rule.network, 96 + rule.prefix, rule.region)
                  for rule in _rules_of(tables[4])}
        kept: list[tuple[int, int, int]] = []
        excluded: set[tuple[int, int, str]] = set()
        replace: dict[int, tuple[list[int], list[int]]] = {}  # alias number -> its runs, in place
        for number, (base, depth) in enumerate(aliases):
            inner = {(rule.network, rule.prefix, rule.region) for rule in _rules_of(table6)
                     if rule.prefix > depth and rule.network >> (128 - depth) == base >> (128 - depth)}
            if table6.covering(base, depth) is not None or (inner and not (
                    depth == 96 and base == _IPV4_MAPPED and inner == mapped)):
                # Rules decide some of it in their own way: spell the subtree out here.
                shift = 96 - depth
                replace[number] = ([base + (start << shift) for start in raw4[0]], raw4[1])
                continue
            which = _ALIAS_RULED if inner else _ALIAS_RAW
            starts, codes = ruled4 if inner else raw4
            if len(starts) == 1:  # the whole IPv4 space is one region: an ordinary range
                replace[number] = ([base], codes)
                continue
            excluded |= inner
            kept.append((base, depth, which))
        starts6, codes6 = _splice_aliases(raw6, aliases, replace, kept, len(regions))
        if excluded:
            table6 = SubnetTable([(IPv6Network((rule.network, rule.prefix)), rule.region, rule.rule)
                                  for rule in _rules_of(table6)
                                  if (rule.network, rule.prefix, rule.region) not in excluded], 128)
        starts6, codes6 = _overlay(starts6, codes6, table6, 128, code_of_region)

        code_type = "B" if len(regions) + len(kept) <= 0x100 else "I"
        ipv4 = (array(_U32, ruled4[0]), array(code_type, ruled4[1]))
        ipv4_raw = None
        if any(which == _ALIAS_RAW for _, _, which in kept) and ruled4 != raw4:
            ipv4_raw = (array(_U32, raw4[0]), array(code_type, raw4[1]))
        high6 = array("Q", [start >> 64 for start in starts6])
        lows6 = {index: start & _LOW64 for index, start in enumerate(starts6) if start & _LOW64}
        return cls(regions, ipv4, ipv4_raw, high6, array(code_type, codes6), lows6, tuple(kept))

    # -- keeping -------------------------------------------------------------------------------
    def dumps(self, meta: Mapping[str, Any] | None = None) -> bytes:
        """The table as bytes for ``loads``: a JSON header (with ``meta``), then the arrays."""
        arrays = self._arrays()
        payload = b"".join(part.tobytes() for _, part in arrays)
        header = {
            "format": FORMAT_VERSION,
            "byteorder": sys.byteorder,
            "meta": dict(meta or {}),
            "regions": list(self.regions),
            "aliases": [[format(base, "x"), depth, which] for base, depth, which in self._alias_specs],
            "arrays": [[name, part.typecode, part.itemsize, len(part)] for name, part in arrays],
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        encoded = json.dumps(header, separators=(",", ":")).encode()
        return _MAGIC + len(encoded).to_bytes(8, "little") + encoded + payload

    @classmethod
    def loads(cls, data: bytes) -> tuple[RegionTable, dict[str, Any]]:
        """(table, meta) from ``dumps`` bytes; TableFormatError if they are not a good table."""
        view = memoryview(data)
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
            raise TableFormatError("not a gslb region table")
        at = len(_MAGIC)
        size = int.from_bytes(view[at:at + 8], "little")
        at += 8
        try:
            header = json.loads(bytes(view[at:at + size]))
            if header["format"] != FORMAT_VERSION or header["byteorder"] != sys.byteorder:
                raise TableFormatError(f"format {header['format']} {header['byteorder']}-endian, "
                                       f"not {FORMAT_VERSION} {sys.byteorder}-endian")
            payload = view[at + size:]
            if hashlib.sha256(payload).hexdigest() != header["sha256"]:
                raise TableFormatError("checksum mismatch (damaged)")
            parts: dict[str, array] = {}
            offset = 0
            for name, typecode, itemsize, length in header["arrays"]:
                part = array(typecode)
                if part.itemsize != itemsize:
                    raise TableFormatError(f"{typecode!r} is {part.itemsize} bytes here, not {itemsize}")
                part.frombytes(payload[offset:offset + itemsize * length])
                offset += itemsize * length
                parts[name] = part
            if offset != len(payload):
                raise TableFormatError("payload size mismatch")
            regions = tuple(header["regions"])
            aliases = tuple((int(base, 16), depth, which) for base, depth, which in header["aliases"])
            raw = (parts["raw4.starts"], parts["raw4.codes"]) if "raw4.starts" in parts else None
            lows = dict(zip(parts["ipv6.low_index"], parts["ipv6.low"]))
            table = cls(regions, (parts["ipv4.starts"], parts["ipv4.codes"]), raw,
                        parts["ipv6.high"], parts["ipv6.codes"], lows, aliases)
            table._check()
        except TableFormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as error:
            raise TableFormatError(f"bad header ({type(error).__name__}: {error})") from None
        return table, header["meta"]

    def _arrays(self) -> list[tuple[str, array]]:
        lows = sorted(self._lows6.items())
        arrays = [("ipv4.starts", self._starts4), ("ipv4.codes", self._codes4),
                  ("ipv6.high", self._high6), ("ipv6.codes", self._codes6),
                  ("ipv6.low_index", array("Q", [index for index, _ in lows])),
                  ("ipv6.low", array("Q", [low for _, low in lows]))]
        if self._raw4[0] is not self._starts4:
            arrays += [("raw4.starts", self._raw4[0]), ("raw4.codes", self._raw4[1])]
        return arrays

    def _check(self) -> None:
        """Cheap consistency checks of a loaded table (the checksum caught damage already)."""
        codes = len(self.regions) + len(self._aliases)
        valid = bytes(range(min(codes, 0x100)))
        for starts, values in ((self._starts4, self._codes4), self._raw4, (self._high6, self._codes6)):
            if not starts or starts[0] != 0 or len(values) != len(starts):
                raise TableFormatError("inconsistent ranges")
            if values.typecode == "B":  # every byte a valid code: nothing left once they go
                if values.tobytes().translate(None, valid):
                    raise TableFormatError("bad region index")
            elif max(values) >= codes:
                raise TableFormatError("bad region index")
        for _, depth, _ in self._aliases:
            if not 0 <= depth <= 96:
                raise TableFormatError(f"alias at depth {depth}")

    @property
    def nbytes(self) -> int:
        """Bytes the arrays take (the IPv6 low-bits exceptions not counted)."""
        return sum(part.itemsize * len(part) for _, part in self._arrays())

    def __repr__(self) -> str:
        return (f"<RegionTable {len(self.regions) - 1} regions, {self._count4} IPv4 + "
                f"{self._count6} IPv6 ranges, {len(self._aliases)} aliases>")


# -- lookups ---------------------------------------------------------------------------------------
def _lookup32(number: int, starts: array, codes: array) -> tuple[int, int]:
    """(region index, scope) of a 32-bit address in one IPv4 table.

    The scope: the widest block of the address that starts at or after the range's start (the
    highest bit where the address differs from start - 1) and ends before the next range (the
    highest bit where it differs from that range's start).
    """
    index = bisect_right(starts, number) - 1
    start = starts[index]
    end = starts[index + 1] if index + 1 < len(starts) else 0x1_0000_0000
    below = (number ^ (start - 1)).bit_length() if start else 33
    above = (number ^ end).bit_length()
    return codes[index], 33 - (below if below < above else above)


# -- the walk --------------------------------------------------------------------------------------
class _Walk:
    """The search tree as two arrays (left, right child of each node), walked in address order."""

    def __init__(self, database: GeoDatabase, record_codes: dict[int, int],
                 record_code: Callable[[int], int]) -> None:
        self.node_count = database.node_count
        self.left, self.right = _children_arrays(database)
        self.record_codes, self.record_code = record_codes, record_code
        self.path = database.path
        self.expanded = 0

    def runs(self, root: int, bits: int, *, alias: int = -1, with_aliases: bool = False) -> Any:
        """Merged (starts, codes) of the ``bits``-bit space under ``root``, in address order.

        With ``with_aliases``: also the (first address, depth) of each place the tree reaches
        node ``alias`` (the IPv4 subtree), each covered by one run of a negative code -(n + 1).
        """
        starts: list[int] = []
        codes: list[int] = []
        aliases: list[tuple[int, int]] = []
        add_start, add_code = starts.append, codes.append
        node_count, left, right = self.node_count, self.left, self.right
        known, resolve = self.record_codes.get, self.record_code
        span = [1 << (bits - depth) for depth in range(bits + 1)]
        cursor = 0
        current = None
        # Stack items: tree value << 8 | depth (records are pushed only as a node's right half
        # whose left half is a node, to keep the address order).
        stack = [root << 8]
        pop, push = stack.pop, stack.append
        budget = node_count + 1  # expansions: a tree has each node once (bar the alias)
        while stack:
            item = pop()
            value = item >> 8
            if value >= node_count:
                code = known(value)
                if code is None:
                    code = resolve(value)
                if code != current:
                    add_start(cursor)
                    add_code(code)
                    current = code
                cursor += span[item & 0xFF]
                continue
            depth = item & 0xFF
            if value == alias and depth <= 96:
                aliases.append((cursor, depth))
                current = -len(aliases)
                add_start(cursor)
                add_code(current)
                cursor += span[depth]
                continue
            depth += 1
            budget -= 1
            if depth > bits or budget < 0:
                raise self._error(bits, depth)
            one, two = left[value], right[value]
            if one >= node_count:
                code = known(one)
                if code is None:
                    code = resolve(one)
                if code != current:
                    add_start(cursor)
                    add_code(code)
                    current = code
                cursor += span[depth]
                if two >= node_count:
                    code = known(two)
                    if code is None:
                        code = resolve(two)
                    if code != current:
                        add_start(cursor)
                        add_code(code)
                        current = code
                    cursor += span[depth]
                else:
                    push((two << 8) | depth)
            else:
                push((two << 8) | depth)
                push((one << 8) | depth)
        if cursor != 1 << bits:
            raise GeoDataError(f"GeoIP file {self.path}: corrupt (search tree covers "
                               f"{cursor} of 2**{bits} addresses); download it again")
        if with_aliases:
            return (starts, codes), aliases
        return starts, codes

    def _error(self, bits: int, depth: int) -> GeoDataError:
        if depth > bits:
            return GeoDataError(f"GeoIP file {self.path}: corrupt (search tree deeper than {bits} "
                                f"bits); download it again")
        # A cycle, or subtrees shared beyond the IPv4 aliases: the lazy walk copes with the latter.
        return GeoDataError(f"GeoIP file {self.path}: cannot compile (its search tree reaches some "
                            f"nodes more than once)")


def _children_arrays(database: GeoDatabase) -> tuple[array, array]:
    """(left, right): the two records of every node, decoded from the mapped file in bulk."""
    node_count = database.node_count
    node_bytes, left_layout, right_layout = _NODE_LAYOUTS[database.record_size]
    buffer = database._buffer  # noqa: SLF001 (same package: the mapped file)
    end = node_count * node_bytes
    out = []
    for layout in (left_layout, right_layout):
        packed = bytearray(4 * node_count)
        for position, (source, nibble) in enumerate(layout):
            if source is not None:
                column = buffer[source:end:node_bytes]
                packed[position::4] = column.translate(nibble) if nibble is not None else column
        values = array(_U32)
        values.frombytes(packed)
        del packed
        if sys.byteorder == "little":
            values.byteswap()
        out.append(values)
    return out[0], out[1]


# -- rules and aliases -------------------------------------------------------------------------------
def _overlay(starts: list[int], codes: list[int], table: SubnetTable, bits: int,
             code_of_region: Mapping[str | None, int]) -> tuple[list[int], list[int]]:
    """The runs with the subnet rules of ``table`` painted over them (most specific wins), merged."""
    if not table:
        return starts, codes
    top = 1 << bits
    points = {0}
    for rule in _rules_of(table):
        points.add(rule.network)
        points.add(rule.network + (1 << (bits - rule.prefix)))
    points.discard(top)
    cuts = sorted(points)
    out_starts: list[int] = []
    out_codes: list[int] = []
    for number, point in enumerate(cuts):  # between two cuts, one rule (or none) decides
        end = cuts[number + 1] if number + 1 < len(cuts) else top
        decides = table.covering(point, bits)
        if decides is not None:
            _add(out_starts, out_codes, point, code_of_region[decides.region])
            continue
        first = bisect_right(starts, point) - 1
        after = bisect_left(starts, end)
        _add(out_starts, out_codes, point, codes[first])
        out_starts.extend(starts[first + 1:after])  # tree runs differ from their neighbours
        out_codes.extend(codes[first + 1:after])
    return out_starts, out_codes


def _splice_aliases(raw6: tuple[list[int], list[int]], aliases: list[tuple[int, int]],
                    replace: Mapping[int, tuple[list[int], list[int]]],
                    kept: list[tuple[int, int, int]], first_alias: int) -> tuple[list[int], list[int]]:
    """The IPv6 runs with each alias either replaced by runs or given its alias index."""
    starts, codes = raw6
    if not aliases:
        return starts, codes
    kept_index = {base: index for index, (base, _, _) in enumerate(kept)}
    out_starts: list[int] = []
    out_codes: list[int] = []
    for start, code in zip(starts, codes):
        if code >= 0:
            _add(out_starts, out_codes, start, code)
            continue
        number = -code - 1
        if number in replace:
            for inner_start, inner_code in zip(*replace[number]):
                _add(out_starts, out_codes, inner_start, inner_code)
        else:
            _add(out_starts, out_codes, start, first_alias + kept_index[aliases[number][0]])
    return out_starts, out_codes


def _add(starts: list[int], codes: list[int], start: int, code: int) -> None:
    if codes and codes[-1] == code:
        return
    starts.append(start)
    codes.append(code)


def _rules_of(table: SubnetTable) -> tuple[SubnetRule, ...]:
    return table._rules  # noqa: SLF001 (same package)


def _ipv4_mapped(network: IPv4Network) -> IPv6Network:
    return IPv6Network((_IPV4_MAPPED | int(network.network_address), 96 + network.prefixlen))
