"""Wires a running server together: bind, serve until told to stop (the composition root).

Generations are built by gslb/build.py (`Loaded`, `build`; `load`, `read`, `assemble` and
`open_geo` are re-exported here for older callers). `serve()` starts, in order: the DNS
listeners, the HTTP API (the gslb/api/ package), the health probes, hot reload (gslb/reload.py:
SIGHUP and file changes), the webhooks (gslb/notify.py), alerts (gslb/alerts.py) and the query
log (gslb/querylog.py); on SIGINT/SIGTERM it stops them in reverse.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from gslb.alerts import Alerts
from gslb.api import Api, token_source
from gslb.build import Loaded, assemble, build, load, open_geo, read  # noqa: F401 - load, read, assemble, open_geo: re-exported for old callers
from gslb.dns import udpio
from gslb.dns.server import DnsServer, Listener
from gslb.names import to_text
from gslb.notify import Notifier
from gslb.querylog import QueryLog
from gslb.reload import Reloader
from gslb.runtime import Runtime, run_event_loop  # noqa: F401 - run_event_loop: re-exported for cli
from gslb.settings import ServerSettings
from gslb.workers import QueryLogTotals, Ready, WorkerPool
from gslb.zone import Catalog

log = logging.getLogger(__name__)


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

    server = DnsServer(loaded.answerer, settings.tcp, reuse_port=settings.workers > 1, rrl=settings.rrl,
                       udp_io=settings.udp_io)
    reloader = Reloader(
        server, loaded, zones_dir=settings.zones, geoip_file=settings.geoip_file, asn_file=settings.asn_db,
        max_zone_file_size=settings.max_zone_file_size,
        build=lambda geo: build(settings, geo, stats=stats, health=loaded.health, querylog=querylog),
    )
    runtime = Runtime(settings, server, reloader, stats, querylog)
    pool: WorkerPool | None = None
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if hasattr(signal, "SIGHUP"):
        def hangup() -> None:
            reloader.request("SIGHUP")
            if querylog is not None:
                querylog.reopen()
                if pool is not None:
                    pool.reopen()

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
    publisher = None
    if settings.workers > 1:
        # The extra workers bind the ports this process got (port 0 resolved), answer from a copy
        # of this process's health board, build each generation this process serves, and report
        # their counters and query-log totals back (gslb/workers.py).
        workers = pool = WorkerPool(settings, bound, settings.workers, Ready(reloader.generation, reloader.files), stats)
        if loaded.health is not None:
            publisher = asyncio.create_task(workers.run_publisher(loaded.health.board))
        reloader.listeners.append(lambda _loaded: workers.announce(Ready(reloader.generation, reloader.files)))
        if querylog is not None:
            runtime.querylog = QueryLogTotals(querylog, workers)
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
    lines = [f"gslb: udp: {udpio.describe(server.udp_io)}"]
    lines += [f"gslb: listening on {listener} (udp, tcp)" for listener in bound]
    if pool is not None:
        lines.append(f"gslb: {settings.workers} worker processes share the listeners")
    if api is not None:
        lines.append(f"gslb: API on {api.url}")
    first = bound[0]
    port = f" -p {first.port}" if first.port != 53 else ""
    host = first.host if first.host not in ("0.0.0.0", "::") else "127.0.0.1"
    lines.append(f"gslb: try: dig @{host}{port} {example_query(loaded.catalog)}")
    # One write, newline included (unbuffered, print would write its `end` apart): a reader that
    # stops at the listeners' lines has read every start-up line.
    print("\n".join(lines) + "\n", end="", flush=True)

    notifier = None
    if settings.notify:
        notifier = runtime.notifier = Notifier(settings.notify, settings.node_name)
        await notifier.start()
        if loaded.health is not None:  # the monitor outlives reloads: one watcher for the server's life
            loaded.health.board.watchers.append(notifier.endpoint_watcher(loaded.health.board))
    if loaded.health is not None:
        await loaded.health.start()
    reloader.start()
    runtime.alerts = Alerts(settings.alerts, lambda: reloader.current, stats)
    if notifier is not None:
        runtime.alerts.listeners.append(notifier.alert)
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
        if notifier is not None:
            await notifier.stop()
        if publisher is not None:
            publisher.cancel()
        if pool is not None:
            await pool.stop()
        await server.close()
        if querylog is not None:
            await asyncio.to_thread(querylog.stop)
    return 0
