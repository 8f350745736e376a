"""Webhooks from a real `gslb serve`: a site going down and coming back, and the alert it raises,
each arrive at a receiver on 127.0.0.1 as a signed JSON body; /metrics and /status count them.

`www`: eu 127.0.0.161, us-east 127.0.0.162 (checked by `web`: probes 0.2 s apart, fall 2, rise 2).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from opsserver import Sites, eventually, get_json, http_sites, start_with_api, zone_text

SECRET = "webhook-secret"
EU_SITE, US_SITE = "127.0.0.161", "127.0.0.162"
RECORDS = f"  www: {{type: A, check: web, pools: {{eu: [{EU_SITE}], us-east: [{US_SITE}]}}}}\n"


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/gslb", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/gslb"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for headers, body in self.bodies:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Gslb-Signature"], expected), "a body whose signature does not verify"
            found.append(json.loads(body))
        return found


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with http_sites([EU_SITE, US_SITE]) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    yield running
    await running.stop()


async def test_a_site_going_down_and_up_and_its_alert_arrive_as_signed_webhooks(sites, receiver, tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(port=sites.port, records=RECORDS))
    config = tmp_path / "gslb.yaml"
    config.write_text(f"node_name: dns-test-1\nalerts: {{healthy_below: 0.75}}\n"
                      f"notify:\n  - {{url: '{receiver.url}', secret: {SECRET}, tries: 3}}\n")
    server, url = await asyncio.to_thread(start_with_api, zones, tmp_path / "logs", probe_name="ops.test.",
                                          config=config)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async def probed() -> bool:
                _, status = await get_json(http, f"{url}/status")
                return all(e["last_ok"] for e in status["endpoints"])

            await eventually(probed, 5, "both sites probed UP")
            await asyncio.to_thread(sites.stop, US_SITE)
            try:
                async def told(event: str, **fields: Any) -> dict[str, Any] | None:
                    return next((e for e in receiver.events() if e["event"] == event
                                 and all(e.get(k) == v or e.get("endpoint", {}).get(k) == v
                                         or e.get("alert", {}).get(k) == v for k, v in fields.items())), None)

                down = await eventually(lambda: told("endpoint.down", address=US_SITE), 5, "endpoint.down webhook")
                firing = await eventually(lambda: told("alert.firing", alert="record_unhealthy"), 5, "alert webhook")
            finally:
                await asyncio.to_thread(sites.http, US_SITE)
            up = await eventually(lambda: told("endpoint.up", address=US_SITE), 5, "endpoint.up webhook")
            resolved = await eventually(lambda: told("alert.resolved", alert="record_unhealthy"), 5, "resolved webhook")
            assert down["node"] == "dns-test-1"
            assert down["endpoint"] == {"check": "web", "address": US_SITE, "users": ["www.ops.test. us-east"],
                                        "from": "UP", "to": "DOWN", "reason": "after 2 failures: connection refused",
                                        "source": "probes"}
            assert up["endpoint"]["from"] == "DOWN" and up["endpoint"]["to"] == "UP"
            assert firing["alert"]["record"] == "www.ops.test. A" and firing["alert"]["down"] == [f"us-east {US_SITE}"]
            assert resolved["alert"]["message"] == "www.ops.test. A: 2 of 2 endpoints healthy (100%) again"
            sent = len(receiver.bodies)
            async with http.get(f"{url}/metrics") as response:
                metrics = await response.text()
            assert f'gslb_notify_total{{result="sent",webhook="{receiver.url}"}} {float(sent)}' in metrics
            assert f'gslb_notify_total{{result="dropped",webhook="{receiver.url}"}} 0.0' in metrics
            _, status = await get_json(http, f"{url}/status")
            hook, = status["notify"]
            assert (hook["url"], hook["signed"], hook["sent"], hook["failed"]) == (receiver.url, True, sent, 0)
            assert SECRET not in json.dumps(status)
    finally:
        await asyncio.to_thread(server.stop)
    assert "Traceback" not in server.stderr_text()


def test_gslb_check_names_each_webhook_mistake_by_its_key_path(tmp_path):
    import subprocess
    import sys

    from dnsserver import REPO

    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(records=RECORDS))
    config = tmp_path / "gslb.yaml"
    config.write_text("notify:\n"
                      "  - {url: 'ftp://127.0.0.1/hook'}\n"
                      "  - {url: 'http://127.0.0.1:9000/hook', events: [endpoint.sideways], tries: 0}\n")
    done = subprocess.run([sys.executable, "-m", "gslb", "check", "--zones", str(zones), "--config", str(config)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert f"{config}: notify[0].url: must be an http:// or https:// URL with a host, like " \
           "http://127.0.0.1:9000/gslb, got 'ftp://127.0.0.1/hook'" in lines
    assert any(line.startswith(f"{config}: notify[1].events[0]: unknown event 'endpoint.sideways'") for line in lines)
    assert f"{config}: notify[1].tries: must be a whole number from 1 to 20, got 0" in lines
    assert "gslb: 3 problems found" in lines
