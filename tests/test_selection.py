"""Selector: region order, health, drain, degraded answers and when_all_down, without a server."""

from __future__ import annotations

import logging

import pytest

from gslb.config.dynamic import parse_dynamic
from gslb.config.problems import Problems
from gslb.geo import RegionRules
from gslb.health.status import Status
from gslb.selection import Selector

RULES = RegionRules(
    regions=("eu", "us", "asia"),
    locations={"eu": (50.1, 8.7), "us": (39.0, -77.5), "asia": (1.35, 103.8)},
    serves={"EU": "eu", "NA": "us", "AS": "asia"},
)


def record(**extra):
    entry = {"type": "A", "pools": {"eu": ["192.0.2.1", "192.0.2.2"], "us": ["198.51.100.1"], "asia": ["203.0.113.1"]},
             "policy": "all", **extra}
    problems = Problems("test")
    built = parse_dynamic((b"www", b"example"), 1, entry, "records.www", 300, RULES, set(), problems)
    assert built is not None, list(problems)
    return built


class View:
    def __init__(self, states=None, forced=()):
        self.states = states or {}
        self.forced = set(forced)

    def status(self, check, address):
        return self.states.get(address, Status.UP)

    def rtt(self, check, address):
        return None

    def load(self, check, address):
        return None

    def forced_down(self, check, address):
        return address in self.forced

    def everything_up(self):
        return not self.states

    version = 0


def addresses(selection):
    return [e.address for e in selection.endpoints]


def test_a_healthy_region_answers_its_own_pool_not_degraded():
    selection = Selector([rec := record()], View()).select(rec, "eu")
    assert addresses(selection) == ["192.0.2.1", "192.0.2.2"]
    assert (selection.region, selection.degraded) == ("eu", False)


def test_an_endpoint_down_is_left_out_and_the_answer_is_degraded():
    rec = record()
    selection = Selector([rec], View({"192.0.2.1": Status.DOWN})).select(rec, "eu")
    assert addresses(selection) == ["192.0.2.2"]
    assert selection.degraded


def test_a_dead_region_falls_back_to_the_nearest_region():
    rec = record()
    view = View({"192.0.2.1": Status.DOWN, "192.0.2.2": Status.DOWN})
    selection = Selector([rec], view).select(rec, "eu")
    assert selection.region == "us"  # Frankfurt is nearer Virginia than Singapore
    assert addresses(selection) == ["198.51.100.1"]
    assert selection.endpoints[0].degraded_record.ttl == 150  # half the TTL


def test_an_ordered_fallback_list_wins_over_distance():
    rec = record(fallback={"eu": ["asia"]})
    view = View({"192.0.2.1": Status.DOWN, "192.0.2.2": Status.DOWN})
    assert Selector([rec], view).select(rec, "eu").region == "asia"


def test_drain_serves_only_when_nothing_else_in_the_region_is_up():
    rec = record()
    view = View({"192.0.2.1": Status.DRAIN})
    assert addresses(Selector([rec], view).select(rec, "eu")) == ["192.0.2.2"]
    view = View({"192.0.2.1": Status.DRAIN, "192.0.2.2": Status.DOWN})
    assert addresses(Selector([rec], view).select(rec, "eu")) == ["192.0.2.1"]


ALL_DOWN = {a: Status.DOWN for a in ("192.0.2.1", "192.0.2.2", "198.51.100.1", "203.0.113.1")}


@pytest.mark.parametrize("mode, expected", [("all", ["192.0.2.1", "192.0.2.2"]), ("servfail", []), (["192.0.2.99"], ["192.0.2.99"])])
def test_when_all_down_modes(mode, expected):
    rec = record(when_all_down=mode)
    selection = Selector([rec], View(ALL_DOWN)).select(rec, "eu")
    assert selection.all_down
    assert addresses(selection) == expected
    assert selection.servfail == (mode == "servfail")


def test_failing_open_never_serves_an_endpoint_an_operator_set_down():
    rec = record()
    selection = Selector([rec], View(ALL_DOWN, forced={"192.0.2.1"})).select(rec, "eu")
    assert addresses(selection) == ["192.0.2.2"]
    selection = Selector([rec], View(ALL_DOWN, forced={"192.0.2.1", "192.0.2.2"})).select(rec, "eu")
    assert addresses(selection) == ["198.51.100.1"]


def test_selection_is_pure_it_never_logs_even_when_every_endpoint_is_down(caplog):
    caplog.set_level(logging.DEBUG)
    rec = record(when_all_down="servfail")
    selector = Selector([rec], View(ALL_DOWN))
    for _ in range(3):
        assert selector.select(rec, "eu").servfail
    assert Selector([rec], View()).select(rec, "eu").endpoints  # and back up
    assert caplog.records == []  # gslb/alerts.py notices an all-down record, off the query path


def test_a_fork_starts_from_the_live_rotation_and_never_moves_it():
    rec = record(policy="round_robin", answers=1)
    live = Selector([rec], View())
    assert addresses(live.select(rec, "eu")) == ["192.0.2.1"]
    fork = live.fork()
    assert addresses(fork.select(rec, "eu")) == ["192.0.2.2"]  # what the next live query gets ...
    assert addresses(fork.select(rec, "eu")) == ["192.0.2.1"]
    assert addresses(live.select(rec, "eu")) == ["192.0.2.2"]  # ... which it does: the fork took nothing
    assert fork.policy(rec) is not live.policy(rec)
    down = live.fork(View({"192.0.2.1": Status.DOWN}))
    assert addresses(down.select(rec, "eu")) == ["192.0.2.2"] and down.health is not live.health
    assert addresses(live.select(rec, "eu")) == ["192.0.2.1"]
