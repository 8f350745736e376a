"""`all`: every healthy endpoint in one answer."""

from __future__ import annotations

from collections.abc import Sequence

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import Policy, Schedule, constant


class AllPolicy(Policy):
    """Every healthy endpoint (multi-value answer), capped by `answers` when set."""

    name = "all"
    __slots__ = ()

    def fork(self) -> Policy:
        return self

    def schedule(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        return constant(healthy, count, healthy[:count] if count else healthy)

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        return healthy[:count] if count else healthy
