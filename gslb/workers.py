"""`gslb serve --workers N`: N processes answering DNS on SO_REUSEPORT sockets, one health view.

The main process keeps everything stateful - probes, the admin state file, the API, reloads -
and answers DNS as worker 0. Each extra worker is a spawned process that loads the same
configuration, binds the same addresses with SO_REUSEPORT (the kernel spreads queries across
the sockets), and answers from a ReplicaBoard. The main process sends the board's snapshot down
a pipe whenever it changes (checked every PUBLISH_INTERVAL seconds), so every worker answers
from the same health state within a second of a change; probes run once, not N times.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
from dataclasses import dataclass
from typing import Any

from gslb.dns.server import Listener

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.25


@dataclass(frozen=True)
class WorkerMessage:
    kind: str  # "health" | "reload" | "stop"
    payload: Any = None


def _worker_main(settings: Any, listeners: list[Listener], connection: multiprocessing.connection.Connection, index: int) -> None:
    """Entry point of a spawned worker process."""
    from gslb import service

    logging.basicConfig(level=getattr(logging, settings.log_level.upper()),
                        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when we stop
    service.run_event_loop(_worker(settings, listeners, connection))


async def _worker(settings: Any, listeners: list[Listener], connection: multiprocessing.connection.Connection) -> None:
    from gslb import service
    from gslb.dns.server import DnsServer
    from gslb.health.board import ReplicaBoard

    board = ReplicaBoard()
    loaded, problems = service.load(settings, board=board)
    if loaded is None:
        for problem in problems:
            log.error("%s", problem)
        return
    server = DnsServer(loaded.answerer, settings.tcp, reuse_port=True, udp_io=settings.udp_io)
    for listener in listeners:
        await server.listen(listener)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_message() -> None:
        try:
            while connection.poll():
                message = connection.recv()
                if message.kind == "health":
                    board.apply(message.payload)
                elif message.kind == "reload":
                    reloaded, problems = service.load(settings, board=board)
                    if reloaded is not None:
                        server.answerer = reloaded.answerer
                    else:
                        log.error("reload failed in a worker; keeping the old configuration")
                elif message.kind == "stop":
                    stop.set()
        except (EOFError, OSError):
            stop.set()  # the main process is gone: so are we

    loop.add_reader(connection.fileno(), on_message)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(connection.fileno())
        await server.close()


class WorkerPool:
    """The extra worker processes of one `gslb serve`, and the pipes that feed them."""

    def __init__(self, settings: Any, listeners: list[Listener], count: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a running event loop
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.connections: list[multiprocessing.connection.Connection] = []
        self._last: Any = None
        for index in range(1, count):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(settings, listeners, child, index),
                                      name=f"gslb-worker-{index}", daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.connections.append(parent)

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

    def reload(self) -> None:
        self._send(WorkerMessage("reload"))

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
        for process in self.processes:
            await loop.run_in_executor(None, process.join, 5)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 2)
        for connection in self.connections:
            connection.close()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
