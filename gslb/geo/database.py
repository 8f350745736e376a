"""A GeoIP database (MaxMind DB format, .mmdb): its search tree and the facts of its records.

How we read it, and why: the ECS scope needs the search tree itself. The scope of an answer is a
property of tree *nodes* (is every address under this node in the same region?), so RegionMap
memoises per node, and node identities are something neither maxminddb's C extension nor geoip2
exposes; they return a decoded record and a prefix length. So we memory-map the file and walk the
tree here (the format is small: MaxMind DB spec 2.0), and decode only the four fields we need
(datasection.FactsReader). maxminddb is used once, at open, to parse and check the metadata.

Tree layout: ``node_count`` nodes of two records each, records of ``record_size`` bits (24, 28
or 32), then 16 zero bytes, then the data section. A record value below node_count is a node,
equal to it means "no data", above it points into the data section (offset value - node_count -
16). In an IPv6 tree, IPv4 addresses live under ::/96.
"""

from __future__ import annotations

import functools
import mmap
import os
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import maxminddb
import maxminddb.errors

from gslb.geo.datasection import DataFormatError, FactsReader
from gslb.geo.facts import GeoFacts

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
# Database types whose records carry no location: a common mix-up with the City file next to them.
_NOT_LOCATION_TYPES = ("ASN", "ISP", "Domain", "Connection-Type", "Anonymous", "User-Count",
                       "IP-Risk", "Static-IP-Score")
FACTS_CACHE_SIZE = 65536  # decoded records kept, ~200 bytes each
_HINT = "pass --geoip FILE with a City or Country .mmdb (GeoLite2-City, DB-IP City Lite, ...)"


class GeoDataError(Exception):
    """A GeoIP file that cannot be used; the message is one line that says what to do."""


class GeoDatabase:
    """An open .mmdb file: tree navigation for RegionMap, and record facts.

    Open with ``GeoDatabase.open(path)``. Reading never does I/O beyond page faults on the mapped
    file, so it is safe on the DNS hot path.
    """

    __slots__ = ("path", "database_type", "ip_version", "node_count", "record_size", "build_epoch",
                 "has_location", "children", "_buffer", "_cached_facts", "_ipv4_start")

    path: str
    database_type: str
    ip_version: int  # 4 or 6: the address family the tree was built for
    node_count: int  # record values >= this are "no data" (==) or data pointers (>)
    record_size: int
    build_epoch: int
    has_location: bool  # City-type: records have latitude/longitude; Country-type: not
    children: Callable[[int], tuple[int, int]]  # node -> (left record, right record): bit 0, 1

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> GeoDatabase:
        """Open and check ``path``; raises GeoDataError with a one-line reason."""
        path = os.fspath(path)
        where = f"GeoIP file {path}"
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size == 0:
                    raise GeoDataError(f"{where}: not a MaxMind DB (the file is empty); {_HINT}")
                buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise GeoDataError(f"{where}: not found; {_HINT}") from None
        except IsADirectoryError:
            raise GeoDataError(f"{where}: is a directory; {_HINT}") from None
        except PermissionError:
            raise GeoDataError(f"{where}: permission denied; make it readable by the gslb user") from None
        except OSError as error:
            raise GeoDataError(f"{where}: cannot read ({error.strerror or error})") from None
        try:
            return cls(path, buffer)
        except BaseException:
            buffer.close()
            raise

    def __init__(self, path: str, buffer: mmap.mmap) -> None:
        """Use ``GeoDatabase.open``; this expects an already mapped file."""
        where = f"GeoIP file {path}"
        metadata_start = buffer.rfind(_METADATA_MARKER)
        if metadata_start < 0:
            raise GeoDataError(f"{where}: not a MaxMind DB (no metadata marker); {_HINT}")
        try:
            with maxminddb.open_database(path, maxminddb.MODE_MMAP) as reader:
                metadata = reader.metadata()
        except (maxminddb.errors.InvalidDatabaseError, ValueError, KeyError, TypeError) as error:
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            # maxminddb repeats the path ("Error opening database file (/x). The search tree...")
            prefix = f"Error opening database file ({path})."
            reason = reason.removeprefix(prefix).strip().rstrip(".") or "unreadable metadata"
            raise GeoDataError(f"{where}: not a MaxMind DB ({reason}); {_HINT}") from None
        if metadata.record_size not in (24, 28, 32) or metadata.ip_version not in (4, 6):
            raise GeoDataError(f"{where}: not a MaxMind DB (record size {metadata.record_size}, "
                               f"IP version {metadata.ip_version}); {_HINT}")
        database_type = str(metadata.database_type)
        if any(word in database_type for word in _NOT_LOCATION_TYPES):
            raise GeoDataError(f"{where}: is a {database_type} database, which has no locations; "
                               f"{_HINT}")
        node_bytes = metadata.record_size // 4  # two records per node
        tree_size = metadata.node_count * node_bytes
        if tree_size + 16 > metadata_start:
            raise GeoDataError(f"{where}: not a MaxMind DB (its search tree of {metadata.node_count}"
                               f" nodes runs past the end of the file: truncated?); {_HINT}")

        self.path = path
        self.database_type = database_type
        self.ip_version = metadata.ip_version
        self.node_count = metadata.node_count
        self.record_size = metadata.record_size
        self.build_epoch = metadata.build_epoch
        # Which fields a record has is decided per record; the type name only tells the user
        # (and `explain`) what kind of file this is. City-like names: "...City...", Enterprise.
        self.has_location = "City" in database_type or "Enterprise" in database_type
        self._buffer = buffer
        # Recently seen records: a busy client population reuses a few thousand records, and the
        # decode (a few us) is most of a cache-missing lookup's cost.
        self._cached_facts = functools.lru_cache(maxsize=FACTS_CACHE_SIZE)(
            FactsReader(buffer, tree_size + 16, metadata_start).facts)
        self.children = _node_reader(buffer, metadata.record_size)
        if self.ip_version == 4:
            self._ipv4_start = 0
        else:  # IPv4 addresses are ::a.b.c.d: follow 96 zero bits (or stop at a record above)
            value = 0
            for _ in range(96):
                if value >= self.node_count:
                    break
                value = self.children(value)[0]
            self._ipv4_start = value

    def start(self, version: int) -> int:
        """The tree value (node, or record if the tree ends early) at the root of IPv4 or IPv6."""
        if version == 4:
            return self._ipv4_start
        # An IPv4-only tree knows no IPv6 address: the whole space is "no data".
        return 0 if self.ip_version == 6 else self.node_count

    def facts(self, record: int) -> GeoFacts | None:
        """The facts of a record value (>= node_count); None for "no data"."""
        if record == self.node_count:
            return None
        try:
            return self._cached_facts(record - self.node_count - 16)
        except DataFormatError as error:
            raise GeoDataError(f"GeoIP file {self.path}: corrupt ({error}); download it again") from None

    def lookup(self, address: IPv4Address | IPv6Address) -> tuple[GeoFacts | None, int]:
        """(facts, prefix length of the network holding ``address``), like maxminddb's lookup.

        For tools and tests; RegionMap walks the tree itself to compute scopes.
        """
        bits = 32 if address.version == 4 else 128
        value, number, node_count = self.start(address.version), int(address), self.node_count
        depth = 0
        while value < node_count:
            value = self.children(value)[(number >> (bits - 1 - depth)) & 1]
            depth += 1
        return self.facts(value), depth

    def close(self) -> None:
        self._buffer.close()

    def __enter__(self) -> GeoDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GeoDatabase {self.path} {self.database_type} IPv{self.ip_version} {self.node_count} nodes>"


def _node_reader(buffer: mmap.mmap, record_size: int) -> Callable[[int], tuple[int, int]]:
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
