"""DNSSEC end to end: a validating unbound and delv, trusting only the DS that `gslb dnssec ds`
prints, must find every kind of answer gslb gives secure - static, GSLB per region (ECS through
unbound, two regions), CNAME chains, NXDOMAIN and NODATA by compact denial (RFC 9824), a DS
query at an unsigned delegation, and a GSLB answer after a health change moves it - and must
reject corrupted and expired signatures (the negative controls: a resolver that accepted
anything would pass the positive tests too).

The zone is tests/data/zones_dnssec/signed.example.yaml, copied with a key made by
`gslb dnssec keygen` for each run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

from conftest import StartServer
from dnssec_check import dnssec
from dnsserver import REPO, GslbProcess, gslb_command, rrset_texts, wait_for
from opsserver import write_atomically
from resolvers import DELV, UNBOUND, UdpProxy, run_unbound
from resolvers import delv as run_delv

DATA = Path(__file__).resolve().parent / "data"
ZONE = "signed.example."
CLOCK_SHIFT = Path(__file__).resolve().parent / "clockshift"  # sitecustomize: the server's clock set back

pytestmark = pytest.mark.skipif(not (Path(UNBOUND).exists() and Path(DELV).exists()),
                                reason="unbound and delv (bind9-dnsutils) are needed: apt-get install unbound bind9-dnsutils")


def gslb_cli(*args: str) -> str:
    result = subprocess.run(gslb_command(*args), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def signed_zones(base: Path, records: str = "") -> tuple[Path, list[str]]:
    """A zones directory holding signed.example. (plus `records`, YAML lines under records:) with
    a new key; (the directory, its DS lines)."""
    zones = base / "zones"
    zones.mkdir(parents=True)
    text = (DATA / "zones_dnssec" / "signed.example.yaml").read_text()
    (zones / "signed.example.yaml").write_text(text.replace("\nrecords:\n", "\nrecords:\n" + records, 1))
    gslb_cli("dnssec", "keygen", "--zones", str(zones), ZONE)
    ds = [line for line in gslb_cli("dnssec", "ds", "--zones", str(zones), ZONE).splitlines()
          if line.strip() and not line.startswith(";")]
    assert ds and all(" DS " in line for line in ds), ds
    return zones, ds


def anchors_file(path: Path, ds_lines: list[str]) -> Path:
    """A delv trust-anchors clause from zone-file DS lines (`owner IN DS tag alg digest-type hex`)."""
    entries = []
    for line in ds_lines:
        owner, _, _, tag, algorithm, digest_type, *digest = line.split()
        entries.append(f'    "{owner}" static-ds {tag} {algorithm} {digest_type} "{"".join(digest)}";')
    path.write_text("trust-anchors {\n" + "\n".join(entries) + "\n};\n")
    return path


def unbound_body(server_port: int, ds_lines: list[str], *, ecs: bool = True, tcp: bool = False) -> str:
    anchors = "\n".join(f'    trust-anchor: "{line}"' for line in ds_lines)
    subnet = """    send-client-subnet: 127.0.0.1
    client-subnet-always-forward: yes
    max-client-subnet-ipv4: 32
""" if ecs else ""
    modules = "subnetcache validator iterator" if ecs else "validator iterator"
    return f"""    verbosity: 1
    val-log-level: 2
    module-config: "{modules}"
{subnet}    qname-minimisation: no
    tcp-upstream: {"yes" if tcp else "no"}
    local-zone: "{ZONE}" transparent
{anchors}
stub-zone:
    name: "{ZONE}"
    stub-addr: 127.0.0.1@{server_port}
"""


@dataclass
class World:
    server: GslbProcess
    zones: Path
    ds: list[str]
    anchors: Path
    external: Path
    base: Path


@pytest.fixture(scope="module")
def world(start_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("dnssec")
    zones, ds = signed_zones(base)
    external = base / "ext.txt"
    external.write_text("# the monitoring system's verdicts\n")
    config = base / "gslb.yaml"
    config.write_text("external_health: {file: ext.txt, poll_interval: 100ms}\n")
    server = start_server(zones, probe_name=ZONE, config=config, extra=["--state", str(base / "state.yaml")])
    return World(server, zones, ds, anchors_file(base / "anchors.conf", ds), external, base)


@pytest.fixture(scope="module")
def unbound(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with run_unbound(tmp_path_factory.mktemp("unbound"), unbound_body(world.server.port, world.ds), ZONE) as port:
        yield port


def ask(port: int, name: str, rdtype: str = "A", subnet: str | None = None, tcp: bool = False) -> dns.message.Message:
    options = []
    if subnet is not None:
        address, prefix = subnet.split("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    query = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True, options=options)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=10)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=10)


def secure(reply: dns.message.Message) -> bool:
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.flags & dns.flags.AD)


# -- unbound ------------------------------------------------------------------------------------

def test_unbound_validates_static_answers(unbound: int) -> None:
    reply = ask(unbound, f"static.{ZONE}")
    assert secure(reply), reply
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.1"}
    reply = ask(unbound, f"text.{ZONE}", "TXT")
    assert secure(reply) and rrset_texts(reply.answer, rdtype="TXT") == {'"signed text"'}
    reply = ask(unbound, ZONE, "DNSKEY")
    assert secure(reply) and rrset_texts(reply.answer, rdtype="DNSKEY")


def test_unbound_validates_gslb_answers_for_clients_in_two_regions(unbound: int) -> None:
    eu = ask(unbound, f"www.{ZONE}", subnet="10.1.2.0/24")
    us = ask(unbound, f"www.{ZONE}", subnet="10.2.3.0/24")
    assert secure(eu) and rrset_texts(eu.answer, rdtype="A") == {"203.0.113.10"}
    assert secure(us) and rrset_texts(us.answer, rdtype="A") == {"198.51.100.10"}
    both = ask(unbound, f"both.{ZONE}", subnet="10.1.2.0/24")
    assert secure(both) and rrset_texts(both.answer, rdtype="A") == {"203.0.113.21", "203.0.113.22"}


def test_unbound_validates_cname_chains(unbound: int) -> None:
    reply = ask(unbound, f"alias.{ZONE}")
    assert secure(reply)
    assert rrset_texts(reply.answer, rdtype="A") == {"192.0.2.1"}
    assert len(rrset_texts(reply.answer, rdtype="CNAME")) == 2
    geo = ask(unbound, f"geo-alias.{ZONE}", subnet="10.1.9.0/24")
    assert secure(geo) and rrset_texts(geo.answer, rdtype="A") == {"203.0.113.10"}


def test_unbound_validates_compact_denial_of_a_missing_name(unbound: int) -> None:
    # RFC 9824: the name's absence is proven as NODATA (NXNAME in the NSEC bitmap), so a
    # validator reports NOERROR with no answer, securely.
    reply = ask(unbound, f"nope.{ZONE}")
    assert secure(reply) and not reply.answer, reply
    lost = ask(unbound, f"lost.{ZONE}")  # a CNAME to a missing name
    assert secure(lost) and rrset_texts(lost.answer, rdtype="CNAME") == {f"missing.{ZONE}"}
    assert not rrset_texts(lost.answer, rdtype="A")


def test_unbound_validates_nodata(unbound: int) -> None:
    for name, rdtype in ((f"static.{ZONE}", "AAAA"), (f"b.{ZONE}", "A"), (f"www.{ZONE}", "TXT"),
                         (ZONE, "A"), (f"deleg.{ZONE}", "DS")):
        reply = ask(unbound, name, rdtype)
        assert secure(reply) and not reply.answer, (name, rdtype, reply)


def test_unbound_validates_the_answer_after_a_health_change_moves_it(world: World, unbound: int) -> None:
    # `hw` has a 1 s TTL, so unbound asks gslb again soon after the answer moves.
    assert rrset_texts(ask(unbound, f"hw.{ZONE}", subnet="10.1.4.0/24").answer, rdtype="A") == {"203.0.113.30"}
    write_atomically(world.external, "203.0.113.30: down\n")
    try:
        moved = wait_for(lambda: (reply := ask(unbound, f"hw.{ZONE}", subnet="10.1.4.0/24"))
                         and rrset_texts(reply.answer, rdtype="A") == {"198.51.100.30"} and reply, 10,
                         "the eu client moved to us-east")
        assert secure(moved), moved
    finally:
        write_atomically(world.external, "# all up\n")


def test_a_gslb_record_with_every_endpoint_forced_down_is_a_validated_nodata(world: World, unbound: int) -> None:
    # when_all_down: all serves every endpoint but those forced down: with both forced down there
    # is nothing to answer, and the reply must be a NODATA a validator can prove (SOA + NSEC
    # without the A bit), not an empty NOERROR it cannot.
    state = world.base / "state.yaml"  # the admin overrides: `down` there is an operator's, forced
    write_atomically(state, "203.0.113.30: down\n198.51.100.30: down\n")
    try:
        direct = wait_for(lambda: (reply := world.server.query(f"hw.{ZONE}", "A", use_edns=0, want_dnssec=True))
                          and not reply.answer and reply, 10, "hw has nothing to answer")
        assert direct.rcode() == dns.rcode.NOERROR
        assert any(rrset.rdtype == dns.rdatatype.SOA for rrset in direct.authority), direct
        plain = world.server.query(f"hw.{ZONE}", "A")
        assert not plain.answer and any(rrset.rdtype == dns.rdatatype.SOA for rrset in plain.authority), plain
        reply = wait_for(lambda: (r := ask(unbound, f"hw.{ZONE}")) and not r.answer and r, 10,
                         "unbound sees the empty answer")
        assert reply.rcode() == dns.rcode.NOERROR and secure(reply), reply
    finally:
        write_atomically(state, "{}\n")


def test_unbound_answers_over_tcp_to_a_client_and_gslb(world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    body = unbound_body(world.server.port, world.ds, ecs=False, tcp=True)
    with run_unbound(tmp_path_factory.mktemp("unbound-tcp"), body, ZONE) as port:
        for name, rdtype in ((f"static.{ZONE}", "A"), (f"nope.{ZONE}", "A"), (f"big.{ZONE}", "A")):
            reply = ask(port, name, rdtype, tcp=True)
            assert secure(reply), (name, reply)
        assert len(rrset_texts(ask(port, f"big.{ZONE}", tcp=True).answer, rdtype="A")) == 70


def delv(world: World, name: str, rdtype: str, *extra: str, port: int | None = None,
         anchors: Path | None = None) -> str:
    """delv's output for `name`, asking gslb (or `port`) and trusting the zone's DS (or `anchors`)."""
    return run_delv(port if port is not None else world.server.port, anchors or world.anchors, ZONE, name, rdtype,
                    *extra)


# -- delv ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,rdtype,expected", [
    (f"static.{ZONE}", "A", "192.0.2.1"),
    (f"www.{ZONE}", "A", "198.51.100.10"),  # delv asks from 127.0.0.1: us-east
    (f"alias.{ZONE}", "A", "192.0.2.1"),
    (f"text.{ZONE}", "TXT", '"signed text"'),
    (ZONE, "DNSKEY", "257 3 13"),
])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_delv_fully_validates_answers(world: World, name: str, rdtype: str, expected: str, transport: str) -> None:
    extra = ("+tcp",) if transport == "tcp" else ()
    output = delv(world, name, rdtype, *extra)
    assert "; fully validated" in output and expected in output, output


def test_delv_validates_answers_from_the_second_region_by_source_address(world: World) -> None:
    # 127.0.0.2 is placed in eu by the zone's subnet rules.
    output = delv(world, f"www.{ZONE}", "A", "-b", "127.0.0.2")
    assert "; fully validated" in output and "203.0.113.10" in output, output


@pytest.mark.parametrize("name,rdtype,proof", [
    (f"nope.{ZONE}", "A", "; negative response, fully validated"),
    (f"static.{ZONE}", "AAAA", "; negative response, fully validated"),
    (f"b.{ZONE}", "A", "; negative response, fully validated"),
    (f"deleg.{ZONE}", "DS", "; negative response, fully validated"),
])
def test_delv_validates_negative_answers(world: World, name: str, rdtype: str, proof: str) -> None:
    output = delv(world, name, rdtype)
    assert proof in output, output


# -- negative controls --------------------------------------------------------------------------

def flip_a_signature_byte(reply: bytes) -> bytes:
    """Corrupt the RRSIG over the A RRset of every reply that carries one."""
    message = dns.message.from_wire(reply)
    for rrset in message.answer:
        if rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == dns.rdatatype.A:
            changed = [rdata.replace(signature=rdata.signature[:10] + bytes((rdata.signature[10] ^ 0x01,))
                                     + rdata.signature[11:]) for rdata in rrset]
            rrset.clear()
            for rdata in changed:
                rrset.add(rdata)
    return message.to_wire()


def test_resolvers_reject_a_corrupted_signature(world: World, tmp_path_factory: pytest.TempPathFactory) -> None:
    proxy = UdpProxy(("127.0.0.1", world.server.port), flip_a_signature_byte)
    try:
        directory = tmp_path_factory.mktemp("unbound-tampered")
        with run_unbound(directory, unbound_body(proxy.port, world.ds, ecs=False), ZONE) as port:
            assert ask(port, f"static.{ZONE}").rcode() == dns.rcode.SERVFAIL
            assert secure(ask(port, f"text.{ZONE}", "TXT"))  # only the corrupted RRset is bogus
        log = (directory / "unbound.log").read_text()
        assert f"validation failure <static.{ZONE} A IN>" in log and "signature crypto failed" in log, log
        output = delv(world, f"static.{ZONE}", "A", port=proxy.port)
        assert "resolution failed: RRSIG failed to verify" in output, output
        assert "; fully validated" in delv(world, f"text.{ZONE}", "TXT", port=proxy.port)
    finally:
        proxy.close()


def test_resolvers_reject_a_key_the_parent_does_not_vouch_for(world: World, tmp_path: Path) -> None:
    _, other_ds = signed_zones(tmp_path / "other")
    output = delv(world, f"static.{ZONE}", "A", anchors=anchors_file(tmp_path / "a.conf", other_ds))
    assert "no valid signature found (DS)" in output and "resolution failed: broken trust chain" in output, output


@pytest.fixture(scope="module")
def past_server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GslbProcess]:
    """The same zone and key, served by a gslb whose clock runs 30 days behind: every signature
    it makes expired weeks ago."""
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "GSLB_TEST_CLOCK_SHIFT")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLOCK_SHIFT), saved["PYTHONPATH"]]))
    os.environ["GSLB_TEST_CLOCK_SHIFT"] = str(-30 * 86400)
    try:
        server = GslbProcess.start(world.zones, log_dir=tmp_path_factory.mktemp("past-logs"), probe_name=ZONE)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield server
    server.stop()


def test_resolvers_reject_expired_signatures(world: World, past_server: GslbProcess,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    direct = ask(past_server.port, f"static.{ZONE}")
    expirations = [r.expiration for rrset in direct.answer if rrset.rdtype == dns.rdatatype.RRSIG for r in rrset]
    assert expirations and all(e < time.time() for e in expirations), direct
    directory = tmp_path_factory.mktemp("unbound-expired")
    with run_unbound(directory, unbound_body(past_server.port, world.ds, ecs=False), ZONE) as port:
        assert ask(port, f"static.{ZONE}").rcode() == dns.rcode.SERVFAIL
    log = (directory / "unbound.log").read_text()
    assert "validation failure" in log and "expired" in log, log
    output = delv(world, f"static.{ZONE}", "A", port=past_server.port)
    assert "RRSIG has expired" in output and "resolution failed" in output, output


# -- key rollover -------------------------------------------------------------------------------

ROLL = "roll.example."
ROLL_ZONE = f"""origin: {ROLL}
ttl: 1
soa: {{mname: ns1.{ROLL}, rname: hostmaster.{ROLL}, serial: 1, minimum: 1}}
ns: [ns1.{ROLL}]
dnssec: {{keys: keys, dnskey_ttl: 1}}
subnets: {{127.0.0.0/8: here}}
regions: {{here: {{location: [0, 0]}}}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  static: {{type: A, value: 192.0.2.1}}
  www: {{type: A, ttl: 1, pools: {{here: [192.0.2.80]}}}}
"""


def keygen(zones: Path, role: str) -> int:
    return int(gslb_cli("dnssec", "keygen", "--zones", str(zones), ROLL, "--role", role).split()[0])


def key_tag(dnskey: dns.rdata.Rdata) -> int:
    return int(dnssec.key_id(dnskey))


def roll_key_tags(port: int) -> tuple[set[int], set[int]]:
    """(the tags of the DNSKEY set served, the tags that signed static's A) straight from gslb."""
    keys = ask(port, ROLL, "DNSKEY")
    answer = ask(port, f"static.{ROLL}")
    tags = {key_tag(r) for rrset in keys.answer if rrset.rdtype == dns.rdatatype.DNSKEY for r in rrset}
    signers = {r.key_tag for rrset in answer.answer if rrset.rdtype == dns.rdatatype.RRSIG for r in rrset}
    return tags, signers


def roll_zones(tmp_path: Path) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "roll.example.yaml").write_text(ROLL_ZONE)
    return zones


def roll_ds(zones: Path, *tags: int) -> list[str]:
    """`gslb dnssec ds`'s lines for the keys `tags` (the DS set the parent holds), in that order."""
    lines = {int(line.split()[3]): line for line in gslb_cli("dnssec", "ds", "--zones", str(zones), ROLL).splitlines()
             if " DS " in line}
    return [lines[tag] for tag in tags]


def roll_unbound(directory: Path, server: GslbProcess, ds: list[str]) -> AbstractContextManager[int]:
    """A validating unbound whose trust anchor is `ds`: the DS set the parent serves."""
    directory.mkdir()
    return run_unbound(directory, unbound_body(server.port, ds, ecs=False).replace(ZONE, ROLL), ROLL)


def keeps_validating(server: GslbProcess, port: int, keys: set[int], signers: set[int]) -> None:
    """Reload gslb, wait until it serves the DNSKEY tags `keys` with static's A signed by
    `signers`, then keep asking unbound at `port` for longer than every TTL (1 s), so that it
    refetches meanwhile: a static and a GSLB name, a missing one and the DNSKEY set stay secure."""
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: roll_key_tags(server.port) == (keys, signers), 15,
             f"gslb to serve keys {keys} signed by {signers}")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        for name, rdtype in ((f"static.{ROLL}", "A"), (f"www.{ROLL}", "A"), (f"nope.{ROLL}", "A"), (ROLL, "DNSKEY")):
            reply = ask(port, name, rdtype)
            assert secure(reply), (keys, signers, name, rdtype, reply)


def test_unbound_keeps_validating_through_a_zsk_pre_publish_rollover(start_server: StartServer,
                                                                     tmp_path: Path) -> None:
    """docs/dnssec.md's ZSK pre-publish, with 1 s TTLs so each wait is short: after every step
    (and reload), unbound - which cached the step before - must answer securely throughout."""
    zones = roll_zones(tmp_path)
    ksk, old = keygen(zones, "ksk"), keygen(zones, "zsk")
    server = start_server(zones, probe_name=ROLL)
    with roll_unbound(tmp_path / "unbound", server, roll_ds(zones, ksk)) as port:
        assert secure(ask(port, f"static.{ROLL}"))
        new = keygen(zones, "zsk")  # 1. publish the new ZSK
        keeps_validating(server, port, {ksk, old, new}, {old})
        gslb_cli("dnssec", "activate", "--zones", str(zones), ROLL, str(new))  # 2. it signs, the old one retires
        gslb_cli("dnssec", "retire", "--zones", str(zones), ROLL, str(old))
        keeps_validating(server, port, {ksk, old, new}, {new})
        gslb_cli("dnssec", "remove", "--zones", str(zones), ROLL, str(old))  # 3. the old one goes
        keeps_validating(server, port, {ksk, new}, {new})


def cds_tags(port: int) -> set[int]:
    return {r.key_tag for rrset in ask(port, ROLL, "CDS").answer if rrset.rdtype == dns.rdatatype.CDS for r in rrset}


def test_unbound_keeps_validating_through_a_csk_double_signature_rollover(start_server: StartServer,
                                                                          tmp_path: Path) -> None:
    """docs/dnssec.md's KSK or CSK double signature, with a CSK and 1 s TTLs. The parent's DS set
    at each step is the trust anchor of a fresh unbound; an unbound kept running across a step
    (with what it cached before) must keep answering securely too."""
    zones = roll_zones(tmp_path)
    old = keygen(zones, "csk")
    old_ds = roll_ds(zones, old)
    server = start_server(zones, probe_name=ROLL)
    with roll_unbound(tmp_path / "parent-old", server, old_ds) as port:
        keeps_validating(server, port, {old}, {old})
        # 1. The new CSK: published by keygen (the server may load that state before the
        # activate; it signs nothing yet), then active: both keys sign everything.
        new = keygen(zones, "csk")
        keeps_validating(server, port, {old, new}, {old})
        gslb_cli("dnssec", "activate", "--zones", str(zones), ROLL, str(new))
        keeps_validating(server, port, {old, new}, {old, new})
        assert cds_tags(server.port) == {old, new}
    # 2. The parent's DS changes to NEW's; during the DS TTL a resolver holds either set, or
    # both if the parent added NEW's before it dropped OLD's. Each validates.
    with roll_unbound(tmp_path / "parent-both", server, roll_ds(zones, old, new)) as port:
        keeps_validating(server, port, {old, new}, {old, new})
    with roll_unbound(tmp_path / "parent-new", server, roll_ds(zones, new)) as port:
        keeps_validating(server, port, {old, new}, {old, new})
        # 3. The old key stops signing (it stays published); CDS lists NEW only.
        gslb_cli("dnssec", "retire", "--zones", str(zones), ROLL, str(old))
        keeps_validating(server, port, {old, new}, {new})
        assert cds_tags(server.port) == {new}
        # The negative control: a resolver still trusting only OLD's DS (step 2's wait cut
        # short) now fails, so it is the anchors that made the answers above secure.
        with roll_unbound(tmp_path / "parent-stale", server, old_ds) as stale:
            assert ask(stale, f"static.{ROLL}").rcode() == dns.rcode.SERVFAIL
        # 4. The old key goes.
        gslb_cli("dnssec", "remove", "--zones", str(zones), ROLL, str(old))
        keeps_validating(server, port, {new}, {new})


# -- wildcards ----------------------------------------------------------------------------------

WILD_RECORDS = """  "*.apps": {type: A, value: 192.0.2.77}
  "*.geo": {type: A, pools: {eu: [203.0.113.70], us-east: [198.51.100.70]}}
"""


@pytest.fixture(scope="module")
def wild(start_server: StartServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    """signed.example. with a static and a GSLB wildcard."""
    base = tmp_path_factory.mktemp("dnssec-wild")
    zones, ds = signed_zones(base, WILD_RECORDS)
    check = subprocess.run(gslb_command("check", "--zones", str(zones)), cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    server = start_server(zones, probe_name=ZONE)
    return World(server, zones, ds, anchors_file(base / "anchors.conf", ds), base / "none", base)


def test_delv_validates_wildcard_answers_signed_as_the_names_asked(wild: World) -> None:
    # Online signing signs a synthesised RRset under the name asked (RRSIG labels = its own
    # count), so no wildcard proof is needed; a GSLB wildcard answers per region.
    for name, extra, expected in ((f"x.apps.{ZONE}", (), "192.0.2.77"), (f"Y.z.apps.{ZONE}", ("+tcp",), "192.0.2.77"),
                                  (f"shop.geo.{ZONE}", (), "198.51.100.70"),
                                  (f"shop.geo.{ZONE}", ("-b", "127.0.0.2"), "203.0.113.70")):
        output = delv(wild, name, "A", *extra)
        assert "; fully validated" in output and expected in output, (name, output)
    output = delv(wild, f"x.apps.{ZONE}", "TXT")
    assert "; negative response, fully validated" in output, output


def test_nodata_at_a_synthesised_name_lists_the_wildcards_types_not_nxname(wild: World) -> None:
    reply = ask(wild.server.port, f"x.apps.{ZONE}", "TXT")
    nsec = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.NSEC]
    assert reply.rcode() == dns.rcode.NOERROR and len(nsec) == 1
    assert "A RRSIG NSEC" in nsec[0][0].to_text() and "TYPE128" not in nsec[0][0].to_text(), nsec[0]


def test_unbound_validates_a_gslb_wildcard_for_clients_in_two_regions(wild: World,
                                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    with run_unbound(tmp_path_factory.mktemp("unbound-wild"), unbound_body(wild.server.port, wild.ds), ZONE) as port:
        eu = ask(port, f"shop.geo.{ZONE}", subnet="10.1.2.0/24")
        us = ask(port, f"shop.geo.{ZONE}", subnet="10.2.3.0/24")
        assert secure(eu) and rrset_texts(eu.answer, rdtype="A") == {"203.0.113.70"}
        assert secure(us) and rrset_texts(us.answer, rdtype="A") == {"198.51.100.70"}
