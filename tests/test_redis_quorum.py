"""The quorum over vantages, as a health source the board merges: no Redis here, just the rules.

Verdicts go in in their wire form (what an agent publishes); the board says what DNS serves.
"""

from __future__ import annotations

from typing import Any

import pytest

from gslb.config.problems import Problems
from gslb.health.board import HealthBoard
from gslb.health.checks import Check, CheckTiming, TcpSpec, parse_check, quorum_down
from gslb.health.shared_overrides import SharedOverride, SharedOverrides
from gslb.health.sources import AdminOverrides, LocalProbes
from gslb.health.status import Status
from gslb.health.vantages import VantageVerdict, VantageVerdicts

A1 = "192.0.2.11"
KEY = ("web", A1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def check(quorum: str | int = "majority", vantages: tuple[str, ...] = (), cold_start: Status = Status.UP) -> Check:
    return Check("web", TcpSpec(80), CheckTiming(1.0, 0.5, 2, 2), cold_start, vantages, quorum)


def said(status: str, at: float, ttl: float = 3.0, reason: str = "after 2 failures: HTTP 503") -> list[Any]:
    return VantageVerdict(Status[status], reason, at - 10, 0.01 if status == "UP" else None, None, at, ttl).encode()


def world(the_check: Check, known: tuple[str, ...] = ("a", "b", "c")) -> tuple[HealthBoard, VantageVerdicts, Clock]:
    clock = Clock()
    verdicts = VantageVerdicts(known, now=clock)
    board = HealthBoard(sources=(verdicts, LocalProbes(), AdminOverrides()))
    board.track({KEY: ("www.example. eu",)}, {"web": the_check})
    return board, verdicts, clock


def feed(verdicts: VantageVerdicts, clock: Clock, **states: str) -> None:
    for vantage, status in states.items():
        verdicts.apply(vantage, {"web/" + A1: said(status, clock.now)})


@pytest.mark.parametrize("quorum, down, fresh, withdrawn", [
    ("majority", 1, 3, False), ("majority", 2, 3, True), ("majority", 1, 2, False), ("majority", 1, 1, True),
    ("all", 2, 3, False), ("all", 3, 3, True), (2, 1, 3, False), (2, 2, 3, True), (2, 1, 1, False),
    ("majority", 0, 0, False),
])
def test_quorum_rules(quorum: str | int, down: int, fresh: int, withdrawn: bool) -> None:
    assert quorum_down(quorum, down, fresh) is withdrawn


def test_one_vantage_of_three_saying_down_keeps_the_endpoint_two_withdraw_it() -> None:
    board, verdicts, clock = world(check())
    feed(verdicts, clock, a="DOWN", b="UP", c="UP")
    assert board.status(*KEY) is Status.UP
    assert board.report(*KEY).reason == "2 of 3 vantages say UP; DOWN from a short of quorum majority"
    feed(verdicts, clock, b="DOWN")
    assert board.status(*KEY) is Status.DOWN
    assert board.report(*KEY).reason == "by vantages a, b (2 of 3, quorum majority): a: after 2 failures: HTTP 503"
    assert verdicts.withdrawn_by(*KEY) == ["a", "b"]


def test_lapsed_verdicts_leave_the_quorum_to_the_rest() -> None:
    board, verdicts, clock = world(check())
    feed(verdicts, clock, a="DOWN", b="DOWN", c="UP")
    assert board.status(*KEY) is Status.DOWN
    clock.now += 2
    feed(verdicts, clock, b="DOWN", c="UP")  # a stopped renewing
    clock.now += 1.5
    verdicts.sweep()
    assert board.status(*KEY) is Status.UP  # b DOWN, c UP: 1 of 2 is no majority
    assert [r.vantage for r in verdicts.vantage_reports(*KEY)] == ["b", "c"]
    assert verdicts.expired == 1


def test_no_fresh_verdict_follows_the_checks_cold_start() -> None:
    board, verdicts, clock = world(check(cold_start=Status.DOWN))
    assert board.status(*KEY) is Status.DOWN
    assert board.report(*KEY).reason == "no fresh verdict from any vantage: cold start down"
    feed(verdicts, clock, a="UP")
    assert board.status(*KEY) is Status.UP
    clock.now += 5
    verdicts.sweep()
    assert board.status(*KEY) is Status.DOWN


def test_frozen_verdicts_do_not_lapse_and_get_one_more_lifetime_after_the_outage() -> None:
    board, verdicts, clock = world(check())
    feed(verdicts, clock, a="DOWN", b="DOWN", c="UP")
    verdicts.frozen = True
    clock.now += 60
    verdicts.sweep()
    assert board.status(*KEY) is Status.DOWN  # fail static
    verdicts.frozen = False
    verdicts.extend()
    verdicts.sweep()
    assert board.status(*KEY) is Status.DOWN
    clock.now += 3.1
    verdicts.sweep()
    assert board.status(*KEY) is Status.UP  # nobody renewed them: cold start up


def test_stale_verdicts_hand_over_to_this_nodes_probes() -> None:
    board, verdicts, clock = world(check())
    feed(verdicts, clock, a="DOWN", b="DOWN")
    assert board.status(*KEY) is Status.DOWN
    board.local.seed("web", A1, Status.DOWN, "from the last shared verdicts")
    verdicts.set_stale(True)
    assert board.status(*KEY) is Status.DOWN and board.report(*KEY).reason == "from the last shared verdicts"
    verdicts.set_stale(False)
    assert board.report(*KEY).reason.startswith("by vantages a, b")


def test_all_and_a_number() -> None:
    board, verdicts, clock = world(check("all"))
    feed(verdicts, clock, a="DOWN", b="DOWN", c="UP")
    assert board.status(*KEY) is Status.UP
    feed(verdicts, clock, c="DOWN")
    assert board.status(*KEY) is Status.DOWN
    board, verdicts, clock = world(check(1))
    feed(verdicts, clock, a="UP", b="DOWN", c="UP")
    assert board.status(*KEY) is Status.DOWN


def test_vantages_nothing_names_are_ignored_and_counted() -> None:
    board, verdicts, clock = world(check())
    feed(verdicts, clock, a="UP")
    verdicts.apply("mallory", {"web/" + A1: said("DOWN", clock.now)})
    verdicts.apply("mallory", {"web/" + A1: said("DOWN", clock.now)})
    assert board.status(*KEY) is Status.UP
    assert verdicts.ignored == {"mallory": 2}
    assert [r.vantage for r in verdicts.vantage_reports(*KEY)] == ["a"]


def test_a_check_listing_its_vantages_counts_only_those() -> None:
    board, verdicts, clock = world(check(vantages=("a", "b")), known=())
    assert verdicts.known == {"a", "b"}  # the union of the checks' vantages
    feed(verdicts, clock, a="UP", b="UP")
    verdicts.apply("c", {"web/" + A1: said("DOWN", clock.now)})
    assert verdicts.ignored == {"c": 1}
    assert board.status(*KEY) is Status.UP


def test_malformed_verdicts_are_dropped_and_counted() -> None:
    board, verdicts, clock = world(check())
    verdicts.apply("a", {"web/" + A1: ["DOWN", None, None, None, "x", clock.now, -1]})
    verdicts.apply("a", {"web/" + A1: "DOWN"})
    verdicts.apply("a", {"web/" + A1: ["SIDEWAYS", None, None, None, "x", clock.now, 3]})
    verdicts.apply("a", {"nonsense": said("DOWN", clock.now), "web/198.51.100.99": said("DOWN", clock.now)})
    assert verdicts.invalid == 3
    assert board.status(*KEY) is Status.UP and verdicts.vantage_reports(*KEY) == []


def test_status_report_shows_each_vantage_its_age_and_the_quorum() -> None:
    board, verdicts, clock = world(check())
    feed(verdicts, clock, a="DOWN", b="UP")
    clock.now += 0.5
    report = board.report(*KEY)
    assert report.vantages["a"]["status"] == "DOWN" and report.vantages["a"]["age"] == 0.5
    assert report.quorum == {"rule": "majority", "status": "UP", "in_force": True,
                             "reason": "1 of 2 vantages say UP; DOWN from a short of quorum majority"}


def test_shared_overrides_lapse_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    overrides = SharedOverrides(now=clock)
    board = HealthBoard(sources=(LocalProbes(), overrides))
    board.track({KEY: ("www.example. eu",)}, {"web": check()})
    overrides.replace({A1: SharedOverride(Status.DOWN, clock.now + 30, "node-1", clock.now).encode(),
                       "bogus": "{}"})
    assert board.status(*KEY) is Status.DOWN and overrides.invalid == 1
    assert board.report(*KEY).override_until is not None
    clock.now += 31
    caplog.set_level("INFO")
    assert [key for key, _ in overrides.lapse()] == [A1]
    assert board.status(*KEY) is Status.UP
    assert f"shared admin override {A1} down (set on node-1) lapsed" in caplog.text


@pytest.mark.parametrize("entry, problem", [
    ({"tcp": {"port": 1}, "vantages": "eu"}, "checks.web.vantages: must list the vantages"),
    ({"tcp": {"port": 1}, "vantages": ["eu", "eu"]}, "checks.web.vantages[1]: 'eu' is listed twice"),
    ({"tcp": {"port": 1}, "vantages": ["e u"]}, "checks.web.vantages[0]: must be a vantage name"),
    ({"tcp": {"port": 1}, "quorum": "most"}, "checks.web.quorum: must be majority"),
    ({"tcp": {"port": 1}, "quorum": 0}, "checks.web.quorum: must be majority"),
    ({"tcp": {"port": 1}, "quorum": 3, "vantages": ["a", "b"]}, "checks.web.quorum: 3 DOWN verdicts can never come"),
])
def test_bad_vantages_and_quorum_are_reported_at_their_key_path(entry: dict[str, Any], problem: str) -> None:
    problems = Problems("zone.yaml")
    assert parse_check("web", entry, "checks.web", problems) is None
    assert any(str(p).startswith(f"zone.yaml: {problem}") for p in problems), [str(p) for p in problems]


def test_vantages_and_quorum_parse() -> None:
    problems = Problems("zone.yaml")
    parsed = parse_check("web", {"tcp": {"port": 1}, "vantages": ["eu", "asia"], "quorum": 2}, "checks.web", problems)
    assert not problems and parsed is not None
    assert parsed.vantages == ("eu", "asia") and parsed.quorum == 2
    assert parsed.probed_from("eu") and not parsed.probed_from("us")
    assert "from eu, asia, quorum 2" in parsed.describe()
