"""What sits at a configured path cannot stall or bloat a real `gslb serve` (issue 11 items 5 and 7),
and what `check` accepts is what the server answers (TTL durations, issue 13 rough edge 7)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import aiohttp
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsserver import TEST_GEOIP, gslb_command
from opsserver import ask, eventually, get_json, post_json, start_with_api, write_atomically, zone_text

TOKEN = "s3cret-token"


def write_zone(directory: Path, text: str, name: str = "dur.example.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory


def test_a_fifo_at_the_state_path_blocks_neither_start_nor_answers(tmp_path):
    zones = write_zone(tmp_path / "zones", zone_text())
    (tmp_path / "token").write_text(TOKEN + "\n")
    fifo = tmp_path / "state.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    # Before the fix the main thread blocked in open() on the FIFO until SIGTERM: no listener ever.
    server, _url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.",
                                  extra=["--state", str(fifo), "--api-token-file", str(tmp_path / "token")])
    try:
        assert time.monotonic() - started < 8
        reply = dns.query.udp(dns.message.make_query("hello.ops.test.", "TXT"), server.host, port=server.port, timeout=2)
        assert dns.rcode.to_text(reply.rcode()) == "NOERROR"
        assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ['"hello"']
        lines = [line for line in server.stderr_text().splitlines() if str(fifo) in line]
        assert len(lines) == 1 and lines[0].endswith(
            f"admin state file {fifo}: not read: the file is a FIFO (named pipe), not a regular file; "
            "keeping the 0 previous override(s)"), lines
    finally:
        server.stop()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


async def test_an_admin_write_keeps_the_state_files_mode(tmp_path):
    records = "  www: {type: A, check: web, pools: {eu: [127.0.0.111], us-east: [127.0.0.121]}}\n"
    zones = write_zone(tmp_path / "zones", zone_text(records=records), "ops.test.yaml")
    (tmp_path / "token").write_text(TOKEN + "\n")
    state = tmp_path / "state.yaml"
    state.write_text("{}\n")
    os.chmod(state, 0o640)  # group-readable for a monitoring agent, as an operator may set it
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.",
                                 extra=["--state", str(state), "--api-token-file", str(tmp_path / "token")])
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            status, _body, text = await post_json(http, f"{url}/admin/endpoints/127.0.0.111", json={"state": "down"},
                                                  headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, text
    finally:
        server.stop()
    assert "127.0.0.111: down" in state.read_text()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o640  # was 0600, mkstemp's mode


def test_serve_refuses_a_sparse_3gb_zone_file_at_once_with_one_line(tmp_path):
    zones = write_zone(tmp_path / "zones", zone_text())
    with (zones / "x.yaml").open("wb") as file:
        file.truncate(3 * 2**30)  # sparse: costs no disk
    started = time.monotonic()
    result = subprocess.run(gslb_command("serve", "--zones", str(zones), "--geoip", str(TEST_GEOIP),
                                         "--listen", "127.0.0.1:0", "--api", "off"),
                            capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 15  # it took ~8 s of reading and 5 GB before
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        (f"{zones / 'x.yaml'}: not read: the file is 3 GiB, more than the 64 MiB limit (max_zone_file_size); "
         "is it the right file?"),
        "gslb: 1 problem found",
    ]


@pytest.mark.parametrize(("ttl", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1h30m", 5400)])
def test_a_ttl_written_as_a_duration_is_served_in_seconds(start_server, tmp_path, ttl, seconds):
    zones = write_zone(tmp_path / "zones", f"""\
origin: dur.example.
ttl: 2m
ns: [ns1.dur.example.]
soa: {{refresh: 1h, retry: 10m, expire: 2w, minimum: 1m}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  www: {{type: A, value: 192.0.2.7, ttl: {ttl}}}
""")
    server = start_server(zones, probe_name="dur.example.")
    reply = server.query("www.dur.example.", "A")
    (rrset,) = reply.answer
    assert rrset.ttl == seconds and [rr.to_text() for rr in rrset] == ["192.0.2.7"]
    soa_reply = server.query("dur.example.", "SOA")
    (soa,) = soa_reply.answer
    assert soa.ttl == 120
    assert (soa[0].refresh, soa[0].retry, soa[0].expire, soa[0].minimum) == (3600, 600, 1209600, 60)


async def test_a_reload_into_an_alias_bomb_fails_with_a_short_status_and_keeps_serving(tmp_path):
    zones = write_zone(tmp_path / "zones", zone_text(), "ops.test.yaml")
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="ops.test.")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            _, before = await get_json(http, f"{url}/status")
            # 7 levels of nine: once a 34.7 MB problem line, in the log and in /status.
            parts = ['&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
            parts += [f"&l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 7)]
            bomb = zone_text().replace("origin: ops.test.\n", "origin: ops.test.\nttl: [" + ", ".join(parts) + "]\n")
            write_atomically(zones / "ops.test.yaml", bomb)
            server.process.send_signal(signal.SIGHUP)

            async def failed() -> dict | None:
                _, body = await get_json(http, f"{url}/status")
                config = body["config"]
                done = config["reloads"]["failed"] > before["config"]["reloads"]["failed"]
                return config if done else None

            config = await eventually(failed, 15, "the reload into the bomb to fail")
            async with http.get(f"{url}/status") as response:
                size = len(await response.read())
        (problem,) = config["last_reload"]["problems"]
        assert problem.startswith(f"{zones / 'ops.test.yaml'}: YAML error at line 3, column ")
        assert "aliases here repeat more than 10,000 nodes" in problem
        assert size < 64 * 1024, f"/status is {size} bytes"
        assert ask(server, "hello.ops.test", rdtype="TXT") == ("NOERROR", ['"hello"'])  # the old zone serves
        assert max(len(line) for line in server.stderr_text().splitlines()) < 1000
    finally:
        server.stop()
