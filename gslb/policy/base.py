"""What every selection policy is: a small class that picks from a region's healthy endpoints,
declaring what it needs from health checks and which options it takes.

`pick` runs on the hot path: it gets the healthy endpoints in YAML order (never empty) and must not
await, log or raise. It may return a slice of `healthy`. State is keyed by address, never by
position alone, so it survives an endpoint leaving the healthy set and coming back. One instance
serves one record, so stateful policies keep their state per record; and because a record's
fallback can send one region's clients to another region's pool, that state is kept per region
(`healthy[0].region`), so interleaved regions never disturb each other's rotation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gslb.config.problems import shown
from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView

# What a policy can need from its record's check (what a check kind provides: gslb/health/specs.py).
RTT = "rtt"
LOAD = "load"
NEEDS: Mapping[str, tuple[str, str]] = {
    # need -> (what it is, how a zone provides it)
    RTT: ("probe round-trip times", "give the record a check (any http, https or tcp check)"),
    LOAD: ("the load its sites report", "give the record an http or https check with load: {json: FIELD} or {header: NAME}"),
}


@dataclass(frozen=True, slots=True)
class Option:
    """One option a policy takes in zone YAML, like `policy: {hash: {ipv4_prefix: 20}}`."""

    name: str
    default: Any
    parse: Callable[[Any], Any]  # the YAML value -> the value; ValueError saying what is wrong
    help: str


def integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}, got {shown(value)}")
        return value
    return parse


def number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}, got {shown(value)}")
        return float(value)
    return parse


class Policy:
    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()  # RTT, LOAD: what its record's check must provide
    options: ClassVar[tuple[Option, ...]] = ()
    __slots__ = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        """`options`: validated values by name (`parse_options`); absent ones take their default."""

    def option(self, options: Mapping[str, Any] | None, name: str) -> Any:
        """The value of a declared option: the given one, else its default."""
        if options is not None and name in options:
            return options[name]
        return next(o.default for o in self.options if o.name == name)

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        """`healthy` is non-empty, in YAML order; `count` 0 means the policy's natural number
        (one for single-answer policies, all for `all`); `client_key` is the client address as an
        int (the ECS address when given); `health`/`check` give RTT and load for the policies
        that read them. At most `count` distinct endpoints come back."""
        raise NotImplementedError

    def scope(self, version: int, region_scope: int) -> int:
        """The ECS scope for an answer whose region holds over `region_scope` bits. A policy whose
        choice depends on the client's address (hash) must narrow it to the bits it reads."""
        return region_scope

    def fork(self) -> Policy:
        """An independent copy with the same state: what-if and explain pick from it, so the
        live rotation does not move. Policies without state may return themselves."""
        return copy.deepcopy(self)


def wrapped(healthy: Sequence[Endpoint], start: int, count: int) -> Sequence[Endpoint]:
    """`count` endpoints (at most all) from `start`, wrapping round to the beginning."""
    size = len(healthy)
    end = start + min(count, size)
    if end <= size:
        return healthy[start:end]
    return [*healthy[start:], *healthy[:end - size]]


def known_first(value: float | None) -> tuple[bool, float]:
    return (True, 0.0) if value is None else (False, value)
