"""`fastest`: the endpoint with the lowest recent probe round-trip time."""

from __future__ import annotations

from collections.abc import Sequence

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.policy.base import RTT, Policy, known_first


class FastestPolicy(Policy):
    """The endpoint with the lowest recent probe RTT (`health.rtt`, a smoothed average measured
    from this server, a proxy for the client's view); unknown RTTs rank after known ones, ties go
    to YAML order. `answers: N` gives the N fastest."""

    name = "fastest"
    needs = frozenset((RTT,))
    __slots__ = ()

    def fork(self) -> Policy:
        return self

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
        ranked = sorted(healthy, key=lambda e: known_first(rtt(check, e.address)))
        return ranked[:count]
