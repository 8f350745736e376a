"""Who may write verdicts: an ACL user per probe agent, limited to its own key and channel, against
a real redis-server; a wrong password; and `rediss://` (TLS) with a private CA.

Checked from outside gslb with redis-py's plain synchronous client as an admin user.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from pathlib import Path
from typing import Iterator

import pytest

from dnsserver import TEST_GEOIP, free_port, wait_for
from redisserver import REDIS_SERVER, Agent, RedisServer
from sites import Sites

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
redis = pytest.importorskip("redis")

SITE = "127.0.0.51"
ADMIN = ("admin", "admin-secret")
ZONE = """
origin: acl.test.
ns: [ns1.acl.test.]
regions:
  eu: {{location: [50.11, 8.68]}}
default_region: eu
checks:
  web: {{http: {{path: /healthz, port: {port}}}, interval: 0.2s, timeout: 0.1s, fall: 2, rise: 2}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  www: {{type: A, check: web, pools: {{eu: [{site}]}}}}
"""

# What a probe agent needs, on its own key and channel only (README, "Many nodes").
AGENT_COMMANDS = "-@all +hset +hdel +del +pexpire +publish +time +ping +multi +exec +hello +auth"


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    running = Sites(free_port([SITE]))
    running.http(SITE)
    yield running
    running.close()


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory, sites: Sites) -> Path:
    directory = tmp_path_factory.mktemp("acl-zones")
    (directory / "acl.yaml").write_text(ZONE.format(port=sites.port, site=SITE))
    return directory


def probe_args(zones: Path, url: str, vantage: str) -> list[str]:
    return ["probe", "--zones", str(zones), "--geoip", str(TEST_GEOIP), "--redis", url, "--vantage", vantage,
            "--log-level", "info"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-acl")).start()
    for command in (
        ["ACL", "SETUSER", ADMIN[0], "on", f">{ADMIN[1]}", "~*", "&*", "+@all"],
        ["ACL", "SETUSER", "agent-eu", "on", ">eu-secret", "resetkeys", "~gslb:verdicts:eu", "resetchannels",
         "&gslb:verdicts:eu", *AGENT_COMMANDS.split()],
        ["ACL", "SETUSER", "default", "off"],
    ):
        assert server.command(*command) == "+OK"
    yield server
    server.stop()


def admin(store: RedisServer) -> "redis.Redis":
    return redis.Redis(host="127.0.0.1", port=store.port, username=ADMIN[0], password=ADMIN[1], decode_responses=True)


def test_an_agent_publishes_under_its_own_acl_user_and_cannot_speak_for_another_vantage(
        store: RedisServer, zones: Path, tmp_path: Path) -> None:
    own = Agent("eu", probe_args(zones, f"redis://agent-eu:eu-secret@127.0.0.1:{store.port}/0", "eu"),
                tmp_path / "eu.log").start()
    impostor = Agent("asia", probe_args(zones, f"redis://agent-eu:eu-secret@127.0.0.1:{store.port}/0", "asia"),
                     tmp_path / "asia.log").start()
    try:
        client = admin(store)
        wait_for(lambda: client.hget("gslb:verdicts:eu", f"web/{SITE}"), 5, "the eu agent's verdict")
        assert client.hget("gslb:verdicts:eu", f"web/{SITE}").startswith('["UP"')
        assert 0 < client.pttl("gslb:verdicts:eu") <= 1000 * (3 * 0.2 + 1) + 1  # it lapses unless renewed
        wait_for(lambda: "refused us" in impostor.log.read_text(), 5, "the impostor's refusal logged")
        log = impostor.log.read_text()
        assert "NOPERM" in log or "No permissions" in log or "no permissions" in log, log
        assert log.count("refused us") == 1, log  # logged once, then retried quietly
        assert not client.exists("gslb:verdicts:asia")
    finally:
        own.stop()
        impostor.stop()


def test_a_wrong_password_is_logged_once_and_writes_nothing(store: RedisServer, zones: Path, tmp_path: Path) -> None:
    agent = Agent("eu", probe_args(zones, f"redis://agent-eu:wrong@127.0.0.1:{store.port}/0", "eu"),
                  tmp_path / "wrong.log").start()
    try:
        wait_for(lambda: "refused us" in agent.log.read_text(), 5, "the refusal logged")
        time.sleep(0.5)  # several retries go by
        log = agent.log.read_text()
        assert log.count("refused us") == 1 and "wrong:" not in log and "AuthenticationError" in log, log
        assert "redis://agent-eu:***@127.0.0.1" in log  # the password never reaches the log
    finally:
        agent.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gslb test redis")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "redis.crt", directory / "redis.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_rediss_carries_the_verdicts_over_tls(tmp_path: Path, zones: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port(["127.0.0.1"])
    server = RedisServer(tmp_path / "tls", port=free_port(["127.0.0.1"]),
                         extra=("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")).start()
    agent = Agent("eu", probe_args(zones, f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}", "eu"),
                  tmp_path / "tls-agent.log").start()
    try:
        plain = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)  # the same store, in clear
        wait_for(lambda: plain.hget("gslb:verdicts:eu", f"web/{SITE}"), 5, "the verdict written over TLS")
        assert "connected (publishing verdicts as vantage eu)" in agent.log.read_text()
    finally:
        agent.stop()
        server.stop()


def test_the_acl_users_of_deploy_compose_let_a_node_read_what_an_agent_writes(tmp_path: Path, zones: Path) -> None:
    """The users README and deploy/compose.yaml recommend, loaded into a real redis-server: the
    agent publishes under its own, a `gslb serve --redis` node follows it under the node's."""
    import yaml

    from dnsserver import REPO
    from opsserver import start_with_api

    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    users = [line.split() for line in compose["configs"]["redis-users"]["content"].splitlines() if line.strip()]
    server = RedisServer(tmp_path / "compose-acl").start()
    for _user, name, *rules in sorted(users, key=lambda words: words[1] == "default"):  # default off last
        rules = [rule.replace("change-me-", "pw-") for rule in rules]
        assert server.command("ACL", "SETUSER", name, "reset", *rules) == "+OK", (name, rules)
    agent = Agent("eu", probe_args(zones, f"redis://probe-eu:pw-eu@127.0.0.1:{server.port}/0", "eu"),
                  tmp_path / "agent.log").start()
    config = tmp_path / "node.yaml"
    config.write_text(f"redis: redis://gslb-node:pw-node@127.0.0.1:{server.port}/0\nvantages: [eu, us, asia]\n")
    node, url = start_with_api(zones, tmp_path / "logs", config=config, probe_name="acl.test.")
    try:
        import json
        import urllib.request

        def eu_verdict() -> bool:
            with urllib.request.urlopen(url + "/status", timeout=5) as response:
                endpoints = json.loads(response.read())["endpoints"]
            return any((e.get("vantages") or {}).get("eu", {}).get("status") == "UP" for e in endpoints)

        wait_for(eu_verdict, 10, "the node seeing the eu agent's verdict")
        assert "refused us" not in node.stderr_text() and "refused us" not in agent.log.read_text()
    finally:
        node.stop()
        agent.stop()
        server.stop()
