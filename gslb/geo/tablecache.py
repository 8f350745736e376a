"""Region tables kept: shared in memory, cached on disk, built when neither has one.

Building a RegionTable (regiontable.py) walks the whole GeoIP tree: ~1 s for the bundled DB-IP
file, ~0.3 s per million tree nodes in general; loading a cached one takes milliseconds. So a
table is built once per (GeoIP data, zone rules) and kept:

- in memory, by key, for as long as some locator uses it: every zone (and every reload) with the
  same rules over the same data shares one table;
- on disk, in the cache directory (``cache_dir:`` in the server config, ``--cache-dir``, else
  ``$GSLB_CACHE_DIR``, else ``$XDG_CACHE_HOME/gslb``, else ``~/.cache/gslb``), written
  atomically (a temporary file renamed over the old one), so that a reader, another process
  included, sees a whole file or none.

The key is a SHA-256 over the GeoIP file's bytes, the zone's rules (regions, locations, serves,
subnets, default region, ASN rules, bias), the ASN file's bytes when the rules name autonomous
systems, the table format and the source of the code the answer depends on. A
cache file is checked (magic, format, checksum, key) before use. A cache that cannot be read or
written never stops a table: the table is built in memory, and an unusable directory (a read-only
or missing home, as a container user has) is said once, in one warning line.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from gslb.geo.mmdb import AsnDatabase, GeoDatabase
from gslb.geo.regiontable import FORMAT_VERSION, RegionTable, TableFormatError
from gslb.geo.rules import RegionRules

log = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "GSLB_CACHE_DIR"
_PREFIX, _SUFFIX = "regions-", ".table"
PRUNE_AFTER = 30 * 86400  # cache files unused this long (seconds) go when a new one is written

# Source files whose behaviour the table bakes in: a change to any of them is a new key.
_INPUTS = ("regiontable.py", "rules.py", "codes.py", "geocodes.json", "datasection.py", "mmdb.py",
           "subnets.py")

# key -> table, while some locator holds it: process-wide, as the same key is the same table
# whichever directory it was cached in. Builds of one key are serialised by its lock (a reload in
# a worker thread and `explain` on the loop may ask at once).
_tables: weakref.WeakValueDictionary[str, RegionTable] = weakref.WeakValueDictionary()
_key_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()
_warned: set[str] = set()  # directories already warned about, so a reload does not repeat it


def default_cache_dir() -> Path | None:
    """$GSLB_CACHE_DIR, else $XDG_CACHE_HOME/gslb, else ~/.cache/gslb; None without a home."""
    explicit = os.environ.get(CACHE_DIR_VARIABLE)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "gslb"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        return None
    return home / ".cache" / "gslb"


class TableCache:
    """Where region tables are found and kept; ``directory`` None: in memory only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @classmethod
    def at(cls, directory: Path | None) -> TableCache:
        """The cache in ``directory`` (the setting), else in the default place; warns once if
        there is no place to name (no home directory)."""
        if directory is None:
            directory = default_cache_dir()
            if directory is None:
                _warn_once("", "no cache directory (no home directory and no $GSLB_CACHE_DIR)")
        return cls(directory)

    def table(self, database: GeoDatabase | None, rules: RegionRules,
              asn: AsnDatabase | None = None) -> RegionTable:
        """The table for (database, rules, asn): from memory, from disk, else built (and stored).
        ``asn`` only counts when the rules name autonomous systems.

        Raises GeoDataError when the GeoIP or ASN file cannot be walked (corrupt, or not a tree).
        """
        if not rules.asns:
            asn = None
        if database is None:  # rules only: nothing to walk, nothing worth caching
            return RegionTable.compile(None, rules, asn)
        key = table_key(database, rules, asn)
        with _lock_of(key):
            table = _tables.get(key)
            if table is not None:
                return table
            path = self.path(key)
            table = load(path, key) if path is not None else None
            if table is None:
                started = time.monotonic()
                table = RegionTable.compile(database, rules, asn)
                log.info("GeoIP regions for %s: built in %.1f s (%d ranges, %.1f MB)", database.path,
                         time.monotonic() - started, table.ranges, table.nbytes / 1e6)
                if self.directory is not None:
                    self.store(key, table.dumps(_meta(key, database)))
            _tables[key] = table
            return table

    def path(self, key: str) -> Path | None:
        return self.directory / f"{_PREFIX}{key}{_SUFFIX}" if self.directory is not None else None

    def store(self, key: str, data: bytes) -> Path | None:
        """Write ``data`` as the cache file of ``key``, atomically; None if it cannot be written."""
        directory = self.directory
        if directory is None:
            return None
        target = directory / f"{_PREFIX}{key}{_SUFFIX}"
        temporary = None
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{_PREFIX}", suffix=".tmp")
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, target)
        except OSError as error:
            _warn_once(str(directory), f"cache directory {directory} not writable "
                                       f"({error.strerror or error})")
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
            return None
        _prune(directory, keep=target)
        return target


def rules_spec(rules: RegionRules) -> dict[str, Any]:
    """The rules as plain JSON data, for the key: everything the table's answers depend on."""
    return {
        "regions": list(rules.regions),
        "locations": {region: [lat, lon] for region, (lat, lon) in sorted(rules.locations.items())},
        "serves": dict(sorted(rules.serves.items())),
        "subnets": sorted([str(network), region] for network, region in rules.subnets),
        "default_region": rules.default_region,
        "asns": {str(asn): region for asn, region in sorted(rules.asns.items())},
        "bias": dict(sorted(rules.bias.items())),
    }


def table_key(database: GeoDatabase, rules: RegionRules, asn: AsnDatabase | None = None) -> str:
    """The cache key of (the GeoIP file's bytes, the rules, the ASN file's bytes, this code)."""
    material = {
        "format": FORMAT_VERSION,
        "code": _code_digest(),
        "mmdb": database.digest(),
        "rules": rules_spec(rules),
        "asn": asn.digest() if asn is not None and rules.asns else None,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def load(path: Path, key: str) -> RegionTable | None:
    """The table cached at ``path`` if it is a good one for ``key``; else None (and why, at debug)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.info("GeoIP region cache %s unreadable (%s); building the table instead", path,
                 error.strerror or error)
        return None
    try:
        table, meta = RegionTable.loads(data)
    except TableFormatError as error:
        log.info("GeoIP region cache %s: %s; building the table instead", path, error)
        return None
    if meta.get("key") != key:
        log.info("GeoIP region cache %s is for another file or rules; building the table instead", path)
        return None
    try:
        os.utime(path)  # in use: not pruned
    except OSError:
        pass
    return table


# -- helpers ---------------------------------------------------------------------------------------
def _lock_of(key: str) -> threading.Lock:
    with _locks_lock:
        if len(_key_locks) > 256:  # keys of old files and rules: forget the idle ones
            for old in [k for k, lock in _key_locks.items() if not lock.locked()]:
                del _key_locks[old]
        return _key_locks.setdefault(key, threading.Lock())


def _warn_once(directory: str, reason: str) -> None:
    if directory not in _warned:
        _warned.add(directory)
        log.warning("GeoIP region tables: %s; building them in memory at each start (set cache_dir: "
                    "or --cache-dir to a writable directory)", reason)


def _meta(key: str, database: GeoDatabase) -> dict[str, Any]:
    return {"key": key, "mmdb": database.path, "node_count": database.node_count,
            "build_epoch": database.build_epoch, "written": int(time.time())}


def _prune(directory: Path, keep: Path) -> None:
    """Remove cache files unused for PRUNE_AFTER and temporary files of dead writers (a day old)."""
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if entry.path == str(keep):
            continue
        if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
            limit = PRUNE_AFTER
        elif name.startswith(f".{_PREFIX}") and name.endswith(".tmp"):
            limit = 86400
        else:
            continue
        try:
            if now - entry.stat().st_mtime > limit:
                os.unlink(entry.path)
        except OSError:
            pass


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _INPUTS:
        try:
            digest.update((here / name).read_bytes())
        except OSError:  # not installed as files: fall back to the version
            from gslb import __version__
            digest.update(__version__.encode())
    return digest.hexdigest()
