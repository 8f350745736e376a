"""EDNS0 (RFC 6891), truncation and UDP sizes, long TXT strings, NSID (RFC 5001) and CH TXT."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import pytest

from conftest import NODE_NAME
from dnsserver import flag_names, rrset_texts

ADVERTISED = 1232
LONG_TXT = "".join(f"chunk{i:04d}-" for i in range(60))  # what long-txt holds: 600 bytes
UNKNOWN_OPTION = 65001  # in the local/experimental range (RFC 6891 section 9)

# (name, type, class) -> the rcode expected; every reply to an EDNS query carries an OPT.
EDNS_CASES = [
    ("www.wire.example.", "A", "IN", dns.rcode.NOERROR),
    ("nope.wire.example.", "A", "IN", dns.rcode.NXDOMAIN),
    ("www.wire.example.", "MX", "IN", dns.rcode.NOERROR),  # NODATA
    ("host.deleg.wire.example.", "A", "IN", dns.rcode.NOERROR),  # referral
    ("www.example.org.", "A", "IN", dns.rcode.REFUSED),
    ("wire.example.", "AXFR", "IN", dns.rcode.REFUSED),
    ("www.wire.example.", "A", 42, dns.rcode.REFUSED),
    ("id.server.", "TXT", "CH", dns.rcode.NOERROR),
    ("version.bind.", "TXT", "CH", dns.rcode.REFUSED),
    ("big1232.wire.example.", "AAAA", "IN", dns.rcode.NOERROR),  # truncated over UDP
]


def case_id(case) -> str:
    name, rdtype, rdclass, _ = case
    return f"{name}{rdtype}/{rdclass}"


def options_of(reply, code: int) -> list:
    return [option for option in reply.options if option.otype == code]


# -- OPT present exactly when the query had one ----------------------------------------------------

@pytest.mark.parametrize("case", EDNS_CASES, ids=case_id)
def test_every_reply_to_an_edns_query_has_an_opt_advertising_1232_rfc6891(wire_server, tcp, case):
    name, rdtype, rdclass, rcode = case
    reply = wire_server.query(name, rdtype, rdclass=rdclass, tcp=tcp, use_edns=0, payload=4096)
    assert reply.rcode() == rcode
    assert reply.edns == 0
    assert reply.payload == ADVERTISED


@pytest.mark.parametrize("case", EDNS_CASES, ids=case_id)
def test_no_opt_in_a_reply_to_a_query_without_edns_rfc6891(wire_server, tcp, case):
    name, rdtype, rdclass, rcode = case
    reply = wire_server.query(name, rdtype, rdclass=rdclass, tcp=tcp, use_edns=False)
    assert reply.rcode() == rcode
    assert reply.edns == -1
    assert reply.opt is None


@pytest.mark.parametrize("payload", [512, 1232, 4096, 65535])
def test_advertised_size_is_1232_whatever_the_client_offers(wire_server, payload):
    reply = wire_server.query("www.wire.example.", "A", use_edns=0, payload=payload)
    assert reply.payload == ADVERTISED


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS])
def test_notimp_reply_to_an_edns_query_has_an_opt_rfc6891(wire_server, tcp, opcode):
    query = wire_server.client.make_query("wire.example.", "SOA", use_edns=0)
    query.set_opcode(opcode)
    reply = dns.message.from_wire(wire_server.send_raw(query.to_wire(), tcp=tcp))
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.edns == 0



def edns_query_with_qdcount(count: int) -> bytes:
    """An EDNS query for www.wire.example. A, its question repeated `count` times (0 = none)."""
    wire = dns.message.make_query("www.wire.example.", "A", use_edns=0, id=0x0EDD).to_wire()
    question, opt = wire[12:-11], wire[-11:]
    return wire[:4] + count.to_bytes(2, "big") + wire[6:12] + question * count + opt


@pytest.mark.parametrize("count", [0, 2])
def test_formerr_for_a_bad_qdcount_keeps_the_opt_rfc6891_6_1_1(wire_server, tcp, count):
    reply = dns.message.from_wire(wire_server.send_raw(edns_query_with_qdcount(count), tcp=tcp))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.edns == 0

# -- version, options and flags ------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2, 255])
def test_unknown_edns_version_gets_badvers_with_a_version_0_opt_rfc6891(wire_server, tcp, version):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=version)
    assert reply.rcode() == dns.rcode.BADVERS  # 16: the upper bits live in the OPT's TTL
    assert reply.edns == 0
    assert reply.payload == ADVERTISED
    assert not reply.answer


def test_unknown_edns_option_is_ignored_rfc6891_6_1_2(wire_server, tcp):
    option = dns.edns.GenericOption(UNKNOWN_OPTION, b"\x01\x02\x03")
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=0, options=[option])
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.10"}
    assert not options_of(reply, UNKNOWN_OPTION)  # not echoed back


def test_unknown_edns_option_among_others_is_ignored_rfc8906(wire_server, tcp):
    options = [dns.edns.GenericOption(UNKNOWN_OPTION, b""), dns.edns.GenericOption(65002, b"x" * 40),
               dns.edns.CookieOption(b"12345678", b"")]
    reply = wire_server.query("mail.wire.example.", "A", tcp=tcp, use_edns=0, options=options)
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.25"}


def test_unknown_edns_flag_bits_are_ignored_and_not_echoed_rfc6891_6_1_4(wire_server, tcp):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=0, ednsflags=0x4000 | 0x0001)
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.10"}
    assert reply.ednsflags & 0x7FFF == 0  # Z bits are zero from a sender


@pytest.mark.parametrize("want_dnssec", [False, True])
def test_do_bit_is_copied_into_the_reply_rfc3225(wire_server, tcp, want_dnssec):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=0, want_dnssec=want_dnssec)
    assert bool(reply.ednsflags & dns.flags.DO) == want_dnssec


def test_two_opt_records_get_formerr_rfc6891_6_1_1(wire_server, tcp):
    wire = wire_server.client.make_query("www.wire.example.", "A", use_edns=0).to_wire()
    opt = wire[-11:]  # the OPT RR dnspython appended: root name, type 41, 1232, 0, rdlength 0
    assert opt[1:3] == b"\x00\x29"
    twice = bytearray(wire + opt)
    twice[10:12] = (2).to_bytes(2, "big")  # ARCOUNT
    reply = dns.message.from_wire(wire_server.send_raw(bytes(twice), tcp=tcp))
    assert reply.rcode() == dns.rcode.FORMERR


# -- truncation (RFC 1035 4.2.1, RFC 6891 6.2.5, RFC 7766 5) ---------------------------------------

def raw_reply(server, name, rdtype, **options) -> tuple[dns.message.Message, int]:
    """Over UDP, the reply parsed and its size in bytes."""
    wire = server.send_udp(server.client.make_query(name, rdtype, **options).to_wire(), timeout=2)
    assert wire is not None, "no reply"
    return dns.message.from_wire(wire), len(wire)


def test_answer_over_512_bytes_without_edns_is_truncated_over_udp(wire_server):
    reply, size = raw_reply(wire_server, "big512.wire.example.", "A", use_edns=False)
    assert "TC" in flag_names(reply)
    assert "AA" in flag_names(reply)
    assert size <= 512
    assert reply.question[0].name.to_text() == "big512.wire.example."


def test_answer_under_512_bytes_without_edns_is_whole(wire_server):
    reply, size = raw_reply(wire_server, "mid.wire.example.", "A", use_edns=False)
    assert "TC" not in flag_names(reply)
    assert len(rrset_texts(reply.answer, rdtype="A")) == 20
    assert 300 < size <= 512


def test_truncated_answer_is_whole_over_tcp_rfc7766(wire_server):
    reply = wire_server.query("big512.wire.example.", "A", tcp=True, use_edns=False)
    assert "TC" not in flag_names(reply)
    assert rrset_texts(reply.answer, rdtype="A") == {f"198.51.100.{i}" for i in range(1, 41)}


def test_answer_within_the_edns_size_is_not_truncated(wire_server):
    reply, size = raw_reply(wire_server, "big512.wire.example.", "A", use_edns=0, payload=1232)
    assert "TC" not in flag_names(reply)
    assert len(rrset_texts(reply.answer, rdtype="A")) == 40
    assert 512 < size <= 1232


def test_answer_over_the_clients_edns_size_is_truncated_rfc6891_6_2_5(wire_server):
    reply, size = raw_reply(wire_server, "big512.wire.example.", "A", use_edns=0, payload=600)
    assert "TC" in flag_names(reply)
    assert reply.edns == 0  # the OPT stays in a truncated reply
    assert size <= 600


def test_edns_size_below_512_is_treated_as_512_rfc6891_6_2_5(wire_server):
    reply, size = raw_reply(wire_server, "mid.wire.example.", "A", use_edns=0, payload=100)
    assert "TC" not in flag_names(reply)
    assert len(rrset_texts(reply.answer, rdtype="A")) == 20
    assert size > 100


@pytest.mark.parametrize("payload", [1233, 4096, 65535])
def test_edns_size_is_capped_at_1232(wire_server, payload):
    reply, size = raw_reply(wire_server, "big1232.wire.example.", "AAAA", use_edns=0, payload=payload)
    assert "TC" in flag_names(reply)
    assert size <= 1232


def test_answer_over_1232_bytes_is_whole_over_tcp(wire_server):
    reply = wire_server.query("big1232.wire.example.", "AAAA", tcp=True, use_edns=0, payload=4096)
    assert "TC" not in flag_names(reply)
    assert len(rrset_texts(reply.answer, rdtype="AAAA")) == 60


def test_long_txt_over_512_bytes_is_truncated_without_edns(wire_server):
    reply, _ = raw_reply(wire_server, "long-txt.wire.example.", "TXT", use_edns=False)
    assert "TC" in flag_names(reply)


def test_long_txt_comes_back_as_255_byte_strings_that_join_to_the_original_rfc1035(wire_server, tcp):
    reply = wire_server.query("long-txt.wire.example.", "TXT", tcp=tcp, use_edns=0)
    assert "TC" not in flag_names(reply)
    (rrset,) = reply.answer
    (txt,) = list(rrset)
    assert [len(s) for s in txt.strings] == [255, 255, 90]
    assert b"".join(txt.strings).decode() == LONG_TXT


# -- NSID (RFC 5001) and CH TXT id.server / hostname.bind -------------------------------------------

def test_nsid_request_gets_the_node_name_rfc5001(wire_server, tcp):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=0, options=[dns.edns.NSIDOption(b"")])
    assert reply.rcode() == dns.rcode.NOERROR
    assert [option.nsid for option in options_of(reply, dns.edns.OptionType.NSID)] == [NODE_NAME.encode()]


def test_nsid_request_after_another_option_gets_the_node_name_rfc5001(wire_server, tcp):
    options = [dns.edns.GenericOption(UNKNOWN_OPTION, b"abc"), dns.edns.NSIDOption(b"")]
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=0, options=options)
    assert [option.nsid for option in options_of(reply, dns.edns.OptionType.NSID)] == [NODE_NAME.encode()]


def test_no_nsid_in_the_reply_unless_asked(wire_server, tcp):
    reply = wire_server.query("www.wire.example.", "A", tcp=tcp, use_edns=0)
    assert not options_of(reply, dns.edns.OptionType.NSID)


def test_nsid_request_without_a_node_name_gets_a_normal_answer_without_nsid(example_server, tcp):
    options = [dns.edns.NSIDOption(b""), dns.edns.GenericOption(UNKNOWN_OPTION, b"x")]
    reply = example_server.query("static.gslb.example.com.", "A", tcp=tcp, use_edns=0, options=options)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not options_of(reply, dns.edns.OptionType.NSID)


@pytest.mark.parametrize("name", ["id.server.", "hostname.bind.", "ID.SERVER."])
def test_ch_txt_id_server_and_hostname_bind_return_the_node_name(wire_server, tcp, name):
    reply = wire_server.query(name, "TXT", rdclass="CH", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    assert rrset.rdclass == dns.rdataclass.CH
    assert rrset.name.to_text() == name
    assert [b"".join(txt.strings) for txt in rrset] == [NODE_NAME.encode()]


@pytest.mark.parametrize("name", ["version.bind.", "version.server.", "authors.bind.", "www.wire.example."])
def test_other_ch_names_are_refused(wire_server, tcp, name):
    reply = wire_server.query(name, "TXT", rdclass="CH", tcp=tcp)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


@pytest.mark.parametrize("name", ["id.server.", "hostname.bind."])
def test_ch_queries_are_refused_without_a_node_name(example_server, tcp, name):
    reply = example_server.query(name, "TXT", rdclass="CH", tcp=tcp)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
