"""Hot reload: SIGHUP, or a change to a zone file, the GeoIP file, the ASN file or a signed zone's DNSSEC
key files, builds a new generation and swaps it in whole - or keeps the old one serving and says why.

A reload is a transaction: read -> build -> self-test -> commit -> swap.

1. Note the files' signatures (mtime, size, inode of every `*.yaml`/`*.yml` in the zones folder
   and of the GeoIP file and the ASN file, if any, and of the `*.json` and `*.pem` files in the key
   directory - `dnssec: {keys: DIR}` - of every signed zone; the directory's listing only, not
   recursive). Changes made from here on trigger another reload.
2. In a worker thread (the event loop keeps answering): reopen the GeoIP database only if its
   file changed (the ASN database, small, is read again each time), read and validate every
   zone file, build the Selector, Answerer and fast-path tables around the *same* QueryStats
   and query log, prepare the health monitor's change (kept endpoints keep their state, removed
   ones stop, new ones start cold) without applying it, and
   answer one SOA query per zone as a self-test (gslb/build.py). Nothing live changes here.
3. On the event loop, without awaiting anything: commit the health change, then swap
   `DnsServer.answerer` in one assignment. No query is answered in between, and every query is
   answered by either the old or the new generation.
4. Tell the listeners (the `--workers` pool: "generation N is ready"), and collect the old
   generation's garbage off the hot path.

On any problem the old generation keeps serving with its health exactly as it was, every problem
is logged as one line in the words `gslb check` prints, and the failure is counted
(`gslb_config_reloads_total{result="failed"}`).
Which key directories to watch comes from the zones: those of the generation serving, and after a
failed reload also those the zone files name (so the `gslb dnssec keygen` that a newly signed zone
was waiting for is seen). When a reload changes that set, the new directories' files were read
without a signature taken first, so their first look counts as a change: one more reload, whose
signatures were taken before it read them (what `--workers` compare, gslb/workers.py) - unless the
reload failed and the new directories hold no key file yet, when there is nothing to read again.

The files are polled once a second: no dependency on inotify, and an editor's save-by-rename
(a new inode) is seen like any other change. A changed file is read once it has stopped changing
for SETTLE_TIME, so a file written in place is not read half-written; writing a temporary file
and renaming it over the old one is still the way to be sure.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gslb.build import Loaded
from gslb.config.catalog import zone_files
from gslb.config.files import DEFAULT_MAX_BYTES
from gslb.config.problems import Problem, Problems
from gslb.config.yamlload import load_yaml
from gslb.dns.server import DnsServer
from gslb.dnssec.config import parse_dnssec

if TYPE_CHECKING:
    from gslb.geo import GeoDatabase
    from gslb.zone import Catalog

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between two looks at the files
SETTLE_TIME = 0.2  # a changed file must look the same this long apart before it is read ...
SETTLE_TRIES = 10  # ... or this many times over, whichever comes first
KEY_FILE_SUFFIXES = (".json", ".pem")  # a key's metadata and private key (gslb/dnssec/keys.py)

Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: missing
# read -> assemble -> self-test around the GeoIP database to reuse (None: reopen it); runs in a
# worker thread and changes nothing live: (the generation or None, problems)
Build = Callable[["GeoDatabase | None"], "tuple[Loaded | None, list[Problem]]"]


def signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def key_file_signatures(directories: tuple[str, ...]) -> dict[str, Signature]:
    """path -> signature of every key file (`*.json`, `*.pem`; not the `.name.tmp` files a command
    writes before renaming) directly in `directories`: their listings, never their subfolders."""
    found: dict[str, Signature] = {}
    for directory in directories:
        try:
            entries = sorted(Path(directory).iterdir())
        except OSError:
            continue  # missing for now: its files count as added once it appears
        for path in entries:
            if path.name.endswith(KEY_FILE_SUFFIXES) and not path.name.startswith("."):
                found[str(path)] = signature(path)
    return found


def served_key_dirs(catalog: Catalog) -> tuple[str, ...]:
    """The key directories the signed zones of `catalog` read their keys from."""
    return tuple(sorted({str(key.metadata_path.parent) for zone in catalog.zones if zone.signer is not None
                         for key in zone.signer.keys}))


def named_key_dirs(zones_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, ...]:
    """The key directories the zone files name in `dnssec: {keys: DIR}`, whether or not the zones
    load: after a failed reload, the keys a zone still needs are worth watching. Reads every zone
    file again, so only a failed reload (rare, and already the slow path) asks."""
    found = set()
    for path in zone_files(zones_dir):
        problems = Problems(str(path))
        document = load_yaml(path, problems, max_bytes)
        if isinstance(document, dict) and "dnssec" in document:
            spec = parse_dnssec(document["dnssec"], path.parent, problems)
            if spec is not None:
                found.add(str(spec.keys))
    return tuple(sorted(found))


@dataclass(frozen=True)
class Files:
    """What the configuration was read from, as signatures to compare."""

    zones: dict[str, Signature] = field(default_factory=dict)
    geoip: Signature = None
    asn: Signature = None  # the ASN file (asn_db:), when there is one
    key_dirs: tuple[str, ...] = ()  # the signed zones' key directories looked at ...
    keys: dict[str, Signature] = field(default_factory=dict)  # ... and their key files, by path

    @classmethod
    def look(cls, zones_dir: Path, geoip: Path, asn: Path | None = None, key_dirs: tuple[str, ...] = ()) -> Files:
        try:
            paths = zone_files(zones_dir)
        except OSError:
            paths = []
        return cls({path.name: signature(path) for path in paths}, signature(geoip),
                   signature(asn) if asn is not None else None, key_dirs, key_file_signatures(key_dirs))

    def changes(self, newer: Files) -> list[str]:
        """What changed, for the log: ["www.yaml modified", "old.yaml removed", "GeoIP file"]."""
        found = [f"{name} added" for name in sorted(set(newer.zones) - set(self.zones))]
        found += [f"{name} removed" for name in sorted(set(self.zones) - set(newer.zones))]
        found += [f"{name} modified" for name in sorted(set(self.zones) & set(newer.zones))
                  if self.zones[name] != newer.zones[name]]
        if self.geoip != newer.geoip:
            found.append("GeoIP file changed")
        if self.asn != newer.asn:
            found.append("ASN file changed")
        found += [f"now watching key directory {name}" for name in newer.key_dirs if name not in self.key_dirs]
        # A directory no longer watched (its zone no longer signed) is no change by itself.
        found += [f"key {name} added" for name in sorted(set(newer.keys) - set(self.keys))
                  if str(Path(name).parent) in self.key_dirs]
        found += [f"key {name} removed" for name in sorted(set(self.keys) - set(newer.keys))
                  if str(Path(name).parent) in newer.key_dirs]
        found += [f"key {name} modified" for name in sorted(set(self.keys) & set(newer.keys))
                  if self.keys[name] != newer.keys[name]]
        return found


class Reloader:
    """Owns the generation being served (`current`) and replaces it on request."""

    def __init__(self, server: DnsServer, loaded: Loaded, *, zones_dir: Path, geoip_file: Path,
                 build: Build, poll_interval: float = POLL_INTERVAL, asn_file: Path | None = None,
                 max_zone_file_size: int = DEFAULT_MAX_BYTES) -> None:
        self.server = server
        self.current = loaded
        self.zones_dir = Path(zones_dir)
        self.geoip_file = Path(geoip_file)
        self.asn_file = Path(asn_file) if asn_file is not None else None
        self._build = build
        self.poll_interval = poll_interval
        self.max_zone_file_size = max_zone_file_size
        self.key_dirs = served_key_dirs(loaded.catalog)  # the key directories to watch
        self._seen = self._look()
        self.files = self._seen  # what the served generation was read from (as far as a look can tell)
        self._geoip_loaded = self._seen.geoip  # the GeoIP file the served database was opened from
        self._wanted = asyncio.Event()
        self._reasons: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Called after each successful swap, on the event loop; must not block.
        self.listeners: list[Callable[[Loaded], Any]] = []
        # For /status and /metrics
        self.generation = 1  # configurations served so far, the first included
        self.loaded_at = time.time()
        self.ok = 0
        self.failed = 0
        self.last_at: float | None = None
        self.last_ok: bool | None = None
        self.last_reason: str | None = None
        self.last_problems: list[str] = []
        self.last_duration: float | None = None

    def _look(self) -> Files:
        return Files.look(self.zones_dir, self.geoip_file, self.asn_file, self.key_dirs)

    # -- requests --------------------------------------------------------------------------------
    def request(self, reason: str) -> None:
        """Reload soon (SIGHUP, a file change, the API). Requests made while one runs are
        merged into one more reload after it."""
        self._reasons.append(reason)
        self._wanted.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name="gslb-reload"),
                       loop.create_task(self._poll(), name="gslb-reload-watch")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            reason = "; ".join(dict.fromkeys(self._reasons)) or "requested"
            self._reasons.clear()
            try:
                await self.reload(reason)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a reload must never take the server down
                log.exception("reload (%s) failed unexpectedly; still serving the previous configuration", reason)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                now = self._look()
                changes = self._seen.changes(now)
                if not changes:
                    continue
                # Let a file being written in place (not renamed over) settle first.
                for _ in range(SETTLE_TRIES):
                    await asyncio.sleep(SETTLE_TIME)
                    later = self._look()
                    if later == now:
                        break
                    now = later
                changes = self._seen.changes(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad look
                log.exception("could not look at the zone files")
                continue
            if changes:
                self._seen = now  # one request per change, whether or not it loads
                self.request(", ".join(changes))

    # -- the reload ------------------------------------------------------------------------------
    async def reload(self, reason: str = "requested") -> bool:
        """One reload; True when the new generation is now serving. Runs one at a time from
        `request()`'s worker; call it directly only where nothing else reloads (tests)."""
        started = time.monotonic()
        files = self._look()
        changes = self._seen.changes(files)  # what a signal-driven reload finds changed
        if changes:
            reason = f"{reason}: {', '.join(changes)}"
        self._seen = files
        geoip_changed = files.geoip != self._geoip_loaded
        reuse = None if geoip_changed else self.current.geo
        # read -> build -> self-test, off the event loop; nothing live changes here.
        loaded, problems = await asyncio.to_thread(self._build, reuse)
        if loaded is None:
            try:
                named = await asyncio.to_thread(named_key_dirs, self.zones_dir, self.max_zone_file_size)
            except OSError:
                named = ()
            # Still the served generation's, and whatever the zones now name (a zone waiting for keys).
            self.key_dirs = tuple(sorted({*served_key_dirs(self.current.catalog), *named}))
            added = tuple(name for name in self.key_dirs if name not in self._seen.key_dirs)
            if added and not key_file_signatures(added):
                # Nothing there yet (the usual case: `dnssec:` written before `gslb dnssec keygen`):
                # any key file from now on is a change against this look, so no reload to take one.
                self._seen = replace(self._seen, key_dirs=self.key_dirs)
            self._failed(reason, problems, started)
            return False
        # -- commit and swap: on the event loop, no awaits in between, so no query sees half --
        try:
            if loaded.pending is not None:
                loaded.pending.commit()
        except Exception as error:  # noqa: BLE001
            log.exception("committing the new health checks failed")
            self._failed(reason, [Problem("", "", f"internal error while committing the configuration: {error}")],
                         started)
            return False
        self.server.answerer = loaded.answerer
        self.current = loaded
        self.files = files
        self.key_dirs = served_key_dirs(loaded.catalog)  # a new one: looked at from the next poll on
        if geoip_changed:
            self._geoip_loaded = files.geoip
        self._succeeded(reason, loaded, geoip_changed, started)
        for listener in self.listeners:
            try:
                listener(loaded)
            except Exception:  # noqa: BLE001
                log.exception("after reload: %r failed", listener)
        del loaded
        asyncio.get_running_loop().call_soon(collect_garbage)
        return True

    def _succeeded(self, reason: str, loaded: Loaded, geoip_changed: bool, started: float) -> None:
        self.generation += 1
        self.ok += 1
        self.loaded_at = time.time()
        self.last_at, self.last_ok, self.last_reason, self.last_problems = self.loaded_at, True, reason, []
        self.last_duration = time.monotonic() - started
        serials = ", ".join(f"{zone.label} {zone.serial}" for zone in loaded.catalog.zones)
        log.info("reloaded (%s): %d zone(s) [%s], GeoIP %s, in %.0f ms", reason, len(loaded.catalog.zones), serials,
                 "reopened" if geoip_changed else "unchanged", self.last_duration * 1000)

    def _failed(self, reason: str, problems: list[Problem], started: float) -> None:
        self.failed += 1
        self.last_at, self.last_ok, self.last_reason = time.time(), False, reason
        self.last_problems = [str(problem) for problem in problems]
        self.last_duration = time.monotonic() - started
        for problem in problems:
            log.error("%s", problem)
        log.error("reload (%s) failed: %d problem%s; still serving the configuration loaded at %s",
                  reason, len(problems), "" if len(problems) == 1 else "s",
                  time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.loaded_at)))


def collect_garbage() -> None:
    """After a swap: the old generation is already gone (reference counting frees it the moment
    the last reference drops; gslb/build.py explains why there are no cycles to wait for and why
    the new one is frozen). What is left is the young garbage of the reload itself: collect the
    young generations only, which costs microseconds, not a scan of the whole configuration."""
    started = time.perf_counter()
    found = gc.collect(1)
    log.debug("after the swap: %d unreachable objects collected in %.1f ms", found, (time.perf_counter() - started) * 1000)
