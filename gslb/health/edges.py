"""A timer at the next wall-clock edge: when a verdict with a time on it starts or lapses.

Health sources whose verdicts change with time alone - a maintenance window that opens, an
external verdict whose `for:` runs out - must tell the board at that moment, even when nothing
else happens and no query comes. Each such source owns an `EdgeTimer`: after every change it says
when its next edge is, and the timer calls it back then, once, with `loop.call_later`. There is no
polling per query or per second: between edges the loop does nothing for them.

Edges are Unix times (what an operator writes: `until: 2026-02-01T02:00:00Z`); the loop's clock is
monotonic. A wait is converted when scheduled and capped at MAX_WAIT, so a wall clock stepped
while waiting delays an edge by at most that much; a callback that comes early finds nothing due
and the source schedules the same edge again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_WAIT = 60.0  # seconds: the longest single wait, so a stepped wall clock is caught up with
EARLY = 0.001  # seconds: a callback this close before its edge counts as at it


class EdgeTimer:
    """Calls `fire()` on the event loop at the Unix time last given to `schedule()`."""

    def __init__(self, fire: Callable[[], None], clock: Callable[[], float] = time.time, name: str = "") -> None:
        self._fire = fire
        self._clock = clock
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._edge: float | None = None

    @property
    def edge(self) -> float | None:
        """The Unix time of the next callback, None when none is due."""
        return self._edge

    def start(self) -> None:
        """From now on schedule on the running loop (a source built before the loop ran waits
        for this)."""
        self._loop = asyncio.get_running_loop()
        self.schedule(self._edge)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    def schedule(self, edge: float | None) -> None:
        """Replace the pending callback with one at `edge` (None: none)."""
        self._edge = edge
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if edge is None or self._loop is None or self._loop.is_closed():
            return
        wait = min(max(0.0, edge - self._clock()), MAX_WAIT)
        self._handle = self._loop.call_later(wait, self._run)

    def _run(self) -> None:
        self._handle = None
        try:
            self._fire()
        except Exception:  # noqa: BLE001 - a timer that dies would freeze every later edge
            log.exception("health edge timer %s failed", self._name)
            if self._handle is None and self._edge is not None and self._edge > self._clock():
                self.schedule(self._edge)
