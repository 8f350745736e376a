"""A GSLB record in zone YAML (a record with `pools:`) -> DynamicRecord."""

from __future__ import annotations

import ipaddress
import math
import re
import struct
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from dnslib import AAAA, RR, A, DNSLabel
from dnslib import CNAME as CNAME_RDATA

from gslb.config.problems import Problems, join_path, shown
from gslb.config.rdata import _integer, seconds
from gslb.dynamic import DynamicRecord, Endpoint
from gslb.geo import RegionRules
from gslb.geo.rules import great_circle_km
from gslb.health.checks import Check
from gslb.names import Name, NameError_, parse_absolute, to_text
from gslb.policy import NEEDS, POLICIES, parse_policy

KEYS = {"type", "ttl", "ttl_degraded", "policy", "answers", "pools", "check", "fallback", "when_all_down",
        "min_healthy"}
PERCENT = re.compile(r"^\s*([0-9]{1,3}(?:\.[0-9]+)?)\s*%\s*$")
MIN_HEALTHY_HINT = "a number of endpoints like 2, or a share of each pool like 50%"
DEFAULT_POLICY = "all"
CNAME_POLICY = "failover"  # a CNAME record's default: `all` with one answer, said plainly
CNAME = 5
MIN_DEGRADED_TTL = 5


def parse_dynamic(
    name: Name,
    rtype: int,
    entry: dict[str, Any],
    path: str,
    zone_ttl: int,
    rules: RegionRules | None,
    check_names: set[str],
    problems: Problems,
    checks: Mapping[str, Check] | None = None,
) -> DynamicRecord | None:
    """`check_names`: every check the zone declares; `checks`: the valid ones, to hold what the
    policy needs (probe RTTs, reported load) against what the record's check provides."""
    before = len(problems)
    for key in entry:
        if key not in KEYS:
            problems.add(join_path(path, key), f"unknown key for a GSLB record; expected one of {', '.join(sorted(KEYS))}")
    if rtype not in (1, 28, CNAME):
        problems.add(join_path(path, "type"), "a GSLB record (with pools) must be of type A, AAAA or CNAME")
        return None
    if rules is None:
        problems.add(join_path(path, "pools"), "pools are keyed by region: declare regions: in this zone")
        return None
    ttl = _int(entry, "ttl", zone_ttl, path, problems, 0, 2**31 - 1, seconds)
    degraded_default = max(MIN_DEGRADED_TTL, ttl // 2) if ttl is not None else MIN_DEGRADED_TTL
    ttl_degraded = _int(entry, "ttl_degraded", min(degraded_default, ttl or degraded_default), path, problems,
                        0, 2**31 - 1, seconds)
    if rtype == CNAME:
        # A name can have one CNAME (RFC 1034 3.6.2, RFC 2181 10.1): one target per answer.
        answers: int | None = 1
        if "answers" in entry and (isinstance(entry["answers"], bool) or entry["answers"] != 1):
            problems.add(join_path(path, "answers"), f"a CNAME record answers with exactly one name: remove answers "
                                                     f"or set it to 1, got {shown(entry['answers'])}")
    else:
        answers = _int(entry, "answers", 0, path, problems, 0, 64)
    parsed_policy = parse_policy(entry.get("policy", DEFAULT_POLICY if rtype != CNAME else CNAME_POLICY),
                                 join_path(path, "policy"), problems)
    if rtype == CNAME and parsed_policy is not None and parsed_policy[0] == "all":
        problems.add(join_path(path, "policy"), "all answers every healthy endpoint, but a CNAME answers one name; "
                                                "use failover (the first healthy) or another policy")
    check = entry.get("check")
    if check is not None and (not isinstance(check, str) or check not in check_names):  # a list is unhashable
        known = ", ".join(sorted(check_names)) or "none declared"
        problems.add(join_path(path, "check"), f"unknown check {shown(check)} (checks: {known})")
    elif parsed_policy is not None and checks is not None:
        _needs(parsed_policy[0], check, checks, join_path(path, "policy"), problems)
    owner = DNSLabel(to_text(name))
    pools = _pools(entry.get("pools"), rtype, owner, ttl or 0, ttl_degraded or 0, join_path(path, "pools"), rules, problems)
    if rtype == CNAME and pools is not None:
        _no_self_target(name, pools, join_path(path, "pools"), problems)
    order = _order(entry.get("fallback", "nearest"), pools, rules, join_path(path, "fallback"), problems)
    when = _when_all_down(entry.get("when_all_down", "all"), rtype, owner, ttl or 0, ttl_degraded or 0,
                          join_path(path, "when_all_down"), problems)
    min_healthy = entry.get("min_healthy")
    min_up = _min_up(min_healthy, pools, join_path(path, "min_healthy"), problems) if "min_healthy" in entry else {}
    if (len(problems) > before or pools is None or order is None or when is None or parsed_policy is None
            or ttl is None or ttl_degraded is None or answers is None):
        return None
    policy, policy_options = parsed_policy
    return DynamicRecord(
        name=name,
        rtype=rtype,
        ttl=ttl,
        ttl_degraded=ttl_degraded,
        policy=policy,
        answers=answers,
        pools=pools,
        order=order,
        check=check,
        when_all_down=when,
        path=path,
        policy_options=policy_options,
        min_healthy=min_healthy if min_up else None,
        min_up=MappingProxyType(min_up or {}),
    )


def _no_self_target(name: Name, pools: Mapping[str, tuple[Endpoint, ...]], path: str, problems: Problems) -> None:
    """A CNAME to its own name is a loop no resolver gets out of."""
    own = to_text(name)
    for region, pool in pools.items():
        for index, endpoint in enumerate(pool):
            if endpoint.address == own:
                problems.add(join_path(join_path(path, region), index),
                             f"{own} points at itself; a CNAME pool lists other names")


def _min_up(raw: Any, pools: Mapping[str, tuple[Endpoint, ...]] | None, path: str,
            problems: Problems) -> dict[str, int] | None:
    """`min_healthy: N` or `"P%"` -> per region, the healthy endpoints its pool needs to serve.

    A percentage is of each pool's size, rounded up (50% of 3 is 2). N larger than a pool would
    keep that region down with every endpoint up: refused, so that "everything up" still means
    every region serves (and selection's fast path needs no count)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        problems.add(path, f"must be {MIN_HEALTHY_HINT}, got {shown(raw)}")
        return None
    if isinstance(raw, str):
        match = PERCENT.match(raw)
        if match is None:
            problems.add(path, f"must be {MIN_HEALTHY_HINT}, got {shown(raw)}")
            return None
        share = float(match.group(1))
        if not 0 < share <= 100:
            problems.add(path, f"a share of the pool must be more than 0% and at most 100%, got {raw}")
            return None
        if pools is None:
            return None
        return {region: max(1, math.ceil(len(pool) * share / 100 - 1e-9)) for region, pool in pools.items()}
    if raw < 1:
        problems.add(path, f"must be at least 1 ({MIN_HEALTHY_HINT}), got {raw}")
        return None
    if pools is None:
        return None
    small = {region: len(pool) for region, pool in pools.items() if len(pool) < raw}
    if small:
        listed = ", ".join(f"{region} has {size}" for region, size in small.items())
        problems.add(path, f"{raw} is more healthy endpoints than some pools hold ({listed}): those regions "
                           f"could never serve; lower it, add endpoints, or use a share like 50%")
        return None
    return {region: raw for region in pools}


def _needs(policy: str, check: str | None, checks: Mapping[str, Check], path: str, problems: Problems) -> None:
    """A policy that reads probe RTTs or reported load, on a record whose check gives none, would
    quietly rank every endpoint as unknown: refuse it, saying what to add."""
    if check is not None and check not in checks:
        return  # the check itself has a problem, reported where it is declared
    provides = checks[check].spec.provides() if check is not None else frozenset()
    for need in sorted(POLICIES[policy].needs - provides):
        what, how = NEEDS[need]
        has = f"which its check {check} ({checks[check].spec.kind}) does not provide" if check is not None \
            else "but the record has no check"
        problems.add(path, f"{policy} needs {what}, {has}; {how}")


def _int(entry: dict[str, Any], key: str, default: int, path: str, problems: Problems, low: int, high: int,
         parse: Callable[[Any, str, int, int], int] = _integer) -> int | None:
    if key not in entry:
        return default
    try:
        return parse(entry[key], key, low, high)
    except ValueError as error:
        problems.add(join_path(path, key), str(error))
        return None


def _address(value: Any, rtype: int) -> str:
    try:
        address = ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IP address") from None
    if (address.version == 4) != (rtype == 1):
        raise ValueError(f"{value} is IPv{address.version}; this is an {'A' if rtype == 1 else 'AAAA'} record")
    return address.compressed


def _endpoint(region: str, value: Any, rtype: int, owner: DNSLabel, ttl: int, ttl_degraded: int) -> Endpoint:
    weight = 1
    probe = None
    if isinstance(value, dict):
        keys = {"value", "weight", "probe"} if rtype == CNAME else {"value", "weight"}
        unknown = set(value) - keys
        if unknown or "value" not in value:
            if rtype == CNAME:
                raise ValueError("an endpoint is a host name, or {value: NAME, weight: N, probe: ADDRESS}")
            if "probe" in value:
                raise ValueError("probe: is for CNAME pools (host names); an address is probed at itself")
            raise ValueError("an endpoint is an address, or {value: ADDRESS, weight: N}")
        if "weight" in value:
            weight = _integer(value["weight"], "weight", 0, 1_000_000)
        if "probe" in value:
            probe = _probe_address(value["probe"])
        value = value["value"]
    rdata: CNAME_RDATA | A | AAAA
    if rtype == CNAME:
        address = _host_name(value)
        rdata_label = DNSLabel(address)
        rdata = CNAME_RDATA(rdata_label)
        # Uncompressed: a pointer would need to know where in the message the rdata lands.
        packed = b"".join(bytes((len(part),)) + part for part in rdata_label.label) + b"\x00"
    else:
        address = _address(value, rtype)
        rdata = A(address) if rtype == 1 else AAAA(address)
        packed = ipaddress.ip_address(address).packed
    return Endpoint(
        region=region,
        address=address,
        weight=weight,
        record=RR(owner, rtype, 1, ttl, rdata),
        degraded_record=RR(owner, rtype, 1, ttl_degraded, rdata),
        wire=_pointer_rr(rtype, ttl, packed),
        degraded_wire=_pointer_rr(rtype, ttl_degraded, packed),
        probe=probe,
    )


def _host_name(value: Any) -> str:
    """A CNAME pool's target: a fully qualified name -> its canonical text (lower case, with the
    trailing dot), which is also the endpoint's health key."""
    if not isinstance(value, str):
        raise ValueError(f"must be a host name like lb-eu.example.net., got {shown(value)}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise ValueError(f"{value} is an IP address; a CNAME pool lists host names (a record of type "
                         f"{'A' if ':' not in value else 'AAAA'} lists addresses)")
    try:
        name = parse_absolute(value)
    except NameError_ as error:
        raise ValueError(f"{error} (a host name like lb-eu.example.net.)") from None
    if not name:
        raise ValueError("the root '.' is not a host name")
    return to_text(name)


class _FieldError(ValueError):
    """A problem with one key of an endpoint's mapping: reported at that key's path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _at(path: str, error: ValueError) -> str:
    return join_path(path, error.key) if isinstance(error, _FieldError) else path


def _probe_address(value: Any) -> str:
    try:
        return ipaddress.ip_address(value if isinstance(value, str) else "").compressed
    except ValueError:
        raise _FieldError("probe", f"{shown(value)} is not an IP address; give the address health checks "
                                   f"connect to, like 192.0.2.10 (without probe: the name is resolved)") from None


def _pointer_rr(rtype: int, ttl: int, rdata: bytes) -> bytes:
    """An RR owned by the question's name: a compression pointer to offset 12 (RFC 1035 4.1.4)."""
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def _pools(raw: Any, rtype: int, owner: DNSLabel, ttl: int, ttl_degraded: int, path: str, rules: RegionRules,
           problems: Problems) -> Mapping[str, tuple[Endpoint, ...]] | None:
    if not isinstance(raw, dict) or not raw:
        problems.add(path, f"must map region names to lists of endpoint {'host names' if rtype == CNAME else 'addresses'}")
        return None
    pools: dict[str, tuple[Endpoint, ...]] = {}
    for region, endpoints in raw.items():
        region_path = join_path(path, region)
        if region not in rules.regions:
            problems.add(region_path, f"unknown region {shown(region)}; regions are {', '.join(rules.regions)}")
            continue
        if not isinstance(endpoints, list) or not endpoints:
            problems.add(region_path, f"must be a non-empty list of {'host names' if rtype == CNAME else 'addresses'}")
            continue
        built: list[Endpoint] = []
        seen: set[str] = set()
        for index, value in enumerate(endpoints):
            try:
                endpoint = _endpoint(region, value, rtype, owner, ttl, ttl_degraded)
            except ValueError as error:
                problems.add(_at(join_path(region_path, index), error), str(error))
                continue
            if endpoint.address in seen:
                problems.add(join_path(region_path, index), f"{endpoint.address} is listed twice in this pool")
                continue
            seen.add(endpoint.address)
            built.append(endpoint)
        pools[region] = tuple(built)
    return MappingProxyType(pools)


def _order(raw: Any, pools: Mapping[str, tuple[Endpoint, ...]] | None, rules: RegionRules, path: str,
           problems: Problems) -> Mapping[str | None, tuple[str, ...]] | None:
    """For every region, the regions to try in turn. An explicit fallback list comes first; the
    remaining pools follow by distance, so clients go elsewhere only when nothing at all is up."""
    if pools is None:
        return None
    explicit: dict[str, list[str]] = {}
    if raw != "nearest":
        if not isinstance(raw, dict):
            problems.add(path, "must be 'nearest' or a mapping like {eu: [us-east, asia]}")
            return None
        for region, targets in raw.items():
            entry_path = join_path(path, region)
            if region not in rules.regions:
                problems.add(entry_path, f"unknown region {shown(region)}")
                continue
            if not isinstance(targets, list) or not all(t in rules.regions for t in targets):
                problems.add(entry_path, f"must be a list of regions from: {', '.join(rules.regions)}")
                continue
            explicit[region] = targets
    with_pools = [r for r in rules.regions if r in pools]

    def by_distance(origin: str) -> list[str]:
        here = rules.locations.get(origin)
        if here is None:
            return list(with_pools)
        return sorted(with_pools,
                      key=lambda r: great_circle_km(here, rules.locations[r]) if r in rules.locations else float("inf"))

    order: dict[str | None, tuple[str, ...]] = {None: tuple(with_pools)}
    for region in rules.regions:
        sequence = [region] if region in pools else []
        sequence += [r for r in explicit.get(region, []) if r in pools]
        sequence += by_distance(region)
        order[region] = tuple(dict.fromkeys(sequence))
    return MappingProxyType(order)


def _when_all_down(raw: Any, rtype: int, owner: DNSLabel, ttl: int, ttl_degraded: int, path: str,
                   problems: Problems) -> str | tuple[Endpoint, ...] | None:
    if raw == "all" or raw == "servfail":
        return str(raw)
    if isinstance(raw, list) and raw:
        endpoints = []
        for index, value in enumerate(raw):
            try:
                endpoints.append(_endpoint("", value, rtype, owner, ttl, ttl_degraded))
            except ValueError as error:
                problems.add(_at(join_path(path, index), error), str(error))
        return tuple(endpoints)
    what = "host names" if rtype == CNAME else "addresses"
    problems.add(path, f"must be 'all' (answer every endpoint), 'servfail', or a list of {what}")
    return None
