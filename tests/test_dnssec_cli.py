"""`gslb dnssec keygen|ds|list|activate|retire|remove` end to end, as an operator runs them
(`python -m gslb dnssec ...` in a subprocess), checked against the files and dnspython."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from dnssec_check import dnssec
from dnsserver import gslb_command
from gslb.dnssec.keys import load_keys

ORIGIN = (b"signed", b"example")
TIMEOUT = 30


def zones_dir(tmp_path: Path) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "signed.yaml").write_text("""\
origin: signed.example.
ns: [ns1.signed.example.]
dnssec: {keys: keys/signed.example}
records:
  ns1: {type: A, value: 192.0.2.1}
""")
    (zones / "plain.yaml").write_text("origin: plain.example.\nns: [ns1.plain.example.]\nrecords: {ns1: {type: A, value: 192.0.2.1}}\n")
    return zones


def gslb(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(gslb_command(*args), capture_output=True, text=True, timeout=TIMEOUT)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def keygen(zones: Path, role: str | None = None, zone: str = "signed.example") -> tuple[int, str, str, Path]:
    result = gslb("dnssec", "keygen", "--zones", str(zones), zone, *(["--role", role] if role else []))
    assert result.returncode == 0, result.stderr
    tag, got_role, state, path = result.stdout.split()
    return int(tag), got_role, state, Path(path)


def test_keygen_first_csk_is_active_and_owner_only(tmp_path):
    zones = zones_dir(tmp_path)
    tag, role, state, path = keygen(zones)
    assert (role, state) == ("csk", "active")
    directory = zones / "keys" / "signed.example"
    assert path == directory / f"Ksigned.example.+013+{tag:05d}.pem"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for file in (path, path.with_name(path.name.replace(".pem", ".json"))):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    metadata = json.loads(path.with_name(path.name.replace(".pem", ".json")).read_text())
    assert (metadata["tag"], metadata["flags"], metadata["role"], metadata["state"]) == (tag, 257, "csk", "active")
    assert gslb("check", "--zones", str(zones)).returncode == 0
    # A second CSK is for a rollover: published, not signing.
    assert keygen(zones)[1:3] == ("csk", "published")


def test_keygen_ksk_and_zsk_pair_both_start_active(tmp_path):
    zones = zones_dir(tmp_path)
    assert keygen(zones, "ksk")[1:3] == ("ksk", "active")
    assert keygen(zones, "zsk")[1:3] == ("zsk", "active")
    assert keygen(zones, "zsk")[1:3] == ("zsk", "published")
    assert gslb("check", "--zones", str(zones)).returncode == 0


def test_ds_prints_zone_file_lines_that_match_dnspython(tmp_path):
    zones = zones_dir(tmp_path)
    ksk = keygen(zones, "ksk")[0]
    keygen(zones, "zsk")
    result = gslb("dnssec", "ds", "--zones", str(zones), "signed.example.")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()  # the ZSK has no DS
    (key,) = [k for k in load_keys(zones / "keys" / "signed.example", ORIGIN) if k.tag == ksk]
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, key.dnskey_rdata, 0, len(key.dnskey_rdata))
    ds = dnssec.make_ds(dns.name.from_text("signed.example."), rdata, "SHA256")
    assert line == f"signed.example. IN DS {ksk} 13 2 {ds.digest.hex().upper()}"


def test_list_shows_every_key_of_every_signed_zone(tmp_path):
    zones = zones_dir(tmp_path)
    first = keygen(zones)[0]
    second = keygen(zones, "zsk")[0]
    result = gslb("dnssec", "list", "--zones", str(zones))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ZONE", "TAG", "ROLE", "FLAGS", "STATE", "CREATED", "CHANGED", "FILE"]
    assert [row.split()[:5] for row in rows] == [["signed.example.", str(first), "csk", "257", "active"],
                                                 ["signed.example.", str(second), "zsk", "256", "published"]]
    assert gslb("dnssec", "list", "--zones", str(zones), "signed.example").stdout == result.stdout


def test_rollover_commands_change_the_state_and_refuse_to_leave_nothing_signing(tmp_path):
    zones = zones_dir(tmp_path)
    old = keygen(zones)[0]
    new = keygen(zones)[0]
    directory = zones / "keys" / "signed.example"

    def states() -> dict[int, str]:
        return {k.tag: k.state for k in load_keys(directory, ORIGIN)}

    refused = gslb("dnssec", "retire", "--zones", str(zones), "signed.example", str(old))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"gslb dnssec retire: key {old} is the last active key signing the DNSKEY set "
                                      "(KSK or CSK) of signed.example.; activate its successor first")
    refused = gslb("dnssec", "remove", "--zones", str(zones), "signed.example", str(old))
    assert refused.returncode == 1 and "is the last active key" in refused.stderr
    activated = gslb("dnssec", "activate", "--zones", str(zones), "signed.example", str(new))
    assert activated.returncode == 0 and activated.stdout.split()[:3] == [str(new), "csk", "active"]
    assert "gslb reload" in activated.stderr
    # The running server watches the key files (gslb/reload.py): no manual reload is needed.
    assert "within a second (its poll interval), or at once on `gslb reload`" in activated.stderr, activated.stderr
    assert states() == {old: "active", new: "active"}
    refused = gslb("dnssec", "remove", "--zones", str(zones), "signed.example", str(old))
    assert refused.returncode == 1 and "is active; retire it first" in refused.stderr
    assert gslb("dnssec", "retire", "--zones", str(zones), "signed.example", str(old)).returncode == 0
    assert states() == {old: "retired", new: "active"}
    assert gslb("check", "--zones", str(zones)).returncode == 0
    assert gslb("dnssec", "remove", "--zones", str(zones), "signed.example", str(old)).returncode == 0
    assert states() == {new: "active"}
    assert sorted(p.name for p in directory.iterdir()) == [f"Ksigned.example.+013+{new:05d}.json",
                                                          f"Ksigned.example.+013+{new:05d}.pem"]
    # The ds command now gives only the new key.
    assert [line.split()[3] for line in gslb("dnssec", "ds", "--zones", str(zones), "signed.example").stdout.splitlines()] \
        == [str(new)]


def test_command_errors_are_one_line(tmp_path):
    zones = zones_dir(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "signed.yaml").write_text("origin: signed.example.\nrecords: {\n")
    cases = [
        (("keygen", "--zones", str(zones), "plain.example"),
         f"gslb dnssec keygen: {zones / 'plain.yaml'}: the zone has no dnssec: section; add one like "
         "`dnssec: {keys: keys/plain.example}` first"),
        (("keygen", "--zones", str(zones), "other.example"),
         f"gslb dnssec keygen: {zones}: no zone file with origin other.example."),
        (("keygen", "--zones", str(tmp_path / "nope"), "signed.example"),
         f"gslb dnssec keygen: {tmp_path / 'nope'}: zones directory not found; pass --zones DIR"),
        (("ds", "--zones", str(zones), "signed.example"),
         f"gslb dnssec ds: {zones / 'keys/signed.example'}: no published or active KSK/CSK for signed.example.; "
         "create one with `gslb dnssec keygen --zones DIR signed.example.`"),
        (("activate", "--zones", str(zones), "signed.example", "12345"),
         f"gslb dnssec activate: {zones / 'keys/signed.example'}: no key '12345' for signed.example.; its keys: none"),
        (("keygen", "--zones", str(tmp_path / "broken"), "signed.example"),
         f"gslb dnssec keygen: {tmp_path / 'broken'}: no zone file with origin signed.example. (1 file could not be "
         "read; see gslb check)"),
        (("keygen", "--zones", str(zones), "bad..name"),
         "gslb dnssec keygen: ZONE: 'bad..name' has an empty label"),
    ]
    for args, expected in cases:
        result = gslb("dnssec", *args)
        assert (result.returncode, result.stderr.strip()) == (1, expected), args


def test_keygen_over_a_group_readable_key_warns(tmp_path):
    zones = zones_dir(tmp_path)
    path = keygen(zones)[3]
    path.chmod(0o644)
    result = gslb("dnssec", "list", "--zones", str(zones))
    assert result.returncode == 0
    assert f"gslb dnssec: warning: {path}: private key readable by others (mode 0644); chmod 600 {path}" in result.stderr
