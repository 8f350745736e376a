"""Locator: client address -> region, rule and the widest correct ECS scope (RFC 7871 6.1).

The scope tests check every answer against an independent oracle: maxminddb's C reader lists the
networks inside a prefix (get_with_prefix_len from its first address onwards), each network and
subnet-rule piece is matched on its own, and a scope is right when address/scope holds one region
(never claims a client of another region) and address/(scope-1) holds two (it is the widest).
"""

from __future__ import annotations

import ipaddress
import random
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet

from gslb.geo import (
    GeoDatabase,
    GeoFacts,
    Locator,
    Placement,
    RegionRules,
    build_locator,
)
from test_geo_mmdb import facts_of  # the same oracle: maxminddb's full decode

DATA = Path(__file__).parent / "data" / "geo"
CITY_TEST_DB = DATA / "GeoIP2-City-Test.mmdb"
COUNTRY_TEST_DB = DATA / "GeoIP2-Country-Test.mmdb"
IPV4_MAPPED = int(IPv6Address("::ffff:0:0"))

# The zone of the project's example, as the config loader builds it.
ZONE_RULES = dict(
    regions=("us-east", "us-west", "eu", "asia"),
    locations={"us-east": (39.04, -77.49), "us-west": (37.34, -121.89),
               "eu": (50.11, 8.68), "asia": (1.35, 103.82)},
    serves={"NA-US-NY": "us-east", "NA-US-VA": "us-east", "NA-CA": "us-east", "SA": "us-east",
            "NA-US-CA": "us-west", "NA-US-WA": "us-west", "NA-MX": "us-west",
            "EU": "eu", "AF": "eu", "AS": "asia", "OC": "asia"},
    default_region="us-east",
)

# network, continent, country, subdivision, latitude, longitude
NETWORKS = [
    ("10.0.0.0/24", "NA", "US", "CA", 37.39, -122.08),     # a subnet rule cuts a /26 out of it
    ("10.1.0.0/25", "NA", "US", "CA", 37.39, -122.08),     # two /25s, one region: merge to /24
    ("10.1.0.128/25", "NA", "US", "WA", 47.61, -122.33),
    ("10.1.1.0/24", "EU", "DE", "BE", 52.52, 13.40),
    ("10.1.2.0/24", "NA", "US", "TX", 32.78, -96.80),      # no rule names TX: nearest us-east
    ("10.1.3.0/24", "NA", "US", "NY", 40.71, -74.01),
    ("10.2.0.0/16", "EU", "FR", None, 48.86, 2.35),        # sparse /16s: big merges
    ("10.3.0.0/16", "EU", "DE", None, 52.52, 13.40),
    ("10.3.7.0/24", "AS", "JP", "13", 35.69, 139.69),
    ("192.0.2.0/24", "EU", "GB", "ENG", 51.51, -0.09),
    ("198.18.4.0/24", "AS", "SG", None, 1.29, 103.85),     # inside the 198.18.0.0/15 rule
    ("2001:db8:1::/48", "EU", "DE", "BE", 52.52, 13.40),
    ("2001:db8:2::/48", "NA", "US", "VA", 38.91, -77.04),
    ("2001:db8:3::/48", "OC", "AU", "NSW", -33.87, 151.21),
    ("2001:db8:4::/49", "OC", "AU", "NSW", -33.87, 151.21),
    ("2001:db8:4:8000::/49", "AS", "JP", "13", 35.69, 139.69),
]
SUBNETS = [
    ("198.18.0.0/15", "us-east"),
    ("10.0.0.64/26", "asia"),
    ("10.3.7.128/25", "eu"),            # gives half of the JP /24 back to eu
    ("192.0.2.0/24", "eu"),             # the same region as GeoIP: changes nothing
    ("2001:db8:3:4000::/50", "us-west"),
]


def write_mmdb(path: Path, rows=NETWORKS, kind: str = "City") -> Path:
    """A GeoIP2-shaped .mmdb like /work/shared/geodata-tools/make_test_mmdb.py writes."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=f"Test-GeoIP2-{kind}",
                        languages=["en"], description="gslb test data")
    for network, continent, country, subdivision, latitude, longitude in sorted(
            rows, key=lambda row: IPNetwork(row[0]).prefixlen):  # broad first: specific wins
        record = {"continent": {"code": continent, "names": {"en": continent}},
                  "country": {"iso_code": country, "names": {"en": country}}}
        if kind == "City":
            if subdivision:
                record["subdivisions"] = [{"iso_code": subdivision, "names": {"en": subdivision}}]
            record["location"] = {"latitude": latitude, "longitude": longitude, "accuracy_radius": 50}
        net = IPNetwork(network)
        writer.insert_network(IPSet([net]), record)
        if net.version == 4:  # real databases answer for ::ffff:a.b.c.d too
            writer.insert_network(IPSet([net.ipv6(ipv4_compatible=False)]), record)
    writer.to_db_file(str(path))
    return path


def zone_rules(subnets=SUBNETS, **changes) -> RegionRules:
    fields = dict(ZONE_RULES, subnets=tuple((ip_network(n), r) for n, r in subnets))
    fields.update(changes)
    return RegionRules(**fields)


@pytest.fixture(scope="module")
def city_db(tmp_path_factory) -> GeoDatabase:
    with GeoDatabase.open(write_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb")) as database:
        yield database


@pytest.fixture()
def regions(city_db) -> Locator:
    return build_locator(zone_rules(), city_db)


# -- the oracle --------------------------------------------------------------------------------


class Oracle:
    """Regions over a prefix, from maxminddb's own reader and plain ipaddress arithmetic."""

    def __init__(self, path: Path | None, rules: RegionRules) -> None:
        self.reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT) if path else None
        self.rules = rules
        self.subnets = {4: [], 6: []}
        self.described = {4: [], 6: []}  # (network, region, rule text, explicit) of each rule
        for network, region in rules.subnets:
            self.subnets[network.version].append((network, region))
            self.described[network.version].append((network, region, f"subnet {network}", True))
            if network.version == 4:  # an IPv4 rule holds ::ffff:a.b.c.d too
                mapped = ipaddress.IPv6Network(
                    (IPV4_MAPPED | int(network.network_address), 96 + network.prefixlen))
                self.subnets[6].append((mapped, region))
                self.described[6].append((mapped, region, f"subnet {network}", False))

    def region_at(self, address: IPv4Address | IPv6Address) -> str | None:
        """The region of one address, the slow obvious way."""
        inside = [item for item in self.described[address.version] if address in item[0]]
        if inside:
            return max(inside, key=lambda item: (item[0].prefixlen, item[3]))[1]
        record = self.reader.get(address) if self.reader else None
        return self.rules.match(facts_of(record))[0]

    def explain(self, address: IPv4Address | IPv6Address) -> tuple[str | None, str, GeoFacts | None]:
        """(region, rule, facts) of one address: the most specific subnet rule (an IPv6 rule
        before the mapped form of an IPv4 rule of the same network), else GeoIP and the rules."""
        record = self.reader.get(address) if self.reader else None
        inside = [item for item in self.described[address.version] if address in item[0]]
        if inside:
            _, region, rule, _ = max(inside, key=lambda item: (item[0].prefixlen, item[3]))
            return region, rule, facts_of(record)
        return (*self.rules.match(facts_of(record)), facts_of(record))

    def placement(self, address: IPv4Address | IPv6Address, guess: int | None = None) -> Placement:
        """The answer a locator must give: the widest prefix of one region. address/p is one
        region for every p from the scope up, so the scope is found by bisection; or, cheaper,
        ``guess`` is it when address/guess is one region and address/(guess - 1) is not."""
        region, rule, facts = self.explain(address)
        if guess is not None and self.regions(ip_network(f"{address}/{guess}", strict=False)) == {region} and (
                guess == 0 or len(self.regions(ip_network(f"{address}/{guess - 1}", strict=False))) > 1):
            return Placement(region, guess, rule, facts)
        low, high = 0, address.max_prefixlen
        while low < high:
            middle = (low + high) // 2
            if self.regions(ip_network(f"{address}/{middle}", strict=False)) == {region}:
                high = middle
            else:
                low = middle + 1
        return Placement(region, low, rule, facts)

    def regions(self, network, enough: int = 2) -> set:
        """The regions of the addresses of ``network`` (stops once it has ``enough``)."""
        bits = network.max_prefixlen
        cls = IPv4Address if bits == 32 else IPv6Address
        cuts = set()
        for rule, _ in self.subnets[network.version]:
            cuts |= {int(rule.network_address), int(rule.broadcast_address) + 1}
        found = set()
        low, high = int(network.network_address), int(network.broadcast_address)
        while low <= high:
            if self.reader is not None:
                _, prefix = self.reader.get_with_prefix_len(cls(low))
            else:
                prefix = 0
            end = min(high, low | ((1 << (bits - prefix)) - 1))  # one GeoIP network
            for start in sorted({low} | {cut for cut in cuts if low < cut <= end}):
                found.add(self.region_at(cls(start)))  # one piece between rule edges
                if len(found) >= enough:
                    return found
            low = end + 1
        return found


def assert_scope_is_widest_correct(placement: Placement, address, oracle: Oracle) -> None:
    scope = ip_network(f"{address}/{placement.scope_prefix}", strict=False)
    assert oracle.regions(scope) == {placement.region}, (
        f"{address}: scope {scope} claims addresses of another region")
    if placement.scope_prefix > 0:
        wider = ip_network(f"{address}/{placement.scope_prefix - 1}", strict=False)
        assert len(oracle.regions(wider)) > 1, f"{address}: {wider} is one region too; scope is narrow"


def interesting_addresses(networks, rng: random.Random, count: int):
    """Addresses near the edges of the networks and rules, where scopes change, plus noise."""
    addresses = []
    for network in networks:
        for offset in (0, 1, network.num_addresses // 2, network.num_addresses - 1):
            for delta in (-1, 0, 1):
                value = int(network.network_address) + offset + delta
                if 0 <= value < 2 ** network.max_prefixlen:
                    addresses.append(ip_address(value) if network.version == 4 else IPv6Address(value))
    for _ in range(count):
        network = rng.choice(networks)
        addresses.append(network.network_address + rng.randrange(network.num_addresses))
        addresses.append(IPv4Address(rng.getrandbits(32)))
        addresses.append(IPv6Address(rng.getrandbits(128)))
    return addresses


def with_mapped(addresses):
    """Each IPv4 address also as ::ffff:a.b.c.d (an IPv6 client; 128-bit scope)."""
    out = list(addresses)
    out += [IPv6Address(IPV4_MAPPED | int(a)) for a in addresses if a.version == 4]
    return out


# -- scope: property tests ---------------------------------------------------------------------
def test_scope_is_the_widest_prefix_of_one_region_for_random_addresses(city_db):
    rules = zone_rules()
    regions, oracle = build_locator(rules, city_db), Oracle(Path(city_db.path), rules)
    networks = [ip_network(row[0]) for row in NETWORKS] + [net for net, _ in rules.subnets]
    networks += [ip_network("10.0.0.0/14"), ip_network("2001:db8::/45")]
    addresses = with_mapped(interesting_addresses(networks, random.Random(7), 150))
    for address in addresses:
        assert_scope_is_widest_correct(regions.locate(address), address, oracle)
    assert len(addresses) > 1000


PLACES = [  # continent, country, subdivision, latitude, longitude -> the region ZONE_RULES gives
    ("NA", "US", "CA", 37.39, -122.08),   # us-west (subdivision)
    ("NA", "US", "WA", 47.61, -122.33),   # us-west (subdivision)
    ("NA", "US", "TX", 32.78, -96.80),    # us-east (nearest)
    ("NA", "CA", "ON", 43.65, -79.38),    # us-east (country)
    ("EU", "FR", None, 48.86, 2.35),      # eu (continent)
    ("AS", "JP", "13", 35.69, 139.69),    # asia (continent)
]


@pytest.mark.parametrize("seed", range(6))
def test_scope_is_the_widest_correct_on_random_databases_and_rules(tmp_path, seed):
    # Random nested networks in 10.0.0.0/16 and 2001:db8::/32, random subnet rules over them.
    rng = random.Random(seed)
    rows = []
    for _ in range(rng.randrange(5, 40)):
        prefix = rng.randrange(16, 29)
        network = ip_network(f"10.0.{rng.randrange(256)}.{rng.randrange(256)}/{prefix}", strict=False)
        rows.append((str(network), *rng.choice(PLACES)))
        prefix = rng.randrange(32, 60)
        network = ip_network(((0x20010DB8 << 96) | rng.getrandbits(96), prefix), strict=False)
        rows.append((str(network), *rng.choice(PLACES)))
    rows = list({row[0]: row for row in rows}.values())
    subnets = {}
    for _ in range(rng.randrange(0, 5)):
        network = ip_network(f"10.{rng.randrange(4)}.{rng.randrange(256)}.0/{rng.randrange(14, 31)}", strict=False)
        subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
        network = ip_network(((0x20010DB8 << 96) | rng.getrandbits(96), rng.randrange(30, 64)), strict=False)
        subnets[str(network)] = rng.choice(ZONE_RULES["regions"])
    rules = zone_rules(subnets=list(subnets.items()), default_region=rng.choice([None, "us-east", "eu"]))
    path = write_mmdb(tmp_path / f"random{seed}.mmdb", rows)
    regions, oracle = build_locator(rules, GeoDatabase.open(path)), Oracle(path, rules)
    networks = [ip_network(row[0]) for row in rows] + [network for network, _ in rules.subnets]
    networks += [ip_network("10.0.0.0/14"), ip_network("2001:db8::/32")]
    for address in with_mapped(interesting_addresses(networks, rng, 60)):
        assert_scope_is_widest_correct(regions.locate(address), address, oracle)


def test_scope_holds_for_every_address_inside_small_scopes(city_db):
    # Enumerate: each address of every scope of up to 1024 addresses, looked up one by one.
    rules = zone_rules()
    regions, oracle = build_locator(rules, city_db), Oracle(Path(city_db.path), rules)
    rng = random.Random(3)
    checked = 0
    for address in interesting_addresses([ip_network("10.0.0.0/22"), ip_network("10.3.7.0/24")], rng, 40):
        placement = regions.locate(address)
        scope = ip_network(f"{address}/{placement.scope_prefix}", strict=False)
        if scope.num_addresses <= 1024:
            assert {oracle.region_at(other) for other in scope} == {placement.region}, scope
            assert {regions.locate(other).region for other in scope} == {placement.region}, scope
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("database", [CITY_TEST_DB, COUNTRY_TEST_DB], ids=["city", "country"])
def test_scope_is_the_widest_correct_on_maxmind_test_databases(database):
    # MaxMind's files alias ::ffff:0:0/96 and 2002::/16 onto the IPv4 subtree: one node, many prefixes.
    rules = zone_rules()
    regions, oracle = build_locator(rules, GeoDatabase.open(database)), Oracle(database, rules)
    networks = [network for network, _ in oracle.reader] + [network for network, _ in rules.subnets]
    rng = random.Random(11)
    addresses = with_mapped(interesting_addresses(networks, rng, 100))
    addresses += [IPv6Address((0x2002 << 112) | (rng.getrandbits(32) << 80) | rng.getrandbits(80))
                  for _ in range(100)]
    for address in addresses:
        assert_scope_is_widest_correct(regions.locate(address), address, oracle)


def test_scope_without_geoip_comes_from_the_subnet_rules_alone():
    rules = zone_rules()
    regions, oracle = build_locator(rules, None), Oracle(None, rules)
    for address in with_mapped(interesting_addresses([n for n, _ in rules.subnets], random.Random(5), 50)):
        assert_scope_is_widest_correct(regions.locate(address), address, oracle)


# -- scope: pinned examples --------------------------------------------------------------------
def test_two_adjacent_same_region_networks_merge_into_their_supernet(regions):
    # 10.1.0.0/25 (CA) and 10.1.0.128/25 (WA) are both us-west; 10.1.1.0/24 is eu.
    assert regions.locate(ip_address("10.1.0.5")) == Placement(
        "us-west", 24, "subdivision NA-US-CA",
        GeoFacts("NA", "US", "CA", 37.39, -122.08))
    assert regions.locate(ip_address("10.1.0.200")).scope_prefix == 24


def test_networks_merge_across_different_rules_of_one_region(regions):
    # TX goes to us-east as the nearest, NY by its subdivision rule: one /23 of us-east.
    texas = regions.locate(ip_address("10.1.2.9"))
    assert (texas.region, texas.scope_prefix) == ("us-east", 23)
    assert texas.rule.startswith("nearest us-east (")
    assert regions.locate(ip_address("10.1.3.9")).scope_prefix == 23


def test_subnet_rule_inside_a_geoip_network_narrows_its_scope(regions):
    # 10.0.0.0/24 is California, but 10.0.0.64/26 is pinned to asia.
    assert regions.locate(ip_address("10.0.0.70")).scope_prefix == 26
    assert regions.locate(ip_address("10.0.0.70")).rule == "subnet 10.0.0.64/26"
    assert (regions.locate(ip_address("10.0.0.5")).region,
            regions.locate(ip_address("10.0.0.5")).scope_prefix) == ("us-west", 26)
    assert regions.locate(ip_address("10.0.0.200")).scope_prefix == 25


def test_subnet_rule_wins_over_geoip_and_merges_with_its_same_region_neighbours(regions):
    # 198.18.4.0/24 is Singapore in GeoIP, but the /15 rule says us-east; the default (no
    # data) around it is us-east too, so the scope reaches past the rule.
    placement = regions.locate(ip_address("198.18.4.1"))
    assert (placement.region, placement.rule) == ("us-east", "subnet 198.18.0.0/15")
    assert placement.facts.country == "SG"
    assert placement.scope_prefix < 15


def test_ipv4_scope_counts_32_bits_and_ipv4_mapped_counts_128(regions):
    v4 = regions.locate(ip_address("10.1.0.5"))
    mapped = regions.locate(ip_address("::ffff:10.1.0.5"))
    assert (v4.scope_prefix, mapped.scope_prefix) == (24, 96 + 24)
    assert mapped.region == v4.region
    assert regions.locate(ip_address("::ffff:10.0.0.70")).rule == "subnet 10.0.0.64/26"


def test_ipv6_addresses_and_ipv6_subnet_rules(regions):
    assert regions.locate(ip_address("2001:db8:1::1")) == Placement(
        "eu", 48, "continent EU", GeoFacts("EU", "DE", "BE", 52.52, 13.40))
    assert regions.locate(ip_address("2001:db8:2:ffff::1")).rule == "subdivision NA-US-VA"
    # 2001:db8:3::/48 and the first half of 2001:db8:4::/48 are Australia (asia); a rule takes
    # 2001:db8:3:4000::/50 for us-west.
    assert regions.locate(ip_address("2001:db8:3:4000::1")).scope_prefix == 50
    assert regions.locate(ip_address("2001:db8:3:4000::1")).region == "us-west"
    assert regions.locate(ip_address("2001:db8:3::1")).scope_prefix == 50
    assert regions.locate(ip_address("2001:db8:3:8000::1")).scope_prefix == 49


def test_addresses_no_network_covers_get_the_default_region(regions):
    placement = regions.locate(ip_address("8.8.8.8"))
    assert (placement.region, placement.rule, placement.facts) == ("us-east", "default", None)


def test_without_default_region_unmatched_addresses_have_no_region(city_db):
    rules = zone_rules(default_region=None, locations={})  # no locations: no nearest either
    regions = build_locator(rules, city_db)
    assert regions.locate(ip_address("8.8.8.8")) == Placement(None, 7, "none", None)
    texas = regions.locate(ip_address("10.1.2.9"))
    assert (texas.region, texas.rule) == (None, "none")


def test_without_geoip_only_subnet_rules_and_the_default_apply():
    regions = build_locator(zone_rules(), None)
    assert regions.locate(ip_address("10.0.0.70")) == Placement("asia", 26, "subnet 10.0.0.64/26", None)
    assert regions.locate(ip_address("10.0.0.5")) == Placement("us-east", 26, "default", None)
    # 8.0.0.0/7 holds no rule of another region; 8.0.0.0/6 holds 10.0.0.64/26 (asia).
    assert regions.locate(ip_address("8.8.8.8")) == Placement("us-east", 7, "default", None)
    assert regions.locate(ip_address("2001:db8::1")).region == "us-east"


# -- matching order, end to end ------------------------------------------------------------------
def test_matching_order_subnet_subdivision_country_continent_nearest_default(tmp_path):
    rows = [("10.9.1.0/24", "NA", "US", "CA", 37.39, -122.08),
            ("10.9.2.0/24", "NA", "US", "TX", 32.78, -96.80),
            ("10.9.3.0/24", "EU", "FR", None, 48.86, 2.35),
            ("10.9.4.0/24", "AN", "AQ", None, -77.85, 166.67)]
    rules = RegionRules(
        regions=("west", "us", "europe", "south"),
        locations={"west": (37.34, -121.89), "south": (-33.87, 151.21)},
        serves={"NA-US-CA": "west", "NA-US": "us", "EU": "europe"},
        subnets=((ip_network("10.9.1.128/25"), "south"),),
        default_region="us",
    )
    regions = build_locator(rules, GeoDatabase.open(write_mmdb(tmp_path / "order.mmdb", rows)))
    rule_of = {address: regions.locate(ip_address(address)).rule for address in
               ("10.9.1.200", "10.9.1.1", "10.9.2.1", "10.9.3.1", "10.9.4.1", "10.9.5.1")}
    assert rule_of["10.9.1.200"] == "subnet 10.9.1.128/25"
    assert rule_of["10.9.1.1"] == "subdivision NA-US-CA"
    assert rule_of["10.9.2.1"] == "country NA-US"
    assert rule_of["10.9.3.1"] == "continent EU"
    assert rule_of["10.9.4.1"].startswith("nearest south (")  # McMurdo is nearer Sydney
    assert rule_of["10.9.5.1"] == "default"


def test_maxmind_city_test_database_with_the_example_zone():
    regions = build_locator(zone_rules(subnets=[("198.18.0.0/15", "us-east")]), GeoDatabase.open(CITY_TEST_DB))
    expect = {
        "81.2.69.142": ("eu", "continent EU"),  # London
        "216.160.83.56": ("us-west", "subdivision NA-US-WA"),  # Milton, WA
        "2001:480:10::1": ("us-west", "subdivision NA-US-CA"),  # San Diego
        "175.16.199.1": ("asia", "continent AS"),  # Changchun
        "198.18.0.1": ("us-east", "subnet 198.18.0.0/15"),
        "8.8.8.8": ("us-east", "default"),
    }
    for address, (region, rule) in expect.items():
        placement = regions.locate(ip_address(address))
        assert (placement.region, placement.rule) == (region, rule), address
    assert regions.locate(ip_address("81.2.69.142")).scope_prefix == 31  # .140/31 has no data


def test_country_database_places_by_the_country_centroid():
    # No location in a Country database: China's middle is nearer Singapore than Frankfurt.
    rules = RegionRules(regions=("eu", "asia"), locations={"eu": (50.11, 8.68), "asia": (1.35, 103.82)},
                        serves={}, default_region="eu")
    country = build_locator(rules, GeoDatabase.open(COUNTRY_TEST_DB)).locate(ip_address("175.16.199.1"))
    assert country.facts == GeoFacts("AS", "CN", None, None, None)
    assert country.region == "asia" and country.rule.startswith("nearest asia (")
    city = build_locator(rules, GeoDatabase.open(CITY_TEST_DB)).locate(ip_address("175.16.199.1"))
    assert city.facts.latitude is not None and city.rule != country.rule  # City: its own location


# -- cost controls -------------------------------------------------------------------------------
def test_repeated_lookups_come_from_the_cache(regions):
    address = ip_address("10.1.0.5")
    assert regions.locate(address) is regions.locate(ip_address("10.1.0.5"))


def test_cache_is_bounded_and_forgets_the_oldest(city_db):
    regions = build_locator(zone_rules(), city_db, cache_size=2)
    first = regions.locate(ip_address("10.1.0.5"))
    regions.locate(ip_address("10.1.1.5"))
    regions.locate(ip_address("10.1.2.5"))
    again = regions.locate(ip_address("10.1.0.5"))
    assert again == first and again is not first


def test_the_first_query_gets_the_widest_scope_even_where_proving_it_reads_a_wide_area(tmp_path):
    # 10.4.0.0/16 is 256 different /24 records, all eu: proving it uniform means reading all.
    # (The lazy tree walk this replaced answered 16 first and widened over later queries, to
    # bound the work of one query; the table is complete before the first.)
    rows = [(f"10.4.{i}.0/24", "EU", "FR" if i % 2 else "DE", None, 48.0 + i / 100, 2.0)
            for i in range(256)]
    rows.append(("10.5.0.0/16", "EU", "BE", None, 50.85, 4.35))
    path = write_mmdb(tmp_path / "wide.mmdb", rows)
    rules = zone_rules(subnets=[])
    oracle = Oracle(path, rules)
    full = build_locator(rules, GeoDatabase.open(path)).locate(ip_address("10.5.1.1"))
    assert full.scope_prefix == 15
    regions = build_locator(rules, GeoDatabase.open(path))
    scopes = []
    for _ in range(3):
        placement = regions.locate(ip_address("10.5.1.1"))
        scope = ip_network(f"10.5.1.1/{placement.scope_prefix}", strict=False)
        assert oracle.regions(scope) == {"eu"}  # never wrong
        scopes.append(placement.scope_prefix)
    assert scopes == [15, 15, 15]
    assert regions.locate(ip_address("10.5.1.1")) is regions.locate(ip_address("10.5.1.1"))
