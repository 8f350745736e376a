"""Query counters the hot path bumps with one dict update, read at scrape time.

Every reply is counted once, under the transport it really went out on: by `Answerer._observe`
in gslb/dns/answer.py, or for the untimed fast-path UDP answers (most of them) by the same two
lines inline in `Answerer.respond_udp`.

prometheus-client's `Counter.labels(...).inc()` costs about a microsecond, a tenth of a whole
fast-path answer, so the DNS path only does `counts[key] = counts.get(key, 0) + 1` on a plain
tuple key; `gslb/metrics.py` turns the dict into Prometheus families when scraped. The event loop
is single-threaded, so no locks.
"""

from __future__ import annotations

import time
from bisect import bisect_left

# Seconds; the fast path answers in ~10 us, the general path in ~100 us, TCP in a few ms.
LATENCY_BUCKETS = (0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25)
LATENCY_SAMPLE = 16  # time one query in this many on the fast path

# (zone, qtype, rcode, transport, region); zone "" = none of ours (REFUSED, errors), transport
# "udp" or "tcp", region "" = not a GSLB answer
CountKey = tuple[str, int, int, str, str]


class QueryStats:
    __slots__ = ("counts", "ecs", "latency_counts", "latency_sum", "latency_total", "untimed", "started")

    def __init__(self) -> None:
        self.counts: dict[CountKey, int] = {}  # replies sent
        self.ecs = 0  # queries that carried an ECS option
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_total = 0
        self.untimed = LATENCY_SAMPLE  # queries left before the next timed one, this one included
        self.started = time.time()

    def count(self, zone: str, qtype: int, rcode: int, transport: str, region: str) -> None:
        key = (zone, qtype, rcode, transport, region)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1

    def sample(self) -> bool:
        """True once every LATENCY_SAMPLE calls: time this query. (Answerer.respond_udp counts
        `untimed` down itself, inline.)"""
        left = self.untimed - 1
        if left:
            self.untimed = left
            return False
        self.untimed = LATENCY_SAMPLE
        return True

    def observe(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_total += 1

    def totals(self) -> tuple[int, int]:
        """(all responses, SERVFAIL responses) so far, for the SERVFAIL-rate alert."""
        total = servfail = 0
        for key, value in self.counts.items():
            total += value
            if key[2] == 2:
                servfail += value
        return total, servfail
