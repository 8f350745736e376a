"""gslb/dnssec/keys.py: key files, key tags (RFC 4034 appendix B) and DS records (RFC 4509),
checked against RFC 6605's published example and against dnspython."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dnssec_check import dnssec  # dnspython's, with its cryptography feature switched on
from gslb.dnssec.keys import KeyFileError, ds_records, key_tag, keygen, load_keys, scan_keys, with_state

ZONE = (b"example", b"net")
# RFC 6605 section 6.1: the ECDSA P-256 example key of example.net, its DNSKEY and DS.
RFC6605_PRIVATE = "GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ="
RFC6605_PUBLIC = "GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA=="
RFC6605_DS = "example.net. IN DS 55648 13 2 B4C8C1FE2E7477127B27115656AD6256F424625BF5C1E2770CE6D6E37DF61D17"


def write_key(directory: Path, scalar: int, tag: int, role: str = "ksk", state: str = "active",
              zone: str = "example.net.") -> None:
    """A key file pair written by hand, as an operator importing a key would."""
    directory.mkdir(parents=True, exist_ok=True)
    private_key = ec.derive_private_key(scalar, ec.SECP256R1())
    stem = f"K{zone}+013+{tag:05d}"
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    (directory / f"{stem}.pem").write_bytes(pem)
    (directory / f"{stem}.pem").chmod(0o600)
    (directory / f"{stem}.json").write_text(json.dumps({
        "zone": zone, "tag": tag, "algorithm": 13, "flags": 257 if role != "zsk" else 256, "role": role,
        "state": state, "created": "2026-01-01T00:00:00Z", "changed": "2026-01-01T00:00:00Z"}))


def rfc6605_key(directory: Path):
    write_key(directory, int.from_bytes(base64.b64decode(RFC6605_PRIVATE), "big"), 55648)
    (key,) = load_keys(directory, ZONE)
    return key


def test_rfc6605_example_key_has_its_published_public_key_tag_and_ds(tmp_path):
    key = rfc6605_key(tmp_path)
    assert base64.b64encode(key.public_key).decode() == RFC6605_PUBLIC
    assert key.tag == 55648
    assert key.flags == 257
    assert ds_records(key) == [RFC6605_DS]


def test_key_tag_and_ds_agree_with_dnspython_for_generated_keys(tmp_path):
    for role in ("csk", "ksk", "zsk"):
        key = keygen(tmp_path, ZONE, role)
        rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, key.dnskey_rdata, 0, len(key.dnskey_rdata))
        assert key.tag == dnssec.key_id(rdata) == key_tag(key.dnskey_rdata)
        assert rdata.flags == (256 if role == "zsk" else 257)
        assert rdata.algorithm == 13 and rdata.protocol == 3
        ds = dnssec.make_ds(dns.name.from_text("example.net."), rdata, "SHA256")
        assert ds_records(key) == [f"example.net. IN DS {ds.key_tag} 13 2 {ds.digest.hex().upper()}"]


def test_key_tag_carry_is_folded_in_rfc4034_appendix_b():
    # Every byte 0xff: the 16-bit sum overflows, and the carry must be added back.
    rdata = b"\xff" * 68
    expected = dnssec.key_id(dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, rdata, 0, 68))
    assert key_tag(rdata) == expected


def test_keygen_writes_owner_only_files_and_load_reads_them_back(tmp_path):
    directory = tmp_path / "keys" / "example.net"
    key = keygen(directory, ZONE, "zsk", state="published")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in (key.private_path, key.metadata_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.private_path.name == f"Kexample.net.+013+{key.tag:05d}.pem"
    (loaded,) = load_keys(directory, ZONE)
    assert (loaded.tag, loaded.role, loaded.state, loaded.public_key) == (key.tag, "zsk", "published", key.public_key)
    assert scan_keys(directory, ZONE).warnings == ()


def test_state_change_rewrites_metadata_and_keeps_mode(tmp_path):
    key = keygen(tmp_path, ZONE, "csk", state="published", now=1_000_000)
    changed = with_state(key, "active", now=2_000_000)
    (loaded,) = load_keys(tmp_path, ZONE)
    assert loaded.state == "active" and loaded.changed == 2_000_000 and loaded.created == 1_000_000
    assert changed.state == "active"
    assert stat.S_IMODE(key.metadata_path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_keys_of_other_zones_in_the_same_directory_are_not_loaded(tmp_path):
    keygen(tmp_path, (b"other", b"net"), "csk")
    mine = keygen(tmp_path, ZONE, "csk")
    assert [k.tag for k in load_keys(tmp_path, ZONE)] == [mine.tag]


def test_private_key_readable_by_others_is_a_warning_naming_the_file(tmp_path):
    key = keygen(tmp_path, ZONE, "csk")
    key.private_path.chmod(0o644)
    scan = scan_keys(tmp_path, ZONE)
    assert [k.tag for k in scan.keys] == [key.tag] and scan.errors == ()
    assert scan.warnings == (f"{key.private_path}: private key readable by others (mode 0644); chmod 600 {key.private_path}",)


@pytest.mark.parametrize("damage, expected", [
    (lambda k: k.metadata_path.write_text("{not json"), "not valid JSON"),
    (lambda k: k.metadata_path.write_text("[]"), "must be a JSON object"),
    (lambda k: _edit(k.metadata_path, role="boss"), "role must be one of csk, ksk, zsk, got 'boss'"),
    (lambda k: _edit(k.metadata_path, state="on"), "state must be one of published, active, retired, got 'on'"),
    (lambda k: _edit(k.metadata_path, zone="example.org."), "zone is 'example.org.', but the file is named for example.net."),
    (lambda k: _edit(k.metadata_path, tag=1), "tag 1 does not match the private key's"),
    (lambda k: _edit(k.metadata_path, role="zsk"), "does not match the private key's"),  # flags change the tag
    (lambda k: _edit(k.metadata_path, created="yesterday"), "created and changed must be times"),
    (lambda k: k.private_path.unlink(), "private key file not found"),
    (lambda k: k.private_path.write_text("garbage"), "not an unencrypted PEM private key"),
])
def test_broken_key_files_are_one_line_errors_naming_the_file(tmp_path, damage, expected):
    key = keygen(tmp_path, ZONE, "csk")
    damage(key)
    scan = scan_keys(tmp_path, ZONE)
    assert scan.keys == ()
    (error,) = scan.errors
    assert "\n" not in error and expected in error
    in_pem = expected.startswith(("private key file", "not an unencrypted"))
    assert error.startswith(f"{key.private_path if in_pem else key.metadata_path}: ")
    with pytest.raises(KeyFileError, match="^" + str(tmp_path)):
        load_keys(tmp_path, ZONE)


def test_a_non_p256_key_is_refused(tmp_path):
    key = keygen(tmp_path, ZONE, "csk")
    other = ec.generate_private_key(ec.SECP384R1())
    key.private_path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (error,) = scan_keys(tmp_path, ZONE).errors
    assert error == f"{key.private_path}: not an ECDSA P-256 key (DNSSEC algorithm 13)"


def test_a_private_key_without_metadata_is_an_error(tmp_path):
    key = keygen(tmp_path, ZONE, "csk")
    key.metadata_path.unlink()
    (error,) = scan_keys(tmp_path, ZONE).errors
    assert error.startswith(f"{key.private_path}: private key without its metadata file")


def test_missing_directory_is_one_error(tmp_path):
    scan = scan_keys(tmp_path / "nope", ZONE)
    assert scan.errors == (f"{tmp_path / 'nope'}: key directory not found; create keys with "
                           "`gslb dnssec keygen --zones DIR example.net.`",)


def test_keygen_never_reuses_a_tag_of_the_zone(tmp_path, monkeypatch):
    first = keygen(tmp_path, ZONE, "csk")
    # The next draw gives the same key again, then a fresh one: the repeat is thrown away.
    real = ec.generate_private_key
    draws = iter([first.private_key])
    monkeypatch.setattr(ec, "generate_private_key", lambda curve: next(draws, None) or real(curve))
    second = keygen(tmp_path, ZONE, "csk")
    assert second.tag != first.tag
    assert len(load_keys(tmp_path, ZONE)) == 2


def _edit(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))
    os.chmod(path, 0o600)
