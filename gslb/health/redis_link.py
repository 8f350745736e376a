"""Health verdicts and admin overrides shared through Redis (or Valkey): the links to the store.

Plain commands only (HSET, HGETALL, HDEL, PEXPIRE, SCAN, PUBLISH, PSUBSCRIBE, TIME, WATCH/MULTI),
through redis-py's asyncio client, imported only when `--redis` is used. The keys, under a prefix
(`gslb:` by default):

    gslb:verdicts:VANTAGE   hash  "check/address" -> a verdict (JSON), written only by that vantage;
                            the key expires when its agent stops renewing it
    gslb:verdicts:VANTAGE   channel: each flush of that vantage's verdicts ({"at", "set", "del"})
    gslb:overrides          hash  "198.51.100.10" or "web/198.51.100.10" -> an override (JSON)
    gslb:overrides          channel: "re-read the overrides"

A node learns a verdict's vantage from the name of the channel or key it came in, never from its
content, so an ACL user per agent restricted to its own key and channel (README, "Many nodes")
is all it takes to stop one agent speaking for another. Times in verdicts are on the store's clock
(`TIME`), so hosts' clocks need not agree.

`VerdictPublisher` (a probe agent, or `gslb serve --vantage`): every probe result marks its pair;
a flush (at once when a pair's state flips, else every half interval, at most every second)
writes the marked verdicts into the vantage's hash and publishes them, each with a lifetime of
three intervals of its check. Reconnecting, it replaces its whole hash in one transaction.

`RedisVerdicts` (the VantageVerdicts source of `gslb serve --redis`): reads every vantage's hash,
then follows the channels; sweeps lapsed verdicts; reads the overrides hash when told and every
half second. The failure behaviour, one log line per transition:

- store unreachable: keep the last verdicts and overrides (fail static: nothing lapses); retry with
  backoff (0.1 s doubling to 2 s);
- still unreachable after `stale_after`: the shared verdicts are stale; this node probes every check
  itself (starting from the last shared states) and serves from its own probes;
- reachable again: frozen verdicts get one more lifetime for their agents to renew them; a stale
  node returns to the shared verdicts once every pair has a verdict renewed since the reconnect
  (or `stale_after` after it), and stops probing (except as its own vantage).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from gslb.config.redisurl import check_url, redact  # noqa: F401 - check_url: re-exported for old callers
from gslb.health.admin import STATES, canonical_address
from gslb.health.checks import Check
from gslb.health.shared_overrides import SharedOverride, SharedOverrides
from gslb.health.sources import HealthSource, Key, LocalProbes
from gslb.health.status import Status
from gslb.health.vantages import VantageVerdict, VantageVerdicts, field_name

if TYPE_CHECKING:
    from gslb.health.monitor import HealthMonitor
    from gslb.settings import ServerSettings

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "gslb:"
CONNECT_TIMEOUT = 2.0  # seconds to connect to the store
COMMAND_TIMEOUT = 2.0  # seconds one command may take before the store counts as unreachable
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0  # seconds between reconnection attempts, doubling
TTL_INTERVALS = 3  # a verdict lapses this many of its check's intervals after its last renewal
FLUSH_MIN, FLUSH_MAX = 0.02, 1.0  # seconds between two flushes of renewals (state flips go at once)
OVERRIDE_POLL = 0.5  # seconds between reads of the overrides hash (besides notifications)
RESYNC_PERIOD = 60.0  # seconds between full reads of the verdicts (messages carry them in between)
SCAN_COUNT = 1000
DRAIN_LIMIT = 10000  # messages handled in a row before the timers get a turn


class StoreUnavailable(Exception):
    """The redis package is missing or the store cannot be used; the message says what to do."""


def _redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        raise StoreUnavailable("--redis needs the redis package (redis-py >= 5): pip install 'gslb[redis]'") from None
    return redis_asyncio


def store_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


def connect(url: str) -> Any:
    """A client for `url` (redis://, rediss:// for TLS, unix://; user and password in the URL)
    that fails fast instead of retrying: this module retries, with backoff, and logs once."""
    redis_asyncio = _redis()
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis_asyncio.from_url(url, decode_responses=True, socket_timeout=COMMAND_TIMEOUT,
                                  socket_connect_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0))


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def verdicts(self, vantage: str) -> str:
        return f"{self.prefix}verdicts:{vantage}"

    @property
    def verdict_pattern(self) -> str:
        return f"{self.prefix}verdicts:*"

    def vantage_of(self, name: str) -> str | None:
        head = f"{self.prefix}verdicts:"
        return name[len(head):] if name.startswith(head) and len(name) > len(head) else None

    @property
    def overrides(self) -> str:
        return f"{self.prefix}overrides"


class SharedClock:
    """The store's clock, as an offset from this host's: verdict times from many hosts compare."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    async def sync(self, client: Any) -> None:
        before = time.time()
        seconds, micros = await client.time()
        after = time.time()
        self.offset = seconds + micros / 1e6 - (before + after) / 2


class Connection:
    """The state of one link for the log, /status and metrics: one log line per transition."""

    def __init__(self, url: str, what: str) -> None:
        self.url = redact(url)
        self.what = what  # "verdicts" | "publishing as vantage eu"
        self.connected = False
        self.reconnects = 0
        self.connects = 0
        self.down_since: float | None = time.monotonic()  # not yet connected
        self.last_error: str | None = None
        self._logged_down = False

    def up(self, detail: str) -> float | None:
        """Mark it connected; the seconds it was down (None the first time)."""
        outage = None if self.down_since is None else time.monotonic() - self.down_since
        first = self.connects == 0
        self.connects += 1
        if not first:
            self.reconnects += 1
        self.connected, self.down_since, self._logged_down = True, None, False
        if first:
            log.info("redis %s: connected (%s); %s", self.url, self.what, detail)
        else:
            log.info("redis %s: reachable again after %.1fs (%s); %s", self.url, outage or 0.0, self.what, detail)
        return None if first else outage

    def down(self, error: BaseException, consequence: str) -> None:
        from redis.exceptions import AuthenticationError, ResponseError

        self.last_error = describe(error)
        if self.connected or not self._logged_down:
            # A refusal (wrong password, an ACL without the key or command) is not an outage: say which.
            what = "refused us" if isinstance(error, (ResponseError, AuthenticationError)) else "unreachable"
            log.warning("redis %s: %s (%s); %s; retrying with backoff", self.url, what, self.last_error, consequence)
            self._logged_down = True
        if self.connected or self.down_since is None:
            self.down_since = time.monotonic()
        self.connected = False

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "connected": self.connected, "reconnects": self.reconnects,
                "down_for": None if self.down_since is None else round(time.monotonic() - self.down_since, 3),
                "last_error": self.last_error}


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Backoff:
    def __init__(self) -> None:
        self.delay = BACKOFF_FIRST

    def next(self) -> float:
        delay = self.delay * (1 + random.random() * 0.2)
        self.delay = min(self.delay * 2, BACKOFF_MAX)
        return delay

    def reset(self) -> None:
        self.delay = BACKOFF_FIRST


async def _close(*clients: Any) -> None:
    for client in clients:
        if client is None:
            continue
        try:
            closer = getattr(client, "aclose", None) or client.close
            await closer()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail again; nothing to do
            pass


# -- a vantage: publishing its verdicts ---------------------------------------------------------------

def ttl_of(check: Check) -> float:
    return round(TTL_INTERVALS * check.timing.interval, 3)


class VerdictPublisher:
    """Publishes the verdicts of this process's probes (its LocalProbes) as one vantage."""

    def __init__(self, url: str, vantage: str, monitor: "HealthMonitor", *, keys: Keys = Keys()) -> None:
        self.url = url
        self.vantage = vantage
        self.keys = keys
        self.monitor = monitor
        local = monitor.board.local
        if local is None:
            raise ValueError("a publisher needs a board with this process's probes")
        self.local: LocalProbes = local
        self.clock = SharedClock()
        self.connection = Connection(url, f"publishing verdicts as vantage {vantage}")
        self._dirty: set[Key] = set()
        self._said: dict[Key, Status] = {}  # the state last published per pair
        self._flush = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.published = 0  # verdicts written
        self.local.observers.append(self.observe)

    def observe(self, key: Key) -> None:
        self._dirty.add(key)
        endpoint = self.local.endpoint(*key)
        if endpoint is not None and self._said.get(key) is not endpoint.probed:
            self._flush.set()  # a flip (or a first verdict) goes out now, not with the renewals

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"gslb-publish {self.vantage}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _period(self) -> float:
        intervals = [check.timing.interval for check in self.monitor.checks().values()]
        return min(FLUSH_MAX, max(FLUSH_MIN, min(intervals) / 2)) if intervals else FLUSH_MAX

    async def _run(self) -> None:
        errors = store_errors()
        backoff = Backoff()
        while True:
            client = None
            try:
                client = connect(self.url)
                await self.clock.sync(client)
                await self._replace_all(client)
                self.connection.up(f"{len(self._said)} verdict(s) published")
                backoff.reset()
                while True:
                    try:
                        await asyncio.wait_for(self._flush.wait(), self._period())
                    except TimeoutError:
                        pass
                    self._flush.clear()
                    await self._flush_dirty(client)
            except asyncio.CancelledError:
                await _close(client)
                raise
            except errors as error:
                self.connection.down(error, "probing goes on; the verdicts go out once it is back")
            await _close(client)
            await asyncio.sleep(backoff.next())

    def _entry(self, key: Key, now: float) -> list[Any] | None:
        """The wire form of a pair's verdict, or None when this vantage has none to give."""
        check = self.monitor.checks().get(key[0])  # type: ignore[arg-type]
        endpoint = self.local.endpoint(*key)
        if check is None or endpoint is None or endpoint.probes == 0 or not check.probed_from(self.vantage):
            return None
        since = endpoint.last_change + self.clock.offset
        return VantageVerdict(endpoint.probed, endpoint.reason, since, endpoint.rtt, endpoint.load, now,
                              ttl_of(check)).encode()

    def _lifetime_ms(self) -> int:
        ttls = [ttl_of(check) for check in self.monitor.checks().values() if check.probed_from(self.vantage)]
        return int(math.ceil(max(ttls, default=FLUSH_MAX * TTL_INTERVALS) * 1000)) + 1000

    async def _replace_all(self, client: Any) -> None:
        """Everything this vantage knows, replacing its hash in one transaction (a reconnect, or
        the store restarted empty): fields of pairs it no longer probes go."""
        now = self.clock.now()
        entries = {key: entry for key in list(self.local.keys()) if (entry := self._entry(key, now)) is not None}
        self._dirty.clear()
        name = self.keys.verdicts(self.vantage)
        fields = {field_name(*key): json.dumps(entry, separators=(",", ":")) for key, entry in entries.items()}  # type: ignore[arg-type]
        pipe = client.pipeline(transaction=True)
        pipe.delete(name)
        if fields:
            pipe.hset(name, mapping=fields)
            pipe.pexpire(name, self._lifetime_ms())
        pipe.publish(name, json.dumps({"at": now, "set": {field_name(*k): e for k, e in entries.items()},  # type: ignore[arg-type]
                                       "del": []}, separators=(",", ":")))
        await pipe.execute()
        self._said = {key: Status[entry[0]] for key, entry in entries.items()}
        self.published += len(entries)

    async def _flush_dirty(self, client: Any) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        now = self.clock.now()
        sets: dict[str, list[Any]] = {}
        removed: list[str] = []
        said: dict[Key, Status | None] = {}
        for key in dirty:
            entry = self._entry(key, now)
            if entry is not None:
                sets[field_name(*key)] = entry  # type: ignore[arg-type]
                said[key] = Status[entry[0]]
            elif key in self._said:
                removed.append(field_name(*key))  # type: ignore[arg-type]
                said[key] = None
        if not sets and not removed:
            return
        name = self.keys.verdicts(self.vantage)
        pipe = client.pipeline(transaction=False)
        if sets:
            pipe.hset(name, mapping={field: json.dumps(entry, separators=(",", ":")) for field, entry in sets.items()})
        if removed:
            pipe.hdel(name, *removed)
        pipe.pexpire(name, self._lifetime_ms())
        pipe.publish(name, json.dumps({"at": now, "set": sets, "del": removed}, separators=(",", ":")))
        try:
            await pipe.execute()
        except BaseException:
            self._dirty |= dirty  # not sent: they go with the next flush (after a reconnect, all do)
            raise
        for key, status in said.items():
            if status is None:
                self._said.pop(key, None)
            else:
                self._said[key] = status
        self.flushes += 1
        self.published += len(sets)


# -- a DNS node: reading every vantage's verdicts ----------------------------------------------------

class RedisOverrides(SharedOverrides):
    """SharedOverrides whose API writes go to the store through the node's link."""

    def __init__(self, link: "RedisVerdicts") -> None:
        super().__init__(now=link.clock.now, name="shared admin override")
        self._link = link

    async def store_override(self, address: str, state: str | None, check: str | None, lapse: float | None) -> None:
        await self._link.store_override(address, state, check, lapse)


class RedisVerdicts(VantageVerdicts):
    """VantageVerdicts fed from the store, with the failure behaviour of the module docstring."""

    def __init__(self, url: str, *, known: Iterable[str] = (), own: str | None = None, stale_after: float = 30.0,
                 node_name: str | None = None, keys: Keys = Keys()) -> None:
        self.clock = SharedClock()
        super().__init__(known, own=own, now=self.clock.now, name=f"vantages (redis {redact(url)})")
        self.url = url
        self.keys = keys
        self.stale_after = stale_after
        self.node_name = node_name or socket.gethostname()
        self.connection = Connection(url, "verdicts and overrides")
        self.overrides = RedisOverrides(self)
        self.monitor: "HealthMonitor | None" = None
        self.publisher: VerdictPublisher | None = None
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._reconnected_at: float | None = None  # shared clock, while stale after a reconnect
        self._connected_mono = 0.0
        self._warned: set[str] = set()
        self.messages = 0

    # -- lifecycle (the monitor starts and stops it) -------------------------------------------------
    async def start(self, monitor: "HealthMonitor") -> None:
        self.monitor = monitor
        self._probe_own()
        if self.own is not None and self.publisher is None:
            self.publisher = VerdictPublisher(self.url, self.own, monitor, keys=self.keys)
            self.publisher.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gslb-redis-verdicts")

    async def stop(self) -> None:
        tasks = [t for t in (self._task,) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None
        await _close(self._client)
        self._client = None

    def _probe_own(self) -> None:
        """Probe what this node's own vantage probes (nothing when it is none)."""
        if self.monitor is None:
            return
        own = self.own
        if own is None:
            self.monitor.set_probing(False)
        else:
            self.monitor.set_probing(True, only=lambda check: check.probed_from(own))

    # -- the link ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        errors = store_errors()
        backoff = Backoff()
        while True:
            client = pubsub = None
            try:
                client = connect(self.url)
                await self.clock.sync(client)
                pubsub = client.pubsub()
                await pubsub.psubscribe(self.keys.verdict_pattern)
                await pubsub.subscribe(self.keys.overrides)
                thawed = self.frozen
                self.frozen = False
                if thawed:
                    self.extend()  # one more lifetime for the agents to renew what the outage froze
                count = await self._resync(client)
                await self._read_overrides(client)
                self._client = client
                self._connected_mono = time.monotonic()
                if self.stale:
                    self._reconnected_at = self.clock.now()
                self.connection.up(f"{count} verdict(s) from {len(self._vantages_seen())} vantage(s)"
                                   + ("; serving from this node's probes until the verdicts are fresh again"
                                      if self.stale else ""))
                backoff.reset()
                await self._follow(client, pubsub)
            except asyncio.CancelledError:
                await _close(pubsub, client)
                raise
            except errors as error:
                self._client = None
                self.frozen = True
                self.connection.down(error, "answering from the last verdicts (fail static)"
                                     if not self.stale else "serving from this node's probes")
            await _close(pubsub, client)
            delay = backoff.next()
            if not self.stale and self.connection.down_since is not None:
                left = self.stale_after - (time.monotonic() - self.connection.down_since)
                if left <= 0:
                    self._go_stale()
                else:
                    delay = min(delay, left)
            await asyncio.sleep(delay)

    async def _follow(self, client: Any, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_sweep = now + self._sweep_period()
        next_poll = now + OVERRIDE_POLL
        next_resync = now + RESYNC_PERIOD
        while True:
            lapse = self.overrides.next_lapse()
            due = min(next_sweep, next_poll)
            if lapse is not None:
                due = min(due, loop.time() + max(0.0, lapse - self.clock.now()))
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, min(0.5, due - loop.time())))
            drained = 0
            while message is not None and drained < DRAIN_LIMIT:
                # Every renewal already received is applied before a sweep: a node that was
                # busy must not lapse verdicts whose renewals wait in its socket.
                await self._handle(client, message)
                drained += 1
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            if message is not None:
                await self._handle(client, message)
            now = loop.time()
            if self.overrides.next_lapse() is not None:
                self.overrides.lapse()
            if now >= next_sweep:
                self.sweep()
                next_sweep = now + self._sweep_period()
            if now >= next_poll:
                await self._read_overrides(client)  # also the liveness check: a silent store times out
                next_poll = now + OVERRIDE_POLL
            if now >= next_resync:
                await self.clock.sync(client)
                await self._resync(client)
                next_resync = now + RESYNC_PERIOD
            if self.stale and self._reconnected_at is not None and (
                    self.covered_since(self._reconnected_at) or time.monotonic() - self._connected_mono >= self.stale_after):
                self._fresh_again()

    async def _handle(self, client: Any, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if channel == self.keys.overrides:
            await self._read_overrides(client)
            return
        vantage = self.keys.vantage_of(channel) if isinstance(channel, str) else None
        if vantage is None:
            return
        self.messages += 1
        if not self.accepts(vantage):
            self._warn_unknown(vantage)
        try:
            data = json.loads(message.get("data") or "")
        except (TypeError, ValueError):
            self.invalid += 1
            return
        if not isinstance(data, dict) or not isinstance(data.get("set", {}), dict) or not isinstance(data.get("del", []), list):
            self.invalid += 1
            return
        self.apply(vantage, data.get("set", {}), data.get("del", []))

    async def _resync(self, client: Any) -> int:
        """Every vantage's hash: verdicts the messages may have missed, RTTs and loads."""
        count = 0
        async for name in client.scan_iter(match=self.keys.verdict_pattern, count=SCAN_COUNT):
            vantage = self.keys.vantage_of(name)
            if vantage is None:
                continue
            if not self.accepts(vantage):
                self._warn_unknown(vantage)
                self.ignored[vantage] = self.ignored.get(vantage, 0) + 1
                continue
            raw = await client.hgetall(name)
            updates = {}
            for field, value in raw.items():
                try:
                    updates[field] = json.loads(value)
                except ValueError:
                    self.invalid += 1
            count += len(updates)
            self.apply(vantage, updates)
        return count

    def _vantages_seen(self) -> set[str]:
        return {vantage for _key, by_vantage in self.pairs() for vantage in by_vantage}

    def _warn_unknown(self, vantage: str) -> None:
        if vantage not in self._warned:
            self._warned.add(vantage)
            log.warning("redis %s: ignoring verdicts from vantage %r: neither the vantages: setting nor any check "
                        "names it (known: %s)", self.connection.url, vantage, ", ".join(sorted(self.known)) or "none")

    def _sweep_period(self) -> float:
        intervals = [check.timing.interval for check in (self.monitor.checks().values() if self.monitor else ())]
        return min(1.0, max(0.05, min(intervals) / 4)) if intervals else 1.0

    # -- stale and fresh ------------------------------------------------------------------------------
    def _go_stale(self) -> None:
        """The store has been unreachable for stale_after: probe everything here, starting from
        the shared states (so taking over flaps nothing), and serve from these probes."""
        monitor = self.monitor
        if monitor is not None and monitor.board.local is not None:
            for key, verdict in list(self._decided.items()):
                monitor.board.local.seed(key[0], key[1], verdict.status,  # type: ignore[arg-type]
                                         f"from the last shared verdicts: {verdict.reason}")
        log.warning("redis %s: unreachable for %gs (stale_after): the shared verdicts are stale; probing every check "
                    "from this node until they are fresh again", self.connection.url, self.stale_after)
        self._reconnected_at = None
        self.set_stale(True)
        if monitor is not None:
            monitor.set_probing(True)

    def _fresh_again(self) -> None:
        log.info("redis %s: shared verdicts fresh again; serving from them and stopping this node's own probes%s",
                    self.connection.url, f" (except as vantage {self.own})" if self.own else "")
        self._reconnected_at = None
        self.set_stale(False)
        self._probe_own()

    # -- overrides ------------------------------------------------------------------------------
    async def _read_overrides(self, client: Any) -> None:
        raw = await client.hgetall(self.keys.overrides)
        for key in self.overrides.replace(raw):
            await self._remove_lapsed(client, key, raw[key])

    async def _remove_lapsed(self, client: Any, key: str, value: str) -> None:
        """Remove a lapsed override unless someone replaced it meanwhile (WATCH/MULTI)."""
        from redis.exceptions import WatchError

        async with client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(self.keys.overrides)
                if await pipe.hget(self.keys.overrides, key) == value:
                    pipe.multi()
                    pipe.hdel(self.keys.overrides, key)
                    pipe.publish(self.keys.overrides, key)
                    await pipe.execute()
            except WatchError:
                pass  # changed under us: the next read decides

    async def store_override(self, address: str, state: str | None, check: str | None, lapse: float | None) -> None:
        from gslb.health.monitor import OverrideError

        address = canonical_address(address)
        if state is not None and state not in STATES:
            raise ValueError(f"state must be up, down or drain, got {state!r}")
        key = f"{check}/{address}" if check is not None else address
        client = self._client
        if client is None or not self.connection.connected:
            raise OverrideError(f"the shared store {self.connection.url} is unreachable, so the override was not set "
                                "on any node; retry once it is back (the last overrides stay in force meanwhile)", 503)
        now = self.clock.now()
        entry = None if state is None else SharedOverride(STATES[state], None if lapse is None else now + lapse,
                                                          self.node_name, now)
        try:
            pipe = client.pipeline(transaction=True)
            if entry is None:
                pipe.hdel(self.keys.overrides, key)
            else:
                pipe.hset(self.keys.overrides, key, entry.encode())
            pipe.publish(self.keys.overrides, key)
            await pipe.execute()
        except store_errors() as error:
            raise OverrideError(f"the shared store {self.connection.url} refused the override ({describe(error)}); "
                                "nothing changed", 503) from None
        self.overrides.put(key, entry)
        log.info("shared admin override %s %s%s stored in redis %s", key, state or "removed",
                 f" for {lapse:g}s" if lapse is not None else "", self.connection.url)

    # -- reports ------------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {"connection": self.connection.as_dict(), "stale": self.stale, "frozen": self.frozen,
                "vantage": self.own, "known_vantages": sorted(self.known), "ignored": dict(self.ignored),
                "invalid": self.invalid, "expired": self.expired,
                "publisher": None if self.publisher is None else self.publisher.connection.as_dict()}


def redis_sources(settings: "ServerSettings") -> tuple[HealthSource, ...]:
    """The health sources of `gslb serve --redis URL`: the vantages' quorum (asked before this
    node's probes) and the shared overrides (asked before the state file's). Raises
    StoreUnavailable when the redis package is missing."""
    if settings.redis is None:
        return ()
    _redis()
    verdicts = RedisVerdicts(settings.redis, known=settings.vantages, own=settings.vantage,
                             stale_after=settings.stale_after, node_name=settings.node_name,
                             keys=Keys(settings.redis_prefix))
    return verdicts, verdicts.overrides


async def read_shared(monitor: "HealthMonitor") -> None:
    """One read of the store into a monitor's shared sources, without following it (gslb explain)."""
    for source in monitor.board.sources:
        if isinstance(source, RedisVerdicts):
            client = connect(source.url)
            try:
                await source.clock.sync(client)
                await source._resync(client)
                await source._read_overrides(client)
            finally:
                await _close(client)
