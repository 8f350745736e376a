"""A key change reaches the running server by itself: `gslb dnssec keygen`, `activate` and a broken
key file, against a real `gslb serve` (and `--workers 2`), with no `gslb reload` in between.

The server watches the signed zones' key files like the zone files (gslb/reload.py): a ZSK
published by `keygen` joins the DNSKEY set a DO query gets, `activate` makes it sign, and a key
metadata file that is not valid JSON fails the reload with one line naming the file while the last
good key set keeps serving. Answers are read and checked with dnspython, not gslb's own code.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from conftest import StartServer
from dnssec_check import dnssec
from dnsserver import REPO, GslbProcess, gslb_command, wait_for
from opsserver import write_atomically
from test_workers_e2e import wait_for_both_processes

DATA = Path(__file__).resolve().parent / "data"
ZONE = "signed.example."
ORIGIN = dns.name.from_text(ZONE)
STATIC = dns.name.from_text(f"static.{ZONE}")
RELOADED = 30  # seconds: a 1 s poll, the settle time and a build, on a loaded machine


def gslb_cli(*args: str) -> str:
    result = subprocess.run(gslb_command(*args), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def dnssec_command(zones: Path, action: str, *args: str) -> int:
    """`gslb dnssec ACTION --zones ZONES signed.example. ARGS...`; the key tag it printed."""
    out = gslb_cli("dnssec", action, "--zones", str(zones), ZONE, *args)
    return int(out.split()[0])


@dataclass(frozen=True)
class Served:
    """What one DO query for the DNSKEY set and one for `static` A got, by key tag."""

    dnskeys: frozenset[int]  # the DNSKEY set
    signers: frozenset[int]  # the keys whose RRSIGs cover static A


def ask_do(server: GslbProcess, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
    """One DO query from a fresh socket: a new source port, so with --workers either process."""
    query = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True, payload=4096)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query.to_wire(), (server.host, server.port))
        return dns.message.from_wire(sock.recvfrom(65535)[0])


def served(server: GslbProcess, *, validate: bool = True) -> Served:
    keys = ask_do(server, ORIGIN, dns.rdatatype.DNSKEY)
    dnskeys = keys.get_rrset(keys.answer, ORIGIN, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    data = ask_do(server, STATIC, dns.rdatatype.A)
    static = data.find_rrset(data.answer, STATIC, dns.rdataclass.IN, dns.rdatatype.A)
    sigs = data.get_rrset(data.answer, STATIC, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.A)
    if dnskeys is None or sigs is None:
        return Served(frozenset(dnssec.key_id(key) for key in dnskeys or ()), frozenset(sig.key_tag for sig in sigs or ()))
    if validate:  # both answers from one process: every signature verifies with the served keys
        key_sigs = keys.find_rrset(keys.answer, ORIGIN, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
        dnssec.validate(dnskeys, key_sigs, {ORIGIN: dnskeys})
        for sig in sigs:
            one = dns.rrset.from_rdata(STATIC, sigs.ttl, sig)
            dnssec.validate(static, one, {ORIGIN: dnskeys})
    return Served(frozenset(dnssec.key_id(key) for key in dnskeys), frozenset(sig.key_tag for sig in sigs))


def signed_zones(base: Path) -> tuple[Path, int]:
    """A zones directory holding signed.example. with one active CSK; (the directory, its tag)."""
    zones = base / "zones"
    zones.mkdir(parents=True)
    (zones / "signed.example.yaml").write_text((DATA / "zones_dnssec" / "signed.example.yaml").read_text())
    return zones, dnssec_command(zones, "keygen")


def key_metadata(zones: Path, tag: int) -> Path:
    return zones / "keys" / f"K{ZONE}+013+{tag:05d}.json"


def error_lines(server: GslbProcess, text: str) -> list[str]:
    return [line for line in server.stderr_text().splitlines() if text in line and " ERROR " in line]


def walk_a_zsk_rollover_step_by_step(server: GslbProcess, zones: Path, csk: int, *, answers: int) -> None:
    """keygen (published) -> activate -> a broken metadata file, each seen by every process that
    answers (`answers` DO queries per look, each from a fresh socket)."""

    def everywhere(want: Served) -> bool:
        return all(served(server, validate=answers == 1) == want for _ in range(answers))

    assert everywhere(Served(frozenset({csk}), frozenset({csk})))
    zsk = dnssec_command(zones, "keygen", "--role", "zsk")  # published: in the DNSKEY set, signs nothing
    published = Served(frozenset({csk, zsk}), frozenset({csk}))
    wait_for(lambda: everywhere(published), RELOADED, f"the published ZSK {zsk} in the DNSKEY set, without a reload")

    dnssec_command(zones, "activate", str(zsk))
    active = Served(frozenset({csk, zsk}), frozenset({csk, zsk}))
    wait_for(lambda: everywhere(active), RELOADED, f"RRSIGs by the activated ZSK {zsk}, without a reload")

    broken = key_metadata(zones, zsk)
    write_atomically(broken, "{not json\n")
    lines = wait_for(lambda: error_lines(server, str(broken)), RELOADED, f"the reload to fail on {broken}")
    assert any("not valid JSON" in line for line in lines), lines
    failed = wait_for(lambda: error_lines(server, "reload ("), RELOADED, "the reload's summary line")
    assert any(f"key {broken} modified" in line and "still serving" in line for line in failed), failed
    assert server.alive()
    assert everywhere(active)  # the last good key set, and its signatures
    stderr = server.stderr_text()
    assert "Traceback" not in stderr, stderr


def test_key_changes_are_served_without_a_reload(start_server: StartServer, tmp_path: Path) -> None:
    zones, csk = signed_zones(tmp_path)
    server = start_server(zones, probe_name=ZONE, extra=["--api", "off"])
    walk_a_zsk_rollover_step_by_step(server, zones, csk, answers=1)


def test_every_worker_serves_the_new_key_set(start_server: StartServer, tmp_path: Path) -> None:
    zones, csk = signed_zones(tmp_path)
    server = start_server(zones, probe_name=ZONE, extra=["--api", "off", "--workers", "2"])
    wait_for_both_processes(server)
    # 20 fresh source ports per look: the kernel spreads them over both processes' sockets.
    walk_a_zsk_rollover_step_by_step(server, zones, csk, answers=20)
    assert not error_lines(server, "not taken"), server.stderr_text()


def test_a_zone_signed_while_serving_loads_once_its_first_key_is_made(start_server: StartServer, tmp_path: Path) -> None:
    """`dnssec:` added to a served zone fails its reload until the key exists (keygen needs the
    section first); the watcher then also watches the directory the zone file names, so the
    keygen that follows is served without a reload."""
    zones = tmp_path / "zones"
    zones.mkdir()
    signed = (DATA / "zones_dnssec" / "signed.example.yaml").read_text()
    unsigned = signed.replace("dnssec: {keys: keys}\n", "")
    assert unsigned != signed
    (zones / "signed.example.yaml").write_text(unsigned)
    server = start_server(zones, probe_name=ZONE, extra=["--api", "off"])
    reply = ask_do(server, ORIGIN, dns.rdatatype.DNSKEY)
    assert not reply.answer
    write_atomically(zones / "signed.example.yaml", signed)
    lines = wait_for(lambda: error_lines(server, "key directory not found"), RELOADED, "the reload to want keys")
    assert all(str(zones / "keys") in line for line in lines), lines
    csk = dnssec_command(zones, "keygen")
    wait_for(lambda: served(server) == Served(frozenset({csk}), frozenset({csk})), RELOADED,
             f"the new key {csk} served, without a reload")
    # One failed reload (the zone file's), not a second one for watching the still empty directory.
    assert len(error_lines(server, "reload (")) == 1, server.stderr_text()


def test_a_worker_refuses_a_generation_whose_key_files_changed(tmp_path: Path) -> None:
    """The worker's side of the handshake: generation N names the key files' signatures too, so a
    key changed after the main process read it keeps the worker on what it serves."""
    from dnsserver import TEST_GEOIP
    from gslb.build import build
    from gslb.reload import Files, served_key_dirs
    from gslb.settings import ServerSettings
    from gslb.workers import Ready, Worker

    zones, csk = signed_zones(tmp_path)
    settings = ServerSettings(zones=zones, geoip=TEST_GEOIP)
    loaded, problems = build(settings)
    assert loaded is not None, problems
    key_dirs = served_key_dirs(loaded.catalog)
    assert key_dirs == (str(zones / "keys"),)
    validated = Files.look(zones, TEST_GEOIP, None, key_dirs)
    assert set(validated.keys) == {str(key_metadata(zones, csk)), str(key_metadata(zones, csk).with_suffix(".pem"))}
    worker = Worker(settings, None, Ready(1, validated))  # type: ignore[arg-type]
    assert worker._build(Ready(2, validated))[0] is not None
    zsk = dnssec_command(zones, "keygen", "--role", "zsk")
    loaded, why = worker._build(Ready(3, validated))
    assert loaded is None
    assert why == ("the files changed since the main process read them "
                   f"(key {key_metadata(zones, zsk)} added, key {key_metadata(zones, zsk).with_suffix('.pem')} added)")
    # A generation whose zones read a key directory the main process did not sign: not taken.
    unsigned = Files.look(zones, TEST_GEOIP)
    loaded, why = worker._build(Ready(4, unsigned))
    assert loaded is None and why.startswith(f"key directory {zones / 'keys'} not among the files"), why
    assert worker._build(Ready(5, Files.look(zones, TEST_GEOIP, None, key_dirs)))[0] is not None


@pytest.mark.parametrize("name", ["Ksigned.example.+013+00001.json", "Ksigned.example.+013+00001.pem"])
def test_key_files_are_watched_but_not_temporaries_or_subfolders(tmp_path: Path, name: str) -> None:
    from gslb.reload import key_file_signatures

    keys = tmp_path / "keys"
    (keys / "sub").mkdir(parents=True)
    (keys / name).write_text("x")
    (keys / f".{name}.123.tmp").write_text("x")
    (keys / "sub" / name).write_text("x")
    (keys / "README").write_text("x")
    assert list(key_file_signatures((str(keys), str(tmp_path / "missing")))) == [str(keys / name)]
