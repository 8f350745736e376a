"""Health from outside, over real sockets: a `gslb serve` with `external_health: {file: ...}`
withdraws and restores endpoints as the file says, takes `PUT /admin/health/ADDRESS` verdicts
that lapse, and shows which source decided in /status and explain. dnspython and dig ask.

`www`: eu 127.0.0.141, us-east 127.0.0.142 (checked by `web`, both sites live); `plain`: an
unchecked record, eu 127.0.0.143, us-east 127.0.0.144. Clients are placed by ECS (10.1/16 eu).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dnsserver import REPO, GslbProcess
from opsserver import EU, Sites, ask_async, eventually, get_json, http_sites, start_with_api, write_atomically, zone_text

TOKEN = "external-token"
EU_SITE, US_SITE, PLAIN_EU, PLAIN_US = "127.0.0.141", "127.0.0.142", "127.0.0.143", "127.0.0.144"
RECORDS = (f"  www: {{type: A, check: web, pools: {{eu: [{EU_SITE}], us-east: [{US_SITE}]}}}}\n"
           f"  plain: {{type: A, pools: {{eu: [{PLAIN_EU}], us-east: [{PLAIN_US}]}}}}\n")


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with http_sites([EU_SITE, US_SITE]) as running:
        yield running


@pytest.fixture(scope="module")
def world(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str, Path]]:
    base = tmp_path_factory.mktemp("external")
    zones = base / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(port=sites.port, records=RECORDS))
    (base / "token").write_text(TOKEN)
    external = base / "ext.txt"
    external.write_text("# the monitoring system's verdicts\n")
    config = base / "gslb.yaml"
    config.write_text("external_health: {file: ext.txt, poll_interval: 100ms}\napi_token_file: token\n")
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.", config=config)
    yield server, url, external
    server.stop()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def endpoint(status: dict[str, Any], address: str) -> dict[str, Any]:
    return next(e for e in status["endpoints"] if e["address"] == address)


async def answers(server: GslbProcess, name: str, expected: list[str], what: str, timeout: float = 5.0) -> None:
    async def check() -> bool:
        return (await ask_async(server, name, EU)) == ("NOERROR", expected)

    await eventually(check, timeout, what)


async def test_the_file_marking_an_endpoint_down_withdraws_it_and_up_brings_it_back(world, http):
    server, url, external = world
    await answers(server, "www.ops.test", [EU_SITE], "eu clients answered from eu")
    write_atomically(external, f"# maintenance by the NOC\n{EU_SITE}: down\n")
    await answers(server, "www.ops.test", [US_SITE], "eu clients sent to us-east while the file says down")
    code, status = await get_json(http, f"{url}/status")
    found = endpoint(status, EU_SITE)
    assert (found["status"], found["source"], found["probed_by"]) == ("DOWN", "external file (ext.txt)",
                                                                      "external file (ext.txt)")
    assert found["reason"] == "by external file (ext.txt): down (line 2)"
    assert status["external_health"]["file"]["verdicts"] == 1
    code, explained = await get_json(http, f"{url}/explain", params={"name": "www.ops.test", "subnet": "10.1.0.0/24"})
    assert code == 200 and explained["record"]["not_serving"][EU_SITE] == "DOWN by external file (ext.txt): down (line 2)"
    write_atomically(external, f"{EU_SITE}: up\n")
    await answers(server, "www.ops.test", [EU_SITE], "eu clients answered from eu again")
    code, status = await get_json(http, f"{url}/status")
    assert endpoint(status, EU_SITE)["source"] == "external file (ext.txt)"
    write_atomically(external, "")
    await eventually(lambda: _source(http, url, EU_SITE, "probes"), 5, "the probes deciding again")


async def _source(http: aiohttp.ClientSession, url: str, address: str, wanted: str) -> bool:
    _, status = await get_json(http, f"{url}/status")
    return endpoint(status, address)["source"] == wanted


async def test_an_unchecked_record_follows_the_file_too_and_dig_sees_it(world):
    server, _, external = world
    write_atomically(external, f"{PLAIN_EU}: down\n")
    try:
        await answers(server, "plain.ops.test", [PLAIN_US], "plain's eu endpoint withdrawn")
        dig = shutil.which("dig")
        assert dig is not None, "dig not found: install bind9-dnsutils"
        output = subprocess.run([dig, f"@{server.host}", "-p", str(server.port), "+short", "+subnet=10.1.0.0/24",
                                 "plain.ops.test", "A"], capture_output=True, text=True, timeout=10).stdout
        assert output.split() == [PLAIN_US]
    finally:
        write_atomically(external, "")
    await answers(server, "plain.ops.test", [PLAIN_EU], "plain's eu endpoint back")


async def test_a_bad_line_is_one_log_line_with_file_and_line_and_the_rest_applies(world):
    server, _, external = world
    write_atomically(external, f"{PLAIN_US}: sideways\n{PLAIN_EU}: down\n")
    try:
        await answers(server, "plain.ops.test", [PLAIN_US], "the good line applied")
        line = f"external health file {external}:1: unknown state 'sideways'; use up, down or drain; the other lines still apply"
        assert server.stderr_text().count(line) == 1
    finally:
        write_atomically(external, "")
    await answers(server, "plain.ops.test", [PLAIN_EU], "plain's eu endpoint back")


async def test_a_removed_file_keeps_the_last_verdicts(world):
    server, _, external = world
    write_atomically(external, f"{PLAIN_EU}: down\n")
    await answers(server, "plain.ops.test", [PLAIN_US], "withdrawn by the file")
    external.unlink()
    try:
        await eventually(lambda: _logged(server, f"external health file {external} does not exist"), 5, "the log line")
        assert await ask_async(server, "plain.ops.test", EU) == ("NOERROR", [PLAIN_US])
    finally:
        write_atomically(external, "")
    await answers(server, "plain.ops.test", [PLAIN_EU], "back once the file is there again")


async def _logged(server: GslbProcess, text: str) -> bool:
    return text in server.stderr_text()


async def test_put_admin_health_with_for_withdraws_then_lapses_by_itself(world, http):
    server, url, _ = world
    async with http.put(f"{url}/admin/health/{EU_SITE}", json={"state": "down", "for": "1s"}, headers=bearer()) as response:
        body = await response.json()
        assert response.status == 200, body
    assert body["endpoints"][0]["status"] == "DOWN" and body["endpoints"][0]["source"] == "external API"
    assert body["endpoints"][0]["reason"].startswith("by external API: down (from 127.0.0.1, lapses ")
    # Applied before the answer: no waiting.
    assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", [US_SITE])
    await answers(server, "www.ops.test", [EU_SITE], "the verdict lapsing after 1s", timeout=5)
    assert f"external API: {EU_SITE} down (from 127.0.0.1) lapsed; the probes decide again" in server.stderr_text()


async def test_delete_admin_health_removes_a_verdict(world, http):
    server, url, _ = world
    async with http.put(f"{url}/admin/health/{EU_SITE}", json={"state": "down", "check": "web"}, headers=bearer()) as response:
        assert response.status == 200
    assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", [US_SITE])
    async with http.delete(f"{url}/admin/health/{EU_SITE}", params={"check": "web"}, headers=bearer()) as response:
        body = await response.json()
        assert response.status == 200 and body["endpoints"][0]["status"] == "UP"
    assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", [EU_SITE])


@pytest.mark.parametrize("address, payload, headers, status, message", [
    (EU_SITE, {"state": "down"}, {}, 401, "missing token"),
    (EU_SITE, {"state": "auto"}, None, 400, "state: must be one of up, down, drain (DELETE removes the verdict)"),
    (EU_SITE, {"state": "down", "for": "soon"}, None, 400, "for: must be a duration"),
    (EU_SITE, {"state": "down", "colour": 1}, None, 400, "colour: unknown field"),
    (EU_SITE, {"state": "down", "check": "db"}, None, 400, "check: unknown check 'db'"),
    ("192.0.2.99", {"state": "down"}, None, 404, "address: 192.0.2.99 is not an endpoint"),
    ("nope", {"state": "down"}, None, 400, "address: 'nope' is not an IP address"),
])
async def test_bad_put_calls_get_one_line_naming_the_field(world, http, address, payload, headers, status, message):
    _, url, _ = world
    async with http.put(f"{url}/admin/health/{address}", json=payload,
                        headers=bearer() if headers is None else headers) as response:
        body = await response.json()
        assert response.status == status and body["error"].startswith(message), body


def test_gslb_check_reports_each_bad_line_of_the_external_file(tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(records=RECORDS))
    (tmp_path / "ext.txt").write_text(f"{EU_SITE}: down\n{US_SITE}: sideways\nnot an address: up\n")
    config = tmp_path / "gslb.yaml"
    config.write_text("external_health: {file: ext.txt}\n")
    done = subprocess.run([sys.executable, "-m", "gslb", "check", "--zones", str(zones), "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    assert f"{tmp_path / 'ext.txt'}:2: unknown state 'sideways'; use up, down or drain" in done.stderr
    assert f"{tmp_path / 'ext.txt'}:3: 'not an address' is not an IP address" in done.stderr
    assert "gslb: 2 problems found" in done.stderr
    config.write_text("external_health: {file: '', poll_interval: never}\n")
    done = subprocess.run([sys.executable, "-m", "gslb", "check", "--zones", str(zones), "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    assert f"{config}: external_health.file: required" in done.stderr
    assert f"{config}: external_health.poll_interval: must be a duration" in done.stderr
