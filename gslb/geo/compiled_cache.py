"""Region tables kept: shared in memory, cached on disk, compiled in the background.

Compiling a RegionTable (compiled.py) walks the whole GeoIP tree: ~1 s for the bundled DB-IP file,
~0.3 s per million tree nodes in general. So a table is compiled once per (GeoIP file, zone
rules) and kept:

- in memory, by key, so that every zone (and every reload) with the same rules over the same file
  shares one table;
- on disk, in ``$GSLB_CACHE_DIR``, else ``$XDG_CACHE_HOME/gslb``, else ``~/.cache/gslb``, written
  atomically (temporary file, then rename); loading one takes milliseconds;
- compiled in a background process (``python -m gslb.geo.compile_job``) when neither has it, while
  RegionMap answers with its lazy walk; ``Pending.poll()`` hands over the table once it is there.

The key: the .mmdb file's real path, size, mtime_ns and inode; a digest of the zone's rules
(regions, locations, serves, subnets, default region); the table format and a digest of the code
and geo code data the answer depends on. Nothing here ever breaks serving: an unreadable,
unwritable or damaged cache is logged (debug/info) and compiled around.

Why a plain subprocess and not multiprocessing: a "spawn" child re-imports the parent's main
module (re-running a script without a ``__main__`` guard, failing for ``python -`` ...), and the
daemonic ``--workers`` replicas may not start multiprocessing children at all. Concurrent compiles
of one key (the main process and its workers, two servers) are avoided with a lock file next to
the cache file, holding the compiler's pid: the others wait for its file; a dead holder's lock is
taken over.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from gslb.geo.compiled import FORMAT_VERSION, RegionTable, TableFormatError
from gslb.geo.database import GeoDatabase
from gslb.geo.rules import RegionRules

log = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "GSLB_CACHE_DIR"
_PREFIX, _SUFFIX = "regions-", ".table"
PRUNE_AFTER = 30 * 86400  # cache files unused this long (seconds) go when a new one is written
LOCK_STALE_AFTER = 3600  # a compile lock this old is taken over even if its pid lives (reused)
LOCK_WAIT = 900  # how long a compile waits for another process's compile of the same key
_LOCK_POLL = 0.2

# Source files whose behaviour the table bakes in: a change to any of them is a new key.
_INPUTS = ("compiled.py", "rules.py", "codes.py", "geocodes.json", "datasection.py",
           "database.py", "subnets.py")

# key -> table or compile in progress, while some RegionMap holds it.
_tables: weakref.WeakValueDictionary[str, RegionTable] = weakref.WeakValueDictionary()
_pending: weakref.WeakValueDictionary[str, Pending] = weakref.WeakValueDictionary()


def cache_dir() -> Path | None:
    """Where tables are cached; None when no directory can be named (no HOME)."""
    explicit = os.environ.get(CACHE_DIR_VARIABLE)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "gslb"
    try:
        return Path.home() / ".cache" / "gslb"
    except (RuntimeError, KeyError):
        return None


def rules_spec(rules: RegionRules) -> dict[str, Any]:
    """The rules as plain JSON data: their digest is part of the key; RegionRules(**spec) rebuilds them."""
    return {
        "regions": list(rules.regions),
        "locations": {region: [lat, lon] for region, (lat, lon) in sorted(rules.locations.items())},
        "serves": dict(sorted(rules.serves.items())),
        "subnets": sorted([str(network), region] for network, region in rules.subnets),
        "default_region": rules.default_region,
    }


def table_key(database: GeoDatabase, rules: RegionRules) -> str | None:
    """The cache key of (database, rules); None if the file is gone or is no longer the one open."""
    try:
        stat = os.stat(database.path)
        real = os.path.realpath(database.path)
    except OSError:
        return None
    if stat.st_size != len(database._buffer):  # noqa: SLF001 (replaced since it was opened)
        return None
    material = {
        "format": FORMAT_VERSION,
        "code": _code_digest(),
        "mmdb": [real, stat.st_size, stat.st_mtime_ns, stat.st_ino],
        "rules": rules_spec(rules),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def obtain(database: GeoDatabase | None, rules: RegionRules, *, background: bool
           ) -> RegionTable | Pending | None:
    """The table for (database, rules), from memory or disk, else compiled.

    ``background`` False: compiled here and now (and cached). True: a Pending whose ``poll()``
    returns the table once a background compile has made it, or None when none can be made
    (the file on disk is no longer the one open); RegionMap stays lazy then. GeoDataError
    propagates from a compile done here.
    """
    if database is None:  # rules only: nothing to walk, nothing worth caching
        return RegionTable.compile(None, rules)
    key = table_key(database, rules)
    if key is None:  # no key, no cache, and a background process would read another file
        if not background:
            return RegionTable.compile(database, rules)
        log.info("GeoIP file %s changed since it was opened; lookups stay lazy", database.path)
        return None
    table = _tables.get(key)
    if table is not None:
        return table
    directory = cache_dir()
    if directory is not None:
        table = load(directory / f"{_PREFIX}{key}{_SUFFIX}", key, database)
        if table is not None:
            _tables[key] = table
            return table
    if background:
        pending = _pending.get(key)
        if pending is None or pending.failed:  # a failed one is tried again (a reload, say)
            pending = _pending[key] = Pending(key, database, rules, directory)
        return pending
    started = time.monotonic()
    table = RegionTable.compile(database, rules)
    _log_compiled(database.path, table, time.monotonic() - started)
    if directory is not None:
        store(directory, key, table.dumps(_meta(key, database)))
    _tables[key] = table
    return table


class Pending:
    """A table being compiled in a background process; shared by all RegionMaps waiting for it.

    Dropping the last reference stops the compile. Single-threaded (the event loop's thread).
    """

    def __init__(self, key: str, database: GeoDatabase, rules: RegionRules, directory: Path | None) -> None:
        self.key = key
        self.failed = False
        self._path = database.path
        self._table: RegionTable | None = None
        self._started = time.monotonic()
        request = json.dumps({"path": database.path, "key": key, "rules": rules_spec(rules),
                              "directory": str(directory) if directory is not None else None})
        # The child imports the very gslb this process runs, installed or not.
        source = str(Path(__file__).resolve().parents[2])
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (source, environment.get("PYTHONPATH")) if part)
        self._process: subprocess.Popen[bytes] | None = None
        if not sys.executable:
            self._fail("no Python executable to start a compile process with")
            return
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gslb.geo.compile_job"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment)
            assert self._process.stdin is not None
            with self._process.stdin as stdin:  # read at once by the child: never blocks long
                stdin.write(request.encode())
        except OSError as error:
            self._process = None
            self._fail(f"cannot start a compile process: {error.strerror or error}")
            return
        weakref.finalize(self, _stop, self._process)
        log.debug("GeoIP regions for %s: compiling in the background (pid %s); lookups are lazy until then",
                 self._path, self._process.pid)

    def poll(self) -> RegionTable | None:
        """The table, once it is ready; cheap (one waitpid) while it is not."""
        process = self._process
        if self._table is not None or self.failed or process is None:
            return self._table
        if process.poll() is None:
            return None
        assert process.stdout is not None
        with process.stdout as stdout:
            output = stdout.read()
        try:
            result = json.loads(output.decode().strip().splitlines()[-1])
        except (ValueError, IndexError, UnicodeDecodeError):
            self._fail(f"compile process ended without a result (exit status {process.returncode})")
            return None
        if result.get("kind") != "file":
            self._fail(str(result.get("reason")))
            return None
        path = Path(result["path"])
        self._finish(load(path, self.key, None), str(path))
        if result.get("temporary"):
            try:
                path.unlink()
            except OSError:
                pass
        return self._table

    def _finish(self, table: RegionTable | None, source: str) -> None:
        if table is None:
            self._fail(f"unusable table in {source}")
            return
        self._table = _tables.setdefault(self.key, table)
        log.info("GeoIP regions for %s: table ready after %.1f s (%d ranges, %.1f MB)", self._path,
                 time.monotonic() - self._started, table.ranges, table.nbytes / 1e6)

    def _fail(self, reason: str) -> None:
        self.failed = True
        log.warning("GeoIP regions for %s: no compiled table (%s); lookups stay lazy", self._path, reason)


def load(path: Path, key: str, database: GeoDatabase | None) -> RegionTable | None:
    """The table cached at ``path`` if it is a good one for ``key``; else None (and why, in the log)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.info("GeoIP region cache %s unreadable (%s); compiling instead", path, error.strerror or error)
        return None
    table = _from_bytes(data, key, str(path), database)
    if table is not None:
        try:
            os.utime(path)  # in use: not pruned
        except OSError:
            pass
    return table


def store(directory: Path, key: str, data: bytes) -> Path | None:
    """Write ``data`` as the cache file of ``key``, atomically; None if it cannot be written."""
    target = directory / f"{_PREFIX}{key}{_SUFFIX}"
    temporary = None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{_PREFIX}", suffix=".tmp")
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except OSError as error:
        log.info("GeoIP region cache %s not written (%s); it will be compiled again next start",
                 target, error.strerror or error)
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        return None
    _prune(directory, keep=target)
    return target


def compile_request(request: dict[str, Any]) -> dict[str, Any]:
    """What the compile process does with a request from Pending: compile, cache, say where.

    Returns {"kind": "file", "path": ..., "temporary": bool} or {"kind": "error", "reason": ...}.
    """
    # Not niced: while it runs, the server pays the lazy walk's price on every cache miss, and on a
    # server pinned to one CPU (taskset, inherited) a niced compile would starve under load.
    signal.signal(signal.SIGTERM, _exit)  # so that `finally` removes the lock and temporary file
    try:
        return _compile_for(request["path"], request["key"], request["rules"],
                            Path(request["directory"]) if request["directory"] else None)
    except BaseException as error:  # noqa: BLE001 (everything goes back to the parent as a reason)
        return {"kind": "error", "reason": f"{type(error).__name__}: {error}"}


def _compile_for(path: str, key: str, spec: dict[str, Any], directory: Path | None) -> dict[str, Any]:
    target = directory / f"{_PREFIX}{key}{_SUFFIX}" if directory is not None else None
    lock = _Lock(target.with_suffix(".lock")) if target is not None else None
    try:
        if target is not None and lock is not None and not lock.acquire():
            # Another process compiles this key: wait for its file, or for the lock to be free.
            deadline = time.monotonic() + LOCK_WAIT
            while time.monotonic() < deadline and not target.exists() and lock.held_by_other():
                time.sleep(_LOCK_POLL)
            if target.exists() and load(target, key, None) is not None:
                return {"kind": "file", "path": str(target), "temporary": False}
            lock.acquire()  # the other one failed or died: compile here (lock or not)
        rules = RegionRules(**spec)
        with GeoDatabase.open(path) as database:
            if table_key(database, rules) != key:
                return {"kind": "error", "reason": f"{path} changed before it could be compiled"}
            data = RegionTable.compile(database, rules).dumps(_meta(key, database))
        if directory is not None and store(directory, key, data) is not None:
            return {"kind": "file", "path": str(target), "temporary": False}
        # No cache directory to write to: hand the table over in a private temporary file.
        descriptor, temporary = tempfile.mkstemp(prefix="gslb-regions-", suffix=_SUFFIX)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return {"kind": "file", "path": temporary, "temporary": True}
    finally:
        if lock is not None:
            lock.release()


class _Lock:
    """A lock file holding the pid of the process compiling one key (O_EXCL create)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False

    def acquire(self) -> bool:
        for _ in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                if self.held_by_other():
                    return False
                try:
                    os.unlink(self.path)  # a dead process's lock
                except OSError:
                    pass
                continue
            except OSError:
                return True  # cannot lock (read-only directory...): compile unlocked
            with os.fdopen(descriptor, "w") as file:
                file.write(str(os.getpid()))
            self.held = True
            return True
        return True

    def held_by_other(self) -> bool:
        try:
            pid = int(self.path.read_text() or "0")
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return False
        if pid <= 0 or pid == os.getpid() or age > LOCK_STALE_AFTER:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # alive, another user's
        return True

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.unlink(self.path)
            except OSError:
                pass


# -- helpers ---------------------------------------------------------------------------------------
def _from_bytes(data: bytes, key: str, where: str, database: GeoDatabase | None = None) -> RegionTable | None:
    try:
        table, meta = RegionTable.loads(data)
    except TableFormatError as error:
        log.info("GeoIP region cache %s: %s; compiling instead", where, error)
        return None
    if meta.get("key") != key or (database is not None and (
            meta.get("node_count"), meta.get("build_epoch")) != (database.node_count, database.build_epoch)):
        log.info("GeoIP region cache %s is for another file or rules; compiling instead", where)
        return None
    return table


def _meta(key: str, database: GeoDatabase) -> dict[str, Any]:
    return {"key": key, "mmdb": database.path, "node_count": database.node_count,
            "build_epoch": database.build_epoch, "written": int(time.time())}


def _log_compiled(path: str, table: RegionTable, seconds: float) -> None:
    log.info("GeoIP regions for %s: compiled in %.1f s (%d ranges, %.1f MB)", path, seconds,
             table.ranges, table.nbytes / 1e6)


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
        elif name.startswith(_PREFIX) and name.endswith(".lock"):
            limit = LOCK_STALE_AFTER
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


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # reaped by subprocess's own cleanup later; no wait here


def _exit(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)
