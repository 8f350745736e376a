"""RegionTable: the region and the widest correct ECS scope of every address, from one tree walk.

Each answer is checked against the oracle of test_geo_locator (maxminddb's own reader and ipaddress
arithmetic) two ways: address/scope holds one region and address/(scope-1) two, and region and
scope both equal the oracle's own widest scope (found by bisection).
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import maxminddb
import pytest

from gslb.geo import GeoDatabase, GeoDataError, Placement, RegionRules, build_locator
from gslb.geo.regiontable import RegionTable, TableFormatError
from test_geo_locator import (
    CITY_TEST_DB,
    COUNTRY_TEST_DB,
    IPV4_MAPPED,
    NETWORKS,
    PLACES,
    ZONE_RULES,
    Oracle,
    assert_scope_is_widest_correct,
    interesting_addresses,
    with_mapped,
    write_mmdb,
    zone_rules,
)
from test_geo_mmdb import city_record, write

SIX_TO_FOUR = 0x2002 << 112


def six_to_four(address: IPv4Address) -> IPv6Address:
    return IPv6Address(SIX_TO_FOUR | (int(address) << 80))


def assert_table_agrees(database: GeoDatabase | None, rules: RegionRules, addresses, *,
                        oracle: Oracle | None = None) -> RegionTable:
    """The table's (region, scope) equals the oracle's widest one, and passes its verdict.

    Without ``oracle``: the database knows no address of these (an IPv4-only file asked IPv6
    addresses), so the rules alone are the reference.
    """
    table = RegionTable.compile(database, rules)
    reference = oracle if oracle is not None else Oracle(None, rules)
    for address in addresses:
        index, scope = table.lookup(int(address), address.version)
        expected = reference.placement(address, guess=scope)
        assert (table.regions[index], scope) == (expected.region, expected.scope_prefix), address
        assert table.place(int(address), address.version) == (expected.region, scope), address  # the fast path's
        if oracle is not None:
            assert_scope_is_widest_correct(Placement(table.regions[index], scope, "", None), address, oracle)
    return table


def mixed_addresses(networks, rng: random.Random, count: int):
    """interesting_addresses, also as ::ffff:a.b.c.d and 2002:aabb:ccdd::/48 (6to4) clients."""
    addresses = with_mapped(interesting_addresses(networks, rng, count))
    addresses += [six_to_four(a) for a in addresses if a.version == 4]
    addresses += [six_to_four(a) + rng.getrandbits(80) for a in addresses if a.version == 4]
    return addresses


@pytest.fixture(scope="module")
def city_path(tmp_path_factory) -> Path:
    return write_mmdb(tmp_path_factory.mktemp("compiled") / "city.mmdb")


# -- the same answers ------------------------------------------------------------------------------
def test_table_agrees_with_the_oracle_on_the_fixture_database(city_path):
    rules = zone_rules()
    networks = [ip_network(row[0]) for row in NETWORKS] + [net for net, _ in rules.subnets]
    networks += [ip_network("10.0.0.0/14"), ip_network("2001:db8::/45")]
    addresses = mixed_addresses(networks, random.Random(7), 150)
    with GeoDatabase.open(city_path) as database:
        assert_table_agrees(database, rules, addresses, oracle=Oracle(city_path, rules))


@pytest.mark.parametrize("seed", range(8))
def test_table_agrees_on_random_databases_and_rules(tmp_path, seed):
    # Random nested networks in 10.0.0.0/16 and 2001:db8::/32, random subnet rules over them,
    # in IPv4, IPv6 and inside the IPv4-mapped space.
    rng = random.Random(seed)
    rows = []
    for _ in range(rng.randrange(5, 40)):
        network = ip_network(f"10.0.{rng.randrange(256)}.{rng.randrange(256)}/{rng.randrange(16, 29)}",
                             strict=False)
        rows.append((str(network), *rng.choice(PLACES)))
        network = ip_network(((0x20010DB8 << 96) | rng.getrandbits(96), rng.randrange(32, 60)), strict=False)
        rows.append((str(network), *rng.choice(PLACES)))
    rows = list({row[0]: row for row in rows}.values())
    subnets = {}
    for _ in range(rng.randrange(0, 6)):
        network = ip_network(f"10.{rng.randrange(4)}.{rng.randrange(256)}.0/{rng.randrange(14, 31)}", strict=False)
        subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
        network = ip_network(((0x20010DB8 << 96) | rng.getrandbits(96), rng.randrange(30, 64)), strict=False)
        subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
        if rng.random() < 0.3:
            network = ip_network((IPV4_MAPPED | (10 << 24) | rng.getrandbits(18), rng.randrange(104, 124)),
                                 strict=False)
            subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
    rules = zone_rules(subnets=list(subnets.items()), default_region=rng.choice([None, "us-east", "eu"]))
    path = write_mmdb(tmp_path / f"random{seed}.mmdb", rows)
    networks = [ip_network(row[0]) for row in rows] + [network for network, _ in rules.subnets]
    networks += [ip_network("10.0.0.0/14"), ip_network("2001:db8::/32")]
    with GeoDatabase.open(path) as database:
        assert_table_agrees(database, rules, mixed_addresses(networks, rng, 60), oracle=Oracle(path, rules))


@pytest.mark.parametrize("path", [CITY_TEST_DB, COUNTRY_TEST_DB], ids=["city", "country"])
def test_table_agrees_on_maxmind_test_databases(path):
    # MaxMind's files alias ::ffff:0:0/96 and 2002::/16 (and more) onto the IPv4 subtree.
    rules = zone_rules()
    oracle = Oracle(path, rules)
    networks = [network for network, _ in oracle.reader] + [network for network, _ in rules.subnets]
    rng = random.Random(11)
    addresses = mixed_addresses(networks, rng, 100)
    addresses += [IPv6Address(rng.getrandbits(128)) for _ in range(200)]
    with GeoDatabase.open(path) as database:
        table = assert_table_agrees(database, rules, addresses, oracle=oracle)
    assert table._aliases  # the IPv4 subtree was read once, not once per alias


@pytest.mark.parametrize("subnets", [
    # A rule of its own inside the IPv4-mapped space: that alias is spelled out.
    [("198.18.0.0/15", "us-east"), ("::ffff:81.2.69.128/121", "asia")],
    # An IPv4 rule and, inside its mapped form, an IPv6 rule of another region.
    [("81.2.69.128/25", "asia"), ("::ffff:81.2.69.128/122", "us-west")],
    # Rules inside 6to4, and one over all of it with a rule inside that.
    [("2002:5102:4580::/41", "asia"), ("81.2.69.0/24", "us-west")],
    [("2002::/16", "us-west"), ("2002:5102:4580::/41", "asia")],
    # The whole IPv4 space one region by rule: mapped clients merge with their IPv6 neighbours.
    [("0.0.0.0/0", "us-east")],
    [("0.0.0.0/1", "eu"), ("128.0.0.0/1", "eu"), ("::/0", "asia")],
], ids=["mapped-own-rule", "mapped-override", "6to4-inner", "6to4-covering", "ipv4-uniform", "all-rules"])
def test_subnet_rules_in_and_over_the_ipv4_aliases(subnets):
    rules = zone_rules(subnets=subnets)
    oracle = Oracle(CITY_TEST_DB, rules)
    rng = random.Random(13)
    networks = [ip_network("81.2.69.0/24"), ip_network("::ffff:0:0/96"), ip_network("2002::/16")]
    networks += [network for network, _ in rules.subnets]
    addresses = mixed_addresses(networks, rng, 40)
    addresses += [ip_address("::ffff:81.2.69.142"), ip_address("2002:5102:458e::1"), ip_address("::81.2.69.142")]
    with GeoDatabase.open(CITY_TEST_DB) as database:
        assert_table_agrees(database, rules, addresses, oracle=oracle)


def test_explicit_ipv6_rule_wins_over_the_mapped_form_of_the_same_ipv4_rule():
    rules = zone_rules(subnets=[("81.2.69.128/25", "asia"), ("::ffff:81.2.69.128/121", "us-west")])
    with GeoDatabase.open(CITY_TEST_DB) as database:
        table = assert_table_agrees(database, rules, [ip_address("::ffff:81.2.69.142"),
                                                      ip_address("81.2.69.142")])
    assert table.regions[table.lookup(int(ip_address("::ffff:81.2.69.142")), 6)[0]] == "us-west"
    assert table.lookup(int(ip_address("81.2.69.142")), 4) == (table.regions.index("asia"), 25)


def test_without_geoip_the_table_holds_the_subnet_rules_alone():
    rules = zone_rules()
    addresses = mixed_addresses([n for n, _ in rules.subnets], random.Random(5), 50)
    assert_table_agrees(None, rules, addresses, oracle=Oracle(None, rules))


def test_ipv4_only_database_has_no_ipv6_data_but_mapped_rules(tmp_path):
    path = write(tmp_path / "v4.mmdb", {"192.0.2.0/24": city_record("EU", "GB", "ENG", 51.5, -0.1),
                                        "198.51.100.0/24": city_record("AS", "JP", "13", 35.69, 139.69)},
                 ip_version=4)
    rules = zone_rules(subnets=[("192.0.2.128/25", "asia"), ("2001:db8::/32", "us-west")])
    networks = [ip_network("192.0.2.0/24"), ip_network("198.51.100.0/24"), ip_network("2001:db8::/32")]
    addresses = mixed_addresses(networks, random.Random(3), 40)
    with GeoDatabase.open(path) as database:  # maxminddb refuses IPv6 lookups here: no oracle
        assert_table_agrees(database, rules, [a for a in addresses if a.version == 4],
                            oracle=Oracle(path, rules))
        table = assert_table_agrees(database, rules, [a for a in addresses if a.version == 6])
    assert table.lookup(int(ip_address("2001:db8::1")), 6) == (table.regions.index("us-west"), 32)
    assert table.lookup(int(ip_address("::ffff:192.0.2.200")), 6) == (table.regions.index("asia"), 121)


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_every_record_size_compiles_the_same(tmp_path, record_size):
    networks = {"203.0.113.0/24": city_record("AS", "JP", "13", 35.69, 139.69),
                "203.0.113.128/26": city_record("EU", "DE", "BE", 52.52, 13.40),
                "2001:db8::/32": city_record("EU", "DE", "BE", 52.52, 13.40),
                "2001:db8:8000::/33": city_record("NA", "US", "CA", 37.39, -122.08)}
    path = write(tmp_path / "sized.mmdb", networks, record_size=record_size)
    rules = zone_rules()
    nets = [ip_network(n) for n in networks]
    with GeoDatabase.open(path) as database:
        assert database.record_size == record_size
        assert_table_agrees(database, rules, mixed_addresses(nets, random.Random(2), 30),
                            oracle=Oracle(path, rules))


# -- placements ------------------------------------------------------------------------------------
def test_table_placements_work_out_rule_and_facts_when_asked(city_path):
    with GeoDatabase.open(city_path) as database:
        compiled = build_locator(zone_rules(), database)
        oracle = Oracle(city_path, zone_rules())
        assert compiled.table is not None
        for text in ("10.1.0.5", "10.0.0.70", "10.1.2.9", "198.18.4.1", "8.8.8.8", "2001:db8:3:4000::1",
                     "::ffff:10.0.0.70", "2001:db8:4:8000::1"):
            placement = compiled.locate(ip_address(text))
            assert placement == oracle.placement(ip_address(text)), text  # region, scope, rule, facts
            assert compiled.place(ip_address(text)) == (placement.region, placement.scope_prefix)
        placement = compiled.locate(ip_address("10.1.0.5"))
        assert placement == Placement("us-west", 24, "subdivision NA-US-CA",
                                      compiled.describe(ip_address("10.1.0.5"))[1])
        assert "subdivision NA-US-CA" in repr(placement)
        with pytest.raises(AttributeError):
            placement.region = "eu"  # type: ignore[misc]


# -- keeping -----------------------------------------------------------------------------------------
def test_dumped_table_loads_back_the_same(city_path):
    with GeoDatabase.open(city_path) as database:
        table = RegionTable.compile(database, zone_rules())
    loaded, meta = RegionTable.loads(table.dumps({"key": "k"}))
    assert meta == {"key": "k"}
    assert loaded.regions == table.regions
    rng = random.Random(1)
    for address in mixed_addresses([ip_network("10.0.0.0/14"), ip_network("2001:db8::/45")], rng, 200):
        assert loaded.lookup(int(address), address.version) == table.lookup(int(address), address.version)


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "header"])
def test_damaged_table_bytes_are_refused(city_path, damage):
    with GeoDatabase.open(city_path) as database:
        data = bytearray(RegionTable.compile(database, zone_rules()).dumps())
    if damage == "flip":
        data[-3] ^= 0x40
    elif damage == "truncate":
        del data[-5:]
    elif damage == "magic":
        data[0:4] = b"GSLB"
    else:
        start = data.index(b"{")
        data[start + 2:start + 8] = b"XXXXXX"
    with pytest.raises(TableFormatError):
        RegionTable.loads(bytes(data))


def test_corrupt_search_tree_raises_a_one_line_error(tmp_path):
    path = write(tmp_path / "cycle.mmdb", {"192.0.2.0/24": city_record("EU", "GB")}, ip_version=4)
    content = bytearray(path.read_bytes())
    content[6:9] = (1).to_bytes(3, "big")  # node 1's left child: node 1 again, a cycle
    path.write_bytes(bytes(content))
    with GeoDatabase.open(path) as database, pytest.raises(GeoDataError) as caught:
        RegionTable.compile(database, zone_rules())
    assert str(caught.value).startswith(f"GeoIP file {path}: ")
    assert "\n" not in str(caught.value)


def test_corrupt_data_record_raises_a_one_line_error(tmp_path):
    path = write(tmp_path / "corrupt.mmdb", {"192.0.2.0/24": city_record("EU", "GB", "ENG", 51.5, -0.1)})
    with GeoDatabase.open(path) as database:  # the record of 192.0.2.0/24, as a file offset
        record = database.start(4)
        for bit in f"{0xC0000200:032b}"[:24]:
            record = database.children(record)[int(bit)]
        at = record - database.node_count - 16 + database.node_count * database.record_size // 4 + 16
    content = bytearray(path.read_bytes())
    content[at:at + 8] = b"\xff" * 8
    path.write_bytes(bytes(content))
    with GeoDatabase.open(path) as database, pytest.raises(GeoDataError) as caught:
        RegionTable.compile(database, zone_rules())
    assert str(caught.value).startswith(f"GeoIP file {path}: corrupt (")


def test_lookups_of_every_network_of_the_maxmind_city_file_agree_with_maxminddb():
    # The region part alone, against maxminddb's decode of each network's first and last address.
    rules = zone_rules()
    oracle = Oracle(CITY_TEST_DB, rules)
    with GeoDatabase.open(CITY_TEST_DB) as database:
        table = RegionTable.compile(database, rules)
    with maxminddb.open_database(str(CITY_TEST_DB)) as reader:
        for network, _ in reader:
            for address in (network.network_address, network.broadcast_address):
                index, _ = table.lookup(int(address), address.version)
                assert table.regions[index] == oracle.region_at(address), address
