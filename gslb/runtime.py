"""A running server's parts, as the API, the metrics and the status page read them.

Typed against small protocols, not the components' classes: the API and the metrics import this
module, so it must not import them (or the reloader, or the alerts) back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gslb.build import Loaded
from gslb.dns.server import DnsServer, Listener
from gslb.settings import ServerSettings
from gslb.stats import QueryStats


class ReloadState(Protocol):
    """What /status and /metrics say about reloads (gslb/reload.py's Reloader)."""

    current: Loaded
    generation: int
    loaded_at: float
    ok: int
    failed: int
    last_at: float | None
    last_ok: bool | None
    last_reason: str | None
    last_problems: list[str]
    last_duration: float | None

    def request(self, reason: str) -> None: ...


class QueryLogState(Protocol):
    """The query log's target and counters (gslb/querylog.py's QueryLog, or the sum over workers)."""

    target: str
    sample: int

    @property
    def written(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def errors(self) -> int: ...

    @property
    def pending(self) -> int: ...


class AlertState(Protocol):
    """gslb/alerts.py's Alerts, as read for /status and /metrics."""

    records: dict[str, Any]
    servfail_ratio: float
    servfail_alerting: bool

    def as_dict(self) -> dict[str, Any]: ...


class NotifyState(Protocol):
    """gslb/notify.py's Notifier, as read for /status and /metrics."""

    def counts(self) -> dict[tuple[str, str], int]: ...

    def as_dict(self) -> list[dict[str, Any]]: ...


class Describable(Protocol):
    def describe(self) -> str: ...


class ApiState(Protocol):
    @property
    def url(self) -> str | None: ...

    @property
    def tokens(self) -> Describable: ...

    @property
    def auth_failures(self) -> dict[str, int]: ...

    @property
    def connections_closed(self) -> dict[str, int]: ...


@dataclass
class Runtime:
    """A running server's parts, for the API and the metrics. `loaded` changes on reload."""

    settings: ServerSettings
    server: DnsServer
    reloader: ReloadState
    stats: QueryStats
    querylog: QueryLogState | None = None
    alerts: AlertState | None = None
    api: ApiState | None = None
    notifier: NotifyState | None = None
    listeners: list[Listener] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    @property
    def loaded(self) -> Loaded:
        return self.reloader.current


T = TypeVar("T")


def run_event_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (about a third of the per-query cost of asyncio's loop), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
