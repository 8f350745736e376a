"""Negative answers and CNAME chains that a zone's own names must not disturb.

- NXDOMAIN and NODATA come from the zone's SOA (RFC 2308), whatever names the zone owns: the fast
  path once built its NXDOMAIN from a synthetic query for `gslb-nxdomain-probe`, so a zone owning
  that name answered every NXDOMAIN of the zone with that name's records.
- A CNAME chain that loops (RFC 1034 section 3.6.2 forbids it, but two zones can form one between
  them) is answered as BIND and NSD answer it: the chain so far, each CNAME once, NOERROR - never
  SERVFAIL with the same CNAMEs repeated.

Each runs over UDP (the fast path) and TCP (the general path) with dnspython.
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver import flag_names, rrset_texts, rrset_types

SOA = "soa: {{mname: ns1.{origin}, rname: hostmaster.{origin}, serial: 1, minimum: 30}}\nttl: 300\n"

PROBE_ZONE = """origin: probe.test.
ns: [ns1.probe.test.]
""" + SOA.format(origin="probe.test.") + """records:
  ns1: {type: A, value: 192.0.2.53}
  gslb-nxdomain-probe: {type: A, value: 192.0.2.66}
  _gslb-nxdomain-probe: {type: TXT, value: "another probe-like name"}
  "@": {type: MX, value: "10 gslb-nxdomain-probe.probe.test."}
  nodata-probe: {type: TXT, value: "only TXT here"}
  deep.a.b: {type: A, value: 192.0.2.67}
"""

LOOP_A = """origin: loop-a.test.
ns: [ns1.loop-a.test.]
""" + SOA.format(origin="loop-a.test.") + """records:
  ns1: {type: A, value: 192.0.2.53}
  start: {type: CNAME, value: middle.loop-b.test.}
  back: {type: CNAME, value: start.loop-a.test.}
  to-b: {type: CNAME, value: end.loop-b.test.}
"""

LOOP_B = """origin: loop-b.test.
ns: [ns1.loop-b.test.]
""" + SOA.format(origin="loop-b.test.") + """records:
  ns1: {type: A, value: 192.0.2.54}
  middle: {type: CNAME, value: back.loop-a.test.}
  end: {type: A, value: 192.0.2.99}
"""


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    zones: Path = tmp_path_factory.mktemp("negative-zones")
    (zones / "probe.test.yaml").write_text(PROBE_ZONE)
    (zones / "loop-a.test.yaml").write_text(LOOP_A)
    (zones / "loop-b.test.yaml").write_text(LOOP_B)
    return start_server(zones, probe_name="probe.test.")


def only_soa(reply: dns.message.Message, origin: str) -> None:
    assert [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in reply.authority] == [(origin, "SOA")]
    assert reply.authority[0].ttl == 30  # min(SOA TTL 300, minimum 30): RFC 2308 section 5


# -- NXDOMAIN and NODATA, whatever the zone owns ----------------------------------------------------

@pytest.mark.parametrize("name", ["nothing.probe.test.", "x.gslb-nxdomain-probe.probe.test.", "GSLB-NXDOMAIN-PROBE2.probe.test.",
                                  "a.b.c.d.probe.test.", "nope.deep.a.b.probe.test."])
@pytest.mark.parametrize("rdtype", ["A", "AAAA", "TXT", "MX"])
def test_nxdomain_in_a_zone_owning_the_old_probe_name_carries_only_the_soa_rfc2308(server, tcp, name, rdtype):
    for edns in (False, 0):
        reply = server.query(name, rdtype, tcp=tcp, use_edns=edns)
        assert reply.rcode() == dns.rcode.NXDOMAIN, (name, rdtype, edns)
        assert "AA" in flag_names(reply)
        assert not reply.answer and not reply.additional
        assert reply.question[0].name.to_text() == name
        only_soa(reply, "probe.test.")


def test_the_probe_name_itself_is_answered_from_its_records(server, tcp):
    reply = server.query("gslb-nxdomain-probe.probe.test.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrset_texts(reply.answer, "gslb-nxdomain-probe.probe.test.", "A") == {"192.0.2.66"}
    reply = server.query("gslb-nxdomain-probe.probe.test.", "TXT", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    only_soa(reply, "probe.test.")


@pytest.mark.parametrize("name", ["nodata-probe.probe.test.", "b.probe.test.", "a.b.probe.test."])
def test_nodata_carries_only_the_soa_rfc2308_2_2(server, tcp, name):
    reply = server.query(name, "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    only_soa(reply, "probe.test.")


# -- CNAME loops across zones (RFC 1034 section 4.3.2 step 3a follows a CNAME into any zone) ----------

@pytest.mark.parametrize("rdtype", ["A", "AAAA", "MX"])
def test_a_cname_loop_through_two_zones_answers_the_chain_once_noerror(server, tcp, rdtype):
    reply = server.query("start.loop-a.test.", rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    chain = [(rrset.name.to_text(), rrset_types([rrset])[0], sorted(r.to_text() for r in rrset)) for rrset in reply.answer]
    assert chain == [
        ("start.loop-a.test.", "CNAME", ["middle.loop-b.test."]),
        ("middle.loop-b.test.", "CNAME", ["back.loop-a.test."]),
        ("back.loop-a.test.", "CNAME", ["start.loop-a.test."]),
    ]
    assert all(len(rrset) == 1 for rrset in reply.answer)
    assert not reply.authority


def test_a_cname_loop_entered_in_the_middle_stops_where_a_name_repeats(server, tcp):
    reply = server.query("middle.loop-b.test.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rrset.name.to_text() for rrset in reply.answer] == [
        "middle.loop-b.test.", "back.loop-a.test.", "start.loop-a.test."]


def test_a_cname_into_another_zone_served_here_is_followed(server, tcp):
    reply = server.query("to-b.loop-a.test.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert rrset_types(reply.answer) == ["CNAME", "A"]
    assert rrset_texts(reply.answer, "end.loop-b.test.", "A") == {"192.0.2.99"}


def test_a_cname_into_another_zone_to_a_missing_name_is_nxdomain_with_that_zones_soa(server, tcp):
    reply = server.query("start.loop-a.test.", "CNAME", tcp=tcp)  # qtype CNAME: just the one CNAME
    assert rrset_types(reply.answer) == ["CNAME"]
    reply = server.query("nothing.loop-b.test.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    only_soa(reply, "loop-b.test.")
