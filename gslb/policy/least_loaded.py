"""`least_loaded`: the least loaded endpoint, spread over its near-equals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import LOAD, Option, Policy, known_first, number


class LeastLoadedPolicy(Policy):
    """The least loaded endpoint (`health.load`), spread over its near-equals.

    Loads change only when a probe reports, so sending every query to the single minimum would
    flood that site until the next probe. Instead the policy rotates among every endpoint whose
    load is within `tolerance` (default 10%) of the minimum, or `absolute_tolerance` (default
    0.05) above it when that is wider (the absolute bound suits loads reported as a 0..1
    utilisation and keeps idle sites, load 0, from being a set of one). Endpoints of unknown load rank after known ones; when no
    load is known, it rotates over all. `answers: N` gives the near-equals in rotation, then the
    rest by load.
    """

    name = "least_loaded"
    needs = frozenset((LOAD,))
    __slots__ = ("_next", "relative", "absolute")
    RELATIVE_TOLERANCE: ClassVar[float] = 0.10
    ABSOLUTE_TOLERANCE: ClassVar[float] = 0.05
    options = (
        Option("tolerance", RELATIVE_TOLERANCE, number(0, 10),
               "endpoints within this fraction above the lowest load share the traffic"),
        Option("absolute_tolerance", ABSOLUTE_TOLERANCE, number(0, 1e9),
               "... or within this much above it, when that is wider"),
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._next: dict[str, int] = {}  # region -> rotation among the near-equals
        self.relative: float = self.option(options, "tolerance")
        self.absolute: float = self.option(options, "absolute_tolerance")

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        load = health.load
        loads: list[float | None] = []
        lowest: float | None = None
        for endpoint in healthy:
            value = load(check, endpoint.address)
            loads.append(value)
            if value is not None and (lowest is None or value < lowest):
                lowest = value
        if lowest is None:
            near: Sequence[int] = range(len(healthy))
        else:
            limit = lowest + max(abs(lowest) * self.relative, self.absolute)
            near = [index for index, value in enumerate(loads) if value is not None and value <= limit]
        region = healthy[0].region
        turn = self._next.get(region, 0) % len(near)
        self._next[region] = turn + 1
        if count <= 1:
            index = near[turn]
            return healthy[index:index + 1]
        order = [*near[turn:], *near[:turn]]
        if len(order) < count:
            rest = sorted((i for i in range(len(healthy)) if i not in near), key=lambda i: known_first(loads[i]))
            order += rest
        return [healthy[index] for index in order[:count]]
