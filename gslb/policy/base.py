"""What every selection policy is: a small class that picks from a region's healthy endpoints,
declaring what it needs from health checks and which options it takes.

`pick` runs on the hot path: it gets the healthy endpoints in YAML order (never empty) and must not
await, log or raise. It may return a slice of `healthy`. State is keyed by address, never by
position alone, so it survives an endpoint leaving the healthy set and coming back. One instance
serves one record, so stateful policies keep their state per record; and because a record's
fallback can send one region's clients to another region's pool, that state is kept per region
(`healthy[0].region`), so interleaved regions never disturb each other's rotation.

A policy whose picks for a fixed healthy set repeat with a short period (weighted, round_robin;
failover and all, whose period is one) can lay them out ahead as a `Schedule`: the fast path then
answers a query with one step along it and a join of pre-packed bytes (gslb/plan.py). The
schedule *is* the policy's state for its region while it is in use, so `pick` and the fast path
move the same rotation; a `pick` with another healthy set first writes the schedule's position
back into the policy's own state (`settle`), and the rotation carries on from there as before.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

from gslb.config.problems import shown
from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView

# What a policy can need from its record's check (what a check kind provides: gslb/health/specs.py).
RTT = "rtt"
LOAD = "load"
NEEDS: Mapping[str, tuple[str, str]] = {
    # need -> (what it is, how a zone provides it)
    RTT: ("probe round-trip times", "give the record a check (any http, https or tcp check)"),
    LOAD: ("the load its sites report", "give the record an http or https check with load: {json: FIELD} or {header: NAME}"),
}


_address = attrgetter("address")
MAX_PERIOD = 512  # picks a schedule lays out at most; a longer (or no) period: pick per query


class Schedule:
    """A policy's next picks for one healthy set and answer count, laid out ahead.

    `choices` are the distinct picks; `sequence[i]` is the choice of step i. After the last step
    the sequence goes on at `loop` (0 for a pure cycle; later when the policy's state first had
    to settle into its cycle). `position` is the next step. `live` turns False when the policy
    stops using this schedule (its state was written back): a holder must then pick again.
    """

    __slots__ = ("addresses", "count", "choices", "sequence", "loop", "position", "end", "origin", "live")

    def __init__(self, healthy: Sequence[Endpoint], count: int, choices: Sequence[Sequence[Endpoint]],
                 sequence: Sequence[int], loop: int = 0, position: int = 0, origin: Any = None) -> None:
        self.addresses = tuple(map(_address, healthy))
        self.count = count
        self.choices = tuple(choices)
        self.sequence: Sequence[int] = bytes(sequence) if len(self.choices) <= 256 else tuple(sequence)
        self.loop = loop
        self.position = position
        self.end = len(self.sequence)
        self.origin = origin  # what the policy needs to recover its own state from `position`
        self.live = True

    def step(self) -> int:
        """The index in `choices` of the next pick; moves the schedule on by one."""
        position = self.position
        following = position + 1
        self.position = following if following != self.end else self.loop
        return self.sequence[position]

    def fits(self, healthy: Sequence[Endpoint], count: int) -> bool:
        return count == self.count and tuple(map(_address, healthy)) == self.addresses

    def copy(self) -> Schedule:
        """The same layout (shared) at the same position (its own): for `fork`."""
        return copy.copy(self)


def constant(healthy: Sequence[Endpoint], count: int, pick: Sequence[Endpoint]) -> Schedule:
    """The schedule of a policy whose pick for a healthy set never changes."""
    return Schedule(healthy, count, (pick,), (0,))


@dataclass(frozen=True, slots=True)
class Option:
    """One option a policy takes in zone YAML, like `policy: {hash: {ipv4_prefix: 20}}`."""

    name: str
    default: Any
    parse: Callable[[Any], Any]  # the YAML value -> the value; ValueError saying what is wrong
    help: str


def integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {shown(value)}")
        return value
    return parse


def number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}, got {shown(value)}")
        return float(value)
    return parse


class Policy:
    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()  # RTT, LOAD: what its record's check must provide
    options: ClassVar[tuple[Option, ...]] = ()
    __slots__ = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        """`options`: validated values by name (`parse_options`); absent ones take their default."""

    def option(self, options: Mapping[str, Any] | None, name: str) -> Any:
        """The value of a declared option: the given one, else its default."""
        if options is not None and name in options:
            return options[name]
        return next(o.default for o in self.options if o.name == name)

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

    def schedule(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        """The next picks for `healthy` and `count`, laid out ahead, when they repeat with a short
        period and do not depend on the client or on RTT/load; None otherwise (the caller then
        calls `pick` per query). Stepping it is picking: the policy keeps the schedule as its
        state for the region (see the module's docstring)."""
        return None

    def fork(self) -> Policy:
        """An independent copy with the same state: what-if and explain pick from it, so the
        live rotation does not move. Policies without state may return themselves."""
        return copy.deepcopy(self)


class Rotating(Policy):
    """A policy with a rotation per region that can be laid out as a `Schedule`. Subclasses give
    `rotate` (one pick, moving their own state), `lay_out` (the schedule from that state) and
    `settle` (the state back from a schedule's position); the schedule, while there is one, is
    the region's state, and `pick` steps it."""

    __slots__ = ("_schedules", "_aperiodic")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self._schedules: dict[str, Schedule] = {}  # region -> the schedule in use
        # region -> the (addresses, count) last found not periodic within MAX_PERIOD: not tried
        # again at every plan (a health change elsewhere replans every record)
        self._aperiodic: dict[str, tuple[tuple[str, ...], int]] = {}

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        if self._schedules:
            region = healthy[0].region
            schedule = self._schedules.get(region)
            if schedule is not None:
                if schedule.fits(healthy, count):
                    return schedule.choices[schedule.step()]
                self._drop(region)
        return self.rotate(healthy, count)

    def schedule(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        region = healthy[0].region
        schedule = self._schedules.get(region)
        if schedule is not None:
            if schedule.fits(healthy, count):
                return schedule
            self._drop(region)
        key = (tuple(map(_address, healthy)), count)
        if self._aperiodic.get(region) == key:
            return None
        schedule = self.lay_out(healthy, count)
        if schedule is None:
            self._aperiodic[region] = key
            return None
        self._schedules[region] = schedule
        return schedule

    def _drop(self, region: str) -> None:
        schedule = self._schedules.pop(region)
        schedule.live = False
        self.settle(region, schedule)

    def fork_into(self, twin: Rotating) -> Rotating:
        """`twin` (a fresh instance holding a copy of the subclass's state) given copies of the
        schedules: it goes on from the same positions without moving these."""
        twin._schedules = {region: schedule.copy() for region, schedule in self._schedules.items()}
        twin._aperiodic = dict(self._aperiodic)
        return twin

    def rotate(self, healthy: Sequence[Endpoint], count: int) -> Sequence[Endpoint]:
        raise NotImplementedError

    def lay_out(self, healthy: Sequence[Endpoint], count: int) -> Schedule | None:
        raise NotImplementedError

    def settle(self, region: str, schedule: Schedule) -> None:
        raise NotImplementedError


def wrapped(healthy: Sequence[Endpoint], start: int, count: int) -> Sequence[Endpoint]:
    """`count` endpoints (at most all) from `start`, wrapping round to the beginning."""
    size = len(healthy)
    end = start + min(count, size)
    if end <= size:
        return healthy[start:end]
    return [*healthy[start:], *healthy[:end - size]]


def known_first(value: float | None) -> tuple[bool, float]:
    return (True, 0.0) if value is None else (False, value)
