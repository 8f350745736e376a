"""Region + pools + health + policy -> the endpoints one response carries.

`Selector.select` is the seam between geography and load balancing: it takes the client's region
(from geo), walks the record's precomputed region order, keeps the endpoints the health view says
serve, and lets the record's policy choose among them. It reads only memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from gslb.dynamic import DynamicRecord, Endpoint
from gslb.health.status import ALWAYS_UP, HealthView, Status
from gslb.policy import POLICIES, Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Selection:
    endpoints: Sequence[Endpoint]
    region: str | None  # the region whose pool answered; None when nothing was up anywhere
    degraded: bool  # fell back to another region, or the region has endpoints down
    all_down: bool = False
    servfail: bool = False


class Selector:
    """Selection for every dynamic record of a catalog, with one policy instance per record."""

    def __init__(self, records: Sequence[DynamicRecord], health: HealthView = ALWAYS_UP) -> None:
        self.health = health
        self._policies: dict[int, Policy] = {id(r): POLICIES[r.policy]() for r in records}
        self._records = records  # keeps ids stable while the selector lives
        self._all_down: set[int] = set()
        # Views that can say "nothing is down or drained" in O(1) let the common case skip the
        # per-endpoint filter (gslb/health/board.py keeps only non-UP endpoints in a dict).
        self._everything_up = getattr(health, "everything_up", None)

    def policy(self, record: DynamicRecord) -> Policy:
        return self._policies[id(record)]

    def select(self, record: DynamicRecord, region: str | None, client_key: int = 0) -> Selection:
        check = record.check
        policy = self._policies[id(record)]
        count = record.answers
        everything_up = self._everything_up
        if everything_up is not None and everything_up() and not self._all_down:
            candidate = record.regions_for(region)[0]  # the order holds only regions with pools
            pool = record.pools[candidate]
            return Selection(policy.pick(pool, count, client_key, self.health, check), candidate, candidate != region)
        status = self.health.status
        for index, candidate in enumerate(record.regions_for(region)):
            pool = record.pools[candidate]
            up = [e for e in pool if status(check, e.address) is Status.UP]
            if not up:
                # drain: serve only when nothing else in the region is up
                up = [e for e in pool if status(check, e.address) is Status.DRAIN]
            if up:
                if self._all_down and id(record) in self._all_down:
                    self._all_down.discard(id(record))
                    log.info("%s: endpoints healthy again", record.path)
                degraded = index > 0 or candidate != region or len(up) < len(pool)
                return Selection(policy.pick(up, count, client_key, self.health, check), candidate, degraded)
        if id(record) not in self._all_down:
            self._all_down.add(id(record))
            log.critical("%s: no healthy endpoint in any region; answering per when_all_down=%s",
                         record.path, record.when_all_down if isinstance(record.when_all_down, str) else "list")
        how = record.when_all_down
        if how == "servfail":
            return Selection((), None, True, all_down=True, servfail=True)
        if how == "all":
            # Fail open, as Route 53 does: treat every endpoint as healthy and route as usual -
            # except those an operator set `down`, which must not serve in any case.
            forced_down = self.health.forced_down
            for candidate in record.regions_for(region):
                pool = [e for e in record.pools[candidate] if not forced_down(check, e.address)]
                if pool:
                    return Selection(policy.pick(pool, count, client_key, self.health, check), candidate, True, all_down=True)
            return Selection((), None, True, all_down=True)
        return Selection(how, None, True, all_down=True)  # type: ignore[arg-type]
