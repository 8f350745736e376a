"""Geo routing on the wire: EDNS Client Subnet (RFC 7871) in, the region's answer and a correct
scope out. A real server with MaxMind's GeoIP2-City-Test.mmdb; dnspython and dig as clients.

Addresses the test database knows: 81.2.69.142/31.. GB (EU); 175.16.199.0/24 CN (Asia);
216.160.83.56/29 US-WA; 2001:218::/32 JP; 2001:480:10::/48 US-CA.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsserver import GslbProcess

ZONES = Path(__file__).resolve().parent / "data" / "zones_geo"
POOLS = {
    "us-east": "198.51.100.10",
    "us-west": "198.51.100.20",
    "eu": "203.0.113.10",
    "asia": "203.0.113.20",
    "lab": "192.0.2.200",
}


@pytest.fixture(scope="module")
def server(start_server) -> GslbProcess:
    return start_server(ZONES, probe_name="geo.example.")


def ask(server: GslbProcess, name: str, subnet: str | None, rdtype: str = "A", tcp: bool = False):
    options = []
    if subnet is not None:
        network = ipaddress.ip_network(subnet, strict=False)
        options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
    query = dns.message.make_query(name, rdtype, use_edns=0, options=options)
    return server.exchange(query, tcp=tcp)


def addresses(reply: dns.message.Message) -> set[str]:
    return {rdata.to_text() for rrset in reply.answer for rdata in rrset}


def scope_of(reply: dns.message.Message) -> dns.edns.ECSOption | None:
    for option in reply.options:
        if isinstance(option, dns.edns.ECSOption):
            return option
    return None


@pytest.mark.parametrize(
    "subnet, region",
    [
        ("81.2.69.160/27", "eu"),  # GB: continent EU
        ("175.16.199.0/24", "asia"),  # CN: no rule names Asia, nearest by distance is asia
        ("216.160.83.56/29", "us-west"),  # US-WA: subdivision rule
        ("149.101.100.0/28", "us-east"),  # US, no subdivision: nearest or default
        ("8.8.8.0/24", "us-east"),  # unknown to the test DB: default_region
    ],
)
def test_ipv4_client_subnets_get_their_regions_answers(server: GslbProcess, tcp: bool, subnet: str, region: str) -> None:
    reply = ask(server, "www.geo.example.", subnet, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {POOLS[region]}


@pytest.mark.parametrize(
    "subnet, expected",
    [("2001:218::/32", "2001:db8:4::20"), ("2001:480:10::/48", "2001:db8:2::20")],
)
def test_ipv6_client_subnets_get_their_regions_answers(server: GslbProcess, tcp: bool, subnet: str, expected: str) -> None:
    reply = ask(server, "www6.geo.example.", subnet, rdtype="AAAA", tcp=tcp)
    assert addresses(reply) == {expected}
    option = scope_of(reply)
    assert option is not None and option.srclen == ipaddress.ip_network(subnet).prefixlen


def test_reply_echoes_family_source_prefix_and_address(server: GslbProcess, tcp: bool) -> None:
    """RFC 7871 section 7.2.1."""
    reply = ask(server, "www.geo.example.", "175.16.199.0/24", tcp=tcp)
    option = scope_of(reply)
    assert option is not None
    assert (option.family, option.address, option.srclen) == (1, "175.16.199.0", 24)


def test_scope_is_the_merged_prefix_not_the_source_prefix(server: GslbProcess, tcp: bool) -> None:
    """Two subnet rules 10.0.0.0/9 and 10.128.0.0/9 of one region merge into 10.0.0.0/8; 11/8 is
    unknown to the DB and goes to another region, so /8 is the widest correct scope."""
    reply = ask(server, "www.geo.example.", "10.1.2.0/24", tcp=tcp)
    assert addresses(reply) == {POOLS["eu"]}
    assert scope_of(reply).scopelen == 8


def test_scope_never_claims_addresses_of_another_region(server: GslbProcess) -> None:
    """Every address inside the returned scope must get the same answer (sampled)."""
    for subnet in ("81.2.69.160/27", "175.16.199.0/24", "216.160.83.56/29", "10.200.0.0/16", "81.2.69.192/28"):
        reply = ask(server, "www.geo.example.", subnet)
        answer = addresses(reply)
        scope = scope_of(reply).scopelen
        network = ipaddress.ip_network(subnet).supernet(new_prefix=scope) if scope < ipaddress.ip_network(subnet).prefixlen else ipaddress.ip_network(subnet)
        for offset in range(0, network.num_addresses, max(1, network.num_addresses // 16)):
            probe = network.network_address + offset
            assert addresses(ask(server, "www.geo.example.", f"{probe}/32")) == answer, (subnet, scope, str(probe))


def test_subnet_rule_inside_a_geoip_network_wins_and_narrows_the_scope(server: GslbProcess) -> None:
    """81.2.69.144/28 is a GB network in the DB; the zone's rule sends it to `lab`."""
    reply = ask(server, "www.geo.example.", "81.2.69.144/28")
    assert addresses(reply) == {POOLS["lab"]}
    assert scope_of(reply).scopelen >= 28
    neighbour = ask(server, "www.geo.example.", "81.2.69.160/27")
    assert addresses(neighbour) == {POOLS["eu"]}
    assert scope_of(neighbour).scopelen >= 27


def test_static_answers_nxdomain_and_nodata_have_scope_zero(server: GslbProcess, tcp: bool) -> None:
    """RFC 7871 section 7.2.1: an answer that does not depend on the client has scope 0."""
    for name, rdtype, rcode in (("static.geo.example.", "A", 0), ("nope.geo.example.", "A", 3), ("static.geo.example.", "TXT", 0)):
        reply = ask(server, name, "81.2.69.160/27", rdtype=rdtype, tcp=tcp)
        assert reply.rcode() == rcode
        option = scope_of(reply)
        assert option is not None and option.scopelen == 0


def test_without_ecs_the_source_address_decides(server: GslbProcess, tcp: bool) -> None:
    """The test clients come from 127.0.0.1, which a subnet rule sends to `lab`."""
    reply = ask(server, "www.geo.example.", None, tcp=tcp)
    assert addresses(reply) == {POOLS["lab"]}
    assert scope_of(reply) is None


def test_source_prefix_zero_answers_for_the_resolver_with_scope_zero(server: GslbProcess) -> None:
    """RFC 7871 section 7.1.2: SOURCE PREFIX-LENGTH 0 means 'use the resolver's address'."""
    reply = ask(server, "www.geo.example.", "0.0.0.0/0")
    assert addresses(reply) == {POOLS["lab"]}
    assert scope_of(reply).scopelen == 0


def test_a_region_without_a_pool_falls_to_the_nearest_region_with_one(server: GslbProcess) -> None:
    """`partial` has pools in eu and us-west only: asia's clients (CN) go to the pool nearest to
    asia's site (Singapore: Frankfurt ~10,300 km, San Jose ~13,600 km)."""
    reply = ask(server, "partial.geo.example.", "175.16.199.0/24")
    assert addresses(reply) == {"203.0.113.50"}


@pytest.mark.parametrize(
    "option_data",
    [
        b"\x00\x01\x18",  # shorter than 4 bytes
        b"\x00\x07\x18\x00\x0a\x00\x00",  # unknown family
        b"\x00\x01\x21\x00\x0a\x00\x00\x00\x00",  # source prefix 33 for IPv4
        b"\x00\x01\x18\x00\x0a\x00\x00\x00",  # 4 address bytes for a /24
        b"\x00\x01\x17\x00\x0a\x00\x01",  # bits set past a /23
    ],
    ids=["short", "family", "prefix-too-long", "too-many-bytes", "bits-past-prefix"],
)
def test_malformed_ecs_gets_formerr(server: GslbProcess, tcp: bool, option_data: bytes) -> None:
    """RFC 7871 section 6."""
    query = dns.message.make_query("www.geo.example.", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(8, option_data)])
    raw = server.send_raw(query.to_wire(), tcp=tcp)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == query.id
    assert addresses(ask(server, "www.geo.example.", "81.2.69.160/27", tcp=tcp)) == {POOLS["eu"]}


def test_dig_subnet_gets_the_regions_answer_and_prints_the_scope(server: GslbProcess) -> None:
    for subnet, expected in (("81.2.69.160/27", POOLS["eu"]), ("216.160.83.56/29", POOLS["us-west"])):
        output = subprocess.run(
            ["dig", f"@{server.host}", "-p", str(server.port), "www.geo.example.", "A",
             f"+subnet={subnet}", "+norec", "+tries=1", "+time=2"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        assert "status: NOERROR" in output
        assert f"CLIENT-SUBNET: {subnet}/" in output, output
        assert expected in output.split("ANSWER SECTION:")[1]
