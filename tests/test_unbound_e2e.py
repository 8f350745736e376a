"""End to end through a real recursive resolver: unbound with its subnetcache module forwards the
client's ECS to gslb and caches per scope, so two clients in different regions asking the same
resolver must each get their own region's answer (a wrong ECS scope would leak one to the other).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import pytest

from dnsserver import GslbProcess
from resolvers import UNBOUND, run_unbound

ZONES = Path(__file__).resolve().parent / "data" / "zones_geo"

pytestmark = pytest.mark.skipif(
    not Path(UNBOUND).exists(), reason="unbound is not installed (apt-get install unbound; CI installs it)"
)


@pytest.fixture(scope="module")
def gslb(start_server) -> GslbProcess:
    return start_server(ZONES, probe_name="geo.example.")


@pytest.fixture(scope="module")
def unbound(gslb: GslbProcess, tmp_path_factory: pytest.TempPathFactory):
    body = f"""    verbosity: 1
    module-config: "subnetcache iterator"
    send-client-subnet: 127.0.0.1
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 32
    max-client-subnet-ipv6: 64
    qname-minimisation: no
    local-zone: "geo.example." transparent
stub-zone:
    name: "geo.example."
    stub-addr: 127.0.0.1@{gslb.port}
"""
    with run_unbound(tmp_path_factory.mktemp("unbound"), body, "geo.example.") as port:
        yield port


def through_unbound(port: int, subnet: str) -> tuple[set[str], dns.message.Message]:
    address, prefix = subnet.split("/")
    query = dns.message.make_query("www.geo.example.", "A", use_edns=0,
                                   options=[dns.edns.ECSOption(address, int(prefix))])
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    return {r.to_text() for rrset in reply.answer for r in rrset}, reply


def test_two_clients_in_different_regions_get_their_own_answers_through_unbound(unbound: int) -> None:
    eu, _ = through_unbound(unbound, "81.2.69.160/27")
    us_west, _ = through_unbound(unbound, "216.160.83.56/29")
    asia, _ = through_unbound(unbound, "175.16.199.0/24")
    assert eu == {"203.0.113.10"}
    assert us_west == {"198.51.100.20"}
    assert asia == {"203.0.113.20"}
    # Again, now from unbound's cache: each client still gets its own region.
    assert through_unbound(unbound, "81.2.69.160/27")[0] == eu
    assert through_unbound(unbound, "216.160.83.56/29")[0] == us_west


def test_dig_through_unbound_with_subnet(unbound: int) -> None:
    for subnet, expected in (("81.2.69.160/27", "203.0.113.10"), ("175.16.199.0/24", "203.0.113.20")):
        output = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(unbound), "www.geo.example.", "A", f"+subnet={subnet}", "+short",
             "+tries=1", "+time=5"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.split()
        assert output == [expected]
