"""The region table: a zone's regions over every address, as sorted ranges of one region each.

Built by one walk of the whole GeoIP tree in address order (GeoDatabase.runs): each distinct data
record is matched against the zone's rules once; when the zone has ASN rules, one walk of the ASN
database's tree gives the ranges of the autonomous systems they name, painted over the GeoIP
result (an ASN rule beats geography); subnet rules are painted over that (the most specific wins)
and adjacent ranges of one region are merged. So the table stays one merged range table, and a
scope is the widest prefix with one answer over both databases. A lookup is a bisect for the
range that holds the address, and the scope is the widest prefix of the address lying inside that
range: a prefix is one region exactly when it lies inside one maximal same-region range, so this
is the widest correct ECS scope (RFC 7871 SCOPE PREFIX-LENGTH): gdnsd's "merge networks into the
largest same-region supernet". Claiming a wider prefix would make resolvers serve our answer to
clients of another region.

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
nodes) ~1 s to build, 298,362 ranges in 1.6 MB; on its earlier 8.4M-node build 2.4 s, 804,499
ranges in 6.2 MB. A lookup is 0.6-0.8 us (IPv4-mapped and 6to4 addresses ~1.5 us). Kept on disk
by tablecache.py: loading one takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Any

from gslb.geo.mmdb import AsnDatabase, GeoDatabase, Runs, TreeRuns
from gslb.geo.rules import RegionRules
from gslb.geo.subnets import SubnetTable

FORMAT_VERSION = 1  # of the bytes dumps() writes; bump on any change to the layout or the walk
_MAGIC = b"gslb region table\n"
_IPV4_MAPPED = int(IPv6Address("::ffff:0:0"))
_LOW64 = (1 << 64) - 1
_U32 = "I" if array("I").itemsize == 4 else "L"  # a 4-byte unsigned typecode
_ALIAS_RAW, _ALIAS_RULED = 0, 1  # which IPv4 table an alias reads: without / with the IPv4 rules


class TableFormatError(Exception):
    """Bytes that are not a region table this version of gslb wrote (or were damaged)."""


def subnet_tables(rules: RegionRules) -> dict[int, SubnetTable]:
    """The zone's subnet rules per family, as the table and the locator's explanations apply them.

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
    and shared by every Locator of the same file and rules (tablecache.py).
    """

    __slots__ = (
        "__weakref__",
        "_alias_specs",
        "_aliases",
        "_codes4",
        "_codes6",
        "_count4",
        "_count6",
        "_first_alias",
        "_high6",
        "_index4",
        "_lows6",
        "_raw4",
        "_starts4",
        "ranges",
        "regions",
    )

    regions: tuple[str | None, ...]  # index -> region; 0 is None (no region)
    ranges: int  # how many ranges the table holds, over both families

    def __init__(self, regions: tuple[str | None, ...], ipv4: tuple[array[int], array[int]],
                 ipv4_raw: tuple[array[int], array[int]] | None, ipv6_high: array[int], ipv6_codes: array[int],
                 ipv6_lows: Mapping[int, int], aliases: tuple[tuple[int, int, int], ...]) -> None:
        """Use ``compile`` or ``loads``. ``aliases``: (first address, depth, _ALIAS_RAW|_RULED)."""
        self.regions = regions
        self._starts4, self._codes4 = ipv4
        self._count4 = len(self._starts4)
        self._index4 = _index16(self._starts4)
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
            top = number >> 16
            first = self._index4
            # Only the ranges from the one holding the /16's first address to the one holding
            # the next /16's can hold the address: usually one, else a bisect over a few.
            index = bisect_right(starts, number, first[top] + 1, first[top + 1] + 1) - 1
            start = starts[index]
            end = starts[index + 1] if index + 1 < self._count4 else 0x1_0000_0000
            below = (number ^ (start - 1)).bit_length() if start else 33
            above = (number ^ end).bit_length()
            return self._codes4[index], 33 - (above if above < below else below)
        return self.lookup6(number)

    def place(self, number: int, version: int) -> tuple[str | None, int]:
        """(region, scope) of address ``number``: ``lookup`` with the region's name, for the
        fast path's placements."""
        code, scope = self.lookup(number, version)
        return self.regions[code], scope

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
        return code, 129 - (min(above, below))

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
    def compile(cls, database: GeoDatabase | None, rules: RegionRules,
                asn: AsnDatabase | None = None) -> RegionTable:
        """Walk all of ``database`` (None: no GeoIP, rules only) and build the table; with ASN
        rules and an ``asn`` database, walk that too and put its rules over GeoIP's answers.

        Raises GeoDataError on a corrupt search tree or data section, and on a file whose tree
        is not a tree (shared subtrees other than the IPv4 aliases) which the walk cannot handle.
        """
        regions: tuple[str | None, ...] = (None, *rules.regions)
        code_of_region = {region: index for index, region in enumerate(regions)}

        def code_of(record: int) -> int:
            facts = database.facts(record) if database is not None else None
            return code_of_region[rules.match(facts)[0]]

        if database is None:  # rules only: every address is "no data" to GeoIP
            raw4: tuple[list[int], list[int]] = ([0], [code_of(0)])
            raw6: tuple[list[int], list[int]] = ([0], [raw4[1][0]])
            aliases: list[tuple[int, int]] = []
        else:
            runs = database.runs(code_of)
            raw4, raw6, aliases = runs.ipv4, runs.ipv6, runs.aliases
        if asn is not None and rules.asns:
            asn_rules = rules.asns

            def asn_code(record: int) -> int:
                return code_of_region[asn_rules.get(asn.asn(record))]  # type: ignore[arg-type]

            raw4, raw6, aliases = _with_asn_rules(raw4, raw6, aliases, asn.runs(asn_code))
        tables = subnet_tables(rules)
        ruled4 = _overlay(*raw4, tables[4], 32, code_of_region)

        # Decide what each alias of the IPv4 subtree becomes in the IPv6 table.
        table6 = tables[6]
        mapped = {(_IPV4_MAPPED | rule.network, 96 + rule.prefix, rule.region)
                  for rule in tables[4].rules}
        kept: list[tuple[int, int, int]] = []
        excluded: set[tuple[int, int, str]] = set()
        replace: dict[int, tuple[list[int], list[int]]] = {}  # alias number -> its runs, in place
        for number, (base, depth) in enumerate(aliases):
            inner = {(rule.network, rule.prefix, rule.region) for rule in table6.rules
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
                                  for rule in table6.rules
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
            parts: dict[str, array[int]] = {}
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

    def _arrays(self) -> list[tuple[str, array[int]]]:
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
def _index16(starts: array[int]) -> array[int]:
    """For each /16 t of IPv4 (and t = 65536, past the end), the index of the range holding its
    first address t << 16: a lookup bisects only between two neighbouring entries, where a
    bisect over all ~100,000 ranges took 17 steps, each boxing an array element (~1 us)."""
    first = array(_U32, bytes(4 * 65537))
    index, last = 0, len(starts) - 1
    for top in range(65537):
        base = top << 16
        while index < last and starts[index + 1] <= base:
            index += 1
        first[top] = index
    return first


def _lookup32(number: int, starts: array[int], codes: array[int]) -> tuple[int, int]:
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
    return codes[index], 33 - (min(above, below))


# -- rules and aliases -------------------------------------------------------------------------------
def _overlay(starts: list[int], codes: list[int], table: SubnetTable, bits: int,
             code_of_region: Mapping[str | None, int]) -> tuple[list[int], list[int]]:
    """The runs with the subnet rules of ``table`` painted over them (most specific wins), merged."""
    if not table:
        return starts, codes
    top = 1 << bits
    points = {0}
    for rule in table.rules:
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


def _with_asn_rules(raw4: Runs, raw6: Runs, aliases: list[tuple[int, int]],
                    asn: TreeRuns) -> tuple[Runs, Runs, list[tuple[int, int]]]:
    """GeoIP's runs with the ASN rules' runs (code 0: no rule) painted over them.

    IPv4: painted. IPv6: where both files hang their IPv4 subtree at the same place (MaxMind's
    and DB-IP's writers both alias ::ffff:0:0/96 and 2002::/16) the alias stays, and reads the
    painted IPv4 runs. Anywhere else an alias of either file is spelled out as the IPv4 runs it
    stands for, so that no alias ever reads answers its own file would not give there.
    """
    painted4 = _paint(*raw4, *asn.ipv4, 1 << 32)
    asn_in_ipv4 = any(asn.ipv4[1])
    geo_aliases = set(aliases)
    asn_aliases = set(asn.aliases)
    # The ASN rules over IPv6, their aliases resolved: transparent where GeoIP aliases the same
    # subtree (its alias reads painted4), else the ASN file's IPv4 runs in place.
    paint_starts: list[int] = []
    paint_codes: list[int] = []
    for start, code in zip(*asn.ipv6):
        if code >= 0:
            _add(paint_starts, paint_codes, start, code)
            continue
        base, depth = asn.aliases[-code - 1]
        if (base, depth) in geo_aliases:
            _add(paint_starts, paint_codes, start, 0)
        else:
            shift = 96 - depth
            for inner_start, inner_code in zip(*asn.ipv4):
                _add(paint_starts, paint_codes, base + (inner_start << shift), inner_code)
    # GeoIP's IPv6 runs: an alias stays only where it would read the right IPv4 answers.
    kept: list[tuple[int, int]] = []
    starts: list[int] = []
    codes: list[int] = []
    for start, code in zip(*raw6):
        if code >= 0:
            _add(starts, codes, start, code)
            continue
        base, depth = aliases[-code - 1]
        end = base + (1 << (128 - depth))
        if ((base, depth) in asn_aliases or not asn_in_ipv4) and _transparent(paint_starts, paint_codes, base, end):
            kept.append((base, depth))
            _add(starts, codes, start, -len(kept))
        else:
            shift = 96 - depth
            for inner_start, inner_code in zip(*raw4):
                _add(starts, codes, base + (inner_start << shift), inner_code)
    return painted4, _paint(starts, codes, paint_starts, paint_codes, 1 << 128), kept


def _transparent(starts: list[int], codes: list[int], low: int, high: int) -> bool:
    """No run of (starts, codes) between ``low`` and ``high`` has a code other than 0."""
    first = bisect_right(starts, low) - 1
    after = bisect_left(starts, high)
    return not any(codes[first:after])


def _paint(starts: list[int], codes: list[int], paint_starts: list[int], paint_codes: list[int],
           top: int) -> tuple[list[int], list[int]]:
    """``starts``/``codes`` with every run of a non-zero paint code put over them, merged.

    The painted runs never cut into an alias run (code < 0): ``_with_asn_rules`` spells out an
    alias wherever paint lands on it.
    """
    if not any(paint_codes):
        return starts, codes
    out_starts: list[int] = []
    out_codes: list[int] = []

    def copy(low: int, high: int) -> None:  # the base runs over [low, high)
        if low >= high:
            return
        first = bisect_right(starts, low) - 1
        after = bisect_left(starts, high)
        _add(out_starts, out_codes, low, codes[first])
        out_starts.extend(starts[first + 1:after])  # base runs differ from their neighbours
        out_codes.extend(codes[first + 1:after])

    cursor = 0
    count = len(paint_starts)
    for index, code in enumerate(paint_codes):
        if code == 0:
            continue
        start = paint_starts[index]
        copy(cursor, start)
        _add(out_starts, out_codes, start, code)
        cursor = paint_starts[index + 1] if index + 1 < count else top
    copy(cursor, top)
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



def _ipv4_mapped(network: IPv4Network) -> IPv6Network:
    return IPv6Network((_IPV4_MAPPED | int(network.network_address), 96 + network.prefixlen))
