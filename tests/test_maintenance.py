"""Maintenance windows: admin overrides with `from`/`until` in the state file and the shared store,
parsed with key paths, in force only between their edges, re-evaluated by a timer at each edge."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
import yaml

from gslb.config.problems import Problems
from gslb.health.admin import StateFile, Window, iso, parse_overrides, parse_time, read_overrides
from gslb.health.board import HealthBoard
from gslb.health.checks import Check, CheckTiming, HttpSpec
from gslb.health.shared_overrides import SharedOverride, SharedOverrides
from gslb.health.sources import AdminOverrides, LocalProbes
from gslb.health.status import Status

UP, DRAIN, DOWN = Status.UP, Status.DRAIN, Status.DOWN
A1, A2 = "198.51.100.10", "198.51.100.11"
KEY = ("web", A1)
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
WEB = Check("web", HttpSpec(), CheckTiming(5.0, 2.0, 1, 1), UP)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_window_in_the_state_file_is_a_mapping_or_a_list_of_them():
    problems = Problems("state.yaml")
    document = yaml.safe_load(f"""
{A1}: {{state: down, from: "{iso(T0 + 60)}", until: "{iso(T0 + 120)}"}}
web/{A2}:
  - {{state: drain, until: {iso(T0 + 30)}}}
  - {{state: down, from: "{iso(T0 + 3600)}"}}
192.0.2.1: {{state: up}}
""")
    overrides = parse_overrides(document, problems)
    assert not problems
    assert overrides.windows[(None, A1)] == (Window(DOWN, T0 + 60, T0 + 120),)
    assert overrides.windows[("web", A2)] == (Window(DRAIN, None, T0 + 30), Window(DOWN, T0 + 3600, None))
    assert overrides.lookup(None, "192.0.2.1") is UP  # {state: up} alone is a plain override
    assert overrides.as_mapping()[A1] == {"state": "down", "from": iso(T0 + 60), "until": iso(T0 + 120)}


@pytest.mark.parametrize("value, problem", [
    ({"state": "down", "from": "tomorrow"}, f"{A1}: from: must be an ISO 8601 time like 2026-02-01T02:00:00Z, got 'tomorrow'"),
    ({"state": "down", "until": "2027-01-15T08:00:00"}, f"{A1}: until: needs a time zone (Z for UTC, or like +01:00)"),
    ({"state": "down", "from": "2027-01-15T09:00:00Z", "until": "2027-01-15T08:00:00Z"},
     f"{A1}: until: until (2027-01-15T08:00:00Z) must be after from (2027-01-15T09:00:00Z)"),
    ({"state": "sideways", "until": "2027-01-15T08:00:00Z"}, f"{A1}: state: must be up, down or drain, got 'sideways'"),
    ({"state": "down", "when": "now"}, f"{A1}: when: unknown field; a window has state, from and until"),
    ([{"state": "down"}, "down"], f"{A1}[1]: must be up, down, drain or a window"),
])
def test_window_mistakes_are_reported_at_their_key(value, problem):
    problems = Problems("state.yaml")
    parse_overrides({A1: value}, problems)
    assert len(problems) == 1 and str(list(problems)[0]).startswith(f"state.yaml: {problem}"), list(problems)


def test_yaml_timestamps_and_offsets_are_read_as_the_same_instant():
    assert parse_time("2027-01-15T09:00:00+01:00") == parse_time("2027-01-15T08:00:00Z") == T0
    with pytest.raises(ValueError, match="needs a time of day"):
        parse_time(yaml.safe_load("d: 2027-01-15")["d"])


def admin_board(clock: Clock) -> tuple[HealthBoard, AdminOverrides]:
    admin = AdminOverrides(clock=clock)
    board = HealthBoard(clock=clock, sources=(LocalProbes(clock), admin))
    board.track({KEY: ("www.example. eu",)}, {"web": WEB})
    return board, admin


def test_a_window_does_nothing_before_from_applies_during_and_lapses_after():
    clock = Clock()
    board, admin = admin_board(clock)
    problems = Problems("state.yaml")
    board.set_overrides(parse_overrides({A1: {"state": "down", "from": iso(T0 + 60), "until": iso(T0 + 120)}},
                                        problems), "admin override (state.yaml)")
    assert board.status(*KEY) is UP
    assert board.report(*KEY).windows == [{"state": "down", "from": iso(T0 + 60), "until": iso(T0 + 120),
                                           "phase": "scheduled", "check": None, "source": "admin override (state.yaml)"}]
    clock.now = T0 + 60
    admin.advance()  # what the edge timer calls
    assert board.status(*KEY) is DOWN
    report = board.report(*KEY)
    assert report.windows[0]["phase"] == "active" and report.override == "down"
    assert report.reason == (f"by admin override (state.yaml) down (maintenance window {iso(T0 + 60)} to "
                             f"{iso(T0 + 120)})")
    assert report.override_until == iso(T0 + 120)
    clock.now = T0 + 120
    admin.advance()
    assert board.status(*KEY) is UP
    assert board.report(*KEY).windows[0]["phase"] == "past"
    clock.now = T0 + 120 + 3601
    assert board.report(*KEY).windows is None  # shown as past for an hour, then no more


async def test_the_edge_timer_opens_and_closes_a_window_with_no_query_and_logs_each_edge(caplog):
    caplog.set_level(logging.INFO)
    admin = AdminOverrides()  # the real clock: the timer waits for wall-clock edges
    board = HealthBoard(sources=(LocalProbes(), admin))
    board.track({KEY: ("www.example. eu",)}, {"web": WEB})
    await admin.start(None)
    try:
        start = math.ceil(time.time()) + 1.0  # whole seconds: the file's times have no fractions
        window = {"state": "down", "from": iso(start), "until": iso(start + 1.0)}
        board.set_overrides(parse_overrides({A1: window}, Problems("state.yaml")))
        assert board.status(*KEY) is UP
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while board.status(*KEY) is UP:
            assert loop.time() < deadline, "the window did not open"
            await asyncio.sleep(0.01)
        assert time.time() >= start
        while board.status(*KEY) is DOWN:
            assert loop.time() < deadline, "the window did not close"
            await asyncio.sleep(0.01)
        assert time.time() >= start + 1.0
        text = caplog.text
        assert f"{A1} down: maintenance window {window['from']} to {window['until']} began" in text
        assert f"{A1} down: maintenance window {window['from']} to {window['until']} ended, the override lapsed" in text
    finally:
        await admin.stop()


def test_the_api_writes_a_window_to_the_state_file_and_drops_long_past_ones(tmp_path):
    path = tmp_path / "state.yaml"
    path.write_text(f'{A2}: {{state: down, until: "{iso(T0 - 7200)}"}}\n192.0.2.1: drain\n')
    state = StateFile(path)
    state.set_override(A1, "down", start=T0 + 60, until=T0 + 120, now=T0)
    overrides, problems = read_overrides(path)
    assert problems == []
    assert overrides.as_mapping() == {A1: {"state": "down", "from": iso(T0 + 60), "until": iso(T0 + 120)},
                                      "192.0.2.1": "drain"}


def test_shared_overrides_hold_a_window_as_scheduled_until_its_from():
    clock = Clock()
    shared = SharedOverrides(now=clock)
    board = HealthBoard(clock=clock, sources=(LocalProbes(clock), shared))
    board.track({KEY: ("www.example. eu",)}, {"web": WEB})
    entry = SharedOverride(DOWN, T0 + 120, "node-1", T0, start=T0 + 60)
    assert SharedOverride.decode(entry.encode()) == entry
    shared.replace({A1: entry.encode()})
    assert board.status(*KEY) is UP and shared.next_lapse() == T0 + 60
    assert board.report(*KEY).windows[0]["phase"] == "scheduled"
    clock.now = T0 + 60
    shared.lapse()  # the link calls it at next_lapse()
    assert board.status(*KEY) is DOWN and shared.next_lapse() == T0 + 120
    assert "maintenance window, set on node-1" in board.report(*KEY).reason
    clock.now = T0 + 120
    shared.lapse()
    assert board.status(*KEY) is UP
    assert SharedOverride.decode('{"state":"down","until":1,"by":"x","at":0,"from":2}') is None  # until before from
