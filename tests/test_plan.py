"""Plans (gslb/plan.py): what a GSLB answer depends on besides the client, kept per health
version; and the policies' schedules they step (gslb/policy/base.py), against plain picks."""

from __future__ import annotations

import random

import pytest

from gslb import plan as plan_module
from gslb.dynamic import Endpoint
from gslb.health.status import Status
from gslb.plan import Planner
from gslb.policy import POLICIES
from gslb.policy.base import MAX_PERIOD
from gslb.selection import Selector
from test_selection import View, record


def endpoints(*weights: int, region: str = "eu") -> list[Endpoint]:
    return [Endpoint(region, f"192.0.2.{index + 10}", weight, None, None) for index, weight in enumerate(weights)]


def names(picked) -> list[str]:
    return [e.address for e in picked]


@pytest.mark.parametrize("name", ["weighted", "round_robin"])
def test_stepping_a_schedule_is_picking_through_health_changes(name):
    """A laid-out schedule, stepped or picked from in any mix, gives exactly the sequence of a
    policy that never laid one out, across changes of the healthy set and forks."""
    rng = random.Random(5)
    for _ in range(300):
        pool = endpoints(*(rng.choice([0, 1, 1, 2, 3, 5, 10, 100]) for _ in range(rng.randint(1, 6))))
        count = rng.choice([0, 1, 2, 3])
        reference, scheduled = POLICIES[name](), POLICIES[name]()
        for _ in range(rng.randint(1, 5)):
            healthy = [e for e in pool if rng.random() < 0.7] or pool[:1]
            schedule = scheduled.schedule(healthy, count)
            for _ in range(rng.randint(0, 200)):
                expected = names(reference.pick(healthy, count, 0))
                if schedule is not None and schedule.live and rng.random() < 0.7:
                    assert names(schedule.choices[schedule.step()]) == expected
                else:
                    assert names(scheduled.pick(healthy, count, 0)) == expected
            if rng.random() < 0.3:
                twin, copy = reference.fork(), scheduled.fork()
                assert [names(twin.pick(healthy, count, 0)) for _ in range(20)] == \
                       [names(copy.pick(healthy, count, 0)) for _ in range(20)]


def test_weighted_schedules_from_zero_are_one_period_long():
    schedule = POLICIES["weighted"]().schedule(endpoints(5, 1, 1), 0)
    assert schedule is not None and schedule.end == 7 and schedule.loop == 0
    assert "".join("abc"[names(endpoints(5, 1, 1)).index(schedule.choices[schedule.step()][0].address)]
                   for _ in range(14)) == "aabacaa" * 2
    reduced = POLICIES["weighted"]().schedule(endpoints(700, 300), 0)
    assert reduced is not None and reduced.end == 10  # the running values repeat after 7 + 3


def test_a_period_too_long_to_lay_out_picks_per_query_and_is_not_tried_again():
    policy = POLICIES["weighted"]()
    healthy = endpoints(1_000_000, 1)
    assert policy.schedule(healthy, 0) is None
    assert policy._aperiodic  # remembered: replanning on every health change would redo the work
    assert names(policy.pick(healthy, 0, 0)) == ["192.0.2.10"]
    assert POLICIES["round_robin"]().schedule(endpoints(*[1] * (MAX_PERIOD + 1)), 0) is None


def test_a_plan_holds_until_the_health_version_moves():
    rec = record(policy="round_robin")
    view = View()
    planner = Planner(Selector([rec], view))
    plans: dict = {}
    first = planner.plan(rec, "eu", plans)
    assert first.schedule is not None and not first.degraded and first.label == "eu"
    assert [names(first.endpoints(0)) for _ in range(3)] == [["192.0.2.1"], ["192.0.2.2"], ["192.0.2.1"]]
    view.states = {"192.0.2.1": Status.DOWN}
    view.version = 1
    second = planner.plan(rec, "eu", plans)
    assert second.version == 1 and second.degraded and names(second.endpoints(0)) == ["192.0.2.2"]
    assert plans == {"eu": second} and len(planner) == 1


@pytest.mark.parametrize("mode, label, servfail, answer", [
    ("servfail", "", True, None),
    ("all", "eu", False, ["192.0.2.1"]),
    (["192.0.2.99"], "", False, ["192.0.2.99"]),
])
def test_plans_for_each_when_all_down(mode, label, servfail, answer):
    rec = record(when_all_down=mode, policy="failover")
    view = View({a: Status.DOWN for a in ("192.0.2.1", "192.0.2.2", "198.51.100.1", "203.0.113.1")})
    made = Planner(Selector([rec], view)).plan(rec, "eu", {})
    assert (made.label, made.servfail, made.degraded) == (label, servfail, True)
    if answer is not None:
        assert names(made.endpoints(0)) == answer
        assert made.bodies and made.bodies[0][1] == len(answer)


def test_the_plan_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(plan_module, "MAX_PLANS", 3)
    rec = record(policy="round_robin")
    planner = Planner(Selector([rec], View()))
    first: dict = {}
    second: dict = {}
    for region in ("eu", "us", "asia"):
        planner.plan(rec, region, first)
    assert len(planner) == 3
    planner.plan(rec, None, second)  # the fourth: everything is dropped, then it is kept
    assert first == {} and list(second) == [None] and len(planner) == 1
