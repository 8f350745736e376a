"""A reload is a transaction for health: one that fails (its self-test, or validation of the new
endpoints) changes no endpoint's state. A real `gslb serve`, real sites on 127.0.0.x, /status over
HTTP.

`www` has eu 127.0.0.171 (nothing answers there: DOWN after `fall` probes) and us-east
127.0.0.172 (a live site). The new configurations drop 171 and add 173. Before the fix, a reload
that failed after the health monitor had taken the new catalog re-applied the old one, and 171
came back at its cold start: UP, serving a dead site until the probes withdrew it again.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import dnsserver
from dnsserver import GslbProcess
from opsserver import EU, Sites, ask_async, eventually, get_json, sites_on, start_with_api, write_atomically, zone_text

DEAD, LIVE, NEW = "127.0.0.171", "127.0.0.172", "127.0.0.173"
FAULT = Path(__file__).resolve().parent / "selftest_fault.py"


def zone(port: int, eu: str, serial: int) -> str:
    return zone_text("reload.test.", port=port, serial=serial,
                     records=f"  www: {{type: A, check: web, pools: {{eu: [{eu}], us-east: [{LIVE}]}}}}\n")


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    running = sites_on([DEAD, LIVE, NEW])
    running.http(LIVE, NEW)
    yield running
    running.close()


@pytest.fixture
def world(sites: Sites, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GslbProcess, str, Path, Path]]:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "reload.test.yaml").write_text(zone(sites.port, DEAD, 1))
    fault = tmp_path / "self-test-fails"
    monkeypatch.setenv("GSLB_TEST_SELF_TEST_FAILS", str(fault))
    monkeypatch.setattr(dnsserver, "gslb_command", lambda *args: [sys.executable, str(FAULT), *args])
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="reload.test.")
    yield server, url, zones, fault
    server.stop()
    assert "Traceback" not in server.stderr_text(), server.stderr_text()


async def endpoints(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, Any]]:
    status, body = await get_json(http, f"{url}/status")
    assert status == 200
    return {e["address"]: e for e in body["endpoints"]}


async def reloads(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    return (await get_json(http, f"{url}/status"))[1]["config"]["reloads"]


async def failed_once_more(http: aiohttp.ClientSession, url: str, before: dict[str, int]) -> dict[str, int] | None:
    now = await reloads(http, url)
    return now if now["failed"] == before["failed"] + 1 else None


async def dead_is_down(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    found = (await endpoints(http, url)).get(DEAD)
    return found if found is not None and found["status"] == "DOWN" else None


async def test_a_reload_failing_its_self_test_leaves_a_down_endpoint_down(world, sites):
    server, url, zones, fault = world
    async with aiohttp.ClientSession() as http:
        before = await eventually(lambda: dead_is_down(http, url), 5, f"{DEAD} DOWN (nothing answers there)")
        assert await ask_async(server, "www.reload.test", EU) == ("NOERROR", [LIVE])
        counts = await reloads(http, url)
        fault.touch()
        write_atomically(zones / "reload.test.yaml", zone(sites.port, NEW, 2))  # drops DEAD, adds NEW
        server.process.send_signal(signal.SIGHUP)
        await eventually(lambda: failed_once_more(http, url, counts), 5, "the reload to fail its self-test")
        after = await endpoints(http, url)
        assert set(after) == {DEAD, LIVE}  # NEW never started; DEAD never forgotten
        assert after[DEAD]["status"] == "DOWN"
        assert after[DEAD]["last_change"] == before["last_change"]  # not re-created at its cold start
        assert after[DEAD]["failures"] >= before["failures"]
        assert await ask_async(server, "www.reload.test", EU) == ("NOERROR", [LIVE])
        assert "self-test: failed on purpose" in server.stderr_text()
        assert f"{DEAD} UP" not in server.stderr_text() and "cold start" not in after[DEAD]["reason"]
        # Once the self-test passes, the same change goes through: DEAD forgotten, NEW serving.
        fault.unlink()
        counts = await reloads(http, url)
        server.process.send_signal(signal.SIGHUP)

        async def reloaded() -> dict[str, int] | None:
            now = await reloads(http, url)
            return now if now["ok"] == counts["ok"] + 1 else None

        await eventually(reloaded, 5, "the reload to succeed")
        assert set(await endpoints(http, url)) == {NEW, LIVE}
        assert await ask_async(server, "www.reload.test", EU) == ("NOERROR", [NEW])


async def test_a_reload_whose_checks_conflict_leaves_endpoint_state_alone(world, sites):
    server, url, zones, _ = world
    async with aiohttp.ClientSession() as http:
        before = await eventually(lambda: dead_is_down(http, url), 5, f"{DEAD} DOWN (nothing answers there)")
        counts = await reloads(http, url)
        # Drop DEAD, add NEW, and define the shared check name `web` differently in a second zone:
        # the health plan refuses it, after validation of each file passed.
        write_atomically(zones / "reload.test.yaml", zone(sites.port, NEW, 2))
        other = zone_text("other.test.", port=sites.port + 1 if sites.port < 65535 else 1, serial=1)
        write_atomically(zones / "other.test.yaml", other)
        server.process.send_signal(signal.SIGHUP)
        now = await eventually(lambda: failed_once_more(http, url, counts), 5, "the reload to fail")
        assert now["ok"] == counts["ok"]
        status, body = await get_json(http, f"{url}/status")
        assert any("checks.web: differs from check 'web'" in p for p in body["config"]["last_reload"]["problems"]), body
        after = await endpoints(http, url)
        assert set(after) == {DEAD, LIVE}
        assert (after[DEAD]["status"], after[DEAD]["last_change"]) == ("DOWN", before["last_change"])
