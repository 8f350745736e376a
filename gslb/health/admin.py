"""Admin overrides: a YAML state file an operator (or, later, the admin API) writes by hand.

```yaml
# endpoint address -> up | down | drain, for every check; CHECK/ADDRESS for one check only
198.51.100.10: down          # withdrawn whatever the probes say
lb-eu.example.net.: down     # a CNAME pool's endpoint: its host name, with the trailing dot
203.0.113.11: drain          # served only when nothing else in its region is up
web/203.0.113.20: up         # served even while the `web` probes fail
```

A value may also be a maintenance window, or a list of them: the override holds from `from` to
`until` (ISO 8601 times with a zone; either may be left out), does nothing before, and lapses
after (gslb/health/sources.py AdminOverrides re-evaluates at each edge, with a timer):

```yaml
198.51.100.12: {state: down, from: "2026-02-01T02:00:00Z", until: "2026-02-01T04:00:00Z"}
198.51.100.13:
  - {state: drain, until: "2026-01-31T18:00:00Z"}
  - {state: down, from: "2026-02-07T02:00:00Z", until: "2026-02-07T03:00:00Z"}
```

The file is the state: it survives restarts, and `StateFile.poll()` notices edits by its mtime,
size and inode (an atomic rename changes the inode). A missing file means no overrides; a file
with problems is reported in one log line and the last good overrides stay in force.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gslb.config.files import replace_file
from gslb.config.problems import Problem, Problems
from gslb.config.yamlload import load_yaml
from gslb.health.status import Status
from gslb.names import NameError_, parse_absolute, to_text

log = logging.getLogger(__name__)

STATES: Mapping[str, Status] = MappingProxyType({"up": Status.UP, "down": Status.DOWN, "drain": Status.DRAIN})
HEADER = (
    "# gslb admin overrides: endpoint address -> up | down | drain (CHECK/ADDRESS for one check),\n"
    "# or a maintenance window {state: down, from: TIME, until: TIME} (ISO 8601 with a zone).\n"
    "# Watched by the server; edit by hand or through the admin API.\n"
)


PAST_KEPT = 3600.0  # seconds a lapsed window is still shown (/status "past"); the API's next write drops it


def parse_time(value: object) -> float:
    """An ISO 8601 time with a zone ("2026-02-01T02:00:00Z", "...+01:00"; YAML may have made it a
    datetime already) -> Unix time. ValueError saying what to write otherwise."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise ValueError(f"needs a time of day and a zone, like {value.isoformat()}T02:00:00Z, got {value.isoformat()}")
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"must be an ISO 8601 time like 2026-02-01T02:00:00Z, got {value!r}") from None
    else:
        raise ValueError(f"must be an ISO 8601 time like 2026-02-01T02:00:00Z, got {value!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"needs a time zone (Z for UTC, or like +01:00), got {str(value)!r}")
    return moment.timestamp()


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Window:
    """An override that holds from `start` to `until` (Unix times; None: open on that side)."""

    status: Status
    start: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.until is not None and not self.until > self.start:
            raise ValueError(f"until ({iso(self.until)}) must be after from ({iso(self.start)})")

    def phase(self, now: float) -> str:
        """scheduled (before `from`), active, or past (after `until`)."""
        if self.start is not None and now < self.start:
            return "scheduled"
        if self.until is not None and now >= self.until:
            return "past"
        return "active"

    def edges(self) -> tuple[float, ...]:
        return tuple(t for t in (self.start, self.until) if t is not None)

    def as_value(self) -> dict[str, str]:
        """The file's and the API's form: {"state": "down", "from": "...Z", "until": "...Z"}."""
        value = {"state": self.status.name.lower()}
        if self.start is not None:
            value["from"] = iso(self.start)
        if self.until is not None:
            value["until"] = iso(self.until)
        return value

    def describe(self) -> str:
        """"maintenance window 2026-02-01T02:00:00Z to 2026-02-01T04:00:00Z" for reasons and logs."""
        start = iso(self.start) if self.start is not None else "now"
        end = iso(self.until) if self.until is not None else "until removed"
        return f"maintenance window {start} to {end}" if self.until is not None else f"maintenance window from {start}"


WindowKey = tuple["str | None", str]  # (check or None, address)


@dataclass(frozen=True, slots=True)
class Overrides:
    by_address: Mapping[str, Status] = field(default_factory=lambda: MappingProxyType({}))
    by_check: Mapping[tuple[str, str], Status] = field(default_factory=lambda: MappingProxyType({}))
    # Timed overrides by (check or None, address); `at(now)` folds those in force into the two above.
    windows: Mapping[WindowKey, tuple[Window, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # In an `at(now)` result: the window each timed override in force comes from.
    active: Mapping[WindowKey, Window] = field(default_factory=lambda: MappingProxyType({}))

    def lookup(self, check: str | None, address: str) -> Status | None:
        """The override for one check of an endpoint: CHECK/ADDRESS first, then ADDRESS."""
        if check is not None and self.by_check:
            found = self.by_check.get((check, address))
            if found is not None:
                return found
        return self.by_address.get(address)

    def window(self, check: str | None, address: str) -> Window | None:
        """The window the override `lookup` gives comes from, if it is a timed one."""
        if not self.active:
            return None
        if check is not None and (check, address) in self.by_check:
            return self.active.get((check, address))
        return self.active.get((None, address))

    def at(self, now: float) -> Overrides:
        """The overrides in force at `now`: the permanent ones and the windows open then (of two
        open for one key, the one that started last)."""
        if not self.windows:
            return self
        by_address, by_check = dict(self.by_address), dict(self.by_check)
        active: dict[WindowKey, Window] = {}
        for key, windows in self.windows.items():
            open_now = [w for w in windows if w.phase(now) == "active"]
            if not open_now:
                continue
            chosen = max(open_now, key=lambda w: w.start if w.start is not None else float("-inf"))
            active[key] = chosen
            if key[0] is None:
                by_address[key[1]] = chosen.status
            else:
                by_check[(key[0], key[1])] = chosen.status
        return Overrides(MappingProxyType(by_address), MappingProxyType(by_check), self.windows,
                         MappingProxyType(active))

    def next_edge(self, now: float) -> float | None:
        """The first window edge after `now` (when the overrides in force change), None if none."""
        edges = [t for windows in self.windows.values() for w in windows for t in w.edges() if t > now]
        return min(edges) if edges else None

    def windows_of(self, check: str | None, address: str) -> list[tuple[WindowKey, Window]]:
        """The windows that apply to one check of an endpoint: its CHECK/ADDRESS ones and ADDRESS ones."""
        found: list[tuple[WindowKey, Window]] = []
        if check is not None:
            found += [((check, address), w) for w in self.windows.get((check, address), ())]
        found += [((None, address), w) for w in self.windows.get((None, address), ())]
        return found

    def as_mapping(self) -> dict[str, Any]:
        """The file's form: {"198.51.100.10": "down", "web/203.0.113.20": "up", "198.51.100.12":
        {"state": "down", "from": ..., "until": ...}} (a list for several windows)."""
        items: dict[str, Any] = {address: status.name.lower() for address, status in self.by_address.items()
                                 if (None, address) not in self.active}
        items.update({f"{check}/{address}": status.name.lower() for (check, address), status in self.by_check.items()
                      if (check, address) not in self.active})
        for (check, address), windows in self.windows.items():
            values = [w.as_value() for w in windows]
            items[f"{check}/{address}" if check is not None else address] = values[0] if len(values) == 1 else values
        return items

    def __len__(self) -> int:
        return len(self.by_address) + len(self.by_check) + sum(1 for key in self.windows if key not in self.active)


NO_OVERRIDES = Overrides()


def canonical_address(text: str) -> str:
    """An endpoint's health key as written by an operator -> its canonical form: an address
    compressed, or a CNAME pool's host name (fully qualified, ending in '.') in lower case."""
    stripped = text.strip()
    try:
        return ipaddress.ip_address(stripped).compressed
    except ValueError:
        pass
    if stripped.endswith(".") and stripped != ".":
        try:
            return to_text(parse_absolute(stripped))
        except NameError_:
            pass
    raise ValueError(f"{text!r} is not an IP address")


def parse_key(key: str) -> tuple[str | None, str]:
    """"198.51.100.10" -> (None, address); "web/198.51.100.10" -> ("web", address)."""
    check, slash, address = key.rpartition("/")
    if slash and not check:
        raise ValueError(f"{key!r}: the check name before '/' is empty")
    return (check if slash else None), canonical_address(address)


def parse_overrides(document: Any, problems: Problems) -> Overrides:
    """Every problem goes to `problems` keyed by the entry; the valid entries come back."""
    if document is None:
        return NO_OVERRIDES
    if not isinstance(document, dict):
        problems.add("", "must be a mapping of endpoint address (or CHECK/ADDRESS) to up, down or drain")
        return NO_OVERRIDES
    by_address: dict[str, Status] = {}
    by_check: dict[tuple[str, str], Status] = {}
    windows: dict[WindowKey, tuple[Window, ...]] = {}
    for key, value in document.items():
        path = str(key)
        try:
            check, address = parse_key(path)
        except ValueError as error:
            problems.add(path, f"{error}; keys are an endpoint address or CHECK/ADDRESS")
            continue
        if isinstance(value, (dict, list)):
            entries = value if isinstance(value, list) else [value]
            if not entries:
                problems.add(path, "an empty list; give up, down, drain or maintenance windows")
                continue
            parsed = []
            for index, entry in enumerate(entries):
                where = f"{path}[{index}]" if isinstance(value, list) else path
                try:
                    parsed.append(parse_window(entry))
                except ValueError as error:
                    problems.add(where, str(error))
            if len(parsed) != len(entries):
                continue
            if len(parsed) == 1 and parsed[0].start is None and parsed[0].until is None:
                state = parsed[0].status  # {state: down} alone is a plain override
            else:
                windows[(check, address)] = tuple(parsed)
                continue
        else:
            found = STATES.get(str(value).lower()) if isinstance(value, str) else None
            if found is None:
                problems.add(path, f"must be up, down or drain, got {value!r}")
                continue
            state = found
        if check is None:
            by_address[address] = state
        else:
            by_check[(check, address)] = state
    return Overrides(MappingProxyType(by_address), MappingProxyType(by_check), MappingProxyType(windows))


WINDOW_KEYS = ("state", "from", "until")


def parse_window(entry: object) -> Window:
    """{state: down, from: TIME, until: TIME} -> Window; ValueError naming the field."""
    if not isinstance(entry, dict):
        raise ValueError(f"must be up, down, drain or a window like {{state: down, from: ..., until: ...}}, got {entry!r}")
    unknown = [str(k) for k in entry if k not in WINDOW_KEYS]
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field; a window has state, from and until")
    value = entry.get("state")
    state = STATES.get(value.lower()) if isinstance(value, str) else None
    if state is None:
        raise ValueError(f"state: must be up, down or drain, got {value!r}")
    times: dict[str, float | None] = {}
    for name in ("from", "until"):
        raw = entry.get(name)
        if raw is None:
            times[name] = None
            continue
        try:
            times[name] = parse_time(raw)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    try:
        return Window(state, times["from"], times["until"])
    except ValueError as error:
        raise ValueError(f"until: {error}") from None


def read_overrides(path: Path) -> tuple[Overrides | None, list[Problem]]:
    """The file's overrides; NO_OVERRIDES when it does not exist; None with problems when bad.
    Only a regular file is read (load_yaml opens without blocking): a FIFO at the path is a
    problem reported at once, not a read that waits forever."""
    if not path.exists():
        return NO_OVERRIDES, []
    problems = Problems(str(path))
    document = load_yaml(path, problems)
    if problems:
        return None, list(problems)
    overrides = parse_overrides(document, problems)
    if problems:
        return None, list(problems)
    return overrides, []


def write_overrides(path: Path, overrides: Mapping[str, str]) -> None:
    """Replace the file atomically (a temporary file in the same folder, then rename), so the
    watcher, a restart or a crash never sees half a file; the file keeps the mode (and, where
    allowed, the owner) the operator gave it."""
    text = HEADER + (yaml.safe_dump(dict(sorted(overrides.items())), default_flow_style=False) if overrides else "{}\n")
    replace_file(Path(path), text.encode("utf-8"))


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class StateFile:
    """One admin state file: read it, notice changes, write single entries atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.overrides: Overrides = NO_OVERRIDES  # the last good content
        self._signature: tuple[int, int, int] | None = None
        self._seen = False

    def poll(self) -> Overrides | None:
        """New overrides when the file changed and reads well; None when nothing changed or the
        file is bad (that is logged once per change of the file)."""
        signature = _signature(self.path)
        if self._seen and signature == self._signature:
            return None
        first = not self._seen
        self._seen = True
        self._signature = signature
        overrides, problems = read_overrides(self.path)
        if overrides is None:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            log.error("admin state file %s%s; keeping the %d previous override(s)", problems[0], more, len(self.overrides))
            return None
        if signature is None and not first:
            log.warning("admin state file %s is gone; no admin overrides", self.path)
        elif signature is not None:
            log.info("admin state file %s: %d override(s)", self.path, len(overrides))
        self.overrides = overrides
        return overrides

    def set_override(self, address: str, state: str | Status | None, check: str | None = None, *,
                     start: float | None = None, until: float | None = None, now: float | None = None) -> None:
        """Write one entry (None removes it), keeping the others; the next `poll()` applies it.
        The key is ADDRESS, or CHECK/ADDRESS when `check` is given. With `start` and/or `until`
        (Unix times) it is a maintenance window, replacing what the key held; windows of any key
        that ended more than PAST_KEPT ago are dropped while the file is rewritten."""
        address = canonical_address(address)
        if isinstance(state, Status):
            state = state.name.lower()
        if state is not None and state not in STATES:
            raise ValueError(f"state must be up, down or drain, got {state!r}")
        current, _problems = read_overrides(self.path)  # a bad file is replaced by the last good one
        base = current if current is not None else self.overrides
        now = time.time() if now is None else now
        kept = {key: tuple(w for w in windows if w.until is None or w.until > now - PAST_KEPT)
                for key, windows in base.windows.items()}
        base = Overrides(base.by_address, base.by_check, MappingProxyType({k: v for k, v in kept.items() if v}))
        entries = base.as_mapping()
        key = f"{check}/{address}" if check is not None else address
        if state is None:
            entries.pop(key, None)
        elif start is not None or until is not None:
            entries[key] = Window(STATES[state], start, until).as_value()
        else:
            entries[key] = state
        write_overrides(self.path, entries)
