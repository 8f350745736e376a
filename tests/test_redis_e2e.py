"""Many nodes, one view of health: three probe agents and two DNS nodes sharing verdicts through a
real redis-server, against regional sites that refuse some vantages' probes.

Each agent (`gslb probe --vantage a|b|c --source 127.0.0.2|3|4`) probes from its own loopback
address, so a site can fail for one vantage and not the others (tests/sites.py `refuse`). The DNS
nodes (`gslb serve --redis`) probe nothing while the verdicts are fresh; when the store has been
gone for `stale_after` they probe for themselves from 127.0.0.1, which no site refuses - so
"probing locally" is visible in the answers. Clients are placed by ECS (10.1.0.0/16 -> eu).
Timings are short: interval 0.2 s, timeout 0.1 s, fall 2, rise 2: a verdict flips within
interval x fall + timeout = 0.5 s and lapses 3 intervals (0.6 s) after its agent stops.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import dns.edns
import dns.message
import dns.query
import pytest

from dnsserver import REPO, TEST_GEOIP, GslbProcess, free_port, gslb_command, wait_for
from opsserver import start_with_api
from redisserver import REDIS_SERVER, Agent, RedisServer
from sites import Sites

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
pytest.importorskip("redis")

INTERVAL, TIMEOUT, FALL, RISE = 0.2, 0.1, 2, 2
DETECTION = INTERVAL * FALL + TIMEOUT  # one vantage's rise/fall
WITHDRAW_BOUND = DETECTION + 1.0  # the bound for both nodes
LIFETIME = 3 * INTERVAL  # a verdict lapses this long after its agent's last renewal
STALE_AFTER = 1.5
TOKEN = "redis-e2e-token"
EU = "10.1.0.0"
VANTAGES = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}

# Each scenario has its own record: its subject endpoint and a companion that always serves.
SUBJECTS = {"one": "127.0.0.11", "two": "127.0.0.12", "kill": "127.0.0.13", "admin": "127.0.0.14",
            "lapse": "127.0.0.15", "outage": "127.0.0.16"}
COMPANION = "127.0.0.30"

ZONE = """
origin: quorum.test.
ns: [ns1.quorum.test.]
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
subnets:
  10.1.0.0/16: eu
  10.2.0.0/16: us-east
default_region: us-east
checks:
  web: {{http: {{path: /healthz, port: {port}}}, interval: {interval}s, timeout: {timeout}s, fall: {fall}, rise: {rise}}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
{records}
"""


def zone_text(port: int) -> str:
    records = "".join(f"  {name}: {{type: A, ttl: 30, check: web, pools: {{eu: [{address}, {COMPANION}], "
                      f"us-east: [127.0.0.40]}}}}\n" for name, address in SUBJECTS.items())
    return ZONE.format(port=port, interval=INTERVAL, timeout=TIMEOUT, fall=FALL, rise=RISE, records=records)


# -- the processes ---------------------------------------------------------------------------------

@dataclass
class World:
    sites: Sites
    redis: RedisServer
    agents: dict[str, Agent]
    config: Path
    zones: Path
    nodes: list[tuple[GslbProcess, str]] = field(default_factory=list)

    def answers(self, name: str) -> list[list[str]]:
        return [ask(node, name) for node, _ in self.nodes]

    def status(self, index: int) -> dict[str, Any]:
        return api(self.nodes[index][1], "/status")

    def endpoint(self, index: int, address: str) -> dict[str, Any]:
        return next(e for e in self.status(index)["endpoints"] if e["address"] == address)


def ask(node: GslbProcess, name: str) -> list[str]:
    query = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(EU, 24)])
    reply = dns.query.udp(query, node.host, port=node.port, timeout=2)
    return sorted(rr.address for rrset in reply.answer for rr in rrset)


def api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{path}: HTTP {error.code}: {error.read().decode()}") from None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("redis-e2e")
    zones = base / "zones"
    zones.mkdir()
    addresses = [*SUBJECTS.values(), COMPANION, "127.0.0.40"]
    sites = Sites(free_port(addresses))
    sites.http(*addresses)
    (zones / "quorum.yaml").write_text(zone_text(sites.port))
    redis = RedisServer(base / "redis").start()
    agents = {vantage: Agent(vantage, ["probe", "--zones", str(zones), "--geoip", str(TEST_GEOIP), "--redis", redis.url,
                                       "--vantage", vantage, "--source", source, "--log-level", "info"],
                             base / f"agent-{vantage}.log")
              for vantage, source in VANTAGES.items()}
    config = base / "node.yaml"
    world = World(sites, redis, agents, config, zones)
    (base / "token").write_text(TOKEN + "\n")
    config.write_text(f"redis: {redis.url}\nvantages: [a, b, c]\nstale_after: {STALE_AFTER}s\n"
                      f"api_token_file: {base / 'token'}\n")
    try:
        for agent in agents.values():
            agent.launch()  # all three start at once; then each must say it is probing
        for agent in agents.values():
            agent.started()
        for index in (1, 2):
            world.nodes.append(start_with_api(zones, base / "logs", config=config, node_name=f"node-{index}"))
        # Every endpoint has a fresh UP verdict from the three vantages on both nodes.
        wait_for(lambda: all(len(world.endpoint(i, COMPANION).get("vantages") or {}) == 3 for i in (0, 1)),
                 10, "verdicts from the three vantages on both nodes")
        yield world
    finally:
        for node, _ in world.nodes:
            node.stop()
        for agent in agents.values():
            agent.stop()
        redis.stop()
        sites.close()


def name_of(scenario: str) -> str:
    return f"{scenario}.quorum.test."


def serving(world: World, scenario: str) -> list[bool]:
    """Per node: does the scenario's subject endpoint appear in the answer."""
    return [SUBJECTS[scenario] in answer for answer in world.answers(name_of(scenario))]


# -- the quorum ---------------------------------------------------------------------------------------

def test_a_site_failing_from_one_vantage_of_three_stays_in_both_nodes_answers(world: World) -> None:
    subject = SUBJECTS["one"]
    world.sites.refuse(subject, VANTAGES["a"])
    # Vantage a's own verdict flips (both nodes see it) ...
    for index in (0, 1):
        wait_for(lambda: (world.endpoint(index, subject)["vantages"]["a"]["status"] == "DOWN"), 5,
                 f"node {index + 1} seeing vantage a's DOWN verdict")
    # ... and the quorum (majority: 2 of 3) keeps the endpoint.
    endpoint = world.endpoint(0, subject)
    assert endpoint["status"] == "UP", endpoint
    assert endpoint["quorum"]["status"] == "UP" and "short of quorum majority" in endpoint["quorum"]["reason"]
    assert {v: e["status"] for v, e in endpoint["vantages"].items()} == {"a": "DOWN", "b": "UP", "c": "UP"}
    assert all(0 <= e["age"] < LIFETIME for e in endpoint["vantages"].values())
    assert serving(world, "one") == [True, True]
    world.sites.refuse(subject)


def test_a_site_failing_from_two_vantages_is_withdrawn_on_both_nodes_and_comes_back_after_rise(world: World) -> None:
    subject = SUBJECTS["two"]
    started = time.monotonic()
    world.sites.refuse(subject, VANTAGES["a"], VANTAGES["b"])
    wait_for(lambda: serving(world, "two") == [False, False], 5, "both nodes withdrawing the endpoint")
    took = time.monotonic() - started
    assert took <= WITHDRAW_BOUND, f"withdrawn after {took:.2f}s, bound {WITHDRAW_BOUND:.2f}s"
    endpoint = world.endpoint(1, subject)
    assert endpoint["status"] == "DOWN" and endpoint["reason"].startswith("by vantages a, b (2 of 3, quorum majority)")
    # The node's log names the vantages in the transition's one line.
    node = world.nodes[0][0]
    wait_for(lambda: f"{subject} DOWN by vantages a, b" in node.stderr_text(), 2, "the DOWN line in the log")
    # explain names them: the node's /explain, and `gslb explain` reading the store once.
    explained = api(world.nodes[1][1], f"/explain?name={name_of('two')}&subnet={EU}/24")
    assert explained["record"]["not_serving"][subject].startswith("DOWN by vantages a, b (2 of 3")
    cli = subprocess.run(gslb_command("explain", name_of("two"), "--subnet", f"{EU}/24", "--zones", str(world.zones),
                                      "--geoip", str(TEST_GEOIP), "--config", str(world.config)),
                         capture_output=True, text=True, timeout=30, cwd=REPO)
    assert f"down:    {subject}: DOWN by vantages a, b (2 of 3, quorum majority)" in cli.stdout, cli.stdout + cli.stderr
    assert subject not in cli.stdout.split("answer:")[1]

    started = time.monotonic()
    world.sites.refuse(subject)
    wait_for(lambda: serving(world, "two") == [True, True], 5, "both nodes serving the endpoint again")
    assert time.monotonic() - started <= INTERVAL * RISE + TIMEOUT + 1.0


def test_a_killed_agents_verdicts_lapse_and_the_quorum_is_taken_over_the_rest(world: World) -> None:
    subject = SUBJECTS["kill"]
    world.sites.refuse(subject, VANTAGES["a"], VANTAGES["b"])
    wait_for(lambda: serving(world, "kill") == [False, False], 5, "both nodes withdrawing the endpoint")
    world.agents["a"].kill()
    try:
        # a's verdicts lapse: b (DOWN) and c (UP) remain, 1 of 2 is no majority.
        started = time.monotonic()
        wait_for(lambda: serving(world, "kill") == [True, True], 5, "the endpoint back once a's verdict lapsed")
        assert time.monotonic() - started <= LIFETIME + 1.0
        endpoint = world.endpoint(0, subject)
        assert set(endpoint["vantages"]) == {"b", "c"}
        assert endpoint["quorum"]["reason"].startswith("1 of 2 vantages say UP")
    finally:
        world.sites.refuse(subject)
        world.agents["a"].start()
    wait_for(lambda: all(len(world.endpoint(i, subject)["vantages"]) == 3 for i in (0, 1)), 5, "a back")


# -- shared admin overrides ---------------------------------------------------------------------

def test_an_override_set_on_node_1_applies_on_node_2(world: World) -> None:
    subject = SUBJECTS["admin"]
    reply = api(world.nodes[0][1], f"/admin/endpoints/{subject}", {"state": "down"})
    assert reply["state"] == "down"
    started = time.monotonic()
    wait_for(lambda: serving(world, "admin") == [False, False], 2, "both nodes withdrawing the endpoint")
    assert time.monotonic() - started <= 1.0
    assert world.endpoint(1, subject)["override"] == "down"
    api(world.nodes[1][1], f"/admin/endpoints/{subject}", {"state": "auto"})
    wait_for(lambda: serving(world, "admin") == [True, True], 2, "both nodes serving it once removed on node 2")


def test_an_override_with_for_lapses_on_every_node(world: World) -> None:
    subject = SUBJECTS["lapse"]
    api(world.nodes[1][1], f"/admin/endpoints/{subject}", {"state": "down", "for": "1s"})
    wait_for(lambda: serving(world, "lapse") == [False, False], 2, "both nodes withdrawing the endpoint")
    endpoint = world.endpoint(0, subject)
    assert endpoint["override"] == "down" and endpoint["override_until"] is not None
    wait_for(lambda: serving(world, "lapse") == [True, True], 3, "the override lapsing on both nodes")
    for node, _ in world.nodes:
        wait_for(lambda: f"shared admin override {subject} down (set on node-2) lapsed" in node.stderr_text(), 2,
                 "the lapse logged on every node")


def test_a_bad_for_is_refused_with_its_field(world: World) -> None:
    request = urllib.request.Request(world.nodes[0][1] + f"/admin/endpoints/{SUBJECTS['lapse']}",
                                     data=json.dumps({"state": "down", "for": "soon"}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400 and "for:" in caught.value.read().decode()


# -- the store going away ----------------------------------------------------------------------------

def test_without_redis_nodes_keep_the_last_state_then_probe_locally_and_return_to_shared_verdicts(world: World) -> None:
    subject = SUBJECTS["outage"]
    world.sites.refuse(subject, VANTAGES["a"], VANTAGES["b"])
    wait_for(lambda: serving(world, "outage") == [False, False], 5, "both nodes withdrawing the endpoint")
    world.redis.stop()
    stopped = time.monotonic()
    try:
        # Fail static: the last verdicts hold, nothing lapses (the agents cannot renew them).
        for node, _ in world.nodes:
            wait_for(lambda: "unreachable" in node.stderr_text(), 3, "the outage logged")
        while time.monotonic() - stopped < STALE_AFTER * 0.8:
            assert serving(world, "outage") == [False, False]
            assert serving(world, "one") == [True, True]
            time.sleep(0.1)
        # After stale_after each node probes for itself, from 127.0.0.1, which the site serves.
        wait_for(lambda: serving(world, "outage") == [True, True], STALE_AFTER + DETECTION + 3,
                 "both nodes serving from their own probes")
        assert time.monotonic() - stopped >= STALE_AFTER
        for node, _ in world.nodes:
            assert "the shared verdicts are stale; probing every check from this node" in node.stderr_text()
    finally:
        world.redis.start()  # the same port: the agents and the nodes reconnect
    wait_for(lambda: serving(world, "outage") == [False, False], 10, "both nodes back on the shared verdicts")
    for node, _ in world.nodes:
        wait_for(lambda: "shared verdicts fresh again" in node.stderr_text(), 3, "the return logged")
    world.sites.refuse(subject)
    wait_for(lambda: serving(world, "outage") == [True, True], 5, "the endpoint back")


def test_metrics_show_each_vantage_and_the_link(world: World) -> None:
    request = urllib.request.Request(world.nodes[0][1] + "/metrics")
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    subject = SUBJECTS["one"]
    for vantage in VANTAGES:
        assert f'gslb_vantage_up{{address="{subject}",check="web",vantage="{vantage}"}} 1.0' in text
        assert f'gslb_vantage_verdict_age_seconds{{address="{subject}",check="web",vantage="{vantage}"}}' in text
    assert 'gslb_redis_connected{link="verdicts"} 1.0' in text
    assert 'gslb_redis_reconnects_total{link="verdicts"} 1.0' in text  # the outage test's
