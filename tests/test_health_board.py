"""The health board: rise/fall, cold start, admin overrides, one log line per change."""

from __future__ import annotations

import logging
from pathlib import Path
from types import MappingProxyType

import pytest

from gslb.config.catalog import load_catalog
from gslb.health.admin import NO_OVERRIDES, Overrides
from gslb.health.board import HealthBoard
from gslb.health.checks import Check, CheckTiming, HttpSpec, TcpSpec
from gslb.health.monitor import plan
from gslb.health.probes import ProbeResult
from gslb.health.status import Status
from gslb.selection import Selector

UP, DRAIN, DOWN = Status.UP, Status.DRAIN, Status.DOWN
OK = ProbeResult(True, "HTTP 200", rtt=0.010)
FAIL = ProbeResult(False, "HTTP 503")
A1, A2, A3 = "198.51.100.10", "198.51.100.11", "203.0.113.10"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def web(rise: int = 2, fall: int = 3, cold_start: Status = UP) -> Check:
    return Check("web", HttpSpec(), CheckTiming(5.0, 2.0, rise, fall), cold_start)


def board_with(*checks: Check, extra: dict | None = None) -> tuple[HealthBoard, Clock]:
    clock = Clock()
    board = HealthBoard(clock=clock)
    users = {}
    for check in checks:
        users[(check.name, A1)] = ("www.gslb.example.com. us-east",)
        users[(check.name, A2)] = ("www.gslb.example.com. us-east",)
    users.update(extra or {})
    board.track(users, {c.name: c for c in checks})
    return board, clock


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gslb.health.board"]


def test_unknown_and_unchecked_endpoints_serve():
    board, _ = board_with(web(), extra={(None, A3): ("static.example. eu",)})
    assert board.status("nope", "192.0.2.1") is UP
    assert board.status(None, A3) is UP
    assert board.rtt(None, A3) is None and board.load(None, A3) is None


def test_fall_consecutive_failures_withdraw_with_one_log_line(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    board, _ = board_with(web(fall=3))
    board.record("web", A1, FAIL)
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is UP  # two of three
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN
    board.record("web", A1, FAIL)  # staying down is not news
    assert messages(caplog) == ["www.gslb.example.com. us-east 198.51.100.10 DOWN after 3 failures: HTTP 503"]
    assert caplog.records[-1].levelno == logging.WARNING
    assert board.status("web", A2) is UP  # the other endpoint is untouched


def test_a_success_between_failures_restarts_the_count():
    board, _ = board_with(web(fall=2))
    for result in (FAIL, OK, FAIL, OK, FAIL):
        board.record("web", A1, result)
    assert board.status("web", A1) is UP


def test_rise_consecutive_successes_bring_it_back(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    board, clock = board_with(web(rise=2, fall=1))
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN
    clock.now += 30
    board.record("web", A1, OK)
    assert board.status("web", A1) is DOWN  # one of two
    board.record("web", A1, FAIL)  # resets the run
    board.record("web", A1, OK)
    assert board.status("web", A1) is DOWN
    board.record("web", A1, OK)
    assert board.status("web", A1) is UP
    assert messages(caplog) == [
        "www.gslb.example.com. us-east 198.51.100.10 DOWN after 1 failure: HTTP 503",
        "www.gslb.example.com. us-east 198.51.100.10 UP after 2 successes: HTTP 200",
    ]
    report = board.report("web", A1)
    assert report is not None and report.last_change == clock.now
    assert report.text() == "www.gslb.example.com. us-east 198.51.100.10 UP after 2 successes: HTTP 200"


def test_cold_start_up_serves_before_any_probe_and_falls_after_fall_failures():
    board, _ = board_with(web(fall=2, cold_start=UP))
    assert board.status("web", A1) is UP
    assert board.report("web", A1).reason.startswith("cold start: serving")
    board.record("web", A1, FAIL)
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN


def test_the_first_probe_that_confirms_a_cold_start_replaces_its_reason():
    board, _ = board_with(web(fall=3, rise=3, cold_start=UP), extra={})
    board.record("web", A1, FAIL)  # not yet enough to withdraw: the cold start still explains it
    assert board.report("web", A1).reason == "cold start: serving until probes say otherwise"
    board.record("web", A1, OK)
    board.record("web", A1, OK)
    report = board.report("web", A1)
    assert (report.status, report.reason) == ("UP", "after 1 success: HTTP 200")  # the first confirmation
    cold_down, _ = board_with(web(rise=3, cold_start=DOWN))
    cold_down.record("web", A1, FAIL)
    assert cold_down.report("web", A1).reason == "after 1 failure: HTTP 503"
    cold_down.record("web", A1, OK)  # rising, not risen: still withdrawn by its cold start's rule
    assert cold_down.report("web", A1).reason == "after 1 failure: HTTP 503"


def test_a_down_endpoint_has_no_rtt_until_it_answers_again():
    board, _ = board_with(web(fall=2, rise=2))
    board.record("web", A1, ProbeResult(True, "HTTP 200", rtt=0.050))
    assert board.report("web", A1).rtt == pytest.approx(0.050)
    board.record("web", A1, FAIL)
    assert board.rtt("web", A1) == pytest.approx(0.050)  # one failure: still UP, the last RTT stands
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN
    assert board.rtt("web", A1) is None and board.report("web", A1).rtt is None
    assert board.snapshot().rtt.get(("web", A1)) is None
    board.record("web", A1, ProbeResult(True, "HTTP 200", rtt=0.200))
    assert board.rtt("web", A1) == pytest.approx(0.200)  # a fresh average, not mixed with the old one


def test_cold_start_down_withdraws_until_rise_successes(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    board, _ = board_with(web(rise=3, cold_start=DOWN))
    assert board.status("web", A1) is DOWN
    assert board.report("web", A1).reason == "cold start: withdrawn until 3 successful probe(s)"
    board.record("web", A1, OK)
    board.record("web", A1, OK)
    assert board.status("web", A1) is DOWN
    board.record("web", A1, OK)
    assert board.status("web", A1) is UP
    assert messages(caplog) == ["www.gslb.example.com. us-east 198.51.100.10 UP after 3 successes: HTTP 200"]


def test_rtt_is_smoothed_and_load_is_the_last_reported():
    board, _ = board_with(web())
    board.record("web", A1, ProbeResult(True, "HTTP 200", rtt=0.100, load=0.5))
    assert board.rtt("web", A1) == pytest.approx(0.100)
    board.record("web", A1, ProbeResult(True, "HTTP 200", rtt=0.200, load=0.7))
    assert board.rtt("web", A1) == pytest.approx(0.130)  # 0.1 + 0.3 * (0.2 - 0.1)
    assert board.load("web", A1) == 0.7
    board.record("web", A1, ProbeResult(False, "connection refused"))
    assert board.rtt("web", A1) == pytest.approx(0.130) and board.load("web", A1) == 0.7


def overrides(by_address=None, by_check=None) -> Overrides:
    return Overrides(MappingProxyType(by_address or {}), MappingProxyType(by_check or {}))


def test_admin_down_withdraws_a_healthy_endpoint_whatever_the_probes_say(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    board, _ = board_with(web())
    board.set_overrides(overrides({A1: DOWN}), "admin override (state.yaml)")
    assert board.status("web", A1) is DOWN
    for _ in range(5):
        board.record("web", A1, OK)
    assert board.status("web", A1) is DOWN
    assert messages(caplog) == ["www.gslb.example.com. us-east 198.51.100.10 DOWN by admin override (state.yaml) down"]
    report = board.report("web", A1)
    assert (report.status, report.probed, report.override) == ("DOWN", "UP", "down")
    board.set_overrides(NO_OVERRIDES, "admin override (state.yaml)")
    assert board.status("web", A1) is UP
    assert messages(caplog)[-1] == "www.gslb.example.com. us-east 198.51.100.10 UP admin override (state.yaml) removed; probes say UP"


def test_admin_up_serves_an_endpoint_the_probes_find_dead(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    board, _ = board_with(web(fall=1))
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN
    board.set_overrides(overrides({A1: UP}))
    assert board.status("web", A1) is UP
    board.record("web", A1, OK)
    board.record("web", A1, OK)  # probes come back UP: still UP, logged once
    board.record("web", A1, FAIL)  # and down again: the override keeps it serving
    assert board.status("web", A1) is UP
    assert messages(caplog)[-1].endswith("probes say DOWN but admin override up keeps it UP")


def test_admin_drain_is_last_resort_and_never_revives_a_dead_endpoint():
    board, _ = board_with(web(fall=1))
    board.set_overrides(overrides({A1: DRAIN}))
    assert board.status("web", A1) is DRAIN
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN
    assert board.report("web", A1).reason == "by admin override drain (and probes say DOWN)"


def test_a_check_scoped_override_touches_only_that_check_and_address_overrides_touch_unchecked_records():
    db = Check("db", TcpSpec(5432), CheckTiming(5.0, 2.0))
    board, _ = board_with(web(), db, extra={(None, A1): ("static.example. eu",)})
    board.set_overrides(overrides(by_check={("web", A1): DOWN}))
    assert (board.status("web", A1), board.status("db", A1), board.status(None, A1)) == (DOWN, UP, UP)
    board.set_overrides(overrides(by_address={A1: DRAIN}, by_check={("db", A1): UP}))
    assert (board.status("web", A1), board.status("db", A1), board.status(None, A1)) == (DRAIN, UP, DRAIN)


def test_track_keeps_state_for_pairs_that_stay_and_starts_new_ones_cold():
    board, _ = board_with(web(fall=1))
    board.record("web", A1, FAIL)
    assert board.status("web", A1) is DOWN
    cold_down = web(cold_start=DOWN)
    board.track({("web", A1): ("www.x. eu",), ("web", A3): ("www.x. eu",)}, {"web": cold_down})
    assert board.status("web", A1) is DOWN  # kept
    assert board.status("web", A3) is DOWN  # new, cold start down
    assert board.report("web", A2) is None  # forgotten
    board.record("web", A2, FAIL)  # a late result for a removed pair is ignored
    assert board.report("web", A1).users == ("www.x. eu",)


def test_a_crashed_probe_counts_as_a_failure():
    board, _ = board_with(web(fall=2))
    board.record_crash("web", A1, "RuntimeError: boom")
    board.record_crash("web", A1, "RuntimeError: boom")
    report = board.report("web", A1)
    assert (report.status, report.crashes) == ("DOWN", 2)
    assert report.reason == "after 2 failures: probe crashed: RuntimeError: boom"


ZONE = """
origin: t.example.
ns: [ns1.t.example.]
regions:
  eu: {location: [50.11, 8.68]}
  us-east: {location: [39.04, -77.49]}
checks:
  web: {tcp: {port: 80}, fall: 1, rise: 1}
records:
  www:
    type: A
    ttl: 60
    ttl_degraded: 10
    check: web
    pools: {eu: [192.0.2.10, 192.0.2.11], us-east: [192.0.2.20]}
"""


def test_the_selector_reads_the_board_and_flags_degraded_answers(tmp_path: Path):
    (tmp_path / "t.example.yaml").write_text(ZONE)
    catalog, problems = load_catalog(tmp_path)
    assert catalog is not None, problems
    checks, users, _ = plan(catalog)
    board = HealthBoard()
    board.track(users, checks)
    record = next(iter(catalog.zones[0].nodes[(b"www", b"t", b"example")].dynamic.values()))
    selector = Selector([record], board)

    def serve(region: str) -> tuple[list[str], bool]:
        selection = selector.select(record, region)
        return [e.address for e in selection.endpoints], selection.degraded

    assert serve("eu") == (["192.0.2.10", "192.0.2.11"], False)
    board.record("web", "192.0.2.10", FAIL)
    assert serve("eu") == (["192.0.2.11"], True)  # the region has an endpoint down
    board.record("web", "192.0.2.11", FAIL)
    assert serve("eu") == (["192.0.2.20"], True)  # fell back to us-east
    assert serve("us-east") == (["192.0.2.20"], False)
    board.set_overrides(overrides({"192.0.2.11": UP}))
    assert serve("eu") == (["192.0.2.11"], True)
