"""Alerts: the two conditions an on-call engineer wants to hear about before users do.

- A GSLB record with fewer than `healthy_below` (default 50%) of its endpoints UP: one CRITICAL
  line when it happens, one INFO line when it recovers, and a gauge while it lasts.
- A GSLB record with no endpoint UP or draining in any region, so that it answers per its
  `when_all_down`: one CRITICAL line when it happens, one INFO line when it recovers. (Selection
  itself is pure: it never logs; this is noticed here, from the health view.)
- More than `servfail_above` (default 5%) of the last minute's responses SERVFAIL: one WARNING
  line, one INFO line on recovery, and a gauge. The rate comes from QueryStats totals snapshotted
  every SNAPSHOT_EVERY seconds into a ring that spans WINDOW seconds, so the hot path does
  nothing for it. Below MIN_RESPONSES responses in the window the rate does not alert (one
  SERVFAIL on an idle server is not 100% of anything worth waking someone for).

Records are evaluated every HEALTH_INTERVAL seconds, but only when the health view's version
or the configuration changed since the last look; the SERVFAIL rate every INTERVAL seconds. All on
the event loop, and it only reads.

    www.gslb.example.com. A: 1 of 4 endpoints healthy (25%), below 50%; down: us-east 198.51.100.10, ...
    www.gslb.example.com. A: 4 of 4 endpoints healthy (100%) again
    records.app: no healthy endpoint in any region; answering per when_all_down=all
    records.app: endpoints healthy again
    SERVFAIL 12.0% of 250 responses in the last 60s, above 5%
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gslb.health.status import Status
from gslb.settings import AlertThresholds
from gslb.stats import QueryStats

if TYPE_CHECKING:
    from gslb.build import Loaded
    from gslb.dynamic import DynamicRecord

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between evaluations of the SERVFAIL rate
HEALTH_INTERVAL = 0.25  # seconds between looks at the health view's version
WINDOW = 60.0  # seconds the SERVFAIL rate looks back
SNAPSHOT_EVERY = 5.0  # seconds between two snapshots of the totals
MIN_RESPONSES = 20  # responses in the window before the SERVFAIL rate may alert


def record_label(record: DynamicRecord) -> str:
    return record.display_name


def iso8601(when: float | None) -> str | None:
    """Unix time -> "2026-01-31T12:00:00Z", as every time in /status is written."""
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class RecordHealth:
    label: str
    healthy: int
    total: int
    down: list[str]  # "us-east 198.51.100.10" for each endpoint not UP
    alerting: bool = False
    since: float | None = None  # when the alert began (Unix time)
    all_down: bool = False  # no endpoint UP or draining: the record answers per when_all_down

    @property
    def ratio(self) -> float:
        return self.healthy / self.total if self.total else 1.0


class Alerts:
    def __init__(self, thresholds: AlertThresholds, current: Callable[[], Loaded], stats: QueryStats, *,
                 interval: float = INTERVAL, window: float = WINDOW, snapshot_every: float = SNAPSHOT_EVERY,
                 min_responses: int = MIN_RESPONSES, clock: Callable[[], float] = time.monotonic,
                 health_interval: float = HEALTH_INTERVAL) -> None:
        self.thresholds = thresholds
        self._current = current
        self.stats = stats
        self.interval = interval
        self.health_interval = min(health_interval, interval)
        self.window = window
        self.snapshot_every = snapshot_every
        self.min_responses = min_responses
        self._clock = clock
        self.records: dict[str, RecordHealth] = {}
        self._ring: deque[tuple[float, int, int]] = deque(maxlen=int(window / snapshot_every) + 1)
        self.servfail_ratio = 0.0
        self.window_responses = 0
        self.servfail_alerting = False
        self.servfail_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._looked_at: tuple[object, int] | None = None  # (the configuration, the health version) last evaluated
        # Told of each transition: (firing, {"alert": kind, "message": the log line, ...}); the
        # notifier (gslb/notify.py) only queues, so evaluating never waits for a webhook.
        self.listeners: list[Callable[[bool, dict[str, Any]], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.check()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gslb-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        every = max(1, round(self.interval / self.health_interval))
        tick = 0
        while True:
            await asyncio.sleep(self.health_interval)
            tick += 1
            try:
                self._check_records()
                if tick % every == 0:
                    self._check_servfail()
            except Exception:  # noqa: BLE001 - alerting must outlive any one bad evaluation
                log.exception("evaluating alerts failed")

    # -- evaluation ------------------------------------------------------------------------------
    def check(self) -> None:
        self._check_records()
        self._check_servfail()

    def _check_records(self) -> None:
        loaded = self._current()
        view = loaded.selector.health
        looking_at = (loaded, view.version)
        if self._looked_at is not None and self._looked_at[0] is loaded and self._looked_at[1] == looking_at[1]:
            return  # nothing a record's health depends on has changed
        self._looked_at = looking_at
        seen: dict[str, RecordHealth] = {}
        status = view.status
        for zone in loaded.catalog.zones:
            for node in zone.nodes.values():
                for record in node.dynamic.values():
                    label = record_label(record)
                    states = [(e, status(record.check, e.address)) for e in record.endpoints]
                    down = [f"{e.region} {e.address}" for e, state in states if state is not Status.UP]
                    total = len(states)
                    now = RecordHealth(label, total - len(down), total, down,
                                       all_down=all(state is Status.DOWN for _, state in states))
                    before = self.records.get(label)
                    if before is not None:
                        now.alerting, now.since = before.alerting, before.since
                    self._transition(now)
                    self._all_down_transition(record, now, before)
                    seen[label] = now
        self.records = seen  # records a reload removed are forgotten, alert and all

    def _emit(self, firing: bool, kind: str, message: str, **details: Any) -> None:
        for listener in self.listeners:
            try:
                listener(firing, {"alert": kind, "message": message, **details})
            except Exception:  # noqa: BLE001 - a listener must never stop alerting
                log.exception("alert listener %r failed", listener)

    def _all_down_transition(self, record: DynamicRecord, now: RecordHealth, before: RecordHealth | None) -> None:
        was = before is not None and before.all_down
        if now.all_down and not was:
            how = record.when_all_down if isinstance(record.when_all_down, str) else "list"
            message = f"{record.display_name}: no healthy endpoint in any region; answering per when_all_down={how}"
            log.critical("%s", message)
            self._emit(True, "record_all_down", message, record=now.label, down=list(now.down))
        elif was and not now.all_down:
            message = f"{record.display_name}: endpoints healthy again"
            log.info("%s", message)
            self._emit(False, "record_all_down", message, record=now.label, down=list(now.down))

    def _transition(self, health: RecordHealth) -> None:
        threshold = self.thresholds.healthy_below
        below = health.ratio < threshold
        details = {"record": health.label, "healthy": health.healthy, "total": health.total, "down": list(health.down)}
        if below and not health.alerting:
            health.alerting, health.since = True, time.time()
            message = (f"{health.label}: {health.healthy} of {health.total} endpoints healthy "
                       f"({health.ratio * 100:.0f}%), below {threshold * 100:.0f}%; down: {', '.join(health.down)}")
            log.critical("%s", message)
            self._emit(True, "record_unhealthy", message, **details)
        elif not below and health.alerting:
            health.alerting, health.since = False, None
            message = (f"{health.label}: {health.healthy} of {health.total} endpoints healthy "
                       f"({health.ratio * 100:.0f}%) again")
            log.info("%s", message)
            self._emit(False, "record_unhealthy", message, **details)

    def _check_servfail(self) -> None:
        now = self._clock()
        total, servfail = self.stats.totals()
        ring = self._ring
        if not ring or now - ring[-1][0] >= self.snapshot_every:
            ring.append((now, total, servfail))
        _, base_total, base_servfail = ring[0]
        responses = total - base_total
        self.window_responses = responses
        self.servfail_ratio = (servfail - base_servfail) / responses if responses > 0 else 0.0
        threshold = self.thresholds.servfail_above
        high = responses >= self.min_responses and self.servfail_ratio > threshold
        details = {"ratio": round(self.servfail_ratio, 4), "responses": responses}
        if high and not self.servfail_alerting:
            self.servfail_alerting, self.servfail_since = True, time.time()
            message = (f"SERVFAIL {self.servfail_ratio * 100:.1f}% of {responses} responses in the last "
                       f"{min(now - ring[0][0], self.window) or self.interval:.0f}s, above {threshold * 100:.0f}%")
            log.warning("%s", message)
            self._emit(True, "servfail", message, **details)
        elif not high and self.servfail_alerting:
            self.servfail_alerting, self.servfail_since = False, None
            message = (f"SERVFAIL {self.servfail_ratio * 100:.1f}% of {responses} responses in the last "
                       f"{min(now - ring[0][0], self.window):.0f}s, back at or below {threshold * 100:.0f}%")
            log.info("%s", message)
            self._emit(False, "servfail", message, **details)

    # -- for /status -----------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "thresholds": {"healthy_below": self.thresholds.healthy_below,
                           "servfail_above": self.thresholds.servfail_above},
            "records": [
                {"record": h.label, "healthy": h.healthy, "total": h.total, "ratio": round(h.ratio, 4),
                 "alerting": h.alerting, "since": iso8601(h.since), "down": h.down, "all_down": h.all_down}
                for h in self.records.values()
            ],
            "servfail": {"ratio": round(self.servfail_ratio, 4), "responses": self.window_responses,
                         "window_seconds": self.window, "alerting": self.servfail_alerting,
                         "since": iso8601(self.servfail_since)},
        }
