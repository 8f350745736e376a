"""What a client sees of DNSSEC, over real sockets: with DO, every RRset of a signed zone's
answers carries an RRSIG that dnspython verifies against the zone's DNSKEY set (itself verified
against the DS `gslb dnssec ds` prints); negative answers carry compact denial (RFC 9824);
referrals carry signed proof that the child has no DS; an answer too big for the client's UDP
size is truncated and whole over TCP. Without DO a signed zone answers exactly as the same zone
unsigned, byte for byte, by both paths. And a DO query stays on the fast path.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from conftest import StartServer
from dnssec_check import dnssec
from dnsserver import GslbProcess, rrset_texts
from gslb import service
from gslb.dns.fastpath import FastPath
from gslb.settings import ServerSettings
from opsserver import start_with_api
from test_dnssec_e2e import DATA, ZONE, signed_zones
from test_metrics_e2e import scrape, value

ORIGIN = dns.name.from_text(ZONE)
NXNAME = 128


@pytest.fixture(scope="module")
def signed(start_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[GslbProcess, list[str]]:
    zones, ds = signed_zones(tmp_path_factory.mktemp("signed"))
    return start_server(zones, probe_name=ZONE), ds


@pytest.fixture(scope="module")
def keys(signed: tuple[GslbProcess, list[str]]) -> dns.rrset.RRset:
    """The zone's DNSKEY set, verified against its DS (the chain of trust a resolver follows)."""
    server, ds_lines = signed
    reply = server.query(ZONE, "DNSKEY", use_edns=0, want_dnssec=True)
    dnskeys = reply.find_rrset(reply.answer, ORIGIN, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    sigs = reply.find_rrset(reply.answer, ORIGIN, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    dnssec.validate(dnskeys, sigs, {ORIGIN: dnskeys})
    wanted = {line.split(None, 3)[3].lower().replace(" ", "") for line in ds_lines}
    made = {dnssec.make_ds(ORIGIN, key, "SHA256").to_text().lower().replace(" ", "") for key in dnskeys
            if key.flags & 1}
    assert wanted & made, (wanted, made)
    return dnskeys


def verified(reply: dns.message.Message, keys: dns.rrset.RRset, *sections: str) -> list[tuple[str, str]]:
    """Every RRset of `sections` verified by its RRSIG; the (name, type) of each, in order."""
    seen = []
    for section in sections:
        rrsets = getattr(reply, section)
        for rrset in rrsets:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = reply.find_rrset(rrsets, rrset.name, rrset.rdclass, dns.rdatatype.RRSIG, rrset.rdtype)
            dnssec.validate(rrset, sigs, {ORIGIN: keys})
            seen.append((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype)))
    return seen


def nsec_of(reply: dns.message.Message) -> tuple[str, set[int]]:
    nsecs = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.NSEC]
    assert len(nsecs) == 1, reply
    rdata = nsecs[0][0]
    types = {t for window, bitmap in rdata.windows for i, byte in enumerate(bitmap) for bit in range(8)
             if byte & (0x80 >> bit) for t in [window * 256 + i * 8 + bit]}
    assert rdata.next == dns.name.from_text("\\000." + nsecs[0].name.to_text())  # RFC 9824: minimally covering
    return nsecs[0].name.to_text().lower(), types


def test_static_and_gslb_answers_carry_rrsigs_that_verify(signed, keys, tcp: bool) -> None:
    server, _ = signed
    for name, expected in ((f"static.{ZONE}", {"192.0.2.1"}), (f"www.{ZONE}", {"198.51.100.10"}),
                           (f"both.{ZONE}", {"198.51.100.21", "198.51.100.22"})):
        reply = server.query(name, "A", use_edns=0, want_dnssec=True, tcp=tcp)
        assert rrset_texts(reply.answer, rdtype="A") == expected
        assert verified(reply, keys, "answer") == [(name, "A")]
        eu = server.query(name, "A", use_edns=0, want_dnssec=True, tcp=tcp,
                          options=[dns.edns.ECSOption("10.1.2.0", 24)])
        assert verified(eu, keys, "answer") == [(name, "A")]


def test_every_rrset_of_a_cname_chain_is_signed(signed, keys, tcp: bool) -> None:
    server, _ = signed
    reply = server.query(f"ALIAS.{ZONE}", "A", use_edns=0, want_dnssec=True, tcp=tcp)
    assert verified(reply, keys, "answer") == [(f"alias.{ZONE}", "CNAME"), (f"alias2.{ZONE}", "CNAME"),
                                              (f"static.{ZONE}", "A")]


def test_nxdomain_with_do_is_compact_denial_nodata_with_nxname(signed, keys, tcp: bool) -> None:
    server, _ = signed
    reply = server.query(f"nope.{ZONE}", "A", use_edns=0, want_dnssec=True, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer  # RFC 9824 section 3
    assert sorted(verified(reply, keys, "authority")) == [(f"nope.{ZONE}", "NSEC"), (ZONE, "SOA")]
    assert nsec_of(reply) == (f"nope.{ZONE}", {NXNAME, dns.rdatatype.RRSIG, dns.rdatatype.NSEC})
    plain = server.query(f"nope.{ZONE}", "A", use_edns=0, tcp=tcp)
    assert plain.rcode() == dns.rcode.NXDOMAIN and rrset_texts(plain.authority, rdtype="NSEC") == set()


def test_nodata_lists_the_types_the_name_has(signed, keys, tcp: bool) -> None:
    server, _ = signed
    rrsig_nsec = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC}
    for name, rdtype, types in ((f"static.{ZONE}", "AAAA", {dns.rdatatype.A}),
                                (f"www.{ZONE}", "AAAA", {dns.rdatatype.A}),
                                (f"b.{ZONE}", "A", set()),  # an empty non-terminal
                                (f"deleg.{ZONE}", "DS", {dns.rdatatype.NS}),  # at a cut: NS, no DS
                                (ZONE, "A", {dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.DNSKEY,
                                             dns.rdatatype.CDS, dns.rdatatype.CDNSKEY})):
        reply = server.query(name, rdtype, use_edns=0, want_dnssec=True, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        verified(reply, keys, "authority")
        assert nsec_of(reply) == (name.lower(), types | rrsig_nsec), (name, rdtype)


def test_a_query_for_nsec_gets_the_names_nsec_as_its_answer(signed, keys, tcp: bool) -> None:
    # Under compact denial every name "has" the NSEC gslb makes for it: a NODATA for type NSEC
    # whose own NSEC lists NSEC would contradict itself, so the NSEC is the answer.
    server, _ = signed
    for name, types in ((f"static.{ZONE}", {dns.rdatatype.A}), (f"nope.{ZONE}", {NXNAME})):
        reply = server.query(name, "NSEC", use_edns=0, want_dnssec=True, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR and not reply.authority, reply
        assert verified(reply, keys, "answer") == [(name, "NSEC")]
        rdata = reply.answer[0][0] if reply.answer[0].rdtype == dns.rdatatype.NSEC else reply.answer[1][0]
        assert rdata.next == dns.name.from_text("\\000." + name)
        listed = {window * 256 + i * 8 + bit for window, bitmap in rdata.windows for i, byte in enumerate(bitmap)
                  for bit in range(8) if byte & (0x80 >> bit)}
        assert listed == types | {dns.rdatatype.RRSIG, dns.rdatatype.NSEC}


def test_a_cname_to_a_missing_name_denies_the_target(signed, keys) -> None:
    server, _ = signed
    reply = server.query(f"lost.{ZONE}", "A", use_edns=0, want_dnssec=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert verified(reply, keys, "answer") == [(f"lost.{ZONE}", "CNAME")]
    assert nsec_of(reply)[0] == f"missing.{ZONE}" and NXNAME in nsec_of(reply)[1]


def test_a_referral_signs_only_the_proof_that_the_child_has_no_ds(signed, keys) -> None:
    # RFC 4035 section 3.1.4: NS and glue of a cut are not signed; the NSEC at the cut is.
    server, _ = signed
    reply = server.query(f"www.deleg.{ZONE}", "A", use_edns=0, want_dnssec=True)
    assert not reply.flags & dns.flags.AA and not reply.answer
    types = {dns.rdatatype.to_text(rrset.rdtype): rrset for rrset in reply.authority}
    assert set(types) == {"NS", "NSEC", "RRSIG"}
    assert types["RRSIG"][0].type_covered == dns.rdatatype.NSEC
    assert nsec_of(reply) == (f"deleg.{ZONE}", {dns.rdatatype.NS, dns.rdatatype.RRSIG, dns.rdatatype.NSEC})
    nsec = reply.find_rrset(reply.authority, dns.name.from_text(f"deleg.{ZONE}"), dns.rdataclass.IN,
                            dns.rdatatype.NSEC)
    dnssec.validate(nsec, types["RRSIG"], {ORIGIN: keys})
    assert not [rrset for rrset in reply.additional if rrset.rdtype == dns.rdatatype.RRSIG]


def test_apex_keys_answer_with_and_without_do(signed, keys) -> None:
    server, _ = signed
    for rdtype in ("DNSKEY", "CDS", "CDNSKEY"):
        plain = server.query(ZONE, rdtype, use_edns=0)
        assert [dns.rdatatype.to_text(r.rdtype) for r in plain.answer] == [rdtype]
        with_do = server.query(ZONE, rdtype, use_edns=0, want_dnssec=True)
        assert verified(with_do, keys, "answer") == [(ZONE, rdtype)]


def test_a_signed_answer_too_big_for_udp_is_truncated_and_whole_over_tcp(signed, keys) -> None:
    server, _ = signed
    plain = server.query(f"big.{ZONE}", "A", use_edns=0, payload=1232)
    assert not plain.flags & dns.flags.TC and len(rrset_texts(plain.answer)) == 70  # fits without signatures
    truncated = server.query(f"big.{ZONE}", "A", use_edns=0, payload=1232, want_dnssec=True)
    assert truncated.flags & dns.flags.TC and not truncated.answer
    whole = server.query(f"big.{ZONE}", "A", use_edns=0, payload=1232, want_dnssec=True, tcp=True)
    assert not whole.flags & dns.flags.TC and len(rrset_texts(whole.answer, rdtype="A")) == 70
    assert verified(whole, keys, "answer") == [(f"big.{ZONE}", "A")]


# -- in process: byte for byte without DO, and the fast path with DO -----------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    """The zone loaded twice in this process: signed, and the same file without `dnssec:`."""
    base = tmp_path_factory.mktemp("pair")
    zones, _ = signed_zones(base / "signed")
    plain = base / "plain"
    plain.mkdir()
    text = (DATA / "zones_dnssec" / "signed.example.yaml").read_text()
    (plain / "signed.example.yaml").write_text(text.replace("dnssec: {keys: keys}\n", ""))
    loaded = []
    for directory in (zones, plain):
        settings = ServerSettings(zones=directory, geoip=DATA / "geo" / "GeoIP2-City-Test.mmdb")
        result, problems = service.load(settings)
        assert result is not None, problems
        loaded.append(result)
    return loaded


NAMES = [ZONE, f"static.{ZONE}", f"www.{ZONE}", f"both.{ZONE}", f"alias.{ZONE}", f"geo-alias.{ZONE}",
         f"lost.{ZONE}", f"b.{ZONE}", f"leaf.b.{ZONE}", f"deleg.{ZONE}", f"x.deleg.{ZONE}", f"nope.{ZONE}",
         f"big.{ZONE}", f"NoPe.X.{ZONE}"]
TYPES = ["A", "AAAA", "TXT", "NS", "SOA", "CNAME", "DS", "MX", "ANY", "NSEC", "RRSIG"]


def test_without_do_a_signed_zone_answers_byte_for_byte_as_unsigned(pair) -> None:
    signed_zone, plain_zone = pair
    client = ipaddress.ip_address("127.0.0.1")
    for name in NAMES:
        for rdtype in TYPES:
            for edns in (False, True):
                wire = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, id=4242).to_wire()
                assert signed_zone.answerer.respond(wire, client) == plain_zone.answerer.respond(wire, client), \
                    (name, rdtype)
                fast = signed_zone.answerer.fast.answer(wire, "127.0.0.1")
                assert fast == plain_zone.answerer.fast.answer(wire, "127.0.0.1"), (name, rdtype)


def test_do_queries_stay_on_the_fast_path(pair) -> None:
    signed_zone, _ = pair
    fast = signed_zone.answerer.fast
    for name, rdtype, options in ((f"static.{ZONE}", "A", []), (f"nope.{ZONE}", "A", []), (ZONE, "DNSKEY", []),
                                  (f"static.{ZONE}", "AAAA", []), (f"alias.{ZONE}", "A", []),
                                  (f"www.{ZONE}", "A", [dns.edns.ECSOption("10.1.2.0", 24)])):
        wire = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True, options=options).to_wire()
        outcome = fast.answer(wire, "127.0.0.1")
        assert outcome is not None, (name, rdtype)
        reply = dns.message.from_wire(outcome[0])
        assert any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in reply.answer + reply.authority), (name, rdtype)


def test_fast_path_signed_replies_are_refreshed_before_their_signatures_expire(pair) -> None:
    signed_zone, _ = pair
    fast = signed_zone.answerer.fast
    zone = next(z for z in signed_zone.catalog.zones if z.label == ZONE)
    signer = zone.signer
    start = 2_000_000_000.0
    clock = [start]
    saved = signer.now, fast.dnssec.clock
    signer.now = fast.dnssec.clock = lambda: clock[0]
    fast.dnssec.replies.clear()
    fast.dnssec.rrsigs.clear()
    try:
        def expirations(name: str, options: list) -> set[int]:
            wire = dns.message.make_query(name, "A", use_edns=0, want_dnssec=True, options=options).to_wire()
            outcome = fast.answer(wire, "127.0.0.1")
            assert outcome is not None
            reply = dns.message.from_wire(outcome[0])
            return {r.expiration for rrset in reply.answer if rrset.rdtype == dns.rdatatype.RRSIG for r in rrset}

        ecs = [dns.edns.ECSOption("10.1.2.0", 24)]
        first = expirations(f"static.{ZONE}", []) | expirations(f"www.{ZONE}", ecs)
        made = signer.signatures_made
        clock[0] += 3600
        assert expirations(f"static.{ZONE}", []) | expirations(f"www.{ZONE}", ecs) == first
        assert signer.signatures_made == made  # hits: no crypto
        clock[0] = min(first) - 3600  # past the refresh point, an hour before expiry
        later = expirations(f"static.{ZONE}", []) | expirations(f"www.{ZONE}", ecs)
        assert min(later) > min(first) + 86400 and signer.signatures_made > made
    finally:
        signer.now, fast.dnssec.clock = saved
        fast.dnssec.replies.clear()
        fast.dnssec.rrsigs.clear()



async def test_metrics_count_signatures_and_signer_cache_lookups(tmp_path: Path) -> None:
    zones, _ = signed_zones(tmp_path)
    server, url = start_with_api(zones, tmp_path / "logs", probe_name=ZONE)
    try:
        for _ in range(3):  # TCP: the general path, which asks the signer every time
            server.query(f"text.{ZONE}", "TXT", use_edns=0, want_dnssec=True, tcp=True)
        samples, types, _ = await scrape(url)
    finally:
        server.stop()
    assert types["gslb_dnssec_signatures"] == "counter"
    assert value(samples, "gslb_dnssec_signatures_total", zone=ZONE) >= 1
    assert value(samples, "gslb_dnssec_signature_cache_lookups_total", zone=ZONE, result="hit") >= 2
    assert value(samples, "gslb_dnssec_signature_cache_rrsets", zone=ZONE) >= 1


def test_a_fast_path_without_signed_answers_leaves_do_queries_to_the_general_path(pair) -> None:
    # FastPath built without the build step's SignedFast (as the API's probes and tests build it):
    # a DO query to a signed zone must not get an unsigned answer from it.
    bare = FastPath(pair[0].catalog, None, 1232)
    assert bare.signed_zones == frozenset({ZONE}) and bare.dnssec is None
    do = dns.message.make_query(f"static.{ZONE}", "A", use_edns=0, want_dnssec=True).to_wire()
    plain = dns.message.make_query(f"static.{ZONE}", "A", use_edns=0).to_wire()
    assert bare.answer(do, "127.0.0.1") is None
    assert bare.answer(plain, "127.0.0.1") is not None
