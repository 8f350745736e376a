"""Selection policies: which of a region's healthy endpoints go in one response.

Each policy is a small class found by its YAML name in `POLICIES`; adding one is one class and
one entry there. One instance serves one record, so stateful policies (rotation, smooth weights)
keep their state per record; and because a record's fallback can send one region's clients to
another region's pool, that state is kept per region (`healthy[0].region`), so interleaved
regions never disturb each other's rotation.

`pick` runs on the hot path: it gets the healthy endpoints in YAML order (never empty) and must not
await, log or raise. It may return a slice of `healthy`. State is keyed by address, never by
position alone, so it survives an endpoint leaving the healthy set and coming back.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from hashlib import blake2b
from operator import attrgetter
from typing import ClassVar, Sequence

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView

_address = attrgetter("address")


class Policy:
    name: ClassVar[str] = ""
    __slots__ = ()

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        """`healthy` is non-empty, in YAML order; `count` 0 means the policy's natural number
        (one for single-answer policies, all for `all`); `client_key` is the client address as an
        int (the ECS address when given); `health`/`check` give RTT and load for the policies
        that read them. At most `count` distinct endpoints come back."""
        raise NotImplementedError

    def scope(self, version: int, region_scope: int) -> int:
        """The ECS scope for an answer whose region holds over `region_scope` bits. A policy whose
        choice depends on the client's address (hash) must narrow it to the bits it reads."""
        return region_scope


class AllPolicy(Policy):
    """Every healthy endpoint (multi-value answer), capped by `answers` when set."""

    name = "all"
    __slots__ = ()

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        return healthy[:count] if count else healthy


class FailoverPolicy(Policy):
    """Active-passive: the first healthy endpoint in YAML order; `answers: N` gives the first N."""

    name = "failover"
    __slots__ = ()

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        return healthy[:count or 1]


class RoundRobinPolicy(Policy):
    """Each response starts one endpoint further along, in YAML order; `answers: N` gives N
    consecutive endpoints (wrapping), so over a cycle every endpoint is first equally often and
    appears equally often. Stepping by one rather than by N keeps the first answer, the one most
    clients use, rotating through every endpoint."""

    name = "round_robin"
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[str, int] = {}  # region -> the position that starts the next response

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        size = len(healthy)
        region = healthy[0].region
        start = self._next.get(region, 0) % size  # the set may have shrunk since the last call
        self._next[region] = start + 1
        if count <= 1:
            return healthy[start:start + 1]
        return _wrapped(healthy, start, count)


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

    def __init__(self) -> None:
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


class RandomPolicy(Policy):
    """Uniformly at random among the healthy endpoints; `answers: N` gives N distinct ones."""

    name = "random"
    __slots__ = ("_random", "_uniform")

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._uniform = self._random.random

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        size = len(healthy)
        if count <= 1:
            # int(random() * n) is uniform to within 2**-53 for any pool size a zone can hold.
            index = int(self._uniform() * size)
            return healthy[index:index + 1]
        return self._random.sample(healthy, min(count, size))


_MASK64 = (1 << 64) - 1
_IPV4_LIMIT = 1 << 32
_IPV6_TAG = 1 << 56  # keeps /56 prefixes apart from /24 ones in the hash's input


def _mix64(value: int) -> int:
    """MurmurHash3's 64-bit finaliser: a fixed, unsalted mix (the same in every process)."""
    value = (value ^ (value >> 33)) * 0xFF51AFD7ED558CCD & _MASK64
    value = (value ^ (value >> 33)) * 0xC4CEB9FE1A85EC53 & _MASK64
    return value ^ (value >> 33)


class HashPolicy(Policy):
    """The same client subnet gets the same endpoint while that endpoint stays healthy.

    The subnet is the client's /24 (IPv4) or /56 (IPv6); `client_key` below 2**32 is taken as
    IPv4 (an IPv6 client in ::/96, which is not routable, would be hashed as if it were IPv4). The
    subnet is hashed with a fixed integer mix and placed on a consistent-hash ring of
    `VIRTUAL_NODES` points per endpoint, each point a BLAKE2b hash of the address: answers are the
    same across restarts and worker processes, and when an endpoint fails only the clients that
    were on it move, spread over the rest. `answers: N` gives the next distinct endpoints
    clockwise on the ring. Weights are not read.

    A ring is built once per distinct healthy set (keyed by its addresses) and cached; the points
    of each address are cached too, so a new set costs only a sort.
    """

    name = "hash"
    __slots__ = ("_rings", "_points")
    VIRTUAL_NODES: ClassVar[int] = 160
    MAX_RINGS: ClassVar[int] = 64  # distinct healthy sets remembered; cleared whole when full
    IPV4_PREFIX: ClassVar[int] = 24
    IPV6_PREFIX: ClassVar[int] = 56

    def __init__(self) -> None:
        self._rings: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
        self._points: dict[str, tuple[int, ...]] = {}

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        key = tuple(map(_address, healthy))
        ring = self._rings.get(key)
        if ring is None:
            ring = self._ring(key)
        points, owners = ring
        if client_key < _IPV4_LIMIT:
            subnet = client_key >> (32 - self.IPV4_PREFIX)
        else:
            subnet = (client_key >> (128 - self.IPV6_PREFIX)) | _IPV6_TAG
        position = bisect_right(points, _mix64(subnet))
        if position == len(points):
            position = 0
        if count <= 1:
            index = owners[position]
            return healthy[index:index + 1]
        return _clockwise(healthy, owners, position, min(count, len(healthy)))

    def scope(self, version: int, region_scope: int) -> int:
        return max(region_scope, self.IPV4_PREFIX if version == 4 else self.IPV6_PREFIX)

    def _ring(self, key: tuple[str, ...]) -> tuple[list[int], list[int]]:
        entries = sorted(
            (point, index) for index, address in enumerate(key) for point in self._address_points(address)
        )
        ring = ([point for point, _ in entries], [index for _, index in entries])
        if len(self._rings) >= self.MAX_RINGS:
            self._rings.clear()
        self._rings[key] = ring
        return ring

    def _address_points(self, address: str) -> tuple[int, ...]:
        points = self._points.get(address)
        if points is None:
            points = tuple(
                int.from_bytes(blake2b(f"{address}#{replica}".encode(), digest_size=8).digest(), "big")
                for replica in range(self.VIRTUAL_NODES)
            )
            self._points[address] = points
        return points


def _clockwise(healthy: Sequence[Endpoint], owners: list[int], position: int, wanted: int) -> list[Endpoint]:
    """The first `wanted` distinct endpoints met walking the ring from `position`."""
    taken: list[int] = []
    size = len(owners)
    while len(taken) < wanted:
        index = owners[position]
        if index not in taken:
            taken.append(index)
        position += 1
        if position == size:
            position = 0
    return [healthy[index] for index in taken]


class FastestPolicy(Policy):
    """The endpoint with the lowest recent probe RTT (`health.rtt`, a smoothed average measured
    from this server, a proxy for the client's view); unknown RTTs rank after known ones, ties go
    to YAML order. `answers: N` gives the N fastest."""

    name = "fastest"
    __slots__ = ()

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        rtt = health.rtt
        if count <= 1:
            best = healthy[0]
            best_rtt: float | None = None
            for endpoint in healthy:
                value = rtt(check, endpoint.address)
                if value is not None and (best_rtt is None or value < best_rtt):
                    best, best_rtt = endpoint, value
            return (best,)
        ranked = sorted(healthy, key=lambda e: _known_first(rtt(check, e.address)))
        return ranked[:count]


def _known_first(value: float | None) -> tuple[bool, float]:
    return (True, 0.0) if value is None else (False, value)


class LeastLoadedPolicy(Policy):
    """The least loaded endpoint (`health.load`), spread over its near-equals.

    Loads change only when a probe reports, so sending every query to the single minimum would
    flood that site until the next probe. Instead the policy rotates among every endpoint whose
    load is within `RELATIVE_TOLERANCE` of the minimum, or `ABSOLUTE_TOLERANCE` above it when that
    is wider (the absolute bound suits loads reported as a 0..1 utilisation and keeps idle sites,
    load 0, from being a set of one). Endpoints of unknown load rank after known ones; when no
    load is known, it rotates over all. `answers: N` gives the near-equals in rotation, then the
    rest by load.
    """

    name = "least_loaded"
    __slots__ = ("_next",)
    RELATIVE_TOLERANCE: ClassVar[float] = 0.10
    ABSOLUTE_TOLERANCE: ClassVar[float] = 0.05

    def __init__(self) -> None:
        self._next: dict[str, int] = {}  # region -> rotation among the near-equals

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
            limit = lowest + max(abs(lowest) * self.RELATIVE_TOLERANCE, self.ABSOLUTE_TOLERANCE)
            near = [index for index, value in enumerate(loads) if value is not None and value <= limit]
        region = healthy[0].region
        turn = self._next.get(region, 0) % len(near)
        self._next[region] = turn + 1
        if count <= 1:
            index = near[turn]
            return healthy[index:index + 1]
        order = [*near[turn:], *near[:turn]]
        if len(order) < count:
            rest = sorted((i for i in range(len(healthy)) if i not in near), key=lambda i: _known_first(loads[i]))
            order += rest
        return [healthy[index] for index in order[:count]]


def _wrapped(healthy: Sequence[Endpoint], start: int, count: int) -> Sequence[Endpoint]:
    """`count` endpoints (at most all) from `start`, wrapping round to the beginning."""
    size = len(healthy)
    end = start + min(count, size)
    if end <= size:
        return healthy[start:end]
    return [*healthy[start:], *healthy[:end - size]]


POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        AllPolicy,
        RoundRobinPolicy,
        WeightedPolicy,
        RandomPolicy,
        HashPolicy,
        FailoverPolicy,
        FastestPolicy,
        LeastLoadedPolicy,
    )
}
