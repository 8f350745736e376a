"""gslb/dnssec/signer.py: RRSIGs that dnspython's validator accepts (independent canonical form
and ECDSA code), the signature cache, the apex key RRsets and compact-denial NSEC."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, RR, SOA, SRV, TXT, A, DNSLabel

from dnssec_check import ValidationFailure, dnssec, rrset, rrsets, validate
from gslb.dnssec.keys import keygen, with_state
from gslb.dnssec.signer import CLOCK_SKEW, ZoneSigner, canonical_rdata, type_bitmap

ZONE = (b"example", b"com")
VALIDITY = 7 * 86400
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def csk(tmp_path):
    return keygen(tmp_path, ZONE, "csk")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def signer(csk, clock):
    return ZoneSigner(ZONE, [csk], negative_ttl=300, now=clock)


def rr(owner: str, rdata, ttl: int = 300, rtype: int | None = None) -> RR:
    types = {A: 1, AAAA: 28, MX: 15, TXT: 16, SRV: 33, CNAME: 5, NS: 2, PTR: 12, SOA: 6, CAA: 257}
    return RR(DNSLabel(owner), rtype or types[type(rdata)], 1, ttl, rdata)


def dnskeys(signer: ZoneSigner) -> list[RR]:
    return signer.apex_rrsets()[48]


RRSETS = {
    "A": [rr("WwW.Example.COM.", A("192.0.2.2")), rr("WwW.Example.COM.", A("192.0.2.1")), rr("WwW.Example.COM.", A("10.0.0.1"))],
    "AAAA": [rr("v6.example.com.", AAAA("2001:db8::2")), rr("v6.example.com.", AAAA("2001:db8::1"))],
    # Names inside MX/CNAME/NS/PTR/SRV/SOA RDATA are lowercased in the canonical form (RFC 4034 6.2).
    "MX": [rr("Mail.example.com.", MX("MX2.Example.com.", 20)), rr("Mail.example.com.", MX("mx1.EXAMPLE.com.", 10))],
    "CNAME": [rr("Alias.example.com.", CNAME("Target.Example.NET."))],
    "NS": [rr("Sub.example.com.", NS("NS1.Sub.example.com.")), rr("Sub.example.com.", NS("ns0.elsewhere.ORG."))],
    "PTR": [rr("1.2.0.192.In-Addr.Arpa.", PTR("Host.Example.com."))],
    "SRV": [rr("_sip._tcp.example.com.", SRV(10, 5, 5060, "SIP.Example.com.")),
            rr("_sip._tcp.example.com.", SRV(10, 5, 5061, "sip2.example.com."))],
    # mname and rname share a suffix: a compressed rname would not be the canonical form.
    "SOA": [rr("example.com.", SOA("NS1.Example.com.", "Hostmaster.Example.com.", (1, 3600, 600, 1209600, 60)))],
    "TXT": [rr("t.example.com.", TXT([b"Mixed Case", b"second string"])), rr("t.example.com.", TXT("a"))],
    "CAA": [rr("example.com.", CAA(0, "issue", "letsencrypt.org"))],
}


@pytest.mark.parametrize("kind", sorted(RRSETS))
def test_signature_validates_with_dnspython_rfc4034_section_6(signer, kind):
    records = RRSETS[kind]
    sigs = signer.sign(records)
    assert len(sigs) == 1
    validate(records, sigs, dnskeys(signer), now=T0)
    # Presented to the validator in the other order: the canonical form sorts RDATA itself.
    validate(list(reversed(records)), sigs, dnskeys(signer), now=T0)


def test_rrsig_fields_rfc4034_section_3(signer, csk):
    records = RRSETS["A"]
    (sig,) = rrsets(signer.sign(records))
    assert sig.name.to_text() == "WwW.Example.COM."  # the owner as given, case kept
    (rdata,) = sig
    assert rdata.type_covered == dns.rdatatype.A and rdata.algorithm == 13 and rdata.labels == 3
    assert rdata.original_ttl == 300 and sig.ttl == 300
    assert rdata.inception == T0 - CLOCK_SKEW and rdata.expiration == T0 + VALIDITY
    assert rdata.key_tag == csk.tag and rdata.signer == dns.name.from_text("example.com.")
    assert len(rdata.signature) == 64  # r || s, RFC 6605 section 4


def test_canonical_rdata_matches_dnspython_digestable_form():
    for kind, records in RRSETS.items():
        ours = sorted(canonical_rdata(r.rtype, r.rdata) for r in records)
        theirs = sorted(rd.to_digestable() for rd in rrset(records))
        assert ours == theirs, kind


def test_duplicate_rdata_is_signed_once_rfc4034_section_6_3(signer):
    records = [rr("d.example.com.", A("192.0.2.1")), rr("d.example.com.", A("192.0.2.1"))]
    validate(records[:1], signer.sign(records), dnskeys(signer), now=T0)


def test_tampered_rdata_or_expired_signature_fails_validation(signer):
    records = RRSETS["A"]
    sigs = signer.sign(records)
    with pytest.raises(ValidationFailure):
        validate([rr("WwW.Example.COM.", A("192.0.2.99"))] + records[1:], sigs, dnskeys(signer), now=T0)
    with pytest.raises(ValidationFailure):
        validate(records, sigs, dnskeys(signer), now=T0 + VALIDITY + 1)
    with pytest.raises(ValidationFailure):
        validate(records, sigs, dnskeys(signer), now=T0 - CLOCK_SKEW - 1)


def test_wildcard_expansion_labels_field_rfc4035_section_5_3_2(signer):
    # An answer for a.b.example.com synthesised from *.example.com: Labels = 2.
    records = [rr("a.b.example.com.", A("192.0.2.7"))]
    sigs = signer.sign(records, labels=2)
    (rdata,) = rrset(sigs)
    assert rdata.labels == 2
    validate(records, sigs, dnskeys(signer), now=T0)
    with pytest.raises(ValueError):
        signer.sign(records, labels=5)


def test_cache_hit_does_no_crypto_and_keeps_the_owner_case_asked_for(signer):
    records = RRSETS["A"]
    first = signer.sign(records)
    assert (signer.signatures_made, signer.hits, signer.misses) == (1, 0, 1)
    again = signer.sign(list(reversed(records)))
    assert (signer.signatures_made, signer.hits) == (1, 1)
    assert [r.rdata for r in again] == [r.rdata for r in first]
    lower = [rr("www.example.com.", r.rdata) for r in records]
    sigs = signer.sign(lower)
    assert (signer.signatures_made, signer.hits) == (1, 2)
    assert str(sigs[0].rname) == "www.example.com."
    validate(lower, sigs, dnskeys(signer), now=T0)


def test_cache_key_includes_ttl_type_and_content(signer):
    signer.sign(RRSETS["A"])
    signer.sign([rr(str(r.rname), r.rdata, ttl=60) for r in RRSETS["A"]])
    signer.sign(RRSETS["A"][:2])
    signer.sign(RRSETS["A"], labels=2)
    assert signer.signatures_made == 4 and signer.hits == 0


def test_signatures_refresh_when_a_quarter_of_the_window_is_left(signer, clock):
    records = RRSETS["MX"]
    first = rrset(signer.sign(records))[0]
    window = VALIDITY + CLOCK_SKEW
    clock.now = T0 + window * 3 / 4 - CLOCK_SKEW - 1  # just before the last quarter
    assert rrset(signer.sign(records))[0] == first and signer.signatures_made == 1
    clock.now += 2
    refreshed = rrset(signer.sign(records))[0]
    assert signer.signatures_made == 2
    assert refreshed.inception == int(clock.now) - CLOCK_SKEW
    assert refreshed.expiration == int(clock.now) + VALIDITY
    # The refreshed signature is valid well past the first one's expiry.
    validate(records, signer.sign(records), dnskeys(signer), now=T0 + VALIDITY + 3600)


def test_sign_until_says_when_the_signatures_are_replaced(signer, clock, tmp_path):
    records = RRSETS["A"]
    sigs, until = signer.sign_until(records)
    assert until == T0 + VALIDITY - (VALIDITY + CLOCK_SKEW) / 4
    assert signer.sign_until(records) == (sigs, until)  # a hit: the same RRSIGs, the same deadline
    clock.now = until
    fresh, later = signer.sign_until(records)
    assert later == until + (clock.now - T0) and fresh[0].rdata != sigs[0].rdata
    unsigned = ZoneSigner(ZONE, [keygen(tmp_path / "z", ZONE, "zsk", state="published")], negative_ttl=300, now=clock)
    assert unsigned.sign_until(records) == ([], float("inf"))
    assert signer.sign_until([]) == ([], float("inf"))


def test_cache_is_a_bounded_lru(csk, clock):
    signer = ZoneSigner(ZONE, [csk], negative_ttl=300, now=clock, max_entries=3)
    sets = [[rr(f"h{i}.example.com.", A("192.0.2.1"))] for i in range(5)]
    for records in sets[:3]:
        signer.sign(records)
    signer.sign(sets[0])  # h0 used again: h1 is now the least recently used
    for records in sets[3:]:
        signer.sign(records)
    assert signer.cache_size == 3
    made = signer.signatures_made
    signer.sign(sets[0])
    assert signer.signatures_made == made  # kept
    signer.sign(sets[1])
    assert signer.signatures_made == made + 1  # evicted, signed again


def test_a_flood_of_denials_does_not_evict_the_answers(csk, clock):
    signer = ZoneSigner(ZONE, [csk], negative_ttl=300, now=clock, max_entries=20, max_denials=2)
    answers = [[rr(f"h{i}.example.com.", A("192.0.2.1"))] for i in range(20)]
    for records in answers:
        signer.sign(records)
    for i in range(50):  # random names, each a new NSEC to sign
        signer.sign([signer.denial(DNSLabel(f"nx{i}.example.com."), [], nxname=True)])
    assert signer.cache_size == 22
    made = signer.signatures_made
    for records in answers:
        signer.sign(records)
    assert signer.signatures_made == made  # every answer still cached
    assert ZoneSigner(ZONE, [csk], negative_ttl=300, max_entries=100_000).max_denials == 10_000


def test_key_roles_decide_what_each_key_signs(tmp_path, clock):
    ksk = keygen(tmp_path, ZONE, "ksk")
    zsk = keygen(tmp_path, ZONE, "zsk")
    signer = ZoneSigner(ZONE, [ksk, zsk], negative_ttl=300, now=clock)
    apex = signer.apex_rrsets()
    for rtype in (48, 59, 60):
        assert [s.rdata.key_tag for s in signer.sign(apex[rtype])] == [ksk.tag]
        validate(apex[rtype], signer.sign(apex[rtype]), apex[48], now=T0)
    assert [s.rdata.key_tag for s in signer.sign(RRSETS["A"])] == [zsk.tag]
    validate(RRSETS["A"], signer.sign(RRSETS["A"]), apex[48], now=T0)


def test_apex_rrsets_publish_every_key_and_cds_only_for_active_key_signing_keys(tmp_path, clock):
    old = keygen(tmp_path, ZONE, "csk")
    new = with_state(keygen(tmp_path, ZONE, "csk", state="published"), "published")
    retired = with_state(keygen(tmp_path, ZONE, "zsk"), "retired")
    signer = ZoneSigner(ZONE, [old, new, retired], negative_ttl=300, now=clock, dnskey_ttl=7200)
    apex = signer.apex_rrsets()
    keyset = rrset(apex[48])
    assert keyset.ttl == 7200
    assert sorted(dnssec.key_id(k) for k in keyset) == sorted([old.tag, new.tag, retired.tag])
    (cds,) = rrset(apex[59])
    assert (cds.key_tag, cds.algorithm, cds.digest_type) == (old.tag, 13, 2)
    assert cds == dnssec.make_cds(keyset.name, next(k for k in keyset if dnssec.key_id(k) == old.tag), "SHA256")
    (cdnskey,) = rrset(apex[60])
    assert dnssec.key_id(cdnskey) == old.tag
    assert [s.rdata.key_tag for s in signer.sign(apex[48])] == [old.tag]  # published and retired keys sign nothing


def test_nothing_to_sign_with_gives_no_rrsig(tmp_path, clock):
    zsk = keygen(tmp_path, ZONE, "zsk")
    signer = ZoneSigner(ZONE, [zsk], negative_ttl=300, now=clock)
    assert signer.sign(signer.apex_rrsets()[48]) == []
    assert 59 not in signer.apex_rrsets()
    assert signer.sign([]) == []


def test_nxdomain_denial_is_compact_nsec_with_nxname_rfc9824(signer):
    nsec = signer.denial(DNSLabel("NoSuch.example.com."), [], nxname=True)
    (parsed,) = rrsets([nsec])
    assert parsed.name.to_text() == "NoSuch.example.com."
    assert parsed.ttl == 300
    (rdata,) = parsed
    assert rdata.next == dns.name.from_text("\\000.NoSuch.example.com.")
    assert rdata.to_text() == "\\000.NoSuch.example.com. RRSIG NSEC NXNAME"
    validate([nsec], signer.sign([nsec]), dnskeys(signer), now=T0)


def test_nodata_denial_lists_the_types_that_exist_rfc4470(signer):
    nsec = signer.denial(DNSLabel("www.example.com."), [1, 28, 16], nxname=False)
    (rdata,) = rrset([nsec])
    assert rdata.to_text() == "\\000.www.example.com. A TXT AAAA RRSIG NSEC"
    validate([nsec], signer.sign([nsec]), dnskeys(signer), now=T0)
    # An empty non-terminal: only RRSIG and NSEC.
    (empty,) = rrset([signer.denial(DNSLabel("ent.example.com."), [], nxname=False)])
    assert empty.to_text() == "\\000.ent.example.com. RRSIG NSEC"


def test_type_bitmap_matches_dnspython_across_windows():
    types = [1, 2, 6, 46, 47, 128, 257, 65534]
    wire = b"\x00" + type_bitmap(types)  # the root as next name, then the bitmaps
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.NSEC, wire, 0, len(wire))
    assert sorted(int(t) for window in rdata.windows for t in _types(window)) == types


def test_denial_of_a_maximum_length_name_stays_within_255_bytes(signer):
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 49]  # 254 bytes with example.com
    owner = ".".join(labels[:3]) + "." + "d" * 47 + ".example.com."
    nsec = signer.denial(DNSLabel(owner), [], nxname=True)
    (rdata,) = rrset([nsec])
    assert rdata.next > dns.name.from_text(owner)
    assert len(rdata.next.to_wire()) <= 255
    validate([nsec], signer.sign([nsec]), dnskeys(signer), now=T0)


def _types(window):
    number, bitmap = window
    for index, byte in enumerate(bitmap):
        for bit in range(8):
            if byte & (0x80 >> bit):
                yield number * 256 + index * 8 + bit
