"""Who may change state through the API: the bearer token, and what a wrong one costs the caller.

The token comes from `--api-token-file` / `api_token_file:` or else $GSLB_API_TOKEN (never from
zone YAML) and is read at each mutating call, so it can be rotated. A failed authentication is
logged (one line each, at most `LOG_BURST` lines per `LOG_PERIOD` seconds, the rest summed up in
one line), counted (`gslb_api_auth_failures_total{reason}`), and slowed: after
`api_limits.auth_failures` failures within `auth_window` from one client (an IPv4 address, an
IPv6 /64), its admin calls get 429 with Retry-After without the token being looked at, for
`auth_backoff` seconds, doubled at each repeat up to `auth_backoff_max`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gslb.api.errors import ApiError
from gslb.config.files import read_regular_file
from gslb.settings import API_TOKEN_ENV, ApiLimits

# A token file is a few bytes; a FIFO or a huge file there must not block or fill memory.
TOKEN_FILE_LIMIT = 64 * 1024

log = logging.getLogger(__name__)

LOG_BURST, LOG_PERIOD = 10, 10.0  # failed-authentication lines logged per period; the rest counted
MAX_CLIENTS = 4096  # clients remembered by the throttle; the least recently seen is forgotten first
REASONS = ("missing_token", "wrong_token", "throttled")


class TokenSource:
    """Where the admin token comes from; read at each mutating call, so it can be rotated."""

    def __init__(self, file: Path | None, environ: dict[str, str] | None = None) -> None:
        self.file = file
        self._environ = os.environ if environ is None else environ

    def describe(self) -> str:
        if self.file is not None:
            return f"token file {self.file}"
        return f"${API_TOKEN_ENV}" if self._environ.get(API_TOKEN_ENV) else "none"

    def check(self) -> str | None:
        """A one-line problem with the configured token (for start-up), or None."""
        try:
            self.token()
        except ApiError as error:
            return error.message
        return None

    def token(self) -> str | None:
        """The token; None when none is configured. ApiError when the file cannot be used."""
        if self.file is not None:
            try:
                token = read_regular_file(self.file, TOKEN_FILE_LIMIT).decode("utf-8", "replace").strip()
            except OSError as error:
                raise ApiError(503, f"api token file {self.file}: cannot read it ({error.strerror or error})") from None
            if not token:
                raise ApiError(503, f"api token file {self.file} is empty; write the token in it")
            return token
        token = self._environ.get(API_TOKEN_ENV, "").strip()
        return token or None

    def require(self, request: web.Request) -> None:
        token = self.token()
        if token is None:
            raise ApiError(403, f"admin API disabled: no token configured; set {API_TOKEN_ENV} in gslb's environment, "
                                "or pass --api-token-file FILE (api_token_file: in the server config)")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "missing token: send the header 'Authorization: Bearer TOKEN'",
                           {"WWW-Authenticate": 'Bearer realm="gslb"'})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "wrong token", {"WWW-Authenticate": 'Bearer realm="gslb", error="invalid_token"'})


def client_key(remote: str | None) -> str:
    """Whom a failure is charged to: the IPv4 address, or the IPv6 /64 (one host's usual share)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Client:
    __slots__ = ("failures", "blocked_until", "strikes", "last")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.blocked_until = 0.0
        self.strikes = 0  # blocks so far: the next one lasts auth_backoff * 2**strikes
        self.last = 0.0


class AuthThrottle:
    """Failed authentications per client within a window, and the growing block that follows."""

    def __init__(self, limits: ApiLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds the client must still wait, or None when it may try."""
        record = self._clients.get(client)
        if record is None:
            return None
        remaining = record.blocked_until - self._clock()
        return remaining if remaining > 0 else None

    def failed(self, client: str) -> float | None:
        """Count a failure; the length of the block it starts, or None."""
        limits, now = self.limits, self._clock()
        record = self._clients.pop(client, None)
        if record is None or now - record.last > limits.auth_window + limits.auth_backoff_max:
            record = _Client()  # quiet long enough: a fresh start, the backoff back to its first step
        self._clients[client] = record  # most recently seen last
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
        record.last = now
        failures = record.failures
        failures.append(now)
        while failures and failures[0] <= now - limits.auth_window:
            failures.popleft()
        if len(failures) < limits.auth_failures:
            return None
        failures.clear()
        block = min(limits.auth_backoff * 2 ** min(record.strikes, 30), limits.auth_backoff_max)
        record.strikes += 1
        record.blocked_until = now + block
        return float(block)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


class RateLimitedLog:
    """At most `burst` lines per `period` seconds through `logger`; the lines beyond are counted
    and reported in one line when the period ends, so a flood of failures cannot flood the log."""

    def __init__(self, logger: logging.Logger, what: str, burst: int = LOG_BURST, period: float = LOG_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what  # "failed admin authentications", for the summary line
        self.burst = burst
        self.period = period
        self._clock = clock
        self._start = -math.inf
        self._lines = 0
        self._suppressed = 0
        self._flush: asyncio.TimerHandle | None = None

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._start >= self.period:
            self._summarize()
            self._start, self._lines = now, 0
        if self._lines < self.burst:
            self._lines += 1
            self.logger.warning(message, *args)
            return
        self._suppressed += 1
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # summed up at the next line
            self._flush = loop.call_later(max(0.0, self._start + self.period - now), self._summarize)

    def _summarize(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._suppressed:
            self.logger.warning("%d more %s not logged in %gs (at most %d lines per %gs)",
                                self._suppressed, self.what, self.period, self.burst, self.period)
            self._suppressed = 0

    def close(self) -> None:
        self._summarize()


class Gate:
    """The admin check every mutating handler passes: throttle, token, and the record of failures."""

    def __init__(self, tokens: TokenSource, limits: ApiLimits) -> None:
        self.tokens = tokens
        self.throttle = AuthThrottle(limits)
        self.failures: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.log = RateLimitedLog(log, "failed admin authentications")
        self.block_log = RateLimitedLog(log, "admin API backoffs")  # its own budget: a flood of failures
        # must not hide the line saying who is being refused

    def require(self, request: web.Request) -> None:
        client = client_key(request.remote)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            self.failures["throttled"] += 1
            seconds = math.ceil(wait)
            raise ApiError(429, f"too many failed authentications from {client}; try again in {seconds}s",
                           {"Retry-After": str(seconds)})
        try:
            self.tokens.require(request)
        except ApiError as error:
            if error.status == 401:
                reason = "wrong_token" if error.message == "wrong token" else "missing_token"
                self.failures[reason] += 1
                self.log.warning("admin API: %s from %s on %s %s", reason.replace("_", " "), request.remote,
                                 request.method, request.path)
                block = self.throttle.failed(client)
                if block is not None:
                    self.block_log.warning("admin API: %s refused for %gs after %d failed authentications within %gs",
                                client, block, self.throttle.limits.auth_failures, self.throttle.limits.auth_window)
            raise
        self.throttle.succeeded(client)
