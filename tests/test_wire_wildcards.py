"""Wildcard records (RFC 4592) on the wire, static and GSLB, with dnspython and dig.

tests/data/zones_wild/wild.example.yaml holds the cases: `*.apps` (A, TXT) beside `real.apps` and
`x.y.apps`, a wildcard CNAME, one to a name another wildcard synthesises, one out of the zone, a
GSLB `*.geo` (A) and `*.geo6` (AAAA), an apex `*` (MX) and a delegation `deleg`. A synthesised
answer's owner is the question's name as the client wrote it; a name that exists, or an empty
non-terminal, is never answered by a wildcard; NODATA and NXDOMAIN carry the zone's SOA. Every
test runs over UDP (the fast path) and TCP (the general path).
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import aiohttp
import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver import GslbProcess, flag_names, rrset_texts, rrset_types
from opsserver import get_json, start_with_api

ZONES = Path(__file__).resolve().parent / "data" / "zones_wild"
ORIGIN = "wild.example."
SOA_OWNER = ORIGIN


@pytest.fixture(scope="module")
def server(start_server) -> GslbProcess:
    return start_server(ZONES, probe_name=ORIGIN)


def ask(server: GslbProcess, name: str, rdtype: str, tcp: bool, subnet: str | None = None) -> dns.message.Message:
    options = []
    if subnet is not None:
        network = ipaddress.ip_network(subnet)
        options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
    return server.exchange(dns.message.make_query(name, rdtype, use_edns=0, options=options), tcp=tcp)


def owners(reply: dns.message.Message) -> list[str]:
    """Answer owners exactly as they came on the wire (dnspython keeps the case it read)."""
    return [rrset.name.to_text() for rrset in reply.answer]


def assert_nodata(reply: dns.message.Message) -> None:
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert rrset_types(reply.authority) == ["SOA"]
    assert reply.authority[0].name.to_text() == SOA_OWNER
    assert "AA" in flag_names(reply)


def assert_nxdomain(reply: dns.message.Message) -> None:
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.answer == []
    assert rrset_types(reply.authority) == ["SOA"]
    assert "AA" in flag_names(reply)


def scope(reply: dns.message.Message) -> int:
    options = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    assert len(options) == 1, reply
    return options[0].scopelen


# -- static wildcards ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["foo.apps.wild.example.", "Foo.ApPs.wild.EXAMPLE.", "a.b.apps.wild.example.",
                                  "X1.y2.Z3.w4.apps.wild.example.", "_svc._tcp.apps.wild.example."])
def test_wildcard_answers_names_of_any_depth_with_the_question_as_owner(server: GslbProcess, tcp: bool,
                                                                       name: str) -> None:
    """RFC 4592 section 3.3.1: the synthesised RRs' owner is the QNAME, in the client's case."""
    reply = ask(server, name, "A", tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert owners(reply) == [name]
    assert rrset_texts(reply.answer) == {"192.0.2.80"}
    assert reply.answer[0].ttl == 300
    txt = ask(server, name, "TXT", tcp)
    assert owners(txt) == [name] and rrset_texts(txt.answer) == {'"from *.apps"'}


def test_any_at_a_synthesised_name(server: GslbProcess, tcp: bool) -> None:
    """RFC 8482 as at any name: over TCP every RRset of the wildcard, over UDP one; the owner is
    the question either way."""
    reply = ask(server, "Any.Thing.apps.wild.example.", "ANY", tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert set(owners(reply)) == {"Any.Thing.apps.wild.example."}
    assert sorted(rrset_types(reply.answer)) == (["A", "TXT"] if tcp else ["A"])


def test_a_type_the_wildcard_lacks_is_nodata_for_the_question(server: GslbProcess, tcp: bool) -> None:
    assert_nodata(ask(server, "foo.apps.wild.example.", "AAAA", tcp))
    assert_nodata(ask(server, "foo.apps.wild.example.", "MX", tcp))


def test_an_existing_name_is_never_answered_by_the_wildcard(server: GslbProcess, tcp: bool) -> None:
    """RFC 4592 section 2.2: `real.apps` exists, so its missing A is NODATA, not `*.apps`' A."""
    assert_nodata(ask(server, "real.apps.wild.example.", "A", tcp))
    reply = ask(server, "real.apps.wild.example.", "AAAA", tcp)
    assert rrset_texts(reply.answer) == {"2001:db8::81"}


def test_an_empty_non_terminal_blocks_the_wildcard(server: GslbProcess, tcp: bool) -> None:
    """`x.y.apps` makes `y.apps` exist with no records: NODATA for it, and below it the closest
    encloser is `y.apps`, which has no `*` child: NXDOMAIN, not `*.apps`."""
    assert_nodata(ask(server, "y.apps.wild.example.", "A", tcp))
    assert_nxdomain(ask(server, "z.y.apps.wild.example.", "A", tcp))
    assert_nxdomain(ask(server, "a.b.x.y.apps.wild.example.", "TXT", tcp))
    assert rrset_texts(ask(server, "x.y.apps.wild.example.", "A", tcp).answer) == {"192.0.2.81"}


def test_nxdomain_below_a_name_without_a_wildcard_child(server: GslbProcess, tcp: bool) -> None:
    assert_nxdomain(ask(server, "nope.target.wild.example.", "A", tcp))
    assert_nxdomain(ask(server, "a.b.real.apps.wild.example.", "A", tcp))


def test_the_wildcards_parent_exists_so_the_apex_wildcard_does_not_answer_it(server: GslbProcess, tcp: bool) -> None:
    """`apps` holds only `*.apps` and names below: it exists (an empty non-terminal), so the apex
    `*` (MX) does not answer for it, while a name directly below the apex with no node does."""
    assert_nodata(ask(server, "apps.wild.example.", "MX", tcp))
    assert_nodata(ask(server, "apps.wild.example.", "A", tcp))
    reply = ask(server, "Nothing-Here.wild.example.", "MX", tcp)
    assert owners(reply) == ["Nothing-Here.wild.example."]
    assert rrset_texts(reply.answer) == {"10 mail.wild.example."}
    assert_nodata(ask(server, "nothing-here.wild.example.", "A", tcp))


def test_a_query_for_the_literal_star_name_gets_the_wildcards_records(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "*.apps.wild.example.", "A", tcp)
    assert owners(reply) == ["*.apps.wild.example."]
    assert rrset_texts(reply.answer) == {"192.0.2.80"}
    # Below the '*' node, the closest encloser is '*.apps' itself, which has no '*' child.
    assert_nxdomain(ask(server, "x.*.apps.wild.example.", "A", tcp))


def test_a_wildcard_cname_is_followed_from_the_synthesised_owner(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "Web.Alias.wild.example.", "A", tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert owners(reply) == ["Web.Alias.wild.example.", "target.wild.example."]
    assert rrset_texts(reply.answer, "web.alias.wild.example.", "CNAME") == {"target.wild.example."}
    assert rrset_texts(reply.answer, "target.wild.example.", "A") == {"192.0.2.82"}
    only = ask(server, "web.alias.wild.example.", "CNAME", tcp)
    assert rrset_types(only.answer) == ["CNAME"] and owners(only) == ["web.alias.wild.example."]


def test_a_wildcard_cname_to_a_name_another_wildcard_synthesises(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "q.chain.wild.example.", "A", tcp)
    assert owners(reply) == ["q.chain.wild.example.", "via.apps.wild.example."]
    assert rrset_texts(reply.answer, "via.apps.wild.example.", "A") == {"192.0.2.80"}


def test_a_wildcard_cname_out_of_the_zone_is_left_to_the_resolver(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "cdn.out.wild.example.", "A", tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert owners(reply) == ["cdn.out.wild.example."]
    assert rrset_texts(reply.answer) == {"elsewhere.example.net."}


def test_below_a_delegation_the_referral_wins_over_the_apex_wildcard(server: GslbProcess, tcp: bool) -> None:
    for name in ("x.deleg.wild.example.", "a.b.deleg.wild.example."):
        reply = ask(server, name, "MX", tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer == []
        assert "AA" not in flag_names(reply)
        assert rrset_texts(reply.authority, "deleg.wild.example.", "NS") == {"ns.deleg.wild.example."}
        assert rrset_texts(reply.additional, "ns.deleg.wild.example.", "A") == {"192.0.2.99"}


# -- GSLB wildcards ------------------------------------------------------------------------------

@pytest.mark.parametrize("subnet, address", [("81.2.69.160/27", "203.0.113.10"),      # GB: eu
                                             ("216.160.83.56/29", "198.51.100.20"),   # US-WA: us-west
                                             ("10.1.2.0/24", "203.0.113.10")])        # subnet rule: eu
def test_gslb_wildcard_answers_each_region_with_the_records_scope(server: GslbProcess, tcp: bool, subnet: str,
                                                                   address: str) -> None:
    name = "Shop-42.Geo.wild.example."
    reply = ask(server, name, "A", tcp, subnet)
    assert reply.rcode() == dns.rcode.NOERROR
    assert owners(reply) == [name]
    assert rrset_texts(reply.answer) == {address}
    assert reply.answer[0].ttl == 30
    # The scope is the record's: what the '*' name itself answers with for this subnet.
    literal = ask(server, "*.geo.wild.example.", "A", tcp, subnet)
    assert rrset_texts(literal.answer) == {address}
    assert scope(reply) == scope(literal) > 0
    if subnet == "10.1.2.0/24":
        assert scope(reply) == 8  # 10.0.0.0/9 + 10.128.0.0/9 of one region: the merged /8


def test_gslb_wildcard_aaaa_with_an_ipv6_subnet(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "v6.geo6.wild.example.", "AAAA", tcp, "2001:480:10::/48")  # US-CA: not a pool here
    assert owners(reply) == ["v6.geo6.wild.example."]
    assert len(rrset_texts(reply.answer)) == 1
    assert_nodata(ask(server, "v6.geo6.wild.example.", "A", tcp))


def test_gslb_wildcard_nodata_and_ent_keep_scope_zero(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "shop.geo.wild.example.", "TXT", tcp, "81.2.69.160/27")
    assert_nodata(reply)
    assert scope(reply) == 0


@pytest.mark.parametrize("subnet, target", [("81.2.69.160/27", "lb-eu.example.net."),
                                            ("216.160.83.56/29", "lb-us.example.net.")])  # US-WA: no pool, nearest
def test_gslb_cname_wildcard_answers_each_region_with_the_synthesised_owner(server: GslbProcess, tcp: bool,
                                                                            subnet: str, target: str) -> None:
    reply = ask(server, "Api.Pool.wild.example.", "A", tcp, subnet)
    assert reply.rcode() == dns.rcode.NOERROR
    assert owners(reply) == ["Api.Pool.wild.example."]
    assert rrset_texts(reply.answer, rdtype="CNAME") == {target}
    literal = ask(server, "*.pool.wild.example.", "A", tcp, subnet)
    assert scope(reply) == scope(literal)


def test_gslb_cname_wildcard_to_names_served_here_is_followed(server: GslbProcess, tcp: bool) -> None:
    reply = ask(server, "x.inpool.wild.example.", "A", tcp, "81.2.69.160/27")
    assert owners(reply) == ["x.inpool.wild.example.", "eu.apps.wild.example."]
    assert rrset_texts(reply.answer, "eu.apps.wild.example.", "A") == {"192.0.2.80"}


# -- dig -------------------------------------------------------------------------------------------

def dig(server: GslbProcess, *args: str) -> str:
    return subprocess.run(["dig", f"@{server.host}", "-p", str(server.port), "+norec", "+tries=1", "+time=2", *args],
                          capture_output=True, text=True, timeout=10, check=True).stdout


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_sees_synthesised_owners_and_the_gslb_scope(server: GslbProcess, transport: str) -> None:
    output = dig(server, transport, "Deep.Name.apps.wild.example.", "A")
    assert "status: NOERROR" in output and "flags: qr aa" in output
    answer = output.split("ANSWER SECTION:")[1].split("\n\n")[0]
    assert answer.split() == ["Deep.Name.apps.wild.example.", "300", "IN", "A", "192.0.2.80"]
    output = dig(server, transport, "eu.geo.wild.example.", "A", "+subnet=81.2.69.160/27")
    assert "CLIENT-SUBNET: 81.2.69.160/27/" in output
    assert "203.0.113.10" in output.split("ANSWER SECTION:")[1]
    assert "status: NXDOMAIN" in dig(server, transport, "z.y.apps.wild.example.", "A")


# -- explain and /status ---------------------------------------------------------------------------

async def test_status_lists_the_wildcard_record_and_explain_names_it(tmp_path: Path) -> None:
    server, url = start_with_api(ZONES, tmp_path / "logs", probe_name=ORIGIN)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            code, status = await get_json(http, f"{url}/status")
            assert code == 200
            assert {"*.geo.wild.example. A", "*.geo6.wild.example. AAAA"} <= {r["record"] for r in status["records"]}
            code, body = await get_json(http, f"{url}/explain",
                                        params={"name": "Shop.geo.wild.example", "subnet": "81.2.69.160/27"})
            assert code == 200
            reply = ask(server, "Shop.geo.wild.example.", "A", False, "81.2.69.160/27")
            assert body["wildcard"] == "*.geo.wild.example."
            assert (body["region"], body["answer"], body["scope_prefix"]) == ("eu", ["203.0.113.10"], scope(reply))
            code, body = await get_json(http, f"{url}/explain", params={"name": "real.apps.wild.example"})
            assert code == 200 and body["wildcard"] is None and body["rcode"] == "NOERROR" and body["answer"] == []
            code, body = await get_json(http, f"{url}/explain", params={"name": "a.b.apps.wild.example", "type": "TXT"})
            assert body["wildcard"] == "*.apps.wild.example." and body["answer"] == ['"from *.apps"']
    finally:
        server.stop()
