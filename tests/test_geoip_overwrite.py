"""A GeoIP file overwritten in place (`cp` onto the same inode) never takes the server down.

The server reads the .mmdb into memory once; a change to the file on disk is only ever seen by a
reload, which opens it anew and refuses it with a one-line error when it is not a MaxMind DB. Until
a good file comes, DNS and /explain answer from the last good data, exactly as before.
(Issue 11 item 3: the file used to be memory-mapped; a shorter file under the mapping killed the
process with SIGBUS on the next read, same-size random bytes made /explain fail with a 500.)
"""

from __future__ import annotations

import json
import random
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import maxminddb
import pytest

from dnsserver import TEST_GEOIP, TESTS, GslbProcess, wait_for
from opsserver import start_with_api

GEO_ZONES = TESTS / "data" / "zones_geo"
# Client addresses -> the region tests/data/zones_geo gives them with MaxMind's City test file.
# FIRST are asked before the file is overwritten, LATER only after: nothing about them can have
# been looked up and kept before, so answering them reads the GeoIP data the server holds.
FIRST = {"81.2.69.142": "eu", "216.160.83.56": "us-west", "175.16.199.1": "asia",
         "8.8.8.8": "us-east", "2001:480:10::1": "us-west", "2001:218::1": "asia"}
LATER = {"81.2.69.160": "eu", "216.160.83.60": "us-west", "175.16.199.200": "asia",
         "89.160.20.128": "eu", "67.43.156.1": "asia", "9.9.9.9": "us-east",
         "2001:480:10::ffff": "us-west", "2001:218::99": "asia"}
POOLS = {"us-east": "198.51.100.10", "us-west": "198.51.100.20", "eu": "203.0.113.10",
         "asia": "203.0.113.20"}  # www.geo.example's answer in each region
RELOAD_WAIT = 15.0  # the reloader polls the files once a second, then lets them settle


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[GslbProcess, str, Path]]:
    geoip = tmp_path / "city.mmdb"
    shutil.copyfile(TEST_GEOIP, geoip)
    process, url = start_with_api(GEO_ZONES, tmp_path / "logs", geoip=geoip, probe_name="geo.example.")
    yield process, url, geoip
    process.stop()


def overwrite_in_place(path: Path, content: bytes) -> None:
    """What `cp new.mmdb path` does: truncate the same inode and write into it."""
    inode = path.stat().st_ino
    with path.open("r+b") as file:
        file.truncate(0)
        file.write(content)
    assert path.stat().st_ino == inode


def dns_answer(server: GslbProcess, address: str) -> list[str]:
    """www.geo.example's A records for a client at `address` (ECS, the whole address), by dnspython."""
    source = 32 if ":" not in address else 128
    query = dns.message.make_query("www.geo.example.", "A", use_edns=0,
                                   options=[dns.edns.ECSOption(address, source)])
    reply = dns.query.udp(query, server.host, port=server.port, timeout=2)
    return sorted(rr.to_text() for rrset in reply.answer for rr in rrset)


def explain(url: str, address: str) -> tuple[int, dict]:
    query = urllib.parse.urlencode({"name": "www.geo.example", "client": address})
    try:
        with urllib.request.urlopen(f"{url}/explain?{query}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"body": error.read().decode("utf-8", "replace")}


def expected_geo(address: str) -> dict | None:
    """What /explain should say GeoIP knows of `address`: maxminddb's decode of the original file."""
    with maxminddb.open_database(str(TEST_GEOIP)) as reader:
        record = reader.get(address)
    if record is None:
        return None
    location = record.get("location") or {}
    return {"continent": record["continent"]["code"], "country": record["country"]["iso_code"],
            "subdivision": (record.get("subdivisions") or [{}])[0].get("iso_code"),
            "latitude": location.get("latitude"), "longitude": location.get("longitude")}


def assert_served_from_the_original_file(process: GslbProcess, url: str, clients: dict[str, str]) -> None:
    for address, region in clients.items():
        status, body = explain(url, address)
        assert status == 200, (address, body, process.describe())
        assert body["region"] == region, (address, body)
        assert (body.get("geo") or None) == expected_geo(address), (address, body)
        assert dns_answer(process, address) == [POOLS[region]], address


def shorter(content: bytes) -> bytes:
    return content[:len(content) // 3]  # a download cut short: no metadata, most data gone


def same_size_random(content: bytes) -> bytes:
    return random.Random(1).randbytes(len(content))


@pytest.mark.parametrize("damage", [shorter, same_size_random], ids=["shorter", "same-size-random"])
def test_geoip_file_overwritten_in_place_keeps_the_last_good_data(server, damage):
    process, url, geoip = server
    assert_served_from_the_original_file(process, url, FIRST)

    overwrite_in_place(geoip, damage(TEST_GEOIP.read_bytes()))
    # At once, before any reload has looked at the file: new clients, so nothing comes from a cache.
    assert_served_from_the_original_file(process, url, dict(list(LATER.items())[:4]))
    assert process.alive(), process.describe()

    # The reload that notices the file refuses it in one line and keeps serving.
    wait_for(lambda: "reload (" in process.stderr_text() and "failed" in process.stderr_text(),
             RELOAD_WAIT, "the reload of the overwritten GeoIP file to fail")
    log = process.stderr_text()
    rejected = [line for line in log.splitlines() if f"GeoIP file {geoip}" in line]
    assert rejected and all("not a MaxMind DB" in line for line in rejected), log
    assert_served_from_the_original_file(process, url, dict(list(LATER.items())[4:]))
    assert_served_from_the_original_file(process, url, FIRST)
    assert process.alive() and "Traceback" not in process.stderr_text(), process.describe()


def test_a_good_file_written_in_place_is_served_after_the_reload(server):
    process, url, geoip = server
    assert explain(url, "81.2.69.142")[1]["geo"]["subdivision"] == "ENG"
    # The Country file of the same networks: no subdivisions, no locations.
    overwrite_in_place(geoip, (TEST_GEOIP.parent / "GeoIP2-Country-Test.mmdb").read_bytes())
    wait_for(lambda: explain(url, "81.2.69.142")[1].get("geo", {}).get("subdivision", "ENG") is None,
             RELOAD_WAIT, "the reload to serve the new GeoIP file")
    assert dns_answer(process, "81.2.69.142") == [POOLS["eu"]]
    assert process.alive() and "Traceback" not in process.stderr_text(), process.describe()
