"""A GSLB answer's plan: what it depends on besides the client, decided once per health version.

Everything `Selector.select` decides before the policy picks - which region's pool answers after
health, fallback, `min_healthy` and `when_all_down`; whether the answer is degraded (so carries
the degraded TTL) or a SERVFAIL - depends only on the record, the client's region and the health
view. A `Plan` keeps it for one (record, region) until the view's `version` moves, so a health
change takes effect at the very next query. For the policies whose picks repeat (weighted,
round_robin: their `Schedule`; failover, all and a fixed `when_all_down`: a constant answer) the
plan also holds every distinct answer body, packed, so the fast path answers with one step along
the policy's schedule and a join. The other policies (hash, random, fastest, least_loaded) still
pick per query, from the plan's pool.

Stepping the schedule is the policy's pick (the schedule is its state: gslb/policy/base.py), so
the fast path and the general path, which calls `Selector.select`, move one rotation, and give
the same answers in the same order (tests/test_fastpath_differential.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gslb.dynamic import DynamicRecord, Endpoint
from gslb.health.status import HealthView
from gslb.policy.base import Schedule, constant
from gslb.selection import Selector

MAX_PLANS = 200_000  # plans kept at once, over all records and regions; cleared whole when full

Plans = dict[str | None, "Plan"]  # one record's plans by the client's region


class Plan:
    """One record's answer for clients of one region, as of health version `version`."""

    __slots__ = ("version", "label", "servfail", "degraded", "schedule", "bodies", "pick", "pool", "answers",
                 "health", "check", "scope")

    def __init__(self, version: int, region: str | None, servfail: bool, degraded: bool,
                 schedule: Schedule | None, pick: Callable[..., Sequence[Endpoint]], pool: Sequence[Endpoint],
                 answers: int, health: HealthView, check: str | None, scope: Callable[[int, int], int]) -> None:
        self.version = version
        self.label = region or ""  # the region that answers, as the metrics label it
        self.servfail = servfail
        self.degraded = degraded  # the degraded TTL: fallback, endpoints down, or when_all_down
        self.schedule = schedule  # None: pick per query
        # Per choice of the schedule: (the answer RRs as wire bytes, how many).
        self.bodies: tuple[tuple[bytes, int], ...] = () if schedule is None else tuple(
            (b"".join([e.degraded_wire if degraded else e.wire for e in choice]), len(choice))
            for choice in schedule.choices)
        # Without a schedule: pick(pool, answers, client key, health, check) per query.
        self.pick = pick
        self.pool = pool
        self.answers = answers
        self.health = health
        self.check = check
        self.scope = scope  # (IP version, region scope) -> the ECS scope: the policy's

    def answer(self, client_key: int) -> tuple[bytes, int, Sequence[Endpoint]]:
        """The next answer: its RRs as wire bytes, how many, and its endpoints. One step along the
        schedule, or the policy's pick for `client_key` (the client's address as an int)."""
        schedule = self.schedule
        if schedule is not None and schedule.live:
            choice = schedule.step()
            body, count = self.bodies[choice]
            return body, count, schedule.choices[choice]
        endpoints = self.pick(self.pool, self.answers, client_key, self.health, self.check)
        if len(endpoints) == 1:  # most policies answer one address: no list to build
            return endpoints[0].degraded_wire if self.degraded else endpoints[0].wire, 1, endpoints
        wires = [e.degraded_wire for e in endpoints] if self.degraded else [e.wire for e in endpoints]
        return b"".join(wires), len(endpoints), endpoints

    def endpoints(self, client_key: int) -> Sequence[Endpoint]:
        """The endpoints of the next answer (for tests and tools)."""
        return self.answer(client_key)[2]


class Planner:
    """Plans over one Selector (its health view and its policies). Callers keep a `Plans` dict
    per record (`plans()`) and look a plan up themselves; `plan` makes one on a miss or when
    the health version has moved."""

    __slots__ = ("selector", "health", "_filled", "_size")

    def __init__(self, selector: Selector) -> None:
        self.selector = selector
        self.health = selector.health
        self._filled: list[Plans] = []  # every Plans dict holding a plan, to clear them all
        self._size = 0

    def plan(self, record: DynamicRecord, region: str | None, plans: Plans) -> Plan:
        """The plan for `record` and clients of `region`, made now and kept in `plans`."""
        selector = self.selector
        version = self.health.version
        walk = selector.walk(record, region)
        policy = selector.policy(record)
        schedule: Schedule | None
        if walk.servfail:
            schedule = None
        elif walk.region is None:  # the fixed when_all_down answer (or nothing): no policy
            schedule = constant(walk.endpoints, 0, tuple(walk.endpoints))
        else:
            schedule = policy.schedule(walk.endpoints, record.answers)
        made = Plan(version, walk.region, walk.servfail, walk.degraded, schedule, policy.pick, walk.endpoints,
                    record.answers, self.health, record.check, policy.scope)
        if region not in plans:
            if self._size >= MAX_PLANS:
                self.clear()
            if not plans:
                self._filled.append(plans)
            self._size += 1
        plans[region] = made
        return made

    def clear(self) -> None:
        for plans in self._filled:
            plans.clear()
        self._filled.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size
