"""Health from outside: verdicts another system gives, from a watched file or the admin API.

A monitoring system that already knows which sites are healthy (Nagios, Prometheus' alerts, a
load balancer's own checks) tells gslb in one of two ways:

- a file, gdnsd's extfile style, named by `external_health: {file: PATH}` in the server config:

      # written by the monitoring system; re-read when it changes
      198.51.100.10: down
      web/203.0.113.11: drain      # CHECK/ADDRESS: that check of the address only
      2001:db8::10 => up           # gdnsd's `=>` works as well

  The file is polled once a `poll_interval` (its mtime, size and inode, off the event loop) and
  read once it stopped changing. A bad line is one log line `FILE:LINE: what is wrong` and the
  other lines still apply; a missing or unreadable file keeps the last good verdicts (one log
  line when that starts, one when it ends). Lines for addresses no record serves are ignored.

- `PUT /admin/health/ADDRESS` with `{"state": "down", "check": "web", "for": "2m"}` (bearer
  token). With `for`, the verdict lapses by itself at its time - a monitoring system that stops
  renewing it (because it died) hands the endpoint back to gslb's own probes. Held in memory:
  a restart forgets them, and the monitoring system sends them again.

Both are health sources in the PROBES layer, asked before this node's probes and the shared
vantages (gslb/health/sources.py): external monitoring says what the sites' health *is*, so it
takes the place of probing for the endpoints it names, and gslb's probes still decide for every
endpoint it says nothing about. Admin overrides stay on top of both: an operator's `down` for
maintenance must hold whatever the monitoring system believes. The API's verdicts are asked
before the file's: a call is the newer, more specific word.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gslb.config.files import read_regular_file
from gslb.config.problems import Problem, clip
from gslb.health.admin import STATES, parse_key
from gslb.health.edges import EdgeTimer
from gslb.health.sources import Changed, Key, Layer, Verdict, _unbound
from gslb.health.status import Status
from gslb.settings import ExternalHealthSettings

log = logging.getLogger(__name__)

MAX_LOGGED = 10  # bad lines logged one by one per reading of the file; the rest are counted
SETTLE_TIME = 0.2  # a changed file must look the same this long apart before it is read ...
SETTLE_TRIES = 10  # ... or this many times over
MAX_LINE = 1000  # characters of one line; longer is a bad line (a verdict line is ~50)

Signature = tuple[int, int, int, int] | None  # (mtime, ctime: a chmod, size, inode); None: missing


@dataclass(frozen=True, slots=True)
class ExternalEntry:
    status: Status
    where: str  # "line 3" of the file, or "from 127.0.0.1" for the API
    since: float  # Unix time it took this status
    until: float | None = None  # Unix time it lapses (API `for`); None: until replaced


def iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


class ExternalVerdicts:
    """Verdicts per ADDRESS or (CHECK, ADDRESS) from outside, each optionally lapsing; a health
    source in the PROBES layer. `replace()` takes a whole new set (the file), `put()` one entry
    (the API); an edge timer drops lapsed ones at their time and tells the board."""

    layer = Layer.PROBES

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._clock = clock
        self._entries: dict[Key, ExternalEntry] = {}
        self._changed: Changed = _unbound
        self._timer = EdgeTimer(self._at_edge, clock, name)
        self.lapsed = 0

    def bind(self, changed: Changed) -> None:
        self._changed = changed

    # -- the board's side ---------------------------------------------------------------------------
    def verdict(self, check: str | None, address: str) -> Verdict | None:
        entries = self._entries
        if not entries:
            return None
        found = entries.get((check, address)) if check is not None else None
        if found is None:
            found = entries.get((None, address))
            if found is None:
                return None
        state = found.status.name.lower()
        reason = f"by {self.name}: {state} ({found.where}"
        reason += f", lapses {iso(found.until)})" if found.until is not None else ")"
        return Verdict(found.status, reason, found.since, expires=found.until)

    def keys(self) -> Iterable[Key]:
        return [key for key in self._entries if key[0] is not None]

    def entries(self) -> Mapping[Key, ExternalEntry]:
        return self._entries

    # -- writers ---------------------------------------------------------------------------------------
    def replace(self, statuses: Mapping[Key, tuple[Status, str]]) -> bool:
        """Take a whole new set of verdicts (the file's); entries whose status stays keep their
        `since`. True when anything changed (the board was told)."""
        now = self._clock()
        old = self._entries
        new: dict[Key, ExternalEntry] = {}
        for key, (status, where) in statuses.items():
            before = old.get(key)
            since = before.since if before is not None and before.status is status else now
            new[key] = ExternalEntry(status, where, since)
        changed = [key for key in new.keys() | old.keys()
                   if (new[key].status if key in new else None) != (old[key].status if key in old else None)]
        self._entries = new  # unchanged ones too: their lines may have moved, and the reasons say which
        if not changed:
            return False
        self._changed(self, changed)  # (None, ADDRESS): the board merges every check of the address
        self._reschedule()
        return True

    def put(self, check: str | None, address: str, status: Status | None, *, until: float | None = None,
            where: str = "") -> None:
        """Set (None: remove) one verdict now."""
        key = (check, address)
        if status is None:
            if self._entries.pop(key, None) is None:
                return
        else:
            before = self._entries.get(key)
            since = before.since if before is not None and before.status is status else self._clock()
            self._entries[key] = ExternalEntry(status, where, since, until)
        self._changed(self, (key,))
        self._reschedule()

    def lapse(self) -> list[Key]:
        """Drop the verdicts whose time came, one log line each; tell the board once."""
        now = self._clock()
        gone = [key for key, entry in self._entries.items() if entry.until is not None and entry.until <= now]
        for key in gone:
            entry = self._entries.pop(key)
            self.lapsed += 1
            shown = f"{key[0]}/{key[1]}" if key[0] is not None else key[1]
            log.info("%s: %s %s (%s) lapsed; the probes decide again", self.name, shown,
                     entry.status.name.lower(), entry.where)
        if gone:
            self._changed(self, gone)
        self._reschedule()
        return gone

    def _at_edge(self) -> None:
        self.lapse()

    def next_lapse(self) -> float | None:
        times = [entry.until for entry in self._entries.values() if entry.until is not None]
        return min(times) if times else None

    def _reschedule(self) -> None:
        self._timer.schedule(self.next_lapse())

    # -- lifecycle (the monitor starts and stops its sources) --------------------------------------------
    async def start(self, monitor: object) -> None:
        self._timer.start()
        self.lapse()  # what lapsed before the loop ran

    async def stop(self) -> None:
        self._timer.stop()


class ExternalApi(ExternalVerdicts):
    """Verdicts set through `PUT /admin/health/ADDRESS`, in memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__("external API", clock)

    def set(self, address: str, state: str | None, check: str | None = None, *, lapse: float | None = None,
            by: str = "") -> None:
        """`state` up, down, drain, or None to remove; `lapse`: seconds until it lapses."""
        status = None
        if state is not None:
            status = STATES.get(state)
            if status is None:
                raise ValueError(f"state must be up, down or drain, got {state!r}")
        until = None if lapse is None else self._clock() + lapse
        self.put(check, address, status, until=until, where=f"from {by}" if by else "set through the API")


# -- the file ------------------------------------------------------------------------------------------

def parse_lines(text: str, file: str) -> tuple[dict[Key, tuple[Status, str]], list[Problem]]:
    """The verdicts of an extfile's text, and one problem per bad line (printed "FILE:LINE:
    what"). A repeated key is reported and the later line wins."""
    verdicts: dict[Key, tuple[Status, str]] = {}
    seen: dict[Key, int] = {}
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{file}:{number}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) > MAX_LINE:
            problems.append(Problem(where, "", f"a line of {len(line)} characters; lines are ADDRESS: STATE"))
            continue
        if "=>" in line:
            key_text, _, state_text = line.partition("=>")
        else:
            key_text, colon, state_text = line.rpartition(":")
            if not colon:
                problems.append(Problem(where, "", f"{clip(line)!r} is not ADDRESS: STATE (up, down or drain)"))
                continue
        key_text, state_text = key_text.strip(), state_text.strip()
        status = STATES.get(state_text.lower())
        if status is None:
            problems.append(Problem(where, "", f"unknown state {clip(state_text)!r}; use up, down or drain"))
            continue
        try:
            key = parse_key(key_text)
        except ValueError as error:
            problems.append(Problem(where, "", f"{error}; keys are an endpoint address or CHECK/ADDRESS"))
            continue
        if key in seen:
            problems.append(Problem(where, "", f"{key_text} is also on line {seen[key]}; this later line wins"))
        seen[key] = number
        verdicts[key] = (status, f"line {number}")
    return verdicts, problems


def _signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino


class ExternalFile(ExternalVerdicts):
    """The verdicts of `external_health: {file: ...}`, re-read when the file changes."""

    def __init__(self, settings: ExternalHealthSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__(f"external file ({settings.file.name})", clock)
        self.settings = settings
        self.path = Path(settings.file)
        self.problems: list[Problem] = []  # of the last reading: for `gslb check` and /status
        self.reads = 0  # readings that applied
        self.failing: str | None = None  # why the file cannot be read now; None when it can
        self.read_at: float | None = None  # Unix time of the last reading that applied
        self._seen: Signature = None
        self._looked = False
        self._task: asyncio.Task[None] | None = None

    def load(self) -> bool:
        """Read the file now (start-up, `gslb check`; blocking). True when its verdicts applied."""
        self._looked = True
        self._seen = _signature(self.path)
        return self._apply(*self._read())

    def _read(self) -> tuple[dict[Key, tuple[Status, str]] | None, list[Problem], str | None]:
        """(verdicts or None, bad lines, why it could not be read). Blocking: run off the loop."""
        try:
            data = read_regular_file(self.path, self.settings.max_size)
        except FileNotFoundError:
            return None, [], "does not exist"
        except OSError as error:  # FileRefused (a FIFO, too large) says what it is in its message
            return None, [], f"cannot be read: {error.strerror or error}"
        text = data.decode("utf-8", "replace")
        verdicts, problems = parse_lines(text, str(self.path))
        return verdicts, problems, None

    def _apply(self, verdicts: dict[Key, tuple[Status, str]] | None, problems: list[Problem], failure: str | None) -> bool:
        if verdicts is None:
            if self.failing != failure:
                self.failing = failure
                if self.reads == 0:
                    log.warning("external health file %s %s; no external verdicts until it can be read", self.path,
                                failure)
                else:
                    log.warning("external health file %s %s; keeping the last %d verdict(s)", self.path, failure,
                                len(self._entries))
            return False
        if self.failing is not None:
            log.info("external health file %s readable again", self.path)
            self.failing = None
        self.problems = problems
        for problem in problems[:MAX_LOGGED]:
            log.error("external health file %s; the other lines still apply", problem)
        if len(problems) > MAX_LOGGED:
            log.error("external health file %s: %d more bad line(s) not logged", self.path, len(problems) - MAX_LOGGED)
        self.reads += 1
        self.read_at = self._clock()
        if self.replace(verdicts) or problems:
            log.info("external health file %s: %d verdict(s)%s", self.path, len(verdicts),
                     f", {len(problems)} bad line(s)" if problems else "")
        return True

    async def poll(self) -> bool:
        """One look: read and apply the file when its signature changed (settled). True when
        verdicts were applied."""
        signature = await asyncio.to_thread(_signature, self.path)
        if self._looked and signature == self._seen:
            return False
        for _ in range(SETTLE_TRIES):  # a file written in place (not renamed over) settles first
            await asyncio.sleep(SETTLE_TIME)
            later = await asyncio.to_thread(_signature, self.path)
            if later == signature:
                break
            signature = later
        self._looked = True
        self._seen = signature
        return self._apply(*await asyncio.to_thread(self._read))

    async def start(self, monitor: object) -> None:
        await super().start(monitor)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="gslb-external-health")

    async def stop(self) -> None:
        await super().stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad read
                log.exception("external health file %s: could not apply it", self.path)

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.path), "verdicts": len(self._entries), "reads": self.reads,
                "read_at": None if self.read_at is None else iso(self.read_at),
                "failing": self.failing, "bad_lines": [str(p) for p in self.problems[:MAX_LOGGED]],
                "bad_line_count": len(self.problems)}


def external_sources(settings: object) -> tuple[ExternalVerdicts, ...]:
    """The external health sources of `gslb serve`, in the order the board asks them: the API's
    verdicts, then the file's (when configured; read now, before any query)."""
    sources: list[ExternalVerdicts] = [ExternalApi()]
    configured: ExternalHealthSettings | None = getattr(settings, "external_health", None)
    if configured is not None:
        watched = ExternalFile(configured)
        watched.load()
        sources.append(watched)
    return tuple(sources)
