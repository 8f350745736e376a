"""`random`: uniformly at random among the healthy endpoints."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import Policy


class RandomPolicy(Policy):
    """Uniformly at random among the healthy endpoints; `answers: N` gives N distinct ones."""

    name = "random"
    __slots__ = ("_random", "_uniform")

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._uniform = self._random.random

    def fork(self) -> Policy:
        twin = RandomPolicy()
        twin._random.setstate(self._random.getstate())  # what-if draws what the next query would
        return twin

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        size = len(healthy)
        if count <= 1:
            # int(random() * n) is uniform to within 2**-53 for any pool size a zone can hold.
            index = int(self._uniform() * size)
            return healthy[index:index + 1]
        return self._random.sample(healthy, min(count, size))
