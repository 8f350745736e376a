"""The server as `dig` (bind9-dnsutils) sees it: a second, independent client implementation.

dig is required, not optional: CI installs bind9-dnsutils, and a missing dig fails these tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest
import yaml

from conftest import NODE_NAME
from dnsserver import EXAMPLE_ZONES

DIG = shutil.which("dig")


@dataclass
class Dig:
    status: str
    flags: set[str]
    counts: dict[str, int]
    sections: dict[str, list[list[str]]]  # "ANSWER" -> rows of whitespace-split fields
    output: str

    def rdata(self, section: str = "ANSWER", rdtype: str | None = None) -> set[str]:
        return {" ".join(row[4:]) for row in self.sections.get(section, []) if rdtype in (None, row[3])}


def dig(client, *args: str) -> Dig:
    assert DIG is not None, "dig not found: install bind9-dnsutils (CI does); these tests are not optional"
    family = ["-6"] if ":" in client.host else ["-4"]
    command = [DIG, *family, f"@{client.host}", "-p", str(client.port), "+tries=1", "+time=3", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    output = result.stdout
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}\n{output}{result.stderr}"
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; flags:([a-z ]*);", output)
    counts = re.search(r"QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)", output)
    assert status and flags and counts, f"no header in dig's output\n{output}"
    sections: dict[str, list[list[str]]] = {}
    current = None
    for line in output.splitlines():
        heading = re.match(r";; (\w+) SECTION:", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
        elif not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
        elif current is not None:
            current.append(line.split())
    return Dig(
        status=status.group(1),
        flags=set(flags.group(1).split()),
        counts=dict(zip(("QUERY", "ANSWER", "AUTHORITY", "ADDITIONAL"), map(int, counts.groups()))),
        sections=sections,
        output=output,
    )


def test_dig_is_installed():
    assert DIG is not None, "dig not found: install bind9-dnsutils"


# -- the example zone ----------------------------------------------------------------------------

def default_pool_of_example_www() -> set[str]:
    """127.0.0.1 has no GeoIP location, so www answers from the zone's default region's pool."""
    zone = yaml.safe_load((EXAMPLE_ZONES / "gslb.example.com.yaml").read_text())
    pool = zone["records"]["www"]["pools"][zone["default_region"]]
    return {entry["value"] if isinstance(entry, dict) else entry for entry in pool}


def test_dig_norec_example_www_a_is_authoritative_with_one_address_of_the_default_pool(example_server):
    """www is weighted with `answers: 1`: one address per response, from the default pool."""
    result = dig(example_server.client, "+norec", "www.gslb.example.com", "A")
    assert result.status == "NOERROR"
    assert result.flags == {"qr", "aa"}  # no rd (not asked), no ra (never offered)
    answer = result.rdata("ANSWER", "A")
    assert len(answer) == 1 and answer <= default_pool_of_example_www()


def test_dig_norec_example_static_a_has_both_addresses(example_server):
    result = dig(example_server.client, "+norec", "static.gslb.example.com", "A")
    assert result.status == "NOERROR"
    assert result.flags == {"qr", "aa"}
    assert result.rdata("ANSWER", "A") == {"192.0.2.80", "192.0.2.81"}


def test_dig_nxdomain_carries_the_soa_with_min_ttl(example_server):
    result = dig(example_server.client, "+norec", "no-such-name.gslb.example.com", "A")
    assert result.status == "NXDOMAIN"
    assert result.flags == {"qr", "aa"}
    assert result.counts["ANSWER"] == 0
    (soa,) = result.sections["AUTHORITY"]
    assert soa[0].lower() == "gslb.example.com." and soa[3] == "SOA"
    assert soa[1] == "60"  # min(SOA TTL 300, minimum 60)


def test_dig_tcp_gets_the_same_answer(example_server):
    result = dig(example_server.client, "+tcp", "+norec", "static.gslb.example.com", "A")
    assert "(TCP)" in result.output
    assert result.status == "NOERROR"
    assert result.flags == {"qr", "aa"}
    assert result.rdata("ANSWER", "A") == {"192.0.2.80", "192.0.2.81"}


def test_dig_rd_is_echoed_and_ra_is_not_set(example_server):
    result = dig(example_server.client, "static.gslb.example.com", "A")  # dig sets RD by default
    assert result.flags == {"qr", "aa", "rd"}


def test_dig_name_outside_the_zones_is_refused(example_server):
    result = dig(example_server.client, "+norec", "www.example.org", "A")
    assert result.status == "REFUSED"
    assert "aa" not in result.flags


def test_dig_delegation_gets_a_referral_with_glue(example_server):
    result = dig(example_server.client, "+norec", "host.lab.gslb.example.com", "A")
    assert result.status == "NOERROR"
    assert result.flags == {"qr"}
    assert result.rdata("AUTHORITY", "NS") == {"ns1.lab.gslb.example.com.", "ns2.lab.gslb.example.com."}
    assert result.rdata("ADDITIONAL", "A") == {"192.0.2.100", "192.0.2.101"}


# -- the wire test zones -------------------------------------------------------------------------

def test_dig_follows_the_cname_chain_in_one_answer(wire_server):
    result = dig(wire_server.client, "+norec", "chain1.wire.example", "A")
    assert result.status == "NOERROR"
    assert [row[3] for row in result.sections["ANSWER"]] == ["CNAME", "CNAME", "A"]
    assert result.rdata("ANSWER", "A") == {"192.0.2.10"}


def test_dig_without_edns_retries_a_truncated_answer_over_tcp(wire_server):
    result = dig(wire_server.client, "+noedns", "+norec", "big512.wire.example", "A")
    assert "Truncated, retrying in TCP mode" in result.output
    assert result.counts["ANSWER"] == 40
    assert "tc" not in result.flags


def test_dig_ignore_shows_the_tc_flag(wire_server):
    result = dig(wire_server.client, "+noedns", "+ignore", "+norec", "big512.wire.example", "A")
    assert "tc" in result.flags
    assert "aa" in result.flags


def test_dig_edns_answer_within_1232_bytes_is_whole_over_udp(wire_server):
    result = dig(wire_server.client, "+bufsize=4096", "+norec", "big512.wire.example", "A")
    assert "Truncated" not in result.output
    assert "(UDP)" in result.output
    assert result.counts["ANSWER"] == 40
    assert "udp: 1232" in result.output


def test_dig_noedns_reply_has_no_opt(wire_server):
    result = dig(wire_server.client, "+noedns", "+norec", "www.wire.example", "A")
    assert "OPT PSEUDOSECTION" not in result.output
    assert result.counts["ADDITIONAL"] == 0


def test_dig_edns_version_1_gets_badvers(wire_server):
    result = dig(wire_server.client, "+edns=1", "+noednsnegotiation", "+norec", "www.wire.example", "A")
    assert result.status == "BADVERS"
    assert "EDNS: version: 0" in result.output


def test_dig_nsid_shows_the_node_name(wire_server):
    result = dig(wire_server.client, "+nsid", "+norec", "www.wire.example", "A")
    assert result.status == "NOERROR"
    assert f'("{NODE_NAME}")' in result.output


@pytest.mark.parametrize("name", ["id.server", "hostname.bind"])
def test_dig_ch_txt_returns_the_node_name(wire_server, name):
    result = dig(wire_server.client, "+norec", "CH", "TXT", name)
    assert result.status == "NOERROR"
    assert result.rdata("ANSWER", "TXT") == {f'"{NODE_NAME}"'}


def test_dig_any_is_one_rrset_over_udp_and_all_over_tcp(wire_server):
    # dig sends ANY over TCP unless told +notcp.
    udp = dig(wire_server.client, "+notcp", "+norec", "wire.example", "ANY")
    assert "(UDP)" in udp.output
    assert udp.counts["ANSWER"] == 1
    tcp = dig(wire_server.client, "+tcp", "+norec", "wire.example", "ANY")
    assert "(TCP)" in tcp.output
    assert {row[3] for row in tcp.sections["ANSWER"]} == {"A", "NS", "SOA", "MX", "TXT", "CAA"}


def test_dig_axfr_is_refused(wire_server):
    result = subprocess.run(
        [DIG, f"@{wire_server.host}", "-p", str(wire_server.port), "+tries=1", "+time=3", "wire.example", "AXFR"],
        capture_output=True, text=True, timeout=20,
    )
    assert "; Transfer failed." in result.stdout
    assert "\tSOA\t" not in result.stdout  # no record of the zone was sent


def test_dig_over_ipv6(wire_server6):
    result = dig(wire_server6, "+norec", "www.wire.example", "AAAA")
    assert result.status == "NOERROR"
    assert result.rdata("ANSWER", "AAAA") == {"2001:db8::10"}
    tcp = dig(wire_server6, "+tcp", "+norec", "www.wire.example", "AAAA")
    assert tcp.rdata("ANSWER", "AAAA") == {"2001:db8::10"}
