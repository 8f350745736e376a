"""Where the API listens, where its token comes from, and `gslb explain --assume-down`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from dnsserver import EXAMPLE_ZONES, TEST_GEOIP, GslbProcess, gslb_command
from gslb.dns.server import Listener
from gslb.settings import DEFAULT_API, load_settings
from opsserver import API_LINE, read_api_url

TIMEOUT = 20


def run_gslb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(gslb_command(*args), capture_output=True, text=True, timeout=TIMEOUT)


def test_the_api_listens_on_localhost_8053_by_default():
    settings, problems = load_settings(None, {})
    assert problems == [] and settings.api == DEFAULT_API == Listener("127.0.0.1", 8053)
    assert not settings.api_explicit and settings.api_token_file is None


@pytest.mark.parametrize("value, expected", [("off", None), ("[::1]:9053", Listener("::1", 9053)),
                                             ("0.0.0.0:80", Listener("0.0.0.0", 80))])
def test_api_flag(value, expected):
    settings, problems = load_settings(None, {"api": value})
    assert problems == [] and settings.api == expected and settings.api_explicit


def test_api_settings_in_the_config_file_are_relative_to_it(tmp_path):
    config = tmp_path / "gslb.yaml"
    config.write_text("api: off\napi_token_file: secrets/token\n")  # YAML reads a bare off as false
    settings, problems = load_settings(config, {})
    assert problems == [] and settings.api is None
    assert settings.api_token_file == tmp_path.resolve() / "secrets" / "token"
    settings, _ = load_settings(config, {"api": "127.0.0.1:9000", "api_token_file": "/etc/gslb/token"})
    assert settings.api == Listener("127.0.0.1", 9000) and settings.api_token_file == Path("/etc/gslb/token")


@pytest.mark.parametrize("text, problem", [
    ("api: localhost:8053\n", "api: must be HOST:PORT with an IP address (like 127.0.0.1:8053) or off, got 'localhost:8053'"),
    ("api: 8053\n", "api: must be HOST:PORT (like 127.0.0.1:8053) or off, got 8053"),
    ("api_token_file: [a]\n", "api_token_file: must be a path to a file holding the admin API's bearer token"),
])
def test_bad_api_settings_are_reported_with_their_path(tmp_path, text, problem):
    config = tmp_path / "gslb.yaml"
    config.write_text(text)
    _, problems = load_settings(config, {})
    assert [str(p) for p in problems] == [f"{config}: {problem}"]


def test_api_off_prints_no_api_line(tmp_path):
    server = GslbProcess.start(EXAMPLE_ZONES, log_dir=tmp_path, probe_name="gslb.example.com.", extra=["--api", "off"])
    server.process.terminate()
    rest = server.process.communicate(timeout=TIMEOUT)[0].decode()  # every line printed after the listeners
    server.stop()
    lines = server.stdout_lines + rest.splitlines()
    assert any(line.startswith("gslb: try: dig") for line in lines)
    assert not any(API_LINE.match(line) for line in lines)


def test_an_api_address_that_is_taken_stops_the_start_when_asked_for(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_gslb("serve", "--zones", str(EXAMPLE_ZONES), "--geoip", str(TEST_GEOIP),
                          "--listen", "127.0.0.1:0", "--api", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"gslb: cannot serve the API on 127.0.0.1:{port}: " in result.stderr
    assert "pass --api HOST:PORT or --api off" in result.stderr and "Traceback" not in result.stderr


def test_an_unreadable_token_file_stops_the_start(tmp_path):
    result = run_gslb("serve", "--zones", str(EXAMPLE_ZONES), "--geoip", str(TEST_GEOIP), "--listen", "127.0.0.1:0",
                      "--api", "127.0.0.1:0", "--api-token-file", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert f"gslb: api token file {tmp_path / 'missing'}: cannot read it (No such file or directory)" in result.stderr


def test_a_fifo_as_the_token_file_is_refused_at_once_not_waited_on(tmp_path):
    fifo = tmp_path / "token"
    os.mkfifo(fifo)  # open() on a FIFO blocks until a writer comes: the server must not wait
    result = run_gslb("serve", "--zones", str(EXAMPLE_ZONES), "--geoip", str(TEST_GEOIP), "--listen", "127.0.0.1:0",
                      "--api", "127.0.0.1:0", "--api-token-file", str(fifo))
    assert result.returncode == 1
    assert f"gslb: api token file {fifo}: cannot read it" in result.stderr and "FIFO" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_api_url_is_printed_with_the_real_port(tmp_path):
    server = GslbProcess.start(EXAMPLE_ZONES, log_dir=tmp_path, probe_name="gslb.example.com.",
                               extra=["--api", "127.0.0.1:0"])
    try:
        url = read_api_url(server)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    finally:
        server.stop()


# -- gslb explain --assume-down --------------------------------------------------------------------

def explain(*args: str) -> subprocess.CompletedProcess:
    return run_gslb("explain", "--zones", str(EXAMPLE_ZONES), "--geoip", str(TEST_GEOIP), *args)


def test_explain_assume_down_shows_where_a_client_would_go():
    # The example zone sends 198.18.0.0/15 to us-east by a subnet rule: its pool, unless it is down.
    us_east = {"127.0.0.11", "127.0.0.12"}
    normal = json.loads(explain("app.gslb.example.com", "--subnet", "198.18.0.0/24", "--json").stdout)
    assert normal["region"] == "us-east" and set(normal["answer"]) <= us_east and normal["answer"]
    drill = explain("app.gslb.example.com", "--subnet", "198.18.0.0/24", "--json", "--assume-down", "us-east")
    assert drill.returncode == 0, drill.stderr
    result = json.loads(drill.stdout)
    assert result["assume_down"] == ["us-east"] and result["region"] == "us-east"
    assert result["answer"] and not set(result["answer"]) & us_east
    text = explain("app.gslb.example.com", "--subnet", "198.18.0.0/24", "--assume-down", "127.0.0.11").stdout
    assert text.startswith("assume:  127.0.0.11 down (what if; live state unchanged)\n")
    assert "answer:  127.0.0.12 (ttl " in text


@pytest.mark.parametrize("down, message", [
    ("atlantis", "gslb explain: --assume-down: 'atlantis' is neither a region nor an endpoint address; regions: asia, eu, us-east, us-west"),
    ("192.0.2.99", "gslb explain: --assume-down: 192.0.2.99 is not an endpoint of any GSLB record"),
])
def test_explain_assume_down_names_what_it_does_not_know(down, message):
    result = explain("app.gslb.example.com", "--assume-down", down)
    assert result.returncode == 2 and result.stderr.strip() == message


# -- api_limits: -----------------------------------------------------------------------------------

def test_api_limits_come_from_the_config_file_with_durations(tmp_path):
    config = tmp_path / "gslb.yaml"
    config.write_text("api_limits: {max_connections: 64, header_timeout: 500ms, body_timeout: 3s, auth_window: 30}\n")
    settings, problems = load_settings(config, {})
    assert problems == []
    limits = settings.api_limits
    assert (limits.max_connections, limits.header_timeout, limits.body_timeout, limits.auth_window) == (64, 0.5, 3.0, 30.0)
    assert (limits.max_body, limits.max_json_depth) == (65536, 32)  # the defaults for the rest


def test_bad_api_limits_are_reported_with_their_key_paths(tmp_path):
    config = tmp_path / "gslb.yaml"
    config.write_text("api_limits: {max_body: -1, header_timeout: soon, colour: red}\n")
    _, problems = load_settings(config, {})
    assert [str(p) for p in problems] == [
        f"{config}: api_limits.max_body: must be a whole number >= 1, got -1",
        f"{config}: api_limits.header_timeout: must be a duration > 0 (seconds, or like 10s or 500ms), got 'soon'",
        f"{config}: api_limits.colour: unknown setting; expected one of max_body, max_json_depth, header_timeout, "
        "body_timeout, max_connections, auth_failures, auth_window, auth_backoff, auth_backoff_max",
    ]
