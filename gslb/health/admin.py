"""Admin overrides: a YAML state file an operator (or, later, the admin API) writes by hand.

```yaml
# endpoint address -> up | down | drain, for every check; CHECK/ADDRESS for one check only
198.51.100.10: down          # withdrawn whatever the probes say
203.0.113.11: drain          # served only when nothing else in its region is up
web/203.0.113.20: up         # served even while the `web` probes fail
```

The file is the state: it survives restarts, and `StateFile.poll()` notices edits by its mtime,
size and inode (an atomic rename changes the inode). A missing file means no overrides; a file
with problems is reported in one log line and the last good overrides stay in force.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gslb.config.files import replace_file
from gslb.config.problems import Problem, Problems
from gslb.config.yamlload import load_yaml
from gslb.health.status import Status

log = logging.getLogger(__name__)

STATES: Mapping[str, Status] = MappingProxyType({"up": Status.UP, "down": Status.DOWN, "drain": Status.DRAIN})
HEADER = (
    "# gslb admin overrides: endpoint address -> up | down | drain (CHECK/ADDRESS for one check).\n"
    "# Watched by the server; edit by hand or through the admin API.\n"
)


@dataclass(frozen=True, slots=True)
class Overrides:
    by_address: Mapping[str, Status] = field(default_factory=lambda: MappingProxyType({}))
    by_check: Mapping[tuple[str, str], Status] = field(default_factory=lambda: MappingProxyType({}))

    def lookup(self, check: str | None, address: str) -> Status | None:
        """The override for one check of an endpoint: CHECK/ADDRESS first, then ADDRESS."""
        if check is not None and self.by_check:
            found = self.by_check.get((check, address))
            if found is not None:
                return found
        return self.by_address.get(address)

    def as_mapping(self) -> dict[str, str]:
        """The file's form: {"198.51.100.10": "down", "web/203.0.113.20": "up"}."""
        items = {address: status.name.lower() for address, status in self.by_address.items()}
        items.update({f"{check}/{address}": status.name.lower() for (check, address), status in self.by_check.items()})
        return items

    def __len__(self) -> int:
        return len(self.by_address) + len(self.by_check)


NO_OVERRIDES = Overrides()


def canonical_address(text: str) -> str:
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


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
    for key, value in document.items():
        path = str(key)
        try:
            check, address = parse_key(path)
        except ValueError as error:
            problems.add(path, f"{error}; keys are an endpoint address or CHECK/ADDRESS")
            continue
        state = STATES.get(str(value).lower()) if isinstance(value, str) else None
        if state is None:
            problems.add(path, f"must be up, down or drain, got {value!r}")
            continue
        if check is None:
            by_address[address] = state
        else:
            by_check[(check, address)] = state
    return Overrides(MappingProxyType(by_address), MappingProxyType(by_check))


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

    def set_override(self, address: str, state: str | Status | None, check: str | None = None) -> None:
        """Write one entry (None removes it), keeping the others; the next `poll()` applies it.
        The key is ADDRESS, or CHECK/ADDRESS when `check` is given."""
        address = canonical_address(address)
        if isinstance(state, Status):
            state = state.name.lower()
        if state is not None and state not in STATES:
            raise ValueError(f"state must be up, down or drain, got {state!r}")
        current, _problems = read_overrides(self.path)  # a bad file is replaced by the last good one
        entries = (current if current is not None else self.overrides).as_mapping()
        key = f"{check}/{address}" if check is not None else address
        if state is None:
            entries.pop(key, None)
        else:
            entries[key] = state
        write_overrides(self.path, entries)
