"""A MaxMind DB file (.mmdb), read into memory: its search tree and the record fields we read.

Two kinds: GeoDatabase (City or Country: the GeoFacts of a record) and AsnDatabase (GeoLite2-ASN,
DB-IP ASN Lite: a record's autonomous_system_number), over one tree reader, MmdbFile.

Why the file is read whole, once, and never mapped: a GeoIP file is replaced in place by the tools
that update it (`cp new.mmdb current.mmdb` truncates and rewrites the same inode). A memory map
of the old file then shows the new bytes, or none (a shorter file: SIGBUS on the next read, and
the process dies with nothing logged). Bytes in memory are the file as it was when opened; a
change on disk reaches the server only through a reload, which opens it anew and refuses it if it
is not a MaxMind DB. The cost: the file's size in memory per process (20 MB for the bundled
DB-IP Lite City file), where a map would share the page cache.

Why we walk the tree here rather than ask maxminddb: region tables (regiontable.py) need every
network of the tree in address order with the record it holds, and the decode of only four fields
of each record (datasection.FactsReader, ~50x faster than a full decode). maxminddb parses and
checks the metadata, from the same bytes.

All tree navigation is in this module: ``record``/``lookup`` walk down to one address's record, ``runs``
walks the whole tree in address order. Nothing else reads nodes.

Tree layout: ``node_count`` nodes of two records each, records of ``record_size`` bits (24, 28
or 32), then 16 zero bytes, then the data section. A record value below node_count is a node,
equal to it means "no data", above it points into the data section (offset value - node_count -
16). In an IPv6 tree, IPv4 addresses live under ::/96.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import IO, Self, cast

import maxminddb
import maxminddb.errors

from gslb.geo.datasection import DataFormatError, FactsReader
from gslb.geo.facts import GeoFacts

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
# Database types whose records carry no location: a common mix-up with the City file next to them.
_NOT_LOCATION_TYPES = ("ASN", "ISP", "Domain", "Connection-Type", "Anonymous", "User-Count",
                       "IP-Risk", "Static-IP-Score")
FACTS_CACHE_SIZE = 65536  # decoded records kept, ~200 bytes each
MAX_FILE_SIZE = 2 << 30  # bytes, read into memory; the largest commercial files are well under 1 GB
_HINT = "pass --geoip FILE with a City or Country .mmdb (GeoLite2-City, DB-IP City Lite, ...)"
ASN_HINT = "pass --asn-db FILE with an ASN .mmdb (GeoLite2-ASN, DB-IP ASN Lite)"
_U32 = "I" if array("I").itemsize == 4 else "L"  # a 4-byte unsigned typecode

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


class GeoDataError(Exception):
    """A GeoIP file that cannot be used; the message is one line that says what to do."""


Runs = tuple[list[int], list[int]]  # (first address of each run, its code), in address order


@dataclass(frozen=True, slots=True)
class TreeRuns:
    """The whole tree as runs of equal code (``GeoDatabase.runs``).

    ``ipv6`` holds one run of code -(n + 1) for each place n (``aliases[n]``: first address,
    depth) where the IPv6 tree reaches the IPv4 subtree again (::ffff:0:0/96, 2002::/16 ...):
    that subtree is walked once, as ``ipv4``.
    """

    ipv4: Runs
    ipv6: Runs
    aliases: list[tuple[int, int]]


class MmdbFile:
    """An open .mmdb file, held in memory: its search tree, walked by address or whole.

    The tree and the checks every MaxMind DB file gets; GeoDatabase and AsnDatabase add what
    their records hold. Open with ``open(path)``. Nothing reads the file after that.
    """

    __slots__ = (
        "_data",
        "_digest",
        "_ipv4_start",
        "_tree_end",
        "build_epoch",
        "children",
        "database_type",
        "ip_version",
        "node_count",
        "path",
        "record_size",
    )

    # How errors name the file, and what to do about one: set by each kind.
    WHAT = "MaxMind DB file"
    HINT = "pass a MaxMind DB (.mmdb) file"

    path: str
    database_type: str
    ip_version: int  # 4 or 6: the address family the tree was built for
    node_count: int  # record values >= this are "no data" (==) or data pointers (>)
    record_size: int
    build_epoch: int
    children: Callable[[int], tuple[int, int]]  # node -> (left record, right record): bit 0, 1

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Read and check ``path``; raises GeoDataError with a one-line reason."""
        path = os.fspath(path)
        where, hint = f"{cls.WHAT} {path}", cls.HINT
        try:
            # Non-blocking: a FIFO at the path must not hang the reader until someone writes.
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
                status = os.fstat(file.fileno())
                if stat.S_ISDIR(status.st_mode):
                    raise IsADirectoryError
                if not stat.S_ISREG(status.st_mode):
                    raise GeoDataError(f"{where}: not a regular file; {hint}")
                if status.st_size > MAX_FILE_SIZE:
                    raise GeoDataError(f"{where}: {status.st_size} bytes, more than a GeoIP file has "
                                       f"({MAX_FILE_SIZE} at most); {hint}")
                data = file.read(MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            raise GeoDataError(f"{where}: not found; {hint}") from None
        except IsADirectoryError:
            raise GeoDataError(f"{where}: is a directory; {hint}") from None
        except PermissionError:
            raise GeoDataError(f"{where}: permission denied; make it readable by the gslb user") from None
        except OSError as error:
            raise GeoDataError(f"{where}: cannot read ({error.strerror or error})") from None
        return cls(path, data)

    def __init__(self, path: str, data: bytes) -> None:
        """Use ``open``; this checks ``data``, the file's bytes."""
        where, hint = f"{self.WHAT} {path}", self.HINT
        if not data:
            raise GeoDataError(f"{where}: not a MaxMind DB (the file is empty); {hint}")
        if len(data) > MAX_FILE_SIZE:
            raise GeoDataError(f"{where}: more than {MAX_FILE_SIZE} bytes; {hint}")
        metadata_start = data.rfind(_METADATA_MARKER)
        if metadata_start < 0:
            raise GeoDataError(f"{where}: not a MaxMind DB (no metadata marker); {hint}")
        try:
            source = cast("IO[bytes]", _Source(data, path))  # what MODE_FD reads: read() and name
            with maxminddb.open_database(source, maxminddb.MODE_FD) as reader:
                metadata = reader.metadata()
        except (maxminddb.errors.InvalidDatabaseError, ValueError, KeyError, TypeError) as error:
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            # maxminddb repeats the path ("Error opening database file (/x). The search tree...")
            prefix = f"Error opening database file ({path})."
            reason = reason.removeprefix(prefix).strip().rstrip(".") or "unreadable metadata"
            raise GeoDataError(f"{where}: not a MaxMind DB ({reason}); {hint}") from None
        if metadata.record_size not in (24, 28, 32) or metadata.ip_version not in (4, 6):
            raise GeoDataError(f"{where}: not a MaxMind DB (record size {metadata.record_size}, "
                               f"IP version {metadata.ip_version}); {hint}")
        database_type = str(metadata.database_type)
        wrong = self._wrong_type(database_type)
        if wrong is not None:
            raise GeoDataError(f"{where}: {wrong}; {hint}")
        tree_size = metadata.node_count * metadata.record_size // 4  # two records per node
        if tree_size + 16 > metadata_start:
            raise GeoDataError(f"{where}: not a MaxMind DB (its search tree of {metadata.node_count}"
                               f" nodes runs past the end of the file: truncated?); {hint}")

        self.path = path
        self.database_type = database_type
        self.ip_version = metadata.ip_version
        self.node_count = metadata.node_count
        self.record_size = metadata.record_size
        self.build_epoch = metadata.build_epoch
        self._data = data
        self._digest: str | None = None
        self._tree_end = metadata_start
        self.children = _node_reader(data, metadata.record_size)
        self._start_records(FactsReader(data, tree_size + 16, metadata_start))
        if self.ip_version == 4:
            self._ipv4_start = 0
        else:  # IPv4 addresses are ::a.b.c.d: follow 96 zero bits (or stop at a record above)
            self._ipv4_start = self._descend(0, 0, 128, 96)[0]

    def _wrong_type(self, database_type: str) -> str | None:
        """Why a file of ``database_type`` is not one this kind reads (None: it is)."""
        return None

    def _start_records(self, reader: FactsReader) -> None:
        """Keep what the kind needs to decode records with ``reader``."""

    def _corrupt(self, error: DataFormatError) -> GeoDataError:
        return GeoDataError(f"{self.WHAT} {self.path}: corrupt ({error}); download it again")

    # -- one address ---------------------------------------------------------------------------
    def start(self, version: int) -> int:
        """The tree value (node, or record if the tree ends early) at the root of IPv4 or IPv6."""
        if version == 4:
            return self._ipv4_start
        # An IPv4-only tree knows no IPv6 address: the whole space is "no data".
        return 0 if self.ip_version == 6 else self.node_count

    def record(self, address: IPv4Address | IPv6Address) -> tuple[int, int]:
        """(record value, prefix length of the network holding ``address``)."""
        bits = 32 if address.version == 4 else 128
        return self._descend(self.start(address.version), int(address), bits, bits)

    def _descend(self, value: int, number: int, bits: int, limit: int) -> tuple[int, int]:
        """(tree value, depth) where the path of ``number`` leaves the nodes, or at depth ``limit``."""
        node_count, children = self.node_count, self.children
        depth = 0
        while value < node_count and depth < limit:
            value = children(value)[(number >> (bits - 1 - depth)) & 1]
            depth += 1
        if value < node_count and limit == bits:  # only a corrupt tree (a cycle) goes deeper
            raise GeoDataError(f"{self.WHAT} {self.path}: corrupt (search tree deeper than {bits} "
                               f"bits); download it again")
        return value, depth

    # -- the whole tree --------------------------------------------------------------------------
    def runs(self, classify: Callable[[int], int]) -> TreeRuns:
        """Every address, as runs of equal ``classify(record)`` (called once per distinct record).

        Raises GeoDataError on a corrupt tree, and on a tree whose nodes are reached more than
        once other than through the IPv4 aliases (a shape the walk does not expand).
        """
        walk = _Walk(self, classify)
        start4 = self.start(4)
        ipv4 = walk.runs(start4, 32)
        ipv6 = walk.runs(self.start(6), 128, alias=start4)
        return TreeRuns(ipv4, ipv6, walk.aliases)

    def digest(self) -> str:
        """SHA-256 of the file's bytes (for cache keys): the same data, wherever and whenever."""
        if self._digest is None:
            self._digest = hashlib.sha256(self._data).hexdigest()
        return self._digest

    def close(self) -> None:
        """Nothing to release (the bytes go with the object); for ``with`` blocks."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.path} {self.database_type} IPv{self.ip_version} "
                f"{self.node_count} nodes>")


class GeoDatabase(MmdbFile):
    """A GeoIP City or Country file: the GeoFacts of an address, and the tree as runs.

    Open with ``GeoDatabase.open(path)``. Nothing reads the file after that.
    """

    __slots__ = ("_cached_facts", "has_location")

    WHAT = "GeoIP file"
    HINT = _HINT

    has_location: bool  # City-type: records have latitude/longitude; Country-type: not

    def _wrong_type(self, database_type: str) -> str | None:
        if any(word in database_type for word in _NOT_LOCATION_TYPES):
            return f"is a {database_type} database, which has no locations"
        return None

    def _start_records(self, reader: FactsReader) -> None:
        # Which fields a record has is decided per record; the type name only tells the user
        # (and `explain`) what kind of file this is. City-like names: "...City...", Enterprise.
        self.has_location = "City" in self.database_type or "Enterprise" in self.database_type
        # Recently seen records: a busy client population reuses a few thousand records, and the
        # decode (a few us) is most of a cache-missing lookup's cost.
        self._cached_facts = functools.lru_cache(maxsize=FACTS_CACHE_SIZE)(reader.facts)

    def facts(self, record: int) -> GeoFacts | None:
        """The facts of a record value (>= node_count); None for "no data"."""
        if record == self.node_count:
            return None
        try:
            return self._cached_facts(record - self.node_count - 16)
        except DataFormatError as error:
            raise self._corrupt(error) from None

    def lookup(self, address: IPv4Address | IPv6Address) -> tuple[GeoFacts | None, int]:
        """(facts, prefix length of the network holding ``address``), like maxminddb's lookup."""
        record, depth = self.record(address)
        return self.facts(record), depth


class AsnDatabase(MmdbFile):
    """An ASN file (GeoLite2-ASN, DB-IP ASN Lite, GeoIP2-ISP): the autonomous system of an
    address (the records' ``autonomous_system_number``), and the tree as runs.

    Open with ``AsnDatabase.open(path)``. Nothing reads the file after that.
    """

    __slots__ = ("_cached_asn",)

    WHAT = "ASN file"
    HINT = ASN_HINT

    def _wrong_type(self, database_type: str) -> str | None:
        upper = database_type.upper()
        if "ASN" in upper or "ISP" in upper:
            return None
        return f"is a {database_type} database, not an ASN one (its records name no autonomous system)"

    def _start_records(self, reader: FactsReader) -> None:
        self._cached_asn = functools.lru_cache(maxsize=FACTS_CACHE_SIZE)(reader.asn)

    def asn(self, record: int) -> int | None:
        """The autonomous system number of a record value (>= node_count); None for "no data"
        or a record without one."""
        if record == self.node_count:
            return None
        try:
            return self._cached_asn(record - self.node_count - 16)
        except DataFormatError as error:
            raise self._corrupt(error) from None

    def lookup(self, address: IPv4Address | IPv6Address) -> tuple[int | None, int]:
        """(ASN, prefix length of the network holding ``address``)."""
        record, depth = self.record(address)
        return self.asn(record), depth


class _Source:
    """The file's bytes as maxminddb's MODE_FD wants a file: read() once, and a name for errors."""

    def __init__(self, data: bytes, name: str) -> None:
        self._data, self.name = data, name

    def read(self) -> bytes:
        return self._data


def _node_reader(buffer: bytes, record_size: int) -> Callable[[int], tuple[int, int]]:
    """A function node -> (left, right) for this record size; one slice and one int per call."""
    if record_size == 24:
        def children(node: int) -> tuple[int, int]:
            offset = node * 6
            value = int.from_bytes(buffer[offset:offset + 6], "big")
            return value >> 24, value & 0xFFFFFF
    elif record_size == 28:
        # 7 bytes: left's low 24 bits, one byte whose high nibble is left's top 4 bits and low
        # nibble right's top 4 bits, then right's low 24 bits.
        def children(node: int) -> tuple[int, int]:
            offset = node * 7
            value = int.from_bytes(buffer[offset:offset + 7], "big")
            middle = (value >> 24) & 0xFF
            return ((middle & 0xF0) << 20) | (value >> 32), ((middle & 0x0F) << 24) | (value & 0xFFFFFF)
    else:
        def children(node: int) -> tuple[int, int]:
            offset = node * 8
            value = int.from_bytes(buffer[offset:offset + 8], "big")
            return value >> 32, value & 0xFFFFFFFF
    return children


class _Walk:
    """The search tree as two arrays (left, right child of each node), walked in address order.

    Cost: the bundled DB-IP file (3.2M nodes) decodes into the arrays in ~0.1 s and walks in
    ~0.8 s; an 8.4M-node file 0.2 s and 2.2 s.
    """

    def __init__(self, database: MmdbFile, classify: Callable[[int], int]) -> None:
        self.node_count = database.node_count
        self.left, self.right = _children_arrays(database._data, database.node_count,
                                                 database.record_size)
        self.known: dict[int, int] = {}  # record value -> code
        self.classify = classify
        self.path = database.path
        self.what = database.WHAT
        self.aliases: list[tuple[int, int]] = []

    def _code(self, record: int) -> int:
        code = self.known[record] = self.classify(record)
        return code

    def runs(self, root: int, bits: int, *, alias: int = -1) -> Runs:
        """Merged (starts, codes) of the ``bits``-bit space under ``root``, in address order;
        each place the tree reaches node ``alias`` is one run of code -(n + 1), n its index in
        ``self.aliases``."""
        starts: list[int] = []
        codes: list[int] = []
        aliases = self.aliases
        add_start, add_code = starts.append, codes.append
        node_count, left, right = self.node_count, self.left, self.right
        known, resolve = self.known.get, self._code
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
            raise GeoDataError(f"{self.what} {self.path}: corrupt (search tree covers "
                               f"{cursor} of 2**{bits} addresses); download it again")
        return starts, codes

    def _error(self, bits: int, depth: int) -> GeoDataError:
        if depth > bits:
            return GeoDataError(f"{self.what} {self.path}: corrupt (search tree deeper than {bits} "
                                f"bits); download it again")
        return GeoDataError(f"{self.what} {self.path}: cannot be used (its search tree reaches some "
                            f"nodes more than once); use a file written by MaxMind's or DB-IP's tools")


def _children_arrays(data: bytes, node_count: int, record_size: int) -> tuple[array[int], array[int]]:
    """(left, right): the two records of every node, decoded from the file's bytes in bulk."""
    node_bytes, left_layout, right_layout = _NODE_LAYOUTS[record_size]
    end = node_count * node_bytes
    out = []
    for layout in (left_layout, right_layout):
        packed = bytearray(4 * node_count)
        for position, (source, nibble) in enumerate(layout):
            if source is not None:
                column = data[source:end:node_bytes]
                packed[position::4] = column.translate(nibble) if nibble is not None else column
        values = array(_U32)
        values.frombytes(packed)
        del packed
        if sys.byteorder == "little":
            values.byteswap()
        out.append(values)
    return out[0], out[1]
