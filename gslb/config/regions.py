"""The zone's `regions:`, `subnets:` and `default_region:` -> RegionRules.

A region's `serves:` lists geo codes (EU, NA-US, NA-US-CA) and autonomous systems (AS13335: the
clients an ASN database places in that AS), and its optional `bias:` (-99..99) grows or shrinks the
area the nearest-region rule gives it (Route 53 geoproximity; gslb/geo/rules.py).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from gslb.config.problems import Problems, join_path, shown
from gslb.geo.codes import validate_geo_code
from gslb.geo.rules import RegionRules, asn_text

REGION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
REGION_KEYS = ("location", "serves", "bias")
ASN = re.compile(r"^AS([0-9]{1,10})$")
# What an ASN written some other way looks like ("AS-13335", "as13335", "ASN 13335"), so that it
# gets an ASN hint rather than a geo-code one.
ASN_LIKE = re.compile(r"^\s*AS[\s_-]?N?[\s_-]?[0-9]+\s*$", re.IGNORECASE)
MAX_ASN = 4294967295  # 32-bit AS numbers (RFC 6793)
ASN_HINT = "write an autonomous system as AS and its number, like AS13335"


def parse_regions(doc: dict[str, Any], problems: Problems) -> RegionRules | None:
    """None when the zone declares no regions (a static-only zone) or has problems in them."""
    raw = doc.get("regions")
    if raw is None:
        for key in ("subnets", "default_region"):
            if key in doc:
                problems.add(key, "needs regions: to refer to")
        return None
    before = len(problems)
    if not isinstance(raw, dict) or not raw:
        problems.add("regions", "must map region names to {location: [lat, lon], serves: [geo codes]}")
        return None
    names: list[str] = []
    locations: dict[str, tuple[float, float]] = {}
    serves: dict[str, str] = {}
    asns: dict[int, str] = {}
    bias: dict[str, int] = {}
    for name, spec in raw.items():
        path = join_path("regions", name)
        if not isinstance(name, str) or not REGION_NAME.match(name):
            problems.add(path, "a region name is letters, digits, '-', '_' or '.', like us-east")
            continue
        names.append(name)
        if not isinstance(spec, dict):
            problems.add(path, "must be a mapping like {location: [50.11, 8.68], serves: [EU]}")
            continue
        for key in spec:
            if key not in REGION_KEYS:
                problems.add(join_path(path, key), f"unknown key; expected one of {', '.join(REGION_KEYS)}")
        location = _location(spec.get("location"), join_path(path, "location"), problems)
        if location is not None:
            locations[name] = location
        if "bias" in spec:
            value = _bias(spec["bias"], join_path(path, "bias"), problems)
            if value:
                bias[name] = value
        codes = spec.get("serves", [])
        if not isinstance(codes, list):
            problems.add(join_path(path, "serves"), "must be a list of geo codes and ASNs like [EU, NA-US, NA-US-CA, AS13335]")
            continue
        for index, code in enumerate(codes):
            code_path = join_path(join_path(path, "serves"), index)
            if _is_asn_attempt(code):
                asn = _asn(code, code_path, problems)
                if asn is None:
                    continue
                if asn in asns and asns[asn] != name:
                    problems.add(code_path, f"{asn_text(asn)} is already served by region {asns[asn]}; "
                                            "an autonomous system belongs to one region")
                else:
                    asns[asn] = name
                continue
            reason = validate_geo_code(code) if isinstance(code, str) else "a geo code is a string like EU or NA-US-CA"
            if reason is not None:
                problems.add(code_path, reason)
            elif code in serves and serves[code] != name:
                problems.add(code_path, f"{code} is already served by region {serves[code]}; a code belongs to one region")
            else:
                serves[code] = name
    subnets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    raw_subnets = doc.get("subnets", {})
    if not isinstance(raw_subnets, dict):
        problems.add("subnets", "must map CIDR prefixes to region names, like {198.18.0.0/15: us-east}")
    else:
        seen: dict[Any, str] = {}
        for cidr, region in raw_subnets.items():
            path = join_path("subnets", cidr)
            try:
                network = ipaddress.ip_network(str(cidr), strict=True)
            except ValueError as error:
                problems.add(path, f"not a CIDR prefix: {error}")
                continue
            if network in seen:
                problems.add(path, f"the same prefix as {seen[network]}")
                continue
            seen[network] = str(cidr)
            if region not in names:
                problems.add(path, f"unknown region {shown(region)}; regions are {', '.join(names)}")
                continue
            subnets.append((network, region))
    default = doc.get("default_region")
    if default is not None and default not in names:
        problems.add("default_region", f"unknown region {shown(default)}; regions are {', '.join(names)}")
    if len(problems) > before:
        return None
    return RegionRules(
        regions=tuple(names),
        locations=locations,
        serves=serves,
        subnets=tuple(subnets),
        default_region=default,
        asns=asns,
        bias=bias,
    )


def _is_asn_attempt(code: Any) -> bool:
    """An entry of serves: meant as an autonomous system (valid or not), not a geo code."""
    if isinstance(code, int) and not isinstance(code, bool):
        return True
    return isinstance(code, str) and bool(ASN_LIKE.match(code))


def _asn(code: Any, path: str, problems: Problems) -> int | None:
    match = ASN.match(code) if isinstance(code, str) else None
    if match is None:
        problems.add(path, f"{code!r} is not an ASN the way zones write them; {ASN_HINT}")
        return None
    number = int(match.group(1))
    if not 1 <= number <= MAX_ASN:
        problems.add(path, f"{code}: an AS number is 1 to {MAX_ASN}; {ASN_HINT}")
        return None
    return number


def _bias(value: Any, path: str, problems: Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not -99 <= value <= 99:
        problems.add(path, f"must be a whole number from -99 to 99 (positive: the region's area grows, "
                           f"negative: it shrinks), got {value!r}")
        return None
    return value


def _location(value: Any, path: str, problems: Problems) -> tuple[float, float] | None:
    if value is None:
        problems.add(path, "missing; give [latitude, longitude] so clients can be sent to the nearest region")
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        problems.add(path, "must be [latitude, longitude] in degrees, like [50.11, 8.68]")
        return None
    latitude, longitude = float(value[0]), float(value[1])
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        problems.add(path, "latitude must be -90..90 and longitude -180..180")
        return None
    return latitude, longitude
