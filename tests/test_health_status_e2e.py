"""What /status says about health, as an operator reads it (issue 13, rough edge 3): an endpoint's
reason follows the probes from the first result on, a DOWN endpoint shows no round-trip time, and
every time - alerts included - is ISO 8601. A real `gslb serve`, real sites, HTTP.

`www` has eu 127.0.0.181 and us-east 127.0.0.182, both live at first; `web` probes 0.2s apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from dnsserver import GslbProcess
from opsserver import Sites, eventually, get_json, http_sites, start_with_api, zone_text

EU_SITE, US_SITE = "127.0.0.181", "127.0.0.182"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with http_sites([EU_SITE, US_SITE]) as running:
        yield running


@pytest.fixture(scope="module")
def api(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    base = tmp_path_factory.mktemp("health-status")
    zones = base / "zones"
    zones.mkdir()
    records = f"  www: {{type: A, check: web, pools: {{eu: [{EU_SITE}], us-east: [{US_SITE}]}}}}\n"
    (zones / "ops.test.yaml").write_text(zone_text(port=sites.port, records=records))
    config = base / "gslb.yaml"
    config.write_text("alerts: {healthy_below: 0.75}\n")  # one of two down alerts
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.", config=config)
    yield server, url
    server.stop()


async def status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    code, body = await get_json(http, f"{url}/status")
    assert code == 200
    return body


def endpoint(body: dict[str, Any], address: str) -> dict[str, Any]:
    return next(e for e in body["endpoints"] if e["address"] == address)


async def test_a_probed_endpoint_gives_the_probes_reason_not_the_cold_starts(api):
    server, url = api
    async with aiohttp.ClientSession() as http:
        async def probed() -> dict[str, Any] | None:
            found = endpoint(await status(http, url), EU_SITE)
            return found if found["last_ok"] is True else None

        found = await eventually(probed, 3, f"{EU_SITE} probed")
    assert found["status"] == "UP" and found["probed"] == "UP"
    assert found["reason"] == "after 1 success: HTTP 200", found
    assert found["rtt"] is not None and 0 < found["rtt"] < 1


async def test_a_down_endpoint_shows_no_rtt_and_the_alert_started_at_an_iso_time(api, sites):
    server, url = api
    async with aiohttp.ClientSession() as http:
        async def measured() -> dict[str, Any] | None:
            found = endpoint(await status(http, url), US_SITE)
            return found if found["rtt"] is not None else None

        await eventually(measured, 3, f"{US_SITE} measured")
        sites.stop(US_SITE)
        try:
            async def alerting() -> dict[str, Any] | None:
                body = await status(http, url)
                records = body["alerts"]["records"]
                return body if endpoint(body, US_SITE)["status"] == "DOWN" and records[0]["alerting"] else None

            body = await eventually(alerting, 5, f"{US_SITE} DOWN and the record alerting")
        finally:
            sites.http(US_SITE)
    down = endpoint(body, US_SITE)
    assert down["rtt"] is None, down
    assert down["reason"] == "after 2 failures: connection refused"
    alert, = body["alerts"]["records"]
    assert alert["record"] == "www.ops.test. A" and alert["healthy"] == 1
    assert ISO.match(alert["since"]), alert
    assert body["alerts"]["servfail"]["since"] is None
    for when in (down["last_change"], down["last_probe"], body["started_at"], body["config"]["loaded_at"]):
        assert ISO.match(when), when
