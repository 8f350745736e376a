"""What the hot path asks about an endpoint, and the board it asks.

Health sources (probes, admin overrides, a worker's snapshot; see gslb/health/sources.py) write
the board; the DNS answer path only reads it with a dict lookup, never awaiting anything.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol


class Status(IntEnum):
    UP = 0
    DRAIN = 1  # served only when nothing else in its region is up
    DOWN = 2


class HealthView(Protocol):
    """What selection reads. Every method is a lookup in memory: it never awaits or logs."""

    def status(self, check: str | None, address: str) -> Status: ...

    def rtt(self, check: str | None, address: str) -> float | None:
        """Recent probe round-trip time in seconds (a smoothed average), None if unknown."""
        ...

    def load(self, check: str | None, address: str) -> float | None:
        """The load the site last reported in its health response, None if unknown."""
        ...

    def forced_down(self, check: str | None, address: str) -> bool:
        """True when an operator set the endpoint `down`: even failing open must not serve it."""
        ...

    def everything_up(self) -> bool:
        """True when no endpoint is down or drained: selection may then skip its health filter."""
        ...

    @property
    def version(self) -> int:
        """Grows whenever what `status()` or `forced_down()` answers changes: a reader that saw
        version N and sees N again knows nothing it read has changed (alerts, caches such as
        gslb/plan.py's). RTT and load do not move it."""
        ...


class AlwaysUp:
    """The view when nothing is checked: every endpoint serves."""

    version = 0

    def status(self, check: str | None, address: str) -> Status:
        return Status.UP

    def rtt(self, check: str | None, address: str) -> float | None:
        return None

    def load(self, check: str | None, address: str) -> float | None:
        return None

    def forced_down(self, check: str | None, address: str) -> bool:
        return False

    def everything_up(self) -> bool:
        return True


ALWAYS_UP = AlwaysUp()
