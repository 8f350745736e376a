"""ASN rules: `serves: [AS13335]` places the clients an ASN database puts in that autonomous system.

The region table holds them as one merged range table with GeoIP's answers and the subnet rules
(subnet rule > ASN rule > geography), so the ECS scope is the widest prefix with one answer over
both databases. Each answer is checked against an oracle built on maxminddb's own reader for both
files and plain ipaddress arithmetic, as tests/test_geo_regiontable.py does for GeoIP alone.

MaxMind's GeoLite2-ASN-Test.mmdb (tests/data/geo, MIT/Apache-2.0 like its neighbours) knows, among
others: 1.128.0.0/11 AS1221, 12.81.92.0/22.. AS7018, 2001:1700::/27 AS6730, 2003::/19 AS3320.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import maxminddb
import pytest

from gslb.geo import AsnDatabase, GeoDatabase, GeoDataError, Placement, RegionRules, TableCache, build_locator
from gslb.geo.regiontable import RegionTable
from gslb.geo.tablecache import table_key
from test_geo_locator import (
    CITY_TEST_DB,
    DATA,
    IPV4_MAPPED,
    NETWORKS,
    PLACES,
    ZONE_RULES,
    Oracle,
    assert_scope_is_widest_correct,
    write_mmdb,
    zone_rules,
)
from test_geo_mmdb import facts_of, write
from test_geo_regiontable import mixed_addresses

ASN_TEST_DB = DATA / "GeoLite2-ASN-Test.mmdb"
TEST_ASNS = {1221: "asia", 7018: "us-west", 6730: "eu", 3320: "us-east", 15169: "eu"}


class AsnOracle(Oracle):
    """Oracle's regions, with the ASN rules between the subnet rules and geography."""

    def __init__(self, path: Path | None, rules: RegionRules, asn_path: Path) -> None:
        super().__init__(path, rules)
        self.asn_reader = maxminddb.open_database(str(asn_path), maxminddb.MODE_MMAP_EXT)

    def asn_of(self, address: IPv4Address | IPv6Address) -> int | None:
        try:
            record = self.asn_reader.get(address)
        except ValueError:  # an IPv6 address in an IPv4-only file
            return None
        return record.get("autonomous_system_number") if record else None

    def explain(self, address):
        inside = [item for item in self.described[address.version] if address in item[0]]
        record = self.reader.get(address) if self.reader else None
        if inside:
            _, region, rule, _ = max(inside, key=lambda item: (item[0].prefixlen, item[3]))
            return region, rule, facts_of(record)
        asn = self.asn_of(address)
        if asn in self.rules.asns:
            return self.rules.asns[asn], f"asn AS{asn}", facts_of(record)
        return (*self.rules.match(facts_of(record)), facts_of(record))

    def region_at(self, address):
        return self.explain(address)[0]

    def regions(self, network, enough: int = 2) -> set:
        """Regions over ``network``: pieces cut at every GeoIP network, ASN network and rule edge."""
        bits = network.max_prefixlen
        cls = IPv4Address if bits == 32 else IPv6Address
        cuts = set()
        for rule, _ in self.subnets[network.version]:
            cuts |= {int(rule.network_address), int(rule.broadcast_address) + 1}
        found = set()
        low, high = int(network.network_address), int(network.broadcast_address)
        while low <= high:
            end = high
            for reader in (self.reader, self.asn_reader):
                if reader is None:
                    continue
                try:
                    _, prefix = reader.get_with_prefix_len(cls(low))
                except ValueError:
                    prefix = 0
                end = min(end, low | ((1 << (bits - prefix)) - 1))
            for start in sorted({low} | {cut for cut in cuts if low < cut <= end}):
                found.add(self.region_at(cls(start)))
                if len(found) >= enough:
                    return found
            low = end + 1
        return found


def asn_rules(asns=TEST_ASNS, **changes) -> RegionRules:
    return zone_rules(**{"asns": asns, **changes})


def assert_table_agrees(database, rules, asn, addresses, oracle: AsnOracle) -> RegionTable:
    table = RegionTable.compile(database, rules, asn)
    for address in addresses:
        index, scope = table.lookup(int(address), address.version)
        expected = oracle.placement(address, guess=scope)
        assert (table.regions[index], scope) == (expected.region, expected.scope_prefix), address
        assert_scope_is_widest_correct(Placement(table.regions[index], scope, "", None), address, oracle)
    return table


def write_asn(path: Path, networks: dict[str, int], ip_version: int = 6) -> Path:
    """An ASN-shaped .mmdb (GeoLite2-ASN's record layout)."""
    return write(path, {net: {"autonomous_system_number": number, "autonomous_system_organization": f"Org {number}"}
                        for net, number in networks.items()},
                 ip_version=ip_version, database_type="Test-GeoLite2-ASN")


@pytest.fixture(scope="module")
def asn_db() -> AsnDatabase:
    with AsnDatabase.open(ASN_TEST_DB) as database:
        yield database


# -- the database ----------------------------------------------------------------------------------
def test_asn_of_every_network_agrees_with_maxminddb(asn_db):
    reader = maxminddb.open_database(str(ASN_TEST_DB))
    checked = 0
    for network, record in reader:
        for address in (network.network_address, network.broadcast_address):
            _, prefix = reader.get_with_prefix_len(address)
            assert asn_db.lookup(address) == (record["autonomous_system_number"], prefix), address
            checked += 1
    assert checked > 800


def test_a_city_file_is_refused_as_asn_database_and_the_other_way_round():
    with pytest.raises(GeoDataError, match=r"^ASN file .*GeoIP2-City-Test.mmdb: is a GeoIP2-City database, "
                                           r"not an ASN one .*; pass --asn-db FILE"):
        AsnDatabase.open(CITY_TEST_DB)
    with pytest.raises(GeoDataError, match=r"^GeoIP file .*: is a GeoLite2-ASN database, which has no locations"):
        GeoDatabase.open(ASN_TEST_DB)


def test_a_missing_asn_file_says_which_flag(tmp_path):
    with pytest.raises(GeoDataError, match=r"^ASN file .*nope.mmdb: not found; pass --asn-db FILE"):
        AsnDatabase.open(tmp_path / "nope.mmdb")


# -- the table: region and widest scope over both databases ---------------------------------------
def test_table_agrees_with_the_oracle_on_maxmind_test_databases(asn_db):
    rules = asn_rules()
    oracle = AsnOracle(CITY_TEST_DB, rules, ASN_TEST_DB)
    networks = [network for network, _ in oracle.reader] + [network for network, _ in oracle.asn_reader]
    networks += [network for network, _ in rules.subnets]
    rng = random.Random(21)
    addresses = mixed_addresses(networks, rng, 80)
    with GeoDatabase.open(CITY_TEST_DB) as database:
        table = assert_table_agrees(database, rules, asn_db, addresses, oracle)
    # Both files hang their IPv4 subtree at the same places: the aliases stay aliases.
    assert table._aliases
    assert table.regions[table.lookup(int(ip_address("1.128.0.1")), 4)[0]] == "asia"
    assert table.lookup(int(ip_address("1.128.0.1")), 4)[1] == 11


def test_subnet_rules_beat_asn_rules_and_asn_rules_beat_geography(asn_db):
    # 81.2.69.0/24 is GB (eu by continent) in the City file; 1.128.0.0/11 is AS1221 (asia).
    rules = asn_rules(subnets=[("1.128.4.0/22", "us-west"), ("81.2.69.0/24", "us-east")])
    with GeoDatabase.open(CITY_TEST_DB) as database:
        locator = build_locator(rules, database, asn=asn_db)
        inside = locator.locate(ip_address("1.128.5.1"))
        assert (inside.region, inside.scope_prefix, inside.rule) == ("us-west", 22, "subnet 1.128.4.0/22")
        outside = locator.locate(ip_address("1.129.0.1"))
        assert (outside.region, outside.scope_prefix, outside.rule) == ("asia", 16, "asn AS1221")
        assert locator.asn(ip_address("1.129.0.1")) == 1221
        assert locator.locate(ip_address("81.2.69.142")).rule == "subnet 81.2.69.0/24"
        assert locator.locate(ip_address("::ffff:1.129.0.1")).region == "asia"


def test_without_asn_rules_the_asn_database_changes_nothing(asn_db):
    rules = zone_rules()
    with GeoDatabase.open(CITY_TEST_DB) as database:
        plain = RegionTable.compile(database, rules)
        with_file = TableCache(None).table(database, rules, asn_db)
        assert with_file.dumps() == plain.dumps()
        assert table_key(database, rules, asn_db) == table_key(database, rules)


def test_asn_rules_and_the_asn_file_are_part_of_the_cache_key(tmp_path, asn_db):
    other = AsnDatabase.open(write_asn(tmp_path / "other-asn.mmdb", {"1.128.0.0/11": 1221}))
    with GeoDatabase.open(CITY_TEST_DB) as database:
        keys = {table_key(database, asn_rules(), asn_db), table_key(database, asn_rules(), other),
                table_key(database, asn_rules({1221: "eu"}), asn_db), table_key(database, zone_rules(), asn_db)}
    assert len(keys) == 4


@pytest.mark.parametrize("seed", range(6))
def test_table_agrees_on_random_asn_and_geo_databases_and_rules(tmp_path, seed):
    # Random geo networks and random AS networks over 10.0.0.0/16 and 2001:db8::/32, random
    # subnet rules, some ASN rules; files of the writer used here alias differently from
    # MaxMind's, so both "aliases kept" and "aliases spelled out" are exercised.
    rng = random.Random(seed)
    rows = []
    for _ in range(rng.randrange(5, 30)):
        network = ip_network(f"10.0.{rng.randrange(256)}.{rng.randrange(256)}/{rng.randrange(16, 29)}", strict=False)
        rows.append((str(network), *rng.choice(PLACES)))
        network = ip_network(((0x20010DB8 << 96) | rng.getrandbits(96), rng.randrange(32, 60)), strict=False)
        rows.append((str(network), *rng.choice(PLACES)))
    rows = list({row[0]: row for row in rows}.values())
    as_networks: dict[str, int] = {}
    for _ in range(rng.randrange(3, 25)):
        network = ip_network(f"10.0.{rng.randrange(256)}.{rng.randrange(256)}/{rng.randrange(14, 30)}", strict=False)
        as_networks[str(network)] = rng.choice([64500, 64501, 64502, 64503])
        network = ip_network(((0x20010DB8 << 96) | rng.getrandbits(96), rng.randrange(30, 62)), strict=False)
        as_networks[str(network)] = rng.choice([64500, 64501, 64502, 64503])
    subnets = {}
    for _ in range(rng.randrange(0, 4)):
        network = ip_network(f"10.0.{rng.randrange(256)}.0/{rng.randrange(16, 31)}", strict=False)
        subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
        if rng.random() < 0.3:
            network = ip_network((IPV4_MAPPED | (10 << 24) | rng.getrandbits(16), rng.randrange(104, 124)),
                                 strict=False)
            subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
    asns = {number: rng.choice(ZONE_RULES["regions"]) for number in rng.sample([64500, 64501, 64502, 64503], 2)}
    rules = asn_rules(asns, subnets=list(subnets.items()), default_region=rng.choice([None, "us-east"]))
    geo_path = write_mmdb(tmp_path / f"geo{seed}.mmdb", rows)
    asn_path = write_asn(tmp_path / f"asn{seed}.mmdb", as_networks)
    networks = [ip_network(row[0]) for row in rows] + [ip_network(n) for n in as_networks]
    networks += [network for network, _ in rules.subnets] + [ip_network("10.0.0.0/16")]
    oracle = AsnOracle(geo_path, rules, asn_path)
    with GeoDatabase.open(geo_path) as database, AsnDatabase.open(asn_path) as asn:
        assert_table_agrees(database, rules, asn, mixed_addresses(networks, rng, 40), oracle)


@pytest.mark.parametrize("geo", ["maxmind", "writer"])
def test_aliases_that_only_one_file_has_are_spelled_out(tmp_path, asn_db, geo):
    # MaxMind's City file with a writer-made ASN file (no 6to4 alias), and the other way round.
    rules = asn_rules({64500: "asia", 1221: "us-west", 15169: "asia"})
    if geo == "maxmind":
        geo_path, asn_path = CITY_TEST_DB, write_asn(tmp_path / "asn.mmdb", {"81.2.69.128/26": 64500,
                                                                             "1.128.0.0/12": 1221})
    else:
        geo_path, asn_path = write_mmdb(tmp_path / "geo.mmdb", NETWORKS), ASN_TEST_DB
    oracle = AsnOracle(geo_path, rules, asn_path)
    networks = [ip_network("81.2.69.0/24"), ip_network("1.128.0.0/11"), ip_network("1.0.0.0/24"),
                ip_network("::ffff:0:0/96"), ip_network("2002::/16"), ip_network("2001::/32")]
    addresses = mixed_addresses(networks, random.Random(4), 40)
    addresses += [ip_address("2002:180:1::1"), ip_address("::ffff:1.128.0.1"), ip_address("2001:0:0:1::1")]
    with GeoDatabase.open(geo_path) as database, AsnDatabase.open(asn_path) as asn:
        assert_table_agrees(database, rules, asn, addresses, oracle)


def test_ipv4_only_asn_file_rules_nobody_in_ipv6(tmp_path):
    asn_path = write_asn(tmp_path / "v4.mmdb", {"81.2.69.128/26": 64500}, ip_version=4)
    rules = asn_rules({64500: "asia"})
    with GeoDatabase.open(CITY_TEST_DB) as database, AsnDatabase.open(asn_path) as asn:
        table = RegionTable.compile(database, rules, asn)
        assert table.regions[table.lookup(int(ip_address("81.2.69.142")), 4)[0]] == "asia"
        mapped = table.lookup(int(ip_address("::ffff:81.2.69.142")), 6)
        assert table.regions[mapped[0]] == "eu"  # the ASN file knows no IPv6 address
        oracle = AsnOracle(CITY_TEST_DB, rules, asn_path)
        for address in mixed_addresses([ip_network("81.2.69.0/24")], random.Random(1), 10):
            if address.version == 4:
                expected = oracle.placement(address)
                assert (table.regions[table.lookup(int(address), 4)[0]],
                        table.lookup(int(address), 4)[1]) == (expected.region, expected.scope_prefix)


def test_without_geoip_asn_rules_still_apply(asn_db):
    rules = asn_rules()
    table = RegionTable.compile(None, rules, asn_db)
    index, scope = table.lookup(int(ip_address("1.128.0.1")), 4)
    assert (table.regions[index], scope) == ("asia", 11)
    assert table.regions[table.lookup(int(ip_address("2003::1")), 6)[0]] == "us-east"
