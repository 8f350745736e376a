"""Hot reload as a client sees it: a real `gslb serve`, SIGHUP and file changes, queries in flight.

The zone `reload.test.` has `flip` (A 192.0.2.1 or 192.0.2.2, the two good configurations) and a
GSLB record `www` whose endpoints are checked. Bad configurations are of every kind a reload can
meet: a field that does not validate, YAML that does not parse, a second file for the same zone,
an unusable GeoIP file.
"""

from __future__ import annotations

import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import TEST_GEOIP, GslbProcess, TcpStream
from opsserver import Sites, ask, ask_async, eventually, get_json, sites_on, start_with_api, write_atomically, zone_text

GOOD = ("192.0.2.1", "192.0.2.2")


def zone(flip: str, *, serial: int = 1, port: int = 9, www: str = "[127.0.0.151], us-east: [127.0.0.152]") -> str:
    records = (f"  flip: {{type: A, value: {flip}}}\n"
               f"  www: {{type: A, check: web, pools: {{eu: {www}}}}}\n")
    return zone_text("reload.test.", port=port, records=records, serial=serial)


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    running = sites_on(["127.0.0.151", "127.0.0.152", "127.0.0.153"])
    running.http("127.0.0.152", "127.0.0.153")  # 127.0.0.151 never answers: DOWN after `fall` probes
    yield running
    running.close()


@pytest.fixture
def world(sites: Sites, tmp_path: Path) -> Iterator[tuple[GslbProcess, str, Path, Path]]:
    zones = tmp_path / "zones"
    zones.mkdir()
    geoip = tmp_path / "geo.mmdb"
    shutil.copyfile(TEST_GEOIP, geoip)
    (zones / "reload.test.yaml").write_text(zone(GOOD[0], port=sites.port))
    server, url = start_with_api(zones, tmp_path / "logs", geoip=geoip, probe_name="reload.test.")
    yield server, url, zones, geoip
    server.stop()
    assert "Traceback" not in server.stderr_text(), server.stderr_text()


async def reloads(session: aiohttp.ClientSession, url: str) -> dict:
    status, body = await get_json(session, f"{url}/status")
    assert status == 200
    return body["config"]


class Clients:
    """Queries `flip.reload.test A` back to back, one at a time, over UDP (a fresh datagram each,
    no retry, 1s timeout) and over one long-lived TCP connection, until stopped."""

    def __init__(self, server: GslbProcess) -> None:
        self.server = server
        self.answers: dict[str, int] = {}
        self.sent = 0
        self.lost: list[str] = []
        self.other: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._udp, daemon=True), threading.Thread(target=self._tcp, daemon=True)]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _note(self, wire: bytes | None, query: dns.message.Message, transport: str) -> None:
        self.sent += 1
        if wire is None:
            self.lost.append(f"{transport} id {query.id}: no answer within 1s")
            return
        reply = dns.message.from_wire(wire)
        addresses = [rr.to_text() for rrset in reply.answer for rr in rrset]
        if reply.id != query.id or reply.rcode() != 0 or len(addresses) != 1 or addresses[0] not in GOOD:
            self.other.append(f"{transport}: {dns.rcode.to_text(reply.rcode())} {addresses}")
            return
        self.answers[addresses[0]] = self.answers.get(addresses[0], 0) + 1

    def _udp(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            while not self._stop.is_set():
                query = dns.message.make_query("flip.reload.test", "A")
                sock.sendto(query.to_wire(), (self.server.host, self.server.port))
                try:
                    wire, _ = sock.recvfrom(65535)
                except TimeoutError:
                    wire = None
                self._note(wire, query, "udp")

    def _tcp(self) -> None:
        with TcpStream(self.server.host, self.server.port, timeout=1.0) as stream:
            while not self._stop.is_set():
                query = dns.message.make_query("flip.reload.test", "A")
                stream.send(query)
                self._note(stream.recv_message(1.0), query, "tcp")


def bad_configuration(step: int, zones: Path, geoip: Path, port: int) -> tuple[str, str]:
    """Make the configuration bad in one of four ways; (what, a line the log must show)."""
    kind = step % 4
    if kind == 0:
        write_atomically(zones / "reload.test.yaml", zone("192.0.2.300", port=port))
        return "bad field", f"{zones / 'reload.test.yaml'}: records.flip.value: must be an IPv4 address, got '192.0.2.300'"
    if kind == 1:
        write_atomically(zones / "reload.test.yaml", "origin: reload.test.\nrecords: {flip: [\n")
        return "bad YAML", f"{zones / 'reload.test.yaml'}: YAML error"
    if kind == 2:
        write_atomically(zones / "zz-again.yaml", zone(GOOD[0], port=port))
        return "duplicate zone", f"{zones / 'zz-again.yaml'}: origin: reload.test. is already served by"
    write_atomically(geoip, b"not a maxmind database")
    return "bad GeoIP", f"GeoIP file {geoip}: "


def good_configuration(step: int, zones: Path, geoip: Path, port: int) -> str:
    (zones / "zz-again.yaml").unlink(missing_ok=True)
    if geoip.read_bytes()[:4] == b"not ":
        write_atomically(geoip, TEST_GEOIP.read_bytes())
    flip = GOOD[(step // 2 + 1) % 2]
    write_atomically(zones / "reload.test.yaml", zone(flip, serial=step + 2, port=port))
    return flip


async def test_twenty_reloads_under_continuous_queries_lose_no_query(world, sites):
    server, url, zones, geoip = world
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        with Clients(server) as clients:
            await eventually(lambda: _true(clients.sent > 50), 5, "the clients running")
            for step in range(20):
                before = await reloads(session, url)
                if step % 2 == 0:
                    flip = await_flip = good_configuration(step, zones, geoip, sites.port)
                    server.process.send_signal(signal.SIGHUP)
                    config = await eventually(lambda: _reloaded(session, url, before, ok=True), 5, f"reload {step} (good)")
                    assert config["last_reload"]["problems"] == []
                    assert await ask_async(server, "flip.reload.test") == ("NOERROR", [await_flip])
                else:
                    what, line = bad_configuration(step // 2, zones, geoip, sites.port)
                    server.process.send_signal(signal.SIGHUP)
                    config = await eventually(lambda: _reloaded(session, url, before, ok=False), 5,
                                              f"reload {step} ({what}) failing")
                    assert any(problem.startswith(line) for problem in config["last_reload"]["problems"]), config
                    assert line in server.stderr_text()
                    assert await ask_async(server, "flip.reload.test") == ("NOERROR", [flip])  # the old one serves
            await eventually(lambda: _true(clients.sent > 1000), 10, "a few more queries after the last reload")
        final = await reloads(session, url)
    assert clients.lost == [], clients.lost[:10]
    assert clients.other == [], clients.other[:10]
    assert set(clients.answers) == set(GOOD), clients.answers
    assert final["reloads"]["ok"] >= 10 and final["reloads"]["failed"] >= 10, final
    stderr = server.stderr_text()
    assert "still serving the configuration loaded at" in stderr
    assert "GeoIP reopened" in stderr and "GeoIP unchanged" in stderr


async def _true(value: bool) -> bool:
    return value


async def _reloaded(session: aiohttp.ClientSession, url: str, before: dict, *, ok: bool) -> dict | None:
    config = await reloads(session, url)
    counter = "ok" if ok else "failed"
    if config["reloads"][counter] > before["reloads"][counter] and config["last_reload"]["ok"] is ok:
        return config
    return None


async def test_a_changed_added_or_removed_zone_file_reloads_without_a_signal(world, sites):
    server, url, zones, _ = world
    write_atomically(zones / "reload.test.yaml", zone(GOOD[1], serial=2, port=sites.port))
    await eventually(lambda: _equal(ask_async(server, "flip.reload.test"), ("NOERROR", [GOOD[1]])), 5, "the new address")
    write_atomically(zones / "extra.yaml", zone_text("extra.test.", port=sites.port))
    await eventually(lambda: _equal(ask_async(server, "hello.extra.test", rdtype="TXT"), ("NOERROR", ['"hello"'])),
                     5, "the added zone served")
    (zones / "extra.yaml").unlink()
    await eventually(lambda: _equal(ask_async(server, "hello.extra.test", rdtype="TXT"), ("REFUSED", [])),
                     5, "the removed zone no longer served")
    stderr = server.stderr_text()
    assert "reloaded (reload.test.yaml modified)" in stderr and "reloaded (extra.yaml added)" in stderr
    assert "reloaded (extra.yaml removed)" in stderr


async def _equal(coroutine, expected):  # type: ignore[no-untyped-def]
    return (await coroutine) == expected


async def test_a_failed_reload_is_counted_in_metrics_and_the_old_config_keeps_serving(world, sites):
    server, url, zones, _ = world
    write_atomically(zones / "reload.test.yaml", zone("192.0.2.300", port=sites.port))
    server.process.send_signal(signal.SIGHUP)
    async with aiohttp.ClientSession() as session:
        async def failed() -> dict | None:
            async with session.get(f"{url}/metrics") as response:
                text = await response.text()
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(text) for s in family.samples}
            return samples if samples.get(("gslb_config_reloads_total", (("result", "failed"),)), 0) >= 1 else None

        samples = await eventually(failed, 5, "the failure counted")
        assert samples[("gslb_config_last_reload_successful", ())] == 0
        status, body = await get_json(session, f"{url}/healthz")
        assert status == 200  # still serving the last good configuration
    assert ask(server, "flip.reload.test") == ("NOERROR", [GOOD[0]])
    assert "reload (SIGHUP" in server.stderr_text() or "reload (reload.test.yaml modified" in server.stderr_text()


async def test_health_state_is_kept_for_endpoints_that_stay_and_new_ones_start_cold(world, sites):
    server, url, zones, _ = world
    async with aiohttp.ClientSession() as session:
        async def states() -> dict[str, dict]:
            return {e["address"]: e for e in (await get_json(session, f"{url}/status"))[1]["endpoints"]}

        async def down_151() -> dict | None:
            found = await states()
            return found if found["127.0.0.151"]["status"] == "DOWN" else None

        await eventually(down_151, 5, "127.0.0.151 DOWN (nothing answers there)")
        before = await reloads(session, url)
        # 151 stays, 152 goes, 153 comes (cold start up: served before its first probe).
        write_atomically(zones / "reload.test.yaml",
                         zone(GOOD[0], serial=5, port=sites.port, www="[127.0.0.151], us-east: [127.0.0.153]"))
        server.process.send_signal(signal.SIGHUP)
        await eventually(lambda: _reloaded(session, url, before, ok=True), 5, "the reload")
        found = await states()
        assert set(found) == {"127.0.0.151", "127.0.0.153"}
        assert found["127.0.0.151"]["status"] == "DOWN" and found["127.0.0.151"]["failures"] >= 2
        assert found["127.0.0.153"]["status"] == "UP"
    assert ask(server, "www.reload.test", "10.1.0.0") == ("NOERROR", ["127.0.0.153"])
