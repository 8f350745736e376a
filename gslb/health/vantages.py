"""Verdicts of many vantages, merged per endpoint by the check's quorum: a health source.

Each probe agent (`gslb probe --vantage NAME`, or `gslb serve --vantage NAME`) runs rise/fall
over its own probes and publishes its verdict per (check, address) with an expiry of about three
intervals, renewed at every probe (gslb/health/redis_link.py carries them). This source holds the
fresh ones and answers, per endpoint, what the quorum of the fresh vantages says:

- `majority` (the default): DOWN when more than half of the fresh vantages say DOWN;
- `all`: DOWN when every fresh vantage says DOWN;
- N: DOWN when at least N of them say DOWN.

Rise/fall stay per vantage; the quorum is over their states. A pair with no fresh verdict from
anyone follows its check's `cold_start`. Verdicts are soft state: nothing is agreed on, they
lapse unless renewed, and the merge is a count.

Only vantages that the configuration names are counted (the `vantages:` server setting, the
`vantages:` of any check, this node's own): anyone who can write to Redis could otherwise
withdraw endpoints under a made-up name. A check that lists its vantages counts only those.
Ignored verdicts are counted per vantage for /status and the metrics.

While the store is unreachable the verdicts are frozen (fail static: nothing lapses); after
`stale_after` the source goes `stale` and has no verdict at all, so the board falls back to the
next PROBES source, this node's own probes, which the link starts for the purpose.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from gslb.health.checks import Check, quorum_down
from gslb.health.sources import Changed, Key, Layer, Verdict, _unbound
from gslb.health.status import Status

log = logging.getLogger(__name__)

REASON_LIMIT = 200  # characters of a vantage's reason kept: it comes from outside
STATES = {"UP": Status.UP, "DOWN": Status.DOWN}


@dataclass(frozen=True, slots=True)
class VantageVerdict:
    """One vantage's word on one (check, address), as published."""

    status: Status  # UP or DOWN: its rise/fall state
    reason: str  # "after 2 failures: HTTP 503"
    since: float | None  # shared-clock time it took this state
    rtt: float | None
    load: float | None
    at: float  # shared-clock time of its last renewal
    ttl: float  # it lapses `ttl` seconds after `at` unless renewed

    @property
    def expires(self) -> float:
        return self.at + self.ttl

    def encode(self) -> list[Any]:
        """The wire form: a JSON list (compact; thousands go out per second)."""
        return [self.status.name, _round(self.since), _round(self.rtt, 6), self.load, self.reason,
                _round(self.at), self.ttl]

    @classmethod
    def decode(cls, raw: Any) -> "VantageVerdict | None":
        """None for anything malformed: it comes from outside and must not break the node."""
        if not isinstance(raw, list) or len(raw) != 7:
            return None
        state, since, rtt, load, reason, at, ttl = raw
        status = STATES.get(state) if isinstance(state, str) else None
        if status is None or not isinstance(reason, str):
            return None
        if not (_number(at) and _number(ttl) and ttl > 0):
            return None
        for value in (since, rtt, load):
            if value is not None and not _number(value):
                return None
        return cls(status, reason[:REASON_LIMIT], since, rtt, load, float(at), float(ttl))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def field_name(check: str, address: str) -> str:
    """A pair as a hash field and message key: "web/198.51.100.10"."""
    return f"{check}/{address}"


def parse_field(name: str) -> Key | None:
    check, slash, address = name.rpartition("/")
    return (check, address) if slash and check and address else None


@dataclass(frozen=True, slots=True)
class VantageReport:
    """One vantage's verdict as /status shows it."""

    vantage: str
    status: str
    reason: str
    age: float  # seconds since its last renewal
    fresh: bool
    rtt: float | None
    load: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "age": round(self.age, 3), "fresh": self.fresh,
                "rtt": self.rtt, "load": self.load}


class VantageVerdicts:
    """A PROBES-layer source: the quorum of the fresh verdicts of the known vantages."""

    layer = Layer.PROBES

    def __init__(self, known: Iterable[str] = (), *, own: str | None = None,
                 now: Callable[[], float] = time.time, name: str = "vantages") -> None:
        self.name = name
        self.own = own
        self.configured = frozenset(known)  # the server setting's vantages
        self.known = self.configured | ({own} if own else frozenset())
        self._now = now  # the shared clock (the store's), which verdict times are in
        self._checks: dict[str, Check] = {}
        self._pairs: set[Key] = set()
        self._verdicts: dict[Key, dict[str, VantageVerdict]] = {}
        self._decided: dict[Key, Verdict] = {}
        self._changed: Changed = _unbound
        self.frozen = False  # the store is unreachable: nothing lapses (fail static)
        self.stale = False  # unreachable for stale_after: no verdicts at all (local probes decide)
        self.ignored: dict[str, int] = {}  # verdicts from vantages nothing names, per vantage
        self.invalid = 0  # malformed verdicts dropped
        self.expired = 0  # verdicts that lapsed

    # -- HealthSource -----------------------------------------------------------------------------
    def bind(self, changed: Changed) -> None:
        self._changed = changed

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        if self.stale or check is None:
            return None
        return self._decided.get((check, address))

    def keys(self) -> Iterable[Key]:
        return self._decided.keys()

    def track(self, checked: Mapping[Key, Check]) -> None:
        """Reconcile with a catalog's checked pairs (the board calls it, then merges)."""
        self._checks = {key[0]: check for key, check in checked.items() if key[0] is not None}
        self._pairs = set(checked)
        self.known = self.configured | ({self.own} if self.own else frozenset()) | {
            vantage for check in self._checks.values() for vantage in check.vantages}
        for key in list(self._verdicts):
            if key not in self._pairs:
                del self._verdicts[key]
        for key in list(self._decided):
            if key not in self._pairs:
                del self._decided[key]
        for key in self._pairs:
            self._decide(key)

    # -- what the store says --------------------------------------------------------------------
    def accepts(self, vantage: str) -> bool:
        return vantage in self.known

    def apply(self, vantage: str, updates: Mapping[str, Any], removed: Iterable[str] = (), *,
              replace: bool = False) -> None:
        """A vantage's verdicts, by field ("check/address" -> wire form), as a message or a
        read of its hash brings them; `removed` fields it no longer probes. `replace`: `updates`
        is everything the store holds for the vantage (a resync): fields it lacks lapse on their own."""
        if not self.accepts(vantage):
            self.ignored[vantage] = self.ignored.get(vantage, 0) + len(updates)
            return
        touched: list[Key] = []
        now = self._now()
        for field, raw in updates.items():
            key = parse_field(field) if isinstance(field, str) else None
            if key is None or key not in self._pairs:
                continue  # a pair this node does not serve: not kept, so memory stays bounded
            verdict = VantageVerdict.decode(raw)
            if verdict is None:
                self.invalid += 1
                continue
            if not self.frozen and verdict.expires <= now:
                continue  # lapsed already (its agent is gone): a resync must not revive it
            check = self._checks.get(key[0])
            if check is not None and check.vantages and vantage not in check.vantages:
                self.ignored[vantage] = self.ignored.get(vantage, 0) + 1
                continue
            by_vantage = self._verdicts.setdefault(key, {})
            before = by_vantage.get(vantage)
            if before is not None and before.at > verdict.at:
                continue  # an older copy (a resync racing a message)
            by_vantage[vantage] = verdict
            if before is None or before.status is not verdict.status or before.rtt != verdict.rtt \
                    or before.load != verdict.load:
                touched.append(key)
        for field in removed:
            key = parse_field(field) if isinstance(field, str) else None
            if key is not None and self._verdicts.get(key, {}).pop(vantage, None) is not None:
                touched.append(key)
        self._redecide(touched)

    def sweep(self) -> int:
        """Drop the verdicts that lapsed (none while frozen); how many did."""
        if self.frozen:
            return 0
        now = self._now()
        touched = []
        for key, by_vantage in self._verdicts.items():
            lapsed = [vantage for vantage, verdict in by_vantage.items() if verdict.expires <= now]
            for vantage in lapsed:
                del by_vantage[vantage]
            if lapsed:
                touched.append(key)
                self.expired += len(lapsed)
        self._redecide(touched)
        return len(touched)

    def extend(self, grace: float | None = None) -> None:
        """After the store was unreachable: give every frozen verdict one more lifetime from
        now, for its agent to renew it, instead of letting the outage lapse them all at once."""
        now = self._now()
        for by_vantage in self._verdicts.values():
            for vantage, verdict in list(by_vantage.items()):
                lifetime = verdict.ttl if grace is None else grace
                if verdict.expires < now + lifetime:
                    by_vantage[vantage] = VantageVerdict(verdict.status, verdict.reason, verdict.since, verdict.rtt,
                                                         verdict.load, now, lifetime)

    def covered_since(self, moment: float) -> bool:
        """True when every served pair that some vantage can probe has a verdict renewed at or
        after `moment` (shared clock): the shared view is whole again after an outage."""
        for key in self._pairs:
            check = self._checks.get(key[0])
            allowed = set(check.vantages) if check is not None and check.vantages else self.known
            if not allowed:
                continue
            if not any(v.at >= moment for vantage, v in self._verdicts.get(key, {}).items() if vantage in allowed):
                return False
        return True

    def set_stale(self, stale: bool) -> None:
        if stale is not self.stale:
            self.stale = stale
            self._changed(self, None)

    # -- the quorum -----------------------------------------------------------------------------
    def _redecide(self, keys: list[Key]) -> None:
        changed = [key for key in keys if self._decide(key)]
        if changed and not self.stale:
            self._changed(self, changed)

    def _decide(self, key: Key) -> bool:
        """Work out a pair's quorum verdict again; True when it differs from the last one."""
        check = self._checks.get(key[0])  # type: ignore[arg-type]
        if check is None:
            return False
        fresh = sorted(self._verdicts.get(key, {}).items())
        before = self._decided.get(key)
        if not fresh:
            status = check.cold_start
            reason = f"no fresh verdict from any vantage: cold start {status.name.lower()}"
            rtt = load = None
        else:
            down = [(vantage, v) for vantage, v in fresh if v.status is Status.DOWN]
            up_rtts = [v.rtt for _, v in fresh if v.status is Status.UP and v.rtt is not None]
            status = Status.DOWN if quorum_down(check.quorum, len(down), len(fresh)) else Status.UP
            names = ", ".join(vantage for vantage, _ in down)
            if status is Status.DOWN:
                first = down[0]
                reason = (f"by vantages {names} ({len(down)} of {len(fresh)}, quorum {check.quorum}): "
                          f"{first[0]}: {first[1].reason}")
            elif down:
                reason = (f"{len(fresh) - len(down)} of {len(fresh)} vantages say UP; DOWN from {names} "
                          f"short of quorum {check.quorum}")
            else:
                reason = f"{len(fresh)} of {len(fresh)} vantages say UP"
            rtt = sum(up_rtts) / len(up_rtts) if up_rtts and status is Status.UP else None
            loads = [v for _, v in fresh if v.load is not None]
            load = max(loads, key=lambda v: v.at).load if loads else None
        since = before.since if before is not None and before.status is status else time.time()
        verdict = Verdict(status, reason, since, rtt, load)
        self._decided[key] = verdict
        return before is None or before.status is not status or before.rtt != rtt or before.load != load \
            or before.reason != reason

    # -- reports -------------------------------------------------------------------------------
    def vantage_reports(self, check: str | None, address: str) -> list[VantageReport]:
        now = self._now()
        found = self._verdicts.get((check, address), {})  # type: ignore[arg-type]
        return [VantageReport(vantage, v.status.name, v.reason, max(0.0, now - v.at), self.frozen or v.expires > now,
                              v.rtt, v.load)
                for vantage, v in sorted(found.items())]

    def detail(self, check: str | None, address: str) -> dict[str, Any] | None:
        """The part of /status this source adds to an endpoint: each vantage's verdict, its age,
        and the quorum's result."""
        if check is None or (check, address) not in self._pairs:
            return None
        decided = self._decided.get((check, address))
        checked = self._checks.get(check)
        return {
            "vantages": {r.vantage: r.as_dict() for r in self.vantage_reports(check, address)},
            "quorum": {
                "rule": checked.quorum if checked is not None else None,
                "status": decided.status.name if decided is not None else None,
                "reason": decided.reason if decided is not None else None,
                "in_force": not self.stale,
            },
        }

    def withdrawn_by(self, check: str | None, address: str) -> list[str]:
        """The vantages whose DOWN verdicts withdraw the endpoint now (empty when it serves)."""
        decided = self._decided.get((check, address)) if check is not None else None  # type: ignore[arg-type]
        if self.stale or decided is None or decided.status is not Status.DOWN:
            return []
        return [vantage for vantage, v in sorted(self._verdicts.get((check, address), {}).items())  # type: ignore[arg-type]
                if v.status is Status.DOWN]

    def pairs(self) -> Iterable[tuple[Key, Mapping[str, VantageVerdict]]]:
        return self._verdicts.items()
