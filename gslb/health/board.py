"""The health board: the sources' verdicts per (check, address), merged into what DNS serves.

Sources (gslb/health/sources.py) - this process's probes, the admin overrides, a worker's
snapshot, and whatever comes next - tell the board which pairs changed; the board merges them
(the first PROBES-layer verdict, then the first OVERRIDES-layer verdict on top, `effective()`)
into plain dicts. The DNS hot path reads `status()`, a single dict lookup that never awaits
(pairs the board does not track, and every pair that serves normally, are simply absent: UP).

Each change of what an endpoint serves is one log line, in the words `/status` will show:

    www.gslb.example.com. us-east 198.51.100.10 DOWN after 3 failures: HTTP 503
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gslb.health.admin import Overrides
from gslb.health.checks import Check
from gslb.health.probes import ProbeResult
from gslb.health.sources import (
    AdminOverrides,
    HealthSnapshot,
    HealthSource,
    Key,
    Layer,
    LocalProbes,
    SnapshotSource,
    Verdict,
)
from gslb.health.status import Status

__all__ = ["EndpointReport", "HealthBoard", "HealthSnapshot", "Key", "ReplicaBoard", "effective"]

log = logging.getLogger(__name__)

_UP = Status.UP


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
    rtt: float | None  # None while DOWN: a dead site has no round-trip time
    load: float | None
    successes: int
    failures: int
    crashes: int
    override_until: str | None = None  # when an override with an expiry lapses (ISO 8601 UTC)
    vantages: dict[str, Any] | None = None  # with shared verdicts: each vantage's verdict and its age
    quorum: dict[str, Any] | None = None  # ... and the quorum's rule and result
    source: str | None = None  # the source whose verdict decided: the override's, else the probe layer's
    probed_by: str | None = None  # the PROBES-layer source that gave `probed`: "probes", "external file (x.txt)"
    windows: list[dict[str, Any]] | None = None  # maintenance windows of the endpoint: scheduled, active, past

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


# A pair's merge, as last made: (what the probes say, the override or None, what DNS serves).
_Merged = tuple[Status, "Status | None", Status]
_PROBED, _OVERRIDE, _SERVING = 0, 1, 2


class HealthBoard:
    """Implements `HealthView` for the Selector over any set of health sources."""

    def __init__(self, clock: Callable[[], float] = time.time, sources: Sequence[HealthSource] | None = None, *,
                 log_changes: bool = True) -> None:
        """`sources` in the order each layer asks them; by default this process's probes and the
        admin overrides, which `record()` and `set_overrides()` write."""
        if sources is None:
            sources = (LocalProbes(clock), AdminOverrides())
        self.sources = tuple(sources)
        self.local = next((s for s in self.sources if isinstance(s, LocalProbes)), None)
        self.admin = next((s for s in self.sources if isinstance(s, AdminOverrides)), None)
        self._probe_sources = tuple(s for s in self.sources if s.layer is Layer.PROBES)
        self._override_sources = tuple(s for s in self.sources if s.layer is Layer.OVERRIDES)
        self._log_changes = log_changes
        self._users: dict[Key, tuple[str, ...]] | None = None  # every pair a record serves; None: no catalog
        self._by_address: dict[str, list[Key]] | None = None  # the same pairs by address
        self._merged: dict[Key, _Merged] = {}
        self._serving: dict[Key, Status] = {}  # pairs not UP; the hot path's only lookup
        self._rtt: dict[Key, float] = {}
        self._load: dict[Key, float] = {}
        self._version = 0
        # Told of every change of what DNS serves for a pair already tracked: (pair, before, after).
        # Called inside the merge: a watcher only queues (gslb/notify.py), it never awaits.
        self.watchers: list[Callable[[Key, Status, Status], None]] = []
        for source in self.sources:
            source.bind(self._changed)

    # -- the hot path (HealthView) ------------------------------------------------------------
    def status(self, check: str | None, address: str) -> Status:
        return self._serving.get((check, address), _UP)

    def rtt(self, check: str | None, address: str) -> float | None:
        return self._rtt.get((check, address))

    def load(self, check: str | None, address: str) -> float | None:
        return self._load.get((check, address))

    def forced_down(self, check: str | None, address: str) -> bool:
        for source in self._override_sources:
            verdict = source.verdict(check, address)
            if verdict is not None:
                return verdict.status is Status.DOWN
        return False

    def everything_up(self) -> bool:
        """True when no endpoint is down or drained: selection may skip its health filter."""
        return not self._serving

    @property
    def version(self) -> int:
        return self._version

    def snapshot(self) -> HealthSnapshot:
        """Everything the hot path reads, as plain data: what `--workers` processes receive."""
        return HealthSnapshot(
            serving={key: int(status) for key, status in self._serving.items()},
            rtt=dict(self._rtt),
            load=dict(self._load),
            forced=frozenset(key for key, merged in self._merged.items() if merged[_OVERRIDE] is Status.DOWN),
        )

    # -- what to track ------------------------------------------------------------------------
    def track(self, users: Mapping[Key, tuple[str, ...]], checks: Mapping[str, Check]) -> None:
        """Reconcile with a catalog: every (check, address) records serve, with who uses it.
        Pairs present before and after keep their state; new checked pairs start per their
        check's cold start; pairs no record uses any more are forgotten."""
        checked = {key: checks[key[0]] for key in users if key[0] is not None}
        for source in self.sources:
            track = getattr(source, "track", None)  # sources that hold state per checked pair
            if track is not None:
                track(checked)
        self._users = dict(users)
        self._by_address = {}
        for key in self._users:
            self._by_address.setdefault(key[1], []).append(key)
        for key in list(self._merged):
            if key not in self._users:
                del self._merged[key]
                self._serving.pop(key, None)
                self._rtt.pop(key, None)
                self._load.pop(key, None)
        self._merge(self._users, None)
        self._version += 1

    def tracked(self) -> Iterable[Key]:
        if self._users is not None:
            return self._users.keys()
        return self._merged.keys()

    def checked(self) -> Iterable[Key]:
        return self.local.keys() if self.local is not None else ()

    # -- writers (this process's probes and admin overrides) -----------------------------------
    def record(self, check: str, address: str, result: ProbeResult) -> None:
        """One probe result, for this process's probes (rise/fall decides)."""
        if self.local is not None:
            self.local.record(check, address, result)

    def record_crash(self, check: str, address: str, reason: str) -> None:
        if self.local is not None:
            self.local.record_crash(check, address, reason)

    def set_overrides(self, overrides: Overrides, source: str = "admin override") -> None:
        """Apply a new set of admin overrides; one log line per endpoint whose serving changes."""
        if self.admin is not None:
            self.admin.set(overrides, source)

    # -- reports (for the log and /status) ------------------------------------------------------
    def report(self, check: str | None, address: str) -> EndpointReport | None:
        key = (check, address)
        if self._users is None or key not in self._users:
            return None
        probe, override, origin = self._verdicts(key)
        prober = self._prober(key) if probe is not None else None
        probed = probe.status if probe is not None else _UP
        if override is not None:
            reason = _override_reason(probed, override, "", probe is not None)
        elif probe is not None:
            reason = probe.reason
        else:
            reason = "not checked"
        endpoint = self.local.endpoint(check, address) if self.local is not None else None
        result = endpoint.last_result if endpoint is not None else None
        detail: dict[str, Any] = {}
        for source in self._probe_sources:
            described = getattr(source, "detail", None)  # sources that say more (each vantage's verdict)
            if described is not None:
                detail.update(described(check, address) or {})
        windows: list[dict[str, Any]] = []
        for source in self._override_sources:
            scheduled = getattr(source, "windows", None)  # sources with maintenance windows
            if scheduled is not None:
                windows.extend(scheduled(check, address))
        until = override.expires if override is not None else None
        return EndpointReport(
            check=check,
            address=address,
            users=self._users[key],
            status=self.status(check, address).name,
            probed=probe.status.name if probe is not None else None,
            override=override.status.name.lower() if override is not None else None,
            reason=reason,
            last_result=result.reason if result is not None else None,
            last_ok=result.ok if result is not None else None,
            last_probe=endpoint.last_probe if endpoint is not None else None,
            last_change=probe.since if probe is not None else None,
            rtt=probe.rtt if probe is not None else None,
            load=probe.load if probe is not None else None,
            successes=endpoint.successes if endpoint is not None else 0,
            failures=endpoint.failures if endpoint is not None else 0,
            crashes=endpoint.crashes if endpoint is not None else 0,
            override_until=None if until is None else datetime.fromtimestamp(until, UTC).isoformat(
                timespec="seconds").replace("+00:00", "Z"),
            vantages=detail.get("vantages"),
            quorum=detail.get("quorum"),
            source=origin.name if origin is not None else (prober.name if prober is not None else None),
            probed_by=prober.name if prober is not None else None,
            windows=windows or None,
        )

    def reports(self) -> list[EndpointReport]:
        return [r for key in self.tracked() if (r := self.report(*key)) is not None]

    # -- the merge ----------------------------------------------------------------------------
    def _changed(self, source: HealthSource, keys: Iterable[Key] | None) -> None:
        """A source's verdicts changed (for `keys`, or for any pair when None). A key without a
        check, (None, ADDRESS), stands for every pair of the address (a verdict for an address
        covers all its checks): only those are merged again, not the whole catalog."""
        if keys is None:
            self._merge(list(self._universe()), source)
            return
        by_address = self._by_address
        expanded: list[Key] = []
        for key in keys:
            if key[0] is None and by_address is not None:
                expanded.extend(by_address.get(key[1], ()))
            else:
                expanded.append(key)
        self._merge(expanded, source)

    def _universe(self) -> Iterable[Key]:
        if self._users is not None:
            return self._users.keys()
        found: set[Key] = set(self._merged)
        for source in self.sources:
            found.update(source.keys())
        return found

    def _verdicts(self, key: Key) -> tuple[Verdict | None, Verdict | None, HealthSource | None]:
        """(the probe verdict, the override verdict and its source): the first of each layer."""
        probe = override = None
        origin = None
        for source in self._probe_sources:
            probe = source.verdict(*key)
            if probe is not None:
                break
        for source in self._override_sources:
            override = source.verdict(*key)
            if override is not None:
                origin = source
                break
        return probe, override, origin

    def _prober(self, key: Key) -> HealthSource | None:
        """The PROBES-layer source whose verdict is in force for the pair."""
        for source in self._probe_sources:
            if source.verdict(*key) is not None:
                return source
        return None

    def _merge(self, keys: Iterable[Key], cause: HealthSource | None) -> None:
        """Merge pairs again; log those `cause` (a source; None for a reconcile, which is silent)
        changed. Runs per probe result and for every pair at a reload: kept lean."""
        users = self._users
        merged, serving_now, rtts, loads = self._merged, self._serving, self._rtt, self._load
        probe_sources, override_sources = self._probe_sources, self._override_sources
        for key in keys:
            if users is not None and key not in users:
                continue
            check, address = key
            probe = override = None
            origin = None
            for source in probe_sources:
                probe = source.verdict(check, address)
                if probe is not None:
                    break
            for source in override_sources:
                override = source.verdict(check, address)
                if override is not None:
                    origin = source
                    break
            if probe is None:
                probed, rtt, load = _UP, None, None
            else:
                probed, rtt, load = probe.status, probe.rtt, probe.load
            if override is None:
                override_status, serving = None, probed
            else:
                override_status = override.status
                serving = effective(probed, override_status)
            before = merged.get(key)
            merged[key] = (probed, override_status, serving)
            if rtt is not None:
                rtts[key] = rtt
            elif key in rtts:
                del rtts[key]
            if load is not None:
                loads[key] = load
            elif key in loads:
                del loads[key]
            if serving is not _UP:
                serving_now[key] = serving
            elif key in serving_now:
                del serving_now[key]
            if before is None:
                self._version += 1
                continue
            if (override_status is Status.DOWN) is not (before[_OVERRIDE] is Status.DOWN) and serving is before[_SERVING]:
                # `forced_down` changed under an unchanged status (set `down` on a dead endpoint):
                # what fail-open serves depends on it, so readers that cache (gslb/plan.py) must see it.
                self._version += 1
            if serving is not before[_SERVING]:
                self._version += 1
                self.serving_changed(key, serving)
                for watcher in self.watchers:
                    try:
                        watcher(key, before[_SERVING], serving)  # type: ignore[arg-type]
                    except Exception:  # noqa: BLE001 - a watcher must never stop the merge
                        log.exception("health change watcher %r failed", watcher)
            if cause is not None and self._log_changes and (
                    probed is not before[_PROBED] or override_status is not before[_OVERRIDE] or serving is not before[_SERVING]):
                self._log_change(key, cause, before, probe, override, origin)

    def _log_change(self, key: Key, cause: HealthSource, before: _Merged, probe: Verdict | None,
                    override: Verdict | None, origin: HealthSource | None) -> None:
        probed, override_status, serving = self._merged[key]
        if cause.layer is Layer.PROBES:
            if probed is not before[_PROBED]:
                reason = probe.reason if probe is not None else f"{cause.name}: no verdict"
                if override_status is not None and serving is not probed:
                    by = origin.name if origin is not None else "override"
                    reason = f"{reason}; probes say {probed.name} but {by} {override_status.name.lower()} keeps it {serving.name}"
                self._log(key, serving, reason)
        elif serving is not before[_SERVING] or override_status is not before[_OVERRIDE]:
            self._log(key, serving, _override_reason(probed, override, cause.name, probe is not None))

    def serving_changed(self, key: Key, status: Status) -> None:
        """Called once per change of what DNS serves for a pair the board already tracked (not
        for new pairs): a hook for counters (gslb/health_stats.py)."""

    def _log(self, key: Key, status: Status, reason: str) -> None:
        users = self._users.get(key, ()) if self._users is not None else ()
        level = logging.WARNING if status is Status.DOWN else logging.INFO
        log.log(level, "%s %s %s %s", ", ".join(users) or key[0], key[1], status.name, reason)


def _override_reason(probed: Status, override: Verdict | None, removed_by: str, checked: bool) -> str:
    if override is None:
        return f"{removed_by} removed; probes say {probed.name}" if checked else f"{removed_by} removed"
    reason = override.reason
    if override.status is Status.DRAIN and probed is not Status.UP:
        reason += " (and probes say DOWN)"
    return reason


class ReplicaBoard(HealthBoard):
    """A read-only board fed with snapshots from the process that runs the probes (`--workers`)."""

    def __init__(self) -> None:
        self.held = SnapshotSource()
        super().__init__(sources=(self.held, self.held.forced), log_changes=False)

    def apply(self, snapshot: HealthSnapshot) -> None:
        self.held.apply(snapshot)
