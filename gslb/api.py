"""The HTTP API (aiohttp), on the event loop that answers DNS: status, explain, metrics, admin.

    GET  /healthz                      200 when DNS is being answered from a loaded configuration
    GET  /status                       zones, regions, records, every endpoint and why, reloads, alerts
    GET  /explain?name=&type=&client=|subnet=[&down=REGION|ENDPOINT ...]
    GET  /metrics                      Prometheus text format
    POST /admin/endpoints/{address}    {"state": "up|down|drain|auto", "check": "web"}  (bearer token)
    POST /admin/reload                 reload the zones and GeoIP data, as SIGHUP does (bearer token)

Every response is JSON except /metrics; every error is one line: {"error": "field: what is wrong"}.
Mutating calls need `Authorization: Bearer TOKEN`, the token coming from `--api-token-file` /
`api_token_file:` or else the GSLB_API_TOKEN environment variable - never from zone YAML. Without
a token configured they are refused (403) with a message saying how to set one.

Nothing here can stop the server: a handler that fails answers 500 and logs the traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web
from dnslib import DNSRecord

from gslb import __version__
from gslb.alerts import record_label
from gslb.dns.answer import Answerer
from gslb.dns.server import Listener
from gslb.explain import ExplainError
from gslb.health.admin import canonical_address
from gslb.metrics import CONTENT_TYPE, exposition, registry_for
from gslb.settings import API_TOKEN_ENV, ServerSettings
from gslb.stats import QueryStats
from gslb.whatif import AssumeDownError, explain_assuming

if TYPE_CHECKING:
    from gslb.service import Runtime

log = logging.getLogger(__name__)

ADMIN_STATES = ("up", "down", "drain", "auto")  # auto: remove the override, the probes decide
EXPLAIN_PARAMETERS = ("name", "type", "client", "subnet", "down")
MAX_BODY = 64 * 1024
PATHS = ["GET /healthz", "GET /status", "GET /explain?name=&type=&client=|subnet=&down=", "GET /metrics",
         "POST /admin/endpoints/{address}", "POST /admin/reload"]


class ApiError(Exception):
    """An error for the client: the HTTP status and a one-line message naming the field."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers,
                             dumps=lambda data: json.dumps(data, separators=(",", ":")))


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the token -----------------------------------------------------------------------------------

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
                token = self.file.read_text(encoding="utf-8").strip()
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


# -- the application -----------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.message, error.headers)
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        return error_response(405, f"{request.method} is not allowed on {request.path}; use {allowed}",
                              {"Allow": allowed})
    except web.HTTPNotFound:
        return error_response(404, f"no such path: {request.path}; the API has {', '.join(PATHS)}")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"body: larger than {MAX_BODY} bytes")
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, error.reason)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a bad request must never take the server down
        log.exception("API %s %s failed", request.method, request.path_qs)
        return error_response(500, "internal error; the server log has the details")


class Api:
    def __init__(self, runtime: "Runtime", tokens: TokenSource) -> None:
        self.runtime = runtime
        self.tokens = tokens
        self.registry = registry_for(runtime)
        self._admin_lock = asyncio.Lock()  # one state-file write at a time
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)
        app.router.add_get("/", self.index)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/status", self.status)
        app.router.add_get("/explain", self.explain)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/admin/endpoints/{address}", self.set_endpoint)
        app.router.add_post("/admin/reload", self.reload)
        return app

    async def start(self, listener: Listener) -> str:
        """Bind and serve; the URL actually bound (the real port when 0 was asked). OSError when
        the address cannot be bound."""
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, listener.host, listener.port, shutdown_timeout=1.0)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        return web.json_response({"gslb": __version__, "paths": PATHS})

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
        return web.json_response(status_document(self.runtime), dumps=lambda data: json.dumps(data, indent=1))

    async def explain(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        unknown = sorted(set(query) - set(EXPLAIN_PARAMETERS))
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown parameter; expected {', '.join(EXPLAIN_PARAMETERS)}")
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
                raise ApiError(400, f"client: {client!r} is not an IP address") from None
        if subnet is not None:
            try:
                ipaddress.ip_network(subnet, strict=False)
            except ValueError:
                raise ApiError(400, f"subnet: {subnet!r} is not an address or prefix like 81.2.69.0/24") from None
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
        self.tokens.require(request)
        text = request.match_info["address"]
        try:
            address = canonical_address(text)
        except ValueError:
            raise ApiError(400, f"address: {text!r} is not an IP address") from None
        data = await _json_body(request)
        unknown = sorted(set(data) - {"state", "check"})
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown field; expected state and optionally check")
        state = data.get("state")
        if state is None:
            raise ApiError(400, f"state: required, one of {', '.join(ADMIN_STATES)}")
        if not isinstance(state, str) or state.lower() not in ADMIN_STATES:
            raise ApiError(400, f"state: must be one of {', '.join(ADMIN_STATES)}, got {state!r}")
        state = state.lower()
        check = data.get("check")
        loaded = self.runtime.loaded
        monitor = loaded.health
        if monitor is None:
            raise ApiError(409, "health state lives in the main process; send admin calls there")
        known = {key for key in monitor.board.tracked() if key[1] == address}
        if check is not None:
            checks = sorted({name for zone in loaded.catalog.zones for name in zone.checks})
            if not isinstance(check, str) or check not in checks:
                raise ApiError(400, f"check: unknown check {check!r}; the zones define {', '.join(checks) or 'none'}")
            known = {key for key in known if key[0] == check}
        if not known:
            where = f" with check {check}" if check is not None else ""
            raise ApiError(404, f"address: {address} is not an endpoint{where} of any GSLB record served")
        if monitor.state is None:
            raise ApiError(409, "no admin state file configured; start gslb serve with --state FILE "
                                "(or state: in the server config) so overrides survive a restart")
        async with self._admin_lock:
            try:
                await asyncio.to_thread(monitor.state.set_override, address, None if state == "auto" else state, check)
            except (OSError, ValueError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                log.error("admin API: cannot write %s: %s", monitor.state.path, reason)
                raise ApiError(500, f"cannot write the admin state file {monitor.state.path}: {reason}") from None
            monitor.reload_state()
        key = f"{check}/{address}" if check is not None else address
        log.info("admin API: %s set %s (from %s)", key, state, request.remote)
        reports = [monitor.board.report(*pair) for pair in sorted(known, key=lambda k: k[0] or "")]
        return web.json_response({"address": address, "check": check, "state": state,
                                  "endpoints": [endpoint_dict(r) for r in reports if r is not None]})


    async def reload(self, request: web.Request) -> web.Response:
        """Queue a reload (merged with any other pending one) and answer at once with the counts
        before it: `gslb reload` follows /status until they move."""
        self.tokens.require(request)
        reloader = self.runtime.reloader
        before = {"ok": reloader.ok, "failed": reloader.failed}
        reloader.request("api")
        log.info("admin API: reload requested (from %s)", request.remote)
        return web.json_response({"requested": True, "generation": reloader.generation, "reloads": before},
                                 status=202)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        raise ApiError(400, 'body: required, JSON like {"state": "down"}')
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"body: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ApiError(400, 'body: must be a JSON object like {"state": "down"}')
    return data


def endpoint_dict(report: Any) -> dict[str, Any]:
    """An EndpointReport for JSON: the board's words, times as ISO 8601 UTC."""
    data = asdict(report)
    data["users"] = list(report.users)
    data["last_probe"] = _iso(report.last_probe)
    data["last_change"] = _iso(report.last_change)
    return data


def token_source(settings: ServerSettings) -> TokenSource:
    return TokenSource(settings.api_token_file)


def status_document(runtime: "Runtime") -> dict[str, Any]:
    """What /status shows: the served configuration, its regions and records, every endpoint
    with its state and why, reloads, alerts."""
    settings = runtime.settings
    reloader = runtime.reloader
    loaded = runtime.loaded
    monitor = loaded.health
    zones, regions, records = [], {}, []
    for zone in loaded.catalog.zones:
        dynamic = [r for node in zone.nodes.values() for r in node.dynamic.values()]
        zones.append({"zone": zone.label, "file": zone.file, "serial": zone.serial,
                      "loaded_at": _iso(reloader.loaded_at), "gslb_records": len(dynamic)})
        if zone.region_map is not None:
            rules = zone.region_map.rules
            regions[zone.label] = {
                "regions": {name: {"location": list(rules.locations[name]) if name in rules.locations else None}
                            for name in rules.regions},
                "default_region": rules.default_region,
            }
        for record in dynamic:
            records.append({
                "record": record_label(record),
                "policy": record.policy,
                "check": record.check,
                "when_all_down": record.when_all_down if isinstance(record.when_all_down, str)
                else [e.address for e in record.when_all_down],
                "pools": {region: [e.address for e in pool] for region, pool in record.pools.items()},
            })
    return {
        "gslb": __version__,
        "node_name": settings.node_name,
        "started_at": _iso(runtime.started_at),
        "uptime_seconds": round(time.time() - runtime.started_at, 3),
        "listeners": [str(listener) for listener in runtime.listeners],
        "udp_io": runtime.server.udp_io,  # batched | per-datagram (gslb/dns/udpio.py)
        "config": {
            "zones_dir": str(settings.zones),
            "geoip": str(settings.geoip_file),
            "state_file": str(settings.state) if settings.state is not None else None,
            "generation": reloader.generation,
            "loaded_at": _iso(reloader.loaded_at),
            "reloads": {"ok": reloader.ok, "failed": reloader.failed},
            "last_reload": None if reloader.last_at is None else {
                "at": _iso(reloader.last_at), "ok": reloader.last_ok, "reason": reloader.last_reason,
                "problems": reloader.last_problems,
                "duration_ms": round((reloader.last_duration or 0) * 1000, 1),
            },
        },
        "zones": zones,
        "regions": regions,
        "records": records,
        "endpoints": [endpoint_dict(r) for r in monitor.board.reports()] if monitor is not None else [],
        "alerts": runtime.alerts.as_dict() if runtime.alerts is not None else None,
        "query_log": None if runtime.querylog is None else {
            "target": runtime.querylog.target, "sample": runtime.querylog.sample,
            "written": runtime.querylog.written, "dropped": runtime.querylog.dropped,
            "failed": runtime.querylog.errors, "pending": runtime.querylog.pending,
        },
        "api": {"url": runtime.api.url if runtime.api is not None else None,
                "admin_token": runtime.api.tokens.describe() if runtime.api is not None else "none"},
    }
