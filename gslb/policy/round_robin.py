"""`round_robin`: each response starts one endpoint further along."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gslb.dynamic import Endpoint
from gslb.policy.base import MAX_PERIOD, Policy, Rotating, Schedule, wrapped


class RoundRobinPolicy(Rotating):
    """Each response starts one endpoint further along, in YAML order; `answers: N` gives N
    consecutive endpoints (wrapping), so over a cycle every endpoint is first equally often and
    appears equally often. Stepping by one rather than by N keeps the first answer, the one most
    clients use, rotating through every endpoint.

    The position is kept modulo the healthy set it was last used with (when the set changes, the
    next response starts at that position modulo the new size), so a rotation is a cycle of
    exactly one step per endpoint, and the fast path lays it out ahead (`Rotating`)."""

    name = "round_robin"
    __slots__ = ("_next",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._next: dict[str, int] = {}  # region -> the position that starts the next response

    def rotate(self, healthy: Sequence[Endpoint], count: int) -> Sequence[Endpoint]:
        size = len(healthy)
        region = healthy[0].region
        start = self._next.get(region, 0) % size  # the set may have shrunk since the last call
        self._next[region] = start + 1 if start + 1 < size else 0
        if count <= 1:
            return healthy[start:start + 1]
        return wrapped(healthy, start, count)

    def lay_out(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        size = len(healthy)
        if size > MAX_PERIOD:
            return None
        choices = [tuple(healthy[start:start + 1] if count <= 1 else wrapped(healthy, start, count))
                   for start in range(size)]
        position = self._next.get(healthy[0].region, 0) % size
        return Schedule(healthy, count, choices, range(size), 0, position)

    def settle(self, region: str, schedule: Schedule) -> None:
        self._next[region] = schedule.position

    def fork(self) -> Policy:
        twin = RoundRobinPolicy()
        twin._next = dict(self._next)
        return self.fork_into(twin)
