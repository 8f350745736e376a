"""Probe results and health state changes, counted as they happen, for /metrics.

The board keeps only the present (state, last result, smoothed RTT); a scrape needs the history:
how many probes succeeded and failed, their RTT distribution, how often endpoints changed state.
`CountingBoard` is a HealthBoard that counts these in plain dicts: probe results as `record` runs,
changes of what DNS serves through the board's `serving_changed` hook (probes crossing rise/fall,
admin overrides, reconciles) - all on the event loop, so, like QueryStats, no locks and no
prometheus objects per probe.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from gslb.health.board import HealthBoard, Key
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

    def __init__(self, stats: ProbeStats | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.stats = stats if stats is not None else ProbeStats()

    def record(self, check: str, address: str, result: ProbeResult) -> None:
        super().record(check, address, result)
        if self.local is not None and self.local.endpoint(check, address) is not None:
            self.stats.probe(check, address, result)

    def serving_changed(self, key: Key, status: Status) -> None:
        self.stats.change(key[0], key[1], status)
