"""The API's connections: how many stay open and how long a client may take to send a request.

aiohttp's server has no deadline for a request head and no connection cap, so 2,000 clients that
connect and trickle header bytes hold 2,000 sockets (and file descriptors the DNS side needs).
`ApiConnection` is aiohttp's own protocol with three additions:

- a deadline: a request head must be complete within `api_limits.header_timeout` of the connection
  opening or of the previous request finishing (an idle keep-alive connection is closed at the
  same deadline); a client that sent part of a head gets a one-line 408, then the connection closes;
- a cap (`ConnectionGuard`): at `max_connections` open connections a new one makes the oldest
  connection that is not running a request close, as NSD does for TCP; when every one is busy the
  new connection gets a 503 and is closed;
- parser errors (a bad request line, a header too long) answered with the API's one-line JSON and
  logged as one line at most `LOG_BURST` per period, never as an ERROR with a traceback.

Body deadlines are the body reader's (gslb/api/body.py); aiohttp's lingering close, which drains
a body nobody read, is bounded by `body_timeout` as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gslb.api.auth import RateLimitedLog
from gslb.api.errors import error_response, raw_error
from gslb.settings import ApiLimits

log = logging.getLogger(__name__)

CLOSE_REASONS = ("header_timeout", "body_timeout", "evicted", "refused", "bad_request")
BACKLOG = 128


class ConnectionGuard:
    """Every open API connection, oldest first, and why the ones we closed were closed."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self.open: dict[ApiConnection, None] = {}  # insertion order: the oldest first
        self.closed: dict[str, int] = dict.fromkeys(CLOSE_REASONS, 0)
        self.log = RateLimitedLog(log, "API connection messages")

    def admit(self, connection: ApiConnection) -> bool:
        """Make room for `connection`; False when there is none (every open one is busy)."""
        if len(self.open) >= self.limits.max_connections:
            victim = next((c for c in self.open if not c.busy), None)
            if victim is None:
                self.closed["refused"] += 1
                self.log.warning("API: %d connections open and all busy; refused a connection from %s",
                                 len(self.open), connection.remote)
                return False
            self.closed["evicted"] += 1
            victim.close_for("evicted")
        self.open[connection] = None
        return True

    def leave(self, connection: ApiConnection) -> None:
        self.open.pop(connection, None)


class ApiConnection(RequestHandler):
    """aiohttp's HTTP protocol with a request-head deadline and a place in the ConnectionGuard."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, guard: ConnectionGuard,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.guard = guard
        self._timers = loop
        self.busy = False  # running a request's handler: never closed for room
        self.remote = "?"
        self._partial = False  # bytes of the next request arrived
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self.guard.admit(self):
            self._close_with(raw_error(503, "Service Unavailable",
                                       "too many open API connections; try again shortly"))
            return
        self._admitted = True
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._admitted:
            self.guard.leave(self)
            self._admitted = False
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and not self.busy:
            self._partial = True
        super().data_received(data)

    # -- the middleware calls these around each request's handler ---------------------------------
    def request_started(self) -> None:
        self.busy = True
        self._partial = False
        self._disarm()

    def request_finished(self) -> None:
        self.busy = False
        if self._admitted and self.transport is not None and not self.transport.is_closing():
            self._arm()

    # -- closing -----------------------------------------------------------------------------------
    def close_for(self, reason: str) -> None:
        """Close now: slow (header_timeout), or making room (evicted)."""
        self._disarm()
        if self.transport is None or self.transport.is_closing():
            return
        if self._partial and reason == "header_timeout":
            timeout = self.guard.limits.header_timeout
            self._close_with(raw_error(408, "Request Timeout", f"request head not received within {timeout:g}s"))
        else:
            self.force_close()  # closes the transport

    def _close_with(self, response: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(response)
        self.force_close()  # closes the transport once the response is written

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self._timers.call_later(self.guard.limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.busy and self.transport is not None:
            self.guard.closed["header_timeout"] += 1
            self.close_for("header_timeout")

    # -- aiohttp's hook for requests its parser refused --------------------------------------------
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self.guard.closed["bad_request"] += 1
        text = message or (str(exc) if exc is not None else "bad request")
        self.guard.log.warning("API: bad HTTP request from %s: %s", self.remote, " ".join(text.split())[:200])
        if request.writer.output_size > 0:
            raise ConnectionError("the response was started already; cannot send the error")
        response = error_response(status, f"bad HTTP request: {text}")
        response.force_close()
        return response


def connection_factory(server: web.Server, guard: ConnectionGuard) -> Callable[[], ApiConnection]:
    """The protocol factory for `loop.create_server`, in place of the `web.Server` itself."""
    limits = guard.limits
    loop = asyncio.get_running_loop()

    def make() -> ApiConnection:
        # keepalive_timeout backs up our own deadline; lingering_time bounds draining an unread body.
        return ApiConnection(server, loop=loop, guard=guard, access_log=None,
                             keepalive_timeout=limits.header_timeout * 2, lingering_time=limits.body_timeout)

    return make
