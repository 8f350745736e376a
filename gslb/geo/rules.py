"""A zone's region rules, and matching GeoIP facts against them.

Matching order (the first that applies wins): subnet rule, ASN rule, subdivision, country,
continent, the nearest region by great-circle distance (scaled by each region's bias), and
``default_region``. Subnet and ASN rules need the client's address, so the region table applies
them (the ASN from the ASN database); ``RegionRules.match`` does everything after them.

Bias (Route 53 geoproximity, "How Amazon Route 53 uses bias to route traffic"): a region's
distance to a client is scaled before the nearest one is chosen, by ``1 - bias/100`` for a positive
bias (the region looks nearer: its area grows) and divided by ``1 + bias/100`` for a negative one
(it looks farther: its area shrinks). Bias +50 halves the distance, -50 doubles it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from types import MappingProxyType

from gslb.geo.codes import country_centroid, country_continent
from gslb.geo.facts import GeoFacts

# Mean Earth radius (IUGG). Which radius we pick changes distances by <0.5%, never the ranking.
EARTH_RADIUS_KM = 6371.0088


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance in km between two (latitude, longitude) points in degrees (haversine)."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    # min() guards asin against h creeping past 1.0 by rounding for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def biased_km(km: float, bias: int) -> float:
    """Route 53's biased distance: ``km * (1 - bias/100)`` for bias > 0, ``km / (1 + bias/100)``
    for bias < 0 (bias in -99..99)."""
    if bias > 0:
        return km * (1 - bias / 100)
    if bias < 0:
        return km / (1 + bias / 100)
    return km


def asn_text(asn: int) -> str:
    """``AS13335``: how zones, rules and explanations write an autonomous system number."""
    return f"AS{asn}"


@dataclass(frozen=True, slots=True)
class RegionRules:
    """Which region serves which clients; built once per zone by the config loader.

    ``serves`` maps an octoDNS geo code ("EU", "NA-US", "NA-US-CA") to a region; codes should have
    been checked with ``validate_geo_code`` by the loader. ``asns`` maps an autonomous system
    number to a region (applied by the region table, from the ASN database); ``bias`` holds each
    biased region's bias, -99..99. Mappings are copied into read-only proxies, so a RegionRules
    never changes after it is built.
    """

    regions: tuple[str, ...]  # YAML order; ties in distance go to the earlier region
    locations: Mapping[str, tuple[float, float]]  # region -> (lat, lon)
    serves: Mapping[str, str]  # geo code -> region
    subnets: tuple[tuple[IPv4Network | IPv6Network, str], ...] = ()
    default_region: str | None = None
    asns: Mapping[int, str] = field(default_factory=dict)  # ASN -> region
    bias: Mapping[str, int] = field(default_factory=dict)  # region -> bias; absent: 0
    # Indexes derived from `serves`, keyed by what a GeoIP record holds. A country matches by its
    # ISO code alone: the continent in "NA-US" is redundant, and a database that files a country
    # under another continent than our code table must still match the user's rule.
    _by_subdivision: Mapping[tuple[str, str], tuple[str, str]] = field(
        init=False, repr=False, compare=False)
    _by_country: Mapping[str, tuple[str, str]] = field(init=False, repr=False, compare=False)
    _by_continent: Mapping[str, tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: fields are fixed here, once
        set_(self, "regions", tuple(self.regions))
        set_(self, "locations", MappingProxyType(
            {region: (float(lat), float(lon)) for region, (lat, lon) in self.locations.items()}))
        set_(self, "serves", MappingProxyType(dict(self.serves)))
        set_(self, "subnets", tuple((ip_network(net), region) for net, region in self.subnets))
        set_(self, "asns", MappingProxyType({int(asn): region for asn, region in self.asns.items()}))
        set_(self, "bias", MappingProxyType({region: int(b) for region, b in self.bias.items() if b}))
        for region, bias in self.bias.items():
            if not -99 <= bias <= 99:
                raise ValueError(f"bias of {region}: {bias} is not in -99..99")
        networks = [net for net, _ in self.subnets]
        if len(set(networks)) != len(networks):
            duplicate = next(net for net in networks if networks.count(net) > 1)
            raise ValueError(f"subnets: {duplicate} is listed more than once")
        known = set(self.regions)
        references = [("locations", region) for region in self.locations]
        references += [(f"serves {code}", region) for code, region in self.serves.items()]
        references += [(f"subnets {net}", region) for net, region in self.subnets]
        references += [(f"serves {asn_text(asn)}", region) for asn, region in self.asns.items()]
        references += [("bias", region) for region in self.bias]
        if self.default_region is not None:
            references.append(("default_region", self.default_region))
        for where, region in references:
            if region not in known:
                raise ValueError(f"{where}: unknown region {region!r}")
        subdivisions, countries, continents = {}, {}, {}
        for code, region in self.serves.items():
            parts = code.split("-")
            if len(parts) == 3:
                subdivisions[(parts[1], parts[2])] = (region, f"subdivision {code}")
            elif len(parts) == 2:
                countries[parts[1]] = (region, f"country {code}")
            else:
                continents[code] = (region, f"continent {code}")
        set_(self, "_by_subdivision", MappingProxyType(subdivisions))
        set_(self, "_by_country", MappingProxyType(countries))
        set_(self, "_by_continent", MappingProxyType(continents))

    def match(self, facts: GeoFacts | None) -> tuple[str | None, str]:
        """(region, rule) for a client GeoIP describes by ``facts``; subnet rules not included.

        The rule is a short description for logs and /explain: "subdivision NA-US-CA",
        "country NA-US", "continent EU", "nearest us-west (1234 km)" (with a bias: "nearest
        us-west (1234 km, biased 617 km)"), "default" or "none".
        """
        if facts is not None:
            country = facts.country
            if country is not None:
                if facts.subdivision is not None:
                    hit = self._by_subdivision.get((country, facts.subdivision))
                    if hit is not None:
                        return hit
                hit = self._by_country.get(country)
                if hit is not None:
                    return hit
            continent = facts.continent
            if continent is None and country is not None:
                continent = country_continent(country)
            if continent is not None:
                hit = self._by_continent.get(continent)
                if hit is not None:
                    return hit
            point = self.point_of(facts)
            if point is not None:
                nearest = self.nearest(point)
                if nearest is not None:
                    region, km = nearest
                    bias = self.bias.get(region, 0)
                    if bias:
                        return region, f"nearest {region} ({km:.0f} km, biased {biased_km(km, bias):.0f} km)"
                    return region, f"nearest {region} ({km:.0f} km)"
        if self.default_region is not None:
            return self.default_region, "default"
        return None, "none"

    @staticmethod
    def point_of(facts: GeoFacts | None) -> tuple[float, float] | None:
        """Where the nearest-region rule measures from: the record's location, else (Country-type
        databases have none) the middle of its country."""
        if facts is None:
            return None
        if facts.latitude is not None and facts.longitude is not None:
            return facts.latitude, facts.longitude
        return country_centroid(facts.country) if facts.country is not None else None

    def asn_region(self, asn: int | None) -> str | None:
        """The region an ASN rule gives clients of autonomous system ``asn``, if any."""
        return self.asns.get(asn) if asn is not None else None

    def nearest(self, point: tuple[float, float]) -> tuple[str, float] | None:
        """(region, km) of the located region nearest ``point`` by biased distance (km is the
        real distance); None if no region has a location."""
        best: tuple[str, float] | None = None
        best_biased = 0.0
        bias = self.bias
        for region in self.regions:  # YAML order, so the first of equally near regions wins
            location = self.locations.get(region)
            if location is None:
                continue
            km = great_circle_km(point, location)
            biased = biased_km(km, bias[region]) if region in bias else km
            if best is None or biased < best_biased:
                best, best_biased = (region, km), biased
        return best

    def distances(self, point: tuple[float, float]) -> list[tuple[str, float, float]]:
        """(region, km, biased km) of every located region from ``point``, in YAML order: what
        the nearest-region rule compared (for explain)."""
        found = []
        for region in self.regions:
            location = self.locations.get(region)
            if location is not None:
                km = great_circle_km(point, location)
                found.append((region, km, biased_km(km, self.bias.get(region, 0))))
        return found
