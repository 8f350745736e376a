"""Region tables kept: shared in memory, cached on disk, built when neither has one.

Every test gets its own cache directory ($GSLB_CACHE_DIR) and an empty in-memory registry.
"""

from __future__ import annotations

import logging
import random
import threading
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from gslb.geo import (
    GeoDatabase,
    GeoDataError,
    Locator,
    TableCache,
    build_locator,
    tablecache,
)
from gslb.geo.regiontable import RegionTable
from test_geo_locator import IPV4_MAPPED, NETWORKS, write_mmdb, zone_rules
from test_geo_mmdb import city_record, write


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(tablecache.CACHE_DIR_VARIABLE, str(directory))
    tablecache._tables.clear()
    tablecache._warned.clear()
    yield directory
    tablecache._tables.clear()
    tablecache._warned.clear()


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


def answers(regions: Locator, addresses) -> list:
    return [regions.place(address) for address in addresses]


def locator(database, rules=None, directory: Path | None = None) -> Locator:
    """A locator whose table comes through the cache in ``directory`` (default: the default place)."""
    return build_locator(rules or zone_rules(), database, TableCache.at(directory))


# -- disk and memory ------------------------------------------------------------------------------
def test_a_second_map_loads_the_cache_file_the_first_wrote(database, cache, monkeypatch):
    first = locator(database)
    assert first.table is not None and len(cache_files(cache)) == 1
    tablecache._tables.clear()  # as in a new process: only the file is left
    monkeypatch.setattr(RegionTable, "compile", lambda *a: pytest.fail("compiled again"))
    second = locator(database)  # a cached table is loaded at once
    assert second.table is not None and second.table is not first.table
    assert answers(second, sample_addresses()) == answers(first, sample_addresses())


def test_maps_of_one_file_and_rules_share_a_table_and_other_rules_get_their_own(database, cache):
    first = locator(database)
    second = locator(database)
    other = locator(database, zone_rules(subnets=[("10.1.0.0/16", "asia")]))
    assert second.table is first.table
    assert other.table is not first.table
    assert len(cache_files(cache)) == 2


def test_key_changes_with_the_rules_and_the_file(database, tmp_path):
    key = tablecache.table_key(database, zone_rules())
    assert key == tablecache.table_key(database, zone_rules())
    assert key != tablecache.table_key(database, zone_rules(default_region="eu"))
    assert key != tablecache.table_key(database, zone_rules(subnets=[]))
    assert key != tablecache.table_key(database, zone_rules(locations={"eu": (50.0, 8.0)}))
    # The key is the file's content: other data is another key, a copy elsewhere the same one.
    changed = write_mmdb(tmp_path / "changed.mmdb", NETWORKS[:-1])
    assert key != tablecache.table_key(GeoDatabase.open(changed), zone_rules())
    copy = tmp_path / "elsewhere" / "city.mmdb"
    copy.parent.mkdir()
    copy.write_bytes(Path(database.path).read_bytes())
    assert key == tablecache.table_key(GeoDatabase.open(copy), zone_rules())


@pytest.mark.parametrize("damage", ["flip", "garbage", "empty"])
def test_a_damaged_cache_file_is_compiled_again_and_replaced(database, cache, damage):
    good = locator(database)
    [path] = cache_files(cache)
    content = bytearray(path.read_bytes())
    if damage == "flip":
        content[-2] ^= 0x01
    elif damage == "garbage":
        content = bytearray(b"not a table at all\n")
    else:
        content = bytearray()
    path.write_bytes(bytes(content))
    tablecache._tables.clear()
    again = locator(database)
    assert again.table is not good.table
    assert answers(again, sample_addresses()) == answers(good, sample_addresses())
    assert RegionTable.loads(path.read_bytes())[0].ranges == good.table.ranges  # rewritten


def test_an_unwritable_cache_directory_still_gives_a_table_and_one_warning(database, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("a directory cannot be made under a file")
    expected = answers(build_locator(zone_rules(), database), sample_addresses())  # in memory, no cache
    with caplog.at_level(logging.WARNING, logger="gslb.geo.tablecache"):
        synchronous = locator(database, directory=blocker / "cache")
        assert synchronous.table is not None and answers(synchronous, sample_addresses()) == expected
        tablecache._tables.clear()  # a reload, say: built again, not warned again
        again = locator(database, directory=blocker / "cache")
        assert answers(again, sample_addresses()) == expected
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"{blocker / 'cache'} not writable" in warnings[0] and "in memory" in warnings[0]


def test_a_read_only_cache_directory_still_gives_a_table(database, tmp_path, caplog):
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        with caplog.at_level(logging.WARNING, logger="gslb.geo.tablecache"):
            assert locator(database, directory=directory).table is not None
    finally:
        directory.chmod(0o700)
    if not cache_files(directory):  # root may write anyway: then there is nothing to warn about
        assert ["not writable" in record.getMessage() for record in caplog.records] == [True]


def test_no_home_and_no_cache_directory_still_gives_a_table(database, monkeypatch, caplog):
    monkeypatch.delenv(tablecache.CACHE_DIR_VARIABLE)
    monkeypatch.setattr(tablecache, "default_cache_dir", lambda: None)
    with caplog.at_level(logging.WARNING, logger="gslb.geo.tablecache"):
        assert locator(database).table is not None
        assert locator(database).table is not None
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert "no cache directory" in caplog.records[0].getMessage()


def test_the_cache_directory_setting_wins_over_the_environment(database, cache, tmp_path):
    chosen = tmp_path / "chosen"
    locator(database, directory=chosen)
    assert len(cache_files(chosen)) == 1 and not cache_files(cache)


# -- building ----------------------------------------------------------------------------------------
def test_a_file_whose_table_cannot_be_built_is_refused_in_one_line(tmp_path):
    # The build step raises; the reload that called it keeps serving the old generation.
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
    with GeoDatabase.open(path) as database, pytest.raises(GeoDataError) as caught:
        locator(database)
    assert str(caught.value).startswith(f"GeoIP file {path}: corrupt (") and "\n" not in str(caught.value)


def test_concurrent_builds_of_one_key_build_once(database, monkeypatch):
    # A reload's worker thread and a one-off build (explain) may ask for the same table at once.
    compile_ = RegionTable.compile
    calls = []

    def slow_compile(*args):
        calls.append(args)
        return compile_(*args)

    monkeypatch.setattr(RegionTable, "compile", slow_compile)
    results: list[Locator] = []
    threads = [threading.Thread(target=lambda: results.append(locator(database))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and len(calls) == 1
    assert all(result.table is results[0].table for result in results)


def test_without_geoip_the_table_is_built_from_the_rules_and_not_cached(cache):
    regions = locator(None)
    assert regions.locate(ip_address("10.0.0.70")).region == "asia"
    assert not cache_files(cache)


# -- the setting -------------------------------------------------------------------------------------
def test_cache_dir_comes_from_the_config_file_relative_to_it_and_the_flag_wins(tmp_path):
    from gslb.settings import load_settings

    config = tmp_path / "etc" / "gslb.yaml"
    config.parent.mkdir()
    config.write_text("cache_dir: tables\n")
    settings, problems = load_settings(config, {})
    assert problems == [] and settings.cache_dir == config.parent.resolve() / "tables"
    settings, problems = load_settings(config, {"cache_dir": str(tmp_path / "flag")})
    assert problems == [] and settings.cache_dir == tmp_path / "flag"
    assert load_settings(None, {})[0].cache_dir is None  # the default place
    config.write_text("cache_dir: [not, a, path]\n")
    assert [str(problem) for problem in load_settings(config, {})[1]] == [f"{config}: cache_dir: must be a path"]


def test_gslb_check_fills_the_cache_directory_it_is_given(tmp_path):
    import subprocess

    from dnsserver import REPO, TEST_GEOIP, TESTS, gslb_command

    directory = tmp_path / "tables"
    command = gslb_command("check", "--zones", str(TESTS / "data" / "zones_geo"), "--geoip", str(TEST_GEOIP),
                           "--cache-dir", str(directory))
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert len(cache_files(directory)) == 1
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and "built in" not in again.stderr  # loaded, not built again


def test_gslb_check_with_an_unusable_home_builds_in_memory_and_warns_once(tmp_path):
    # A container user: $HOME names nothing that can hold ~/.cache (here: a plain file).
    import os
    import subprocess

    from dnsserver import REPO, TEST_GEOIP, TESTS, gslb_command

    home = tmp_path / "home"
    home.write_text("not a directory")
    environment = {key: value for key, value in os.environ.items()
                   if key not in (tablecache.CACHE_DIR_VARIABLE, "XDG_CACHE_HOME")}
    environment["HOME"] = str(home)
    done = subprocess.run(gslb_command("check", "--zones", str(TESTS / "data" / "zones_geo"),
                                       "--geoip", str(TEST_GEOIP)),
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "not writable" in warnings[0] and "in memory" in warnings[0], done.stderr
