"""`hash`: the same client subnet gets the same endpoint while that endpoint stays healthy."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from hashlib import blake2b
from operator import attrgetter
from typing import Any, ClassVar

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import Option, Policy, integer

_address = attrgetter("address")
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

    The subnet is the client's /24 (IPv4) or /56 (IPv6), or the prefixes the options
    `ipv4_prefix`/`ipv6_prefix` set (the ECS scope of its answers is never narrower); `client_key` below 2**32 is taken as
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
    __slots__ = ("_rings", "_points", "ipv4_prefix", "ipv6_prefix")
    VIRTUAL_NODES: ClassVar[int] = 160
    MAX_RINGS: ClassVar[int] = 64  # distinct healthy sets remembered; cleared whole when full
    IPV4_PREFIX: ClassVar[int] = 24
    IPV6_PREFIX: ClassVar[int] = 56
    options = (
        Option("ipv4_prefix", IPV4_PREFIX, integer(1, 32),
               "IPv4 clients in one prefix this long share an endpoint (and a cached answer)"),
        Option("ipv6_prefix", IPV6_PREFIX, integer(1, 56),
               "the same for IPv6 (at most 56: longer prefixes would collide with IPv4 ones)"),
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._rings: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
        self._points: dict[str, tuple[int, ...]] = {}
        self.ipv4_prefix: int = self.option(options, "ipv4_prefix")
        self.ipv6_prefix: int = self.option(options, "ipv6_prefix")

    def fork(self) -> Policy:
        return self  # no state but caches: the same client gets the same answer from any copy

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        key = tuple(map(_address, healthy))
        ring = self._rings.get(key)
        if ring is None:
            ring = self._ring(key)
        points, owners = ring
        if client_key < _IPV4_LIMIT:
            subnet = client_key >> (32 - self.ipv4_prefix)
        else:
            subnet = (client_key >> (128 - self.ipv6_prefix)) | _IPV6_TAG
        position = bisect_right(points, _mix64(subnet))
        if position == len(points):
            position = 0
        if count <= 1:
            index = owners[position]
            return healthy[index:index + 1]
        return _clockwise(healthy, owners, position, min(count, len(healthy)))

    def scope(self, version: int, region_scope: int) -> int:
        return max(region_scope, self.ipv4_prefix if version == 4 else self.ipv6_prefix)

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
