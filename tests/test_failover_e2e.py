"""Failover as a client sees it: a real `gslb serve`, real regional sites on 127.0.0.x, dnspython.

Each region's endpoints are aiohttp (or plain TCP) servers on their own loopback address and one
shared test port, the port the zone's checks probe. Clients are placed by ECS subnet rules
(10.1.0.0/16 -> eu, 10.2.0.0/16 -> us-east), so no GeoIP lookup decides anything. Timings are
short: interval 0.2s, timeout 0.1s, fall 2, rise 2 -> a dead site is withdrawn within
interval * fall + timeout = 0.5s (plus scheduling), and needs `rise` good probes to come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsserver import TEST_GEOIP, GslbProcess, free_port, wait_for
from sites import Sites

INTERVAL, TIMEOUT, FALL, RISE = 0.2, 0.1, 2, 2
DETECTION = INTERVAL * FALL + TIMEOUT  # the documented bound for withdrawing a dead site
RECOVERY = INTERVAL * RISE + TIMEOUT  # ... and for bringing a healthy one back
MARGIN = 0.35  # process scheduling, the client's polling; measured well under this on a busy CI box
TTL, TTL_DEGRADED = 60, 10
EU, US = "10.1.0.0", "10.2.0.0"

ZONE = """
origin: failover.test.
ns: [ns1.failover.test.]
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
subnets:
  10.1.0.0/16: eu
  10.2.0.0/16: us-east
default_region: us-east
checks:
  web: {{http: {{path: /healthz, port: {port}, host: www.failover.test, body: ok}},
         interval: {interval}s, timeout: {timeout}s, fall: {fall}, rise: {rise}}}
  db: {{tcp: {{port: {port}}}, interval: {interval}s, timeout: {timeout}s, fall: {fall}, rise: {rise}}}
  cold: {{http: {{path: /healthz, port: {port}}}, interval: {interval}s, timeout: {timeout}s,
          fall: {fall}, rise: {rise}, cold_start: down}}
  slow: {{http: {{path: /healthz, port: {port}}}, interval: 5s, timeout: 1s, fall: 2, cold_start: up}}
records:
{records}
"""


def gslb_record(name: str, check: str, eu: list[str], us: list[str], **extra: object) -> str:
    options = "".join(f", {key}: {value}" for key, value in extra.items())
    return (f"  {name}: {{type: A, ttl: {TTL}, ttl_degraded: {TTL_DEGRADED}, check: {check}, "
            f"pools: {{eu: [{', '.join(eu)}], us-east: [{', '.join(us)}]}}{options}}}\n")


# -- regional sites ----------------------------------------------------------------------------



# -- the client --------------------------------------------------------------------------------

def ask(server: GslbProcess, name: str, subnet: str) -> tuple[str, list[str], int | None]:
    """(rcode, sorted addresses, TTL) for `name` asked by a client in `subnet`/24 via ECS."""
    query = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(subnet, 24)])
    reply = dns.query.udp(query, server.host, port=server.port, timeout=2)
    addresses = sorted(rr.address for rrset in reply.answer for rr in rrset)
    ttl = reply.answer[0].ttl if reply.answer else None
    return dns.rcode.to_text(reply.rcode()), addresses, ttl


def until_answer(server: GslbProcess, name: str, subnet: str, wanted: Callable[[tuple], bool],
                 timeout: float, what: str) -> tuple[tuple, float]:
    """Poll until the answer satisfies `wanted`; (answer, seconds it took)."""
    started = time.monotonic()
    answer = wait_for(lambda: (lambda a: a if wanted(a) else None)(ask(server, name, subnet)), timeout, what)
    return answer, time.monotonic() - started


def start_gslb(zones: Path, logs: Path, state: Path) -> GslbProcess:
    return GslbProcess.start(zones, log_dir=logs, geoip=TEST_GEOIP, probe_name="failover.test.",
                             extra=["--state", str(state), "--log-level", "info"])


# -- the shared server -------------------------------------------------------------------------

ADDRESSES = {
    "www": (["127.0.0.11"], ["127.0.0.21"]),
    "db": (["127.0.0.31"], ["127.0.0.41"]),
    "open": (["127.0.0.51"], ["127.0.0.52"]),
    "strict": (["127.0.0.61"], ["127.0.0.62"]),
    "fixed": (["127.0.0.71"], ["127.0.0.72"]),
    "admin": (["127.0.0.91", "127.0.0.92"], ["127.0.0.93"]),
}
ALL = [a for eu, us in ADDRESSES.values() for a in (*eu, *us)] + ["127.0.0.81", "127.0.0.82", "127.0.0.83"]


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    running = Sites(free_port(ALL))
    yield running
    running.close()


@pytest.fixture(scope="module")
def world(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, Path]]:
    """One gslb serving a record per scenario, each on its own addresses; sites up except the
    all-down records' (which never answer)."""
    base = tmp_path_factory.mktemp("failover")
    zones = base / "zones"
    zones.mkdir()
    records = "".join([
        gslb_record("www", "web", *ADDRESSES["www"]),
        gslb_record("db", "db", *ADDRESSES["db"]),
        gslb_record("open", "web", *ADDRESSES["open"], when_all_down="all"),
        gslb_record("strict", "web", *ADDRESSES["strict"], when_all_down="servfail"),
        gslb_record("fixed", "web", *ADDRESSES["fixed"], when_all_down="[192.0.2.99]"),
        gslb_record("admin", "web", *ADDRESSES["admin"]),
    ])
    (zones / "failover.test.yaml").write_text(ZONE.format(port=sites.port, interval=INTERVAL, timeout=TIMEOUT,
                                                          fall=FALL, rise=RISE, records=records))
    sites.http("127.0.0.11", "127.0.0.21", "127.0.0.91", "127.0.0.92", "127.0.0.93")
    sites.tcp("127.0.0.31", "127.0.0.41")
    server = start_gslb(zones, base / "logs", base / "state.yaml")
    yield server, base / "state.yaml"
    server.stop()


def normal(addresses: list[str]) -> Callable[[tuple], bool]:
    return lambda answer: answer == ("NOERROR", sorted(addresses), TTL)


def degraded(addresses: list[str]) -> Callable[[tuple], bool]:
    return lambda answer: answer == ("NOERROR", sorted(addresses), TTL_DEGRADED)


def test_a_dead_http_site_fails_over_within_fall_probes_and_returns_after_rise(world, sites):
    server, _ = world
    until_answer(server, "www.failover.test", EU, normal(["127.0.0.11"]), 3, "eu served by its own site")
    sites.stop("127.0.0.11")
    _, took = until_answer(server, "www.failover.test", EU, degraded(["127.0.0.21"]), 3, "eu falls back to us-east")
    # Only an upper bound on time: under load the scheduler may run a late probe and the next one
    # close together. That FALL failures were needed is what the log line below proves.
    assert took <= DETECTION + MARGIN, f"failover took {took:.3f}s"
    assert ask(server, "www.failover.test", US) == ("NOERROR", ["127.0.0.21"], TTL)  # us-east itself is fine
    sites.http("127.0.0.11")
    _, took = until_answer(server, "www.failover.test", EU, normal(["127.0.0.11"]), 3, "eu back on its own site")
    assert took <= RECOVERY + MARGIN, f"recovery took {took:.3f}s"
    log = server.stderr_text()
    assert log.count("www.failover.test. eu 127.0.0.11 DOWN after 2 failures: connection refused") == 1
    assert log.count("www.failover.test. eu 127.0.0.11 UP after 2 successes: HTTP 200") == 1


def test_a_dead_tcp_site_fails_over_and_comes_back(world, sites):
    server, _ = world
    until_answer(server, "db.failover.test", EU, normal(["127.0.0.31"]), 3, "eu db served")
    sites.stop("127.0.0.31")
    _, took = until_answer(server, "db.failover.test", EU, degraded(["127.0.0.41"]), 3, "eu db falls back")
    assert took <= DETECTION + MARGIN, f"failover took {took:.3f}s"
    sites.tcp("127.0.0.31")
    _, took = until_answer(server, "db.failover.test", EU, normal(["127.0.0.31"]), 3, "eu db back")
    assert took <= RECOVERY + MARGIN, f"recovery took {took:.3f}s"
    assert "db.failover.test. eu 127.0.0.31 DOWN after 2 failures: connection refused" in server.stderr_text()


def test_all_down_fails_open_with_the_regions_own_pool_at_the_degraded_ttl(world):
    server, _ = world
    until_answer(server, "open.failover.test", EU, degraded(["127.0.0.51"]), 3, "fail open for eu")
    assert ask(server, "open.failover.test", US) == ("NOERROR", ["127.0.0.52"], TTL_DEGRADED)
    wait_for(lambda: "open.failover.test. A: no healthy endpoint in any region" in server.stderr_text(), 2, "critical log")


def test_all_down_servfail_answers_servfail(world):
    server, _ = world
    until_answer(server, "strict.failover.test", EU, lambda a: a[0] == "SERVFAIL", 3, "SERVFAIL")
    assert ask(server, "strict.failover.test", US)[0] == "SERVFAIL"


def test_all_down_with_a_fixed_list_answers_the_list_at_the_degraded_ttl(world):
    server, _ = world
    until_answer(server, "fixed.failover.test", EU, degraded(["192.0.2.99"]), 3, "the fixed list")
    assert ask(server, "fixed.failover.test", US) == ("NOERROR", ["192.0.2.99"], TTL_DEGRADED)


def test_admin_overrides_down_drain_and_up_take_effect_without_any_probe_change(world, sites):
    server, state = world
    name = "admin.failover.test"
    until_answer(server, name, EU, normal(["127.0.0.91", "127.0.0.92"]), 3, "both eu endpoints")
    state.write_text("127.0.0.91: down\n")  # every site still healthy
    until_answer(server, name, EU, degraded(["127.0.0.92"]), 3, "91 withdrawn by the admin")
    assert "admin.failover.test. eu 127.0.0.91 DOWN by admin override (state.yaml) down" in server.stderr_text()
    state.write_text("127.0.0.91: drain\n")
    until_answer(server, name, EU, degraded(["127.0.0.92"]), 3, "drained 91 stays out while 92 is up")
    sites.stop("127.0.0.92")
    until_answer(server, name, EU, degraded(["127.0.0.91"]), 3, "drained 91 serves as the last resort")
    state.write_text("127.0.0.91: drain\n127.0.0.92: up\n")  # 92's site is dead: forced to serve
    until_answer(server, name, EU, degraded(["127.0.0.92"]), 3, "92 forced up")
    state.write_text("127.0.0.91: drain\n127.0.0.92: [up\n")  # a bad edit keeps the last good overrides
    wait_for(lambda: "keeping the 2 previous override(s)" in server.stderr_text(), 3, "the bad file is reported")
    assert ask(server, name, EU) == ("NOERROR", ["127.0.0.92"], TTL_DEGRADED)
    state.unlink()  # no file, no overrides
    sites.http("127.0.0.92")
    until_answer(server, name, EU, normal(["127.0.0.91", "127.0.0.92"]), 3, "back to normal")


# -- servers of their own: cold start, restarts --------------------------------------------------

def test_cold_start_down_serves_nothing_from_an_endpoint_until_it_is_seen_healthy(sites, tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    # when_all_down: servfail, because with `all` a record whose endpoints are all still cold
    # would fail open and answer them: all-down handling comes after cold start, by design.
    records = (gslb_record("cold", "cold", ["127.0.0.81"], ["127.0.0.82"], when_all_down="servfail")
               + gslb_record("warm", "slow", ["127.0.0.83"], ["127.0.0.82"]))
    (zones / "failover.test.yaml").write_text(ZONE.format(port=sites.port, interval=INTERVAL, timeout=TIMEOUT,
                                                          fall=FALL, rise=RISE, records=records))
    sites.http("127.0.0.82")  # 81 (cold start down) and 83 (cold start up) have no site yet
    server = start_gslb(zones, tmp_path / "logs", tmp_path / "state.yaml")
    try:
        # Its neighbour with the default cold start (up; probes 5s apart) serves before any probe.
        assert ask(server, "warm.failover.test", EU) == ("NOERROR", ["127.0.0.83"], TTL)
        # From the first answer on, 81 is never served: it has not been seen healthy. Until 82
        # has been seen healthy too, nothing is (SERVFAIL); then eu clients go to 82.
        seen = [ask(server, "cold.failover.test", EU)]
        deadline = time.monotonic() + 3
        while seen[-1][0] == "SERVFAIL" and time.monotonic() < deadline:
            time.sleep(0.02)
            seen.append(ask(server, "cold.failover.test", EU))
        assert all(answer == ("SERVFAIL", [], None) for answer in seen[:-1]), seen
        assert seen[-1] == ("NOERROR", ["127.0.0.82"], TTL_DEGRADED), seen
        sites.http("127.0.0.81")
        until_answer(server, "cold.failover.test", EU, normal(["127.0.0.81"]), 3, "81 after rise successes")
        assert "cold.failover.test. eu 127.0.0.81 UP after 2 successes: HTTP 200" in server.stderr_text()
    finally:
        server.stop()
        sites.stop(*[a for a in ("127.0.0.81", "127.0.0.82") if sites.running(a)])


def test_admin_overrides_survive_a_restart_and_hold_from_the_first_answer(sites, tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    records = gslb_record("svc", "slow", ["127.0.0.84", "127.0.0.85"], ["127.0.0.86"])
    (zones / "failover.test.yaml").write_text(ZONE.format(port=sites.port, interval=INTERVAL, timeout=TIMEOUT,
                                                          fall=FALL, rise=RISE, records=records))
    state = tmp_path / "state.yaml"
    state.write_text("127.0.0.84: down\n")
    for attempt in range(2):
        server = start_gslb(zones, tmp_path / "logs", state)
        try:
            # Cold start up with 5s between probes: only the override can withdraw 84 this early.
            assert ask(server, "svc.failover.test", EU) == ("NOERROR", ["127.0.0.85"], TTL_DEGRADED), attempt
        finally:
            assert server.stop() == 0
        assert "Unclosed" not in server.stderr_text() and "Traceback" not in server.stderr_text()
