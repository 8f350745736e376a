"""The monitor: one task per (check, address), jitter, timeouts, crash restarts, reconcile, stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from gslb.config.catalog import load_catalog
from gslb.health.board import HealthBoard
from gslb.health.monitor import HealthMonitor
from gslb.health.probes import Probe, ProbeResult
from gslb.health.status import Status
from gslb.zone import Catalog

UP, DRAIN, DOWN = Status.UP, Status.DRAIN, Status.DOWN

ZONE = """
origin: {origin}
ns: [ns1.{origin}]
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
checks:
  web: {{tcp: {{port: {port}}}, interval: {interval}, timeout: {timeout}, rise: 2, fall: 2, cold_start: {cold}}}
records:
{records}
"""


def catalog(directory: Path, records: str, *, port: int = 9, interval: str = "0.1s", timeout: str = "0.05s",
            cold: str = "up", origin: str = "t.example.") -> Catalog:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    (directory / "zone.yaml").write_text(ZONE.format(origin=origin, port=port, interval=interval, timeout=timeout,
                                                     cold=cold, records=records))
    built, problems = load_catalog(directory)
    assert built is not None, problems
    return built


RECORDS = """
  www: {type: A, check: web, pools: {eu: [127.0.0.11, 127.0.0.12], us-east: [127.0.0.21]}}
  api: {type: A, check: web, pools: {eu: [127.0.0.11]}}
  static: {type: A, pools: {eu: [127.0.0.11]}}
"""


class Script:
    """What the fake probes answer, per address, and what they saw."""

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[], ProbeResult]] = {}
        self.calls: list[tuple[float, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None

    def probes(self) -> dict[str, type[Probe]]:
        script = self

        class FakeProbe(Probe):
            kind = "tcp"

            def __init__(self, spec, session) -> None:
                self.spec = spec

            async def probe(self, address: str) -> ProbeResult:
                script.calls.append((time.monotonic(), address))
                script.in_flight += 1
                script.most_in_flight = max(script.most_in_flight, script.in_flight)
                try:
                    if script.gate is not None:
                        await script.gate.wait()
                    answer = script.answers.get(address)
                    return answer() if answer is not None else ProbeResult(True, "fake ok", rtt=0.001)
                finally:
                    script.in_flight -= 1

        return {"tcp": FakeProbe}


async def until(condition: Callable[[], object], timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def started() -> AsyncIterator[list[HealthMonitor]]:
    """Monitors a test starts; all stopped at the end, whatever happened."""
    monitors: list[HealthMonitor] = []
    yield monitors
    for monitor in monitors:
        await monitor.stop()


async def test_one_probe_task_per_distinct_check_and_address(tmp_path, started):
    script = Script()
    monitor = HealthMonitor(HealthBoard(), probes=script.probes())
    assert monitor.apply(catalog(tmp_path, RECORDS)) == []
    started.append(monitor)
    await monitor.start()
    assert monitor.probing() == {("web", "127.0.0.11"), ("web", "127.0.0.12"), ("web", "127.0.0.21")}
    await until(lambda: len(script.calls) >= 9, what="three rounds")
    counts = {a: sum(1 for _, b in script.calls if b == a) for a in ("127.0.0.11", "127.0.0.12", "127.0.0.21")}
    assert max(counts.values()) - min(counts.values()) <= 1  # .11 serves two records, probed once


async def test_first_probes_are_spread_over_the_interval(tmp_path, started):
    offsets: list[tuple[float, float]] = []

    class Recording(random.Random):
        def uniform(self, a: float, b: float) -> float:
            offsets.append((a, b))
            return super().uniform(a, b)

    monitor = HealthMonitor(HealthBoard(), probes=Script().probes(), rng=Recording(7))
    monitor.apply(catalog(tmp_path, RECORDS, interval="2s", timeout="1s"))
    started.append(monitor)
    await monitor.start()
    assert offsets == [(0, 2.0)] * 3


async def test_a_probe_slower_than_the_timeout_fails_with_timeout(tmp_path, started, caplog):
    caplog.set_level(logging.INFO, "gslb.health")
    script = Script()
    script.gate = asyncio.Event()  # never set: every probe hangs
    board = HealthBoard()
    monitor = HealthMonitor(board, probes=script.probes())
    monitor.apply(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.11]}}"))
    started.append(monitor)
    await monitor.start()
    await until(lambda: board.status("web", "127.0.0.11") is DOWN, what="DOWN after timeouts")
    assert board.report("web", "127.0.0.11").reason == "after 2 failures: timeout after 0.05s"
    assert "www.t.example. eu 127.0.0.11 DOWN after 2 failures: timeout after 0.05s" in caplog.text


async def test_a_crashing_probe_task_is_logged_and_restarted(tmp_path, started, caplog):
    script = Script()
    crashes = iter([True])

    def flaky() -> ProbeResult:
        if next(crashes, False):
            raise RuntimeError("injected bug")
        return ProbeResult(True, "fake ok")

    script.answers["127.0.0.11"] = flaky
    board = HealthBoard()
    monitor = HealthMonitor(board, probes=script.probes())
    monitor.apply(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.11]}}"))
    started.append(monitor)
    await monitor.start()
    await until(lambda: monitor.restarts == 1, what="the restart")
    await until(lambda: (board.report("web", "127.0.0.11").last_result or "") == "fake ok", what="a probe after the restart")
    report = board.report("web", "127.0.0.11")
    assert report.crashes == 1
    assert ("web", "127.0.0.11") in monitor.probing()
    crash_logs = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert [r.getMessage() for r in crash_logs] == [
        "probe task web 127.0.0.11 crashed (RuntimeError: injected bug); restarting it"]
    assert crash_logs[0].exc_info is not None  # the first crash carries its traceback


async def test_a_task_cancelled_behind_the_monitors_back_is_restarted(tmp_path, started):
    monitor = HealthMonitor(HealthBoard(), probes=Script().probes())
    monitor.apply(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.11]}}"))
    started.append(monitor)
    await monitor.start()
    task = monitor._tasks[("web", "127.0.0.11")]
    task.cancel()
    await until(lambda: monitor.restarts == 1 and monitor._tasks[("web", "127.0.0.11")] is not task, what="restart")


async def test_probes_in_flight_are_capped(tmp_path, started):
    script = Script()
    script.gate = asyncio.Event()
    addresses = ", ".join(f"127.0.0.{n}" for n in range(10, 20))
    monitor = HealthMonitor(HealthBoard(), probes=script.probes(), connection_limit=3)
    monitor.apply(catalog(tmp_path, f"  www: {{type: A, check: web, pools: {{eu: [{addresses}]}}}}", interval="1s", timeout="0.5s"))
    started.append(monitor)
    await monitor.start()
    await until(lambda: script.most_in_flight == 3, what="three probes in flight")
    await asyncio.sleep(0.05)  # give an eleventh a chance to sneak in, if the cap were broken
    assert script.most_in_flight == 3
    script.gate.set()


async def test_apply_keeps_state_of_pairs_that_stay_stops_removed_and_starts_new(tmp_path, started):
    script = Script()
    script.answers["127.0.0.11"] = lambda: ProbeResult(False, "fake refused")
    board = HealthBoard()
    monitor = HealthMonitor(board, probes=script.probes())
    monitor.apply(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.11, 127.0.0.12]}}"))
    started.append(monitor)
    await monitor.start()
    await until(lambda: board.status("web", "127.0.0.11") is DOWN, what="DOWN")
    kept_task = monitor._tasks[("web", "127.0.0.11")]
    removed_task = monitor._tasks[("web", "127.0.0.12")]
    new = catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.11, 127.0.0.13]}}", cold="down")
    assert monitor.apply(new) == []
    assert board.status("web", "127.0.0.11") is DOWN  # state kept
    assert monitor._tasks[("web", "127.0.0.11")] is kept_task
    assert board.status("web", "127.0.0.13") is DOWN  # new, cold start down
    assert monitor.probing() == {("web", "127.0.0.11"), ("web", "127.0.0.13")}
    await until(removed_task.done, what="the removed task to end")
    await until(lambda: board.status("web", "127.0.0.13") is UP, what="the new endpoint to rise")
    assert monitor.restarts == 0


async def test_stop_cancels_every_task_and_closes_the_session(tmp_path):
    monitor = HealthMonitor(HealthBoard(), tmp_path / "state.yaml", probes=Script().probes(), state_poll_interval=0.01)
    monitor.apply(catalog(tmp_path / "zones", RECORDS))
    await monitor.start()
    tasks = [*monitor._tasks.values(), monitor._watcher]
    session = monitor._session
    await monitor.stop()
    assert all(task.done() for task in tasks)
    assert session is not None and session.closed
    assert monitor.probing() == set() and monitor.restarts == 0
    await monitor.stop()  # twice is fine


class Backends:
    """aiohttp sites on 127.0.0.x, one port for all (as a check has one port)."""

    def __init__(self) -> None:
        self.runners: dict[str, web.AppRunner] = {}
        self.port = 0

    async def start(self, address: str) -> None:
        app = web.Application()
        app.router.add_get("/healthz", _ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, address, self.port)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.runners[address] = runner

    async def stop(self, address: str) -> None:
        await self.runners.pop(address).cleanup()

    async def close(self) -> None:
        for address in list(self.runners):
            await self.stop(address)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_real_http_probes_withdraw_a_dead_site_and_leave_no_open_session(tmp_path):
    backends = Backends()
    await backends.start("127.0.0.1")
    board = HealthBoard()
    monitor = HealthMonitor(board)
    zone = ZONE.replace("tcp: {{port: {port}}}", "http: {{path: /healthz, port: {port}}}")
    (tmp_path / "zone.yaml").write_text(zone.format(
        origin="t.example.", port=backends.port, interval="0.1s", timeout="0.05s", cold="down",
        records="  www: {type: A, check: web, pools: {eu: [127.0.0.1]}}"))
    built, problems = load_catalog(tmp_path)
    assert built is not None, problems
    monitor.apply(built)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            await monitor.start()
            await until(lambda: board.status("web", "127.0.0.1") is UP, what="UP after rise")
            assert board.rtt("web", "127.0.0.1") is not None
            await backends.stop("127.0.0.1")
            await until(lambda: board.status("web", "127.0.0.1") is DOWN, what="DOWN after fall")
            assert board.report("web", "127.0.0.1").last_result == "connection refused"
        finally:
            await monitor.stop()
            await backends.close()
        gc.collect()
    assert [str(w.message) for w in caught if "nclosed" in str(w.message)] == []


async def test_the_state_file_is_watched_and_set_override_applies_at_once(tmp_path, started):
    state = tmp_path / "state.yaml"
    state.write_text("127.0.0.12: down\n")
    board = HealthBoard()
    monitor = HealthMonitor(board, state, probes=Script().probes(), state_poll_interval=0.02)
    monitor.apply(catalog(tmp_path / "zones", RECORDS))
    assert board.status("web", "127.0.0.12") is DOWN  # read before start: holds from the first query
    started.append(monitor)
    await monitor.start()
    state.write_text("127.0.0.12: drain\n127.0.0.11: down\n")
    await until(lambda: board.status("web", "127.0.0.12") is DRAIN, what="the edit to apply")
    assert board.status("web", "127.0.0.11") is DOWN and board.status(None, "127.0.0.11") is DOWN
    monitor.set_override("127.0.0.11", None)
    assert board.status("web", "127.0.0.11") is UP  # no wait for the watcher
    assert "127.0.0.11" not in state.read_text()


async def test_prepare_changes_nothing_live_and_commit_applies_it(tmp_path, started):
    script = Script()
    script.answers["127.0.0.11"] = lambda: ProbeResult(False, "fake refused")
    board = HealthBoard()
    monitor = HealthMonitor(board, probes=script.probes())
    monitor.apply(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.11, 127.0.0.12]}}"))
    started.append(monitor)
    await monitor.start()
    await until(lambda: board.status("web", "127.0.0.11") is DOWN, what="DOWN")
    down = board.report("web", "127.0.0.11")
    pending = monitor.prepare(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.12, 127.0.0.13]}}"))
    assert pending.problems == []
    assert pending.added == {("web", "127.0.0.13")} and pending.removed == {("web", "127.0.0.11")}
    # Nothing live moved: the board, the probe tasks.
    assert set(board.tracked()) == {("web", "127.0.0.11"), ("web", "127.0.0.12")}
    assert monitor.probing() == {("web", "127.0.0.11"), ("web", "127.0.0.12")}
    assert board.report("web", "127.0.0.11").last_change == down.last_change
    del pending  # a reload that failed just drops it
    await until(lambda: board.report("web", "127.0.0.11").failures > down.failures, what="more probes")
    assert board.status("web", "127.0.0.11") is DOWN and board.report("web", "127.0.0.13") is None
    pending = monitor.prepare(catalog(tmp_path, "  www: {type: A, check: web, pools: {eu: [127.0.0.12, 127.0.0.13]}}"))
    pending.commit()
    pending.commit()  # once only
    assert set(board.tracked()) == {("web", "127.0.0.12"), ("web", "127.0.0.13")}
    assert monitor.probing() == {("web", "127.0.0.12"), ("web", "127.0.0.13")}


def test_a_plan_with_problems_cannot_be_committed(tmp_path):
    monitor = HealthMonitor(HealthBoard(), probes=Script().probes())
    first = catalog(tmp_path / "a", "  www: {type: A, check: web, pools: {eu: [127.0.0.11]}}")
    second = catalog(tmp_path / "b", "  api: {type: A, check: web, pools: {eu: [127.0.0.12]}}", interval="0.2s",
                     origin="u.example.")
    both = Catalog((*first.zones, *second.zones))
    pending = monitor.prepare(both)
    assert pending.problems and "differs from check 'web'" in str(pending.problems[0])
    with pytest.raises(RuntimeError, match="problems"):
        pending.commit()
    assert list(monitor.board.tracked()) == []
