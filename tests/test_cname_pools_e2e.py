"""GSLB records of type CNAME (pools of host names), over real sockets with dnspython and dig.

`www`: eu -> lb-eu.example.net. (probed at 127.0.0.151), us-east -> lb-us.example.net. (at
127.0.0.152): targets outside every zone served, so an A query gets the CNAME alone. `app`: eu ->
eu-static (an in-zone static A), us-east -> us-gslb (an in-zone GSLB A with the hash policy,
whose /24 scope is narrower than the regions' /16). `local`: localhost., probed through the
system resolver. `secure`: an HTTPS-checked name (SNI). Clients are placed by ECS (10.1/16 eu, 10.2/16 us-east); without ECS the
source 127.0.0.1 falls to the default region, us-east.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import TEST_GEOIP, GslbProcess, free_port, gslb_command
from opsserver import EU, US, Sites, ask_async, eventually, get_json, http_sites, start_with_api
from sites import self_signed

TOKEN = "cname-token"
EU_PROBE, US_PROBE, LOCALHOST, TLS_PROBE = "127.0.0.151", "127.0.0.152", "127.0.0.1", "127.0.0.153"

ZONE = """
origin: cname.test.
ns: [ns1.cname.test.]
soa: {{mname: ns1.cname.test., rname: hostmaster.cname.test., serial: 1}}
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
subnets:
  10.1.0.0/16: eu
  10.2.0.0/16: us-east
default_region: us-east
checks:
  web: {{http: {{path: /healthz, port: {port}}}, interval: 0.2s, timeout: 0.1s, fall: 2, rise: 2}}
  tls: {{https: {{path: /healthz, port: {tls_port}, verify_tls: false}}, interval: 0.2s, timeout: 0.1s}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  www:
    type: CNAME
    ttl: 60
    check: web
    pools:
      eu: [{{value: lb-eu.example.net., probe: {eu}}}]
      us-east: [{{value: lb-us.example.net., probe: {us}}}]
  app: {{type: CNAME, ttl: 60, pools: {{eu: [eu-static.cname.test.], us-east: [us-gslb.cname.test.]}}}}
  eu-static: {{type: A, value: 192.0.2.10}}
  us-gslb: {{type: A, policy: {{hash: {{ipv4_prefix: 24}}}}, pools: {{eu: [192.0.2.21], us-east: [192.0.2.22]}}}}
  local: {{type: CNAME, check: web, pools: {{eu: [localhost.]}}}}
  plain: {{type: A, pools: {{eu: [192.0.2.31], us-east: [192.0.2.32]}}}}
  secure: {{type: CNAME, check: tls, pools: {{eu: [{{value: lb-tls.example.net., probe: {tls}}}]}}}}
"""


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    with http_sites([EU_PROBE, US_PROBE, LOCALHOST]) as running:
        yield running


@pytest.fixture(scope="module")
def tls_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """An HTTPS site at TLS_PROBE whose certificate is for lb-tls.example.net."""
    pytest.importorskip("cryptography")
    cert, key = self_signed(tmp_path_factory.mktemp("tls"), "lb-tls.example.net")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    running = Sites(free_port([TLS_PROBE]), context)
    running.http(TLS_PROBE)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def world(sites: Sites, tls_sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    base = tmp_path_factory.mktemp("cname")
    zones = base / "zones"
    zones.mkdir()
    (zones / "cname.test.yaml").write_text(ZONE.format(port=sites.port, eu=EU_PROBE, us=US_PROBE,
                                                       tls_port=tls_sites.port, tls=TLS_PROBE))
    (base / "token").write_text(TOKEN)
    (base / "gslb.yaml").write_text("api_token_file: token\n")
    server, url = start_with_api(zones, base / "logs", probe_name="cname.test.", config=base / "gslb.yaml",
                                 extra=["--state", str(base / "state.yaml")])
    yield server, url
    server.stop()


@pytest.fixture
async def http() -> Iterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def query(server: GslbProcess, name: str, rdtype: str = "A", subnet: str | None = None,
          tcp: bool = False) -> dns.message.Message:
    options = [dns.edns.ECSOption(subnet, 24)] if subnet is not None else None
    message = dns.message.make_query(name, rdtype, use_edns=0 if subnet is not None else None, options=options)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(message, server.host, port=server.port, timeout=2)


def answer(reply: dns.message.Message) -> list[tuple[str, str, str]]:
    """(owner, type, value) of every answer RR, in order."""
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rr.to_text())
            for rrset in reply.answer for rr in rrset]


def scope(reply: dns.message.Message) -> int | None:
    return next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), None)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_each_region_gets_its_name_with_the_region_scope(world, tcp):
    server, _ = world
    for subnet, target in ((EU, "lb-eu.example.net."), (US, "lb-us.example.net.")):
        region_scope = scope(query(server, "plain.cname.test.", "A", subnet, tcp))  # what a GSLB A says
        assert region_scope is not None and 0 < region_scope <= 16
        for rdtype in ("A", "AAAA", "CNAME"):
            reply = query(server, "www.cname.test.", rdtype, subnet, tcp)
            assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
            # the target is outside every zone served here: the CNAME alone, the resolver follows it
            assert answer(reply) == [("www.cname.test.", "CNAME", target)], (subnet, rdtype)
            assert reply.answer[0].ttl == 60
            assert scope(reply) == region_scope  # the prefix over which the region holds
    reply = query(server, "www.cname.test.", "A", tcp=tcp)  # no ECS: the source 127.0.0.1, default us-east
    assert answer(reply) == [("www.cname.test.", "CNAME", "lb-us.example.net.")]
    assert scope(reply) is None


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_in_zone_targets_are_followed_to_a_static_and_to_a_gslb_address(world, tcp):
    server, _ = world
    eu_scope = scope(query(server, "plain.cname.test.", "A", EU, tcp))
    us_scope = scope(query(server, "plain.cname.test.", "A", US, tcp))
    assert eu_scope is not None and us_scope is not None and max(eu_scope, us_scope) < 24
    reply = query(server, "app.cname.test.", "A", EU, tcp)
    assert answer(reply) == [("app.cname.test.", "CNAME", "eu-static.cname.test."),
                             ("eu-static.cname.test.", "A", "192.0.2.10")]
    assert scope(reply) == eu_scope
    reply = query(server, "app.cname.test.", "A", US, tcp)
    assert answer(reply) == [("app.cname.test.", "CNAME", "us-gslb.cname.test."),
                             ("us-gslb.cname.test.", "A", "192.0.2.22")]
    assert scope(reply) == 24  # the narrowest of the chain: the hash policy reads the /24
    reply = query(server, "app.cname.test.", "CNAME", US, tcp)  # a CNAME query: the CNAME only
    assert answer(reply) == [("app.cname.test.", "CNAME", "us-gslb.cname.test.")]
    assert scope(reply) == us_scope
    reply = query(server, "app.cname.test.", "AAAA", EU, tcp)  # the target has no AAAA: NODATA after the CNAME
    assert answer(reply) == [("app.cname.test.", "CNAME", "eu-static.cname.test.")]
    assert reply.rcode() == dns.rcode.NOERROR
    assert [dns.rdatatype.to_text(rrset.rdtype) for rrset in reply.authority] == ["SOA"]


def test_dig_sees_the_chain(world):
    server, _ = world
    dig = shutil.which("dig")
    assert dig is not None, "dig not found: install bind9-dnsutils"
    for subnet, expected in (("10.1.0.0/24", ["eu-static.cname.test.", "192.0.2.10"]),
                             ("10.2.0.0/24", ["us-gslb.cname.test.", "192.0.2.22"])):
        output = subprocess.run([dig, f"@{server.host}", "-p", str(server.port), "+short", f"+subnet={subnet}",
                                 "app.cname.test", "A"], capture_output=True, text=True, timeout=10).stdout
        assert output.split() == expected
        output = subprocess.run([dig, f"@{server.host}", "-p", str(server.port), "+tcp", "+short",
                                 f"+subnet={subnet}", "www.cname.test", "CNAME"],
                                capture_output=True, text=True, timeout=10).stdout
        assert output.split() == ["lb-eu.example.net." if subnet.startswith("10.1") else "lb-us.example.net."]


async def test_the_probes_carry_the_name_as_host_at_the_probe_address_or_the_resolved_name(world, sites):
    def hosts_seen() -> bool:
        return (f"lb-eu.example.net:{sites.port}" in sites.hosts.get(EU_PROBE, [])
                and f"lb-us.example.net:{sites.port}" in sites.hosts.get(US_PROBE, [])
                and f"localhost:{sites.port}" in sites.hosts.get(LOCALHOST, []))

    async def seen() -> bool:
        return hosts_seen()

    await eventually(seen, 5, "each site probed with its endpoint's name as Host")
    # each site was asked only for its own name: the probe address is where, the name is what
    assert set(sites.hosts[EU_PROBE]) == {f"lb-eu.example.net:{sites.port}"}
    assert set(sites.hosts[US_PROBE]) == {f"lb-us.example.net:{sites.port}"}


async def test_an_https_check_sends_the_name_as_sni_and_host(world, tls_sites):
    async def seen() -> bool:
        return "lb-tls.example.net" in tls_sites.sni and \
            f"lb-tls.example.net:{tls_sites.port}" in tls_sites.hosts.get(TLS_PROBE, [])

    await eventually(seen, 5, "the TLS site probed with the endpoint's name as SNI and Host")
    assert set(tls_sites.sni) == {"lb-tls.example.net"}


async def test_a_failing_probe_moves_the_region_to_the_other_name_and_back(world, sites):
    server, _ = world
    assert await ask_async(server, "www.cname.test", EU) == ("NOERROR", ["lb-eu.example.net."])
    sites.stop(EU_PROBE)
    try:
        await eventually(lambda: _answers(server, EU, ["lb-us.example.net."]), 5, "eu clients sent to lb-us")
        reply = query(server, "www.cname.test.", "A", EU)
        assert reply.answer[0].ttl == 30  # degraded: half the TTL
    finally:
        sites.http(EU_PROBE)
    await eventually(lambda: _answers(server, EU, ["lb-eu.example.net."]), 5, "eu clients back on lb-eu")


async def _answers(server: GslbProcess, subnet: str, expected: list[str]) -> bool:
    return (await ask_async(server, "www.cname.test", subnet)) == ("NOERROR", expected)


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def endpoint(status: dict[str, Any], address: str) -> dict[str, Any]:
    return next(e for e in status["endpoints"] if e["address"] == address)


async def test_the_host_name_is_the_health_key_for_overrides_status_metrics_and_explain(world, http):
    server, url = world
    code, status = await get_json(http, f"{url}/status")
    assert code == 200
    found = endpoint(status, "lb-eu.example.net.")
    assert (found["check"], found["status"]) == ("web", "UP")
    record = next(r for r in status["records"] if r["record"] == "www.cname.test. CNAME")
    assert record["pools"] == {"eu": ["lb-eu.example.net."], "us-east": ["lb-us.example.net."]}
    assert record["policy"] == "failover"

    async with http.post(f"{url}/admin/endpoints/LB-EU.example.net.", json={"state": "down"},
                         headers=bearer()) as response:
        body = await response.json()
        assert response.status == 200, body
        assert body["address"] == "lb-eu.example.net."
    try:
        await eventually(lambda: _answers(server, EU, ["lb-us.example.net."]), 5, "the override moving eu to lb-us")
        code, explained = await get_json(http, f"{url}/explain", params={"name": "www.cname.test",
                                                                         "subnet": "10.1.0.0/24"})
        assert code == 200
        assert explained["region"] == "eu"
        assert explained["answer"] == ["lb-us.example.net."]
        assert explained["scope_prefix"] == scope(query(server, "plain.cname.test.", "A", EU))
        assert explained["record"]["pools"] == {"eu": ["lb-eu.example.net."], "us-east": ["lb-us.example.net."]}
        assert explained["record"]["probes"] == {"lb-eu.example.net.": EU_PROBE, "lb-us.example.net.": US_PROBE}
        assert explained["record"]["not_serving"]["lb-eu.example.net."].startswith("DOWN")
        async with http.get(f"{url}/metrics") as response:
            metrics = await response.text()
        up = {tuple(sorted(sample.labels.items())): sample.value
              for family in text_string_to_metric_families(metrics) for sample in family.samples
              if sample.name == "gslb_endpoint_up"}
        assert up[(("address", "lb-eu.example.net."), ("check", "web"))] == 0
    finally:
        async with http.post(f"{url}/admin/endpoints/lb-eu.example.net.", json={"state": "auto"},
                             headers=bearer()) as response:
            assert response.status == 200
    await eventually(lambda: _answers(server, EU, ["lb-eu.example.net."]), 5, "eu clients back on lb-eu")
    # explain of an A query at the CNAME follows the chain as DNS does, and names the record's pools
    code, explained = await get_json(http, f"{url}/explain", params={"name": "app.cname.test", "subnet": "10.2.0.0/24"})
    assert explained["answer"] == ["us-gslb.cname.test.", "192.0.2.22"]
    assert explained["region"] == "us-east" and explained["scope_prefix"] == 24


def test_explain_on_the_command_line_shows_the_pools_probes_answer_and_scope(tmp_path: Path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "cname.test.yaml").write_text(ZONE.format(port=9, eu=EU_PROBE, us=US_PROBE, tls_port=9, tls=TLS_PROBE))
    done = subprocess.run(gslb_command("explain", "www.cname.test", "--zones", str(zones), "--geoip", str(TEST_GEOIP),
                                       "--subnet", "10.1.0.0/24"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "region:  eu" in lines
    assert f"pool:    eu: lb-eu.example.net. (probe {EU_PROBE})" in lines
    assert f"pool:    us-east: lb-us.example.net. (probe {US_PROBE})" in lines
    assert "policy:  failover; regions tried: eu > us-east" in lines
    assert "answer:  lb-eu.example.net. (ttl 60)" in lines
    assert any(line.startswith("scope:   /1") for line in lines)  # the region's prefix (/15 or /16)
    done = subprocess.run(gslb_command("explain", "www.cname.test", "--zones", str(zones), "--geoip", str(TEST_GEOIP),
                                       "--subnet", "10.1.0.0/24", "--assume-down", "LB-EU.example.net."),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "down:    lb-eu.example.net.: DOWN (assumed for this explanation)" in lines
    assert "answer:  lb-us.example.net. (ttl 30)" in lines


async def test_an_external_verdict_by_host_name_withdraws_the_name_until_deleted(world, http):
    server, url = world
    async with http.put(f"{url}/admin/health/lb-us.example.net.", json={"state": "down"},
                        headers=bearer()) as response:
        body = await response.json()
        assert response.status == 200, body
        assert body["address"] == "lb-us.example.net."
        assert [e["address"] for e in body["endpoints"]] == ["lb-us.example.net."]
    try:
        # us-east's only name is down: its clients go to eu's
        await eventually(lambda: _answers(server, US, ["lb-eu.example.net."]), 5, "us clients sent to lb-eu")
    finally:
        async with http.delete(f"{url}/admin/health/lb-us.example.net.", headers=bearer()) as response:
            assert response.status == 200
    await eventually(lambda: _answers(server, US, ["lb-us.example.net."]), 5, "us clients back on lb-us")
    async with http.put(f"{url}/admin/health/lb-us.example.net", json={"state": "down"},
                        headers=bearer()) as response:  # without the trailing dot: not a key
        body = await response.json()
        assert response.status == 400
        assert body["error"] == "address: 'lb-us.example.net' is not an IP address or a host name ending in '.'"
