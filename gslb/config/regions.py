"""The zone's `regions:`, `subnets:` and `default_region:` -> RegionRules."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from gslb.config.problems import Problems, join_path, shown
from gslb.geo.codes import validate_geo_code
from gslb.geo.rules import RegionRules

REGION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def parse_regions(doc: dict, problems: Problems) -> RegionRules | None:
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
            if key not in ("location", "serves"):
                problems.add(join_path(path, key), "unknown key; expected location or serves")
        location = _location(spec.get("location"), join_path(path, "location"), problems)
        if location is not None:
            locations[name] = location
        codes = spec.get("serves", [])
        if not isinstance(codes, list):
            problems.add(join_path(path, "serves"), "must be a list of geo codes like [EU, NA-US, NA-US-CA]")
            continue
        for index, code in enumerate(codes):
            code_path = join_path(join_path(path, "serves"), index)
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
    )


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
