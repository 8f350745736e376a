"""What a hostile or careless HTTP client can cost the API, over real sockets (issue 11 item 7).

Each server runs with small `api_limits:` from a server config file, so the deadlines and caps are
reached in a second. Raw sockets play the clients aiohttp's client will not be (slow heads, broken
request lines); aiohttp's client plays the rest; prometheus-client's parser reads /metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import GslbProcess, wait_for
from opsserver import ask, eventually, get_json, http_sites, start_with_api, zone_text

TOKEN = "limits-token"
ADDRESS = "127.0.0.131"


def start(base: Path, sites, **limits: object) -> tuple[GslbProcess, str]:  # type: ignore[no-untyped-def]
    zones = base / "zones"
    zones.mkdir(parents=True, exist_ok=True)
    records = f"  www: {{type: A, check: web, pools: {{eu: [{ADDRESS}], us-east: [{ADDRESS}]}}}}\n"
    (zones / "ops.test.yaml").write_text(zone_text(port=sites.port, records=records))
    (base / "token").write_text(TOKEN)
    config = base / "gslb.yaml"
    config.write_text("api_limits: " + json.dumps(limits) + "\n")  # JSON is YAML
    return start_with_api(zones, base / "logs", probe_name="ops.test.", config=config,
                          extra=["--state", str(base / "state.yaml"), "--api-token-file", str(base / "token")])


@pytest.fixture(scope="module")
def sites():  # type: ignore[no-untyped-def]
    with http_sites([ADDRESS]) as running:
        yield running


@pytest.fixture(scope="module")
def api(sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    server, url = start(tmp_path_factory.mktemp("limits"), sites, header_timeout="1s", body_timeout="1s",
                        max_json_depth=32, max_connections=20)
    yield server, url
    server.stop()


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host.strip("[]"), int(port)


def connect(url: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(host_port(url), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; (bytes, seconds it took). Fails after `timeout`."""
    started = time.monotonic()
    data = b""
    sock.settimeout(timeout)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {timeout}s; got {data!r}") from None
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def body_of(response: bytes) -> str:
    return response.partition(b"\r\n\r\n")[2].decode()


def no_tracebacks(server: GslbProcess) -> None:
    stderr = server.stderr_text()
    for word in ("Traceback", "RecursionError", "Error handling request", "ERROR"):
        assert word not in stderr, stderr[-3000:]


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset], float]:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def open_fds(server: GslbProcess) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


# -- bodies ----------------------------------------------------------------------------------------

async def test_a_deeply_nested_body_gets_a_one_line_400_and_no_traceback(api, http):
    server, url = api
    async with http.post(f"{url}/admin/endpoints/{ADDRESS}", data="[" * 60000, headers=bearer()) as response:
        text = await response.text()
    assert response.status == 400 and "\n" not in text, text
    assert json.loads(text) == {"error": "body: JSON nested deeper than 32 levels"}
    status, body = await get_json(http, f"{url}/healthz")
    assert status == 200 and body["status"] == "ok"
    no_tracebacks(server)


@pytest.mark.parametrize("payload, message", [
    ('{"state": ' + "[" * 32 + "]" * 32 + "}", "body: JSON nested deeper than 32 levels"),  # 33 with the object
    ('{"state": ' + "[" * 31 + "]" * 31 + "}", "state: must be one of"),  # 32 levels: parsed, then refused
    ('{"state": "down", "check": "' + "[" * 100 + '"}', "check: unknown check"),  # brackets in a string
    ('{"state": "down", "check": "\\"' + "[" * 100 + "]" * 100 + "}", "body: JSON nested deeper than 32 levels"),
    ('{"state": "down"' + "}" * 50, "body: not valid JSON"),
    ("\xff", "body: not UTF-8"),
])
async def test_json_nesting_is_counted_outside_strings(api, http, payload, message):
    server, url = api
    async with http.post(f"{url}/admin/endpoints/{ADDRESS}", data=payload.encode("latin-1"), headers=bearer()) as response:
        text = await response.text()
    assert response.status == 400 and json.loads(text)["error"].startswith(message), text
    no_tracebacks(server)


async def test_a_body_over_the_size_limit_is_refused_from_its_content_length(api):
    server, url = api
    with connect(url) as sock:
        sock.sendall(f"POST /admin/endpoints/{ADDRESS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode())
        response, _ = read_until_closed(sock, 5)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body_of(response)) == {"error": "body: 100000 bytes is larger than 65536 bytes"}
    no_tracebacks(server)


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes(api):
    server, url = api
    with connect(url) as sock:
        sock.sendall(f"POST /admin/endpoints/{ADDRESS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{".encode())
        response, took = read_until_closed(sock, 5)
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert json.loads(body_of(response)) == {"error": "body: not received within 1s"}
    assert 0.8 < took < 3
    no_tracebacks(server)


# -- heads and connections ---------------------------------------------------------------------------

def test_a_slow_request_head_is_closed_at_the_deadline_with_a_one_line_408(api):
    _, url = api
    with connect(url) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        response, took = read_until_closed(sock, 5)
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert json.loads(body_of(response)) == {"error": "request head not received within 1s"}
    assert 0.8 < took < 3


def test_a_trickled_head_does_not_reset_the_deadline(api):
    _, url = api
    with connect(url) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        for index in range(30):  # a header byte every 0.1 s: would go on for 3 s
            try:
                sock.sendall(b"X"[:1] if index % 2 else b"-")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
                break
        took = time.monotonic() - started
    assert closed and took < 2.5, f"still open after {took:.1f}s"


def test_an_idle_connection_is_closed_without_a_word(api):
    _, url = api
    with connect(url) as sock:
        response, took = read_until_closed(sock, 5)
    assert response == b"" and 0.8 < took < 3


def test_a_kept_alive_connection_is_closed_when_idle_past_the_deadline(api):
    _, url = api
    with connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response, took = read_until_closed(sock, 5)
    assert response.startswith(b"HTTP/1.1 200 ") and b'"status": "ok"' in response
    assert 0.8 < took < 3


def test_malformed_http_gets_a_one_line_json_400_and_no_traceback(api):
    server, url = api
    for request in (b"BLAH\r\n\r\n", b"GET /status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"):
        with connect(url) as sock:
            sock.sendall(request)
            response, _ = read_until_closed(sock, 5)
        assert response.split(b" ", 2)[1] == b"400", response  # HTTP/1.0: the request's version is unknown
        body = body_of(response)
        assert "\n" not in body and json.loads(body)["error"].startswith("bad HTTP request: "), body
    no_tracebacks(server)


async def test_unknown_paths_and_methods_are_one_line_json(api, http):
    _, url = api
    async with http.get(f"{url}/nope") as response:
        text = await response.text()
    assert response.status == 404 and response.content_type == "application/json" and "\n" not in text
    assert json.loads(text)["error"].startswith("no such path: /nope; the API has GET /")
    async with http.delete(f"{url}/status") as response:
        text = await response.text()
    assert response.status == 405 and json.loads(text)["error"].startswith("DELETE is not allowed on /status")


async def test_at_the_connection_cap_the_oldest_idle_connections_make_room(sites, tmp_path):
    """300 connections that never send a byte, against a cap of 20 and a 60 s head deadline:
    /healthz, /status and DNS over TCP keep answering, and the server holds ~20 sockets, not 300."""
    server, url = start(tmp_path, sites, header_timeout="60s", max_connections=20)
    held: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await get_json(http, f"{url}/healthz")
            baseline = open_fds(server)
            for _ in range(300):
                held.append(connect(url))
            for _ in range(3):
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as fresh:
                    status, body = await get_json(fresh, f"{url}/healthz")
                    assert status == 200 and body["status"] == "ok"
                    status, _ = await get_json(fresh, f"{url}/status")
                    assert status == 200
            assert (await asyncio.to_thread(ask, server, "hello.ops.test", None, "TXT", True)) == ("NOERROR", ['"hello"'])
            # The server closed the oldest: count the held sockets it has closed.
            def closed_count() -> int:
                closed = 0
                for sock in held:
                    sock.setblocking(False)
                    try:
                        closed += sock.recv(1) == b""
                    except BlockingIOError:
                        pass
                    except ConnectionResetError:
                        closed += 1
                return closed
            closed = wait_for(lambda: closed_count() >= 280 and closed_count(), 5, "the oldest connections closed")
            assert closed >= 280
            assert open_fds(server) <= baseline + 25
            samples = await scrape(http, url)
            assert samples[("gslb_api_connections_closed_total", frozenset({("reason", "evicted")}))] >= 280
    finally:
        for sock in held:
            sock.close()
        server.stop()
    no_tracebacks(server)


# -- failed authentication ---------------------------------------------------------------------------

async def test_a_wrong_token_flood_is_logged_in_a_few_lines_counted_and_answered_429(sites, tmp_path):
    server, url = start(tmp_path, sites, auth_failures=30, auth_window="60s", auth_backoff="1s",
                        auth_backoff_max="4s")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            statuses = []
            retry_after = []
            for _ in range(60):
                async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={"state": "down"},
                                     headers=bearer("guess")) as response:
                    text = await response.text()
                    statuses.append(response.status)
                    assert "\n" not in text and "error" in json.loads(text)
                    if response.status == 429:
                        retry_after.append(response.headers["Retry-After"])
            assert statuses == [401] * 30 + [429] * 30
            assert set(retry_after) == {"1"}
            # During the backoff even the right token is not looked at.
            async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={"state": "auto"}, headers=bearer()) as response:
                assert response.status == 429
                assert json.loads(await response.text())["error"].startswith(
                    "too many failed authentications from 127.0.0.1; try again in ")
            samples = await scrape(http, url)
            assert samples[("gslb_api_auth_failures_total", frozenset({("reason", "wrong_token")}))] == 30
            assert samples[("gslb_api_auth_failures_total", frozenset({("reason", "throttled")}))] == 31

            # After the backoff, the next run of failures is refused for twice as long.
            async def allowed() -> bool:
                async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={"state": "auto"},
                                     headers=bearer("guess")) as response:
                    return response.status == 401
            await eventually(allowed, 5, "the backoff to end", interval=0.2)
            for _ in range(29):
                async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={}, headers=bearer("guess")) as response:
                    last = response
            assert last.status == 401
            async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={}, headers=bearer("guess")) as response:
                assert response.status == 429 and response.headers["Retry-After"] == "2"
    finally:
        server.stop()
    stderr = server.stderr_text()
    lines = [line for line in stderr.splitlines() if "admin API: wrong token from 127.0.0.1 on POST" in line]
    assert len(lines) == 10, stderr[-3000:]  # the first ten of 60 failures; the rest are counted
    assert "admin API: 127.0.0.1 refused for 1s after 30 failed authentications within 60s" in stderr
    assert "admin API: 127.0.0.1 refused for 2s after 30 failed authentications within 60s" in stderr
    no_tracebacks(server)


async def test_a_right_token_after_a_few_failures_works_and_clears_them(sites, tmp_path):
    server, url = start(tmp_path, sites, auth_failures=3, auth_backoff="30s", auth_backoff_max="30s")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for _round in range(3):
                for _ in range(2):
                    async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={"state": "up"},
                                         headers={"Authorization": "Basic x"}) as response:
                        assert response.status == 401
                async with http.post(f"{url}/admin/endpoints/{ADDRESS}", json={"state": "auto"},
                                     headers=bearer()) as response:
                    assert response.status == 200, await response.text()
            samples = await scrape(http, url)
            assert samples[("gslb_api_auth_failures_total", frozenset({("reason", "missing_token")}))] == 6
            assert samples[("gslb_api_auth_failures_total", frozenset({("reason", "throttled")}))] == 0
    finally:
        server.stop()
    assert "admin API: missing token from 127.0.0.1 on POST /admin/endpoints/127.0.0.131" in server.stderr_text()
