"""`weighted`: endpoints in proportion to their weight, by smooth weighted round robin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gslb.dynamic import Endpoint
from gslb.policy.base import MAX_PERIOD, Policy, Rotating, Schedule


class WeightedPolicy(Rotating):
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

    For a fixed healthy set the picks repeat with a period of at most sum(weights): the fast path
    lays them out ahead (`Rotating`) and steps along them; the running values are then recovered
    from the position when the set changes.
    """

    name = "weighted"
    __slots__ = ("_current",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._current: dict[str, dict[str, int]] = {}  # region -> address -> running value

    def rotate(self, healthy: Sequence[Endpoint], count: int) -> Sequence[Endpoint]:
        current = self._current.get(healthy[0].region)
        if current is None:
            current = self._current[healthy[0].region] = {}
        return _pick(healthy, count, current)

    def lay_out(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        """Smooth weighted round robin run ahead on a copy of the running values until they
        repeat (from zero, after sum(weights) / gcd(weights) picks; after a change of the
        healthy set, possibly after a few picks more)."""
        origin = dict(self._current.get(healthy[0].region, {}))
        values = dict(origin)
        addresses = [e.address for e in healthy]
        seen: dict[tuple[int, ...], int] = {}
        choices: list[Sequence[Endpoint]] = []
        index_of: dict[tuple[str, ...], int] = {}
        sequence: list[int] = []
        state = tuple([values.get(a, 0) for a in addresses])
        while state not in seen:
            if len(sequence) == MAX_PERIOD:
                return None
            seen[state] = len(sequence)
            pick = tuple(_pick(healthy, count, values))
            key = tuple([e.address for e in pick])
            index = index_of.get(key)
            if index is None:
                index = index_of[key] = len(choices)
                choices.append(pick)
            sequence.append(index)
            state = tuple([values.get(a, 0) for a in addresses])
        return Schedule(healthy, count, choices, sequence, seen[state], 0, (tuple(healthy), origin))

    def settle(self, region: str, schedule: Schedule) -> None:
        healthy, origin = schedule.origin
        values = dict(origin)
        for _ in range(schedule.position):
            _pick(healthy, schedule.count, values)
        self._current[region] = values

    def fork(self) -> Policy:
        twin = WeightedPolicy()
        twin._current = {region: dict(values) for region, values in self._current.items()}
        return self.fork_into(twin)


def _pick(healthy: Sequence[Endpoint], count: int, current: dict[str, int]) -> Sequence[Endpoint]:
    """One pick of smooth weighted round robin, moving the running values `current`."""
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
