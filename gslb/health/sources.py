"""Health sources: where verdicts about endpoints come from; one board merges them.

A source holds a verdict per (check, address) and tells the board it is bound to which pairs
changed. The board (gslb/health/board.py) merges the sources by layer:

- `Layer.PROBES`: what the sites' health is. Sources are asked in the board's order and the first
  with a verdict wins, so a preferred source (say, a quorum of remote vantages) can fall back to
  another (this process's own probes) simply by having no verdict.
- `Layer.OVERRIDES`: what an operator decided, applied on top (`board.effective()`): `up`/`down`
  win over the probes, `drain` demotes a healthy endpoint to last resort.

The sources here: `LocalProbes` (rise/fall over this process's probe results, fed by
gslb/health/monitor.py), `AdminOverrides` (the admin state file), and `SnapshotSource` (a
`--workers` process's copy of the main process's merged view). A new source - verdicts of remote
probe agents per (check, address, vantage) with a quorum, an external status file, overrides set
through the API with an expiry - is one class with the five members of `HealthSource`, handed to
the board; neither the board's merge nor selection changes. A source whose verdicts lapse calls
its `changed` callback when they do (the board has no clock of its own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Iterable, Mapping, NamedTuple, Protocol

from gslb.health.admin import NO_OVERRIDES, Overrides
from gslb.health.checks import Check
from gslb.health.probes import ProbeResult
from gslb.health.status import Status

Key = tuple["str | None", str]  # (check name or None for unchecked records, address)
RTT_SMOOTHING = 0.3  # weight of the newest RTT sample in the moving average


class Layer(IntEnum):
    PROBES = 0  # what the sites' health is
    OVERRIDES = 1  # what an operator decided: on top of the probes


class Verdict(NamedTuple):
    """One source's word on one (check, address). (A tuple: the board asks for one per probe
    result and per pair at a reload, so it must be cheap to make.)"""

    status: Status
    reason: str  # in the words of the log and /status: "after 3 failures: HTTP 503"
    since: float | None = None  # Unix time it took this status
    rtt: float | None = None  # seconds, smoothed
    load: float | None = None  # what the site last reported
    expires: float | None = None  # Unix time the verdict lapses, for sources whose verdicts do


# What a source calls when verdicts change: (the source, the pairs; None when any pair may have).
Changed = Callable[["HealthSource", "Iterable[Key] | None"], None]


class HealthSource(Protocol):
    @property
    def name(self) -> str:
        """For the log and /status: "probes", "admin override (state.yaml)"."""
        ...

    @property
    def layer(self) -> Layer: ...

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        """This source's verdict on the pair; None when it has none (the next source decides)."""
        ...

    def keys(self) -> Iterable[Key]:
        """The pairs it has verdicts on, as far as it can list them (an override for an address
        covers every check and is not listed). A board with no catalog merges over these."""
        ...

    def bind(self, changed: Changed) -> None:
        """The board to tell about changes; called once, when the board is built."""
        ...


def _unbound(source: HealthSource, keys: Iterable[Key] | None) -> None:
    pass


# -- this process's probes ---------------------------------------------------------------------------

class EndpointHealth:
    """The probe state of one (check, address): mutable, owned by LocalProbes."""

    __slots__ = ("check", "address", "probed", "successes", "failures", "reason", "cold", "last_result",
                 "last_probe", "last_change", "rtt", "load", "crashes", "probes", "said")

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
        self.cold = True  # the reason is still the cold start's: no probe has confirmed or flipped it
        self.last_result: ProbeResult | None = None
        self.last_probe: float | None = None  # wall-clock time of the last result
        self.last_change = now  # wall-clock time of the last change of `probed`
        self.rtt: float | None = None  # smoothed, seconds; None while DOWN until a probe succeeds
        self.load: float | None = None  # last reported
        self.crashes = 0  # probe tasks that died and were restarted
        self.probes = 0
        self.said: Verdict | None = None  # the verdict of the fields above, made when first asked for

    def verdict(self) -> Verdict:
        said = self.said
        if said is None:
            said = self.said = Verdict(self.probed, self.reason, self.last_change, self.rtt, self.load)
        return said


class LocalProbes:
    """Rise/fall (gdnsd style) over the results of this process's probes, per (check, address)."""

    layer = Layer.PROBES

    def __init__(self, clock: Callable[[], float] = time.time, name: str = "probes") -> None:
        self.name = name
        self._clock = clock
        self._endpoints: dict[Key, EndpointHealth] = {}
        self._changed: Changed = _unbound
        self.observers: list[Callable[[Key], None]] = []  # told of every result (a publisher of verdicts)

    def bind(self, changed: Changed) -> None:
        self._changed = changed

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        endpoint = self._endpoints.get((check, address))
        return None if endpoint is None else endpoint.verdict()

    def keys(self) -> Iterable[Key]:
        return self._endpoints.keys()

    def endpoint(self, check: str | None, address: str) -> EndpointHealth | None:
        """The full probe state, for /status and the monitor."""
        return self._endpoints.get((check, address))

    def track(self, checked: Mapping[Key, Check]) -> None:
        """Reconcile with a catalog's checked pairs: pairs present before and after keep their
        state (the new check's timing applies from the next result), new pairs start per their
        check's cold start, the rest are forgotten. Tells nobody: the board calls it and merges."""
        now = self._clock()
        for key in list(self._endpoints):
            if key not in checked:
                del self._endpoints[key]
        for key, check in checked.items():
            endpoint = self._endpoints.get(key)
            if endpoint is None:
                self._endpoints[key] = EndpointHealth(check, key[1], now)
            else:
                endpoint.check = check

    def record(self, check: str, address: str, result: ProbeResult) -> None:
        """One probe result: rise/fall decides whether the probe state flips."""
        key = (check, address)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return  # a result for a pair a reload just removed
        endpoint.probes += 1
        endpoint.said = None
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
                self._flip(endpoint, Status.UP, f"after {_count(endpoint.successes, 'success')}: {result.reason}")
            elif endpoint.cold and endpoint.probed is Status.UP:
                endpoint.cold = False  # the first probe confirms the cold start's UP: say so
                endpoint.reason = f"after {_count(endpoint.successes, 'success')}: {result.reason}"
        else:
            endpoint.failures += 1
            endpoint.successes = 0
            if endpoint.probed is Status.UP and endpoint.failures >= timing.fall:
                self._flip(endpoint, Status.DOWN, f"after {_count(endpoint.failures, 'failure')}: {result.reason}")
            elif endpoint.cold and endpoint.probed is Status.DOWN:
                endpoint.cold = False
                endpoint.reason = f"after {_count(endpoint.failures, 'failure')}: {result.reason}"
        self._changed(self, (key,))
        for observer in self.observers:
            observer(key)

    def seed(self, check: str, address: str, status: Status, reason: str) -> None:
        """Start a pair that has not been probed here from a state known elsewhere (the shared
        verdicts when this node takes over probing), instead of its check's cold start: taking
        over must not flap an endpoint. Tells nobody."""
        endpoint = self._endpoints.get((check, address))
        if endpoint is None or status not in (Status.UP, Status.DOWN):
            return
        endpoint.probed, endpoint.reason, endpoint.cold = status, reason, True
        endpoint.successes = endpoint.failures = 0
        endpoint.last_change = self._clock()
        endpoint.said = None

    def record_crash(self, check: str, address: str, reason: str) -> None:
        """A probe task died: counted as a failed probe, so a check that keeps crashing
        withdraws its endpoint (and says why) instead of freezing it in its last state."""
        endpoint = self._endpoints.get((check, address))
        if endpoint is not None:
            endpoint.crashes += 1
        self.record(check, address, ProbeResult(False, f"probe crashed: {reason}"))

    def _flip(self, endpoint: EndpointHealth, probed: Status, reason: str) -> None:
        endpoint.probed = probed
        endpoint.reason = reason
        endpoint.cold = False
        endpoint.last_change = self._clock()
        if probed is Status.DOWN:
            endpoint.rtt = None  # a dead site has no round-trip time; the smoothing restarts when it answers


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'es' if word.endswith('s') and number != 1 else ('s' if number != 1 else '')}"


# -- admin overrides ---------------------------------------------------------------------------------

class AdminOverrides:
    """The admin state file's overrides (gslb/health/admin.py reads it; the monitor polls it)."""

    layer = Layer.OVERRIDES

    def __init__(self, name: str = "admin override") -> None:
        self.name = name
        self.overrides: Overrides = NO_OVERRIDES
        self._changed: Changed = _unbound

    def bind(self, changed: Changed) -> None:
        self._changed = changed

    def set(self, overrides: Overrides, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.overrides = overrides
        self._changed(self, None)  # an address override touches every check of it

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        status = self.overrides.lookup(check, address)
        return None if status is None else Verdict(status, f"by {self.name} {status.name.lower()}")

    def keys(self) -> Iterable[Key]:
        return self.overrides.by_check.keys()


# -- a worker's copy of the main process's view --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Everything the hot path reads, as plain data: what `--workers` processes receive."""

    serving: dict[Key, int] = field(default_factory=dict)  # Status values, only of pairs that are not UP
    rtt: dict[Key, float] = field(default_factory=dict)
    load: dict[Key, float] = field(default_factory=dict)
    forced: frozenset[Key] = frozenset()  # pairs an operator set down


class SnapshotSource:
    """The main process's merged view, as a worker receives it: its statuses as probe verdicts,
    with `forced` (a companion OVERRIDES source) saying which of them an operator set down."""

    layer = Layer.PROBES

    def __init__(self, name: str = "main process") -> None:
        self.name = name
        self.snapshot = HealthSnapshot()
        self.forced = _ForcedDown(self)
        self._changed: Changed = _unbound

    def bind(self, changed: Changed) -> None:
        self._changed = changed

    def apply(self, snapshot: HealthSnapshot) -> None:
        old, self.snapshot = self.snapshot, snapshot
        changed: set[Key] = set()
        for new_part, old_part in ((snapshot.serving, old.serving), (snapshot.rtt, old.rtt), (snapshot.load, old.load)):
            changed.update(key for key in new_part.keys() | old_part.keys()
                           if new_part.get(key) != old_part.get(key))
        changed.update(snapshot.forced ^ old.forced)
        if changed:
            self._changed(self, changed)

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        key = (check, address)
        snapshot = self.snapshot
        serving = snapshot.serving.get(key)
        rtt, load = snapshot.rtt.get(key), snapshot.load.get(key)
        if serving is None and rtt is None and load is None:
            return None
        return Verdict(Status(serving or 0), f"from the {self.name}", rtt=rtt, load=load)

    def keys(self) -> Iterable[Key]:
        snapshot = self.snapshot
        return snapshot.serving.keys() | snapshot.rtt.keys() | snapshot.load.keys() | snapshot.forced


class _ForcedDown:
    layer = Layer.OVERRIDES

    def __init__(self, snapshots: SnapshotSource) -> None:
        self._snapshots = snapshots
        self.name = f"admin override (in the {snapshots.name})"

    def bind(self, changed: Changed) -> None:
        pass  # SnapshotSource reports every change, the forced pairs included

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        if (check, address) in self._snapshots.snapshot.forced:
            return Verdict(Status.DOWN, f"by {self.name} down")
        return None

    def keys(self) -> Iterable[Key]:
        return self._snapshots.snapshot.forced
