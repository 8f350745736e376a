"""`round_robin`: each response starts one endpoint further along."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import Policy, wrapped


class RoundRobinPolicy(Policy):
    """Each response starts one endpoint further along, in YAML order; `answers: N` gives N
    consecutive endpoints (wrapping), so over a cycle every endpoint is first equally often and
    appears equally often. Stepping by one rather than by N keeps the first answer, the one most
    clients use, rotating through every endpoint."""

    name = "round_robin"
    __slots__ = ("_next",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._next: dict[str, int] = {}  # region -> the position that starts the next response

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        size = len(healthy)
        region = healthy[0].region
        start = self._next.get(region, 0) % size  # the set may have shrunk since the last call
        self._next[region] = start + 1
        if count <= 1:
            return healthy[start:start + 1]
        return wrapped(healthy, start, count)
