"""`gslb probe`: a probe agent - one vantage's probes of every check, published to Redis.

It loads and validates the zones as `gslb check` does (a bad zone never starts an agent; a bad
reload keeps the last good one probing), probes the endpoints of every check that its vantage
probes (a check's `vantages:`; every check without one) with the check's interval, timeout and
rise/fall, from `--source` when given, and publishes its verdict per (check, address) through
gslb/health/redis_link.py. Its transitions are logged like a server's:

    www.gslb.example.com. eu 198.51.100.10 DOWN after 3 failures: HTTP 503

SIGHUP reloads the zones; SIGTERM and SIGINT stop it (its verdicts lapse within three intervals).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from gslb.health.board import HealthBoard
from gslb.health.monitor import HealthMonitor
from gslb.health.redis_link import Keys, VerdictPublisher, redact
from gslb.health.sources import LocalProbes

if TYPE_CHECKING:
    from gslb.geo import GeoDatabase
    from gslb.settings import ServerSettings
    from gslb.zone import Catalog

log = logging.getLogger(__name__)


class ProbeAgent:
    def __init__(self, settings: "ServerSettings", vantage: str) -> None:
        assert settings.redis is not None
        self.settings = settings
        self.vantage = vantage
        self.board = HealthBoard(sources=(LocalProbes(),))
        self.monitor = HealthMonitor(self.board, source_address=settings.probe_source)
        self.monitor.set_probing(True, only=lambda check: check.probed_from(vantage))
        self.publisher = VerdictPublisher(settings.redis, vantage, self.monitor, keys=Keys(settings.redis_prefix))

    def take(self, catalog: "Catalog") -> list[str]:
        """Probe this catalog's checks (kept pairs keep their state); problems as text."""
        return [str(problem) for problem in self.monitor.apply(catalog)]

    def describe(self) -> str:
        probed = self.monitor.probing()
        checks = {key[0] for key in probed}
        source = f" from {self.settings.probe_source}" if self.settings.probe_source else ""
        return (f"probing {len(probed)} endpoint(s) of {len(checks)} check(s) as vantage {self.vantage}{source}; "
                f"publishing to {redact(self.settings.redis or '')}")

    async def run(self, geo: "GeoDatabase", ready: asyncio.Event | None = None) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        reloading: set[asyncio.Task[None]] = set()
        if hasattr(signal, "SIGHUP"):
            def hangup() -> None:
                task = loop.create_task(self._reload(geo))
                reloading.add(task)
                task.add_done_callback(reloading.discard)

            loop.add_signal_handler(signal.SIGHUP, hangup)
        await self.monitor.start()
        self.publisher.start()
        print(f"gslb: {self.describe()}", flush=True)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await self.publisher.stop()
            await self.monitor.stop()
        return 0

    async def _reload(self, geo: "GeoDatabase") -> None:
        from gslb.build import read

        catalog, _geo, problems = await asyncio.to_thread(read, self.settings, geo)
        if catalog is not None:
            problems = [*problems, *self.monitor.apply(catalog)]  # type: ignore[list-item]
        if problems:
            for problem in problems:
                log.error("reload: %s", problem)
            log.error("reload failed: %d problem(s); still probing the zones loaded before", len(problems))
            return
        log.info("reloaded: %s", self.describe())
