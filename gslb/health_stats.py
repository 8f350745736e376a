"""Probe results and health state changes, counted as they happen, for /metrics.

The board keeps only the present (state, last result, smoothed RTT); a scrape needs the history:
how many probes succeeded and failed, their RTT distribution, how often endpoints changed state.
`CountingBoard` is a HealthBoard that counts these in plain dicts as its public writers run
(`record`, `set_overrides`, `track`) - the probers and the admin file watcher call them on the
event loop, so, like QueryStats, no locks and no prometheus objects per probe.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable, Mapping

from gslb.health.admin import Overrides
from gslb.health.board import HealthBoard, Key
from gslb.health.checks import Check
from gslb.health.probes import ProbeResult
from gslb.health.status import Status

# Seconds: probes to the same data centre take ~1 ms, across an ocean 100-300 ms.
RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProbeStats:
    __slots__ = ("results", "rtt_counts", "rtt_sums", "changes")

    def __init__(self) -> None:
        self.results: dict[tuple[str, str, bool], int] = {}  # (check, address, ok) -> probes
        self.rtt_counts: dict[tuple[str, str], list[int]] = {}  # (check, address) -> per-bucket counts (+Inf last)
        self.rtt_sums: dict[tuple[str, str], float] = {}
        self.changes: dict[tuple[str | None, str, str], int] = {}  # (check, address, new status) -> changes

    def probe(self, check: str, address: str, result: ProbeResult) -> None:
        key = (check, address, result.ok)
        self.results[key] = self.results.get(key, 0) + 1
        if result.rtt is not None:
            pair = (check, address)
            counts = self.rtt_counts.get(pair)
            if counts is None:
                counts = self.rtt_counts[pair] = [0] * (len(RTT_BUCKETS) + 1)
            counts[bisect_left(RTT_BUCKETS, result.rtt)] += 1
            self.rtt_sums[pair] = self.rtt_sums.get(pair, 0.0) + result.rtt

    def change(self, check: str | None, address: str, status: Status) -> None:
        key = (check, address, status.name)
        self.changes[key] = self.changes.get(key, 0) + 1


class CountingBoard(HealthBoard):
    """A HealthBoard that also fills a ProbeStats; the hot path's `status()` is untouched."""

    def __init__(self, stats: ProbeStats | None = None, **options) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**options)
        self.stats = stats if stats is not None else ProbeStats()

    def record(self, check: str, address: str, result: ProbeResult) -> None:
        before = self.status(check, address)
        super().record(check, address, result)
        self.stats.probe(check, address, result)
        after = self.status(check, address)
        if after is not before:
            self.stats.change(check, address, after)

    def set_overrides(self, overrides: Overrides, source: str = "admin override") -> None:
        before = self._statuses(self.tracked())
        super().set_overrides(overrides, source)
        self._count_changes(before)

    def track(self, users: Mapping[Key, tuple[str, ...]], checks: Mapping[str, Check]) -> None:
        before = self._statuses(users)  # only pairs kept across a reload can change state
        super().track(users, checks)
        self._count_changes(before)

    def _statuses(self, keys: Iterable[Key]) -> dict[Key, Status]:
        known = set(self.tracked())
        return {key: self.status(*key) for key in keys if key in known}

    def _count_changes(self, before: Mapping[Key, Status]) -> None:
        for key, old in before.items():
            new = self.status(*key)
            if new is not old:
                self.stats.change(key[0], key[1], new)
