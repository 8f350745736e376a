"""Runs the health checks of a catalog: one probe task per distinct (check, address).

An address that two records (or two zones) use with the same check is probed once. Each task
starts at a random offset within its interval, so checks do not fire in lockstep, and every probe
goes through one shared aiohttp session whose connector, like the monitor's own limit, caps the
sockets open at once. A task that dies of an unexpected exception is logged and restarted; it is
never silently lost.

A (new) catalog is taken in two steps, so a reload is a transaction: `prepare(catalog)` works out
what would change (and any problem) and touches nothing live; `PendingHealth.commit()` applies it -
the board tracks the new pairs (kept pairs keep their state, new ones start per their check's cold
start, removed ones are forgotten) and probe tasks start and stop. Hot reload commits only once the
new configuration has passed its self-test, just before the swap; a failed reload never commits,
so health stays exactly as it was. `apply(catalog)` is both at once. The admin state file is
polled here too.

Which pairs this process probes can change while it runs: `set_probing(enabled, only=...)`. A DNS
node taking its health from remote vantages (gslb/health/redis_link.py) probes nothing while their
verdicts are fresh, only its own vantage's checks when it is one, and everything when the shared
verdicts went stale. `source_address` makes every probe leave from that local address (a
multi-homed host; a probe agent's vantage). Sources with a life of their own (`start(monitor)`,
`stop()`) start and stop with the monitor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from gslb.config.problems import Problem
from gslb.health.admin import StateFile
from gslb.health.board import HealthBoard, Key
from gslb.health.checks import Check
from gslb.health.kinds import probe_classes
from gslb.health.probes import Probe, ProbeResult, abortive_socket
from gslb.health.sources import AdminOverrides, HealthSource, LocalProbes
from gslb.health.status import Status
from gslb.names import to_text
from gslb.zone import Catalog

log = logging.getLogger(__name__)

CONNECTION_LIMIT = 256  # probes in flight at once, across every check
STATE_POLL_INTERVAL = 0.5  # seconds between looks at the admin state file


class OverrideError(Exception):
    """An admin override could not be stored; the message says why and what to do, `status` the
    HTTP status the admin API answers with."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def plan(catalog: Catalog) -> tuple[dict[str, Check], dict[Key, tuple[str, ...]], list[Problem]]:
    """What to probe for a catalog: the checks by name, and every (check, address) records serve
    with the records and regions using it. Check names are shared by all zones served (a record
    refers to `web`, not to a zone's `web`), so two zones defining one name differently is a problem."""
    checks: dict[str, Check] = {}
    defined_in: dict[str, str] = {}
    problems: list[Problem] = []
    for zone in catalog.zones:
        for name, check in zone.checks.items():
            if name in checks and checks[name] != check:
                problems.append(Problem(zone.file, f"checks.{name}",
                                        f"differs from check {name!r} in {defined_in[name]}; check names are shared "
                                        "by every zone served: make them equal or rename one"))
                continue
            checks.setdefault(name, check)
            defined_in.setdefault(name, zone.file)
    users: dict[Key, list[str]] = {}
    for zone in catalog.zones:
        for node in zone.nodes.values():
            for record in node.dynamic.values():
                for endpoint in record.endpoints:
                    where = f"{to_text(record.name)} {endpoint.region}"
                    found = users.setdefault((record.check, endpoint.address), [])
                    if where not in found:
                        found.append(where)
    return checks, {key: tuple(names) for key, names in users.items()}, problems


def probe_targets(catalog: Catalog) -> tuple[dict[Key, tuple[str, str]], list[Problem]]:
    """Where the checked CNAME pool endpoints are probed: (check, host name key) -> (where to
    connect: the `probe:` address, else the name for the system resolver; the HTTP Host / TLS
    SNI name). One key probed two ways would give one verdict for two different things."""
    targets: dict[Key, tuple[str, str]] = {}
    where: dict[Key, str] = {}
    problems: list[Problem] = []
    for zone in catalog.zones:
        for node in zone.nodes.values():
            for record in node.dynamic.values():
                if record.check is None:
                    continue
                for endpoint in record.endpoints:
                    host = endpoint.host
                    if host is None:
                        continue
                    key = (record.check, endpoint.address)
                    target = (endpoint.probe or host, host)
                    known = targets.setdefault(key, target)
                    if known != target:
                        problems.append(Problem(zone.file, record.path, f"{endpoint.address} is probed at "
                                                f"{target[0]} here and at {known[0]} in {where[key]} with the same "
                                                f"check {record.check}; give every use of the name the same probe:"))
                    where.setdefault(key, record.path)
    return targets, problems


@dataclass
class PendingHealth:
    """What a catalog would change in a monitor: computed by `HealthMonitor.prepare`, applied by
    `commit()`. Until then nothing live has changed."""

    monitor: HealthMonitor
    checks: dict[str, Check]
    users: dict[Key, tuple[str, ...]]
    problems: list[Problem] = field(default_factory=list)
    targets: dict[Key, tuple[str, str]] = field(default_factory=dict)  # CNAME endpoints: (connect to, host)
    added: frozenset[Key] = frozenset()  # pairs the board will start tracking (probed ones start per cold start)
    removed: frozenset[Key] = frozenset()  # pairs it will forget (their probes stop)
    committed: bool = False

    def commit(self) -> None:
        """Apply it: the board tracks the new pairs, probe tasks start and stop. Call it once,
        right before the new configuration starts answering; never with problems."""
        if self.problems:
            raise RuntimeError(f"cannot commit a health plan with problems: {self.problems[0]}")
        if self.committed:
            return
        self.committed = True
        self.monitor._commit(self)


class HealthMonitor:
    """Owns the probe tasks, the HTTP session and the admin state file watcher of one board."""

    def __init__(
        self,
        board: HealthBoard,
        state_file: Path | None = None,
        *,
        connection_limit: int = CONNECTION_LIMIT,
        state_poll_interval: float = STATE_POLL_INTERVAL,
        probes: Mapping[str, type[Probe]] | None = None,
        rng: random.Random | None = None,
        source_address: str | None = None,
    ) -> None:
        self.board = board
        self.source_address = source_address  # the local address probes leave from; None: the system's choice
        self._probing_enabled = True
        self._probe_only: Callable[[Check], bool] | None = None
        self.state = StateFile(state_file) if state_file is not None else None
        self.connection_limit = connection_limit
        self.state_poll_interval = state_poll_interval
        self._probe_classes = probes if probes is not None else probe_classes()
        self._random = rng or random.Random()
        self._checks: dict[str, Check] = {}
        self._probes: dict[str, Probe] = {}
        self._targets: dict[Key, tuple[str, str]] = {}  # CNAME pool endpoints: (connect to, host name)
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._limit: asyncio.Semaphore | None = None
        self._running = False
        self.restarts = 0  # probe tasks restarted after a crash, over the monitor's life
        if self.state is not None:
            self.reload_state()  # before the first query, so overrides hold from the start

    @classmethod
    def build(cls, state_file: Path | None = None, sources: Sequence[HealthSource] = (), **options: object) -> HealthMonitor:
        """The health of one `gslb serve`: a counting board merging `sources` (asked first in
        their layer: a preferred source falls back to the local ones by having no verdict), this
        process's probes and the admin state file's overrides."""
        from gslb.health_stats import CountingBoard

        board = CountingBoard(sources=(*sources, LocalProbes(), AdminOverrides()))
        return cls(board, state_file, **options)  # type: ignore[arg-type]

    # -- lifecycle ----------------------------------------------------------------------------
    def prepare(self, catalog: Catalog) -> PendingHealth:
        """What taking `catalog` would change, with its problems (checks that conflict across
        zones); touches nothing live."""
        checks, users, problems = plan(catalog)
        targets, target_problems = probe_targets(catalog)
        before = set(self.board.tracked())
        return PendingHealth(self, checks, users, [*problems, *target_problems], targets,
                             added=frozenset(users.keys() - before), removed=frozenset(before - users.keys()))

    def apply(self, catalog: Catalog) -> list[Problem]:
        """Prepare and commit at once (start-up, tests). Returns problems and changes nothing
        when its checks conflict. While running, removed pairs stop, new ones start (per their
        check's cold start) and pairs present before and after keep their state and their task."""
        pending = self.prepare(catalog)
        if pending.problems:
            return pending.problems
        pending.commit()
        return []

    def _commit(self, pending: PendingHealth) -> None:
        self._checks = pending.checks
        self._targets = pending.targets
        self.board.track(pending.users, pending.checks)
        if self._running:
            self._build_probes()
            self._reconcile()

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._limit = asyncio.Semaphore(self.connection_limit)
        local_addr = (self.source_address, 0) if self.source_address is not None else None
        # Host names (CNAME pools without probe:) resolve through the system resolver
        # (getaddrinfo) at each probe, never from a cache: a probe sees what a new client sees.
        connector = aiohttp.TCPConnector(limit=self.connection_limit, force_close=True, socket_factory=abortive_socket,
                                         local_addr=local_addr, resolver=aiohttp.ThreadedResolver(),
                                         use_dns_cache=False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # the monitor times each probe
            auto_decompress=True,
        )
        self._build_probes()
        for source in self.board.sources:
            start = getattr(source, "start", None)  # sources with a life of their own (a store's link)
            if start is not None:
                await start(self)
        self._reconcile()
        if self.state is not None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_state(), name="gslb-admin-state")
        log.info("health checks: %d probe(s) for %d check(s)", len(self._tasks), len({key[0] for key in self._tasks}))

    async def stop(self) -> None:
        """Cancel every task and close the session; safe to call twice."""
        was_running, self._running = self._running, False
        if was_running:
            for source in self.board.sources:
                stop = getattr(source, "stop", None)
                if stop is not None:
                    await stop()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        if self._watcher is not None:
            tasks.append(self._watcher)
            self._watcher = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def running(self) -> bool:
        return self._running

    def probing(self) -> set[Key]:
        return set(self._tasks)

    def set_probing(self, enabled: bool, only: Callable[[Check], bool] | None = None) -> None:
        """Probe the checked pairs (of the checks `only` accepts), or none; tasks start and stop
        now when running. Pairs that stop being probed keep their last state."""
        self._probing_enabled, self._probe_only = enabled, only
        if self._running:
            self._reconcile()

    def checks(self) -> Mapping[str, Check]:
        return self._checks

    # -- admin overrides ----------------------------------------------------------------------
    def reload_state(self) -> bool:
        """Read the state file if it changed; True when new overrides were applied."""
        if self.state is None:
            return False
        overrides = self.state.poll()
        if overrides is None:
            return False
        self.board.set_overrides(overrides, f"admin override ({self.state.path.name})")
        return True

    def set_override(self, address: str, state: str | Status | None, check: str | None = None) -> None:
        """Write an override to the state file (atomically) and apply it now. For the admin API."""
        if self.state is None:
            raise RuntimeError("no admin state file configured; start with --state FILE")
        self.state.set_override(address, state, check)
        self.reload_state()

    def shared_overrides(self) -> object | None:
        """The source holding overrides shared by every node (with --redis), if any."""
        return next((s for s in self.board.sources if getattr(s, "store_override", None) is not None), None)

    async def admin_override(self, address: str, state: str | None, check: str | None = None, *,
                             lapse: float | None = None, start: float | None = None,
                             until: float | None = None) -> str:
        """Set (None: remove) an override from the admin API: in the shared store when there
        is one, else in the state file; applied here before returning. `lapse`: seconds until it
        lapses by itself; `start`/`until` (Unix times): a maintenance window. Returns where it was
        stored. Raises OverrideError (the message says what to do) and ValueError (a bad state)."""
        shared = self.shared_overrides()
        if shared is not None:
            await shared.store_override(address, state, check, lapse, start=start, until=until)  # type: ignore[attr-defined]
            return shared.name  # type: ignore[attr-defined,no-any-return]
        if lapse is not None:
            until = time.time() + lapse
        if self.state is None:
            raise OverrideError("no admin state file configured; start gslb serve with --state FILE (or state: in "
                                "the server config) so overrides survive a restart, or --redis URL to share them", 409)
        try:
            await asyncio.to_thread(self.state.set_override, address, state, check, start=start, until=until)
        except OSError as error:
            raise OverrideError(f"cannot write the admin state file {self.state.path}: "
                                f"{error.strerror or error}") from None
        self.reload_state()
        return str(self.state.path)

    async def _watch_state(self) -> None:
        while True:
            await asyncio.sleep(self.state_poll_interval)
            try:
                self.reload_state()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad read
                log.exception("admin state file %s: could not apply it", self.state.path if self.state else "")

    # -- probe tasks --------------------------------------------------------------------------
    def _build_probes(self) -> None:
        self._probes = {name: self._probe_classes[check.spec.kind](check.spec, self._session)  # type: ignore[call-arg]
                        for name, check in self._checks.items()}
        if self.source_address is not None:
            for probe in self._probes.values():
                probe.local_addr = (self.source_address, 0)

    def _wanted(self) -> set[Key]:
        if not self._probing_enabled:
            return set()
        only = self._probe_only
        if only is None:
            return set(self.board.checked())
        return {key for key in self.board.checked() if key[0] in self._checks and only(self._checks[key[0]])}

    def _reconcile(self) -> None:
        wanted = self._wanted()
        for key in list(self._tasks):
            if key not in wanted:
                self._tasks.pop(key).cancel()
        for key in wanted:
            if key not in self._tasks:
                interval = self._checks[key[0]].timing.interval  # type: ignore[index]
                self._tasks[key] = self._spawn(key, self._random.uniform(0, interval))

    def _spawn(self, key: Key, first_delay: float) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._run(key, first_delay), name=f"gslb-probe {key[0]} {key[1]}")
        task.add_done_callback(lambda done: self._task_done(key, done))
        return task

    async def _run(self, key: Key, first_delay: float) -> None:
        check_name, address = key
        assert check_name is not None
        loop = asyncio.get_running_loop()
        await asyncio.sleep(first_delay)
        next_start = loop.time()
        while True:
            check = self._checks[check_name]
            connect, host = self._targets.get(key, (address, None))
            result = await self._probe_once(self._probes[check_name], connect, host, check.timing.timeout)
            self.board.record(check_name, address, result)
            next_start += check.timing.interval
            delay = next_start - loop.time()
            if delay < 0:  # fell behind (a slow host): skip the missed slots, never burst
                next_start = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def _probe_once(self, probe: Probe, address: str, host: str | None, timeout: float) -> ProbeResult:
        assert self._limit is not None
        async with self._limit:  # the timeout starts once the probe may run
            try:
                async with asyncio.timeout(timeout):
                    return await probe.probe(address, host) if host is not None else await probe.probe(address)
            except TimeoutError:
                return ProbeResult(False, f"timeout after {timeout:g}s")

    def _task_done(self, key: Key, task: asyncio.Task[None]) -> None:
        if not self._running or self._tasks.get(key) is not task:
            return  # stopped or removed on purpose
        error = None if task.cancelled() else task.exception()
        what = f"{type(error).__name__}: {error}" if error is not None else ("cancelled" if task.cancelled() else "ended")
        self.restarts += 1
        first = self.board.report(*key)
        crashes = first.crashes if first is not None else 0
        # The first crash of a pair gets its traceback; repeats get one line each.
        log.error("probe task %s %s crashed (%s); restarting it", key[0], key[1], what,
                  exc_info=error if crashes == 0 and error is not None else None)
        try:
            self.board.record_crash(key[0], key[1], what)  # type: ignore[arg-type]
        finally:
            check = self._checks.get(key[0])  # type: ignore[arg-type]
            if check is not None:
                self._tasks[key] = self._spawn(key, check.timing.interval)
            else:
                self._tasks.pop(key, None)
