"""`checks:` in zone YAML -> immutable Check values, with every problem reported by key path.

```yaml
checks:
  web:
    http: {path: /healthz, port: 443, tls: true, host: www.example.com, expect: [200, "200-399"],
           body: ok, load: {json: load}}
    interval: 5s
    timeout: 2s
    rise: 2
    fall: 3
    cold_start: up
    vantages: [eu, asia]      # probe agents that probe it (gslb probe --vantage); default: every one
    quorum: majority          # with shared verdicts: majority (default), all, or N vantages saying DOWN
  db:
    tcp: {port: 5432}
```

Each probe kind (`http`, `https`, `tcp`) is found by its YAML key in one registry,
`gslb/health/kinds.py`, which names how it parses (gslb/health/specs.py), the probe that runs it
(gslb/health/probes.py) and what it provides (RTT, load).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gslb.config.problems import Problems, join_path, shown
from gslb.health.kinds import CHECK_KINDS
from gslb.health.specs import (  # noqa: F401 - the check kinds' specs, re-exported for their users
    DEFAULT_EXPECT,
    DEFAULT_USER_AGENT,
    LOAD,
    RTT,
    HttpSpec,
    LoadSource,
    ProbeSpec,
    TcpSpec,
)
from gslb.health.status import Status

DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_RISE = 2
DEFAULT_FALL = 3
COLD_STARTS = {"up": Status.UP, "down": Status.DOWN}
COMMON_KEYS = ("interval", "timeout", "rise", "fall", "cold_start", "vantages", "quorum")
VANTAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
QUORUM_WORDS = ("majority", "all")
MAJORITY = "majority"
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class CheckTiming:
    """When to probe and how many results in a row change the state (gdnsd's rise/fall)."""

    interval: float = DEFAULT_INTERVAL  # seconds between the starts of two probes
    timeout: float = DEFAULT_TIMEOUT  # seconds one probe may take; shorter than the interval
    rise: int = DEFAULT_RISE  # consecutive successes for a down endpoint to come back
    fall: int = DEFAULT_FALL  # consecutive failures for an up endpoint to be withdrawn

    def __post_init__(self) -> None:
        if not 0 < self.timeout < self.interval:
            raise ValueError(f"timeout must be > 0 and shorter than the interval ({self.interval:g}s), got {self.timeout:g}s")
        if isinstance(self.rise, bool) or not isinstance(self.rise, int) or self.rise < 1:
            raise ValueError(f"rise must be an integer >= 1, got {shown(self.rise)}")
        if isinstance(self.fall, bool) or not isinstance(self.fall, int) or self.fall < 1:
            raise ValueError(f"fall must be an integer >= 1, got {shown(self.fall)}")

    @property
    def detection_time(self) -> float:
        """The longest a dead endpoint keeps serving: `fall` probes apart, the last timing out."""
        return self.interval * self.fall + self.timeout


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    spec: ProbeSpec
    timing: CheckTiming
    cold_start: Status = Status.UP  # the state before any probe result: UP (fail open) or DOWN
    vantages: tuple[str, ...] = ()  # the probe agents' vantages that probe it; empty: every one
    quorum: str | int = MAJORITY  # over the fresh vantages' verdicts: "majority", "all" or N saying DOWN

    def describe(self) -> str:
        t = self.timing
        where = f", from {', '.join(self.vantages)}" if self.vantages else ""
        quorum = f", quorum {self.quorum}" if self.quorum != MAJORITY else ""
        return (f"{self.name}: {self.spec.describe()} every {t.interval:g}s, timeout {t.timeout:g}s, "
                f"rise {t.rise}, fall {t.fall}, cold start {self.cold_start.name.lower()}{where}{quorum}")

    def probed_from(self, vantage: str) -> bool:
        """Whether a probe agent of this vantage probes the check."""
        return not self.vantages or vantage in self.vantages


def quorum_down(quorum: str | int, down: int, fresh: int) -> bool:
    """Whether `down` DOWN verdicts among `fresh` vantages withdraw an endpoint: `majority` -
    more than half of them; `all` - every one (and at least one); N - at least N of them (so
    fewer than N fresh vantages can never withdraw it)."""
    if fresh <= 0 or down <= 0:
        return False
    if quorum == MAJORITY:
        return down * 2 > fresh
    if quorum == "all":
        return down >= fresh
    return down >= int(quorum)


def parse_duration(value: Any) -> float:
    """5, 5s, 1.5s, 500ms, 1m -> seconds. A bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 5s, 500ms or 1m, got {shown(value)}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = DURATION.match(str(value))
        if not match:
            raise ValueError(f"must be a duration like 5s, 500ms or 1m, got {shown(value)}")
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not seconds > 0:
        raise ValueError(f"must be longer than zero, got {shown(value)}")
    return seconds


def parse_checks(raw: Any, problems: Problems, path: str = "checks") -> dict[str, Check]:
    """The valid checks of a zone's `checks:` mapping; every problem goes to `problems`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(path, "must map check names to checks, like {web: {http: {path: /healthz}}}")
        return {}
    checks: dict[str, Check] = {}
    for name, entry in raw.items():
        check = parse_check(str(name), entry, join_path(path, name), problems)
        if check is not None:
            checks[str(name)] = check
    return checks


def parse_check(name: str, entry: Any, path: str, problems: Problems) -> Check | None:
    if not isinstance(entry, dict):
        problems.add(path, "must be a mapping like {http: {path: /healthz}, interval: 5s}")
        return None
    before = len(problems)
    kinds = [key for key in entry if key in CHECK_KINDS]
    for key in entry:
        if key not in CHECK_KINDS and key not in COMMON_KEYS:
            problems.add(join_path(path, key), f"unknown key; expected one of {', '.join([*CHECK_KINDS, *COMMON_KEYS])}")
    spec = None
    if len(kinds) != 1:
        what = f"has {' and '.join(kinds)}" if kinds else "says nothing about how to probe"
        problems.add(path, f"{what}; give exactly one of {', '.join(CHECK_KINDS)}")
    else:
        spec = CHECK_KINDS[kinds[0]].parse(entry[kinds[0]], join_path(path, kinds[0]), problems)
    timing = _timing(entry, path, problems)
    cold_start = entry.get("cold_start", "up")
    if not isinstance(cold_start, str) or cold_start not in COLD_STARTS:  # a list or mapping is unhashable
        problems.add(join_path(path, "cold_start"),
                     f"must be up (serve until proven down) or down (withdraw until proven up), got {shown(cold_start)}")
    vantages = _vantages(entry.get("vantages"), join_path(path, "vantages"), problems) if "vantages" in entry else ()
    quorum = _quorum(entry.get("quorum", MAJORITY), vantages, join_path(path, "quorum"), problems)
    if len(problems) > before or spec is None or timing is None:
        return None
    return Check(name, spec, timing, COLD_STARTS[cold_start], vantages, quorum)


def _vantages(raw: Any, path: str, problems: Problems) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        problems.add(path, f"must list the vantages that probe the check, like [eu, asia], got {shown(raw)}")
        return ()
    names: list[str] = []
    for index, name in enumerate(raw):
        if not isinstance(name, str) or not VANTAGE_NAME.match(name):
            problems.add(join_path(path, index), f"must be a vantage name (letters, digits, '.', '_', '-'; "
                                                 f"up to 63), got {shown(name)}")
        elif name in names:
            problems.add(join_path(path, index), f"{shown(name)} is listed twice")
        else:
            names.append(name)
    return tuple(names)


def _quorum(raw: Any, vantages: tuple[str, ...], path: str, problems: Problems) -> str | int:
    if isinstance(raw, str) and raw in QUORUM_WORDS:
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        problems.add(path, f"must be majority (more than half of the fresh vantages say DOWN), all, or a number "
                           f"N >= 1 of vantages saying DOWN, got {shown(raw)}")
        return MAJORITY
    if vantages and raw > len(vantages):
        problems.add(path, f"{raw} DOWN verdicts can never come from the {len(vantages)} vantage(s) listed in "
                           f"vantages; lower it or list more vantages")
        return MAJORITY
    return raw


def _timing(entry: dict[str, Any], path: str, problems: Problems) -> CheckTiming | None:
    before = len(problems)
    values: dict[str, Any] = {}
    for key in ("interval", "timeout"):
        if key in entry:
            try:
                values[key] = parse_duration(entry[key])
            except ValueError as error:
                problems.add(join_path(path, key), str(error))
    for key in ("rise", "fall"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                problems.add(join_path(path, key), f"must be an integer from 1 to 1000, got {shown(value)}")
            else:
                values[key] = value
    bad_durations = any(key in entry and key not in values for key in ("interval", "timeout"))
    if not bad_durations:
        interval = values.get("interval", DEFAULT_INTERVAL)
        # The default timeout is 2s, or half the interval when that is shorter.
        values.setdefault("timeout", min(DEFAULT_TIMEOUT, interval / 2))
        if not values["timeout"] < interval:
            problems.add(join_path(path, "timeout"),
                         f"must be shorter than the interval ({interval:g}s), got {values['timeout']:g}s")
    if len(problems) > before:
        return None
    return CheckTiming(**values)


