"""Geo codes in the octoDNS convention ("EU", "NA-US", "NA-US-CA"): validation and centroids.

The table of continents, countries and subdivisions is ``geocodes.json`` next to this module. It is
read once, on first use, so importing gslb.geo costs nothing for commands that never match codes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gslb.config.problems import shown

GEOCODES_PATH = Path(__file__).with_name("geocodes.json")


@dataclass(frozen=True, slots=True)
class Country:
    name: str
    continent: str
    centroid: tuple[float, float] | None
    subdivisions: frozenset[str]


@dataclass(frozen=True, slots=True)
class GeoCodes:
    continents: Mapping[str, str]  # "EU" -> "Europe"
    countries: Mapping[str, Country]  # "GB" -> Country


@functools.cache
def geocodes() -> GeoCodes:
    """The code table, loaded from geocodes.json on first call and kept."""
    with GEOCODES_PATH.open(encoding="utf-8") as file:
        raw = json.load(file)
    countries = {
        iso: Country(
            name=entry.get("name", iso),
            continent=entry["continent"],
            centroid=tuple(entry["centroid"]) if entry.get("centroid") else None,
            subdivisions=frozenset(entry.get("subdivisions") or ()),
        )
        for iso, entry in raw["countries"].items()
    }
    return GeoCodes(MappingProxyType(dict(raw["continents"])), MappingProxyType(countries))


def validate_geo_code(code: str) -> str | None:
    """None if ``code`` names a known continent, country or subdivision, else a one-line reason."""
    parts = code.split("-")
    if not code or len(parts) > 3 or not all(parts):
        return (f"geo code {shown(code)} must be CONTINENT, CONTINENT-COUNTRY or "
                f"CONTINENT-COUNTRY-SUBDIVISION (e.g. 'EU', 'NA-US', 'NA-US-CA')")
    table = geocodes()
    continent = parts[0]
    if continent not in table.continents:
        known = ", ".join(sorted(table.continents))
        return f"unknown continent {shown(continent)} in {shown(code)} (known: {known})"
    if len(parts) == 1:
        return None
    iso = parts[1]
    country = table.countries.get(iso)
    if country is None:
        return f"unknown country {shown(iso)} in {shown(code)}"
    if country.continent != continent:
        return f"country {iso} is in {country.continent}, not {continent}"
    if len(parts) == 2:
        return None
    subdivision = parts[2]
    if subdivision not in country.subdivisions:
        return f"unknown subdivision {shown(subdivision)} of country {iso} in {shown(code)}"
    return None


def country_centroid(iso: str) -> tuple[float, float] | None:
    """(latitude, longitude) of the middle of country ``iso``, None if unknown."""
    country = geocodes().countries.get(iso)
    return country.centroid if country is not None else None


def country_continent(iso: str) -> str | None:
    """The continent code the table puts country ``iso`` in, None if unknown."""
    country = geocodes().countries.get(iso)
    return country.continent if country is not None else None
