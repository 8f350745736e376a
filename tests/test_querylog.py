"""The query log: JSON lines with what was asked and answered, sampled, written off the hot path,
and never a reason for the server to stop."""

from __future__ import annotations

import errno
import io
import json
import os
import time
from pathlib import Path

import aiohttp
import dns.edns
import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import TEST_GEOIP, GslbProcess, wait_for
from gslb import service
from gslb.querylog import QueryLog
from gslb.settings import ServerSettings, load_settings
from opsserver import EU, US, ask, eventually, start_with_api, zone_text

RECORDS = "  www: {type: A, ttl: 60, pools: {eu: [192.0.2.10], us-east: [192.0.2.20]}}\n"


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("querylog") / "zones"
    directory.mkdir()
    (directory / "log.test.yaml").write_text(zone_text("log.test.", records=RECORDS))
    return directory


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged(path: Path, count: int, timeout: float = 5.0) -> list[dict]:
    """The first `count` entries, waiting for the writer (it flushes at least every second)."""
    return wait_for(lambda: (lambda found: found if len(found) >= count else None)(lines(path)), timeout,
                    f"{count} query log lines in {path}")


def test_every_query_is_logged_with_what_was_asked_and_answered(zones, tmp_path):
    log = tmp_path / "queries.jsonl"
    server = GslbProcess.start(zones, log_dir=tmp_path / "logs", probe_name="log.test.",
                               extra=["--api", "off", "--query-log", str(log)])
    try:
        query = dns.message.make_query("WWW.log.test", "A", use_edns=0, options=[dns.edns.ECSOption(EU, 24)])
        dns.query.udp(query, server.host, port=server.port, timeout=2)
        assert ask(server, "www.log.test", US, tcp=True) == ("NOERROR", ["192.0.2.20"])
        assert ask(server, "nothing.log.test", rdtype="AAAA")[0] == "NXDOMAIN"
        first, second, third = logged(log, 3)
    finally:
        server.stop()
    assert first["client"] == "127.0.0.1" and first["ecs"] == "10.1.0.0/24" and first["ecs_scope"] == 16
    assert (first["qname"], first["qtype"], first["rcode"]) == ("WWW.log.test.", "A", "NOERROR")
    assert (first["zone"], first["region"], first["answer"]) == ("log.test.", "eu", ["192.0.2.10"])
    assert first["transport"] == "udp" and 0 < first["latency_ms"] < 1000
    assert first["time"].endswith("Z") and abs(time.time() - _epoch(first["time"])) < 60
    assert (second["transport"], second["region"], second["answer"]) == ("tcp", "us-east", ["192.0.2.20"])
    assert (third["qname"], third["qtype"], third["rcode"]) == ("nothing.log.test.", "AAAA", "NXDOMAIN")
    assert third["ecs"] is None and third["region"] is None and third["answer"] == []


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_sample_logs_one_query_in_n(zones, tmp_path):
    log = tmp_path / "sampled.jsonl"
    server = GslbProcess.start(zones, log_dir=tmp_path / "logs", probe_name="log.test.",
                               extra=["--api", "off", "--query-log", str(log), "--query-log-sample", "10"])
    try:
        for _ in range(109):  # the 10th, 20th, ... 100th are logged
            ask(server, "hello.log.test", rdtype="TXT")
    finally:
        assert server.stop() == 0  # writes what is pending before it exits
    assert len(lines(log)) == 10


async def test_a_log_that_cannot_be_written_costs_entries_not_the_server(zones, tmp_path):
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="log.test.", extra=["--query-log", "/dev/full"])
    try:
        for _ in range(20):
            assert ask(server, "hello.log.test", rdtype="TXT")[0] == "NOERROR"
        async with aiohttp.ClientSession() as session:
            async def failed() -> bool:
                async with session.get(f"{url}/metrics") as response:
                    text = await response.text()
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "gslb_query_log_entries_total" and sample.labels == {"outcome": "failed"}:
                            return sample.value == 20
                return False

            await eventually(failed, 5, "20 failed entries counted")
        assert ask(server, "hello.log.test", rdtype="TXT")[0] == "NOERROR"
        wait_for(lambda: "query log: cannot write to /dev/full" in server.stderr_text(), 3, "the error logged")
    finally:
        assert server.stop() == 0
    assert server.stderr_text().count("query log: cannot write") == 1  # once a minute at most


def test_a_query_log_that_cannot_be_opened_stops_the_start(zones, tmp_path):
    import subprocess

    from dnsserver import gslb_command

    result = subprocess.run(gslb_command("serve", "--zones", str(zones), "--geoip", str(TEST_GEOIP), "--listen",
                                         "127.0.0.1:0", "--api", "off", "--query-log", str(tmp_path / "no" / "q.log")),
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert f"gslb: cannot open the query log {tmp_path / 'no' / 'q.log'}: No such file or directory" in result.stderr


# -- in process ------------------------------------------------------------------------------------

@pytest.fixture
def loaded(zones):  # type: ignore[no-untyped-def]
    loaded, problems = service.load(ServerSettings(zones=zones, geoip=TEST_GEOIP))
    assert problems == []
    return loaded


def test_the_log_is_off_by_default_and_then_the_answerer_holds_none(loaded):
    assert loaded.answerer.querylog is None
    settings, problems = load_settings(None, {})
    assert problems == [] and settings.query_log is None and settings.query_log_sample == 1


def test_a_malformed_query_is_logged_with_what_is_known(loaded, tmp_path):
    querylog = QueryLog(str(tmp_path / "q.jsonl"))
    loaded.answerer.querylog = querylog
    packet = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www"  # a question cut short
    reply = loaded.answerer.respond_udp(packet, "192.0.2.7")
    assert reply is not None and reply[3] & 0x0F == 1  # FORMERR
    querylog.stop()
    (entry,) = lines(tmp_path / "q.jsonl")
    assert entry["client"] == "192.0.2.7" and entry["rcode"] == "FORMERR" and entry["qname"] is None


def test_entries_beyond_the_backlog_limit_are_dropped_and_counted(loaded, tmp_path):
    querylog = QueryLog(str(tmp_path / "q.jsonl"), max_pending=5)
    loaded.answerer.querylog = querylog
    query = dns.message.make_query("hello.log.test", "TXT").to_wire()
    for _ in range(8):
        loaded.answerer.respond_udp(query, "::ffff:192.0.2.8")
    assert querylog.pending == 5 and querylog.dropped == 3
    querylog.stop()
    entries = lines(tmp_path / "q.jsonl")
    assert len(entries) == 5 and querylog.written == 5
    assert {e["client"] for e in entries} == {"192.0.2.8"}  # the IPv4-mapped form, unmapped


@pytest.mark.parametrize("text, problem", [
    ("query_log_sample: 0\n", "query_log_sample: must be a whole number >= 1 (1 = every query), got 0"),
    ("query_log_sample: often\n", "query_log_sample: must be a whole number >= 1"),
    ("query_log: [a]\n", "query_log: must be a file path, or - for standard output"),
])
def test_bad_query_log_settings_are_reported(tmp_path, text, problem):
    config = tmp_path / "gslb.yaml"
    config.write_text(text)
    _, problems = load_settings(config, {})
    assert [str(p) for p in problems] == [f"{config}: {problem}"] or str(problems[0]).startswith(f"{config}: {problem}")


def test_query_log_settings_from_the_file_and_flags(tmp_path):
    config = tmp_path / "gslb.yaml"
    config.write_text("query_log: logs/q.jsonl\nquery_log_sample: 4\n")
    settings, problems = load_settings(config, {})
    assert problems == [] and settings.query_log == str(tmp_path.resolve() / "logs" / "q.jsonl")
    assert settings.query_log_sample == 4
    settings, problems = load_settings(config, {"query_log": "-", "query_log_sample": "2"})
    assert problems == [] and (settings.query_log, settings.query_log_sample) == ("-", 2)
    _, problems = load_settings(None, {"query_log_sample": "0"})
    assert [str(p) for p in problems] == ["command line: --query-log-sample: must be a whole number >= 1 (1 = every query), got '0'"]


# -- a disk that fills up and then has room again ------------------------------------------------

class _Disk:
    """How many more bytes the device takes; None = room for everything."""

    def __init__(self, free: int | None) -> None:
        self.free = free


class _FlakyFile(io.RawIOBase):
    """A file on `disk`: a write takes what fits (a short write), then fails with ENOSPC, as
    write(2) does on a full filesystem; once the disk has room, writes succeed again."""

    def __init__(self, path: Path, disk: _Disk) -> None:
        super().__init__()
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._disk = disk

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
        data = bytes(data)
        if self._disk.free is not None:
            if self._disk.free <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = data[:self._disk.free]
            self._disk.free -= len(data)
        return self._file.write(data)

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_on(disk: _Disk, target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Path.open` of `target` opens it on `disk`, layered as io.open layers a real file."""
    real_open = Path.open

    def fake_open(self, mode="r", buffering=-1, encoding=None, errors=None, newline=None):  # type: ignore[no-untyped-def]
        if self != target or "r" in mode:
            return real_open(self, mode, buffering, encoding, errors, newline)
        raw = _FlakyFile(target, disk)
        if buffering == 0:
            return raw
        buffered = io.BufferedWriter(raw, buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors, newline=newline)

    monkeypatch.setattr(Path, "open", fake_open)


def test_after_a_full_disk_the_file_holds_exactly_the_entries_counted_written(loaded, tmp_path, monkeypatch):
    target = tmp_path / "q.jsonl"
    disk = _Disk(free=700)  # two or three entries' worth, then ENOSPC
    _open_on(disk, target, monkeypatch)
    querylog = QueryLog(str(target), flush_interval=0.02)
    loaded.answerer.querylog = querylog
    query = dns.message.make_query("hello.log.test", "TXT").to_wire()
    querylog.start()
    try:
        for _ in range(10):
            loaded.answerer.respond_udp(query, "192.0.2.9")
        wait_for(lambda: querylog.written + querylog.errors == 10, 5, "the first 10 entries written or lost")
        assert querylog.errors > 0, "the disk never filled up"
        disk.free = None  # room again: what was counted lost must stay lost
        for _ in range(10):
            loaded.answerer.respond_udp(query, "192.0.2.9")
        wait_for(lambda: querylog.written + querylog.errors == 20, 5, "the next 10 entries written")
    finally:
        querylog.stop()
    text = target.read_text()
    assert text.endswith("\n")
    entries = [json.loads(line) for line in text.splitlines()]  # no line cut short
    assert len(entries) == querylog.written and querylog.written + querylog.errors == 20
    assert querylog.errors >= 7 and all(e["qname"] == "hello.log.test." for e in entries)
