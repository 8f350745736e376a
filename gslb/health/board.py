"""The health board: per (check, address), probe results -> rise/fall state -> what DNS serves.

The probers write it with `record()`, the admin state file with `set_overrides()`; the DNS hot
path reads `status()`, a single dict lookup that never awaits (pairs the board does not track, and
every pair that serves normally, are simply absent: UP).

Each change of what an endpoint serves is one log line, in the words `/status` will show:

    www.gslb.example.com. us-east 198.51.100.10 DOWN after 3 failures: HTTP 503
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from gslb.health.admin import NO_OVERRIDES, Overrides
from gslb.health.checks import Check
from gslb.health.probes import ProbeResult
from gslb.health.status import Status

log = logging.getLogger(__name__)

Key = tuple["str | None", str]  # (check name or None for unchecked records, address)
RTT_SMOOTHING = 0.3  # weight of the newest RTT sample in the moving average
_UP = Status.UP


class EndpointHealth:
    """The probe state of one (check, address): mutable, owned by the board."""

    __slots__ = ("check", "address", "probed", "successes", "failures", "reason", "last_result",
                 "last_probe", "last_change", "rtt", "load", "crashes", "probes")

    def __init__(self, check: Check, address: str, now: float) -> None:
        self.check = check
        self.address = address
        self.probed = check.cold_start  # what the probes say: UP or DOWN
        self.successes = 0  # consecutive
        self.failures = 0  # consecutive
        if check.cold_start is Status.UP:
            self.reason = "cold start: serving until probes say otherwise"
        else:
            self.reason = f"cold start: withdrawn until {check.timing.rise} successful probe(s)"
        self.last_result: ProbeResult | None = None
        self.last_probe: float | None = None  # wall-clock time of the last result
        self.last_change = now  # wall-clock time of the last change of `probed`
        self.rtt: float | None = None  # smoothed, seconds
        self.load: float | None = None  # last reported
        self.crashes = 0  # probe tasks that died and were restarted
        self.probes = 0


@dataclass(frozen=True, slots=True)
class EndpointReport:
    """One endpoint as `/status` will show it; the same words as the log."""

    check: str | None
    address: str
    users: tuple[str, ...]  # "www.gslb.example.com. us-east": the records and regions using it
    status: str  # what DNS does: UP, DRAIN or DOWN
    probed: str | None  # what the probes say (None: not checked)
    override: str | None  # the admin override in force, if any
    reason: str  # why it is in its state
    last_result: str | None  # the last probe's outcome: "HTTP 200", "connection refused"
    last_ok: bool | None
    last_probe: float | None  # Unix time
    last_change: float | None  # Unix time
    rtt: float | None
    load: float | None
    successes: int
    failures: int
    crashes: int

    def text(self) -> str:
        return f"{', '.join(self.users)} {self.address} {self.status} {self.reason}"


def effective(probed: Status, override: Status | None) -> Status:
    """`up` and `down` overrides win over the probes; `drain` demotes a healthy endpoint to last
    resort within its region but never revives one the probes find dead."""
    if override is None:
        return probed
    if override is Status.DRAIN:
        return Status.DRAIN if probed is Status.UP else Status.DOWN
    return override


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    serving: dict  # (check, address) -> Status value, only pairs that are not UP
    rtt: dict
    load: dict
    forced: frozenset


class ReplicaBoard:
    """A read-only HealthView fed with snapshots from the process that runs the probes."""

    def __init__(self) -> None:
        self._snapshot = HealthSnapshot({}, {}, {}, frozenset())
        self._serving: dict = {}

    def apply(self, snapshot: HealthSnapshot) -> None:
        self._serving = {key: Status(value) for key, value in snapshot.serving.items()}
        self._snapshot = snapshot

    def status(self, check: str | None, address: str) -> Status:
        return self._serving.get((check, address), _UP)

    def rtt(self, check: str | None, address: str) -> float | None:
        return self._snapshot.rtt.get((check, address))

    def load(self, check: str | None, address: str) -> float | None:
        return self._snapshot.load.get((check, address))

    def forced_down(self, check: str | None, address: str) -> bool:
        return (check, address) in self._snapshot.forced

    def everything_up(self) -> bool:
        return not self._serving


class HealthBoard:
    """Implements `HealthView` for the Selector."""

    def __init__(self, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._clock = clock
        self._endpoints: dict[Key, EndpointHealth] = {}  # checked pairs only
        self._users: dict[Key, tuple[str, ...]] = {}  # every pair a record serves
        self._overrides: Overrides = NO_OVERRIDES
        self._override_source = "admin override"
        self._serving: dict[Key, Status] = {}  # pairs not UP; the hot path's only lookup

    # -- the hot path (HealthView) ------------------------------------------------------------
    def status(self, check: str | None, address: str) -> Status:
        return self._serving.get((check, address), _UP)

    def rtt(self, check: str | None, address: str) -> float | None:
        endpoint = self._endpoints.get((check, address))
        return endpoint.rtt if endpoint is not None else None

    def load(self, check: str | None, address: str) -> float | None:
        endpoint = self._endpoints.get((check, address))
        return endpoint.load if endpoint is not None else None

    def forced_down(self, check: str | None, address: str) -> bool:
        return self._overrides.lookup(check, address) is Status.DOWN

    def everything_up(self) -> bool:
        """True when no endpoint is down or drained: selection may skip its health filter."""
        return not self._serving

    def snapshot(self) -> "HealthSnapshot":
        """Everything the hot path reads, as plain data: what `--workers` processes receive."""
        return HealthSnapshot(
            serving={key: int(status) for key, status in self._serving.items()},
            rtt={key: e.rtt for key, e in self._endpoints.items() if e.rtt is not None},
            load={key: e.load for key, e in self._endpoints.items() if e.load is not None},
            forced=frozenset(key for key in self._users if self.forced_down(*key)),
        )

    # -- what to track ------------------------------------------------------------------------
    def track(self, users: Mapping[Key, tuple[str, ...]], checks: Mapping[str, Check]) -> None:
        """Reconcile with a catalog: every (check, address) records serve, with who uses it.
        Pairs present before and after keep their state; new checked pairs start per their
        check's cold start; pairs no record uses any more are forgotten."""
        now = self._clock()
        for key in list(self._endpoints):
            if key not in users:
                del self._endpoints[key]
        for key in users:
            check_name, address = key
            if check_name is None:
                continue
            endpoint = self._endpoints.get(key)
            if endpoint is None:
                self._endpoints[key] = EndpointHealth(checks[check_name], address, now)
            else:
                endpoint.check = checks[check_name]  # new timing applies from the next result
        self._users = dict(users)
        self._serving = {}
        for key in self._users:
            status = self._effective(key)
            if status is not Status.UP:
                self._serving[key] = status

    def tracked(self) -> Iterable[Key]:
        return self._users.keys()

    def checked(self) -> Iterable[Key]:
        return self._endpoints.keys()

    # -- writers ------------------------------------------------------------------------------
    def record(self, check: str, address: str, result: ProbeResult) -> None:
        """One probe result: rise/fall (gdnsd style) decides whether the probe state flips."""
        key = (check, address)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return  # a result for a pair a reload just removed
        endpoint.probes += 1
        endpoint.last_result = result
        endpoint.last_probe = self._clock()
        if result.load is not None:
            endpoint.load = result.load
        timing = endpoint.check.timing
        if result.ok:
            endpoint.successes += 1
            endpoint.failures = 0
            if result.rtt is not None:
                endpoint.rtt = result.rtt if endpoint.rtt is None else endpoint.rtt + RTT_SMOOTHING * (result.rtt - endpoint.rtt)
            if endpoint.probed is Status.DOWN and endpoint.successes >= timing.rise:
                self._flip(key, endpoint, Status.UP, f"after {_count(endpoint.successes, 'success')}: {result.reason}")
        else:
            endpoint.failures += 1
            endpoint.successes = 0
            if endpoint.probed is Status.UP and endpoint.failures >= timing.fall:
                self._flip(key, endpoint, Status.DOWN, f"after {_count(endpoint.failures, 'failure')}: {result.reason}")

    def record_crash(self, check: str, address: str, reason: str) -> None:
        """A probe task died: counted as a failed probe, so a check that keeps crashing
        withdraws its endpoint (and says why) instead of freezing it in its last state."""
        endpoint = self._endpoints.get((check, address))
        if endpoint is not None:
            endpoint.crashes += 1
        self.record(check, address, ProbeResult(False, f"probe crashed: {reason}"))

    def set_overrides(self, overrides: Overrides, source: str = "admin override") -> None:
        """Apply a new set of admin overrides; one log line per endpoint whose serving changes."""
        before = {key: self.status(*key) for key in self._users}
        old = self._overrides
        self._overrides = overrides
        self._override_source = source
        for key in self._users:
            now = self._effective(key)
            self._set_serving(key, now)
            if now is not before[key] or old.lookup(*key) is not overrides.lookup(*key):
                self._log(key, now, self._override_reason(key))

    # -- reports (for the log and the future /status API) --------------------------------------
    def report(self, check: str | None, address: str) -> EndpointReport | None:
        key = (check, address)
        if key not in self._users:
            return None
        endpoint = self._endpoints.get(key)
        override = self._overrides.lookup(check, address)
        status = self.status(check, address)
        if override is not None:
            reason = self._override_reason(key)
        elif endpoint is not None:
            reason = endpoint.reason
        else:
            reason = "not checked"
        result = endpoint.last_result if endpoint is not None else None
        return EndpointReport(
            check=check,
            address=address,
            users=self._users[key],
            status=status.name,
            probed=endpoint.probed.name if endpoint is not None else None,
            override=override.name.lower() if override is not None else None,
            reason=reason,
            last_result=result.reason if result is not None else None,
            last_ok=result.ok if result is not None else None,
            last_probe=endpoint.last_probe if endpoint is not None else None,
            last_change=endpoint.last_change if endpoint is not None else None,
            rtt=endpoint.rtt if endpoint is not None else None,
            load=endpoint.load if endpoint is not None else None,
            successes=endpoint.successes if endpoint is not None else 0,
            failures=endpoint.failures if endpoint is not None else 0,
            crashes=endpoint.crashes if endpoint is not None else 0,
        )

    def reports(self) -> list[EndpointReport]:
        return [r for key in self._users if (r := self.report(*key)) is not None]

    # -- internals ----------------------------------------------------------------------------
    def _effective(self, key: Key) -> Status:
        endpoint = self._endpoints.get(key)
        probed = endpoint.probed if endpoint is not None else Status.UP
        return effective(probed, self._overrides.lookup(*key))

    def _set_serving(self, key: Key, status: Status) -> None:
        if status is Status.UP:
            self._serving.pop(key, None)
        else:
            self._serving[key] = status

    def _flip(self, key: Key, endpoint: EndpointHealth, probed: Status, reason: str) -> None:
        endpoint.probed = probed
        endpoint.reason = reason
        endpoint.last_change = self._clock()
        if key not in self._users:
            return
        now = self._effective(key)
        self._set_serving(key, now)
        override = self._overrides.lookup(*key)
        if override is not None and now is not probed:
            reason = f"{reason}; probes say {probed.name} but {self._override_source} {override.name.lower()} keeps it {now.name}"
        self._log(key, now, reason)

    def _override_reason(self, key: Key) -> str:
        override = self._overrides.lookup(*key)
        endpoint = self._endpoints.get(key)
        probed = endpoint.probed if endpoint is not None else Status.UP
        if override is None:
            return f"{self._override_source} removed; probes say {probed.name}" if endpoint is not None else f"{self._override_source} removed"
        reason = f"by {self._override_source} {override.name.lower()}"
        if override is Status.DRAIN and probed is not Status.UP:
            reason += " (and probes say DOWN)"
        return reason

    def _log(self, key: Key, status: Status, reason: str) -> None:
        level = logging.WARNING if status is Status.DOWN else logging.INFO
        log.log(level, "%s %s %s %s", ", ".join(self._users.get(key, ())) or key[0], key[1], status.name, reason)


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'es' if word.endswith('s') and number != 1 else ('s' if number != 1 else '')}"
