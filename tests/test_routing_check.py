"""`gslb check` on the routing features' mistakes: min_healthy, bias, ASN rules and --asn-db.

Every mistake is one line `file: key.path: message`, all of them at once (STYLE.md section 2).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dnsserver import TEST_GEOIP, gslb_command

DATA = Path(__file__).resolve().parent / "data"
ASN_TEST_DB = DATA / "geo" / "GeoLite2-ASN-Test.mmdb"
ROUTING_ZONES = DATA / "zones_routing"
TIMEOUT = 30

ZONE = """
origin: mistakes.example.
ns: [ns1.mistakes.example.]
regions:
  eu:   {location: [50.11, 8.68], serves: [EU, AS-13335], bias: 120}
  us:   {location: [39.04, -77.49], serves: [as13335, 13335, ASN7018, AS0], bias: far}
  asia: {location: [1.35, 103.82], serves: [AS, AS1221], bias: -100}
  sa:   {location: [-23.55, -46.63], serves: [AS1221], bias: true}
records:
  ns1: {type: A, value: 192.0.2.53}
  above: {type: A, min_healthy: 3, pools: {eu: [192.0.2.1, 192.0.2.2, 192.0.2.3], us: [198.51.100.1, 198.51.100.2]}}
  word: {type: A, min_healthy: two, pools: {eu: [192.0.2.1]}}
  fraction: {type: A, min_healthy: 2.5, pools: {eu: [192.0.2.1]}}
  zero: {type: A, min_healthy: 0, pools: {eu: [192.0.2.1]}}
  share: {type: A, min_healthy: 150%, pools: {eu: [192.0.2.1]}}
  no-share: {type: A, min_healthy: 0%, pools: {eu: [192.0.2.1]}}
"""

EXPECTED = [
    ("regions.eu.serves[1]", "'AS-13335' is not an ASN the way zones write them; write an autonomous system as "
                             "AS and its number, like AS13335"),
    ("regions.eu.bias", "must be a whole number from -99 to 99 (positive: the region's area grows, negative: it "
                        "shrinks), got 120"),
    ("regions.us.serves[0]", "'as13335' is not an ASN the way zones write them"),
    ("regions.us.serves[1]", "13335 is not an ASN the way zones write them"),
    ("regions.us.serves[2]", "'ASN7018' is not an ASN the way zones write them"),
    ("regions.us.serves[3]", "AS0: an AS number is 1 to 4294967295"),
    ("regions.us.bias", "must be a whole number from -99 to 99"),
    ("regions.asia.bias", "must be a whole number from -99 to 99 (positive: the region's area grows, negative: "
                          "it shrinks), got -100"),
    ("regions.sa.serves[0]", "AS1221 is already served by region asia; an autonomous system belongs to one region"),
    ("regions.sa.bias", "must be a whole number from -99 to 99 (positive: the region's area grows, negative: it "
                        "shrinks), got True"),
]

RECORD_EXPECTED = [
    ("records.above.min_healthy", "3 is more healthy endpoints than some pools hold (us has 2): those regions could "
                                  "never serve; lower it, add endpoints, or use a share like 50%"),
    ("records.word.min_healthy", "must be a number of endpoints like 2, or a share of each pool like 50%, got 'two'"),
    ("records.fraction.min_healthy", "must be a number of endpoints like 2, or a share of each pool like 50%, got 2.5"),
    ("records.zero.min_healthy", "must be at least 1 (a number of endpoints like 2, or a share of each pool like "
                                 "50%), got 0"),
    ("records.share.min_healthy", "a share of the pool must be more than 0% and at most 100%, got 150%"),
    ("records.no-share.min_healthy", "a share of the pool must be more than 0% and at most 100%, got 0%"),
]


def run_gslb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(gslb_command(*args), capture_output=True, text=True, timeout=TIMEOUT)


def lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("gslb:") and " INFO " not in line]


def test_every_region_mistake_is_one_line_with_its_key_path(tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "mistakes.yaml").write_text(ZONE)
    result = run_gslb("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP), "--asn-db", str(ASN_TEST_DB))
    assert result.returncode == 1
    found = lines(result.stderr)
    for path, message in EXPECTED:
        prefix = f"{zones / 'mistakes.yaml'}: {path}: {message}"
        assert any(line.startswith(prefix) for line in found), (prefix, found)
    assert "Traceback" not in result.stderr
    # "AS" alone is Asia (the continent code), not a mistaken ASN
    assert not any("regions.asia.serves[0]" in line for line in found)


def test_every_min_healthy_mistake_is_one_line_with_its_key_path(tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    text = ZONE.replace("serves: [EU, AS-13335], bias: 120", "serves: [EU]").replace(
        "serves: [as13335, 13335, ASN7018, AS0], bias: far", "serves: [NA]").replace(
        "serves: [AS, AS1221], bias: -100", "serves: [AS]").replace("serves: [AS1221], bias: true", "serves: [SA]")
    (zones / "mistakes.yaml").write_text(text)
    result = run_gslb("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 1
    found = lines(result.stderr)
    for path, message in RECORD_EXPECTED:
        prefix = f"{zones / 'mistakes.yaml'}: {path}: {message}"
        assert any(line.startswith(prefix) for line in found), (prefix, found)
    assert len(found) == len(RECORD_EXPECTED), found


def test_asn_rules_without_an_asn_database_are_refused_where_they_are_written():
    result = run_gslb("check", "--zones", str(ROUTING_ZONES), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 1
    zone = ROUTING_ZONES / "routing.example.yaml"
    assert lines(result.stderr) == [
        f"{zone}: regions.us-west.serves: AS7018 needs an ASN database: pass --asn-db FILE (GeoLite2-ASN or "
        "DB-IP ASN Lite .mmdb) or set asn_db: in the server config",
        f"{zone}: regions.asia.serves: AS1221, AS6730 need an ASN database: pass --asn-db FILE (GeoLite2-ASN or "
        "DB-IP ASN Lite .mmdb) or set asn_db: in the server config",
    ]


def test_the_routing_zone_checks_with_the_asn_database_by_flag_and_by_config(tmp_path):
    result = run_gslb("check", "--zones", str(ROUTING_ZONES), "--geoip", str(TEST_GEOIP), "--asn-db", str(ASN_TEST_DB))
    assert result.returncode == 0, result.stderr
    assert "1 zone OK" in result.stdout
    config = tmp_path / "gslb.yaml"
    config.write_text(f"zones: {ROUTING_ZONES}\ngeoip: {TEST_GEOIP}\nasn_db: {ASN_TEST_DB}\n")
    result = run_gslb("check", "--config", str(config))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("asn_db, message", [
    (TEST_GEOIP, "is a GeoIP2-City database, not an ASN one (its records name no autonomous system); "
                 "pass --asn-db FILE with an ASN .mmdb (GeoLite2-ASN, DB-IP ASN Lite)"),
    (DATA / "geo" / "missing.mmdb", "not found; pass --asn-db FILE with an ASN .mmdb (GeoLite2-ASN, DB-IP ASN Lite)"),
], ids=["city-file", "missing"])
def test_an_unusable_asn_file_is_one_line_naming_it(asn_db, message):
    result = run_gslb("check", "--zones", str(ROUTING_ZONES), "--geoip", str(TEST_GEOIP), "--asn-db", str(asn_db))
    assert result.returncode == 1
    assert lines(result.stderr) == [f"ASN file {asn_db}: {message}"]
