"""Assembles a running server from settings: load and validate, bind, serve until told to stop.

`serve()` starts, in order: the DNS listeners, the HTTP API (gslb/api.py), the health probes,
hot reload (gslb/reload.py: SIGHUP and file changes), alerts (gslb/alerts.py) and the query log
(gslb/querylog.py); on SIGINT/SIGTERM it stops them in reverse.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from gslb.alerts import Alerts
from gslb.api import Api, token_source
from gslb.config.catalog import collector_paused, load_catalog
from gslb.config.problems import Problem
from gslb.dns import udpio
from gslb.dns.answer import AnswerSettings, Answerer
from gslb.dns.dynamic_answer import DynamicAnswers
from gslb.dns.fastpath import FastPath
from gslb.dns.server import DnsServer, Listener
from gslb.geo import GeoDatabase, GeoDataError
from gslb.health.monitor import HealthMonitor
from gslb.health.status import HealthView
from gslb.health_stats import CountingBoard
from gslb.names import to_text
from gslb.querylog import QueryLog
from gslb.reload import Reloader
from gslb.selection import Selector
from gslb.settings import ServerSettings
from gslb.stats import QueryStats
from gslb.zone import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    catalog: Catalog
    answerer: Answerer
    selector: Selector
    geo: GeoDatabase
    health: HealthMonitor | None  # probes, rise/fall board, admin overrides; started by serve(). None
    # when built over a board someone else feeds (a replica answering from a copy of the health state)


def open_geo(settings: ServerSettings) -> tuple[GeoDatabase | None, list[Problem]]:
    try:
        return GeoDatabase.open(settings.geoip_file), []
    except GeoDataError as error:
        return None, [Problem("", "", str(error))]


def read(settings: ServerSettings, geo: GeoDatabase | None = None) -> tuple[Catalog | None, GeoDatabase | None, list[Problem]]:
    """The validated zones (and the GeoIP database, opened unless given). Touches no live state,
    so a reload runs it in a worker thread."""
    if geo is None:
        geo, problems = open_geo(settings)
        if geo is None:
            return None, None, problems
    catalog, problems = load_catalog(settings.zones, geo=geo, region_compile=settings.region_compile)
    return catalog, geo, problems


def assemble(
    settings: ServerSettings,
    catalog: Catalog,
    geo: GeoDatabase,
    *,
    stats: QueryStats | None = None,
    health: HealthMonitor | None = None,
    board: HealthView | None = None,
    querylog: QueryLog | None = None,
) -> tuple[Loaded | None, list[Problem]]:
    """Everything the DNS side needs around a catalog. A reload passes the running `health`
    monitor (kept endpoints keep their state) and the running `stats` (counters continue); a
    `--workers` replica passes the `board` it is fed instead. Neither: a new monitor and board."""
    with collector_paused():
        return _assemble(settings, catalog, geo, stats=stats, health=health, board=board, querylog=querylog)


def _assemble(
    settings: ServerSettings,
    catalog: Catalog,
    geo: GeoDatabase,
    *,
    stats: QueryStats | None,
    health: HealthMonitor | None,
    board: HealthView | None,
    querylog: QueryLog | None,
) -> tuple[Loaded | None, list[Problem]]:
    records = [r for zone in catalog.zones for node in zone.nodes.values() for r in node.dynamic.values()]
    if health is None and board is None:
        health = HealthMonitor(CountingBoard(), settings.state)  # reads the admin state file now, before any query
    if health is not None:
        health_problems = health.apply(catalog)
        if health_problems:
            return None, health_problems
        board = health.board
    assert board is not None
    selector = Selector(records, board)
    answerer = Answerer(catalog, AnswerSettings(node_name=settings.node_name), DynamicAnswers(selector), stats=stats)
    answerer.fast = FastPath(catalog, answerer, selector)
    answerer.querylog = querylog
    return Loaded(catalog, answerer, selector, geo, health), []


def load(
    settings: ServerSettings,
    geo: GeoDatabase | None = None,
    *,
    stats: QueryStats | None = None,
    health: HealthMonitor | None = None,
    board: HealthView | None = None,
    querylog: QueryLog | None = None,
) -> tuple[Loaded | None, list[Problem]]:
    """Everything the DNS side needs, validated; None with every problem when anything is wrong."""
    catalog, geo, problems = read(settings, geo)
    if catalog is None or geo is None:
        return None, problems
    return assemble(settings, catalog, geo, stats=stats, health=health, board=board, querylog=querylog)


def example_query(catalog: Catalog) -> str:
    """A name and type from the first zone that the printed `dig` line can ask for."""
    zone = catalog.zones[0]
    for name, node in zone.nodes.items():  # a GSLB record shows the point of it all
        for wanted, text in ((1, "A"), (28, "AAAA")):
            if wanted in node.dynamic:
                return f"{to_text(name)} {text}"
    for name, node in zone.nodes.items():
        for wanted, text in ((1, "A"), (28, "AAAA")):
            if wanted in node.rrsets and name != zone.origin:
                return f"{to_text(name)} {text}"
    return f"{to_text(zone.origin)} SOA"


@dataclass
class Runtime:
    """A running server's parts, for the API and the metrics. `loaded` changes on reload."""

    settings: ServerSettings
    server: DnsServer
    reloader: Reloader
    stats: QueryStats
    querylog: QueryLog | None = None
    alerts: Alerts | None = None
    api: Api | None = None
    listeners: list[Listener] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @property
    def loaded(self) -> Loaded:
        return self.reloader.current


async def serve(settings: ServerSettings, loaded: Loaded, ready: asyncio.Event | None = None) -> int:
    loop = asyncio.get_running_loop()
    # The loaded configuration lives as long as the server: moving it out of the collector's
    # generations keeps full collections (pauses in answering) from rescanning it.
    gc.collect()
    gc.freeze()
    stats = loaded.answerer.stats
    querylog = None
    if settings.query_log is not None:
        querylog = QueryLog(settings.query_log, settings.query_log_sample)
        try:
            querylog.open()
        except OSError as error:
            print(f"gslb: cannot open the query log {settings.query_log}: {error.strerror or error}", file=sys.stderr)
            return 1
        loaded.answerer.querylog = querylog
    tokens = token_source(settings)
    if settings.api is not None and (problem := tokens.check()) is not None:
        print(f"gslb: {problem}", file=sys.stderr)
        return 1

    server = DnsServer(loaded.answerer, settings.tcp, reuse_port=settings.workers > 1, udp_io=settings.udp_io)
    reloader = Reloader(
        server, loaded, zones_dir=settings.zones, geoip_file=settings.geoip_file,
        read=lambda geo: read(settings, geo),
        assemble=lambda catalog, geo: assemble(settings, catalog, geo, stats=stats, health=loaded.health,
                                               querylog=querylog),
    )
    runtime = Runtime(settings, server, reloader, stats, querylog)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if hasattr(signal, "SIGHUP"):
        def hangup() -> None:
            reloader.request("SIGHUP")
            if querylog is not None:
                querylog.reopen()

        loop.add_signal_handler(signal.SIGHUP, hangup)  # before anything is printed: a test may send it next

    bound: list[Listener] = []
    for listener in settings.listen:
        try:
            bound.append(await server.listen(listener))
        except OSError as error:
            if settings.listen_explicit:
                print(f"gslb: cannot listen on {listener}: {error.strerror or error}", file=sys.stderr)
                await server.close()
                return 1
            log.warning("default listener %s not available (%s); skipping it", listener, error.strerror or error)
    if not bound:
        print("gslb: no listener could be bound; pass --listen HOST:PORT", file=sys.stderr)
        return 1
    runtime.listeners = bound
    pool = publisher = None
    if settings.workers > 1:
        from gslb.workers import WorkerPool

        # The extra workers bind the ports this process got (port 0 resolved) and answer from a
        # copy of this process's health board; a successful reload here reloads them too.
        pool = WorkerPool(settings, bound, settings.workers)
        if loaded.health is not None:
            publisher = asyncio.create_task(pool.run_publisher(loaded.health.board))
        reloader.listeners.append(lambda _loaded: pool.reload())
    api = None
    if settings.api is not None:
        api = Api(runtime, tokens)
        try:
            await api.start(settings.api)
            runtime.api = api
        except OSError as error:
            reason = error.strerror or str(error)
            if settings.api_explicit:
                print(f"gslb: cannot serve the API on {settings.api}: {reason}; pass --api HOST:PORT or --api off",
                      file=sys.stderr)
                await server.close()
                return 1
            log.warning("default API address %s not available (%s); no API (pass --api HOST:PORT)", settings.api, reason)
            api = None
    print(f"gslb: udp: {udpio.describe(server.udp_io)}", flush=True)  # before the listening lines tests wait for
    for listener in bound:
        print(f"gslb: listening on {listener} (udp, tcp)", flush=True)
    if pool is not None:
        print(f"gslb: {settings.workers} worker processes share the listeners", flush=True)
    if api is not None:
        print(f"gslb: API on {api.url}", flush=True)
    first = bound[0]
    port = f" -p {first.port}" if first.port != 53 else ""
    host = first.host if first.host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"gslb: try: dig @{host}{port} {example_query(loaded.catalog)}", flush=True)

    if loaded.health is not None:
        await loaded.health.start()
    reloader.start()
    runtime.alerts = Alerts(settings.alerts, lambda: reloader.current, stats)
    runtime.alerts.start()
    if querylog is not None:
        querylog.start()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await reloader.stop()
        await runtime.alerts.stop()
        if api is not None:
            await api.stop()
        if reloader.current.health is not None:
            await reloader.current.health.stop()
        if publisher is not None:
            publisher.cancel()
        if pool is not None:
            await pool.stop()
        await server.close()
        if querylog is not None:
            await asyncio.to_thread(querylog.stop)
    return 0


def run_event_loop(coroutine) -> int:  # type: ignore[no-untyped-def]
    """uvloop when installed (about a third of the per-query cost of asyncio's loop), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)

