"""Maintenance windows over real sockets: `POST /admin/endpoints/ADDRESS` with `from`/`until`
withdraws the endpoint at `from` and restores it at `until`, with no query needed at the edges;
/status shows the window scheduled, active and past; mistakes get one line naming the field.

`www`: eu 127.0.0.151, us-east 127.0.0.152 (checked by `web`, both sites live).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dnsserver import GslbProcess
from opsserver import EU, Sites, ask_async, eventually, get_json, http_sites, post_json, start_with_api, zone_text

TOKEN = "window-token"
EU_SITE, US_SITE = "127.0.0.151", "127.0.0.152"
RECORDS = f"  www: {{type: A, check: web, pools: {{eu: [{EU_SITE}], us-east: [{US_SITE}]}}}}\n"


def iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with http_sites([EU_SITE, US_SITE]) as running:
        yield running


@pytest.fixture(scope="module")
def world(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str, Path]]:
    base = tmp_path_factory.mktemp("windows")
    zones = base / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(port=sites.port, records=RECORDS))
    (base / "token").write_text(TOKEN)
    state = base / "state.yaml"
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.",
                                 extra=["--state", str(state), "--api-token-file", str(base / "token")])
    yield server, url, state
    server.stop()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def endpoint(http: aiohttp.ClientSession, url: str, address: str) -> dict[str, Any]:
    _, status = await get_json(http, f"{url}/status")
    return next(e for e in status["endpoints"] if e["address"] == address)


async def test_a_window_in_the_near_future_withdraws_and_restores_the_endpoint_at_its_edges(world, http):
    server, url, state = world
    assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", [EU_SITE])
    start = math.ceil(time.time()) + 2.0  # whole seconds: times are written to the second
    until = start + 2.0
    window = {"state": "down", "from": iso(start), "until": iso(until)}
    status, body, text = await post_json(http, f"{url}/admin/endpoints/{EU_SITE}", json=window, headers=bearer())
    assert status == 200, text
    assert (body["from"], body["until"]) == (iso(start), iso(until))
    assert body["endpoints"][0]["windows"][0]["phase"] == "scheduled"
    assert f"from: '{iso(start)}'" in state.read_text()
    # Before `from`: nothing changes.
    assert time.time() < start
    assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", [EU_SITE])

    async def answered(expected: str) -> bool:
        return (await ask_async(server, "www.ops.test", EU)) == ("NOERROR", [expected])

    await eventually(lambda: answered(US_SITE), 5, "the endpoint withdrawn at from")
    assert time.time() >= start - 0.05  # not before its time (the loop's timer may round a little)
    found = await endpoint(http, url, EU_SITE)
    assert found["status"] == "DOWN" and found["override"] == "down"
    assert found["windows"][0]["phase"] == "active"
    assert found["reason"] == f"by admin override ({state.name}) down (maintenance window {iso(start)} to {iso(until)})"
    await eventually(lambda: answered(EU_SITE), 5, "the endpoint back at until")
    assert time.time() >= until - 0.05
    found = await endpoint(http, url, EU_SITE)
    assert found["status"] == "UP" and found["windows"][0]["phase"] == "past"
    log = server.stderr_text()
    assert f"{EU_SITE} down: maintenance window {iso(start)} to {iso(until)} began" in log
    assert f"{EU_SITE} down: maintenance window {iso(start)} to {iso(until)} ended, the override lapsed" in log


async def test_an_override_with_for_is_kept_in_the_state_file_as_a_window(world, http):
    server, url, state = world
    status, body, text = await post_json(http, f"{url}/admin/endpoints/{US_SITE}", json={"state": "drain", "for": "60m"},
                                         headers=bearer())
    assert status == 200, text
    assert body["endpoints"][0]["status"] == "DRAIN" and body["endpoints"][0]["override_until"] is not None
    assert f"{US_SITE}:\n  state: drain\n  until:" in state.read_text()
    status, _, _ = await post_json(http, f"{url}/admin/endpoints/{US_SITE}", json={"state": "auto"}, headers=bearer())
    assert status == 200 and US_SITE not in state.read_text()


@pytest.mark.parametrize("payload, message", [
    ({"state": "down", "from": "tomorrow"}, "from: must be an ISO 8601 time"),
    ({"state": "down", "until": "2030-01-01T00:00:00"}, "until: needs a time zone"),
    ({"state": "down", "from": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
     "until: 2030-01-01T00:00:00Z must be after from (2030-01-02T00:00:00Z)"),
    ({"state": "down", "until": "2020-01-01T00:00:00Z"}, "until: 2020-01-01T00:00:00Z is already past"),
    ({"state": "down", "for": "1m", "until": "2030-01-01T00:00:00Z"}, "for, until: give one of them"),
    ({"state": "auto", "until": "2030-01-01T00:00:00Z"}, "from, until: a window needs a state"),
])
async def test_window_mistakes_get_one_line_naming_the_field(world, http, payload, message):
    _, url, state = world
    before = state.read_text() if state.exists() else ""
    status, body, text = await post_json(http, f"{url}/admin/endpoints/{EU_SITE}", json=payload, headers=bearer())
    assert status == 400 and body["error"].startswith(message), text
    assert (state.read_text() if state.exists() else "") == before
