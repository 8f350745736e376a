"""`weighted`: endpoints in proportion to their weight, by smooth weighted round robin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import Policy


class WeightedPolicy(Policy):
    """Endpoints in proportion to `weight`, by nginx's smooth weighted round robin.

    Every pick adds each endpoint's weight to its running value and takes the endpoint with the
    highest, which then gives back the total. Over every `total` consecutive picks each endpoint
    is chosen exactly `weight` times, spread out rather than clumped (5:1:1 gives a a b a c a a,
    not a a a a a b c). It is chosen over weighted random because DNS answers are cached and
    counted in small numbers: random shares only converge over thousands of responses, and one
    resolver that asks rarely can be handed the small site several times running. The cost is
    O(endpoints) per pick, which for pools of a few sites is a handful of dict operations.

    Weight 0 endpoints get nothing while a non-zero one is healthy, and share equally when only
    zero-weight ones are (as Route 53 does). Running values are kept by address, so an endpoint
    that leaves keeps its value and resumes from it; the values always sum to zero, so nothing
    accumulates. With `answers: N`, the first is the policy's pick and the rest are the other
    eligible endpoints in the order the schedule would pick them next (highest running value
    first); weight 0 endpoints never fill out a response that has non-zero ones.
    """

    name = "weighted"
    __slots__ = ("_current",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._current: dict[str, dict[str, int]] = {}  # region -> address -> running value

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        current = self._current.get(healthy[0].region)
        if current is None:
            current = self._current[healthy[0].region] = {}
        flat = 0  # 1 when only weight 0 endpoints are healthy: each then counts as weight 1
        best = _smooth_step(healthy, current, flat)
        if best is None:
            flat = 1
            best = _smooth_step(healthy, current, flat)
        if count <= 1:
            return (best,)  # type: ignore[return-value]
        others = [e for e in healthy if (e.weight or flat) and e is not best]
        others.sort(key=lambda e: -current[e.address])  # stable: ties stay in YAML order
        others.insert(0, best)  # type: ignore[arg-type]
        return others[:count]


def _smooth_step(healthy: Sequence[Endpoint], current: dict[str, int], flat: int) -> Endpoint | None:
    """One step of smooth weighted round robin over the endpoints whose weight (or `flat`) is
    non-zero; None when there are none."""
    total = 0
    best: Endpoint | None = None
    best_value = 0
    for endpoint in healthy:
        weight = endpoint.weight or flat
        if weight:
            address = endpoint.address
            value = current.get(address, 0) + weight
            current[address] = value
            total += weight
            if best is None or value > best_value:
                best, best_value = endpoint, value
    if best is not None:
        current[best.address] = best_value - total
    return best
