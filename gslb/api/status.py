"""The /status document: what the server serves, how healthy it is, where clients go, and what
changed lately. The status page (gslb/api/page.py) draws this document and nothing else.

Most of it is read from the running server when asked. Two parts need memory of the past, which
the server does not keep: the recent health changes and reloads, and queries per second. `Recent`
samples the health board, the reloader and the query counters once a second (and at each /status
request) and keeps the last `KEEP` events and the last minute of rates. A change that flips and
flips back within one sample is seen as its net effect (the log has every flip).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from gslb import __version__
from gslb.alerts import record_label
from gslb.geo.facts import GeoFacts
from gslb.health.status import Status
from gslb.querylog import rcode_name

if TYPE_CHECKING:
    from gslb.dynamic import DynamicRecord
    from gslb.health.status import HealthView
    from gslb.runtime import Runtime
    from gslb.zone import Zone

KEEP = 50  # recent health changes and reloads kept
RATE_POINTS = 60  # seconds of queries-per-second history
SAMPLE_INTERVAL = 1.0

# Where a typical client of each continent stands, for "where are its clients sent now": a
# continent rule in `serves:` matches it directly, else the region nearest to this point.
CONTINENTS: dict[str, tuple[str, tuple[float, float]]] = {
    "NA": ("North America", (45.0, -100.0)),
    "SA": ("South America", (-15.0, -60.0)),
    "EU": ("Europe", (50.0, 15.0)),
    "AF": ("Africa", (5.0, 20.0)),
    "AS": ("Asia", (35.0, 95.0)),
    "OC": ("Oceania", (-25.0, 135.0)),
}


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


_FIELDS: dict[type, tuple[str, ...]] = {}


def endpoint_dict(report: Any) -> dict[str, Any]:
    """An EndpointReport for JSON: the board's words, times as ISO 8601 UTC. Field by field, not
    dataclasses.asdict, which deep-copies every value (10 times slower on 8,000 endpoints)."""
    names = _FIELDS.get(type(report))
    if names is None:
        names = _FIELDS[type(report)] = tuple(item.name for item in fields(report))
    data = {name: getattr(report, name) for name in names}
    data["users"] = list(report.users)
    data["last_probe"] = iso(report.last_probe)
    data["last_change"] = iso(report.last_change)
    return data


# -- regions and routing ----------------------------------------------------------------------------

def zone_records(zone: "Zone") -> list["DynamicRecord"]:
    return [record for node in zone.nodes.values() for record in node.dynamic.values()]


def region_health(zone: "Zone", records: list["DynamicRecord"], health: "HealthView | None") -> dict[str, Any]:
    """Per region of the zone: its location, its endpoints (check, address) and how many are UP,
    DRAIN, DOWN, and a word for the map: up (all UP), degraded, down (none serving), none (no pool)."""
    rules = zone.region_map.rules if zone.region_map is not None else None
    if rules is None:
        return {}
    members: dict[str, set[tuple[str | None, str]]] = {name: set() for name in rules.regions}
    for record in records:  # one pass: a zone may hold thousands of records
        for region, pool in record.pools.items():
            if region in members:
                members[region].update((record.check, e.address) for e in pool)
    regions: dict[str, Any] = {}
    for name in rules.regions:
        keys = sorted(members[name], key=lambda key: (key[0] or "", key[1]))
        counts = {"UP": 0, "DRAIN": 0, "DOWN": 0}
        for check, address in keys:
            state = health.status(check, address) if health is not None else Status.UP
            counts[state.name] += 1
        if not keys:
            word = "none"
        elif counts["UP"] == len(keys):
            word = "up"
        elif counts["UP"] == 0 and counts["DRAIN"] == 0:
            word = "down"
        else:
            word = "degraded"
        location = rules.locations.get(name)
        regions[name] = {"location": list(location) if location is not None else None, "health": word,
                         "counts": counts, "endpoints": [[check, address] for check, address in keys]}
    return regions


def serving_region(record: "DynamicRecord", region: str | None, health: "HealthView | None") -> tuple[str | None, bool]:
    """(the region whose pool answers a client of `region` now, whether every endpoint is down):
    the selection's walk (gslb/selection.py) without picking endpoints, so nothing advances."""
    order = record.regions_for(region)
    everything_up = getattr(health, "everything_up", None)
    if health is None or (everything_up is not None and everything_up()):
        return (order[0] if order else None), False
    for candidate in order:
        if any(health.status(record.check, e.address) is not Status.DOWN for e in record.pools[candidate]):
            return candidate, False
    if record.when_all_down == "all":  # fail open: routed as usual, less what an operator forced down
        for candidate in order:
            if any(not health.forced_down(record.check, e.address) for e in record.pools[candidate]):
                return candidate, True
    return None, True


def routing(zone: "Zone", records: list["DynamicRecord"], health: "HealthView | None") -> dict[str, Any]:
    """Per continent: the region its clients are placed in (by the zone's rules) and, per GSLB
    record, the region whose pool answers them now."""
    rules = zone.region_map.rules if zone.region_map is not None else None
    if rules is None:
        return {}
    labels = [record_label(record) for record in records]
    continents: dict[str, Any] = {}
    for code, (name, point) in CONTINENTS.items():
        region, rule = rules.match(GeoFacts(continent=code, latitude=point[0], longitude=point[1]))
        sent: dict[str, Any] = {}
        for label, record in zip(labels, records):
            target, all_down = serving_region(record, region, health)
            sent[label] = {"region": target, "all_down": all_down}
        continents[code] = {"name": name, "point": list(point), "region": region, "rule": rule, "records": sent}
    return continents


# -- the recent past -------------------------------------------------------------------------------

class Recent:
    """Health changes, reloads and query rates, sampled; see the module's docstring."""

    def __init__(self, runtime: "Runtime", clock: Any = time.time) -> None:
        self.runtime = runtime
        self._clock = clock
        self.changes: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.reloads: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.rates: deque[dict[str, Any]] = deque(maxlen=RATE_POINTS)
        self._states: dict[tuple[str | None, str], str] = {}
        self._monitor: Any = None
        self._reload_mark: tuple[int, int] | None = None
        self._counts: dict[tuple[str, str], int] | None = None
        self._counted_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.sample(rates=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gslb-api-recent")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            self.sample(rates=True)

    def sample(self, rates: bool = False) -> None:
        """Health changes and reloads since the last sample; with `rates` (the once-a-second tick
        only, so each rate covers a steady interval), the query rates too."""
        self._sample_health()
        self._sample_reloads()
        if rates:
            self._sample_rates()

    def _sample_health(self) -> None:
        monitor = self.runtime.loaded.health
        if monitor is None:
            return
        board = monitor.board
        fresh = monitor is not self._monitor
        self._monitor = monitor
        # Only dictionary lookups per endpoint here; a report is built for the ones that changed.
        states = {key: board.status(*key).name for key in list(board.tracked())}
        if not fresh:
            at = iso(self._clock())
            for key, state in states.items():
                before = self._states.get(key)
                if before is None or before == state:
                    continue  # new with a reload: not a change
                report = board.report(*key)
                self.changes.append({
                    "at": at, "check": key[0], "address": key[1], "from": before, "to": state,
                    "override": report.override if report is not None else None,
                    "reason": report.reason if report is not None else "",
                    "users": list(report.users) if report is not None else [],
                })
        self._states = states

    def _sample_reloads(self) -> None:
        reloader = self.runtime.reloader
        mark = (reloader.ok, reloader.failed)
        if mark == self._reload_mark:
            return
        first = self._reload_mark is None
        self._reload_mark = mark
        if first:
            self.reloads.append({"at": iso(reloader.loaded_at if reloader.last_at is None else reloader.last_at),
                                 "ok": True if reloader.last_ok is None else reloader.last_ok,
                                 "reason": "start" if reloader.last_at is None else reloader.last_reason,
                                 "generation": reloader.generation, "problems": []})
            return
        self.reloads.append({"at": iso(reloader.last_at), "ok": reloader.last_ok, "reason": reloader.last_reason,
                             "generation": reloader.generation, "problems": list(reloader.last_problems[:5]),
                             "duration_ms": round((reloader.last_duration or 0) * 1000, 1)})

    def _sample_rates(self) -> None:
        now = time.monotonic()
        counts: dict[tuple[str, str], int] = {}
        for (_zone, _qtype, rcode, _transport, region), value in list(self.runtime.stats.counts.items()):
            key = (region or "other", rcode_name(rcode))
            counts[key] = counts.get(key, 0) + value
        before, then = self._counts, self._counted_at
        self._counts, self._counted_at = counts, now
        if before is None:
            return
        elapsed = max(now - then, 1e-3)
        by_region: dict[str, float] = {}
        by_rcode: dict[str, float] = {}
        total = 0.0
        for (region_name, rcode_text), value in counts.items():
            rate = (value - before.get((region_name, rcode_text), 0)) / elapsed
            if rate <= 0:
                continue
            by_region[region_name] = by_region.get(region_name, 0.0) + rate
            by_rcode[rcode_text] = by_rcode.get(rcode_text, 0.0) + rate
            total += rate
        self.rates.append({"at": iso(self._clock()), "qps": round(total, 1),
                           "by_region": {k: round(v, 1) for k, v in sorted(by_region.items())},
                           "by_rcode": {k: round(v, 1) for k, v in sorted(by_rcode.items())}})

    def as_dict(self) -> dict[str, Any]:
        latest = self.rates[-1] if self.rates else {"qps": 0.0, "by_region": {}, "by_rcode": {}}
        return {
            "health_changes": list(reversed(self.changes)),  # newest first
            "reloads": list(reversed(self.reloads)),
            "traffic": {"qps": latest["qps"], "by_region": latest["by_region"], "by_rcode": latest["by_rcode"],
                        "history": [point["qps"] for point in self.rates], "interval_seconds": SAMPLE_INTERVAL},
        }


# -- the document ----------------------------------------------------------------------------------

def status_document(runtime: "Runtime", recent: Recent | None = None) -> dict[str, Any]:
    """What /status shows: the served configuration, its regions (with their health) and records,
    every endpoint with its state and why, where each continent's clients go, reloads, alerts,
    and (with `recent`) the last health changes, reloads and queries per second."""
    settings = runtime.settings
    reloader = runtime.reloader
    loaded = runtime.loaded
    monitor = loaded.health
    health = monitor.board if monitor is not None else None
    zones, regions, records, routes = [], {}, [], {}
    for zone in loaded.catalog.zones:
        dynamic = zone_records(zone)
        zones.append({"zone": zone.label, "file": zone.file, "serial": zone.serial,
                      "loaded_at": iso(reloader.loaded_at), "gslb_records": len(dynamic)})
        if zone.region_map is not None:
            regions[zone.label] = {"regions": region_health(zone, dynamic, health),
                                   "default_region": zone.region_map.rules.default_region}
            routes[zone.label] = routing(zone, dynamic, health)
        for record in dynamic:
            records.append({
                "record": record_label(record),
                "zone": zone.label,
                "policy": record.policy,
                "check": record.check,
                "when_all_down": record.when_all_down if isinstance(record.when_all_down, str)
                else [e.address for e in record.when_all_down],
                "pools": {region: [e.address for e in pool] for region, pool in record.pools.items()},
            })
    document = {
        "gslb": __version__,
        "node_name": settings.node_name,
        "started_at": iso(runtime.started_at),
        "uptime_seconds": round(time.time() - runtime.started_at, 3),
        "listeners": [str(listener) for listener in runtime.listeners],
        "udp_io": runtime.server.udp_io,  # batched | per-datagram (gslb/dns/udpio.py)
        "config": {
            "zones_dir": str(settings.zones),
            "geoip": str(settings.geoip_file),
            "state_file": str(settings.state) if settings.state is not None else None,
            "generation": reloader.generation,
            "loaded_at": iso(reloader.loaded_at),
            "reloads": {"ok": reloader.ok, "failed": reloader.failed},
            "last_reload": None if reloader.last_at is None else {
                "at": iso(reloader.last_at), "ok": reloader.last_ok, "reason": reloader.last_reason,
                "problems": reloader.last_problems,
                "duration_ms": round((reloader.last_duration or 0) * 1000, 1),
            },
        },
        "zones": zones,
        "regions": regions,
        "routing": routes,
        "records": records,
        "endpoints": [endpoint_dict(r) for r in monitor.board.reports()] if monitor is not None else [],
        "alerts": runtime.alerts.as_dict() if runtime.alerts is not None else None,
        "query_log": None if runtime.querylog is None else {
            "target": runtime.querylog.target, "sample": runtime.querylog.sample,
            "written": runtime.querylog.written, "dropped": runtime.querylog.dropped,
            "failed": runtime.querylog.errors, "pending": runtime.querylog.pending,
        },
        "api": {"url": runtime.api.url if runtime.api is not None else None,
                "admin_token": runtime.api.tokens.describe() if runtime.api is not None else "none"},
    }
    if recent is not None:
        document["recent"] = recent.as_dict()
    return document
