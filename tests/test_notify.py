"""Webhooks (gslb/notify.py) against a real aiohttp receiver on 127.0.0.1: the body and its
HMAC signature, retries after a 500, the bounded queue while the receiver hangs, the settings."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gslb.config.problems import Problems
from gslb.health.board import HealthBoard
from gslb.health.checks import Check, CheckTiming, HttpSpec
from gslb.health.probes import ProbeResult
from gslb.health.status import Status
from gslb.notify import Notifier
from gslb.settings import Webhook, parse_webhooks

SECRET = b"hook-secret"
A1 = "198.51.100.10"


class Receiver:
    """An HTTP endpoint that records what it gets and answers per `script` (statuses in order,
    then 200), or hangs while `hang` is set."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.hang = asyncio.Event()
        self.release = asyncio.Event()
        self.arrived = asyncio.Condition()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.arrived:
            self.received.append((dict(request.headers), body))
            self.arrived.notify_all()
        if self.hang.is_set():
            await self.release.wait()
        return web.Response(status=self.script.pop(0) if self.script else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.received) >= count), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    yield running
    await running.stop()


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_an_endpoint_change_arrives_signed_with_hmac_sha256_of_the_body(receiver: Receiver) -> None:
    notifier = Notifier((Webhook(receiver.url, secret=SECRET),), node="dns-1")
    board = HealthBoard()
    check = Check("web", HttpSpec(), CheckTiming(5.0, 2.0, 1, 1), Status.UP)
    board.track({("web", A1): ("www.example. eu",)}, {"web": check})
    board.watchers.append(notifier.endpoint_watcher(board))
    await notifier.start()
    try:
        board.record("web", A1, ProbeResult(False, "HTTP 503"))
        await receiver.wait_for(1)
    finally:
        await notifier.stop()
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Gslb-Signature"], expected)
    document = json.loads(body)
    assert headers["X-Gslb-Event"] == document["event"] == "endpoint.down"
    assert headers["X-Gslb-Delivery"] == document["id"]
    assert document["node"] == "dns-1"
    assert document["endpoint"] == {"check": "web", "address": A1, "users": ["www.example. eu"], "from": "UP",
                                    "to": "DOWN", "reason": "after 1 failure: HTTP 503", "source": "probes"}
    assert notifier.counts()[(receiver.url, "sent")] == 1


async def test_a_500_is_retried_with_backoff_and_the_same_delivery_id(receiver: Receiver) -> None:
    receiver.script = [500, 503]
    notifier = Notifier((Webhook(receiver.url, tries=3),), backoff_first=0.05)
    await notifier.start()
    try:
        notifier.alert(True, {"alert": "servfail", "message": "SERVFAIL 12.0% ..."})
        await receiver.wait_for(3)
        await until(lambda: notifier.counts()[(receiver.url, "sent")] == 1)
    finally:
        await notifier.stop()
    ids = {headers["X-Gslb-Delivery"] for headers, _ in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    assert "X-Gslb-Signature" not in receiver.received[0][0]  # no secret, no signature
    assert json.loads(receiver.received[0][1])["alert"]["alert"] == "servfail"
    delivery = notifier.as_dict()[0]
    assert (delivery["sent"], delivery["failed"], delivery["retries"]) == (1, 0, 2)


async def test_every_try_used_is_one_failure_logged_once_and_a_4xx_is_not_retried(receiver: Receiver, caplog) -> None:
    caplog.set_level(logging.INFO, "gslb.notify")
    receiver.script = [500, 500, 404]
    notifier = Notifier((Webhook(receiver.url, tries=2),), backoff_first=0.01)
    await notifier.start()
    try:
        notifier.publish("endpoint.down", {})
        notifier.publish("endpoint.up", {})
        await until(lambda: notifier.counts()[(receiver.url, "failed")] == 2)
        notifier.publish("endpoint.down", {})
        await until(lambda: notifier.counts()[(receiver.url, "sent")] == 1)
    finally:
        await notifier.stop()
    assert len(receiver.received) == 4  # 2 tries, then 1 (404 is final), then 1 sent
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"webhook {receiver.url}: endpoint.down not delivered after 2 attempt(s): HTTP 500; "
                        "counting failures in gslb_notify_total until one is delivered"]
    assert f"webhook {receiver.url}: delivering again" in caplog.text


async def test_while_the_receiver_hangs_the_queue_stays_bounded_and_drops_the_oldest(receiver: Receiver) -> None:
    receiver.hang.set()
    notifier = Notifier((Webhook(receiver.url, queue=3, timeout=30.0),))
    await notifier.start()
    try:
        notifier.publish("endpoint.down", {"n": 0})
        await receiver.wait_for(1)  # the first is in flight, held by the receiver
        for n in range(1, 11):
            notifier.publish("endpoint.down", {"n": n})
        delivery = notifier.as_dict()[0]
        assert delivery["queued"] == 3 and delivery["dropped"] == 7
        receiver.hang.clear()
        receiver.release.set()
        await until(lambda: notifier.counts()[(receiver.url, "sent")] == 4)
    finally:
        await notifier.stop()
    assert [json.loads(body)["n"] for _, body in receiver.received] == [0, 8, 9, 10]  # the newest kept, in order


async def test_a_webhook_gets_only_the_events_it_asked_for(receiver: Receiver) -> None:
    notifier = Notifier((Webhook(receiver.url, events=frozenset({"endpoint.down", "alert"})),))
    await notifier.start()
    try:
        for event in ("endpoint.up", "endpoint.down", "alert.firing", "endpoint.drain", "alert.resolved"):
            notifier.publish(event, {})
        await until(lambda: notifier.counts()[(receiver.url, "sent")] == 3)
    finally:
        await notifier.stop()
    assert [headers["X-Gslb-Event"] for headers, _ in receiver.received] == ["endpoint.down", "alert.firing",
                                                                            "alert.resolved"]


async def test_an_unreachable_receiver_never_blocks_the_caller() -> None:
    notifier = Notifier((Webhook("http://127.0.0.1:9/hook", tries=2, timeout=0.5),), backoff_first=0.01)
    await notifier.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(2000):
            notifier.publish("endpoint.down", {})
        assert loop.time() - started < 1.0
        await until(lambda: notifier.counts()[("http://127.0.0.1:9/hook", "failed")] >= 1)
    finally:
        await notifier.stop(drain=0)


@pytest.mark.parametrize("entry, problem", [
    ({"url": "ftp://127.0.0.1/x"}, "notify[0].url: must be an http:// or https:// URL with a host"),
    ({"url": "http:///nohost"}, "notify[0].url: must be an http:// or https:// URL with a host"),
    ({}, "notify[0].url: required: an http:// or https:// URL"),
    ({"url": "http://127.0.0.1/x", "events": ["endpoint.sideways"]}, "notify[0].events[0]: unknown event 'endpoint.sideways'"),
    ({"url": "http://127.0.0.1/x", "secret": ""}, "notify[0].secret: must be a non-empty string"),
    ({"url": "http://127.0.0.1/x", "tries": 0}, "notify[0].tries: must be a whole number from 1 to 20, got 0"),
    ({"url": "http://127.0.0.1/x", "timeout": "soon"}, "notify[0].timeout: must be a duration"),
    ({"url": "http://127.0.0.1/x", "retry": 3}, "notify[0].retry: unknown setting"),
    ({"url": "http://127.0.0.1/x", "secret_file": "absent"}, "notify[0].secret_file: cannot read"),
])
def test_each_webhook_mistake_is_one_problem_at_its_key_path(entry: dict[str, Any], problem: str, tmp_path: Path) -> None:
    problems = Problems("gslb.yaml")
    assert parse_webhooks([entry], problems, tmp_path) == ()
    assert len(problems) == 1 and str(list(problems)[0]).startswith(f"gslb.yaml: {problem}"), [str(p) for p in problems]


def test_a_secret_may_come_from_a_file_and_the_url_is_shown_without_credentials(tmp_path: Path) -> None:
    (tmp_path / "hook.key").write_text("from-file\n")
    problems = Problems("gslb.yaml")
    hook, = parse_webhooks([{"url": "https://user:pw@hooks.example.net/x?token=1", "secret_file": "hook.key"}],
                           problems, tmp_path)
    assert not problems and hook.secret == b"from-file"
    assert hook.shown == "https://hooks.example.net/x"
    assert "from-file" not in repr(hook)
