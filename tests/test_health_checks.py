"""`checks:` in zone YAML: parsed into frozen values, every problem reported with its key path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from gslb.config.catalog import load_catalog
from gslb.config.problems import Problems
from gslb.health.checks import (
    DEFAULT_USER_AGENT,
    Check,
    CheckTiming,
    HttpSpec,
    LoadSource,
    TcpSpec,
    parse_checks,
    parse_duration,
)
from gslb.health.monitor import plan
from gslb.health.status import Status

ZONE = """
origin: {origin}
ns: [ns1.{origin}]
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
{checks}
records:
  www:
    type: A
    check: web
    pools: {{eu: [192.0.2.10, 192.0.2.11], us-east: [192.0.2.20]}}
  api:
    type: A
    check: web
    pools: {{eu: [192.0.2.10]}}
"""


def parse(text: str) -> tuple[dict[str, Check], list[tuple[str, str]]]:
    problems = Problems("zone.yaml")
    checks = parse_checks(yaml.safe_load(text), problems)
    return checks, [(p.path, p.message) for p in problems]


def test_the_documented_example_becomes_frozen_values():
    checks, problems = parse("""
web:
  http: {path: /healthz, port: 443, tls: true, host: www.example.com, verify_tls: true,
         expect: [200, "200-399"], body: ok, user_agent: probe/2, load: {json: stats.load}}
  interval: 5s
  timeout: 2s
  rise: 2
  fall: 3
  cold_start: down
db:
  tcp: {port: 5432}
  interval: 10s
""")
    assert problems == []
    web = checks["web"]
    assert web.spec == HttpSpec(path="/healthz", port=443, tls=True, host="www.example.com", verify_tls=True,
                                expect=((200, 200), (200, 399)), body="ok", user_agent="probe/2",
                                load=LoadSource(json="stats.load"))
    assert web.timing == CheckTiming(interval=5.0, timeout=2.0, rise=2, fall=3)
    assert web.cold_start is Status.DOWN
    assert checks["db"] == Check("db", TcpSpec(5432), CheckTiming(10.0, 2.0, 2, 3), Status.UP)
    with pytest.raises(dataclasses.FrozenInstanceError):
        web.timing.rise = 5  # type: ignore[misc]


def test_http_defaults_are_port_80_path_slash_status_2xx_3xx_and_a_user_agent():
    checks, problems = parse("plain: {http: {}}\nbare: {http: null}\ntls: {https: {}}")
    assert problems == []
    plain = checks["plain"].spec
    assert (plain.port, plain.path, plain.tls, plain.host, plain.verify_tls) == (80, "/", False, None, True)
    assert plain.expect == ((200, 399),) and plain.user_agent == DEFAULT_USER_AGENT
    assert checks["bare"].spec == plain
    assert (checks["tls"].spec.port, checks["tls"].spec.tls) == (443, True)
    assert checks["plain"].cold_start is Status.UP  # fail open unless told otherwise


@pytest.mark.parametrize("text, seconds", [("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), (2, 2.0), (0.25, 0.25), ("1.5s", 1.5), ("3", 3.0)])
def test_durations_take_ms_s_m_or_plain_seconds(text, seconds):
    assert parse_duration(text) == seconds


def test_the_default_timeout_is_2s_or_half_a_short_interval():
    checks, problems = parse("fast: {tcp: {port: 1}, interval: 1s}\nslow: {tcp: {port: 1}, interval: 30s}")
    assert problems == []
    assert checks["fast"].timing.timeout == 0.5
    assert checks["slow"].timing.timeout == 2.0


def test_timing_is_a_validated_value():
    with pytest.raises(ValueError, match="shorter than the interval"):
        CheckTiming(interval=1.0, timeout=1.0)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        CheckTiming(interval=1.0, timeout=0)
    with pytest.raises(ValueError, match="rise"):
        CheckTiming(interval=1.0, timeout=0.5, rise=0)
    with pytest.raises(ValueError, match="fall"):
        CheckTiming(interval=1.0, timeout=0.5, fall=0)
    assert CheckTiming(interval=0.2, timeout=0.1, rise=2, fall=2).detection_time == pytest.approx(0.5)


def test_every_problem_is_reported_with_its_key_path():
    checks, problems = parse("""
web:
  http: {path: healthz, port: 70000, tls: "yes", host: "bad host", expect: [99, "400-300", abc],
         body: "", load: {xml: a}, bogus: 1}
  interval: 0
  timeout: fast
  rise: 0
  fall: true
  cold_start: maybe
  extra: 1
both: {http: {}, tcp: {port: 1}}
neither: {interval: 5s}
short: {tcp: {port: 5432}, interval: 1s, timeout: 2s}
plain_https: {https: {tls: false}}
no_port: {tcp: {}}
tcp_extra: {tcp: {port: 22, banner: SSH}}
header: {http: {load: {header: "Bad Header"}}}
scalar: 5
""")
    assert checks == {}
    paths = [path for path, _ in problems]
    assert paths == [
        "checks.web.extra",
        "checks.web.http.bogus",
        "checks.web.http.tls",
        "checks.web.http.port",
        "checks.web.http.path",
        "checks.web.http.host",
        "checks.web.http.expect[0]",
        "checks.web.http.expect[1]",
        "checks.web.http.expect[2]",
        "checks.web.http.body",
        "checks.web.http.load",
        "checks.web.interval",
        "checks.web.timeout",
        "checks.web.rise",
        "checks.web.fall",
        "checks.web.cold_start",
        "checks.both",
        "checks.neither",
        "checks.short.timeout",
        "checks.plain_https.https.tls",
        "checks.no_port.tcp",
        "checks.tcp_extra.tcp.banner",
        "checks.header.http.load.header",
        "checks.scalar",
    ]
    messages = dict(problems)
    assert "got 70000" not in messages["checks.web.http.tls"]
    assert "must be true or false" in messages["checks.web.http.tls"]
    assert "must be a duration" in messages["checks.web.timeout"]
    assert "longer than zero" in messages["checks.web.interval"]
    assert "has http and tcp" in messages["checks.both"]
    assert "says nothing about how to probe" in messages["checks.neither"]
    assert messages["checks.short.timeout"] == "must be shorter than the interval (1s), got 2s"
    assert "up (serve until proven down) or down" in messages["checks.web.cold_start"]
    assert messages["checks.web.http.port"] == "must be a port number from 1 to 65535, got 70000"


def write_zone(directory: Path, origin: str, checks: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{origin.rstrip('.')}.yaml"
    path.write_text(ZONE.format(origin=origin, checks=checks))
    return path


def test_zone_problems_name_the_file_and_path_and_a_bad_check_is_not_also_unknown(tmp_path):
    path = write_zone(tmp_path, "a.example.", "checks:\n  web: {http: {port: 80}, interval: 1s, timeout: 2s}")
    catalog, problems = load_catalog(tmp_path)
    assert catalog is None
    assert [str(p) for p in problems] == [f"{path}: checks.web.timeout: must be shorter than the interval (1s), got 2s"]


def test_a_zone_keeps_its_parsed_checks(tmp_path):
    write_zone(tmp_path, "a.example.", "checks:\n  web: {tcp: {port: 443}}")
    catalog, problems = load_catalog(tmp_path)
    assert problems == [] and catalog is not None
    assert dict(catalog.zones[0].checks) == {"web": Check("web", TcpSpec(443), CheckTiming())}


def test_an_address_two_records_share_is_probed_once_and_names_both(tmp_path):
    write_zone(tmp_path, "a.example.", "checks:\n  web: {tcp: {port: 443}}")
    write_zone(tmp_path, "b.example.", "checks:\n  web: {tcp: {port: 443}}")
    catalog, problems = load_catalog(tmp_path)
    assert catalog is not None, problems
    checks, users, problems = plan(catalog)
    assert problems == [] and list(checks) == ["web"]
    assert set(users) == {("web", "192.0.2.10"), ("web", "192.0.2.11"), ("web", "192.0.2.20")}
    assert users[("web", "192.0.2.10")] == ("www.a.example. eu", "api.a.example. eu", "www.b.example. eu", "api.b.example. eu")


def test_two_zones_may_not_define_one_check_name_differently(tmp_path):
    write_zone(tmp_path, "a.example.", "checks:\n  web: {tcp: {port: 443}}")
    other = write_zone(tmp_path, "b.example.", "checks:\n  web: {tcp: {port: 80}}")
    catalog, _ = load_catalog(tmp_path)
    assert catalog is not None
    _, _, problems = plan(catalog)
    assert [(p.file, p.path) for p in problems] == [(str(other), "checks.web")]
    assert "check names are shared by every zone" in problems[0].message
