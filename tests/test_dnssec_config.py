"""A zone's `dnssec:` section: keys read once at load onto Zone.signer, and `gslb check`'s one-line
problems (file, key path, the key file at fault, what to do)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dnslib import RR, A, DNSLabel

from dnssec_check import dnssec, rrset, validate
from dnsserver import gslb_command
from gslb.config.catalog import load_catalog
from gslb.config.zonefile import load_zone_file
from gslb.dnssec.keys import keygen, with_state

ORIGIN = (b"signed", b"example")
TIMEOUT = 30


def zone_dir(tmp_path: Path, dnssec: str = "{keys: keys/signed.example}", soa: str = "{minimum: 120}") -> Path:
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    (zones / "signed.yaml").write_text(f"""\
origin: signed.example.
ttl: 600
ns: [ns1.signed.example.]
soa: {soa}
dnssec: {dnssec}
records:
  ns1: {{type: A, value: 192.0.2.1}}
  www: {{type: A, values: [192.0.2.10, 192.0.2.11]}}
""")
    return zones


def check(zones: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gslb_command("check", "--zones", str(zones)), capture_output=True, text=True, timeout=TIMEOUT)


def test_signed_zone_loads_with_its_signer(tmp_path):
    zones = zone_dir(tmp_path, "{keys: keys/signed.example, validity: 3d, dnskey_ttl: 2h}")
    key = keygen(zones / "keys" / "signed.example", ORIGIN, "csk")
    zone, problems = load_zone_file(zones / "signed.yaml")
    assert not problems and zone is not None and zone.signer is not None
    signer = zone.signer
    assert (signer.validity, signer.dnskey_ttl, signer.negative_ttl) == (3 * 86400, 7200, 120)  # min(SOA ttl, minimum)
    assert [k.tag for k in signer.keys] == [key.tag]
    records = [RR(DNSLabel("www.signed.example."), 1, 1, 600, A("192.0.2.10"))]
    validate(records, signer.sign(records), signer.apex_rrsets()[48])


def test_unsigned_zone_has_no_signer(tmp_path):
    zones = zone_dir(tmp_path)
    text = (zones / "signed.yaml").read_text().replace("dnssec: {keys: keys/signed.example}\n", "")
    (zones / "signed.yaml").write_text(text)
    zone, problems = load_zone_file(zones / "signed.yaml")
    assert zone is not None and zone.signer is None


def test_keys_are_read_once_at_load_and_again_on_the_next_load(tmp_path):
    zones = zone_dir(tmp_path)
    directory = zones / "keys" / "signed.example"
    first = keygen(directory, ORIGIN, "csk")
    catalog, _ = load_catalog(zones)
    assert catalog is not None
    signer = catalog.zones[0].signer
    second = keygen(directory, ORIGIN, "csk", state="published")
    assert [k.tag for k in signer.keys] == [first.tag]  # the loaded signer never looks at files again
    reloaded, _ = load_catalog(zones)
    assert reloaded is not None
    assert sorted(k.tag for k in reloaded.zones[0].signer.keys) == sorted([first.tag, second.tag])


def problem_lines(zones: Path) -> list[str]:
    result = check(zones)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if "problem" not in line.split(":")[-1]]


def test_check_missing_key_directory(tmp_path):
    zones = zone_dir(tmp_path)
    assert problem_lines(zones) == [
        f"{zones / 'signed.yaml'}: dnssec.keys: {zones / 'keys/signed.example'}: key directory not found; "
        "create keys with `gslb dnssec keygen --zones DIR signed.example.`"]


def test_check_no_keys(tmp_path):
    zones = zone_dir(tmp_path)
    (zones / "keys" / "signed.example").mkdir(parents=True)
    assert problem_lines(zones) == [
        f"{zones / 'signed.yaml'}: dnssec.keys: {zones / 'keys/signed.example'}: no keys for signed.example. here; "
        "create one with `gslb dnssec keygen --zones DIR signed.example.`"]


def test_check_no_active_key(tmp_path):
    zones = zone_dir(tmp_path)
    keygen(zones / "keys" / "signed.example", ORIGIN, "csk", state="published")
    keygen(zones / "keys" / "signed.example", ORIGIN, "zsk", state="active")
    (line,) = problem_lines(zones)
    assert line.startswith(f"{zones / 'signed.yaml'}: dnssec.keys: {zones / 'keys/signed.example'}: "
                           "no active KSK or CSK to sign the DNSKEY set; activate one with `gslb dnssec activate")


def test_check_unreadable_key_file_names_it(tmp_path):
    zones = zone_dir(tmp_path)
    key = keygen(zones / "keys" / "signed.example", ORIGIN, "csk")
    key.private_path.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    (line,) = problem_lines(zones)
    assert line.startswith(f"{zones / 'signed.yaml'}: dnssec.keys: {key.private_path}: not an unencrypted PEM private key")


@pytest.mark.parametrize("dnssec, expected", [
    ("keys/x", "dnssec: must be a mapping like {keys: keys/example.com}, got 'keys/x'"),
    ("{}", "dnssec.keys: must be the key directory, relative to the zones directory, like keys/example.com; got None"),
    ("{keys: k, colour: red}", "dnssec.colour: unknown key; expected one of keys, validity, dnskey_ttl"),
    ("{keys: k, validity: 1h}", "dnssec.validity: validity must be from 10800 to 7776000 seconds, got '1h' (3600 seconds)"),
    ("{keys: k, dnskey_ttl: -1}", "dnssec.dnskey_ttl: dnskey_ttl must be an integer from 0 to 2147483647, got -1"),
])
def test_check_bad_dnssec_section(tmp_path, dnssec, expected):
    zones = zone_dir(tmp_path, dnssec)
    assert problem_lines(zones) == [f"{zones / 'signed.yaml'}: {expected}"]


def test_check_passes_and_warns_about_a_private_key_others_can_read(tmp_path):
    zones = zone_dir(tmp_path)
    key = keygen(zones / "keys" / "signed.example", ORIGIN, "ksk")
    keygen(zones / "keys" / "signed.example", ORIGIN, "zsk")
    assert check(zones).returncode == 0
    key.private_path.chmod(0o640)
    result = check(zones)
    assert result.returncode == 0, result.stderr
    assert f"{zones / 'signed.yaml'}: dnssec.keys: {key.private_path}: private key readable by others (mode 0640); " \
           f"chmod 600 {key.private_path}" in result.stderr
    assert "gslb: 1 zone OK" in result.stdout


def test_retired_keys_stay_published_and_only_active_ones_go_to_cds(tmp_path):
    zones = zone_dir(tmp_path)
    directory = zones / "keys" / "signed.example"
    active = keygen(directory, ORIGIN, "csk")
    retired = with_state(keygen(directory, ORIGIN, "csk", state="active"), "retired")
    zone, _ = load_zone_file(zones / "signed.yaml")
    assert zone is not None and zone.signer is not None
    apex = zone.signer.apex_rrsets()
    assert sorted(dnssec.key_id(k) for k in rrset(apex[48])) == sorted([active.tag, retired.tag])
    assert [cds.key_tag for cds in rrset(apex[59])] == [active.tag]
