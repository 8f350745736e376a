"""`failover`: active-passive, in YAML order."""

from __future__ import annotations

from collections.abc import Sequence

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import Policy, Schedule, constant


class FailoverPolicy(Policy):
    """Active-passive: the first healthy endpoint in YAML order; `answers: N` gives the first N."""

    name = "failover"
    __slots__ = ()

    def fork(self) -> Policy:
        return self

    def schedule(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        return constant(healthy, count, healthy[:count or 1])

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        return healthy[:count or 1]
