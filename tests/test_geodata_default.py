"""The embedded default GeoIP data: what it answers, what it leaves out, and how big it is.

The expectations follow geodata/README.md: IPv4 records have continent, country, subdivision and a
location; IPv6 records only continent and country (gslb uses the country's centroid for them).
"""
import importlib.util
import json
import sys
from pathlib import Path

import geoip2.database
import maxminddb
import pytest

ROOT = Path(__file__).resolve().parent.parent
GEODATA = ROOT / "geodata"
MMDB = GEODATA / "dbip-city-lite.mmdb"
GEOCODES = ROOT / "gslb" / "geo" / "geocodes.json"
BUILD = GEODATA / "tools" / "build.py"
MAX_BYTES = 20_000_000  # it ships in git


@pytest.fixture(scope="module")
def reader():
    with geoip2.database.Reader(str(MMDB)) as reader:
        yield reader


@pytest.mark.parametrize(("address", "continent", "country"), [
    ("8.8.8.8", "NA", "US"),
    ("81.2.69.142", "EU", "GB"),
    ("202.108.22.5", "AS", "CN"),
    ("2001:4860:4860::8888", "NA", "US"),
])
def test_default_mmdb_maps_address_to_continent_and_country(reader, address, continent, country) -> None:
    city = reader.city(address)
    assert (city.continent.code, city.country.iso_code) == (continent, country)


def test_ipv4_records_have_subdivision_and_rounded_location(reader) -> None:
    city = reader.city("8.8.8.8")
    assert city.subdivisions.most_specific.iso_code == "CA"
    lat, lon = city.location.latitude, city.location.longitude
    assert lat is not None and lon is not None
    assert lat * 2 == int(lat * 2) and lon * 2 == int(lon * 2)  # 0.5 degree grid
    assert reader.city("81.2.69.142").subdivisions.most_specific.iso_code == "ENG"


@pytest.fixture(scope="module")
def raw():
    with maxminddb.open_database(str(MMDB)) as raw:
        yield raw


@pytest.mark.parametrize("alias", ["::ffff:8.8.8.8", "::8.8.8.8", "2002:808:808::1"])
def test_ipv4_aliases_answer_like_ipv4(raw, alias) -> None:
    assert raw.get(alias) == raw.get("8.8.8.8")
    assert raw.get(alias) is not None


@pytest.mark.parametrize("address", ["2001:4860:4860::8888", "2a00:1450:4001:81c::200e"])
def test_ipv6_records_are_country_level_and_no_longer_than_32(raw, address) -> None:
    record, prefixlen = raw.get_with_prefix_len(address)
    assert set(record) == {"continent", "country"}
    assert prefixlen <= 32


def test_default_mmdb_is_small_enough_to_ship() -> None:
    assert MMDB.stat().st_size < MAX_BYTES


def test_default_mmdb_metadata(reader) -> None:
    metadata = reader.metadata()
    assert "City" in metadata.database_type  # geoip2's .city() and gslb's has_location need it
    assert metadata.ip_version == 6
    assert "DB-IP" in metadata.description["en"]


def test_build_script_is_not_installed_with_the_data() -> None:
    # pyproject installs geodata/ as gslb.default_geodata: every *.py directly in it would ship.
    assert BUILD.is_file()
    assert not list(GEODATA.glob("*.py"))


def test_geocodes_has_us_in_north_america_with_california() -> None:
    us = json.loads(GEOCODES.read_text(encoding="utf-8"))["countries"]["US"]
    assert us["continent"] == "NA"
    assert "CA" in us["subdivisions"]
    assert us["centroid"] is not None  # IPv6 clients are placed at it


# -- the build tool's trimming, on made-up networks (needs the build-only tools) ------------------

@pytest.fixture(scope="module")
def build():
    for module in ("pycountry", "mmdb_writer", "netaddr"):
        pytest.importorskip(module)
    spec = importlib.util.spec_from_file_location("gslb_geodata_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_snap_moves_only_nearby_locations_within_a_place(build) -> None:
    Geo = build.Geo
    sf, near_sf = Geo("NA", "US", "CA", 37.5, -122.0), Geo("NA", "US", "CA", 37.0, -122.0)
    la, texas = Geo("NA", "US", "CA", 34.0, -118.0), Geo("NA", "US", "TX", 37.0, -122.0)
    # Addresses are /24 numbers, blocks /22 (four of them).
    ranges = [(0, 0, near_sf), (1, 2, sf), (3, 3, la),  # block 0: la is 590 km off, stays
              (4, 4, texas), (5, 5, near_sf), (6, 7, sf),  # block 1: Texas is another place
              (8, 19, near_sf), (20, 23, sf)]  # whole blocks: untouched
    report = build.Snapping()
    out = list(build.merge_adjacent(build.snap(ranges, 24, 22, 100.0, report)))
    assert out == [(0, 2, sf), (3, 3, la), (4, 4, texas), (5, 7, sf), (8, 19, near_sf), (20, 23, sf)]
    assert (report.addresses, report.moved) == (24, 2)


def test_coarsen_gives_a_block_the_country_of_most_of_its_addresses(build) -> None:
    Geo, detail = build.Geo, build.Detail("country", 32)
    us, ca, de = (Geo("NA", "US", "CA", 37.5, -122.0), Geo("NA", "CA", "QC", 45.5, -73.5),
                  Geo("EU", "DE", "BE", 52.5, 13.5))
    networks = [(6, 0x2001_0db8 << 96, 34, us), (6, (0x2001_0db8 << 96) | 1 << 95, 33, ca),
                (6, 0x2001_0db9 << 96, 48, de)]
    report = build.Coarsening()
    out = list(build.coarsen(((v, a, p, detail.trim(g)) for v, a, p, g in networks), 128, 32, report))
    assert [geo for _, _, geo in out] == [Geo("NA", "CA"), Geo("EU", "DE")]
    assert out[0][0] == 0x2001_0db8 << 96 and out[0][1] == (0x2001_0db9 << 96) - 1
    assert (report.networks, report.country_changed) == (3, 1)
    assert Geo("NA", "CA").record() == {"continent": {"code": "NA"}, "country": {"iso_code": "CA"}}
