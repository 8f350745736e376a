"""GeoIP and the zone's region rules: client address -> region and the widest correct ECS scope.

    database = GeoDatabase.open("geodata/dbip-city-lite.mmdb")     # GeoDataError if unusable
    regions = RegionMap(database, RegionRules(...))                 # one per zone, built at load
    placement = regions.locate(ip_address("203.0.113.7"))          # region, scope_prefix, rule
    region, scope = regions.place(ip_address("203.0.113.7"))       # the same, minus the why

A RegionMap answers from a compiled RegionTable (~1 us) once it has one: from the cache on disk
at once, else compiled in a background process while it answers lazily from the tree
(``compile="sync"`` compiles before returning; ``compile="off"`` never does).
"""

from gslb.geo.codes import country_centroid, validate_geo_code
from gslb.geo.compiled import RegionTable
from gslb.geo.database import GeoDatabase, GeoDataError
from gslb.geo.facts import GeoFacts
from gslb.geo.regionmap import Placement, RegionMap
from gslb.geo.rules import RegionRules, great_circle_km

__all__ = [
    "GeoDataError",
    "GeoDatabase",
    "GeoFacts",
    "Placement",
    "RegionMap",
    "RegionRules",
    "RegionTable",
    "country_centroid",
    "great_circle_km",
    "validate_geo_code",
]
