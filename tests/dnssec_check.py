"""Independent DNSSEC checks for the tests: dnspython's validator over gslb's dnslib RRs.

dnspython 2.9 enables `dns.dnssec` only when the installed cryptography's metadata says >= 50;
the algorithms used here (ECDSA P-256, SHA-256) are in every cryptography these tests run with,
so the feature is switched on before `dns.dnssec` is imported (dnspython's documented
`dns._features.force`), and the module reloaded if something imported it earlier.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import dns._features
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

dns._features.force("dnssec", True)
import dns.dnssec  # noqa: E402

if not getattr(dns.dnssec, "_have_pyca", True):
    importlib.reload(dns.dnssec)

from dnslib import RR, DNSRecord  # noqa: E402

dnssec = dns.dnssec  # for tests: `from dnssec_check import dnssec`, usable whatever was imported first
ValidationFailure = dns.dnssec.ValidationFailure


def rrsets(rrs: Sequence[RR]) -> list[dns.rrset.RRset]:
    """gslb's dnslib RRs as dnspython RRsets, through the wire (as a resolver would see them)."""
    record = DNSRecord()
    for rr in rrs:
        record.add_answer(rr)
    return list(dns.message.from_wire(bytes(record.pack())).answer)


def rrset(rrs: Sequence[RR]) -> dns.rrset.RRset:
    found = rrsets(rrs)
    assert len(found) == 1, f"expected one RRset, got {[str(r) for r in found]}"
    return found[0]


def validate(rrs: Sequence[RR], sigs: Sequence[RR], dnskeys: Sequence[RR] | dns.rrset.RRset,
             now: float | None = None) -> None:
    """Raises ValidationFailure unless one of `sigs` over `rrs` verifies with a key of `dnskeys`."""
    keyset = dnskeys if isinstance(dnskeys, dns.rrset.RRset) else rrset(dnskeys)
    dns.dnssec.validate(rrset(rrs), rrset(sigs), {keyset.name: keyset}, now=now)


def keys_matching_ds(dnskeys: Sequence[RR], ds_lines: Sequence[str]) -> dns.rrset.RRset:
    """The DNSKEYs a resolver trusts given the parent's DS records (zone-file lines): the chain of
    trust from the DS to the DNSKEY set (RFC 4035 section 5.2)."""
    keyset = rrset(dnskeys)
    wanted = {" ".join(line.lower().split()[3:]) for line in ds_lines}  # "ZONE. IN DS tag 13 2 hex" -> "tag 13 2 hex"
    trusted = dns.rrset.RRset(keyset.name, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    for key in keyset:
        ds = dns.dnssec.make_ds(keyset.name, key, "SHA256")
        if f"{ds.key_tag} {int(ds.algorithm)} {int(ds.digest_type)} {ds.digest.hex()}" in wanted:
            trusted.add(key, keyset.ttl)
    return trusted
