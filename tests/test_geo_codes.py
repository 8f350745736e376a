"""Geo codes (octoDNS convention: EU, NA-US, NA-US-CA): validation reasons and country centroids."""

from __future__ import annotations

import pytest

from gslb.geo import country_centroid, validate_geo_code
from gslb.geo.codes import country_continent, geocodes


@pytest.mark.parametrize("code", ["EU", "AN", "NA-US", "EU-GB", "AS-JP", "NA-US-CA", "EU-DE-BE", "OC-AU-NSW"])
def test_known_continent_country_and_subdivision_codes_are_valid(code):
    assert validate_geo_code(code) is None


@pytest.mark.parametrize("code, reason", [
    ("EU-XX", "unknown country 'XX' in 'EU-XX'"),
    ("NA-GB", "country GB is in EU, not NA"),
    ("NA-US-ZZ", "unknown subdivision 'ZZ' of country US in 'NA-US-ZZ'"),
])
def test_unknown_or_misplaced_codes_say_which_part_is_wrong(code, reason):
    assert validate_geo_code(code) == reason


@pytest.mark.parametrize("code", ["XX", "eu", "XX-US"])
def test_unknown_continent_lists_the_known_ones(code):
    reason = validate_geo_code(code)
    assert reason.startswith(f"unknown continent {code.split('-')[0]!r} in {code!r}")
    assert "EU" in reason and "\n" not in reason


@pytest.mark.parametrize("code", ["", "NA-US-CA-SF", "NA--CA", "-US", "NA-"])
def test_malformed_codes_show_the_expected_shape(code):
    reason = validate_geo_code(code)
    assert reason is not None and "CONTINENT-COUNTRY" in reason and "\n" not in reason


def test_country_centroid_is_inside_the_country():
    latitude, longitude = country_centroid("US")
    assert 25 < latitude < 50 and -125 < longitude < -65  # the contiguous United States
    latitude, longitude = country_centroid("AU")
    assert -40 < latitude < -15 and 115 < longitude < 155  # mainland Australia


def test_unknown_country_has_no_centroid_or_continent():
    assert country_centroid("XX") is None
    assert country_continent("XX") is None
    assert country_continent("GB") == "EU"


def test_table_is_loaded_once():
    assert geocodes() is geocodes()
