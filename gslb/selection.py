"""Region + pools + health + policy -> the endpoints one response carries.

`Selector.select` is the seam between geography and load balancing: it takes the client's region
(from geo), walks the record's precomputed region order, keeps the endpoints the health view says
serve, and lets the record's policy choose among them. It reads only memory, and changes nothing
but the policy's own rotation: no logging, no other state (gslb/alerts.py notices a record with
nothing healthy, from the health view, off the query path).

`fork()` gives a selector whose policies are copies of this one's, made when a record is first
asked for: what-if and explain run real selections through it without moving the live rotation.

`min_healthy` (a record's `min_up` per region): a region whose pool has fewer UP endpoints than
that counts as down, and its clients go on down the region order (Azure MinChildEndpoints,
Cloudflare minimum_origins, gdnsd up_thresh). When no region has enough, healthy endpoints still
beat dead ones: the first region with any UP endpoint serves, degraded, before `when_all_down`
applies. `trace()` gives the same walk step by step, for explain and /status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gslb.dynamic import DynamicRecord, Endpoint
from gslb.health.status import ALWAYS_UP, HealthView, Status
from gslb.policy import Policy, build_policy


@dataclass(frozen=True, slots=True)
class Selection:
    endpoints: Sequence[Endpoint]
    region: str | None  # the region whose pool answered; None when nothing was up anywhere
    degraded: bool  # fell back to another region, or the region has endpoints down
    all_down: bool = False
    servfail: bool = False


@dataclass(frozen=True, slots=True)
class RegionStep:
    """One region of a selection's walk, as explain and /status show it."""

    region: str
    up: int  # UP endpoints in the region's pool
    drain: int  # DRAIN ones
    size: int  # endpoints in the pool
    need: int  # UP endpoints the region needs (min_healthy; 1 without it)
    serves: bool  # this region's pool answered
    why: str  # "3 of 3 healthy", "1 of 3 healthy, below min_healthy 2", ...

    def as_text(self) -> str:
        return f"{self.region}: {self.why}"


@dataclass(frozen=True, slots=True)
class Trace:
    """A selection's walk without picking endpoints: every region tried, in order, and the outcome."""

    steps: tuple[RegionStep, ...]
    region: str | None  # the region whose pool answers; None: nothing serves (when_all_down)
    all_down: bool  # when_all_down applies
    below_min: bool  # served although no region had min_healthy UP endpoints

    def as_text(self) -> str:
        return "; ".join(step.as_text() for step in self.steps)


def trace(record: DynamicRecord, region: str | None, health: HealthView) -> Trace:
    """The walk `Selector.select` makes for a client of `region`, step by step, reading `health`
    and nothing else: which regions were tried, why each was skipped, and which serves."""
    check = record.check
    need = record.min_up
    steps: list[RegionStep] = []
    chosen: str | None = None
    first_with_any: str | None = None
    status = health.status
    for candidate in record.regions_for(region):
        pool = record.pools[candidate]
        states = [status(check, e.address) for e in pool]
        up = states.count(Status.UP)
        drain = states.count(Status.DRAIN)
        required = need.get(candidate, 1) if need else 1
        if chosen is None and (up >= required if need else (up or drain)):
            chosen = candidate
            why = f"{up} of {len(pool)} healthy" + (f", min_healthy {required}" if need else "")
            if not need and not up:
                why += f" ({drain} draining serve: nothing else in the region is up)"
            steps.append(RegionStep(candidate, up, drain, len(pool), required, True, f"{why}: serves"))
            continue
        if chosen is not None:
            break  # the walk stops at the region that serves
        if need and up < required:
            why = f"{up} of {len(pool)} healthy, below min_healthy {required}: skipped"
            if up and first_with_any is None:
                first_with_any = candidate
        else:
            why = f"0 of {len(pool)} healthy: skipped"
        steps.append(RegionStep(candidate, up, drain, len(pool), required, False, why))
    below_min = False
    all_down = False
    if chosen is None and first_with_any is not None:
        chosen, below_min = first_with_any, True
        steps = [replace(step, serves=True, why=step.why.replace(": skipped", ": serves (no region has min_healthy)"))
                 if step.region == first_with_any else step for step in steps]
    if chosen is None:
        all_down = True
        if record.when_all_down == "all":
            forced_down = health.forced_down
            for candidate in record.regions_for(region):
                if any(not forced_down(check, e.address) for e in record.pools[candidate]):
                    chosen = candidate
                    break
    return Trace(tuple(steps), chosen, all_down, below_min)


class _Copies(dict[int, Policy]):
    """Policies copied from live ones on first use (a fork asks for one or two records, so
    copying all 100k up front would be waste)."""

    def __init__(self, live: dict[int, Policy]) -> None:
        super().__init__()
        self._live = live

    def __missing__(self, key: int) -> Policy:
        copy = self[key] = self._live[key].fork()
        return copy


class Selector:
    """Selection for every dynamic record of a catalog, with one policy instance per record."""

    def __init__(self, records: Sequence[DynamicRecord], health: HealthView = ALWAYS_UP,
                 policies: dict[int, Policy] | None = None) -> None:
        self.health = health
        self._policies: dict[int, Policy] = (
            policies if policies is not None else {id(r): build_policy(r.policy, r.policy_options) for r in records})
        self._records = records  # keeps ids stable while the selector lives
        # "Nothing is down or drained" in O(1) lets the common case skip the per-endpoint filter.
        self._everything_up = health.everything_up

    def policy(self, record: DynamicRecord) -> Policy:
        return self._policies[id(record)]

    def fork(self, health: HealthView | None = None) -> Selector:
        """A selector over the same records, reading `health` (default: the same view), whose
        policies start as copies of this one's current state; using it changes nothing here."""
        return Selector(self._records, self.health if health is None else health, _Copies(self._policies))

    def select(self, record: DynamicRecord, region: str | None, client_key: int = 0) -> Selection:
        policy = self._policies[id(record)]
        if self._everything_up():  # the common case, without building a walk first
            candidate = record.regions_for(region)[0]  # the order holds only regions with pools
            pool = record.pools[candidate]
            return Selection(policy.pick(pool, record.answers, client_key, self.health, record.check), candidate,
                             candidate != region)
        walk = self.walk(record, region)
        if walk.region is None:
            return walk  # nothing to pick from: SERVFAIL, the fixed answer, or nothing at all
        return Selection(policy.pick(walk.endpoints, record.answers, client_key, self.health, record.check),
                         walk.region, walk.degraded, walk.all_down)

    def walk(self, record: DynamicRecord, region: str | None) -> Selection:
        """`select` without the pick: the endpoints the policy picks from (all of them, when
        `region` is None: the fixed `when_all_down` answer, or none), which depend only on the
        record, the client's region and the health view - what gslb/plan.py keeps per health
        version."""
        check = record.check
        if self._everything_up():
            candidate = record.regions_for(region)[0]
            return Selection(record.pools[candidate], candidate, candidate != region)
        status = self.health.status
        need = record.min_up
        if need:  # min_healthy: a region with fewer UP endpoints counts as down
            fallback: tuple[str, list[Endpoint]] | None = None
            for candidate in record.regions_for(region):
                pool = record.pools[candidate]
                up = [e for e in pool if status(check, e.address) is Status.UP]
                if len(up) >= need[candidate]:
                    return Selection(up, candidate, candidate != region or len(up) < len(pool))
                if up and fallback is None:
                    fallback = candidate, up
            if fallback is not None:  # no region has enough: healthy endpoints beat dead ones
                candidate, up = fallback
                return Selection(up, candidate, True)
        else:
            for index, candidate in enumerate(record.regions_for(region)):
                pool = record.pools[candidate]
                up = [e for e in pool if status(check, e.address) is Status.UP]
                if not up:
                    # drain: serve only when nothing else in the region is up
                    up = [e for e in pool if status(check, e.address) is Status.DRAIN]
                if up:
                    return Selection(up, candidate, index > 0 or candidate != region or len(up) < len(pool))
        how = record.when_all_down
        if how == "servfail":
            return Selection((), None, True, all_down=True, servfail=True)
        if how == "all":
            # Fail open, as Route 53 does: treat every endpoint as healthy and route as usual -
            # except those an operator set `down`, which must not serve in any case.
            forced_down = self.health.forced_down
            for candidate in record.regions_for(region):
                allowed = [e for e in record.pools[candidate] if not forced_down(check, e.address)]
                if allowed:
                    return Selection(allowed, candidate, True, all_down=True)
            return Selection((), None, True, all_down=True)
        return Selection(how, None, True, all_down=True)  # type: ignore[arg-type]
