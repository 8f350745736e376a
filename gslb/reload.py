"""Hot reload: SIGHUP, or a change to a zone file or the GeoIP file, rebuilds the configuration
and swaps it in whole - or keeps the old one serving and says why.

What a reload does, in order:

1. Note the files' signatures (mtime, size, inode of every `*.yaml`/`*.yml` in the zones folder
   and of the GeoIP file). Changes made from here on trigger another reload.
2. In a worker thread (the event loop keeps answering): reopen the GeoIP database only if its
   file changed, then read and validate every zone file into a new Catalog.
3. On the event loop, without awaiting anything: work out the health changes of the new catalog
   without applying them (`HealthMonitor.prepare`), build the Selector, Answerer and fast path
   around the *same* QueryStats and query log, answer one SOA query per zone as a self-test, then
   commit the health changes (kept endpoints keep their state, removed ones stop probing, new ones
   start per their cold start) and swap `DnsServer.answerer` in one assignment. No query is
   answered in between, and every query is answered by either the old or the new configuration;
   a reload that fails anywhere leaves health exactly as it was.

On any problem the old configuration keeps serving, every problem is logged as one line in the
words `gslb check` prints, and the failure is counted (`gslb_config_reloads_total{result="failed"}`).
The files are polled once a second: no dependency on inotify, and an editor's save-by-rename
(a new inode) is seen like any other change. A changed file is read once it has stopped changing
for SETTLE_TIME, so a file written in place is not read half-written; writing a temporary file
and renaming it over the old one is still the way to be sure.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dnslib import DNSRecord

from gslb.config.catalog import zone_files
from gslb.config.problems import Problem
from gslb.dns.server import DnsServer
from gslb.stats import QueryStats

if TYPE_CHECKING:
    from gslb.geo import GeoDatabase
    from gslb.service import Loaded
    from gslb.zone import Catalog

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between two looks at the files
SETTLE_TIME = 0.2  # a changed file must look the same this long apart before it is read ...
SETTLE_TRIES = 10  # ... or this many times over, whichever comes first

Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: missing
# (catalog or None, the GeoIP database it was built with, problems); runs in a worker thread
Read = Callable[["GeoDatabase | None"], "tuple[Catalog | None, GeoDatabase | None, list[Problem]]"]
# (loaded or None, problems); runs on the event loop
Assemble = Callable[["Catalog", "GeoDatabase"], "tuple[Loaded | None, list[Problem]]"]


def signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclass(frozen=True)
class Files:
    """What the configuration was read from, as signatures to compare."""

    zones: dict[str, Signature] = field(default_factory=dict)
    geoip: Signature = None

    @classmethod
    def look(cls, zones_dir: Path, geoip: Path) -> "Files":
        try:
            paths = zone_files(zones_dir)
        except OSError:
            paths = []
        return cls({path.name: signature(path) for path in paths}, signature(geoip))

    def changes(self, newer: "Files") -> list[str]:
        """What changed, for the log: ["www.yaml modified", "old.yaml removed", "GeoIP file"]."""
        found = [f"{name} added" for name in sorted(set(newer.zones) - set(self.zones))]
        found += [f"{name} removed" for name in sorted(set(self.zones) - set(newer.zones))]
        found += [f"{name} modified" for name in sorted(set(self.zones) & set(newer.zones))
                  if self.zones[name] != newer.zones[name]]
        if self.geoip != newer.geoip:
            found.append("GeoIP file changed")
        return found


class Reloader:
    """Owns the configuration being served (`current`) and replaces it on request."""

    def __init__(self, server: DnsServer, loaded: "Loaded", *, zones_dir: Path, geoip_file: Path,
                 read: Read, assemble: Assemble, poll_interval: float = POLL_INTERVAL) -> None:
        self.server = server
        self.current = loaded
        self.zones_dir = Path(zones_dir)
        self.geoip_file = Path(geoip_file)
        self._read = read
        self._assemble = assemble
        self.poll_interval = poll_interval
        self._seen = Files.look(self.zones_dir, self.geoip_file)
        self._geoip_loaded = self._seen.geoip  # the GeoIP file the served database was opened from
        self._wanted = asyncio.Event()
        self._reasons: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.listeners: list[Callable[["Loaded"], Any]] = []  # called after each successful swap
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
                now = Files.look(self.zones_dir, self.geoip_file)
                changes = self._seen.changes(now)
                if not changes:
                    continue
                # Let a file being written in place (not renamed over) settle first.
                for _ in range(SETTLE_TRIES):
                    await asyncio.sleep(SETTLE_TIME)
                    later = Files.look(self.zones_dir, self.geoip_file)
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
        """One reload; True when the new configuration is now serving. Runs one at a time from
        `request()`'s worker; call it directly only where nothing else reloads (tests)."""
        started = time.monotonic()
        files = Files.look(self.zones_dir, self.geoip_file)
        changes = self._seen.changes(files)  # what a signal-driven reload finds changed
        if changes:
            reason = f"{reason}: {', '.join(changes)}"
        self._seen = files
        old = self.current
        geoip_changed = files.geoip != self._geoip_loaded
        reuse = None if geoip_changed else old.geo
        loaded: Loaded | None = None
        try:
            catalog, geo, problems = await asyncio.to_thread(self._read, reuse)
        except Exception as error:  # noqa: BLE001
            log.exception("reading the configuration failed")
            catalog, geo, problems = None, None, [Problem("", "", f"internal error while reading the configuration: {error}")]
        if catalog is not None and geo is not None:
            loaded, problems = self._build(old, catalog, geo)
        if loaded is None:
            self._failed(reason, problems, started)
            return False
        # -- commit the health changes, then the swap: one assignment; the listeners read
        # `server.answerer` for every query. Nothing between them awaits.
        if loaded.pending is not None:
            loaded.pending.commit()
        self.server.answerer = loaded.answerer
        self.current = loaded
        if geoip_changed:
            self._geoip_loaded = files.geoip
        self._succeeded(reason, loaded, old, geoip_changed, started)
        for listener in self.listeners:
            try:
                listener(loaded)
            except Exception:  # noqa: BLE001
                log.exception("after reload: %r failed", listener)
        return True

    def _build(self, old: "Loaded", catalog: "Catalog", geo: "GeoDatabase") -> tuple["Loaded | None", list[Problem]]:
        """On the event loop, no awaits: assemble, self-test. Health changes only at commit, after
        this, so a failure leaves it exactly as it was."""
        try:
            loaded, problems = self._assemble(catalog, geo)
            if loaded is not None:
                problems = self_test(loaded)
                if problems:
                    loaded = None
        except Exception as error:  # noqa: BLE001
            log.exception("building the new configuration failed")
            loaded, problems = None, [Problem("", "", f"internal error while building the configuration: {error}")]
        return loaded, problems

    def _succeeded(self, reason: str, loaded: "Loaded", old: "Loaded", geoip_changed: bool, started: float) -> None:
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


def self_test(loaded: "Loaded") -> list[Problem]:
    """Ask the new Answerer for each zone's SOA (general path, counted in a throwaway QueryStats)."""
    answerer = loaded.answerer
    counters, querylog = answerer.stats, answerer.querylog
    answerer.stats, answerer.querylog = QueryStats(), None  # not serving yet: nobody else reads these
    problems = []
    try:
        for zone in loaded.catalog.zones:
            query = DNSRecord.question(zone.label, "SOA")
            raw = answerer.respond(query.pack(), ipaddress.ip_address("127.0.0.1"), True)
            reply = DNSRecord.parse(raw) if raw else None
            if reply is None or reply.header.rcode != 0 or not reply.rr:
                problems.append(Problem(zone.file, "", "self-test: the zone's SOA query did not get an answer"))
    finally:
        answerer.stats, answerer.querylog = counters, querylog
    return problems
