"""GeoIP and the zone's region rules: client address -> region and the widest correct ECS scope.

By concept, each a module:
    mmdb.py         GeoDatabase, AsnDatabase: .mmdb files read into memory; all search-tree walking
    datasection.py  the four record fields we read, decoded from the mmdb data section
    rules.py        RegionRules: a zone's regions (validated by gslb/config/regions.py)
    regiontable.py  RegionTable: the rules over every address, as merged ranges
    tablecache.py   TableCache: tables shared in memory and kept on disk
    locator.py      Locator: address -> Placement(region, scope_prefix); build_locator, locate_catalog

    database = GeoDatabase.open("geodata/dbip-city-lite.mmdb")     # GeoDataError if unusable
    locator = build_locator(rules, database, TableCache.at(None))  # complete before it serves
    placement = locator.locate(ip_address("203.0.113.7"))          # region, scope_prefix, rule
"""

from gslb.geo.codes import country_centroid, validate_geo_code
from gslb.geo.facts import GeoFacts
from gslb.geo.locator import Locator, Placement, build_locator, locate_catalog
from gslb.geo.mmdb import AsnDatabase, GeoDatabase, GeoDataError
from gslb.geo.regiontable import RegionTable
from gslb.geo.rules import RegionRules, great_circle_km
from gslb.geo.tablecache import TableCache

__all__ = [
    "AsnDatabase",
    "GeoDataError",
    "GeoDatabase",
    "GeoFacts",
    "Locator",
    "Placement",
    "RegionRules",
    "RegionTable",
    "TableCache",
    "build_locator",
    "country_centroid",
    "great_circle_km",
    "locate_catalog",
    "validate_geo_code",
]
