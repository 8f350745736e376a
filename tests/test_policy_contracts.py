"""Policies and check kinds declare contracts, and `gslb check` holds them: a policy that needs
probe RTTs or reported load on a record whose check provides none, and policy options that do not
validate, are one line each, with file and key path (run as a user runs it: the CLI)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dnsserver import TEST_GEOIP, gslb_command
from gslb.health.kinds import CHECK_KINDS
from gslb.health.specs import LOAD, RTT, HttpSpec, LoadSource, TcpSpec
from gslb.policy import NEEDS, POLICIES

ZONE = """
origin: c.test.
ns: [ns1.c.test.]
regions:
  eu: {{location: [50.11, 8.68]}}
checks:
  web: {{http: {{path: /healthz}}}}
  loaded: {{http: {{path: /healthz, load: {{json: load}}}}}}
  db: {{tcp: {{port: 5432}}}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
{records}
"""


def check(tmp_path: Path, records: str) -> subprocess.CompletedProcess:
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    (zones / "c.test.yaml").write_text(ZONE.format(records=records))
    return subprocess.run(gslb_command("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP)),
                          capture_output=True, text=True, timeout=30)


def problems(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    log_line = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ ")  # the log, not a problem report
    return [line for line in result.stderr.splitlines() if not line.startswith("gslb: ") and not log_line.match(line)]


@pytest.mark.parametrize("record, path, message", [
    ("{type: A, policy: fastest, pools: {eu: [127.0.2.1, 127.0.2.2]}}", "records.app.policy",
     "fastest needs probe round-trip times, but the record has no check; give the record a check"),
    ("{type: A, policy: least_loaded, pools: {eu: [127.0.2.1]}}", "records.app.policy",
     "least_loaded needs the load its sites report, but the record has no check; give the record an http"),
    ("{type: A, policy: least_loaded, check: web, pools: {eu: [127.0.2.1]}}", "records.app.policy",
     "least_loaded needs the load its sites report, which its check web (http) does not provide; "
     "give the record an http or https check with load: {json: FIELD} or {header: NAME}"),
    ("{type: A, policy: least_loaded, check: db, pools: {eu: [127.0.2.1]}}", "records.app.policy",
     "least_loaded needs the load its sites report, which its check db (tcp) does not provide"),
    ("{type: A, policy: {hash: {ipv4_prefix: 33}}, pools: {eu: [127.0.2.1]}}", "records.app.policy.hash.ipv4_prefix",
     "must be an integer from 1 to 32, got 33"),
    ("{type: A, policy: {hash: {prefix: 20}}, pools: {eu: [127.0.2.1]}}", "records.app.policy.hash.prefix",
     "unknown option of hash; expected one of ipv4_prefix, ipv6_prefix"),
    ("{type: A, policy: {weighted: {spread: 2}}, pools: {eu: [127.0.2.1]}}", "records.app.policy.weighted.spread",
     "unknown option of weighted; expected none: it takes no options"),
    ("{type: A, policy: {hash: {}, weighted: {}}, pools: {eu: [127.0.2.1]}}", "records.app.policy",
     "must be a policy name, or one name with its options"),
    ("{type: A, policy: {fastest: 3}, check: web, pools: {eu: [127.0.2.1]}}", "records.app.policy.fastest",
     "must be a mapping of options; fastest takes no options, got 3"),
    ("{type: A, policy: nearest, pools: {eu: [127.0.2.1]}}", "records.app.policy", "unknown policy 'nearest'; one of all"),
])
def test_gslb_check_reports_a_broken_policy_contract_in_one_line_with_its_path(tmp_path, record, path, message):
    result = check(tmp_path, f"  app: {record}\n")
    assert result.returncode == 1, result.stderr
    lines = problems(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'zones' / 'c.test.yaml'}: {path}: {message}"), lines[0]


def test_policies_whose_needs_their_checks_meet_pass(tmp_path):
    records = ("  fast: {type: A, policy: fastest, check: db, pools: {eu: [127.0.2.1, 127.0.2.2]}}\n"
               "  light: {type: A, policy: {least_loaded: {tolerance: 0.2}}, check: loaded, pools: {eu: [127.0.2.3]}}\n"
               "  sticky: {type: A, policy: {hash: {ipv4_prefix: 20, ipv6_prefix: 48}}, pools: {eu: [127.0.2.4]}}\n"
               "  plain: {type: A, policy: weighted, pools: {eu: [192.0.2.5]}}\n")
    result = check(tmp_path, records)
    assert result.returncode == 0, result.stderr
    assert problems(result) == []


def test_every_need_a_policy_declares_is_one_a_check_kind_can_provide():
    provided = {RTT, LOAD}
    assert set(NEEDS) == provided
    for cls in POLICIES.values():
        assert cls.needs <= provided, cls
        for option in cls.options:
            assert option.parse(option.default) == option.default, (cls.name, option.name)
    assert HttpSpec().provides() == {RTT} and HttpSpec(load=LoadSource(json="load")).provides() == {RTT, LOAD}
    assert TcpSpec(5432).provides() == {RTT}


def test_one_registry_names_how_each_check_kind_parses_and_probes():
    assert set(CHECK_KINDS) == {"http", "https", "tcp"}
    for name, kind in CHECK_KINDS.items():
        assert kind.name == name and kind.probe.kind == kind.spec.kind
