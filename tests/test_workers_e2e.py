"""`gslb serve --workers 2`: two processes answer on the same SO_REUSEPORT sockets, and a health
change in the main process reaches every worker within a second."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import dns.message
import pytest

from dnsserver import GslbProcess, wait_for

ZONE = """
origin: workers.test.
ns: [ns1.workers.test.]
regions:
  eu: {location: [50.1, 8.7], serves: [EU]}
default_region: eu
records:
  ns1: {type: A, value: 192.0.2.53}
  www:
    type: A
    pools:
      eu: [192.0.2.11, 192.0.2.12]
"""


def answers_from_many_sockets(server: GslbProcess, count: int = 40) -> set[tuple[str, ...]]:
    """The kernel spreads SO_REUSEPORT traffic by the 4-tuple, so fresh source ports reach both
    workers; every distinct answer set seen is returned."""
    seen = set()
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            query = dns.message.make_query("www.workers.test.", "A")
            sock.sendto(query.to_wire(), (server.host, server.port))
            reply = dns.message.from_wire(sock.recvfrom(4096)[0])
            seen.add(tuple(sorted(r.to_text() for rrset in reply.answer for r in rrset)))
    return seen


@pytest.fixture
def workers_server(start_server, tmp_path: Path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "workers.test.yaml").write_text(ZONE)
    state = tmp_path / "state.yaml"
    server = start_server(zones, probe_name="workers.test.", extra=["--workers", "2", "--state", str(state), "--api", "off"])
    return server, state


def test_workers_answer_and_share_one_health_view(workers_server) -> None:
    server, state = workers_server
    assert any("2 worker processes" in line for line in server.stdout_lines)
    # Workers start after the main process prints; wait until every socket answers the same.
    wait_for(lambda: answers_from_many_sockets(server) == {("192.0.2.11", "192.0.2.12")}, 20, "both workers answering")
    state.write_text("192.0.2.11: down\n")
    changed = time.monotonic()
    wait_for(lambda: answers_from_many_sockets(server, 20) == {("192.0.2.12",)}, 5, "every worker to withdraw 192.0.2.11")
    # The state file is polled every 0.5 s and published every 0.25 s: well within a second.
    assert time.monotonic() - changed < 3.0
    assert answers_from_many_sockets(server, 60) == {("192.0.2.12",)}
