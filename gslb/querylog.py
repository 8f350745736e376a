"""The query log: one JSON line per logged query, written off the DNS hot path.

    {"time": "2026-01-02T03:04:05.678Z", "client": "192.0.2.7", "ecs": "81.2.69.0/24",
     "ecs_scope": 24, "qname": "www.gslb.example.com.", "qtype": "A", "rcode": "NOERROR",
     "zone": "gslb.example.com.", "region": "eu", "answer": ["203.0.113.10"],
     "latency_ms": 0.021, "transport": "udp"}

Costs on the hot path: with the log off, the Answerer checks `querylog is None` and nothing else.
With it on, `take()` counts down to the next sampled query (`--query-log-sample N`: one in N),
and a sampled query appends a tuple of the raw packet, the raw reply and its timings to a deque.
Everything else - parsing both messages, naming the region, formatting JSON, writing - happens in
a writer thread that wakes at least every second (sooner when much is pending). The thread reads
only immutable things (bytes, the Catalog the query was answered from), never the live state.

`region` is the region whose pool answered (the same word the metrics use): found from the
answer's addresses and the GSLB record they belong to. Static answers have no region.

A write that fails (disk full, a closed pipe) drops what of that batch did not reach the file,
counts it and logs one line at most every minute; the server never stops for it. Writes go
straight to the file descriptor, unbuffered, so the counters say what the file holds: a line
counted `written` is in the file, one counted lost is not and never will be (a buffered file
would keep the failed bytes and write them with the next batch), and a line cut short by the
failure is cut off again. When the writer falls behind by more than
MAX_PENDING entries, new entries are dropped and counted rather than kept without bound.
SIGHUP reopens the file, for log rotation.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dnslib import QTYPE, DNSRecord

from gslb.dns import ecs

if TYPE_CHECKING:
    from gslb.zone import Catalog

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds: the longest an entry waits before it is written
WAKE_AT = 5_000  # pending entries that wake the writer before its interval is up
MAX_PENDING = 200_000  # entries kept while the writer is behind; more are dropped (and counted)
ERROR_LOG_INTERVAL = 60.0  # seconds between two log lines about failing writes

RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}

Entry = tuple[float, Any, bytes, bytes, float, str, "Catalog"]


def qtype_name(qtype: int) -> str:
    """1 -> "A"; types without a mnemonic as RFC 3597 writes them: "TYPE65280"."""
    name = QTYPE.get(qtype)
    return name if isinstance(name, str) else f"TYPE{qtype}"


def rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, f"RCODE{rcode}")


class QueryLog:
    """Sampling on the event loop, formatting and writing in a thread of its own."""

    def __init__(self, target: str, sample: int = 1, *, flush_interval: float = FLUSH_INTERVAL,
                 max_pending: int = MAX_PENDING) -> None:
        if sample < 1:
            raise ValueError("the query log sample must be >= 1")
        self.target = target  # a path, or "-" for standard output
        self.sample = sample
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._countdown = sample
        self._pending: deque[Entry] = deque()
        self._file: IO[bytes] | None = None
        self._cut = False  # the file ends in a line cut short that could not be cut off
        self._wake = threading.Event()
        self._stopping = False
        self._reopen = False
        self._thread: threading.Thread | None = None
        self._last_error_log = float("-inf")
        self._regions: dict[int, dict[str, str]] = {}  # id(record) -> address -> region (writer thread only)
        self._catalog: Catalog | None = None  # the catalog _regions belongs to
        # Counters for /metrics (written by one thread each; read at scrape time).
        self.written = 0
        self.dropped = 0  # not logged: the writer was MAX_PENDING entries behind
        self.errors = 0  # entries lost to failed writes

    # -- the hot path (event loop) ---------------------------------------------------------------
    def take(self) -> bool:
        """True for the one query in `sample` that is logged."""
        self._countdown -= 1
        if self._countdown:
            return False
        self._countdown = self.sample
        return True

    def add(self, catalog: Catalog, client: Any, packet: bytes, reply: bytes, latency: float, transport: str) -> None:
        """Queue one answered query; `client` is an address object or the socket's source text."""
        pending = self._pending
        size = len(pending)
        if size >= self.max_pending:
            self.dropped += 1
            return
        pending.append((time.time(), client, packet, reply, latency, transport, catalog))
        if size == WAKE_AT:
            self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the target now, so that a bad path stops `gslb serve` before it starts serving.
        Raises OSError."""
        self._file = self._open_target()

    def start(self) -> None:
        if self._file is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="gslb-query-log", daemon=True)
        self._thread.start()
        log.info("query log: %s, %s", "standard output" if self.target == "-" else self.target,
                 "every query" if self.sample == 1 else f"one query in {self.sample}")

    def reopen(self) -> None:
        """Close and reopen the file before the next write (after logrotate moved it)."""
        self._reopen = True
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is pending, then close. Safe to call twice."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self._write_pending()
        if self._file is not None and self.target != "-":
            try:
                self._file.close()
            except OSError:
                pass
        self._file = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the writer thread -----------------------------------------------------------------------
    def _open_target(self) -> IO[bytes]:
        if self.target == "-":
            sys.stdout.flush()
            return open(sys.stdout.fileno(), "wb", buffering=0, closefd=False)
        return Path(self.target).open("ab", buffering=0)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping
            if self._reopen:
                self._reopen = False
                self._do_reopen()
            self._write_pending()
            if stopping:
                return

    def _do_reopen(self) -> None:
        if self.target == "-":
            return
        try:
            new = self._open_target()
        except OSError as error:
            self._error(f"cannot reopen {self.target}: {error.strerror or error}; still writing to the old file")
            return
        old, self._file = self._file, new
        if old is not None:
            try:
                old.close()
            except OSError:
                pass

    def _write_pending(self) -> None:
        pending = self._pending
        lines = []
        while pending:
            entry = pending.popleft()
            try:
                lines.append(json.dumps(self.describe(entry), separators=(",", ":")))
            except Exception as error:  # noqa: BLE001 - one odd packet must not stop the log
                lines.append(json.dumps({"time": _iso(entry[0]), "error": f"cannot describe: {error}"}))
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        done = 0
        try:
            if self._file is None:
                self._file = self._open_target()
            if self._cut:
                self._write_all(b"\n")  # end the fragment a failed write left, so these lines parse
                self._cut = False
            done = self._write_all(data)
            self.written += len(lines)
        except (OSError, ValueError) as error:  # ValueError: writing to a closed file
            done = getattr(error, "gslb_written", 0)
            kept = self._keep_whole_lines(data, done)
            self.written += kept
            self.errors += len(lines) - kept
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            self._error(f"cannot write to {self.target}: {reason}; {len(lines) - kept} entries lost")

    def _write_all(self, data: bytes) -> int:
        """Write all of `data` (write(2) may take part of it); on failure the error carries how
        many bytes did reach the file, as `gslb_written`."""
        assert self._file is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                count = self._file.write(view[done:])
                if not count:
                    raise OSError(f"the write took nothing after {done} of {len(data)} bytes")
                done += count
        except (OSError, ValueError) as error:
            error.gslb_written = done  # type: ignore[union-attr]
            raise
        return done

    def _keep_whole_lines(self, data: bytes, done: int) -> int:
        """How many whole lines of `data` the first `done` bytes hold; a line cut short after them
        is cut off the file again (or, where that cannot be done, ended before the next write)."""
        end = data.rfind(b"\n", 0, done) + 1
        if done > end and self._file is not None:
            try:
                descriptor = self._file.fileno()
                os.ftruncate(descriptor, os.fstat(descriptor).st_size - (done - end))
            except (OSError, ValueError):
                self._cut = True
        return data.count(b"\n", 0, end)

    def _error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error("query log: %s (%d lost so far)", message, self.errors)

    # -- describing one entry --------------------------------------------------------------------
    def describe(self, entry: Entry) -> dict[str, Any]:
        when, client, packet, reply, latency, transport, catalog = entry
        record: dict[str, Any] = {
            "time": _iso(when),
            "client": _client_text(client),
            "ecs": None,
            "ecs_scope": None,
            "qname": None,
            "qtype": None,
            "rcode": None,
            "zone": None,
            "region": None,
            "answer": [],
            "latency_ms": round(latency * 1000, 3),
            "transport": transport,
        }
        try:
            query = DNSRecord.parse(packet)
        except Exception:  # noqa: BLE001 - malformed queries are logged too, with what is known
            query = None
        if query is not None and query.questions:
            question = query.questions[0]
            record["qname"] = str(question.qname)
            record["qtype"] = qtype_name(question.qtype)
            subnet = _subnet_of(query)
            if subnet is not None:
                record["ecs"] = f"{subnet.address}/{subnet.source_prefix}"
        try:
            response = DNSRecord.parse(reply)
        except Exception:  # noqa: BLE001
            return record
        rcode = response.header.rcode
        for rr in response.ar:
            if rr.rtype == 41:
                rcode |= ((rr.ttl >> 24) & 0xFF) << 4
                scope = _subnet_of_opt(rr)
                if scope is not None:
                    record["ecs_scope"] = scope.scope_prefix
        record["rcode"] = rcode_name(rcode)
        record["answer"] = [str(rr.rdata) for rr in response.rr]
        if record["qname"] is not None:
            name = tuple(label.lower() for label in query.questions[0].qname.label)
            zone = catalog.zone_for(name)
            if zone is not None:
                record["zone"] = zone.label
                record["region"] = self._region(catalog, zone, response)
        return record

    def _region(self, catalog: Catalog, zone: Any, response: DNSRecord) -> str | None:
        """The region of the pool the answer's addresses came from."""
        if self._catalog is not catalog:
            self._catalog = catalog
            self._regions = {}
        for rr in response.rr:
            if rr.rtype not in (1, 28):
                continue
            owner = tuple(label.lower() for label in rr.rname.label)
            node = zone.answering(owner)  # its own node, or the wildcard that synthesised it
            dynamic = node.dynamic.get(rr.rtype) if node is not None else None
            if dynamic is None:
                continue
            regions = self._regions.get(id(dynamic))
            if regions is None:
                regions = self._regions[id(dynamic)] = {}
                for endpoint in dynamic.endpoints:
                    regions.setdefault(endpoint.address, endpoint.region)
            try:
                address = ipaddress.ip_address(str(rr.rdata)).compressed
            except ValueError:
                continue
            region = regions.get(address)
            if region is not None:
                return region
        return None


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _client_text(client: Any) -> str:
    if isinstance(client, str):
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return client
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)
    return str(client)


def _subnet_of(message: DNSRecord) -> ecs.ClientSubnet | None:
    for rr in message.ar:
        if rr.rtype == 41:
            return _subnet_of_opt(rr)
    return None


def _subnet_of_opt(rr: Any) -> ecs.ClientSubnet | None:
    for option in rr.rdata or ():
        if getattr(option, "code", None) == ecs.OPTION_CODE:
            try:
                return ecs.decode(option.data)
            except ecs.EcsError:
                return None
    return None
