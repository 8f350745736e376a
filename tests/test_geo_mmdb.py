"""GeoDatabase: reading City and Country .mmdb files ourselves, and one-line errors for bad files."""

from __future__ import annotations

import random
from ipaddress import IPv6Address, ip_address
from pathlib import Path

import maxminddb
import pytest
from mmdb_writer import MMDBWriter, TreeWriter
from netaddr import IPSet

from gslb.geo import GeoDatabase, GeoDataError, GeoFacts

DATA = Path(__file__).parent / "data" / "geo"
CITY_TEST_DB = DATA / "GeoIP2-City-Test.mmdb"
COUNTRY_TEST_DB = DATA / "GeoIP2-Country-Test.mmdb"


def facts_of(record: dict | None) -> GeoFacts | None:
    """What GeoFacts should hold, from maxminddb's full decode of the same record."""
    if record is None:
        return None
    location = record.get("location") or {}
    return GeoFacts(continent=record.get("continent", {}).get("code"),
                    country=record.get("country", {}).get("iso_code"),
                    subdivision=(record.get("subdivisions") or [{}])[0].get("iso_code"),
                    latitude=location.get("latitude"), longitude=location.get("longitude"))


def city_record(continent, country, subdivision=None, latitude=None, longitude=None) -> dict:
    record = {"continent": {"code": continent, "names": {"en": continent}},
              "country": {"iso_code": country, "names": {"en": country}}}
    if subdivision:
        record["subdivisions"] = [{"iso_code": subdivision}, {"iso_code": "XYZ"}]
    if latitude is not None:
        record["location"] = {"latitude": latitude, "longitude": longitude, "time_zone": "X/Y"}
    return record


def write(path: Path, networks: dict, *, ip_version: int = 6, database_type: str = "Test-GeoIP2-City",
          record_size: int | None = None, float_type: str = "f64") -> Path:
    writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6,
                        database_type=database_type, float_type=float_type)
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    if record_size is None:
        writer.to_db_file(str(path))
    else:
        class FixedRecordSize(TreeWriter):
            def _adjust_record_size(self) -> None:
                super()._adjust_record_size()
                self.record_size = record_size
        FixedRecordSize(writer.tree, writer._build_meta(), writer.int_type, writer.float_type).write(str(path))
    return path


@pytest.mark.parametrize("database", [CITY_TEST_DB, COUNTRY_TEST_DB], ids=["city", "country"])
def test_facts_and_prefix_agree_with_maxminddb_for_every_network(database):
    reader = maxminddb.open_database(str(database))
    ours = GeoDatabase.open(database)
    checked = 0
    for network, _ in reader:
        for address in (network.network_address, network.broadcast_address):
            forms = [address]
            if address.version == 4:  # aliased by MaxMind as ::ffff:a.b.c.d and 2002:a.b.c.d::
                forms += [IPv6Address(0xFFFF << 32 | int(address)), IPv6Address(0x2002 << 112 | int(address) << 80)]
            for form in forms:
                record, prefix = reader.get_with_prefix_len(form)
                assert ours.lookup(form) == (facts_of(record), prefix), form
                checked += 1
    assert checked > 400


def test_city_database_has_locations_and_first_level_subdivisions():
    database = GeoDatabase.open(CITY_TEST_DB)
    assert (database.database_type, database.has_location, database.ip_version) == ("GeoIP2-City", True, 6)
    assert database.lookup(ip_address("81.2.69.142")) == (GeoFacts("EU", "GB", "ENG", 51.5142, -0.0931), 31)
    assert database.lookup(ip_address("2001:218::1"))[0].country == "JP"
    assert database.lookup(ip_address("8.8.8.8"))[0] is None


def test_country_database_has_no_locations():
    database = GeoDatabase.open(COUNTRY_TEST_DB)
    assert database.has_location is False
    assert database.lookup(ip_address("81.2.69.160"))[0] == GeoFacts("EU", "GB", None, None, None)


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_every_record_size_reads_the_same(tmp_path, record_size):
    networks = {"203.0.113.0/24": city_record("AS", "JP", "13", 35.69, 139.69),
                "2001:db8::/32": city_record("EU", "DE", "BE", 52.52, 13.40)}
    database = GeoDatabase.open(write(tmp_path / "sized.mmdb", networks, record_size=record_size))
    assert database.record_size == record_size
    assert database.lookup(ip_address("203.0.113.9")) == (GeoFacts("AS", "JP", "13", 35.69, 139.69), 24)
    assert database.lookup(ip_address("2001:db8::9")) == (GeoFacts("EU", "DE", "BE", 52.52, 13.40), 32)


def test_ipv4_only_database_knows_no_ipv6_address(tmp_path):
    path = write(tmp_path / "v4.mmdb", {"192.0.2.0/24": city_record("EU", "GB")}, ip_version=4)
    database = GeoDatabase.open(path)
    assert database.lookup(ip_address("192.0.2.1")) == (GeoFacts("EU", "GB"), 24)
    assert database.lookup(ip_address("2001:db8::1")) == (None, 0)


def test_single_precision_locations_and_sparse_records_are_read(tmp_path):
    networks = {"192.0.2.0/25": city_record("EU", "GB", latitude=51.5, longitude=-0.25),
                "192.0.2.128/25": {"continent": {"code": "EU"}},
                "198.51.100.0/24": {"country": {"iso_code": "FR"}, "subdivisions": []}}
    database = GeoDatabase.open(write(tmp_path / "f32.mmdb", networks, float_type="f32"))
    assert database.lookup(ip_address("192.0.2.1"))[0] == GeoFacts("EU", "GB", None, 51.5, -0.25)
    assert database.lookup(ip_address("192.0.2.129"))[0] == GeoFacts("EU")
    assert database.lookup(ip_address("198.51.100.1"))[0] == GeoFacts(country="FR")


def test_lookups_of_random_addresses_agree_with_maxminddb():
    reader, ours = maxminddb.open_database(str(CITY_TEST_DB)), GeoDatabase.open(CITY_TEST_DB)
    rng = random.Random(1)
    for _ in range(2000):
        address = ip_address(rng.getrandbits(32)) if rng.random() < 0.5 else IPv6Address(rng.getrandbits(128))
        record, prefix = reader.get_with_prefix_len(address)
        assert ours.lookup(address) == (facts_of(record), prefix)


# -- errors --------------------------------------------------------------------------------------
def open_error(path) -> str:
    with pytest.raises(GeoDataError) as caught:
        GeoDatabase.open(path)
    message = str(caught.value)
    assert message.startswith(f"GeoIP file {path}: ") and "\n" not in message
    return message


def test_missing_file_says_not_found_and_how_to_choose_another(tmp_path):
    message = open_error(tmp_path / "nope.mmdb")
    assert "not found" in message and "--geoip FILE" in message


def test_directory_is_not_a_database(tmp_path):
    assert "is a directory" in open_error(tmp_path)


@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty"),
    (b"this is not a database\n" * 100, "no metadata marker"),
    (CITY_TEST_DB.read_bytes()[:10000], "no metadata marker"),  # truncated
])
def test_files_that_are_not_maxmind_databases_say_so(tmp_path, content, reason):
    path = tmp_path / "bad.mmdb"
    path.write_bytes(content)
    message = open_error(path)
    assert f"not a MaxMind DB ({reason})" in message and "--geoip FILE" in message


def test_truncated_search_tree_is_reported(tmp_path):
    content = CITY_TEST_DB.read_bytes()
    marker = content.rfind(b"\xab\xcd\xefMaxMind.com")
    path = tmp_path / "short.mmdb"
    path.write_bytes(content[:100] + content[marker:])
    assert "not a MaxMind DB (The search tree extends past the end of the file)" in open_error(path)


def test_bad_metadata_is_reported(tmp_path):
    content = CITY_TEST_DB.read_bytes()
    marker = content.rfind(b"\xab\xcd\xefMaxMind.com")
    path = tmp_path / "meta.mmdb"
    path.write_bytes(content[:marker] + b"\xab\xcd\xefMaxMind.com" + b"\xff" * 40)
    assert "not a MaxMind DB (" in open_error(path)


def test_a_database_without_locations_is_refused(tmp_path):
    path = write(tmp_path / "asn.mmdb", {"192.0.2.0/24": {"autonomous_system_number": 64500}},
                 database_type="GeoLite2-ASN")
    assert "is a GeoLite2-ASN database, which has no locations" in open_error(path)


def test_corrupt_data_record_raises_a_one_line_error(tmp_path):
    path = write(tmp_path / "corrupt.mmdb", {"192.0.2.0/24": city_record("EU", "GB", "ENG", 51.5, -0.1)})
    with GeoDatabase.open(path) as database:  # find the record of 192.0.2.0/24 in the tree
        value = database.start(4)
        for bit in f"{0xC0000200:032b}"[:24]:
            value = database.children(value)[int(bit)]
        record_at = value - database.node_count - 16 + database.node_count * database.record_size // 4 + 16
    content = bytearray(path.read_bytes())
    content[record_at:record_at + 8] = b"\xff" * 8
    path.write_bytes(bytes(content))
    with GeoDatabase.open(path) as database, pytest.raises(GeoDataError) as caught:
        database.lookup(ip_address("192.0.2.1"))
    assert str(caught.value).startswith(f"GeoIP file {path}: corrupt (")
    assert "\n" not in str(caught.value)


def test_a_fifo_is_refused_at_once_rather_than_waited_on(tmp_path):
    # A FIFO at the path used to block the reader (a reload's thread) in open() until a writer came.
    import os
    import threading

    fifo = tmp_path / "city.mmdb"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def read() -> None:
        try:
            GeoDatabase.open(fifo)
        except GeoDataError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # blocked: let it go, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    hint = "pass --geoip FILE with a City or Country .mmdb (GeoLite2-City, DB-IP City Lite, ...)"
    assert outcome == [f"GeoIP file {fifo}: not a regular file; {hint}"]
