"""Assembles a running server from settings: load and validate, bind, serve until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass

from gslb.config.catalog import load_catalog
from gslb.config.problems import Problem
from gslb.dns.answer import AnswerSettings, Answerer
from gslb.dns.dynamic_answer import DynamicAnswers
from gslb.dns.fastpath import FastPath
from gslb.dns.server import DnsServer, Listener
from gslb.geo import GeoDatabase, GeoDataError
from gslb.health.board import HealthBoard
from gslb.health.monitor import HealthMonitor
from gslb.selection import Selector
from gslb.names import to_text
from gslb.settings import ServerSettings
from gslb.zone import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    catalog: Catalog
    answerer: Answerer
    selector: Selector
    geo: GeoDatabase
    health: HealthMonitor  # probes, rise/fall board, admin overrides; started by serve()


def open_geo(settings: ServerSettings) -> tuple[GeoDatabase | None, list[Problem]]:
    try:
        return GeoDatabase.open(settings.geoip_file), []
    except GeoDataError as error:
        return None, [Problem("", "", str(error))]


def load(settings: ServerSettings, geo: GeoDatabase | None = None) -> tuple[Loaded | None, list[Problem]]:
    """Everything the DNS side needs, validated; None with every problem when anything is wrong."""
    if geo is None:
        geo, problems = open_geo(settings)
        if geo is None:
            return None, problems
    catalog, problems = load_catalog(settings.zones, geo=geo)
    if catalog is None:
        return None, problems
    records = [r for zone in catalog.zones for node in zone.nodes.values() for r in node.dynamic.values()]
    board = HealthBoard()
    health = HealthMonitor(board, settings.state)  # reads the admin state file now, before any query
    health_problems = health.apply(catalog)
    if health_problems:
        return None, health_problems
    selector = Selector(records, board)
    answerer = Answerer(catalog, AnswerSettings(node_name=settings.node_name), DynamicAnswers(selector))
    answerer.fast = FastPath(catalog, answerer, selector)
    return Loaded(catalog, answerer, selector, geo, health), []


def example_query(catalog: Catalog) -> str:
    """A name and type from the first zone that the printed `dig` line can ask for."""
    zone = catalog.zones[0]
    for wanted in (1, 28):
        for name, node in zone.nodes.items():
            if wanted in node.dynamic or (wanted in node.rrsets and name != zone.origin):
                return f"{to_text(name)} {'A' if wanted == 1 else 'AAAA'}"
    return f"{to_text(zone.origin)} SOA"


async def serve(settings: ServerSettings, loaded: Loaded, ready: asyncio.Event | None = None) -> int:
    server = DnsServer(loaded.answerer, settings.tcp)
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
    for listener in bound:
        print(f"gslb: listening on {listener} (udp, tcp)", flush=True)
    first = bound[0]
    port = f" -p {first.port}" if first.port != 53 else ""
    host = first.host if first.host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"gslb: try: dig @{host}{port} {example_query(loaded.catalog)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await loaded.health.start()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await loaded.health.stop()
        await server.close()
    return 0


def run_event_loop(coroutine) -> int:  # type: ignore[no-untyped-def]
    """uvloop when installed (about a third of the per-query cost of asyncio's loop), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
