"""The rollover procedures of docs/dnssec.md, step by step with the `gslb dnssec` commands, each
step served by a freshly loaded zone (as after `gslb reload`).

At every step, what a validating resolver might hold must still validate (dnspython's validator):
the new signatures against the DNSKEY set it cached at the previous step, the signatures it cached
at the previous step against the new DNSKEY set, and the new DNSKEY set through the parent's DS.
The negative controls show why each wait in the procedure is there: skipping it breaks validation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib import RR, A, DNSLabel

from dnssec_check import ValidationFailure, keys_matching_ds, validate
from gslb.config.zonefile import load_zone_file
from gslb.dnssec.commands import run
from gslb.dnssec.keys import ds_records, load_keys

ORIGIN = (b"roll", b"example")


@dataclass
class Served:
    """One step's answers, as a resolver sees (and caches) them."""

    dnskey: list[RR]
    dnskey_sigs: list[RR]
    cds: list[RR]
    data: list[RR]
    data_sigs: list[RR]
    nsec: list[RR]
    nsec_sigs: list[RR]


class Zone:
    def __init__(self, tmp_path: Path) -> None:
        self.zones = tmp_path / "zones"
        self.zones.mkdir()
        (self.zones / "roll.yaml").write_text("""\
origin: roll.example.
ns: [ns1.roll.example.]
dnssec: {keys: keys/roll.example}
records:
  ns1: {type: A, value: 192.0.2.1}
  www: {type: A, values: [192.0.2.10, 192.0.2.11]}
""")

    def gslb_dnssec(self, action: str, *args: str, role: str = "csk") -> str:
        out, err = io.StringIO(), io.StringIO()
        code = run(action, self.zones, "roll.example", role=role, tag=args[0] if args else None, out=out, err=err)
        assert code == 0, err.getvalue()
        return out.getvalue()

    def keygen(self, role: str) -> int:
        return int(self.gslb_dnssec("keygen", role=role).split()[0])

    def ds(self) -> list[str]:
        return self.gslb_dnssec("ds").splitlines()

    def ds_of(self, tag: int) -> list[str]:
        (key,) = [k for k in load_keys(self.zones / "keys" / "roll.example", ORIGIN) if k.tag == tag]
        return ds_records(key)

    def serve(self) -> Served:
        """What the zone serves after a reload (a fresh load of the files)."""
        zone, problems = load_zone_file(self.zones / "roll.yaml")
        assert zone is not None and zone.signer is not None, [str(p) for p in problems]
        signer = zone.signer
        apex = signer.apex_rrsets()
        data = [RR(DNSLabel("www.roll.example."), 1, 1, 300, A(a)) for a in ("192.0.2.10", "192.0.2.11")]
        nsec = [signer.denial(DNSLabel("nx.roll.example."), [], nxname=True)]
        return Served(apex[48], signer.sign(apex[48]), apex.get(59, []), data, signer.sign(data), nsec, signer.sign(nsec))


def tags(rrs: list[RR]) -> set[int]:
    return {rr.rdata.key_tag for rr in rrs}


def chain_ok(served: Served, ds: list[str]) -> None:
    """The parent's DS set -> a trusted key -> the DNSKEY set (RFC 4035 section 5.2)."""
    validate(served.dnskey, served.dnskey_sigs, keys_matching_ds(served.dnskey, ds))


def data_ok(served: Served, dnskey: list[RR]) -> None:
    validate(served.data, served.data_sigs, dnskey)
    validate(served.nsec, served.nsec_sigs, dnskey)


def data_fails(served: Served, dnskey: list[RR]) -> None:
    with pytest.raises(ValidationFailure):
        validate(served.data, served.data_sigs, dnskey)


def test_zsk_pre_publish_rollover(tmp_path):
    zone = Zone(tmp_path)
    ksk = zone.keygen("ksk")
    old = zone.keygen("zsk")
    parent_ds = zone.ds()
    s0 = zone.serve()
    chain_ok(s0, parent_ds)
    data_ok(s0, s0.dnskey)

    # 1. Publish the new ZSK. It is in the DNSKEY set but signs nothing.
    new = zone.keygen("zsk")
    s1 = zone.serve()
    assert tags(s1.data_sigs) == {old} and tags(s1.dnskey_sigs) == {ksk}
    chain_ok(s1, parent_ds)
    data_ok(s1, s0.dnskey)  # a resolver still holding the old DNSKEY set
    data_ok(s1, s1.dnskey)
    data_ok(s0, s1.dnskey)  # signatures cached before, checked with the new set

    # 2. After the DNSKEY TTL: activate the new ZSK, retire the old one (still published).
    zone.gslb_dnssec("activate", str(new))
    zone.gslb_dnssec("retire", str(old))
    s2 = zone.serve()
    assert tags(s2.data_sigs) == {new}
    chain_ok(s2, parent_ds)
    data_ok(s2, s1.dnskey)  # every resolver holds at least the step-1 set by now
    data_ok(s2, s2.dnskey)
    data_ok(s1, s2.dnskey)  # old signatures still cached: the retired key is still there for them
    data_fails(s2, s0.dnskey)  # why step 2 waits the DNSKEY TTL after step 1

    # 3. After the largest TTL of the zone's data (and negative TTL): remove the old ZSK.
    zone.gslb_dnssec("remove", str(old))
    s3 = zone.serve()
    chain_ok(s3, parent_ds)
    data_ok(s3, s2.dnskey)
    data_ok(s3, s3.dnskey)
    data_ok(s2, s3.dnskey)
    data_fails(s1, s3.dnskey)  # why step 3 waits for the old signatures to leave the caches


@pytest.mark.parametrize("role", ["csk", "ksk"])
def test_double_signature_rollover_of_the_key_signing_key(tmp_path, role):
    zone = Zone(tmp_path)
    old = zone.keygen(role)
    zsk = zone.keygen("zsk") if role == "ksk" else None
    parent_ds = zone.ds()
    assert parent_ds == zone.ds_of(old)
    s0 = zone.serve()
    chain_ok(s0, parent_ds)
    data_ok(s0, s0.dnskey)

    # 1. Create the new key and activate it at once: everything it signs is signed twice.
    new = zone.keygen(role)
    zone.gslb_dnssec("activate", str(new))
    s1 = zone.serve()
    assert tags(s1.dnskey_sigs) == {old, new}
    assert tags(s1.data_sigs) == ({old, new} if role == "csk" else {zsk})
    assert {rr.rdata.key_tag for rr in s1.cds} == {old, new}  # CDS: the parent may hold either
    assert sorted(zone.ds()) == sorted(zone.ds_of(old) + zone.ds_of(new))
    chain_ok(s1, parent_ds)  # the parent still has the old DS
    chain_ok(s1, zone.ds_of(new))  # and may switch to the new one whenever it likes
    data_ok(s1, s0.dnskey)
    data_ok(s1, s1.dnskey)
    data_ok(s0, s1.dnskey)

    # 2. After the DNSKEY TTL, the parent's DS is replaced by the new key's (gslb dnssec ds, or CDS).
    parent_ds = zone.ds_of(new)
    chain_ok(s1, parent_ds)

    # 3. After the parent's DS TTL: retire the old key.
    zone.gslb_dnssec("retire", str(old))
    s3 = zone.serve()
    assert tags(s3.dnskey_sigs) == {new}
    assert {rr.rdata.key_tag for rr in s3.cds} == {new}
    chain_ok(s3, parent_ds)
    with pytest.raises(ValidationFailure):
        chain_ok(s3, zone.ds_of(old))  # why step 3 waits for the old DS to leave the caches
    data_ok(s3, s1.dnskey)
    data_ok(s3, s3.dnskey)
    data_ok(s1, s3.dnskey)  # signatures cached at step 1 carry the new key's too
    if role == "csk":
        data_fails(s3, s0.dnskey)  # why step 2 waits the DNSKEY TTL after step 1

    # 4. After the largest TTL of the zone (DNSKEY included): remove the old key.
    zone.gslb_dnssec("remove", str(old))
    s4 = zone.serve()
    chain_ok(s4, parent_ds)
    data_ok(s4, s3.dnskey)
    data_ok(s4, s4.dnskey)
    data_ok(s1, s4.dnskey)
    data_ok(s3, s4.dnskey)
