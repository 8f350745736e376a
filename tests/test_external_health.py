"""Health from outside (gslb/health/external.py): the extfile's lines, the file watcher that keeps
its last good verdicts, the API's verdicts that lapse at their time, and where they sit in the
board's merge (before the probes, under the admin overrides)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from types import MappingProxyType

import pytest

from gslb.config.problems import Problems
from gslb.health.admin import Overrides
from gslb.health.board import HealthBoard
from gslb.health.checks import Check, CheckTiming, HttpSpec
from gslb.health.external import ExternalApi, ExternalFile, parse_lines
from gslb.health.probes import ProbeResult
from gslb.health.sources import AdminOverrides, LocalProbes
from gslb.health.status import Status
from gslb.settings import ExternalHealthSettings

UP, DRAIN, DOWN = Status.UP, Status.DRAIN, Status.DOWN
A1, A2, A6 = "198.51.100.10", "198.51.100.11", "2001:db8::10"
WEB = Check("web", HttpSpec(), CheckTiming(5.0, 2.0, 1, 1), UP)


def test_lines_are_address_or_check_slash_address_then_a_state_with_comments_and_gdnsd_arrows():
    text = ("# written by the monitoring system\n"
            "\n"
            f"{A1}: down\n"
            f"web/{A2}: Drain   # one check only\n"
            f"{A6}: up\n"
            "2001:0db8::11 => DOWN\n")
    verdicts, problems = parse_lines(text, "ext.txt")
    assert problems == []
    assert verdicts == {(None, A1): (DOWN, "line 3"), ("web", A2): (DRAIN, "line 4"), (None, A6): (UP, "line 5"),
                        (None, "2001:db8::11"): (DOWN, "line 6")}


def test_each_bad_line_is_one_problem_with_file_and_line_and_the_rest_still_apply():
    text = (f"{A1}: sideways\n"
            "www.example.com: down\n"
            "just words\n"
            f"{A2}: down\n"
            f"/{A2}: up\n"
            f"{A2}: up\n")
    verdicts, problems = parse_lines(text, "ext.txt")
    assert [str(p) for p in problems] == [
        "ext.txt:1: unknown state 'sideways'; use up, down or drain",
        "ext.txt:2: 'www.example.com' is not an IP address; keys are an endpoint address or CHECK/ADDRESS",
        "ext.txt:3: 'just words' is not ADDRESS: STATE (up, down or drain)",
        f"ext.txt:5: '/{A2}': the check name before '/' is empty; keys are an endpoint address or CHECK/ADDRESS",
        f"ext.txt:6: {A2} is also on line 4; this later line wins",
    ]
    assert verdicts == {(None, A2): (UP, "line 6")}


def board_with(*sources) -> HealthBoard:
    board = HealthBoard(sources=(*sources, LocalProbes(), AdminOverrides()))
    board.track({("web", A1): ("www.example. eu",), ("web", A2): ("www.example. eu",),
                 (None, A6): ("plain.example. eu",)}, {"web": WEB})
    return board


def test_an_external_verdict_decides_before_the_probes_and_the_probes_decide_what_it_does_not_name(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    api = ExternalApi()
    board = board_with(api)
    api.set(A1, "down", by="192.0.2.99")
    assert board.status("web", A1) is DOWN and board.status("web", A2) is UP
    board.record("web", A1, ProbeResult(True, "HTTP 200"))  # the probes' UP does not revive it
    assert board.status("web", A1) is DOWN
    report = board.report("web", A1)
    assert (report.source, report.probed_by, report.probed) == ("external API", "external API", "DOWN")
    assert report.reason == "by external API: down (from 192.0.2.99)"
    assert "www.example. eu 198.51.100.10 DOWN by external API: down (from 192.0.2.99)" in caplog.text
    board.record("web", A2, ProbeResult(False, "HTTP 503"))
    assert board.status("web", A2) is DOWN and board.report("web", A2).source == "probes"
    api.set(A1, None)
    assert board.status("web", A1) is UP and board.report("web", A1).source == "probes"


def test_unchecked_records_take_external_verdicts_too():
    api = ExternalApi()
    board = board_with(api)
    api.set(A6, "down")
    assert board.status(None, A6) is DOWN
    assert board.report(None, A6).source == "external API"


def test_admin_overrides_stay_on_top_of_external_verdicts():
    api = ExternalApi()
    board = board_with(api)
    api.set(A1, "down")
    board.set_overrides(Overrides(MappingProxyType({A1: UP})))
    assert board.status("web", A1) is UP
    report = board.report("web", A1)
    assert (report.source, report.probed_by, report.probed, report.override) == ("admin override", "external API", "DOWN", "up")


async def test_an_api_verdict_with_for_lapses_at_its_time_without_any_query(caplog):
    caplog.set_level(logging.INFO)
    api = ExternalApi()
    board = board_with(api)
    await api.start(None)
    try:
        api.set(A1, "down", lapse=0.2)
        assert board.status("web", A1) is DOWN
        assert board.report("web", A1).reason.startswith("by external API: down (set through the API, lapses 20")
        deadline = asyncio.get_running_loop().time() + 3
        while board.status("web", A1) is DOWN:  # the timer, not a query, brings it back
            assert asyncio.get_running_loop().time() < deadline, "the verdict did not lapse"
            await asyncio.sleep(0.02)
        assert api.lapsed == 1
        assert f"external API: {A1} down (set through the API) lapsed; the probes decide again" in caplog.text
    finally:
        await api.stop()


def settings_for(path: Path, **options) -> ExternalHealthSettings:
    return ExternalHealthSettings(path, **options)


async def test_the_file_is_re_read_when_it_changes_and_a_missing_file_keeps_the_last_verdicts(tmp_path, caplog):
    caplog.set_level(logging.INFO, "gslb.health.external")
    path = tmp_path / "ext.txt"
    path.write_text(f"{A1}: down\n")
    watched = ExternalFile(settings_for(path))
    board = board_with(watched)
    assert watched.load()
    assert board.status("web", A1) is DOWN
    assert board.report("web", A1).source == "external file (ext.txt)"
    assert await watched.poll() is False  # unchanged: not read again
    temporary = tmp_path / ".ext.tmp"
    temporary.write_text(f"{A1}: up\n{A2}: oops\n")
    os.replace(temporary, path)
    assert await watched.poll() is True
    assert board.status("web", A1) is UP
    assert f"external health file {path}:2: unknown state 'oops'; use up, down or drain; the other lines still apply" \
        in caplog.text
    path.write_text(f"{A1}: down\n")
    await watched.poll()
    caplog.clear()
    path.unlink()
    assert await watched.poll() is False
    assert await watched.poll() is False
    assert board.status("web", A1) is DOWN  # the last good verdicts hold
    gone = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    assert gone == [f"external health file {path} does not exist; keeping the last 1 verdict(s)"]


async def test_a_fifo_or_an_oversized_file_is_refused_and_the_last_verdicts_kept(tmp_path, caplog):
    path = tmp_path / "ext.txt"
    path.write_text(f"{A1}: down\n")
    watched = ExternalFile(settings_for(path, max_size=64))
    board = board_with(watched)
    watched.load()
    path.write_text("# " + "x" * 100 + "\n")
    assert await watched.poll() is False
    assert watched.failing is not None and "limit" in watched.failing
    path.unlink()
    os.mkfifo(path)
    assert await asyncio.wait_for(watched.poll(), 5) is False  # never waits for a writer
    assert "FIFO" in watched.failing
    assert board.status("web", A1) is DOWN


def test_external_health_settings_are_checked_with_key_paths(tmp_path):
    problems = Problems("gslb.yaml")
    assert ExternalHealthSettings.parse({"file": "", "poll_interval": "soon", "colour": 1}, problems, tmp_path) is None
    assert [str(p) for p in problems] == [
        "gslb.yaml: external_health.colour: unknown setting; expected one of file, poll_interval, max_size",
        "gslb.yaml: external_health.file: required: the path of the verdict file (lines like `192.0.2.10: down`)",
        "gslb.yaml: external_health.poll_interval: must be a duration like 5s, 500ms or 1m, got 'soon'",
    ]
    problems = Problems("gslb.yaml")
    parsed = ExternalHealthSettings.parse({"file": "ext.txt", "poll_interval": "250ms", "max_size": "1MiB"}, problems,
                                          tmp_path)
    assert not problems and parsed == ExternalHealthSettings(tmp_path / "ext.txt", 0.25, 1 << 20)


@pytest.mark.parametrize("state", ["up", "down", "drain"])
def test_every_state_is_a_verdict(state):
    api = ExternalApi()
    board = board_with(api)
    api.set(A1, state, check="web")
    assert board.status("web", A1) is {"up": UP, "down": DOWN, "drain": DRAIN}[state]
    with pytest.raises(ValueError):
        api.set(A1, "auto")


def test_a_verdict_for_one_address_merges_only_that_addresses_pairs_not_the_catalog():
    asked: list[tuple[str | None, str]] = []

    class Spy(AdminOverrides):  # the override layer is asked for every pair merged
        def verdict(self, check, address):
            asked.append((check, address))
            return super().verdict(check, address)

    api = ExternalApi()
    board = HealthBoard(sources=(api, LocalProbes(), Spy()))
    users = {("web", f"10.0.{i // 256}.{i % 256}"): ("x",) for i in range(2000)}
    users[("db", "10.0.0.5")] = ("y",)
    board.track(users, {"web": WEB, "db": Check("db", HttpSpec(), CheckTiming(5.0, 2.0, 1, 1), UP)})
    asked.clear()
    api.set("10.0.0.5", "down")
    assert board.status("web", "10.0.0.5") is DOWN and board.status("db", "10.0.0.5") is DOWN
    assert sorted(set(asked)) == [("db", "10.0.0.5"), ("web", "10.0.0.5")]
