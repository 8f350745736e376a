"""Notifications: webhooks told, with a JSON body, of every endpoint state change and every alert.

```yaml
notify:
  - url: http://127.0.0.1:9000/gslb        # http:// or https://
    secret: s3cret                         # or secret_file: PATH; signs each body
    events: [endpoint.down, alert]         # default: every event
    timeout: 5s                            # per attempt
    tries: 5                               # attempts per event
    queue: 1000                            # events waiting; beyond, the oldest is dropped
```

Events: `endpoint.up`, `endpoint.down`, `endpoint.drain` (what DNS now serves for an endpoint:
the board's change events, gslb/health/board.py `watchers`) and `alert.firing`,
`alert.resolved` (gslb/alerts.py transitions). A body:

    {"event": "endpoint.down", "id": "5f0c...", "at": "2026-01-31T12:00:00Z", "node": "dns-1",
     "endpoint": {"check": "web", "address": "198.51.100.10", "users": ["www.example.com. eu"],
                  "from": "UP", "to": "DOWN", "reason": "after 3 failures: HTTP 503", "source": "probes"}}

Headers: `Content-Type: application/json`, `X-Gslb-Event`, `X-Gslb-Delivery` (the id: the same on
every retry, for the receiver to drop repeats), and with a secret `X-Gslb-Signature:
sha256=HEX`, the HMAC-SHA256 of the body's bytes under the secret.

Nothing here can hold up DNS: `publish()` appends to a bounded deque and returns; one asyncio task
per webhook posts the events in order through one aiohttp session, each attempt bounded by the
webhook's timeout. A connection error, a timeout, 429 or 5xx is retried after 1 s, 2 s, 4 s, ...
(at most BACKOFF_MAX) up to `tries` attempts; another status is a failure at once. While the
receiver is slow the queue fills and the oldest waiting event is dropped. Each outcome is counted
(`gslb_notify_total{webhook, result="sent|failed|dropped"}`); the log says once when a webhook
starts failing and once when it works again, not once per event.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from gslb import __version__
from gslb.settings import Webhook

if TYPE_CHECKING:
    from gslb.health.board import HealthBoard, Key
    from gslb.health.status import Status

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # seconds before the first retry; doubled at each further one
BACKOFF_MAX = 60.0
DRAIN_ON_STOP = 1.0  # seconds a stopping server gives the queues to empty
SIGNATURE_HEADER = "X-Gslb-Signature"
RESULTS = ("sent", "failed", "dropped")


def iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def signature(secret: bytes, body: bytes) -> str:
    """The X-Gslb-Signature value for `body`: "sha256=" + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Delivery:
    """One webhook's queue, its worker and its counts."""

    def __init__(self, hook: Webhook, *, backoff_first: float = BACKOFF_FIRST, backoff_max: float = BACKOFF_MAX) -> None:
        self.hook = hook
        self.name = hook.shown
        self.queue: deque[tuple[str, str, bytes]] = deque()  # (event, id, body)
        self.counts = dict.fromkeys(RESULTS, 0)
        self.retries = 0
        self.failing: str | None = None  # why the last event failed, until one is sent again
        self.last_sent_at: float | None = None
        self.in_flight = False
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def put(self, event: str, delivery_id: str, body: bytes) -> None:
        if len(self.queue) >= self.hook.queue:
            self.queue.popleft()
            self.counts["dropped"] += 1
        self.queue.append((event, delivery_id, body))
        if self._wake is not None:
            self._wake.set()

    def start(self, session: aiohttp.ClientSession) -> None:
        self._wake = asyncio.Event()
        if self.queue:
            self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(session), name=f"gslb-notify {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def idle(self) -> bool:
        return not self.queue and not self.in_flight

    async def _run(self, session: aiohttp.ClientSession) -> None:
        assert self._wake is not None
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            event, delivery_id, body = self.queue.popleft()
            self.in_flight = True
            try:
                await self._deliver(session, event, delivery_id, body)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker must outlive any one event
                log.exception("webhook %s: delivering %s failed unexpectedly", self.name, event)
                self.counts["failed"] += 1
            finally:
                self.in_flight = False

    async def _deliver(self, session: aiohttp.ClientSession, event: str, delivery_id: str, body: bytes) -> None:
        hook = self.hook
        headers = {"Content-Type": "application/json", "User-Agent": f"gslb/{__version__}",
                   "X-Gslb-Event": event, "X-Gslb-Delivery": delivery_id}
        if hook.secret is not None:
            headers[SIGNATURE_HEADER] = signature(hook.secret, body)
        delay = self._backoff_first
        reason = ""
        for attempt in range(1, hook.tries + 1):
            retry, reason = await self._attempt(session, body, headers)
            if not reason:
                self.counts["sent"] += 1
                self.last_sent_at = time.time()
                if self.failing is not None:
                    log.info("webhook %s: delivering again (%s sent)", self.name, event)
                    self.failing = None
                return
            if not retry or attempt == hook.tries:
                break
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)
        self.counts["failed"] += 1
        if self.failing is None:
            log.warning("webhook %s: %s not delivered after %d attempt(s): %s; counting failures in "
                        "gslb_notify_total until one is delivered", self.name, event, attempt, reason)
        self.failing = reason

    async def _attempt(self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> tuple[bool, str]:
        """(worth retrying, why it failed; "" when delivered)."""
        try:
            async with session.post(self.hook.url, data=body, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=self.hook.timeout)) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return False, ""
                return response.status == 429 or response.status >= 500, f"HTTP {response.status}"
        except TimeoutError:
            return True, f"no answer within {self.hook.timeout:g}s"
        except aiohttp.ClientError as error:
            return True, f"{type(error).__name__}: {error}"
        except OSError as error:
            return True, str(error.strerror or error)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.name, "events": sorted(self.hook.events) if self.hook.events is not None else None,
                "signed": self.hook.secret is not None, **self.counts, "retries": self.retries,
                "queued": len(self.queue), "queue_limit": self.hook.queue, "failing": self.failing,
                "last_sent_at": None if self.last_sent_at is None else iso(self.last_sent_at)}


class Notifier:
    """Every configured webhook; `publish()` is the one way in, cheap and synchronous."""

    def __init__(self, hooks: tuple[Webhook, ...], node: str | None = None, **options: float) -> None:
        self.deliveries = [Delivery(hook, **options) for hook in hooks]
        self.node = node
        self._session: aiohttp.ClientSession | None = None

    def publish(self, event: str, payload: dict[str, Any]) -> None:
        """Queue `event` for every webhook that wants it; never blocks, never raises for a body."""
        wanted = [delivery for delivery in self.deliveries if delivery.hook.wants(event)]
        if not wanted:
            return
        delivery_id = uuid.uuid4().hex
        document = {"event": event, "id": delivery_id, "at": iso(time.time()), "node": self.node, **payload}
        body = json.dumps(document, separators=(",", ":"), default=str).encode("utf-8")
        for delivery in wanted:
            delivery.put(event, delivery_id, body)

    # -- the producers ------------------------------------------------------------------------------
    def endpoint_watcher(self, board: HealthBoard) -> Callable[[Key, Status, Status], None]:
        """A watcher for `board.watchers`: one event per change of what DNS serves."""
        def changed(key: Key, before: Status, after: Status) -> None:
            report = board.report(*key)
            self.publish(f"endpoint.{after.name.lower()}", {"endpoint": {
                "check": key[0], "address": key[1], "users": list(report.users) if report is not None else [],
                "from": before.name, "to": after.name,
                "reason": report.reason if report is not None else "",
                "source": report.source if report is not None else None,
            }})

        return changed

    def alert(self, firing: bool, payload: dict[str, Any]) -> None:
        """A listener for gslb/alerts.py: an alert began (`firing`) or ended."""
        self.publish("alert.firing" if firing else "alert.resolved", {"alert": payload})

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._session is not None or not self.deliveries:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(4, len(self.deliveries) * 2)),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        for delivery in self.deliveries:
            delivery.start(self._session)

    async def stop(self, drain: float = DRAIN_ON_STOP) -> None:
        """Give the queues up to `drain` seconds to empty, then stop."""
        if self._session is None:
            return
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and not all(d.idle() for d in self.deliveries):
            await asyncio.sleep(0.05)
        for delivery in self.deliveries:
            await delivery.stop()
        await self._session.close()
        self._session = None

    # -- reports ----------------------------------------------------------------------------------------
    def counts(self) -> dict[tuple[str, str], int]:
        """(webhook, result) -> events, for /metrics."""
        return {(d.name, result): d.counts[result] for d in self.deliveries for result in RESULTS}

    def as_dict(self) -> list[dict[str, Any]]:
        return [delivery.as_dict() for delivery in self.deliveries]
