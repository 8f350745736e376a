"""`gslb reload` and `gslb status`: a running server's HTTP API, from the command line.

The API is the one way in: it works whatever the process is called (`python3` after a pip
install, so `pidof gslb` finds nothing), from another user, and across a container boundary.
Plain urllib: the commands must not need the server's event loop or its dependencies.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gslb.config.files import read_regular_file
from gslb.dns.server import Listener
from gslb.settings import API_TOKEN_ENV, DEFAULT_API

# A token file is a few bytes; a FIFO or a huge file there must not block or fill memory.
TOKEN_FILE_LIMIT = 64 * 1024

REQUEST_TIMEOUT = 10.0  # seconds for one HTTP exchange with the local API
POLL_INTERVAL = 0.05  # seconds between two looks at /status while a reload runs


class ControlError(Exception):
    """One line for the operator: what failed, and what to do."""


def api_url(text: str | None, configured: Listener | None = DEFAULT_API) -> str:
    """The base URL to talk to: --api as a URL or HOST:PORT, else the server config's `api:`
    (a wildcard address is reached on loopback), else the default local API."""
    if text:
        text = text.strip().rstrip("/")
        return text if "://" in text else f"http://{text}"
    if configured is None:
        raise ControlError("the server config turns the API off (api: off); gslb reload and gslb status need it: "
                           "turn it on, or pass --api URL")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(configured.host, configured.host)
    return f"http://[{host}]:{configured.port}" if ":" in host else f"http://{host}:{configured.port}"


def read_token(file: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The admin token, from the same places the server reads it: the file, else $GSLB_API_TOKEN."""
    environ = dict(os.environ) if environ is None else environ
    if file is not None:
        try:
            token = read_regular_file(file, TOKEN_FILE_LIMIT).decode("utf-8", "replace").strip()
        except OSError as error:
            raise ControlError(f"api token file {file}: cannot read it ({error.strerror or error})") from None
        if not token:
            raise ControlError(f"api token file {file} is empty; write the token in it")
        return token
    return environ.get(API_TOKEN_ENV, "").strip() or None


@dataclass(frozen=True)
class Client:
    base: str
    token: str | None = None
    timeout: float = REQUEST_TIMEOUT

    def get(self, path: str) -> dict[str, Any]:
        return self._call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", path, body if body is not None else {})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.base + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            hint = ""
            if error.code == 401 and self.token is None:
                hint = (f"; give the token the server uses: --api-token-file FILE, --config FILE (its api_token_file), "
                        f"or ${API_TOKEN_ENV}")
            raise ControlError(f"{method} {url}: HTTP {error.code}: {_error_text(error)}{hint}") from None
        except urllib.error.URLError as error:
            reason = getattr(error.reason, "strerror", None) or str(error.reason)
            raise ControlError(f"cannot reach the gslb API at {self.base}: {reason}; is gslb serve running with its "
                               "API there? pass --api URL") from None
        except (OSError, ValueError) as error:  # timeouts, bad URLs
            raise ControlError(f"cannot reach the gslb API at {self.base}: {error}; pass --api URL") from None
        try:
            document = json.loads(raw)
        except ValueError:
            raise ControlError(f"{method} {url}: the answer is not JSON; is this gslb's API?") from None
        if not isinstance(document, dict):
            raise ControlError(f"{method} {url}: the answer is not a JSON object; is this gslb's API?")
        return document


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
        message = body.get("error") if isinstance(body, dict) else None
        if isinstance(message, str):
            return message
    except (ValueError, OSError):
        pass
    return str(error.reason)


# -- gslb reload -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool | None  # None: still running when we stopped waiting
    reason: str | None
    problems: list[str]
    duration_ms: float | None
    generation: int | None
    loaded_at: str | None


def _total(reloads: dict[str, Any]) -> int:
    return int(reloads.get("ok", 0)) + int(reloads.get("failed", 0))


def _includes_api(reason: str | None) -> bool:
    # "api", "api; SIGHUP", "SIGHUP; api: www.yaml modified": the reasons merged into one reload
    return reason is not None and "api" in (part.strip() for part in reason.split(":")[0].split(";"))


def reload(client: Client, *, wait: float, clock: Callable[[], float] = time.monotonic) -> ReloadOutcome:
    """Ask for a reload, then follow /status until it has run (at most `wait` seconds)."""
    answer = client.post("/admin/reload")
    before = _total(answer.get("reloads", {}))
    deadline = clock() + wait
    while True:
        config = client.get("/status").get("config", {})
        done = _total(config.get("reloads", {}))
        last = config.get("last_reload") or {}
        # One reload may have been running when ours was asked for; the next one to start
        # carries ours, so two completions mean ours is done whatever its reason says.
        if done >= before + 2 or (done > before and _includes_api(last.get("reason"))):
            return ReloadOutcome(bool(last.get("ok")), last.get("reason"), list(last.get("problems") or []),
                                 last.get("duration_ms"), config.get("generation"), config.get("loaded_at"))
        if clock() >= deadline:
            return ReloadOutcome(None, None, [], None, None, None)
        time.sleep(POLL_INTERVAL)


# -- gslb status -----------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    if not days:
        parts.append(f"{seconds}s")
    return " ".join(parts)


def status_text(status: dict[str, Any]) -> str:
    """A short human summary of /status: what runs, where traffic can go, what is down, the
    last reload, the alerts. `--json` gives the document itself."""
    lines = []
    node = f" on {status['node_name']}" if status.get("node_name") else ""
    lines.append(f"gslb {status.get('gslb', '?')}{node}, up {_duration(status.get('uptime_seconds') or 0)} "
                 f"(since {status.get('started_at')})")
    if status.get("listeners"):
        lines.append(f"listening: {', '.join(status['listeners'])}")
    config = status.get("config", {})
    zones = status.get("zones", [])
    lines.append(f"zones:     {len(zones)} from {config.get('zones_dir')}, generation {config.get('generation')}, "
                 f"loaded {config.get('loaded_at')}")
    for zone in zones:
        lines.append(f"  {zone.get('zone')} serial {zone.get('serial')}, {zone.get('gslb_records', 0)} GSLB records")
    last = config.get("last_reload")
    reloads = config.get("reloads", {})
    if last is None:
        lines.append("reloads:   none since the start")
    else:
        result = "ok" if last.get("ok") else "FAILED, still serving the previous configuration"
        lines.append(f"reloads:   {reloads.get('ok', 0)} ok, {reloads.get('failed', 0)} failed; "
                     f"last at {last.get('at')}: {result} ({last.get('reason')}, {last.get('duration_ms')} ms)")
        for problem in last.get("problems") or []:
            lines.append(f"  {problem}")
    for zone, regions in (status.get("regions") or {}).items():
        names = ", ".join(regions.get("regions", {}))
        lines.append(f"regions:   {zone} {names} (default {regions.get('default_region')})")
    endpoints = status.get("endpoints", [])
    checked = [e for e in endpoints if e.get("check")]
    counts = {state: sum(1 for e in checked if e.get("status") == state) for state in ("UP", "DRAIN", "DOWN")}
    unchecked = len(endpoints) - len(checked)
    lines.append(f"endpoints: {len(checked)} checked: {counts['UP']} UP, {counts['DRAIN']} DRAIN, {counts['DOWN']} DOWN"
                 + (f"; {unchecked} not checked" if unchecked else ""))
    for endpoint in endpoints:
        if endpoint.get("status") == "UP":
            continue
        check = f"{endpoint['check']}/" if endpoint.get("check") else ""
        since = f" since {endpoint['last_change']}" if endpoint.get("last_change") else ""
        users = "; ".join(endpoint.get("users") or [])
        lines.append(f"  {endpoint.get('status'):5} {check}{endpoint.get('address')} ({users}){since}: "
                     f"{endpoint.get('reason')}")
    alerts = status.get("alerts")
    if alerts is not None:
        firing = [r for r in alerts.get("records", []) if r.get("alerting")]
        servfail = alerts.get("servfail", {})
        if not firing and not servfail.get("alerting"):
            lines.append("alerts:    none")
        for record in firing:
            lines.append(f"ALERT:     {record.get('record')}: {record.get('healthy')} of {record.get('total')} "
                         f"endpoints healthy; down: {', '.join(record.get('down') or [])}")
        if servfail.get("alerting"):
            lines.append(f"ALERT:     SERVFAIL {servfail.get('ratio', 0) * 100:.1f}% of {servfail.get('responses')} "
                         f"responses in the last {servfail.get('window_seconds')}s")
    return "\n".join(lines)
