"""`gslb serve --workers N`: N processes answering DNS on SO_REUSEPORT sockets, one health view,
one set of counters, one query log.

The main process keeps everything stateful - probes, the admin state file, the API, reloads -
and answers DNS as worker 0. Each extra worker is a spawned process that binds the same
addresses with SO_REUSEPORT (the kernel spreads queries across the sockets) and answers from a
ReplicaBoard. Down the pipe to each worker:

- "health": the board's snapshot whenever it changes (checked every PUBLISH_INTERVAL seconds), so
  every worker answers from the same health state within a second of a change; probes run once.
- "generation": generation N is ready, with the signatures (mtime, size, inode) of the zone files,
  the GeoIP and ASN files and the signed zones' DNSSEC key files the main process read it from.
  The worker builds it in a thread (its event loop keeps answering from the generation it has),
  re-reading the same paths, and swaps it in only if the files still have those signatures before
  and after its read, and every key directory its zones read is among those the main process
  signed (a directory a zone newly names is signed from the main process's next generation on,
  gslb/reload.py) - so it serves exactly what the main process validated, keys included.
  Signatures rather than the bytes themselves: the GeoIP file alone can be tens of megabytes, and
  a mismatch only means a newer change is on disk, which the main process sees within its next
  poll and publishes as generation N+1.
- "reopen": SIGHUP reached the main process; reopen the query log (log rotation).

Up the pipe, every STATS_INTERVAL seconds: the worker's query counters since the last report
(merged into the main process's QueryStats, so /metrics and the SERVFAIL alert count every
process), its query-log totals, and the generation it serves.

The query log: each worker samples and writes its own queries to the same file, opened in append
mode (O_APPEND), each batch in one write() call, so lines from different processes never
interleave inside a line (Linux serialises appending writes to a regular file). That keeps the
formatting work in the process that answered, instead of shipping every logged packet to the main
process and formatting all of them on its one writer thread. Lines are in time order within one
process; across processes they interleave by batch (every line has its own time). Standard output
("-") is a pipe or a terminal, where only writes up to PIPE_BUF (4 KiB) are atomic.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gslb.build import Loaded, build
from gslb.dns.server import DnsServer, Listener
from gslb.health.board import ReplicaBoard
from gslb.querylog import QueryLog
from gslb.reload import Files, served_key_dirs
from gslb.runtime import run_event_loop
from gslb.settings import ServerSettings
from gslb.stats import QueryStats

if TYPE_CHECKING:
    from gslb.geo import GeoDatabase

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.25  # seconds between looks at the health board
STATS_INTERVAL = 1.0  # seconds between a worker's counter reports


@dataclass(frozen=True)
class WorkerMessage:
    kind: str  # down: "health" | "generation" | "reopen" | "stop"; up: "report"
    payload: Any = None


@dataclass(frozen=True)
class Ready:
    """Generation `number` is serving in the main process, read from `files`."""

    number: int
    files: Files


@dataclass
class Report:
    """A worker's counters since its last report, and what it serves."""

    generation: int
    counts: dict[tuple[str, int, int, str, str], int] = field(default_factory=dict)
    ecs: int = 0
    latency_counts: list[int] = field(default_factory=list)
    latency_sum: float = 0.0
    latency_total: int = 0
    querylog: tuple[int, int, int, int] | None = None  # written, dropped, failed, pending: totals


class CounterDelta:
    """What a QueryStats counted since the last `take()`."""

    def __init__(self, stats: QueryStats) -> None:
        self.stats = stats
        self._counts: dict[tuple[str, int, int, str, str], int] = {}
        self._ecs = 0
        self._latency_counts = [0] * len(stats.latency_counts)
        self._latency_sum = 0.0
        self._latency_total = 0

    def take(self, report: Report) -> None:
        stats = self.stats
        counts = dict(stats.counts)
        report.counts = {key: value - self._counts.get(key, 0) for key, value in counts.items()
                         if value != self._counts.get(key, 0)}
        self._counts = counts
        report.ecs, self._ecs = stats.ecs - self._ecs, stats.ecs
        latency = list(stats.latency_counts)
        report.latency_counts = [now - before for now, before in zip(latency, self._latency_counts)]
        self._latency_counts = latency
        report.latency_sum, self._latency_sum = stats.latency_sum - self._latency_sum, stats.latency_sum
        report.latency_total, self._latency_total = stats.latency_total - self._latency_total, stats.latency_total


def merge(stats: QueryStats, report: Report) -> None:
    """Add a worker's counters to the main process's (on its event loop: the hot path's thread)."""
    counts = stats.counts
    for key, value in report.counts.items():
        counts[key] = counts.get(key, 0) + value
    stats.ecs += report.ecs
    for index, value in enumerate(report.latency_counts[:len(stats.latency_counts)]):
        stats.latency_counts[index] += value
    stats.latency_sum += report.latency_sum
    stats.latency_total += report.latency_total


# -- the worker process ------------------------------------------------------------------------------

def _worker_main(settings: ServerSettings, listeners: list[Listener], connection: multiprocessing.connection.Connection,
                 index: int, ready: Ready) -> None:
    """Entry point of a spawned worker process."""
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()),
                        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when we stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads and log rotation come down the pipe
    run_event_loop(Worker(settings, connection, ready).run(listeners))


class Worker:
    """One extra DNS process: builds each generation off its event loop and swaps it in."""

    def __init__(self, settings: ServerSettings, connection: multiprocessing.connection.Connection, ready: Ready) -> None:
        self.settings = settings
        self.connection = connection
        self.board = ReplicaBoard()
        self.stats = QueryStats()
        self.querylog: QueryLog | None = None
        if settings.query_log is not None:
            self.querylog = QueryLog(settings.query_log, settings.query_log_sample)
        self.current: Loaded | None = None
        self.files: Files | None = None  # what `current` was read from
        self.serving = 0  # the generation number being served
        self._wanted = ready
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._delta = CounterDelta(self.stats)
        self.server: DnsServer | None = None

    def _build(self, ready: Ready) -> tuple[Loaded | None, str]:
        """In a thread: the generation `ready` names, or why not. Nothing live changes."""
        key_dirs = ready.files.key_dirs
        before = Files.look(self.settings.zones, self.settings.geoip_file, self.settings.asn_db, key_dirs)
        if before != ready.files:
            return None, f"the files changed since the main process read them ({', '.join(ready.files.changes(before))})"
        reuse: GeoDatabase | None = None
        if self.current is not None and self.files is not None and self.files.geoip == ready.files.geoip:
            reuse = self.current.geo
        loaded, problems = build(self.settings, reuse, stats=self.stats, board=self.board, querylog=self.querylog)
        if loaded is None:
            return None, "; ".join(str(problem) for problem in problems) or "no configuration"
        after = Files.look(self.settings.zones, self.settings.geoip_file, self.settings.asn_db, key_dirs)
        if after != ready.files:
            return None, f"the files changed while this worker read them ({', '.join(ready.files.changes(after))})"
        unsigned = [name for name in served_key_dirs(loaded.catalog) if name not in key_dirs]
        if unsigned:
            return None, (f"key director{'ies' if len(unsigned) > 1 else 'y'} {', '.join(unsigned)} not among the files "
                          "the main process signed; waiting for its next generation")
        return loaded, ""

    async def run(self, listeners: list[Listener]) -> None:
        loop = asyncio.get_running_loop()
        ready = self._wanted
        loaded, why = await asyncio.to_thread(self._build, ready)
        if loaded is None:
            # Serving nothing is worse than serving a validated configuration the main process is
            # about to replace: build whatever is there now, and take the next generation.
            log.warning("generation %d: %s; loading the files as they are now", ready.number, why)
            loaded, problems = await asyncio.to_thread(build, self.settings, None, stats=self.stats, board=self.board,
                                                       querylog=self.querylog)
            if loaded is None:
                for problem in problems:
                    log.error("%s", problem)
                return
            self.files = None
        else:
            self.files = ready.files
        self.current, self.serving = loaded, ready.number
        self.server = DnsServer(loaded.answerer, self.settings.tcp, reuse_port=True, rrl=self.settings.rrl,
                                udp_io=self.settings.udp_io)
        for listener in listeners:
            await self.server.listen(listener)
        if self.querylog is not None:
            self.querylog.start()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_reader(self.connection.fileno(), self._on_message)
        tasks = [loop.create_task(self._build_loop(), name="gslb-worker-build"),
                 loop.create_task(self._report_loop(), name="gslb-worker-report")]
        try:
            await self._stop.wait()
        finally:
            loop.remove_reader(self.connection.fileno())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.close()
            if self.querylog is not None:
                await asyncio.to_thread(self.querylog.stop)

    def _on_message(self) -> None:
        try:
            while self.connection.poll():
                message = self.connection.recv()
                if message.kind == "health":
                    self.board.apply(message.payload)
                elif message.kind == "generation":
                    self._wanted = message.payload
                    self._wake.set()
                elif message.kind == "reopen":
                    if self.querylog is not None:
                        self.querylog.reopen()
                elif message.kind == "stop":
                    self._stop.set()
        except (EOFError, OSError):
            self._stop.set()  # the main process is gone: so are we

    async def _build_loop(self) -> None:
        """One build at a time, always of the newest generation announced."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            ready = self._wanted
            if ready.number <= self.serving:
                continue
            started = time.monotonic()
            try:
                loaded, why = await asyncio.to_thread(self._build, ready)
            except Exception as error:  # noqa: BLE001 - a reload must never take the worker down
                log.exception("generation %d: building it failed", ready.number)
                loaded, why = None, f"internal error: {error}"
            if loaded is None:
                log.error("generation %d not taken: %s; still serving generation %d", ready.number, why, self.serving)
                continue
            # The swap: one assignment, on the event loop, between two queries.
            assert self.server is not None
            self.server.answerer = loaded.answerer
            self.current, self.files, self.serving = loaded, ready.files, ready.number
            del loaded
            log.info("generation %d serving (built in %.0f ms)", ready.number, (time.monotonic() - started) * 1000)
            self._send_report()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self._send_report()

    def _send_report(self) -> None:
        report = Report(self.serving)
        self._delta.take(report)
        querylog = self.querylog
        if querylog is not None:
            report.querylog = (querylog.written, querylog.dropped, querylog.errors, querylog.pending)
        try:
            self.connection.send(WorkerMessage("report", report))
        except (BrokenPipeError, OSError):
            self._stop.set()


# -- the main process's side ----------------------------------------------------------------------

class WorkerPool:
    """The extra worker processes of one `gslb serve`, and the pipes that feed them and report."""

    def __init__(self, settings: ServerSettings, listeners: list[Listener], count: int, ready: Ready,
                 stats: QueryStats) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a running event loop
        self.stats = stats
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.connections: list[multiprocessing.connection.Connection] = []
        self.serving: dict[int, int] = {}  # worker index -> the generation it serves
        self.querylog_totals: dict[int, tuple[int, int, int, int]] = {}  # worker index -> its query log's totals
        self._last: Any = None
        for index in range(1, count):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(settings, listeners, child, index, ready),
                                      name=f"gslb-worker-{index}", daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.connections.append(parent)
        loop = asyncio.get_running_loop()
        for index, connection in enumerate(self.connections, start=1):
            loop.add_reader(connection.fileno(), self._on_report, index, connection)

    def _on_report(self, index: int, connection: multiprocessing.connection.Connection) -> None:
        try:
            while connection.poll():
                message = connection.recv()
                if message.kind == "report":
                    report: Report = message.payload
                    merge(self.stats, report)
                    self.serving[index] = report.generation
                    if report.querylog is not None:
                        self.querylog_totals[index] = report.querylog
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(connection.fileno())

    def _send(self, message: WorkerMessage) -> None:
        for connection, process in zip(self.connections, self.processes):
            if process.is_alive():
                try:
                    connection.send(message)
                except (BrokenPipeError, OSError) as error:
                    log.warning("worker %s unreachable: %s", process.name, error)

    def publish(self, snapshot: Any) -> None:
        """Send the health snapshot if it changed since the last one sent."""
        if snapshot != self._last:
            self._last = snapshot
            self._send(WorkerMessage("health", snapshot))

    def announce(self, ready: Ready) -> None:
        """Generation `ready.number` serves here now: the workers build it and follow."""
        self._send(WorkerMessage("generation", ready))

    def reopen(self) -> None:
        self._send(WorkerMessage("reopen"))

    async def run_publisher(self, board: Any) -> None:
        """Keep the workers' view of health within PUBLISH_INTERVAL of the board's."""
        while True:
            self.publish(board.snapshot())
            for process in self.processes:
                if not process.is_alive() and process.exitcode not in (None, 0):
                    log.error("worker %s exited with %s", process.name, process.exitcode)
            await asyncio.sleep(PUBLISH_INTERVAL)

    async def stop(self) -> None:
        self._send(WorkerMessage("stop"))
        loop = asyncio.get_running_loop()
        for connection in self.connections:
            try:
                loop.remove_reader(connection.fileno())
            except (OSError, ValueError):
                pass
        for process in self.processes:
            await loop.run_in_executor(None, process.join, 5)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 2)
        for connection in self.connections:
            connection.close()


class QueryLogTotals:
    """The query log as /status and /metrics report it: the main process's, plus every worker's
    totals as last reported (at most STATS_INTERVAL old)."""

    def __init__(self, main: QueryLog, pool: WorkerPool) -> None:
        self.main = main
        self.pool = pool
        self.target = main.target
        self.sample = main.sample

    def _sum(self, field: int) -> int:
        return sum(totals[field] for totals in list(self.pool.querylog_totals.values()))

    @property
    def written(self) -> int:
        return self.main.written + self._sum(0)

    @property
    def dropped(self) -> int:
        return self.main.dropped + self._sum(1)

    @property
    def errors(self) -> int:
        return self.main.errors + self._sum(2)

    @property
    def pending(self) -> int:
        return self.main.pending + self._sum(3)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
