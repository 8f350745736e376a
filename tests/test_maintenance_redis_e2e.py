"""A maintenance window through the shared overrides: set on one `gslb serve --redis` node, it is
scheduled on both, withdraws the endpoint on both at `from` and restores it at `until`."""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from dnsserver import wait_for
from opsserver import EU, ask, start_with_api, zone_text
from redisserver import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
pytest.importorskip("redis")

TOKEN = "redis-window-token"
SUBJECT, COMPANION = "127.0.0.171", "127.0.0.172"
RECORDS = f"  plain: {{type: A, pools: {{eu: [{SUBJECT}, {COMPANION}], us-east: [127.0.0.173]}}}}\n"


def iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def call(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Any, str]]]:
    base = tmp_path_factory.mktemp("redis-window")
    zones = base / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(records=RECORDS))
    redis = RedisServer(base / "redis").start()
    (base / "token").write_text(TOKEN)
    config = base / "node.yaml"
    config.write_text(f"redis: {redis.url}\napi_token_file: {base / 'token'}\n")
    started = []
    try:
        for index in (1, 2):
            started.append(start_with_api(zones, base / "logs", config=config, node_name=f"node-{index}",
                                          probe_name="ops.test."))
        yield started
    finally:
        for node, _ in started:
            node.stop()
        redis.stop()


def serving(nodes: list[tuple[Any, str]]) -> list[bool]:
    return [SUBJECT in ask(node, "plain.ops.test", EU)[1] for node, _ in nodes]


def test_a_shared_window_opens_and_closes_on_every_node(nodes):
    assert serving(nodes) == [True, True]
    start = math.ceil(time.time()) + 2.0
    until = start + 2.0
    body = call(nodes[0][1], f"/admin/endpoints/{SUBJECT}", {"state": "down", "from": iso(start), "until": iso(until)})
    assert body["endpoints"][0]["windows"][0]["phase"] == "scheduled"
    wait_for(lambda: next(e for e in call(nodes[1][1], "/status")["endpoints"] if e["address"] == SUBJECT)
             .get("windows"), 2, "the window scheduled on the other node")
    assert serving(nodes) == [True, True] and time.time() < start
    wait_for(lambda: serving(nodes) == [False, False], 5, "both nodes withdrawing it at from")
    assert time.time() >= start - 0.05
    found = next(e for e in call(nodes[1][1], "/status")["endpoints"] if e["address"] == SUBJECT)
    assert found["override"] == "down" and found["windows"][0]["phase"] == "active"
    assert "maintenance window, set on node-1" in found["reason"]
    wait_for(lambda: serving(nodes) == [True, True], 5, "both nodes serving it again at until")
    assert time.time() >= until - 0.05
