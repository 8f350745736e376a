"""Selection policies: which of a region's healthy endpoints go in one response.

Each policy is a small class found by its YAML name in `POLICIES`; one instance serves one
record, so stateful policies (rotation, smooth weights) keep their state per record. `pick` runs
on the hot path: it gets the healthy endpoints in YAML order and must not await or log.
"""

from __future__ import annotations

from typing import Sequence

from gslb.dynamic import Endpoint
from gslb.health.status import ALWAYS_UP, HealthView


class Policy:
    name = ""

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        """`healthy` is non-empty, in YAML order; `count` 0 means the policy's natural number
        (one for single-answer policies, all for `all`); `client_key` is the client address as an
        int (the ECS address when given); `health`/`check` give RTT and load for the policies
        that read them."""
        raise NotImplementedError

    def scope(self, version: int, region_scope: int) -> int:
        """The ECS scope for an answer whose region holds over `region_scope` bits. A policy whose
        choice depends on the client's address (hash) must narrow it to the bits it reads."""
        return region_scope


class AllPolicy(Policy):
    """Every healthy endpoint (multi-value answer), capped by `answers` when set."""

    name = "all"

    def pick(self, healthy: Sequence[Endpoint], count: int, client_key: int,
             health: HealthView = ALWAYS_UP, check: str | None = None) -> Sequence[Endpoint]:
        return healthy[:count] if count else healthy


POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (AllPolicy,)}
