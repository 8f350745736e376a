"""Minimum healthy, geoproximity bias and ASN rules as a client sees them: a real `gslb serve`
with MaxMind's GeoIP2-City-Test.mmdb and GeoLite2-ASN-Test.mmdb (`--asn-db`), dnspython and dig.

The zone is tests/data/zones_routing/routing.example.yaml. Clients are placed by ECS subnets
from the test databases: 81.2.69.160/27 London (nearest Dublin, but Frankfurt's bias +40 wins),
1.128.0.0/11 AS1221 (asia by ASN rule; 1.128.4.0/22 is a subnet rule for us-east inside it),
12.81.92.0/22 AS7018 (us-west), 2001:1700::/27 AS6730 (asia). Every scope is checked against the
oracle of tests/test_geo_asn.py (maxminddb over both files). Health comes from the admin state
file (`--state`), so no probe timing is involved. Reloads (bias changed, ASN file replaced) run last.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsserver import TEST_GEOIP, GslbProcess, gslb_command, wait_for
from gslb.config.problems import Problems
from gslb.config.regions import parse_regions
from gslb.config.yamlload import load_yaml
from opsserver import read_api_url, write_atomically
from test_geo_asn import ASN_TEST_DB, AsnOracle, write_asn

ZONES = Path(__file__).resolve().parent / "data" / "zones_routing"
ZONE_FILE = "routing.example.yaml"
WWW = "www.routing.example."
POOLS = {
    "fra": ["192.0.2.11", "192.0.2.12", "192.0.2.13"],
    "dub": ["192.0.2.21", "192.0.2.22"],
    "us-east": ["198.51.100.11", "198.51.100.12"],
    "us-west": ["198.51.100.21", "198.51.100.22"],
    "asia": ["203.0.113.31", "203.0.113.32"],
}
RELOAD_TIMEOUT = 20.0
CLIENTS = [  # ECS subnet, region, why
    ("81.2.69.160/27", "fra", "nearest fra (635 km, biased 381 km)"),
    ("89.160.20.112/28", "fra", None),                     # Linkoping: nearer Frankfurt anyway
    ("1.128.0.0/24", "asia", "asn AS1221"),
    ("1.128.5.0/24", "us-east", "subnet 1.128.4.0/22"),    # the subnet rule beats AS1221
    ("1.144.0.0/16", "asia", "asn AS1221"),
    ("12.81.92.0/24", "us-west", "asn AS7018"),
    ("2001:1700::/48", "asia", "asn AS6730"),
    ("216.160.83.56/29", "us-west", "subdivision NA-US-WA"),
]


def zone_rules(zones: Path):
    problems = Problems(ZONE_FILE)
    doc = load_yaml(zones / ZONE_FILE, problems)
    rules = parse_regions(doc, problems)
    assert rules is not None and not problems, list(problems)
    return rules


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A running server over copies of the zone, the ASN file and an empty state file."""
    base = tmp_path_factory.mktemp("routing")
    zones = base / "zones"
    shutil.copytree(ZONES, zones)
    asn_db = base / "asn.mmdb"
    shutil.copyfile(ASN_TEST_DB, asn_db)
    state = base / "state.yaml"
    state.write_text("{}\n")
    server = GslbProcess.start(zones, log_dir=base / "logs", geoip=TEST_GEOIP, probe_name="routing.example.",
                               extra=["--asn-db", str(asn_db), "--state", str(state), "--api", "127.0.0.1:0"])
    try:
        yield server, read_api_url(server), zones, asn_db, state
    finally:
        server.stop()


def ask(server: GslbProcess, name: str, subnet: str, tcp: bool = False):
    network = ipaddress.ip_network(subnet)
    query = dns.message.make_query(name, "A", use_edns=0,
                                   options=[dns.edns.ECSOption(str(network.network_address), network.prefixlen)])
    if tcp:
        reply = dns.query.tcp(query, server.host, port=server.port, timeout=3)
    else:
        reply = dns.query.udp(query, server.host, port=server.port, timeout=3)
    scope = next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), None)
    addresses = sorted(rr.address for rrset in reply.answer for rr in rrset)
    ttl = reply.answer[0].ttl if reply.answer else None
    return dns.rcode.to_text(reply.rcode()), addresses, scope, ttl


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def expected_scope(oracle: AsnOracle, subnet: str) -> int:
    return oracle.placement(ipaddress.ip_network(subnet).network_address).scope_prefix


def set_state(state: Path, text: str) -> None:
    write_atomically(state, text)


# -- placement: bias and ASN rules, with correct scopes ---------------------------------------------
@pytest.mark.parametrize("subnet, region, why", CLIENTS, ids=[c[0] for c in CLIENTS])
def test_clients_get_their_regions_pool_with_the_widest_correct_scope(setup, tcp, subnet, region, why):
    server, _, zones, _, _ = setup
    oracle = AsnOracle(TEST_GEOIP, zone_rules(zones), ASN_TEST_DB)
    region_now, rule, _ = oracle.explain(ipaddress.ip_network(subnet).network_address)
    assert region_now == region and (why is None or rule == why)
    rcode, addresses, scope, ttl = ask(server, WWW, subnet, tcp=tcp)
    assert (rcode, addresses, ttl) == ("NOERROR", POOLS[region], 60)
    assert scope == expected_scope(oracle, subnet)


def test_dig_sees_the_asn_rule_and_its_scope(setup):
    server, _, zones, _, _ = setup
    oracle = AsnOracle(TEST_GEOIP, zone_rules(zones), ASN_TEST_DB)
    result = subprocess.run(["dig", f"@{server.host}", "-p", str(server.port), WWW, "A", "+subnet=1.128.0.0/24",
                             "+noall", "+answer", "+comments", "+time=3", "+tries=1"],
                            capture_output=True, text=True, timeout=15)
    assert result.returncode == 0, result.stderr
    answers = sorted(line.split()[-1] for line in result.stdout.splitlines()
                     if line and not line.startswith(";") and "\tA\t" in line.replace(" ", "\t"))
    assert answers == POOLS["asia"]
    scope = expected_scope(oracle, "1.128.0.0/24")
    assert f"CLIENT-SUBNET: 1.128.0.0/24/{scope}" in result.stdout
    assert scope == 22  # 1.128.0.0/22 is asia; the next /22 is the us-east subnet rule


def test_explain_shows_the_asn_rule_and_the_biased_distances(setup):
    _, api, _, _, _ = setup
    asn = get(f"{api}/explain?name={WWW}&subnet=1.128.0.0/24")
    assert (asn["asn"], asn["rule"], asn["region"], asn["scope_prefix"]) == ("AS1221", "asn AS1221", "asia", 22)
    london = get(f"{api}/explain?name={WWW}&subnet=81.2.69.160/27")
    assert london["rule"] == "nearest fra (635 km, biased 381 km)"
    distances = {d["region"]: d for d in london["distances"]}
    assert distances["fra"]["bias"] == 40 and distances["dub"]["bias"] == 0
    assert distances["fra"]["biased_km"] == pytest.approx(distances["fra"]["km"] * 0.6, abs=0.2)
    assert distances["dub"]["km"] < distances["fra"]["km"]
    assert london["record"]["min_healthy"] == 2
    assert london["regions"][0]["why"] == "3 of 3 healthy, min_healthy 2: serves"


def test_explain_command_prints_asn_distances_and_the_region_walk():
    args = ["explain", WWW, "--zones", str(ZONES), "--geoip", str(TEST_GEOIP), "--asn-db", str(ASN_TEST_DB)]
    london = subprocess.run(gslb_command(*args, "--subnet", "81.2.69.160/27", "--assume-down", "192.0.2.11",
                                         "--assume-down", "192.0.2.12"), capture_output=True, text=True, timeout=30)
    assert london.returncode == 0, london.stderr
    lines = london.stdout.splitlines()
    assert "rule:    nearest fra (635 km, biased 381 km)" in lines
    assert "distance: us-east 5920 km; us-west 8633 km; dub 465 km; fra 635 km (bias +40: 381 km); asia 10846 km" in lines
    assert ("health:  fra: 1 of 3 healthy, below min_healthy 2: skipped; "
            "dub: 2 of 2 healthy, min_healthy 2: serves") in lines
    assert "answer:  192.0.2.21, 192.0.2.22 (ttl 10)" in lines
    asn = subprocess.run(gslb_command(*args, "--subnet", "12.81.92.0/24"), capture_output=True, text=True, timeout=30)
    assert "asn:     AS7018" in asn.stdout.splitlines() and "rule:    asn AS7018" in asn.stdout.splitlines()


def test_status_shows_min_healthy_bias_and_asns(setup):
    _, api, _, _, _ = setup
    document = get(f"{api}/status")
    records = {entry["record"]: entry for entry in document["records"]}
    assert records[f"{WWW} A"]["min_healthy"] == 2
    assert records["share.routing.example. A"]["min_healthy"] == "60%"
    assert records["plain.routing.example. A"]["min_healthy"] is None
    regions = document["regions"]["routing.example."]["regions"]
    assert regions["fra"]["bias"] == 40 and "bias" not in regions["dub"]
    assert regions["asia"]["asns"] == ["AS1221", "AS6730"] and regions["us-west"]["asns"] == ["AS7018"]


# -- min_healthy -------------------------------------------------------------------------------------
def test_a_region_below_min_healthy_sends_its_clients_to_the_fallback(setup, tcp):
    server, api, _, _, state = setup
    london = "81.2.69.160/27"
    set_state(state, "192.0.2.11: down\n192.0.2.12: down\n")
    try:
        wait_for(lambda: ask(server, WWW, london, tcp)[1] == POOLS["dub"], RELOAD_TIMEOUT,
                 "www to leave fra (1 of 3 healthy, min_healthy 2) for dub")
        rcode, addresses, _, ttl = ask(server, WWW, london, tcp)
        assert (rcode, addresses, ttl) == ("NOERROR", POOLS["dub"], 10)  # degraded TTL
        # Without min_healthy the one healthy endpoint keeps fra; with a share (60%: 2 of 3)
        # under round_robin, dub answers one address at a time.
        assert ask(server, "plain.routing.example.", london, tcp)[1] == ["192.0.2.13"]
        assert {ask(server, "share.routing.example.", london, tcp)[1][0] for _ in range(4)} == set(POOLS["dub"])
        explained = get(f"{api}/explain?name={WWW}&subnet={london}")
        assert [step["why"] for step in explained["regions"]] == [
            "1 of 3 healthy, below min_healthy 2: skipped", "2 of 2 healthy, min_healthy 2: serves"]
        status = get(f"{api}/status")
        assert status["routing"]["routing.example."]["EU"]["records"][f"{WWW} A"]["region"] == "dub"
        # dub below min_healthy as well: the next region by distance from fra
        set_state(state, "192.0.2.11: down\n192.0.2.12: down\n192.0.2.21: down\n")
        wait_for(lambda: ask(server, WWW, london, tcp)[1] == POOLS["us-east"], RELOAD_TIMEOUT,
                 "www to fall past dub to us-east")
    finally:
        set_state(state, "{}\n")
        wait_for(lambda: ask(server, WWW, london, tcp)[1] == POOLS["fra"], RELOAD_TIMEOUT, "fra back")


# -- reloads: the table follows the bias and the ASN file ---------------------------------------------
def test_changing_a_bias_reloads_a_table_with_the_new_areas(setup):
    server, _, zones, _, _ = setup
    zone = zones / ZONE_FILE
    text = zone.read_text()
    write_atomically(zone, text.replace("fra:     {location: [50.11, 8.68], bias: 40}",
                                        "fra:     {location: [50.11, 8.68]}"))
    try:
        wait_for(lambda: ask(server, WWW, "81.2.69.160/27")[1] == POOLS["dub"], RELOAD_TIMEOUT,
                 "London to go to dub once fra's bias is gone")
        oracle = AsnOracle(TEST_GEOIP, zone_rules(zones), ASN_TEST_DB)
        for subnet in ("81.2.69.160/27", "89.160.20.112/28", "1.128.0.0/24"):
            _, addresses, scope, _ = ask(server, WWW, subnet)
            region = oracle.region_at(ipaddress.ip_network(subnet).network_address)
            assert (addresses, scope) == (POOLS[region], expected_scope(oracle, subnet)), subnet
    finally:
        write_atomically(zone, text)
        wait_for(lambda: ask(server, WWW, "81.2.69.160/27")[1] == POOLS["fra"], RELOAD_TIMEOUT, "the bias back")


def test_replacing_the_asn_file_reloads_the_asn_rules(setup, tmp_path):
    server, _, zones, asn_db, _ = setup
    # London's /24 now in AS7018 (us-west by ASN rule, which beats geography); AS1221 gone.
    replacement = write_asn(tmp_path / "new-asn.mmdb", {"81.2.69.0/24": 7018})
    original = asn_db.read_bytes()
    write_atomically(asn_db, replacement.read_bytes())
    try:
        wait_for(lambda: ask(server, WWW, "81.2.69.160/27")[1] == POOLS["us-west"], RELOAD_TIMEOUT,
                 "London to follow the new ASN file to us-west")
        oracle = AsnOracle(TEST_GEOIP, zone_rules(zones), replacement)
        for subnet in ("81.2.69.160/27", "81.2.69.0/24", "1.128.0.0/24"):
            _, addresses, scope, _ = ask(server, WWW, subnet)
            region = oracle.region_at(ipaddress.ip_network(subnet).network_address)
            assert (addresses, scope) == (POOLS[region], expected_scope(oracle, subnet)), subnet
    finally:
        write_atomically(asn_db, original)
        wait_for(lambda: ask(server, WWW, "81.2.69.160/27")[1] == POOLS["fra"], RELOAD_TIMEOUT, "the ASN file back")
