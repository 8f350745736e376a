"""The GSLB decision for one query: the endpoints a client is told, for how long, and why.

`gslb.resolve` makes it; the general path, the fast path and explain only encode it. It is a
NamedTuple rather than a frozen dataclass because one is built per GSLB answer on the hot path,
and a frozen dataclass costs ~1.3 us to construct (its __init__ goes through object.__setattr__
per field) against ~0.35 us here: a sixth of a whole fast-path answer.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from gslb.dynamic import Endpoint

# Why the endpoints are these: one of a few fixed phrases, so the hot path formats nothing.
WHY_REGION = "the client's region"
WHY_PARTIAL = "the client's region, with some of its endpoints down"
WHY_FALLBACK = "a fallback region: the client's region has no endpoint up"
WHY_UNPLACED = "no region rule placed the client: the first region in order"
WHY_ALL_DOWN_ALL = "no endpoint up anywhere: every endpoint not set down (when_all_down: all)"
WHY_ALL_DOWN_FIXED = "no endpoint up anywhere: the when_all_down list"
WHY_ALL_DOWN_SERVFAIL = "no endpoint up anywhere: SERVFAIL (when_all_down: servfail)"


class Decision(NamedTuple):
    region: str | None  # the region whose pool answered; None when no pool did
    endpoints: Sequence[Endpoint]  # in answer order; empty only with SERVFAIL or all set down
    scope: int  # the ECS SCOPE PREFIX-LENGTH of the reply: 0 unless the client came from ECS
    ttl: int  # the record's TTL, or its degraded TTL when `degraded`
    degraded: bool  # not the client's own region at full strength: answers carry the degraded TTL
    why: str  # one of the WHY_ phrases above
    servfail: bool = False  # when_all_down: servfail and nothing is up
