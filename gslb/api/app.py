"""The HTTP API (aiohttp), on the event loop that answers DNS: status, explain, metrics, admin.

    GET  /                             the status page (a browser), or this list of paths as JSON
    GET  /ui/{asset}                   the status page's script, style and map (shipped in the package)
    GET  /healthz                      200 when DNS is being answered from a loaded configuration
    GET  /status                       zones, regions and their health, records, every endpoint and why,
                                       where each continent's clients go, recent changes, reloads, alerts
    GET  /explain?name=&type=&client=|subnet=[&down=REGION|ENDPOINT ...]
    GET  /metrics                      Prometheus text format
    POST /admin/endpoints/{address}    {"state": "up|down|drain|auto", "check": "web", "for": "30m"} or a
                                       maintenance window {"state": "down", "from": TIME, "until": TIME}
    PUT  /admin/health/{address}       an external verdict {"state": "up|down|drain", "check": "web",
                                       "for": "2m"} (gslb/health/external.py)  (bearer token)
    DELETE /admin/health/{address}     remove it (?check=web for one check's)  (bearer token)
    POST /admin/reload                 reload the zones and GeoIP data, as SIGHUP does (bearer token)

Every response is JSON except /metrics and the page; every error is one line:
{"error": "field: what is wrong"} (gslb/api/errors.py). Mutating calls need
`Authorization: Bearer TOKEN` (gslb/api/auth.py: where the token comes from, and the backoff that
follows wrong ones). What one client can cost is bounded by `api_limits:` (gslb/settings.py
ApiLimits): body size and JSON nesting (gslb/api/body.py), the time to send a request and the
number of open connections (gslb/api/connections.py). THREAT_MODEL.md has the whole picture.

Nothing here can stop the server: a handler that fails answers 500 and logs the traceback; a
client's mistake is answered and never logged as an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from dnslib import DNSRecord

from gslb import __version__
from gslb.api.auth import Gate, TokenSource
from gslb.api.body import json_object
from gslb.api.connections import BACKLOG, ApiConnection, ConnectionGuard, connection_factory
from gslb.api.errors import ApiError, error_response
from gslb.api.page import Page
from gslb.api.status import Recent, endpoint_dict, status_document
from gslb.config.problems import clip, shown
from gslb.dns.answer import Answerer
from gslb.dns.server import Listener
from gslb.explain import ExplainError
from gslb.health.admin import canonical_address, iso, parse_time
from gslb.health.checks import parse_duration
from gslb.health.external import ExternalApi
from gslb.health.monitor import OverrideError
from gslb.metrics import CONTENT_TYPE, exposition, registry_for
from gslb.settings import ApiLimits, ServerSettings
from gslb.stats import QueryStats
from gslb.whatif import AssumeDownError, explain_assuming

if TYPE_CHECKING:
    from gslb.health.monitor import HealthMonitor
    from gslb.runtime import Runtime

log = logging.getLogger(__name__)

ADMIN_STATES = ("up", "down", "drain", "auto")  # auto: remove the override, the probes decide
ADMIN_EXAMPLE = '{"state": "down"}'
EXPLAIN_PARAMETERS = ("name", "type", "client", "subnet", "down")
PATHS = ["GET /", "GET /healthz", "GET /status", "GET /explain?name=&type=&client=|subnet=&down=", "GET /metrics",
         "POST /admin/endpoints/{address}", "PUT /admin/health/{address}", "DELETE /admin/health/{address}",
         "POST /admin/reload"]
HEALTH_STATES = ("up", "down", "drain")
HEALTH_EXAMPLE = '{"state": "down", "for": "2m"}'
CLOSING_STATUSES = (408, 413)  # the rest of the request is not worth reading: close the connection

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _http_error(request: web.Request, error: web.HTTPException, limits: ApiLimits) -> web.Response:
    """aiohttp's own refusals (router, body size) in the API's words."""
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(error.allowed_methods))
        return error_response(405, f"{request.method} is not allowed on {request.path}; use {allowed}", {"Allow": allowed})
    if isinstance(error, web.HTTPNotFound):
        return error_response(404, f"no such path: {request.path}; the API has {', '.join(PATHS)}")
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return error_response(413, f"body: larger than {limits.max_body} bytes")
    return error_response(error.status, error.reason)


class Api:
    def __init__(self, runtime: Runtime, tokens: TokenSource, limits: ApiLimits | None = None) -> None:
        self.runtime = runtime
        self.limits = limits if limits is not None else runtime.settings.api_limits
        self.gate = Gate(tokens, self.limits)
        self.guard = ConnectionGuard(self.limits)
        self.recent = Recent(runtime)
        self.page = Page()
        self.registry = registry_for(runtime)
        self._admin_lock = asyncio.Lock()  # one state-file write at a time
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.url: str | None = None

    @property
    def tokens(self) -> TokenSource:
        return self.gate.tokens

    @property
    def auth_failures(self) -> dict[str, int]:
        """Failed admin authentications by reason (missing_token, wrong_token, throttled)."""
        return self.gate.failures

    @property
    def connections_closed(self) -> dict[str, int]:
        """Connections the API closed or refused, by reason (gslb/api/connections.py)."""
        return self.guard.closed

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=self.limits.max_body)
        app.router.add_get("/", self.index)
        app.router.add_get("/ui/{asset}", self.asset)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/status", self.status)
        app.router.add_get("/explain", self.explain)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/admin/endpoints/{address}", self.set_endpoint)
        app.router.add_put("/admin/health/{address}", self.put_health)
        app.router.add_delete("/admin/health/{address}", self.delete_health)
        app.router.add_post("/admin/reload", self.reload)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while its handler runs (never closed for room or slowness
        then), and turns every refusal into the one-line JSON error."""
        connection = request.protocol if isinstance(request.protocol, ApiConnection) else None
        if connection is not None:
            connection.request_started()
        try:
            response = await handler(request)
        except ApiError as error:
            response = error_response(error.status, error.message, error.headers)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = _http_error(request, error, self.limits)
        except web.RequestPayloadError as error:  # a malformed body (chunked encoding, compression)
            response = error_response(400, f"body: cannot be read ({error})")
        except (ConnectionError, asyncio.CancelledError):
            raise  # the client went away: nothing to answer, nothing to log
        except Exception:  # noqa: BLE001 - a bad request must never take the server down
            log.exception("API %s %s failed", request.method, request.path_qs)
            response = error_response(500, "internal error; the server log has the details")
        finally:
            if connection is not None:
                connection.request_finished()
        if response.status in CLOSING_STATUSES:
            response.force_close()
        return response

    async def start(self, listener: Listener) -> str:
        """Bind and serve; the URL actually bound (the real port when 0 was asked). OSError when
        the address cannot be bound."""
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        try:
            # Our own listening socket: aiohttp's TCPSite would hand connections to its protocol,
            # without the head deadline and the cap.
            server = await loop.create_server(connection_factory(runner.server, self.guard), listener.host,
                                              listener.port, backlog=BACKLOG, reuse_address=True)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._server = runner, server
        host, port = server.sockets[0].getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.recent.start()
        return self.url

    async def stop(self) -> None:
        await self.recent.stop()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.gate.log.close()
        self.gate.block_log.close()
        self.guard.log.close()

    # -- handlers --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        """A browser (Accept: text/html) gets the status page; a script, the list of paths."""
        if "text/html" in request.headers.get("Accept", ""):
            return self.page.response("index.html")
        return web.json_response({"gslb": __version__, "paths": PATHS})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["asset"]
        if not self.page.has(name):
            raise ApiError(404, f"no such asset: {name}; the page has {', '.join(self.page.names())}")
        return self.page.response(name)

    async def healthz(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        if not runtime.server.bound:
            raise ApiError(503, "no DNS listener is bound")
        loaded = runtime.loaded
        zone = loaded.catalog.zones[0]
        probe = Answerer(loaded.catalog, loaded.answerer.settings, None, stats=QueryStats())
        raw = probe.respond(DNSRecord.question(zone.label, "SOA").pack(), ipaddress.ip_address("127.0.0.1"), True)
        if raw is None or DNSRecord.parse(raw).header.rcode != 0:
            raise ApiError(503, f"the loaded configuration does not answer {zone.label} SOA")
        return web.json_response({"status": "ok", "zones": len(loaded.catalog.zones),
                                  "generation": runtime.reloader.generation})

    async def status(self, request: web.Request) -> web.Response:
        self.recent.sample()  # what changed since the last tick, so a page sees an admin call at once
        document = status_document(self.runtime, self.recent)
        # Compact unless asked: json's C encoder does not indent, and the Python one took seconds
        # of the event loop (which answers DNS) for a document with thousands of endpoints.
        if "pretty" in request.rel_url.query:
            return web.json_response(document, dumps=lambda data: json.dumps(data, indent=1))
        return web.json_response(document, dumps=lambda data: json.dumps(data, separators=(",", ":")))

    async def explain(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        unknown = sorted(set(query) - set(EXPLAIN_PARAMETERS))
        if unknown:
            raise ApiError(400, f"{clip(unknown[0])}: unknown parameter; expected {', '.join(EXPLAIN_PARAMETERS)}")
        for key in ("name", "type", "client", "subnet"):
            if len(query.getall(key, [])) > 1:
                raise ApiError(400, f"{key}: give it once")
        name = query.get("name", "").strip()
        if not name:
            raise ApiError(400, "name: required, like ?name=www.gslb.example.com")
        rtype = query.get("type", "A").strip() or "A"
        client, subnet = query.get("client"), query.get("subnet")
        if client is not None and subnet is not None:
            raise ApiError(400, "client, subnet: give one of them, not both")
        if client is not None:
            try:
                ipaddress.ip_address(client)
            except ValueError:
                raise ApiError(400, f"client: {shown(client)} is not an IP address") from None
        if subnet is not None:
            try:
                ipaddress.ip_network(subnet, strict=False)
            except ValueError:
                raise ApiError(400, f"subnet: {shown(subnet)} is not an address or prefix like 81.2.69.0/24") from None
        down = [value for value in query.getall("down", []) if value.strip()]
        try:
            result = explain_assuming(self.runtime.loaded, name, rtype, client=client, subnet=subnet, down=down)
        except (ExplainError, AssumeDownError) as error:
            raise ApiError(400, str(error)) from None
        return web.json_response({**result.as_dict(), "assume_down": down})

    async def metrics(self, request: web.Request) -> web.Response:
        body = exposition(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def set_endpoint(self, request: web.Request) -> web.Response:
        self.gate.require(request)
        text = request.match_info["address"]
        try:
            address = canonical_address(text)
        except ValueError:
            raise ApiError(400, f"address: {shown(text)} is not an IP address or a host name ending in '.'") from None
        data = await json_object(request, self.limits, ADMIN_EXAMPLE)
        unknown = sorted(set(data) - {"state", "check", "for", "from", "until"})
        if unknown:
            raise ApiError(400, f"{clip(unknown[0])}: unknown field; expected state and optionally check, for, from and until")
        lapse = _lapse(data.get("for"))
        state = data.get("state")
        if state is None:
            raise ApiError(400, f"state: required, one of {', '.join(ADMIN_STATES)}")
        if not isinstance(state, str) or state.lower() not in ADMIN_STATES:
            raise ApiError(400, f"state: must be one of {', '.join(ADMIN_STATES)}, got {shown(state)}")
        state = state.lower()
        start, until = _window(data, lapse, state)
        check = data.get("check")
        monitor, known = self._endpoint_pairs(address, check)
        async with self._admin_lock:
            try:  # into the shared store with --redis, else the state file
                await monitor.admin_override(address, None if state == "auto" else state, check, lapse=lapse,
                                             start=start, until=until)
            except (OverrideError, ValueError) as error:
                log.error("admin API: %s", error)
                raise ApiError(getattr(error, "status", 400), str(error)) from None
        self.recent.sample()
        key = f"{check}/{address}" if check is not None else address
        when = f" for {lapse:g}s" if lapse else ""
        if start is not None or until is not None:
            when = f" from {iso(start) if start is not None else 'now'} until {iso(until) if until is not None else 'removed'}"
        log.info("admin API: %s set %s%s (from %s)", key, state, when, request.remote)
        reports = [monitor.board.report(*pair) for pair in sorted(known, key=lambda k: k[0] or "")]
        body = {"address": address, "check": check, "state": state,
                "endpoints": [endpoint_dict(r) for r in reports if r is not None]}
        if start is not None or until is not None:
            body["from"] = iso(start) if start is not None else None
            body["until"] = iso(until) if until is not None else None
        return web.json_response(body)

    def _endpoint_pairs(self, address: str, check: object) -> tuple[HealthMonitor, set[tuple[str | None, str]]]:
        """The monitor and the (check, address) pairs an admin call about `address` touches;
        ApiError when the address (with that check) is no endpoint of a record served."""
        loaded = self.runtime.loaded
        monitor = loaded.health
        if monitor is None:
            raise ApiError(409, "health state lives in the main process; send admin calls there")
        known = {key for key in monitor.board.tracked() if key[1] == address}
        if check is not None:
            checks = sorted({name for zone in loaded.catalog.zones for name in zone.checks})
            if not isinstance(check, str) or check not in checks:
                raise ApiError(400, f"check: unknown check {shown(check)}; the zones define {', '.join(checks) or 'none'}")
            known = {key for key in known if key[0] == check}
        if not known:
            where = f" with check {check}" if check is not None else ""
            raise ApiError(404, f"address: {address} is not an endpoint{where} of any GSLB record served")
        return monitor, known

    async def put_health(self, request: web.Request) -> web.Response:
        """An external verdict (a monitoring system's word on an endpoint), optionally lapsing."""
        self.gate.require(request)
        address = _address(request.match_info["address"])
        data = await json_object(request, self.limits, HEALTH_EXAMPLE)
        unknown = sorted(set(data) - {"state", "check", "for"})
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown field; expected state and optionally check and for")
        lapse = _lapse(data.get("for"))
        state = data.get("state")
        if state is None:
            raise ApiError(400, f"state: required, one of {', '.join(HEALTH_STATES)}")
        if not isinstance(state, str) or state.lower() not in HEALTH_STATES:
            raise ApiError(400, f"state: must be one of {', '.join(HEALTH_STATES)} (DELETE removes the verdict), "
                                f"got {state!r}")
        state = state.lower()
        check = data.get("check")
        monitor, known = self._endpoint_pairs(address, check)
        source = _external_api(monitor)
        source.set(address, state, check, lapse=lapse, by=str(request.remote))
        self.recent.sample()
        key = f"{check}/{address}" if check is not None else address
        log.info("admin API: external health %s %s%s (from %s)", key, state, f" for {lapse:g}s" if lapse else "",
                 request.remote)
        reports = [monitor.board.report(*pair) for pair in sorted(known, key=lambda k: k[0] or "")]
        return web.json_response({"address": address, "check": check, "state": state, "for": lapse,
                                  "endpoints": [endpoint_dict(r) for r in reports if r is not None]})

    async def delete_health(self, request: web.Request) -> web.Response:
        self.gate.require(request)
        address = _address(request.match_info["address"])
        unknown = sorted(set(request.rel_url.query) - {"check"})
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown parameter; expected check")
        check = request.rel_url.query.get("check")
        monitor, known = self._endpoint_pairs(address, check)
        _external_api(monitor).set(address, None, check)
        self.recent.sample()
        log.info("admin API: external health %s removed (from %s)", f"{check}/{address}" if check else address,
                 request.remote)
        reports = [monitor.board.report(*pair) for pair in sorted(known, key=lambda k: k[0] or "")]
        return web.json_response({"address": address, "check": check, "state": None,
                                  "endpoints": [endpoint_dict(r) for r in reports if r is not None]})


    async def reload(self, request: web.Request) -> web.Response:
        """Queue a reload (merged with any other pending one) and answer at once with the counts
        before it: `gslb reload` follows /status until they move."""
        self.gate.require(request)
        reloader = self.runtime.reloader
        before = {"ok": reloader.ok, "failed": reloader.failed}
        reloader.request("api")
        log.info("admin API: reload requested (from %s)", request.remote)
        return web.json_response({"requested": True, "generation": reloader.generation, "reloads": before},
                                 status=202)


def token_source(settings: ServerSettings) -> TokenSource:
    return TokenSource(settings.api_token_file)


def _address(text: str) -> str:
    try:
        return canonical_address(text)
    except ValueError:
        raise ApiError(400, f"address: {text!r} is not an IP address or a host name ending in '.'") from None


def _external_api(monitor: HealthMonitor) -> ExternalApi:
    source = next((s for s in monitor.board.sources if isinstance(s, ExternalApi)), None)
    if source is None:
        raise ApiError(409, "this server takes no external health verdicts")
    return source


def _window(data: dict[str, object], lapse: float | None, state: str) -> tuple[float | None, float | None]:
    """`from` and `until` of an admin override (a maintenance window), as Unix times."""
    times: dict[str, float | None] = {}
    for name in ("from", "until"):
        raw = data.get(name)
        if raw is None:
            times[name] = None
            continue
        try:
            times[name] = parse_time(raw)
        except ValueError as error:
            raise ApiError(400, f"{name}: {error}") from None
    start, until = times["from"], times["until"]
    if start is None and until is None:
        return None, None
    if state == "auto":
        raise ApiError(400, "from, until: a window needs a state (up, down or drain); auto removes the override")
    if lapse is not None:
        raise ApiError(400, "for, until: give one of them (for: a duration from now; until: a time)")
    if until is not None and until <= time.time():
        raise ApiError(400, f"until: {iso(until)} is already past")
    if start is not None and until is not None and until <= start:
        raise ApiError(400, f"until: {iso(until)} must be after from ({iso(start)})")
    return start, until


def _lapse(value: object) -> float | None:
    """`for`: how long an override holds, like "30m"; None: until removed."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise ApiError(400, f"for: {error}") from None
