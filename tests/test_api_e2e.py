"""The HTTP API as an operator uses it: a real `gslb serve`, real sites on 127.0.0.x, aiohttp client.

One server for the module: `www` (eu 127.0.0.111, us-east 127.0.0.121) and `pair` (eu 127.0.0.112
and .113, us-east 127.0.0.122), all checked by `web` (probes 0.2s apart, fall 2, rise 2); an admin
state file and a token file. Clients are placed by ECS subnet (10.1/16 eu, 10.2/16 us-east).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from dnsserver import GslbProcess
from opsserver import (
    EU,
    US,
    Sites,
    ask,
    ask_async,
    ecs_scope,
    eventually,
    get_json,
    http_sites,
    post_json,
    start_with_api,
    zone_text,
)

TOKEN = "s3cret-token"
WWW = {"eu": ["127.0.0.111"], "us-east": ["127.0.0.121"]}
PAIR = {"eu": ["127.0.0.112", "127.0.0.113"], "us-east": ["127.0.0.122"]}
ADDRESSES = [a for pools in (WWW, PAIR) for pool in pools.values() for a in pool]


def records() -> str:
    def line(name: str, pools: dict[str, list[str]]) -> str:
        text = ", ".join(f"{region}: [{', '.join(addresses)}]" for region, addresses in pools.items())
        return f"  {name}: {{type: A, ttl: 60, ttl_degraded: 10, check: web, pools: {{{text}}}}}\n"
    return line("www", WWW) + line("pair", PAIR)


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with http_sites(ADDRESSES) as running:
        yield running


@pytest.fixture(scope="module")
def zones(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("api") / "zones"
    directory.mkdir()
    (directory / "ops.test.yaml").write_text(zone_text(port=sites.port, records=records(), serial=2026010101))
    return directory


@pytest.fixture(scope="module")
def api(zones: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str, Path]]:
    base = zones.parent
    (base / "token").write_text(TOKEN + "\n")
    state = base / "state.yaml"
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.",
                                 extra=["--state", str(state), "--api-token-file", str(base / "token")])
    yield server, url, state
    server.stop()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def admin(url: str, address: str) -> str:
    return f"{url}/admin/endpoints/{address}"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def endpoint(status: dict, address: str, check: str = "web") -> dict:
    return next(e for e in status["endpoints"] if e["address"] == address and e["check"] == check)


# -- read-only ---------------------------------------------------------------------------------------

async def test_healthz_is_ok_while_dns_answers(api, http):
    server, url, _ = api
    assert ask(server, "hello.ops.test", rdtype="TXT") == ("NOERROR", ['"hello"'])
    status, body = await get_json(http, f"{url}/healthz")
    assert status == 200 and body["status"] == "ok" and body["zones"] == 1


async def test_status_lists_zones_regions_records_and_endpoints(api, http, zones):
    _, url, _ = api
    status, body = await get_json(http, f"{url}/status")
    assert status == 200
    assert body["zones"] == [{"zone": "ops.test.", "file": str(zones / "ops.test.yaml"), "serial": 2026010101,
                              "loaded_at": body["config"]["loaded_at"], "gslb_records": 2}]
    assert list(body["regions"]["ops.test."]["regions"]) == ["eu", "us-east"]
    assert body["regions"]["ops.test."]["default_region"] == "us-east"
    assert {r["record"]: r["pools"] for r in body["records"]} == {"www.ops.test. A": WWW, "pair.ops.test. A": PAIR}
    assert {(e["check"], e["address"]) for e in body["endpoints"]} == {("web", a) for a in ADDRESSES}
    www_eu = endpoint(body, "127.0.0.111")
    assert www_eu["users"] == ["www.ops.test. eu"] and www_eu["override"] is None


async def test_status_reflects_a_probe_failure_with_its_reason_then_the_recovery(api, http, sites):
    server, url, _ = api

    async def www_eu() -> dict:
        return endpoint((await get_json(http, f"{url}/status"))[1], "127.0.0.111")

    await eventually(lambda: _matches(www_eu(), status="UP", last_ok=True), 3, "127.0.0.111 probed healthy")
    sites.stop("127.0.0.111")
    try:
        down = await eventually(lambda: _matches(www_eu(), status="DOWN"), 3, "127.0.0.111 DOWN in /status")
        assert down["probed"] == "DOWN" and down["last_ok"] is False
        assert down["last_result"] == "connection refused"
        assert down["reason"] == "after 2 failures: connection refused"
        assert down["failures"] >= 2 and down["last_change"].endswith("Z")
        # ... and DNS agrees: eu clients are sent to us-east.
        assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", ["127.0.0.121"])
    finally:
        sites.http("127.0.0.111")
    up = await eventually(lambda: _matches(www_eu(), status="UP"), 3, "127.0.0.111 UP again")
    assert up["reason"] == "after 2 successes: HTTP 200" and up["last_result"] == "HTTP 200"
    assert up["rtt"] is not None and 0 < up["rtt"] < 1


async def _matches(report_coroutine, **expected) -> dict | None:  # type: ignore[no-untyped-def]
    report = await report_coroutine
    return report if all(report.get(key) == value for key, value in expected.items()) else None


@pytest.mark.parametrize("subnet, region, answer", [(EU, "eu", ["127.0.0.111"]), (US, "us-east", ["127.0.0.121"])])
async def test_explain_says_what_dns_answers(api, http, subnet, region, answer):
    server, url, _ = api
    await eventually(lambda: _equal(ask_async(server, "www.ops.test", subnet), ("NOERROR", answer)), 3, "normal answer")
    status, body = await get_json(http, f"{url}/explain", params={"name": "www.ops.test", "subnet": f"{subnet}/24"})
    assert status == 200
    dns_answer = await ask_async(server, "www.ops.test", subnet)
    assert (body["rcode"], sorted(body["answer"])) == dns_answer
    assert body["region"] == region and body["rule"].startswith("subnet ")
    assert body["scope_prefix"] == ecs_scope(server, "www.ops.test", subnet)
    assert body["ttl"] == 60 and body["assume_down"] == []


async def _equal(coroutine, expected):  # type: ignore[no-untyped-def]
    return (await coroutine) == expected


async def test_explain_what_if_a_region_is_down_changes_nothing_live(api, http):
    server, url, _ = api
    params = [("name", "pair.ops.test"), ("subnet", f"{EU}/24"), ("down", "eu")]
    status, body = await get_json(http, f"{url}/explain", params=params)
    assert status == 200, body
    assert body["answer"] == ["127.0.0.122"] and body["ttl"] == 10  # us-east, at the degraded TTL
    assert body["assume_down"] == ["eu"]
    params = [("name", "pair.ops.test"), ("subnet", f"{EU}/24"), ("down", "127.0.0.112")]
    status, body = await get_json(http, f"{url}/explain", params=params)
    assert body["answer"] == ["127.0.0.113"]
    params = [("name", "pair.ops.test"), ("subnet", f"{EU}/24"), ("down", "127.0.0.112"), ("down", "127.0.0.113")]
    assert (await get_json(http, f"{url}/explain", params=params))[1]["answer"] == ["127.0.0.122"]
    # The drill left the live state alone.
    assert await ask_async(server, "pair.ops.test", EU) == ("NOERROR", ["127.0.0.112", "127.0.0.113"])
    status, body = await get_json(http, f"{url}/status")
    assert all(e["status"] == "UP" for e in body["endpoints"] if e["address"] in PAIR["eu"])
    assert "no healthy endpoint" not in server.stderr_text()


@pytest.mark.parametrize("params, message", [
    ({}, "name: required"),
    ({"name": "www.ops.test", "type": "BOGUS"}, "type: unknown record type 'BOGUS'"),
    ({"name": "www.ops.test", "client": "10.1.0.300"}, "client: '10.1.0.300' is not an IP address"),
    ({"name": "www.ops.test", "subnet": "10.1.0.0/33"}, "subnet: '10.1.0.0/33' is not an address or prefix"),
    ({"name": "www.ops.test", "client": "10.1.0.1", "subnet": "10.1.0.0/24"}, "client, subnet: give one of them"),
    ({"name": "www.ops.test", "colour": "red"}, "colour: unknown parameter"),
    ({"name": "www.ops.test", "down": "mars"}, "down: 'mars' is neither a region nor an endpoint address"),
    ({"name": "www.ops.test", "down": "192.0.2.1"}, "down: 192.0.2.1 is not an endpoint of any GSLB record"),
    ({"name": "www..ops.test"}, "name: "),
])
async def test_bad_explain_requests_get_400_naming_the_field(api, http, params, message):
    _, url, _ = api
    async with http.get(f"{url}/explain", params=params) as response:
        text = await response.text()
        assert response.status == 400, text
        assert response.content_type == "application/json"
    assert "\n" not in text.strip()
    assert json.loads(text)["error"].startswith(message), text


async def test_unknown_paths_and_methods_get_json_errors(api, http):
    _, url, _ = api
    status, body = await get_json(http, f"{url}/nope")
    assert status == 404 and body["error"].startswith("no such path: /nope")
    status, body, _ = await post_json(http, f"{url}/status")
    assert status == 405 and body["error"].startswith("POST is not allowed on /status")
    async with http.get(admin(url, "127.0.0.111")) as response:
        assert response.status == 405


# -- admin -------------------------------------------------------------------------------------------

async def test_admin_refuses_a_missing_or_wrong_token_with_401(api, http):
    _, url, state = api
    status, body, _ = await post_json(http, admin(url, "127.0.0.112"), json={"state": "down"})
    assert status == 401 and body["error"].startswith("missing token")
    status, body, _ = await post_json(http, admin(url, "127.0.0.112"), json={"state": "down"}, headers=bearer("nope"))
    assert status == 401 and body["error"] == "wrong token"
    assert not state.exists() or "127.0.0.112" not in state.read_text()


@pytest.mark.parametrize("address, payload, status, message", [
    ("127.0.0.112", "{not json", 400, "body: not valid JSON"),
    ("127.0.0.112", "[1, 2]", 400, "body: must be a JSON object"),
    ("127.0.0.112", "{}", 400, "state: required, one of up, down, drain, auto"),
    ("127.0.0.112", '{"state": "sideways"}', 400, "state: must be one of up, down, drain, auto, got 'sideways'"),
    ("127.0.0.112", '{"state": 1}', 400, "state: must be one of"),
    ("127.0.0.112", '{"state": "down", "colour": "red"}', 400, "colour: unknown field"),
    ("127.0.0.112", '{"state": "down", "check": "nope"}', 400, "check: unknown check 'nope'"),
    ("not-an-ip", '{"state": "down"}', 400, "address: 'not-an-ip' is not an IP address"),
    ("192.0.2.200", '{"state": "down"}', 404, "address: 192.0.2.200 is not an endpoint"),
])
async def test_bad_admin_requests_get_an_error_naming_the_field(api, http, address, payload, status, message):
    _, url, state = api
    got, body, text = await post_json(http, admin(url, address), data=payload,
                                      headers={**bearer(), "Content-Type": "application/json"})
    assert got == status and body["error"].startswith(message), text
    assert "\n" not in text.strip()


async def test_admin_override_changes_dns_answers_now_and_auto_gives_back_to_the_probes(api, http):
    server, url, state = api
    assert await ask_async(server, "pair.ops.test", EU) == ("NOERROR", ["127.0.0.112", "127.0.0.113"])
    status, body, text = await post_json(http, admin(url, "127.0.0.112"), json={"state": "down"}, headers=bearer())
    assert status == 200, text
    assert body["state"] == "down" and body["endpoints"][0]["status"] == "DOWN"
    assert body["endpoints"][0]["override"] == "down"
    # Applied before the response: no waiting.
    assert await ask_async(server, "pair.ops.test", EU) == ("NOERROR", ["127.0.0.113"])
    assert "127.0.0.112: down" in state.read_text()
    status, body, _ = await post_json(http, admin(url, "127.0.0.113"), json={"state": "drain", "check": "web"},
                                      headers=bearer())
    assert status == 200 and body["check"] == "web" and body["endpoints"][0]["status"] == "DRAIN"
    assert "web/127.0.0.113: drain" in state.read_text()
    assert await ask_async(server, "pair.ops.test", EU) == ("NOERROR", ["127.0.0.113"])  # drained: last resort
    for address, check in (("127.0.0.112", None), ("127.0.0.113", "web")):
        payload = {"state": "auto", **({"check": check} if check else {})}
        status, body, _ = await post_json(http, admin(url, address), json=payload, headers=bearer())
        assert status == 200 and body["endpoints"][0]["override"] is None
    assert await ask_async(server, "pair.ops.test", EU) == ("NOERROR", ["127.0.0.112", "127.0.0.113"])
    assert "admin API: 127.0.0.112 set down (from 127.0.0.1)" in server.stderr_text()


async def test_admin_override_survives_a_restart(zones, http, tmp_path):
    (tmp_path / "token").write_text(TOKEN)
    state = tmp_path / "state.yaml"
    extra = ["--state", str(state), "--api-token-file", str(tmp_path / "token")]
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.", extra=extra)
    try:
        status, _, text = await post_json(http, admin(url, "127.0.0.121"), json={"state": "down"}, headers=bearer())
        assert status == 200, text
        assert await ask_async(server, "www.ops.test", US) == ("NOERROR", ["127.0.0.111"])
    finally:
        assert server.stop() == 0
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.", extra=extra)
    try:
        # From the first answer on, before any probe could matter.
        assert ask(server, "www.ops.test", US) == ("NOERROR", ["127.0.0.111"])
        status, body = await get_json(http, f"{url}/status")
        assert endpoint(body, "127.0.0.121")["override"] == "down"
    finally:
        server.stop(signal.SIGINT)
    assert "Traceback" not in server.stderr_text()


async def test_without_a_token_admin_calls_are_refused_with_how_to_set_one(zones, http, tmp_path, monkeypatch):
    monkeypatch.delenv("GSLB_API_TOKEN", raising=False)
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.",
                                 extra=["--state", str(tmp_path / "state.yaml")])
    try:
        status, body, _ = await post_json(http, admin(url, "127.0.0.112"), json={"state": "down"}, headers=bearer())
        assert status == 403
        assert "no token configured; set GSLB_API_TOKEN" in body["error"] and "--api-token-file" in body["error"]
        assert not (tmp_path / "state.yaml").exists()
    finally:
        server.stop()


async def test_the_token_can_come_from_the_environment(zones, http, tmp_path, monkeypatch):
    monkeypatch.setenv("GSLB_API_TOKEN", "from-env")
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.",
                                 extra=["--state", str(tmp_path / "state.yaml")])
    try:
        status, _, _ = await post_json(http, admin(url, "127.0.0.112"), json={"state": "down"}, headers=bearer())
        assert status == 401
        status, body, text = await post_json(http, admin(url, "127.0.0.112"), json={"state": "drain"},
                                             headers=bearer("from-env"))
        assert status == 200, text
        assert (tmp_path / "state.yaml").read_text().strip().endswith("127.0.0.112: drain")
    finally:
        server.stop()


async def test_status_has_region_health_routes_per_continent_and_recent_changes(api, http, sites):
    server, url, _ = api

    async def document() -> dict:
        return (await get_json(http, f"{url}/status"))[1]

    async def eu_is(word: str) -> dict | None:
        body = await document()
        return body if body["regions"]["ops.test."]["regions"]["eu"]["health"] == word else None

    body = await eventually(lambda: eu_is("up"), 3, "eu up")
    eu = body["regions"]["ops.test."]["regions"]["eu"]
    assert eu["location"] == [50.11, 8.68] and eu["counts"] == {"UP": 3, "DRAIN": 0, "DOWN": 0}
    assert eu["endpoints"] == [["web", "127.0.0.111"], ["web", "127.0.0.112"], ["web", "127.0.0.113"]]
    europe = body["routing"]["ops.test."]["EU"]
    assert europe["region"] == "eu" and europe["rule"].startswith("nearest eu")
    assert europe["records"]["www.ops.test. A"] == {"region": "eu", "all_down": False}
    sites.stop("127.0.0.111")
    try:
        body = await eventually(lambda: eu_is("degraded"), 3, "eu degraded")
        europe = body["routing"]["ops.test."]["EU"]
        assert europe["records"]["www.ops.test. A"] == {"region": "us-east", "all_down": False}  # fell back
        assert europe["records"]["pair.ops.test. A"] == {"region": "eu", "all_down": False}
        change = body["recent"]["health_changes"][0]
        assert (change["check"], change["address"], change["from"], change["to"]) == ("web", "127.0.0.111", "UP", "DOWN")
        assert change["reason"].startswith("after 2 failures") and change["at"].endswith("Z")
        assert await ask_async(server, "www.ops.test", EU) == ("NOERROR", ["127.0.0.121"])  # DNS agrees
    finally:
        sites.http("127.0.0.111")
    await eventually(lambda: eu_is("up"), 3, "eu up again")
    for _ in range(20):
        ask(server, "hello.ops.test", rdtype="TXT")

    async def counted() -> dict | None:
        traffic = (await document())["recent"]["traffic"]
        return traffic if traffic["by_rcode"].get("NOERROR", 0) > 0 else None

    traffic = await eventually(counted, 4, "queries counted in the rates", interval=0.3)
    assert traffic["qps"] > 0 and traffic["by_region"] and traffic["history"]
    reloads = (await document())["recent"]["reloads"]
    assert reloads[-1]["reason"] == "start" and reloads[-1]["ok"] is True


async def test_status_is_compact_json_unless_pretty_is_asked(api, http):
    _, url, _ = api
    async with http.get(f"{url}/status") as response:
        compact = await response.text()
    async with http.get(f"{url}/status?pretty") as response:
        pretty = await response.text()
    assert "\n" not in compact.strip() and pretty.count("\n") > 10
    assert json.loads(compact)["zones"] == json.loads(pretty)["zones"]
