"""`gslb reload` and `gslb status` against a real `gslb serve`: the new zone is served when
`gslb reload` says so, a bad one is reported and the old one keeps serving, the token comes from
the same places the server reads it, and `gslb status` sums /status up for a human."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsserver import GslbProcess, gslb_command, wait_for
from opsserver import ask, start_with_api, write_atomically, zone_text

TIMEOUT = 30
TOKEN = "s3cret-reload-token"
RECORDS = """  app:
    type: A
    check: web
    pools: {eu: [127.0.0.161], us-east: [127.0.0.162]}
"""


def gslb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key != "GSLB_API_TOKEN"}
    return subprocess.run(gslb_command(*args), capture_output=True, text=True, timeout=TIMEOUT,
                          env={**environ, **(env or {})})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str, Path, Path]]:
    """(server, API URL, zone file, token file); nothing listens on the check's port 9, so
    both endpoints go DOWN."""
    base = tmp_path_factory.mktemp("control")
    zones = base / "zones"
    zones.mkdir()
    zone_file = zones / "ops.test.yaml"
    zone_file.write_text(zone_text(records=RECORDS))
    token_file = base / "token"
    token_file.write_text(TOKEN + "\n")
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.",
                                 extra=["--api-token-file", str(token_file)])
    try:
        yield server, url, zone_file, token_file
    finally:
        server.stop()


def serial(server: GslbProcess) -> int:
    reply = server.query("ops.test.", "SOA")
    return reply.answer[0][0].serial


def status_document(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/status", timeout=5) as response:
        return json.load(response)


def test_reload_serves_the_new_zone_when_it_says_reloaded(served):
    server, url, zone_file, token_file = served
    before = status_document(url)["config"]["generation"]
    write_atomically(zone_file, zone_text(records=RECORDS, serial=2))
    result = gslb("reload", "--api", url, "--api-token-file", str(token_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gslb reload: reloaded (")
    assert serial(server) == 2  # asked right after: no waiting for the file watcher
    assert status_document(url)["config"]["generation"] > before


def test_reload_of_a_bad_zone_prints_the_problems_and_the_old_zone_keeps_serving(served):
    server, url, zone_file, token_file = served
    good = zone_file.read_text()
    write_atomically(zone_file, good.replace("records:", "colour: blue\nrecords:", 1))
    try:
        result = gslb("reload", "--api", url, "--api-token-file", str(token_file))
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert any(line.startswith(f"{zone_file}: colour: unknown key") for line in lines), result.stderr
        assert "failed: 1 problem; still serving the configuration loaded at " in lines[-1]
        assert ask(server, "hello.ops.test")[0] == "NOERROR"
    finally:
        write_atomically(zone_file, good)
        assert gslb("reload", "--api", url, "--api-token-file", str(token_file)).returncode == 0


def test_reload_takes_the_token_from_the_environment_and_from_the_server_config(served, tmp_path):
    _, url, _, token_file = served
    assert gslb("reload", "--api", url, env={"GSLB_API_TOKEN": TOKEN}).returncode == 0
    config = tmp_path / "gslb.yaml"
    host_port = url.removeprefix("http://")
    config.write_text(f"api: {host_port}\napi_token_file: {token_file}\n")
    result = gslb("reload", "--config", str(config))  # the API address and the token from the config
    assert result.returncode == 0, result.stderr


def test_reload_without_the_token_says_where_to_put_it(served):
    _, url, _, _ = served
    result = gslb("reload", "--api", url)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        f"gslb reload: POST {url}/admin/reload: HTTP 401: missing token: send the header 'Authorization: Bearer "
        "TOKEN'; give the token the server uses: --api-token-file FILE, --config FILE (its api_token_file), "
        "or $GSLB_API_TOKEN")
    wrong = gslb("reload", "--api", url, env={"GSLB_API_TOKEN": "nope"})
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == f"gslb reload: POST {url}/admin/reload: HTTP 401: wrong token"


def test_reload_wait_0_only_asks(served):
    server, url, _, token_file = served
    before = status_document(url)["config"]["reloads"]
    result = gslb("reload", "--api", url, "--api-token-file", str(token_file), "--wait", "0")
    assert result.returncode == 0 and result.stdout.strip() == f"gslb reload: reload requested from {url}"
    wait_for(lambda: status_document(url)["config"]["reloads"]["ok"] > before["ok"], TIMEOUT, "the requested reload")


def test_reload_and_status_without_a_server_say_so_in_one_line(tmp_path):
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        for command in ("reload", "status"):
            result = gslb(command, "--api", f"127.0.0.1:{port}")
            assert result.returncode == 1
            assert result.stderr.strip() == (
                f"gslb {command}: cannot reach the gslb API at http://127.0.0.1:{port}: Connection refused; "
                "is gslb serve running with its API there? pass --api URL")


def test_reload_when_the_config_turns_the_api_off(tmp_path):
    config = tmp_path / "gslb.yaml"
    config.write_text("api: off\n")
    result = gslb("status", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == ("gslb status: the server config turns the API off (api: off); gslb reload and "
                                     "gslb status need it: turn it on, or pass --api URL")


def test_status_sums_up_zones_regions_endpoints_down_and_the_last_reload(served):
    _, url, _, token_file = served
    assert gslb("reload", "--api", url, "--api-token-file", str(token_file)).returncode == 0

    def both_down() -> str | None:
        text = gslb("status", "--api", url).stdout
        return text if "endpoints: 2 checked: 0 UP, 0 DRAIN, 2 DOWN\n" in text else None

    text = wait_for(both_down, TIMEOUT, "both endpoints DOWN in gslb status")
    lines = text.splitlines()
    assert lines[0].startswith("gslb 0.") and ", up " in lines[0]
    assert any(line.startswith("zones:     1 from ") for line in lines)
    assert "  ops.test. serial " in text
    assert any(line.startswith("reloads:   ") and ": ok (api" in line for line in lines), text
    assert "regions:   ops.test. eu, us-east (default us-east)" in lines
    down = [line for line in lines if line.startswith("  DOWN  web/127.0.0.16")]
    assert len(down) == 2 and all("(app.ops.test. " in line and ": after 2 failures: " in line for line in down), text
    assert any(line.startswith("ALERT:     app.ops.test. A: 0 of 2 endpoints healthy") for line in lines), text


def test_status_json_is_the_status_document(served):
    _, url, _, _ = served
    result = gslb("status", "--api", url, "--json")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert set(document) == set(status_document(url))
    assert document["zones"][0]["zone"] == "ops.test."
