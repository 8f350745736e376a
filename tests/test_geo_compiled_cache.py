"""Compiled region tables kept: shared in memory, cached on disk, compiled in the background.

Every test gets its own cache directory ($GSLB_CACHE_DIR) and an empty in-memory registry.
"""

from __future__ import annotations

import os
import random
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from dnsserver import wait_for
from gslb.geo import GeoDatabase, RegionMap
from gslb.geo import compiled_cache
from gslb.geo.compiled import RegionTable
from test_geo_database import city_record, write
from test_geo_regionmap import IPV4_MAPPED, write_mmdb, zone_rules

BACKGROUND_DEADLINE = 60  # seconds; a compile of the test file takes well under one


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(compiled_cache.CACHE_DIR_VARIABLE, str(directory))
    compiled_cache._tables.clear()
    compiled_cache._pending.clear()
    yield directory
    compiled_cache._tables.clear()
    compiled_cache._pending.clear()


@pytest.fixture()
def database(tmp_path) -> GeoDatabase:
    with GeoDatabase.open(write_mmdb(tmp_path / "city.mmdb")) as opened:
        yield opened


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("regions-*.table")) if directory.is_dir() else []


def sample_addresses(count: int = 300) -> list:
    rng = random.Random(4)
    addresses = []
    for _ in range(count):
        addresses.append(IPv4Address((10 << 24) | rng.getrandbits(18)))
        addresses.append(IPv6Address(IPV4_MAPPED | (10 << 24) | rng.getrandbits(18)))
        addresses.append(IPv6Address((0x20010DB8 << 96) | rng.getrandbits(80)))
        addresses.append(IPv4Address(rng.getrandbits(32)))
    return addresses


def answers(regions: RegionMap, addresses) -> list:
    return [regions.place(address) for address in addresses]


# -- disk and memory ------------------------------------------------------------------------------
def test_a_second_map_loads_the_cache_file_the_first_wrote(database, cache, monkeypatch):
    first = RegionMap(database, zone_rules(), compile="sync")
    assert first.table_status == "compiled" and len(cache_files(cache)) == 1
    compiled_cache._tables.clear()  # as in a new process: only the file is left
    monkeypatch.setattr(RegionTable, "compile", lambda *a: pytest.fail("compiled again"))
    second = RegionMap(database, zone_rules())  # background: a cached table is loaded at once
    assert second.ready() and second.table is not first.table
    assert answers(second, sample_addresses()) == answers(first, sample_addresses())


def test_maps_of_one_file_and_rules_share_a_table_and_other_rules_get_their_own(database, cache):
    first = RegionMap(database, zone_rules(), compile="sync")
    second = RegionMap(database, zone_rules())
    other = RegionMap(database, zone_rules(subnets=[("10.1.0.0/16", "asia")]), compile="sync")
    assert second.table is first.table
    assert other.table is not first.table
    assert len(cache_files(cache)) == 2


def test_key_changes_with_the_rules_and_the_file(database):
    key = compiled_cache.table_key(database, zone_rules())
    assert key == compiled_cache.table_key(database, zone_rules())
    assert key != compiled_cache.table_key(database, zone_rules(default_region="eu"))
    assert key != compiled_cache.table_key(database, zone_rules(subnets=[]))
    assert key != compiled_cache.table_key(database, zone_rules(locations={"eu": (50.0, 8.0)}))
    stat = os.stat(database.path)
    os.utime(database.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert key != compiled_cache.table_key(database, zone_rules())


@pytest.mark.parametrize("damage", ["flip", "garbage", "empty"])
def test_a_damaged_cache_file_is_compiled_again_and_replaced(database, cache, damage):
    good = RegionMap(database, zone_rules(), compile="sync")
    [path] = cache_files(cache)
    content = bytearray(path.read_bytes())
    if damage == "flip":
        content[-2] ^= 0x01
    elif damage == "garbage":
        content = bytearray(b"not a table at all\n")
    else:
        content = bytearray()
    path.write_bytes(bytes(content))
    compiled_cache._tables.clear()
    again = RegionMap(database, zone_rules(), compile="sync")
    assert again.table is not good.table
    assert answers(again, sample_addresses()) == answers(good, sample_addresses())
    assert RegionTable.loads(path.read_bytes())[0].ranges == good.table.ranges  # rewritten


def test_an_unwritable_cache_directory_still_gives_a_table(database, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a directory cannot be made under a file")
    monkeypatch.setenv(compiled_cache.CACHE_DIR_VARIABLE, str(blocker / "cache"))
    expected = answers(RegionMap(database, zone_rules(), compile="off", work_budget=10**9), sample_addresses())
    synchronous = RegionMap(database, zone_rules(), compile="sync")
    assert synchronous.ready() and answers(synchronous, sample_addresses()) == expected
    compiled_cache._tables.clear()
    background = RegionMap(database, zone_rules())  # the table comes through the pipe instead
    wait_for(background.ready, BACKGROUND_DEADLINE, "the background compile")
    assert answers(background, sample_addresses()) == expected


def test_no_home_and_no_cache_directory_still_gives_a_table(database, monkeypatch):
    monkeypatch.delenv(compiled_cache.CACHE_DIR_VARIABLE)
    monkeypatch.setattr(compiled_cache, "cache_dir", lambda: None)
    assert RegionMap(database, zone_rules(), compile="sync").ready()


# -- background ------------------------------------------------------------------------------------
def test_lookups_are_lazy_until_the_background_table_is_ready_then_read_it(database, cache):
    addresses = sample_addresses()
    expected = answers(RegionMap(database, zone_rules(), compile="off", work_budget=10**9), addresses)
    regions = RegionMap(database, zone_rules(), work_budget=10**9)
    sharing = RegionMap(database, zone_rules(), work_budget=10**9)  # the same compile, not another
    assert regions.table_status == "compiling" and regions.table is None
    assert answers(regions, addresses) == expected  # lazily, meanwhile
    wait_for(regions.ready, BACKGROUND_DEADLINE, "the background compile")
    assert regions.table_status == "compiled" and len(cache_files(cache)) == 1
    assert answers(regions, addresses) == expected
    assert [regions.locate(a) for a in addresses[:50]] == [
        RegionMap(database, zone_rules(), compile="off").locate(a) for a in addresses[:50]]
    assert sharing.ready() and sharing.table is regions.table


def test_lazy_lookups_notice_the_finished_compile_themselves(database):
    regions = RegionMap(database, zone_rules())
    rng = random.Random(9)
    wait_for(lambda: regions.locate(IPv4Address(rng.getrandbits(32))) and regions.table is not None,
             BACKGROUND_DEADLINE, "a lookup to switch to the table")


def test_a_failed_background_compile_leaves_lookups_lazy(tmp_path):
    path = write(tmp_path / "corrupt.mmdb", {"192.0.2.0/24": city_record("EU", "GB", "ENG", 51.5, -0.1),
                                             "198.51.100.0/24": city_record("AS", "JP", "13", 35.7, 139.7)})
    with GeoDatabase.open(path) as database:  # damage the record of 192.0.2.0/24
        record = database.start(4)
        for bit in f"{0xC0000200:032b}"[:24]:
            record = database.children(record)[int(bit)]
        at = record - database.node_count - 16 + database.node_count * database.record_size // 4 + 16
    content = bytearray(path.read_bytes())
    content[at:at + 8] = b"\xff" * 8
    path.write_bytes(bytes(content))
    with GeoDatabase.open(path) as database:
        regions = RegionMap(database, zone_rules())
        wait_for(lambda: not regions.ready() and regions.table_status == "lazy", BACKGROUND_DEADLINE,
                 "the background compile to fail")
        assert regions.locate(ip_address("198.51.100.7")).region == "asia"


def test_compile_off_makes_no_table_and_no_file(database, cache):
    regions = RegionMap(database, zone_rules(), compile="off")
    regions.locate(ip_address("10.1.0.5"))
    assert not regions.ready() and regions.table_status == "lazy" and not cache_files(cache)
    with pytest.raises(ValueError):
        RegionMap(database, zone_rules(), compile="later")


# -- the compile lock --------------------------------------------------------------------------------
def test_compile_lock_of_a_live_process_is_respected_and_of_a_dead_one_taken_over(tmp_path):
    lock = compiled_cache._Lock(tmp_path / "regions-x.lock")
    (tmp_path / "regions-x.lock").write_text(str(os.getppid()))  # alive: our parent
    assert not lock.acquire()
    (tmp_path / "regions-x.lock").write_text(str(dead_pid()))
    assert lock.acquire() and (tmp_path / "regions-x.lock").read_text() == str(os.getpid())
    lock.release()
    assert not (tmp_path / "regions-x.lock").exists()


def test_a_compile_waits_for_the_file_of_another_process_compiling_the_same_key(database, cache):
    rules = zone_rules()
    RegionMap(database, rules, compile="sync")  # the other process's file
    [target] = cache_files(cache)
    target.with_suffix(".lock").write_text(str(os.getppid()))  # ... and its lock, held
    key = compiled_cache.table_key(database, rules)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RegionTable, "compile", lambda *a: pytest.fail("compiled again"))
        result = compiled_cache._compile_for(database.path, key, compiled_cache.rules_spec(rules), cache)
    assert result == {"kind": "file", "path": str(target), "temporary": False}
    assert target.with_suffix(".lock").exists()  # not ours to remove


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
