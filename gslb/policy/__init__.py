"""Selection policies: which of a region's healthy endpoints go in one response.

One module per policy kind, each a small class (gslb/policy/base.py says what a policy is), found
by its YAML name in `POLICIES`. A kind declares the options it takes (validated at load, each
problem at its key path) and what it needs from its record's check (`needs`: probe RTTs, reported
load), which `gslb check` holds against what the check provides. Adding a policy: one module with
one class, and one line below.

In zone YAML a record names its policy, with options if it takes any:

    policy: weighted
    policy: {hash: {ipv4_prefix: 20}}
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gslb.config.problems import Problems, join_path, shown
from gslb.policy.all import AllPolicy
from gslb.policy.base import LOAD, NEEDS, RTT, Option, Policy
from gslb.policy.failover import FailoverPolicy
from gslb.policy.fastest import FastestPolicy
from gslb.policy.hash import HashPolicy
from gslb.policy.least_loaded import LeastLoadedPolicy
from gslb.policy.random import RandomPolicy
from gslb.policy.round_robin import RoundRobinPolicy
from gslb.policy.weighted import WeightedPolicy

__all__ = [
    "LOAD", "NEEDS", "POLICIES", "RTT", "AllPolicy", "FailoverPolicy", "FastestPolicy", "HashPolicy",
    "LeastLoadedPolicy", "Option", "Policy", "RandomPolicy", "RoundRobinPolicy", "WeightedPolicy",
    "build_policy", "parse_policy",
]

POLICIES: Mapping[str, type[Policy]] = MappingProxyType({
    cls.name: cls
    for cls in (
        AllPolicy,
        RoundRobinPolicy,
        WeightedPolicy,
        RandomPolicy,
        HashPolicy,
        FailoverPolicy,
        FastestPolicy,
        LeastLoadedPolicy,
    )
})
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


def build_policy(name: str, options: Mapping[str, Any] = NO_OPTIONS) -> Policy:
    """A fresh policy for one record (validated name and options)."""
    return POLICIES[name](options)


def parse_policy(raw: Any, path: str, problems: Problems) -> tuple[str, Mapping[str, Any]] | None:
    """A record's `policy:` (a name, or {NAME: {OPTION: VALUE}}) -> (name, validated options);
    None with every problem at its key path."""
    if isinstance(raw, dict):
        if len(raw) != 1:
            problems.add(path, f"must be a policy name, or one name with its options like {{hash: {{ipv4_prefix: 20}}}}, "
                               f"got {shown(raw)}")
            return None
        (name, given), = raw.items()
        options_path = join_path(path, name)
    else:
        name, given, options_path = raw, None, path
    cls = POLICIES.get(name) if isinstance(name, str) else None
    if cls is None:
        problems.add(path, f"unknown policy {shown(name)}; one of {', '.join(POLICIES)}")
        return None
    if given is None:
        return name, NO_OPTIONS
    declared = {option.name: option for option in cls.options}
    if not isinstance(given, dict):
        takes = f"options {', '.join(declared)}" if declared else "no options"
        problems.add(options_path, f"must be a mapping of options; {name} takes {takes}, got {shown(given)}")
        return None
    before = len(problems)
    options: dict[str, Any] = {}
    for key, value in given.items():
        option = declared.get(key)
        if option is None:
            takes = f"one of {', '.join(declared)}" if declared else "none: it takes no options"
            problems.add(join_path(options_path, key), f"unknown option of {name}; expected {takes}")
            continue
        try:
            options[key] = option.parse(value)
        except ValueError as error:
            problems.add(join_path(options_path, key), str(error))
    if len(problems) > before:
        return None
    return name, MappingProxyType(options)
