"""deploy/ and the Dockerfile: every metric the Grafana dashboard and the alerting rules name is
in a live /metrics scrape; the files pass their own tools (promtool, systemd-analyze, hadolint)
where installed (.ci/run installs them); the commands they run parse with gslb's own parser; the
container's HEALTHCHECK works against a real server."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dnsserver import REPO, wait_for
from gslb.cli import build_parser
from gslb.settings import load_settings
from opsserver import ask, sites_on, start_with_api, zone_text

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "alerts.yml"
UNIT = DEPLOY / "gslb.service"
DOCKERFILE = REPO / "Dockerfile"
TIMEOUT = 30
METRIC = re.compile(r"\b((?:gslb|process)_[a-z0-9_]+)")
UP, DOWN = "127.0.0.171", "127.0.0.172"


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    exprs += [item["expr"] for item in board["annotations"]["list"] if "expr" in item]
    exprs += [item["definition"] for item in board["templating"]["list"] if "definition" in item]
    return exprs


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def alert_texts() -> list[str]:
    return [text for rule in alert_rules() for text in (rule["expr"], *rule.get("annotations", {}).values())]


# -- a live scrape ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(API URL, /metrics text) of a server with every metric family in use: a health check with
    one endpoint UP and one DOWN, an admin override, the query log, answered queries."""
    base = tmp_path_factory.mktemp("deploy")
    sites = sites_on([UP, DOWN])
    sites.http(UP)
    zones = base / "zones"
    zones.mkdir()
    records = f"  app: {{type: A, check: web, pools: {{eu: [{UP}], us-east: [{DOWN}]}}}}\n"
    (zones / "ops.test.yaml").write_text(zone_text(port=sites.port, records=records))
    state = base / "state.yaml"
    state.write_text(f"web/{DOWN}: drain\n")
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.",
                                 extra=["--state", str(state), "--query-log", str(base / "queries.jsonl")])
    try:
        def scrape() -> str | None:
            assert ask(server, "app.ops.test", subnet="10.1.0.0")[0] == "NOERROR"
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
                text = response.read().decode()
            ready = ("gslb_probe_rtt_seconds_bucket{", "gslb_endpoint_rtt_seconds{", "gslb_health_changes_total{",
                     'gslb_query_log_entries_total{outcome="written"} ', "gslb_probes_total{")
            if all(marker in text for marker in ready) and 'outcome="written"} 0.0' not in text:
                return text
            return None

        yield url, wait_for(scrape, TIMEOUT, "every metric family in /metrics")
    finally:
        server.stop()
        sites.close()


def sample_names(exposition: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines()
            if line and not line.startswith("#")}


def test_every_metric_the_dashboard_names_is_in_a_live_scrape(live):
    _, metrics = live
    named = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert len(named) >= 15, named
    assert named - sample_names(metrics) == set()


def test_every_metric_the_alerts_name_is_in_a_live_scrape(live):
    _, metrics = live
    named = {name for text in alert_texts() for name in METRIC.findall(text)}
    assert {"gslb_alert_record_unhealthy", "gslb_alert_servfail"} <= named
    assert named - sample_names(metrics) == set()


def test_the_dashboard_covers_regions_rcodes_latency_endpoints_probe_rtt_and_reloads():
    board = json.loads(DASHBOARD.read_text())
    exprs = " ".join(dashboard_exprs())
    for needle in ("sum by (region) (rate(gslb_dns_queries_total", "sum by (rcode) (rate(gslb_dns_queries_total",
                   "gslb_dns_response_seconds_bucket", "gslb_endpoint_up", "gslb_probe_rtt_seconds_bucket",
                   "gslb_endpoint_rtt_seconds", "gslb_config_reloads_total"):
        assert needle in exprs, needle
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_two_gslb_alerts_follow_the_servers_own_gauges():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert rules["GslbRecordUnhealthy"]["expr"] == "gslb_alert_record_unhealthy == 1"
    assert rules["GslbServfailHigh"]["expr"] == "gslb_alert_servfail == 1"
    assert rules["GslbRecordUnhealthy"]["labels"]["severity"] == "critical"


# -- the tools that check these files --------------------------------------------------------------

def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


def run(*command: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def test_promtool_accepts_the_config_the_rules_and_their_unit_tests():
    promtool = tool("promtool")
    for command in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                    ("test", "rules", "alerts_test.yml")):
        result = run(promtool, *command)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_parses_every_dashboard_query(tmp_path):
    promtool = tool("promtool")
    rules = [{"record": f"dashboard:query{index}",
              "expr": expr.replace("$__rate_interval", "1m").replace("$instance", ".+")}
             for index, expr in enumerate(dashboard_exprs()) if not expr.startswith("label_values(")]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def unit_values(key: str) -> list[str]:
    text = UNIT.read_text().replace("\\\n", " ")
    return [line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith(f"{key}=")]


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = tool("systemd-analyze")
    # verify wants ExecStart's program to exist; the unit names where the README installs it.
    unit = tmp_path / "gslb.service"
    unit.write_text(UNIT.read_text().replace("/opt/gslb/bin/gslb", "/bin/true"))
    result = run(analyze, "verify", str(unit), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    security = run(analyze, "security", "--offline=yes", str(unit), cwd=tmp_path)
    exposure = re.search(r"Overall exposure level for gslb.service: (\d+\.\d+)", security.stdout)
    assert exposure is not None and float(exposure.group(1)) <= 2.0, security.stdout[-400:]


def test_the_unit_is_sandboxed_with_only_the_bind_capability():
    assert unit_values("DynamicUser") == ["yes"]
    assert unit_values("AmbientCapabilities") == unit_values("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert unit_values("NoNewPrivileges") == ["yes"] and unit_values("ProtectSystem") == ["strict"]
    assert unit_values("StateDirectory") == unit_values("CacheDirectory") == ["gslb"]
    assert unit_values("Environment") == ["GSLB_CACHE_DIR=%C/gslb"]
    assert unit_values("ExecReload") == ["/bin/kill -HUP $MAINPID"]


def test_the_units_command_line_is_one_gslb_accepts():
    (command,) = unit_values("ExecStart")
    words = shlex.split(command.replace("%S", "/var/lib").replace("%d", "/run/credentials/gslb.service"))
    assert words[0] == "/opt/gslb/bin/gslb"
    args = build_parser().parse_args(words[1:])
    assert args.command == "serve" and args.api == "127.0.0.1:8053"
    assert str(args.state) == "/var/lib/gslb/state.yaml"


def test_hadolint_passes_the_dockerfile():
    hadolint = tool("hadolint")
    result = run(hadolint, "--no-color", str(DOCKERFILE), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the Dockerfile --------------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_the_image_exposes_dns_and_the_api_and_runs_unprivileged():
    stage = dict((op, value) for op, value in final_stage() if op in ("EXPOSE", "USER", "ENTRYPOINT", "CMD"))
    assert stage["EXPOSE"].split() == ["53/udp", "53/tcp", "8053/tcp"]
    assert stage["USER"] not in ("root", "0", "0:0")
    argv = json.loads(stage["ENTRYPOINT"]) + json.loads(stage["CMD"])
    assert argv[0] == "gslb"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and str(args.config) == "/etc/gslb/gslb.yaml"


def test_the_images_config_loads_and_opens_the_api_to_the_container_network():
    settings, problems = load_settings(DEPLOY / "gslb.yaml", {})
    assert problems == []
    assert str(settings.api) == "0.0.0.0:8053" and [str(listener) for listener in settings.listen] == ["0.0.0.0:53"]
    assert str(settings.state) == "/var/lib/gslb/state.yaml"


def healthcheck_command() -> list[str]:
    (value,) = [value for op, value in final_stage() if op == "HEALTHCHECK"]
    assert "--start-period=" in value
    return json.loads(value[value.index("CMD") + 3:].strip())


def test_the_healthcheck_passes_against_a_live_server_and_fails_without_one(live):
    url, _ = live
    command = healthcheck_command()
    assert command[0] == "python" and "http://127.0.0.1:8053/healthz" in command[2]
    live_command = [sys.executable, command[1], command[2].replace("http://127.0.0.1:8053", url)]
    assert subprocess.run(live_command, capture_output=True, timeout=TIMEOUT).returncode == 0
    import socket

    with socket.socket() as unused:  # bound, not listening: refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        dead = [sys.executable, command[1], command[2].replace("127.0.0.1:8053", f"127.0.0.1:{port}")]
        assert subprocess.run(dead, capture_output=True, timeout=TIMEOUT).returncode != 0
