"""RegionRules: matching GeoIP facts to a region, in order, and the nearest region by distance."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_network
from types import MappingProxyType

import pytest

from gslb.geo import GeoFacts, RegionRules, great_circle_km

FRANKFURT, SINGAPORE = (50.11, 8.68), (1.35, 103.82)


def example_rules(**changes) -> RegionRules:
    fields = dict(
        regions=("us-east", "us-west", "eu", "asia"),
        locations={"us-east": (39.04, -77.49), "us-west": (37.34, -121.89), "eu": FRANKFURT,
                   "asia": SINGAPORE},
        serves={"NA-US-NY": "us-east", "NA-US-VA": "us-east", "NA-CA": "us-east", "SA": "us-east",
                "NA-US-CA": "us-west", "NA-US-WA": "us-west", "NA-MX": "us-west",
                "EU": "eu", "AF": "eu", "AS": "asia", "OC": "asia"},
        subnets=((ip_network("198.18.0.0/15"), "us-east"),),
        default_region="us-east",
    )
    fields.update(changes)
    return RegionRules(**fields)


def test_great_circle_distance_matches_known_distances():
    assert great_circle_km((51.5074, -0.1278), (48.8566, 2.3522)) == pytest.approx(343.5, abs=1)  # London-Paris
    assert great_circle_km(FRANKFURT, FRANKFURT) == 0
    assert great_circle_km((0, 0), (0, 180)) == pytest.approx(20015, abs=1)  # half the equator


def test_subdivision_beats_country_beats_continent_beats_nearest_beats_default():
    rules = example_rules(serves={"NA-US-CA": "us-west", "NA-US": "us-east", "NA": "eu"})
    california = GeoFacts("NA", "US", "CA", 37.39, -122.08)
    assert rules.match(california) == ("us-west", "subdivision NA-US-CA")
    assert rules.match(GeoFacts("NA", "US", "TX", 32.78, -96.80)) == ("us-east", "country NA-US")
    assert rules.match(GeoFacts("NA", "MX", None, 19.43, -99.13)) == ("eu", "continent NA")
    assert rules.match(GeoFacts("AS", "JP", "13", 35.69, 139.69))[1].startswith("nearest asia (")
    assert rules.match(GeoFacts("AS", "JP", None, None, None))[1].startswith("nearest asia (")  # centroid
    assert rules.match(GeoFacts("AS", None, None, None, None)) == ("us-east", "default")
    assert rules.match(None) == ("us-east", "default")


def test_nearest_region_for_a_country_no_rule_names_reports_the_distance():
    # Texas: no rule for NA-US-TX, NA-US or NA; Dallas is ~1,900 km from Ashburn, ~2,300 from San Jose.
    region, rule = example_rules().match(GeoFacts("NA", "US", "TX", 32.78, -96.80))
    assert region == "us-east"
    km = great_circle_km((32.78, -96.80), (39.04, -77.49))
    assert rule == f"nearest us-east ({km:.0f} km)"
    # Portland, Oregon: same country, other coast.
    assert example_rules().match(GeoFacts("NA", "US", "OR", 45.52, -122.68))[0] == "us-west"


def test_country_without_location_uses_its_centroid():
    rules = RegionRules(regions=("eu", "asia"), locations={"eu": FRANKFURT, "asia": SINGAPORE},
                        serves={}, default_region="eu")
    assert rules.match(GeoFacts("AS", "CN", None, None, None))[1].startswith("nearest asia (")
    assert rules.match(GeoFacts("EU", "PL", None, None, None))[1].startswith("nearest eu (")


def test_no_rule_no_location_no_default_means_no_region():
    rules = example_rules(serves={}, locations={}, default_region=None)
    assert rules.match(GeoFacts("EU", "FR", None, 48.86, 2.35)) == (None, "none")
    assert rules.match(None) == (None, "none")


def test_country_rule_matches_by_iso_code_even_when_the_database_puts_it_elsewhere():
    # Databases differ on the continent of some countries; "EU-TR" still means Türkiye.
    rules = example_rules(serves={"EU-TR": "eu", "AS": "asia"})
    assert rules.match(GeoFacts("AS", "TR", None, 39.0, 35.0)) == ("eu", "country EU-TR")


def test_missing_continent_is_taken_from_the_country():
    rules = example_rules(serves={"EU": "eu"}, locations={})
    assert rules.match(GeoFacts(None, "FR", None, None, None)) == ("eu", "continent EU")


def test_equally_near_regions_go_to_the_first_in_yaml_order():
    rules = RegionRules(regions=("b", "a"), locations={"a": (0.0, 10.0), "b": (0.0, -10.0)}, serves={})
    assert rules.nearest((0.0, 0.0))[0] == "b"


def test_rules_are_immutable_copies():
    serves = {"EU": "eu"}
    rules = example_rules(serves=serves)
    serves["AS"] = "asia"
    assert "AS" not in rules.serves
    assert isinstance(rules.serves, MappingProxyType) and isinstance(rules.locations, MappingProxyType)
    with pytest.raises(TypeError):
        rules.serves["AF"] = "eu"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.default_region = "eu"  # type: ignore[misc]


@pytest.mark.parametrize("changes, message", [
    ({"serves": {"EU": "mars"}}, "serves EU: unknown region 'mars'"),
    ({"default_region": "mars"}, "default_region: unknown region 'mars'"),
    ({"subnets": ((ip_network("10.0.0.0/8"), "mars"),)}, "subnets 10.0.0.0/8: unknown region 'mars'"),
    ({"subnets": ((ip_network("10.0.0.0/8"), "eu"), (ip_network("10.0.0.0/8"), "asia"))},
     "subnets: 10.0.0.0/8 is listed more than once"),
])
def test_inconsistent_rules_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        example_rules(**changes)
