"""Wildcard owners in zone YAML (RFC 4592): what `gslb check` accepts, and every mistake refused
with its file and key path, one line each - and the name tree the loader builds for them
(`Zone.find`: closest encloser, source of synthesis, empty non-terminals)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dnsserver import TEST_GEOIP, gslb_command
from gslb.config.problems import Problems
from gslb.config.yamlload import load_yaml
from gslb.config.zonefile import ZoneBuilder
from gslb.names import NameError_, parse_absolute, parse_owner
from gslb.zone import Found, Node, Zone

HEAD = """origin: w.test.
ttl: 300
soa: {mname: ns1.w.test., rname: hostmaster.w.test., serial: 1}
ns: [ns1.w.test.]
regions:
  eu: {location: [50.11, 8.68]}
records:
  ns1: {type: A, value: 192.0.2.53}
"""

BAD = HEAD + """  a.*.b: {type: A, value: 192.0.2.1}
  "x*": {type: A, value: 192.0.2.2}
  "*.sub": {type: NS, value: ns1.w.test.}
  deleg: {type: NS, value: ns.example.net.}
  "*.deleg": {type: A, value: 192.0.2.3}
  "*.x.deleg": {type: A, policy: all, pools: {eu: [192.0.2.4]}}
  "*.loop": {type: CNAME, value: me.loop.w.test.}
  "*.ping": {type: CNAME, value: a.pong.w.test.}
  "*.pong": {type: CNAME, value: b.ping.w.test.}
  "*.w.test.": {type: MX, value: "10 *.w.test."}
"""

EXPECTED = [
    ("records.a.*.b", "'a.*.b': '*' is a wildcard only as the leftmost label, like '*.apps'"),
    ("records.x*", "'x*': label 'x*' holds '*'; a wildcard is a whole leftmost label '*', like '*.apps'"),
    ("records.*.sub", "NS cannot stand at a wildcard name (RFC 4592 section 4.2)"),
    ("records.*.deleg", "a wildcard cannot stand below the delegation deleg.w.test."),
    ("records.*.x.deleg", "a GSLB record cannot stand at or below a delegation"),
    ("records.*.loop", "CNAME loop *.loop.w.test. -> *.loop.w.test."),
    ("records.*.ping", "CNAME loop *.ping.w.test. -> *.pong.w.test. -> *.ping.w.test."),
    ("records.*.w.test..value", "'*.w.test': '*' is a wildcard only as the leftmost label of a record's owner name"),
]


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "w.test.yaml").write_text(text)
    return subprocess.run(gslb_command("check", "--zones", str(tmp_path), "--geoip", str(TEST_GEOIP)),
                          capture_output=True, text=True, timeout=30)


def test_check_refuses_each_wildcard_mistake_with_its_key_path(tmp_path: Path) -> None:
    result = check(tmp_path, BAD)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("gslb: ")]
    file = tmp_path / "w.test.yaml"
    for path, message in EXPECTED:
        start = f"{file}: {path}: {message}"
        assert any(line.startswith(start) for line in lines), f"missing {start!r} in:\n{result.stderr}"
    assert len(lines) == len(EXPECTED), result.stderr


def test_check_accepts_static_gslb_cname_and_apex_wildcards(tmp_path: Path) -> None:
    result = check(tmp_path, HEAD + """  "*": {type: TXT, value: apex}
  "*.apps": [{type: A, value: 192.0.2.80}, {type: TXT, value: hi}]
  "*.geo": {type: A, policy: all, pools: {eu: [192.0.2.81]}}
  "*.alias": {type: CNAME, value: ns1.w.test.}
  "*.abs.w.test.": {type: AAAA, value: "2001:db8::1"}
  "*.chain": {type: CNAME, value: x.apps.w.test.}
""")
    assert result.returncode == 0, result.stderr
    assert "1 zone OK" in result.stderr + result.stdout


@pytest.mark.parametrize("text", ["*.www.example.", "a.*.example.", "x*.example."])
def test_only_owner_names_may_be_wildcards(text: str) -> None:
    with pytest.raises(NameError_, match=r"'\*'"):
        parse_absolute(text)


def test_owner_names_take_a_leftmost_star() -> None:
    origin = (b"w", b"test")
    assert parse_owner("*", origin) == (b"*", b"w", b"test")
    assert parse_owner("*.Apps", origin) == (b"*", b"apps", b"w", b"test")
    assert parse_owner("*.apps.w.test.", origin) == (b"*", b"apps", b"w", b"test")


# -- the name tree --------------------------------------------------------------------------------

def zone_of(tmp_path: Path, records: str) -> Zone:
    file = tmp_path / "z.yaml"
    file.write_text(HEAD + records)
    problems = Problems(str(file))
    zone = ZoneBuilder(str(file), load_yaml(file, problems, 1 << 20), problems).build()
    assert zone is not None, list(problems)
    return zone


def name(text: str) -> tuple[bytes, ...]:
    return parse_absolute(text, wildcard=True)


def test_find_follows_rfc_4592s_closest_encloser(tmp_path: Path) -> None:
    zone = zone_of(tmp_path, """  "*.apps": {type: A, value: 192.0.2.80}
  x.y.apps: {type: A, value: 192.0.2.81}
  "*": {type: TXT, value: apex}
""")
    star_apps = zone.nodes[name("*.apps.w.test.")]
    star_apex = zone.nodes[name("*.w.test.")]
    assert dict(zone.wildcards) == {name("apps.w.test."): star_apps, name("w.test."): star_apex}

    def found(text: str) -> tuple[Found, Node | None]:
        # As a question's name, not as a record owner: a '*' label may stand anywhere.
        kind, where = zone.find(tuple(label.encode() for label in text.split(".")[:-1]))
        assert where is None or isinstance(where, Node)
        return kind, where

    assert found("a.apps.w.test.") == (Found.WILDCARD, star_apps)
    assert found("a.b.c.apps.w.test.") == (Found.WILDCARD, star_apps)
    assert found("*.apps.w.test.") == (Found.NODE, star_apps)
    assert found("apps.w.test.") == (Found.EMPTY_NONTERMINAL, None)  # the wildcard's parent exists
    assert found("y.apps.w.test.") == (Found.EMPTY_NONTERMINAL, None)
    assert found("z.y.apps.w.test.") == (Found.NXDOMAIN, None)  # closest encloser y.apps: no '*' child
    assert found("q.*.apps.w.test.") == (Found.NXDOMAIN, None)
    assert found("other.w.test.") == (Found.WILDCARD, star_apex)
    assert found("a.b.ns1.w.test.") == (Found.NXDOMAIN, None)
    assert zone.answering(name("a.apps.w.test.")) is star_apps
    assert zone.answering(name("z.y.apps.w.test.")) is None


def test_an_unquoted_wildcard_key_is_explained_not_just_a_yaml_error(tmp_path: Path) -> None:
    result = check(tmp_path, HEAD + "  *.apps: {type: A, value: 192.0.2.80}\n")
    assert result.returncode == 1
    line = f"{tmp_path / 'w.test.yaml'}: YAML error at line 9, column 3: a name starting with '*' must be quoted"
    assert result.stderr.startswith(line), result.stderr
