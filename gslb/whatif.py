"""What-if explain: where a client would go if some regions or endpoints were down.

A failure drill without an outage: `gslb explain --assume-down eu` and `/explain?...&down=eu`
evaluate the query against an overlay of the health view that reports those endpoints DOWN,
through an Answerer of their own over a fork of the live Selector (its policies copied, with
their state, when first used), so nothing live changes: not the board, not the policies'
rotation, not the query counters. Without `down` it is the same fork over the live view: the
answer is the one the next query would get. "Down" here means what a failed probe means: when
every endpoint of a record is down, `when_all_down` applies as it would for real.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gslb.dns.answer import Answerer
from gslb.dns.dynamic_answer import DynamicAnswers
from gslb.explain import Explanation, explain
from gslb.health.status import HealthView, Status
from gslb.stats import QueryStats

if TYPE_CHECKING:
    from gslb.build import Loaded
    from gslb.dynamic import DynamicRecord
    from gslb.zone import Catalog


class AssumeDownError(ValueError):
    """A `down` value that names neither a region nor an endpoint; the message says which."""


class AssumeDown:
    """A HealthView: the live one, except that `addresses` are DOWN."""

    def __init__(self, view: HealthView, addresses: frozenset[str]) -> None:
        self.view = view
        self.addresses = addresses

    def status(self, check: str | None, address: str) -> Status:
        if address in self.addresses:
            return Status.DOWN
        return self.view.status(check, address)

    def rtt(self, check: str | None, address: str) -> float | None:
        return self.view.rtt(check, address)

    def load(self, check: str | None, address: str) -> float | None:
        return self.view.load(check, address)

    def forced_down(self, check: str | None, address: str) -> bool:
        return self.view.forced_down(check, address)

    def everything_up(self) -> bool:
        return not self.addresses and self.view.everything_up()

    @property
    def version(self) -> int:
        return self.view.version


def dynamic_records(catalog: Catalog) -> list[DynamicRecord]:
    return [r for zone in catalog.zones for node in zone.nodes.values() for r in node.dynamic.values()]


def resolve(catalog: Catalog, names: Iterable[str]) -> frozenset[str]:
    """Regions and endpoint addresses -> the endpoint addresses to treat as down."""
    records = dynamic_records(catalog)
    by_region: dict[str, set[str]] = {}
    endpoints: set[str] = set()
    for record in records:
        for region, pool in record.pools.items():
            by_region.setdefault(region, set()).update(e.address for e in pool)
            endpoints.update(e.address for e in pool)
    for zone in catalog.zones:
        if zone.region_map is not None:
            for region in zone.region_map.rules.regions:
                by_region.setdefault(region, set())  # a region with no pools: nothing to take down
    down: set[str] = set()
    for name in names:
        name = name.strip()
        try:
            address = ipaddress.ip_address(name).compressed
        except ValueError:
            address = None
        if address is not None:
            if address not in endpoints:
                raise AssumeDownError(f"down: {name} is not an endpoint of any GSLB record")
            down.add(address)
        elif name.lower() in endpoints and name.endswith("."):  # a CNAME pool's host name
            down.add(name.lower())
        elif name in by_region:
            down.update(by_region[name])
        else:
            known = ", ".join(sorted(by_region)) or "none"
            raise AssumeDownError(f"down: {name!r} is neither a region nor an endpoint address; regions: {known}")
    return frozenset(down)


def answerer_assuming(loaded: Loaded, down: frozenset[str]) -> Answerer:
    """An Answerer over the live catalog that counts into a throwaway QueryStats and logs no
    queries, over a fork of the live Selector (copies of its policies): with `down`, seeing those
    endpoints DOWN."""
    live = loaded.answerer
    health: HealthView = loaded.selector.health
    if down:
        health = AssumeDown(health, down)
    dynamic = DynamicAnswers(loaded.selector.fork(health))
    return Answerer(loaded.catalog, live.settings, dynamic, stats=QueryStats())


def explain_assuming(loaded: Loaded, name: str, rtype: str = "A", *, client: str | None = None,
                     subnet: str | None = None, down: Sequence[str] = ()) -> Explanation:
    """`gslb.explain.explain` against the live state, or against it with `down` taken down.
    Raises ExplainError or AssumeDownError with a message naming the bad field."""
    addresses = resolve(loaded.catalog, down) if down else frozenset()
    health: HealthView = loaded.selector.health
    if addresses:
        health = AssumeDown(health, addresses)
    return explain(answerer_assuming(loaded, addresses), name, rtype, client=client, subnet=subnet, health=health)
