"""Admin overrides shared by every DNS node, each optionally with an expiry: a health source.

With `--redis`, an override set through any node's API (`POST /admin/endpoints/ADDRESS`,
`{"state": "down", "for": "30m"}`) is written to one hash in the store and announced; every node
reads the hash when told and once a second, so all apply it within a second. This class holds
what was read and answers for the board, in the OVERRIDES layer like the state file's overrides
(asked before them). An override with `for:` lapses by itself: each node drops it at its time,
logs one line, and the first to notice removes it from the store.

Entries are keyed like the state file's: `198.51.100.10` for every check of an address,
`web/198.51.100.10` for one check. Values (JSON): `{"state": "down", "until": 1767225600.0,
"by": "node-1", "at": 1767223800.0}` (times on the shared clock; `until` null for no expiry).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from gslb.health.admin import STATES, parse_key
from gslb.health.sources import Changed, Key, Layer, Verdict, _unbound
from gslb.health.status import Status

log = logging.getLogger(__name__)

LAPSE_SLACK = 1.0  # seconds: an override removed this close to its expiry lapsed (another node was first)


@dataclass(frozen=True, slots=True)
class SharedOverride:
    status: Status
    until: float | None  # shared-clock time it lapses; None: until removed
    by: str  # the node whose API set it
    at: float  # when it was set

    def encode(self) -> str:
        return json.dumps({"state": self.status.name.lower(), "until": self.until, "by": self.by, "at": self.at},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> "SharedOverride | None":
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        state = data.get("state")
        status = STATES.get(state) if isinstance(state, str) else None
        until, at, by = data.get("until"), data.get("at", 0.0), data.get("by", "")
        if status is None or not isinstance(by, str) or not _time(at) or (until is not None and not _time(until)):
            return None
        return cls(status, None if until is None else float(until), by[:100], float(at))


def _time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SharedOverrides:
    """The store's overrides, with their expiries; `replace()` with each read of the hash."""

    layer = Layer.OVERRIDES

    def __init__(self, now: Callable[[], float] = time.time, name: str = "shared admin override") -> None:
        self.name = name
        self._now = now  # the shared clock
        self._by_address: dict[str, SharedOverride] = {}
        self._by_check: dict[Key, SharedOverride] = {}
        self._raw: dict[str, str] = {}
        self._changed: Changed = _unbound
        self.invalid = 0

    def bind(self, changed: Changed) -> None:
        self._changed = changed

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        found = None
        if check is not None and self._by_check:
            found = self._by_check.get((check, address))
        if found is None:
            found = self._by_address.get(address)
        if found is None:
            return None
        state = found.status.name.lower()
        if found.until is None:
            return Verdict(found.status, f"by {self.name} {state} (set on {found.by})")
        # The board reports Unix times: move the shared clock's expiry onto this host's clock.
        until = found.until - self._now() + time.time()
        return Verdict(found.status, f"by {self.name} {state} (set on {found.by}, lapses "
                                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))})", expires=until)

    def keys(self) -> Iterable[Key]:
        return self._by_check.keys()

    def entries(self) -> dict[str, SharedOverride]:
        items: dict[str, SharedOverride] = dict(self._by_address)
        items.update({f"{check}/{address}": entry for (check, address), entry in self._by_check.items()})
        return items

    def replace(self, raw: Mapping[str, str]) -> list[str]:
        """Take the store's whole hash (key -> JSON). Malformed entries are skipped and counted;
        lapsed ones are not taken. Returns the keys already lapsed (for the caller to remove)."""
        if raw == self._raw:
            return []
        self.lapse()  # those due go first, with their log line
        self._raw = dict(raw)
        now = self._now()
        by_address: dict[str, SharedOverride] = {}
        by_check: dict[Key, SharedOverride] = {}
        lapsed = []
        for key, value in raw.items():
            entry = SharedOverride.decode(value)
            try:
                check, address = parse_key(key)
            except ValueError:
                entry = None
            if entry is None:
                self.invalid += 1
                continue
            if entry.until is not None and entry.until <= now:
                lapsed.append(key)
                continue
            if check is None:
                by_address[address] = entry
            else:
                by_check[(check, address)] = entry
        if by_address != self._by_address or by_check != self._by_check:
            # One gone from the store at about its time was removed by the node that saw it lapse first.
            before = self.entries()
            after = {**by_address, **{f"{c}/{a}": e for (c, a), e in by_check.items()}}
            for key, entry in before.items():
                if key not in after and entry.until is not None and entry.until <= now + LAPSE_SLACK:
                    log.info("shared admin override %s %s (set on %s) lapsed", key, entry.status.name.lower(), entry.by)
            self._by_address, self._by_check = by_address, by_check
            self._changed(self, None)
        return lapsed

    def lapse(self) -> list[tuple[str, SharedOverride]]:
        """Drop the overrides whose time came, one log line each; returns them."""
        now = self._now()
        gone: list[tuple[str, SharedOverride]] = []
        for key, entry in list(self._by_address.items()):
            if entry.until is not None and entry.until <= now:
                del self._by_address[key]
                gone.append((key, entry))
        for pair, entry in list(self._by_check.items()):
            if entry.until is not None and entry.until <= now:
                del self._by_check[pair]
                gone.append((f"{pair[0]}/{pair[1]}", entry))
        for key, entry in gone:
            log.info("shared admin override %s %s (set on %s) lapsed", key, entry.status.name.lower(), entry.by)
            self._raw.pop(key, None)
        if gone:
            self._changed(self, None)
        return gone

    def next_lapse(self) -> float | None:
        times = [e.until for e in (*self._by_address.values(), *self._by_check.values()) if e.until is not None]
        return min(times) if times else None

    def put(self, key: str, entry: SharedOverride | None) -> None:
        """Apply one entry at once (the node that set it answers its API call with it in force)."""
        raw = dict(self._raw)
        if entry is None:
            raw.pop(key, None)
        else:
            raw[key] = entry.encode()
        self.replace(raw)
