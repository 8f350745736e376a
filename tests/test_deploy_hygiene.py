"""What gslb and its tests leave behind and reach out to: no probe of the example zone or of a
test zone file leaves the machine, and a test run removes the cache directory it made."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from dnsserver import REPO

TESTS = REPO / "tests"
ADDRESS = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]*::[0-9a-fA-F:.]*)(?![\w.])")


def checked_endpoints(document: dict) -> list[str]:
    """Every address a health check of this zone document probes."""
    found = []
    for entries in (document.get("records") or {}).values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and entry.get("check") and isinstance(entry.get("pools"), dict):
                for pool in entry["pools"].values():
                    found += [str(item["value"] if isinstance(item, dict) else item) for item in pool]
    return found


def zone_documents() -> list[tuple[Path, dict]]:
    documents = []
    for path in sorted([*(REPO / "zones").glob("*.yaml"), *(TESTS / "data").rglob("*.yaml")]):
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # the deliberately broken zones
        if isinstance(document, dict):
            documents.append((path, document))
    return documents


def test_the_example_zone_probes_only_loopback_addresses():
    document = yaml.safe_load((REPO / "zones" / "gslb.example.com.yaml").read_text())
    endpoints = checked_endpoints(document)
    assert endpoints and all(ipaddress.ip_address(address).is_loopback for address in endpoints), endpoints


def test_no_zone_file_in_the_repository_probes_beyond_loopback():
    outside = {}
    for path, document in zone_documents():
        addresses = [a for a in checked_endpoints(document) if not ipaddress.ip_address(a).is_loopback]
        if addresses:
            outside[str(path.relative_to(REPO))] = addresses
    assert outside == {}


def test_no_health_checked_record_in_the_tests_names_an_address_beyond_loopback():
    # The one-line GSLB records the tests write (`check: web, pools: {...}`): the documentation
    # addresses elsewhere in the tests are answers (data), never probed.
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "check:" in line and "pools" in line:
                for text in ADDRESS.findall(line):
                    try:
                        address = ipaddress.ip_address(text)
                    except ValueError:
                        continue
                    if not address.is_loopback:
                        offenders.append(f"{path.name}:{number}: {text}")
    assert offenders == []


def run_pytest(environment: dict[str, str]) -> subprocess.CompletedProcess:
    """A short pytest run of this suite (its conftest included) in another process."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ecs_codec.py"],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def test_a_test_run_removes_the_cache_directory_it_made(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "GSLB_CACHE_DIR"}
    environment["TMPDIR"] = str(tmp_path)
    result = run_pytest(environment)
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(path.name for path in tmp_path.glob("gslb-test-cache-*")) == []


def test_a_cache_directory_given_by_the_user_is_left_alone(tmp_path):
    mine = tmp_path / "my-cache"
    mine.mkdir()
    environment = {**os.environ, "GSLB_CACHE_DIR": str(mine), "TMPDIR": str(tmp_path)}
    result = run_pytest(environment)
    assert result.returncode == 0, result.stdout[-2000:]
    assert mine.is_dir() and list(tmp_path.glob("gslb-test-cache-*")) == []
