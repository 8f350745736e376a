"""`gslb check` on the mistakes of GSLB CNAME records (pools of host names): one line each, with
its file and key path, all of them at once."""

from __future__ import annotations

import subprocess

from dnsserver import TEST_GEOIP, gslb_command

ZONE = """
origin: mistakes.example.
ns: [ns1.mistakes.example.]
regions:
  eu: {location: [50.11, 8.68]}
  us: {location: [39.04, -77.49]}
checks:
  web: {http: {path: /healthz, port: 8080}}
records:
  ns1: {type: A, value: 192.0.2.53}
  many: {type: CNAME, answers: 2, pools: {eu: [lb-eu.example.net.]}}
  all: {type: CNAME, policy: all, pools: {eu: [lb-eu.example.net.]}}
  beside:
    - {type: CNAME, pools: {eu: [lb-eu.example.net.]}}
    - {type: TXT, value: hello}
  gslb-beside:
    - {type: A, pools: {eu: [192.0.2.1]}}
    - {type: CNAME, pools: {eu: [lb-eu.example.net.]}}
  relative: {type: CNAME, pools: {eu: [lb-eu]}}
  address: {type: CNAME, pools: {eu: [192.0.2.1]}}
  label: {type: CNAME, pools: {eu: ["lb eu.example.net."]}}
  number: {type: CNAME, pools: {eu: [42]}}
  probe: {type: CNAME, check: web, pools: {eu: [{value: lb-eu.example.net., probe: 300.1.1.1}]}}
  probe-name: {type: CNAME, check: web, pools: {eu: [{value: lb-eu.example.net., probe: lb.example.net}]}}
  extra-key: {type: CNAME, pools: {eu: [{value: lb-eu.example.net., port: 80}]}}
  a-probe: {type: A, pools: {eu: [{value: 192.0.2.1, probe: 127.0.0.2}]}}
  self: {type: CNAME, pools: {eu: [self.mistakes.example.]}}
  fixed: {type: CNAME, when_all_down: [192.0.2.9], pools: {eu: [lb-eu.example.net.]}}
  "@": {type: CNAME, pools: {eu: [lb-eu.example.net.]}}
  ok:
    type: CNAME
    check: web
    policy: weighted
    answers: 1
    pools:
      eu: [{value: lb-eu.example.net., probe: 127.0.0.2, weight: 3}, lb-eu2.example.net.]
      us: [LB-US.example.net.]
"""

EXPECTED = [
    ("records.many.answers", "a CNAME record answers with exactly one name: remove answers or set it to 1, got 2"),
    ("records.all.policy", "all answers every healthy endpoint, but a CNAME answers one name; use failover (the "
                           "first healthy) or another policy"),
    ("records.beside[0]", "a CNAME cannot stand beside other records at the same name (TXT here; RFC 1034 section "
                          "3.6.2): move them to another name or remove them"),
    ("records.gslb-beside[1]", "a CNAME cannot stand beside other records at the same name (A here; RFC 1034 "
                               "section 3.6.2)"),
    ("records.relative.pools.eu[0]", "'lb-eu' must be fully qualified, ending in '.' (a host name like "
                                     "lb-eu.example.net.)"),
    ("records.address.pools.eu[0]", "192.0.2.1 is an IP address; a CNAME pool lists host names (a record of type A "
                                    "lists addresses)"),
    ("records.label.pools.eu[0]", "'lb eu.example.net': label 'lb eu' may hold only letters, digits, '-' and '_'"),
    ("records.number.pools.eu[0]", "must be a host name like lb-eu.example.net., got 42"),
    ("records.probe.pools.eu[0].probe", "'300.1.1.1' is not an IP address; give the address health checks connect "
                                        "to, like 192.0.2.10 (without probe: the name is resolved)"),
    ("records.probe-name.pools.eu[0].probe", "'lb.example.net' is not an IP address"),
    ("records.extra-key.pools.eu[0]", "an endpoint is a host name, or {value: NAME, weight: N, probe: ADDRESS}"),
    ("records.a-probe.pools.eu[0]", "probe: is for CNAME pools (host names); an address is probed at itself"),
    ("records.self.pools.eu[0]", "self.mistakes.example. points at itself; a CNAME pool lists other names"),
    ("records.fixed.when_all_down[0]", "192.0.2.9 is an IP address; a CNAME pool lists host names"),
    ("records.@", "the zone apex cannot be a CNAME (it holds SOA and NS)"),
]


def test_every_cname_pool_mistake_is_one_line_with_its_key_path(tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "mistakes.yaml").write_text(ZONE)
    result = subprocess.run(gslb_command("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    found = [line for line in result.stderr.splitlines() if not line.startswith("gslb:") and " INFO " not in line]
    for path, message in EXPECTED:
        prefix = f"{zones / 'mistakes.yaml'}: {path}: {message}"
        assert any(line.startswith(prefix) for line in found), (prefix, found)
    assert len(found) == len(EXPECTED), found
    assert "Traceback" not in result.stderr


def test_one_name_probed_two_ways_under_one_check_is_refused(tmp_path):
    """The health key is (check, host name): two probe addresses for it would share one verdict."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "two.yaml").write_text(ZONE.split("records:")[0] + """records:
  ns1: {type: A, value: 192.0.2.53}
  one: {type: CNAME, check: web, pools: {eu: [{value: lb.example.net., probe: 127.0.0.2}]}}
  two: {type: CNAME, check: web, pools: {us: [{value: lb.example.net., probe: 127.0.0.3}]}}
  three: {type: CNAME, check: web, pools: {us: [{value: lb.example.net., probe: 127.0.0.2}]}}
""")
    result = subprocess.run(gslb_command("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout
    found = [line for line in result.stderr.splitlines() if not line.startswith("gslb:") and " INFO " not in line]
    assert found == [f"{zones / 'two.yaml'}: records.two: lb.example.net. is probed at 127.0.0.3 here and at "
                     "127.0.0.2 in records.one with the same check web; give every use of the name the same probe:"]
