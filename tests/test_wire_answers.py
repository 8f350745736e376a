"""What a client sees for ordinary questions: flags, negative answers, CNAMEs, referrals, types.

Every test runs over UDP and TCP (the `tcp` fixture) against a real `gslb serve` of
tests/data/zones_wire (zones wire.example., child.wire.example. and 2.0.192.in-addr.arpa.).
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver import flag_names, rrset_texts, rrset_types

ZONE = "wire.example."
SOA_TEXT = "ns1.wire.example. hostmaster.wire.example. 2024010101 3600 600 1209600 60"


def only_soa(reply, zone: str = ZONE):
    """The single SOA a negative answer must carry in its authority section (RFC 2308 section 3)."""
    assert rrset_types(reply.authority) == ["SOA"], reply
    soa = reply.authority[0]
    assert soa.name.to_text() == zone
    return soa


# -- header flags and the question (RFC 1035 section 4.1.1) --------------------------------------

def test_authoritative_answer_sets_aa_and_never_ra(wire_server, tcp):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert "RA" not in flag_names(reply)  # authoritative only: no recursion offered


@pytest.mark.parametrize("name", ["www.wire.example.", "nope.wire.example.", "www.example.org."])
def test_ra_is_never_set_even_when_recursion_is_desired(wire_server, tcp, name):
    reply = wire_server.query(name, "A", tcp=tcp, flags=dns.flags.RD)
    assert "RA" not in flag_names(reply)


@pytest.mark.parametrize("rd", [0, dns.flags.RD], ids=["rd0", "rd1"])
def test_rd_is_copied_from_the_query(wire_server, tcp, rd):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, flags=rd)
    assert reply.flags & dns.flags.RD == rd
    assert reply.flags & dns.flags.QR


def test_cd_is_copied_and_ad_is_not_set_rfc4035_3_1_6(wire_server, tcp):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, flags=dns.flags.CD | dns.flags.AD)
    assert "CD" in flag_names(reply)
    assert "AD" not in flag_names(reply)  # nothing here is DNSSEC-validated


@pytest.mark.parametrize("rd", [0, dns.flags.RD], ids=["rd0", "rd1"])
def test_question_and_id_are_copied_into_the_reply(wire_server, tcp, rd):
    query = wire_server.client.make_query("mail.wire.example.", "A", flags=rd, id=4242)
    reply = wire_server.exchange(query, tcp=tcp)
    assert reply.id == 4242
    assert reply.question == query.question


def test_question_case_is_preserved_rfc4343(wire_server, tcp):
    reply = wire_server.query("wWw.WiRe.ExAmPlE.", "A", tcp=tcp)
    # dnspython compares names case-insensitively; compare the text to see the case itself.
    assert reply.question[0].name.to_text() == "wWw.WiRe.ExAmPlE."
    assert [rrset.name.to_text() for rrset in reply.answer] == ["wWw.WiRe.ExAmPlE."]


def test_names_are_matched_case_insensitively_rfc4343(wire_server, tcp):
    reply = wire_server.query("WWW.WIRE.EXAMPLE.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.10"}


def test_example_zone_name_in_mixed_case_is_answered(example_server, tcp):
    reply = example_server.query("sTaTiC.GsLb.ExAmPle.CoM.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert reply.question[0].name.to_text() == "sTaTiC.GsLb.ExAmPle.CoM."
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.80", "192.0.2.81"}



def test_a_label_containing_a_dot_is_one_label_rfc1035_3_1(wire_server, tcp):
    # The one label "a.b" under wire.example. is not the name a.b.wire.example. (which exists).
    name = dns.name.Name([b"a.b", b"wire", b"example", b""])
    reply = wire_server.exchange(dns.message.make_query(name, "A"), tcp=tcp)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer
    assert reply.question[0].name == name


# -- names outside every zone ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["www.example.org.", "example.", ".", "wire.example.org."])
def test_name_outside_every_zone_is_refused(wire_server, tcp, name):
    reply = wire_server.query(name, "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.REFUSED
    assert "AA" not in flag_names(reply)
    assert not reply.answer and not reply.authority


# -- negative answers (RFC 2308) ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "zone", "ttl"),
    [
        ("nope.wire.example.", "wire.example.", 60),  # SOA TTL 300, minimum 60
        ("x.www.wire.example.", "wire.example.", 60),  # below an existing name
        ("99.2.0.192.in-addr.arpa.", "2.0.192.in-addr.arpa.", 30),  # SOA TTL 30, minimum 3600
        ("nope.child.wire.example.", "child.wire.example.", 10),  # SOA TTL 120, minimum 10
    ],
)
def test_nxdomain_carries_soa_with_min_ttl_rfc2308(wire_server, tcp, name, zone, ttl):
    reply = wire_server.query(name, "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert "AA" in flag_names(reply)
    assert not reply.answer
    assert only_soa(reply, zone).ttl == ttl


@pytest.mark.parametrize(
    ("name", "rdtype", "zone", "ttl"),
    [
        ("www.wire.example.", "MX", "wire.example.", 60),
        ("wire.example.", "SRV", "wire.example.", 60),
        ("10.2.0.192.in-addr.arpa.", "A", "2.0.192.in-addr.arpa.", 30),
    ],
)
def test_nodata_carries_soa_with_min_ttl_rfc2308(wire_server, tcp, name, rdtype, zone, ttl):
    reply = wire_server.query(name, rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert not reply.answer
    assert only_soa(reply, zone).ttl == ttl


def test_negative_soa_is_the_zones_soa(wire_server, tcp):
    reply = wire_server.query("nope.wire.example.", "A", tcp=tcp)
    assert rrset_texts(reply.authority, rdtype="SOA") == {SOA_TEXT}


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "TXT"])
def test_empty_non_terminal_is_nodata_rfc8020(wire_server, tcp, rdtype):
    # a.b.wire.example. exists, so b.wire.example. exists too, with no data of its own.
    reply = wire_server.query("b.wire.example.", rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert only_soa(reply).ttl == 60


def test_name_below_an_empty_non_terminal_is_answered(wire_server, tcp):
    reply = wire_server.query("a.B.wire.example.", "A", tcp=tcp)
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.2"}


# -- CNAME (RFC 1034 section 3.6.2 and 4.3.2, RFC 6604) ---------------------------------------------

def test_cname_chain_inside_the_zone_is_followed(wire_server, tcp):
    reply = wire_server.query("chain1.wire.example.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    chain = [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), {r.to_text() for r in rrset})
             for rrset in reply.answer]
    assert chain == [
        ("chain1.wire.example.", "CNAME", {"chain2.wire.example."}),
        ("chain2.wire.example.", "CNAME", {"www.wire.example."}),
        ("www.wire.example.", "A", {"192.0.2.10"}),
    ]


def test_cname_chain_to_a_type_the_target_lacks_is_nodata_with_the_chain(wire_server, tcp):
    reply = wire_server.query("chain1.wire.example.", "MX", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrset_types(reply.answer) == ["CNAME", "CNAME"]
    assert only_soa(reply).ttl == 60


def test_cname_pointing_outside_the_zone_is_answered_as_is(wire_server, tcp):
    reply = wire_server.query("outside.wire.example.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert rrset_types(reply.answer) == ["CNAME"]
    assert rrset_texts(reply.answer) == {"www.example.org."}
    assert not reply.authority


def test_cname_to_a_missing_in_zone_name_is_nxdomain_with_the_cname_rfc6604(wire_server, tcp):
    reply = wire_server.query("dangling.wire.example.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NXDOMAIN  # the rcode is about the last name in the chain
    assert "AA" in flag_names(reply)
    assert rrset_types(reply.answer) == ["CNAME"]
    assert rrset_texts(reply.answer) == {"missing.wire.example."}
    assert only_soa(reply).ttl == 60


@pytest.mark.parametrize("name", ["chain1.wire.example.", "dangling.wire.example.", "outside.wire.example."])
def test_qtype_cname_returns_just_the_cname(wire_server, tcp, name):
    reply = wire_server.query(name, "CNAME", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rrset.name.to_text() for rrset in reply.answer] == [name]
    assert rrset_types(reply.answer) == ["CNAME"]


def test_cname_chain_keeps_the_clients_case_on_the_first_owner(wire_server, tcp):
    reply = wire_server.query("CHAIN1.wire.example.", "A", tcp=tcp)
    assert reply.answer[0].name.to_text() == "CHAIN1.wire.example."


# -- delegations (RFC 1034 section 4.3.2 step 3b) -------------------------------------------------

@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("host.deleg.wire.example.", "A"), ("a.b.deleg.wire.example.", "AAAA"),
     ("deleg.wire.example.", "A"), ("deleg.wire.example.", "NS"), ("ns1.deleg.wire.example.", "A")],
)
def test_name_at_or_below_a_delegation_gets_a_referral(wire_server, tcp, name, rdtype):
    reply = wire_server.query(name, rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" not in flag_names(reply)  # the data belongs to the child zone
    assert not reply.answer
    assert rrset_types(reply.authority) == ["NS"]
    assert reply.authority[0].name.to_text() == "deleg.wire.example."
    assert rrset_texts(reply.authority) == {"ns1.deleg.wire.example.", "ns2.deleg.wire.example."}
    assert rrset_texts(reply.additional, "ns1.deleg.wire.example.", "A") == {"192.0.2.100"}
    assert rrset_texts(reply.additional, "ns2.deleg.wire.example.", "AAAA") == {"2001:db8::100"}


def test_ds_at_a_delegation_is_answered_by_the_parent_rfc4035_3_1_4_1(wire_server, tcp):
    reply = wire_server.query("deleg.wire.example.", "DS", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert not reply.answer
    only_soa(reply)


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("www.child.wire.example.", "A", {"192.0.2.111"}),
        ("child.wire.example.", "NS", {"ns1.child.wire.example."}),
        ("child.wire.example.", "SOA", {"ns1.child.wire.example. hostmaster.wire.example. 7 3600 600 1209600 10"}),
    ],
)
def test_nested_child_zone_served_here_answers_authoritatively(wire_server, tcp, name, rdtype, expected):
    # wire.example. delegates child.wire.example., and this server also serves that child zone:
    # the most specific zone answers, with no referral.
    reply = wire_server.query(name, rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert rrset_texts(reply.answer, name, rdtype) == expected


def test_apex_ns_answer_carries_in_zone_glue(wire_server, tcp):
    reply = wire_server.query("wire.example.", "NS", tcp=tcp)
    assert "AA" in flag_names(reply)
    assert rrset_texts(reply.answer, rdtype="NS") == {"ns1.wire.example.", "ns2.wire.example."}
    assert rrset_texts(reply.additional, "ns1.wire.example.", "A") == {"192.0.2.53"}
    assert rrset_texts(reply.additional, "ns2.wire.example.", "AAAA") == {"2001:db8::53"}


# -- record types and TTLs --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("wire.example.", "A", {"192.0.2.1"}),
        ("www.wire.example.", "AAAA", {"2001:db8::10"}),
        ("wire.example.", "MX", {"10 mail.wire.example."}),
        ("mx2.wire.example.", "MX", {"10 mail.wire.example.", "20 mail.example.net."}),
        ("wire.example.", "TXT", {'"v=spf1 -all"'}),
        ("wire.example.", "CAA", {'0 issue "ca.example.net"'}),
        ("_sip._tcp.wire.example.", "SRV", {"10 5 5060 sip.wire.example."}),
        ("10.2.0.192.in-addr.arpa.", "PTR", {"www.wire.example."}),
        ("25.2.0.192.in-addr.arpa.", "PTR", {"mail.wire.example."}),
        ("wire.example.", "SOA", {SOA_TEXT}),
    ],
)
def test_each_record_type_is_answered_with_its_rdata(wire_server, tcp, name, rdtype, expected):
    reply = wire_server.query(name, rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert rrset_types(reply.answer) == [rdtype]
    assert rrset_texts(reply.answer, name, rdtype) == expected


@pytest.mark.parametrize(("rdtype", "ttl"), [("A", 120), ("AAAA", 300)])
def test_per_record_ttl_wins_over_the_zone_ttl(wire_server, tcp, rdtype, ttl):
    reply = wire_server.query("www.wire.example.", rdtype, tcp=tcp)
    assert reply.answer[0].ttl == ttl


# -- ANY (RFC 8482) and zone transfers -------------------------------------------------------------

APEX_TYPES = {"A", "NS", "SOA", "MX", "TXT", "CAA"}


@pytest.mark.parametrize("name", ["wire.example.", "www.wire.example.", "_sip._tcp.wire.example."])
def test_any_over_udp_gets_exactly_one_rrset_rfc8482(wire_server, name):
    reply = wire_server.query(name, "ANY")
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert len(reply.answer) == 1
    assert all(rrset.name.to_text() == name for rrset in reply.answer)


def test_any_over_udp_returns_one_of_the_names_rrsets_or_hinfo_rfc8482(wire_server):
    reply = wire_server.query("wire.example.", "ANY")
    (rrset,) = reply.answer
    kind = dns.rdatatype.to_text(rrset.rdtype)
    if kind == "HINFO":
        assert rrset_texts(reply.answer) == {'"RFC8482" ""'}
    else:
        assert kind in APEX_TYPES


def test_any_over_tcp_gets_every_rrset_rfc8482(wire_server):
    reply = wire_server.query("wire.example.", "ANY", tcp=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert set(rrset_types(reply.answer)) == APEX_TYPES
    assert len(reply.answer) == len(APEX_TYPES)
    www = wire_server.query("www.wire.example.", "ANY", tcp=True)
    assert set(rrset_types(www.answer)) == {"A", "AAAA"}


def test_any_at_a_cname_returns_the_cname_without_following_it_rfc1034(wire_server, tcp):
    reply = wire_server.query("chain1.wire.example.", "ANY", tcp=tcp)
    assert rrset_types(reply.answer) == ["CNAME"]
    assert [rrset.name.to_text() for rrset in reply.answer] == ["chain1.wire.example."]


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_are_refused(wire_server, tcp, rdtype):
    reply = wire_server.query("wire.example.", rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


# -- RFC 8906: every query gets an answer ----------------------------------------------------------

@pytest.mark.parametrize("rdtype", [65280, 65535, 99])
def test_unknown_qtype_on_an_existing_name_is_nodata_rfc8906(wire_server, tcp, rdtype):
    reply = wire_server.query("www.wire.example.", rdtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert not reply.answer
    only_soa(reply)


def test_unknown_qtype_on_a_missing_name_is_nxdomain_rfc8906(wire_server, tcp):
    reply = wire_server.query("nope.wire.example.", 65280, tcp=tcp)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    only_soa(reply)


@pytest.mark.parametrize("rdclass", [42, 65280, "HS"])
def test_unknown_qclass_gets_an_answer_refused_rfc8906(wire_server, tcp, rdclass):
    reply = wire_server.query("www.wire.example.", "A", rdclass=rdclass, tcp=tcp)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


def test_ipv6_listener_answers(wire_server6, tcp):
    reply = wire_server6.query("www.wire.example.", "AAAA", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert "AA" in flag_names(reply)
    assert rrset_texts(reply.answer, rdtype="AAAA") == {"2001:db8::10"}



# -- UDP and TCP agree ---------------------------------------------------------------------------

SURVEY_NAMES = [
    "wire.example.", "WwW.wire.example.", "b.wire.example.", "a.b.wire.example.", "x.b.wire.example.",
    "chain1.wire.example.", "outside.wire.example.", "dangling.wire.example.", "deleg.wire.example.",
    "x.deleg.wire.example.", "child.wire.example.", "www.child.wire.example.", "nope.child.wire.example.",
    "10.2.0.192.in-addr.arpa.", "0.192.in-addr.arpa.", "www.example.org.", "_sip._tcp.wire.example.",
    "_tcp.wire.example.", "mx2.wire.example.", "x.www.wire.example.",
]
SURVEY_TYPES = ["A", "AAAA", "NS", "SOA", "MX", "TXT", "CNAME", "SRV", "PTR", "CAA", "DS", "HTTPS", 65280]


@pytest.mark.parametrize("edns", [False, 0], ids=["no-edns", "edns"])
def test_udp_and_tcp_give_the_same_answer(wire_server, edns):
    """One server, two transports: whatever path answers UDP, the reply must match TCP's
    (truncated replies aside)."""
    differences = []
    for name in SURVEY_NAMES:
        for rdtype in SURVEY_TYPES:
            query = dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=edns is not False)
            udp = wire_server.exchange(query)
            tcp = wire_server.exchange(query, tcp=True)
            if udp.flags & dns.flags.TC:
                continue
            if udp.to_text() != tcp.to_text():
                differences.append(f"{name} {rdtype}:\n{udp}\n-- tcp --\n{tcp}")
    assert not differences, "\n\n".join(differences[:3])
