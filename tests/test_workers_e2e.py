"""`gslb serve --workers 2`: two processes answer on the same SO_REUSEPORT sockets, a health
change in the main process reaches every worker within a second, a reload reaches every worker
without a pause in answering, and /metrics and the query log count the queries of every process."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import GslbProcess, wait_for
from opsserver import start_with_api

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


# -- reloads, counters and the query log across workers --------------------------------------------

def udp_sockets_on(port: int) -> int:
    """Sockets bound to this UDP port (from /proc/net/udp): 2 once the worker has joined the
    SO_REUSEPORT group; before that every query reaches the main process."""
    with open("/proc/net/udp") as table:
        return sum(1 for line in list(table)[1:] if int(line.split()[1].split(":")[1], 16) == port)


def wait_for_both_processes(server: GslbProcess, timeout: float = 60) -> None:
    wait_for(lambda: udp_sockets_on(server.port) == 2, timeout, "the worker bound to the port")

def big_zone(flip: str, records: int, serial: int) -> str:
    lines = [ZONE.replace("origin: workers.test.", f"origin: workers.test.\nsoa: {{mname: ns1.workers.test., "
                          f"rname: hostmaster.workers.test., serial: {serial}}}"),
             f"  flip: {{type: A, value: {flip}}}"]
    lines += [f"  host{i}: {{type: A, value: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}}}" for i in range(records)]
    return "\n".join(lines) + "\n"


def ask_fresh_socket(server: GslbProcess, name: str, timeout: float = 1.0) -> tuple[float, list[str] | None]:
    """(seconds, the addresses) from a new socket - a new source port, so either process - or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        query = dns.message.make_query(name, "A")
        started = time.monotonic()
        sock.sendto(query.to_wire(), (server.host, server.port))
        try:
            reply = dns.message.from_wire(sock.recvfrom(4096)[0])
        except socket.timeout:
            return time.monotonic() - started, None
        return time.monotonic() - started, sorted(r.to_text() for rrset in reply.answer for r in rrset)


class Prober:
    """Asks `flip.workers.test A` from a fresh socket every 10 ms until stopped; keeps every
    latency and answer, and every query that got no answer within a second."""

    def __init__(self, server: GslbProcess) -> None:
        self.server = server
        self.samples: list[tuple[float, list[str] | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(ask_fresh_socket(self.server, "flip.workers.test."))
            self._stop.wait(0.01)

    def __enter__(self) -> "Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_workers_build_a_reload_off_their_event_loop_and_answer_throughout(start_server, tmp_path: Path) -> None:
    """Before: a worker reloaded inside its pipe callback and answered nothing until done (a big
    zone: seconds). Now it builds in a thread and swaps; every probe is answered, quickly."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "workers.test.yaml").write_text(big_zone("192.0.2.1", 0, 1))  # small: quick to start
    server = start_server(zones, probe_name="workers.test.", extra=["--workers", "2", "--api", "off",
                                                                   "--log-level", "info"])
    wait_for_both_processes(server)
    assert ask_fresh_socket(server, "flip.workers.test.", 2)[1] == ["192.0.2.1"]
    with Prober(server) as prober:
        wait_for(lambda: len(prober.samples) > 20, 10, "the prober running")
        path = zones / "workers.test.yaml"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(big_zone("192.0.2.2", 10_000, 2))  # big: seconds to build
        temporary.rename(path)
        server.process.send_signal(signal.SIGHUP)
        # Both processes serve the new generation: 20 fresh sockets in a row all see it.
        wait_for(lambda: all(ask_fresh_socket(server, "flip.workers.test.", 2)[1] == ["192.0.2.2"] for _ in range(20)),
                 60, "every process serving the new zone")
    lost = [seconds for seconds, answer in prober.samples if answer is None]
    answers = {tuple(answer) for _, answer in prober.samples if answer is not None}
    slowest = max(seconds for seconds, _ in prober.samples)
    print(f"{len(prober.samples)} probes, {len(lost)} lost, slowest {slowest * 1000:.0f} ms", file=sys.stderr)
    assert not lost, f"{len(lost)} of {len(prober.samples)} probes unanswered within 1 s"
    assert answers <= {("192.0.2.1",), ("192.0.2.2",)}, answers
    assert slowest < 0.8, f"a probe waited {slowest:.3f} s during the reload"
    assert "Traceback" not in server.stderr_text(), server.stderr_text()


def test_a_worker_refuses_a_generation_read_from_other_files(tmp_path: Path) -> None:
    """A worker builds exactly what the main process validated: if the files' signatures differ
    from those the main process read, it keeps what it serves (the main process publishes the
    newer change as the next generation)."""
    from gslb.reload import Files
    from gslb.settings import ServerSettings
    from gslb.workers import Ready, Worker

    from dnsserver import TEST_GEOIP

    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "workers.test.yaml").write_text(ZONE)
    settings = ServerSettings(zones=zones, geoip=TEST_GEOIP)
    validated = Files.look(zones, TEST_GEOIP)
    worker = Worker(settings, None, Ready(1, validated))  # type: ignore[arg-type]
    loaded, why = worker._build(Ready(2, validated))
    assert loaded is not None and why == ""
    (zones / "workers.test.yaml").write_text(ZONE.replace("192.0.2.12", "192.0.2.13") + "\n")
    loaded, why = worker._build(Ready(3, validated))
    assert loaded is None
    assert why == "the files changed since the main process read them (workers.test.yaml modified)"
    (zones / "extra.yaml").write_text(ZONE.replace("workers.test.", "extra.test."))
    assert worker._build(Ready(4, Files.look(zones, TEST_GEOIP)))[0] is not None


def metric_total(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def test_metrics_and_the_query_log_count_every_worker(tmp_path: Path) -> None:
    """Issue 13 rough edge 2: with --workers 2, /metrics and the query log used to see only the
    main process's share of the queries."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "workers.test.yaml").write_text(ZONE)
    query_log = tmp_path / "queries.jsonl"
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="workers.test.",
                                 extra=["--workers", "2", "--query-log", str(query_log)])
    try:
        wait_for_both_processes(server, 30)
        assert answers_from_many_sockets(server, 10) == {("192.0.2.11", "192.0.2.12")}
        # AAAA queries (NODATA): counted apart from every A query sent before.
        sent = 300
        for _ in range(sent):  # fresh source ports: the kernel spreads them over both processes
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2)
                sock.sendto(dns.message.make_query("www.workers.test.", "AAAA").to_wire(), (server.host, server.port))
                sock.recvfrom(4096)
        aaaa = {"zone": "workers.test.", "qtype": "AAAA"}
        wait_for(lambda: metric_total(url, "gslb_dns_queries_total", **aaaa) >= sent, 10, "every query counted in /metrics")
        assert metric_total(url, "gslb_dns_queries_total", **aaaa) == sent

        def logged() -> list[dict]:
            # Every line whole; a line still being written (no newline yet) is read next time.
            text = query_log.read_text()
            return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]

        wait_for(lambda: sum(entry["qtype"] == "AAAA" for entry in logged()) >= sent, 10, "every query in the query log")
        entries = logged()
        assert sum(entry["qtype"] == "AAAA" for entry in entries) == sent
        written = wait_for(lambda: _written(url) if _written(url) == len(entries) else None, 10,
                           "/status counting every process's log lines")
        assert written == len(entries)
        stderr = server.stderr_text()
        assert "Traceback" not in stderr, stderr
    finally:
        server.stop()


def _written(url: str) -> int:
    with urllib.request.urlopen(f"{url}/status", timeout=5) as response:
        return int(json.load(response)["query_log"]["written"])
