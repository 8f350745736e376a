"""Helpers for the operations tests (API, metrics, reload, query log, alerts).

`start_with_api(...)` runs a real `gslb serve` (tests/dnsserver.py's GslbProcess) with the API on
port 0 and reads its URL from the `gslb: API on http://HOST:PORT` line. `Sites` runs HTTP
endpoints on 127.0.0.x for the health checks to probe. `eventually` polls with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import dns.edns
import dns.message
import dns.query
import dns.rcode

from dnsserver import START_TIMEOUT, TEST_GEOIP, DeadlineExceeded, GslbProcess, free_port  # noqa: F401
from sites import Sites

API_LINE = re.compile(r"^gslb: API on (?P<url>http://\S+)$")
T = TypeVar("T")

INTERVAL, TIMEOUT, FALL, RISE = 0.2, 0.1, 2, 2

ZONE = """
origin: {origin}
ns: [ns1.{origin}]
soa: {{mname: ns1.{origin}, rname: hostmaster.{origin}, serial: {serial}}}
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
subnets:
  10.1.0.0/16: eu
  10.2.0.0/16: us-east
default_region: us-east
checks:
  web: {{http: {{path: /healthz, port: {port}}}, interval: {interval}s, timeout: {timeout}s, fall: {fall}, rise: {rise}}}
  cold: {{http: {{path: /healthz, port: {port}}}, interval: {interval}s, timeout: {timeout}s, fall: {fall},
          rise: {rise}, cold_start: down}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  hello: {{type: TXT, value: "hello"}}
{records}
"""

EU, US = "10.1.0.0", "10.2.0.0"  # client subnets (ECS) the zone places in eu and us-east


def zone_text(origin: str = "ops.test.", *, port: int = 9, records: str = "", serial: int = 1) -> str:
    return ZONE.format(origin=origin, port=port, interval=INTERVAL, timeout=TIMEOUT, fall=FALL, rise=RISE,
                       records=records, serial=serial)


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write a sibling file, then rename it over `path`: a watcher never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(text, bytes):
        temporary.write_bytes(text)
    else:
        temporary.write_text(text)
    os.replace(temporary, path)


# -- the server ------------------------------------------------------------------------------------

def read_api_url(server: GslbProcess, timeout: float = START_TIMEOUT) -> str:
    """The URL from the server's `gslb: API on ...` line (printed right after the listeners)."""
    for line in server.stdout_lines:
        match = API_LINE.match(line)
        if match:
            return match.group("url")
    assert server.process.stdout is not None
    fd = server.process.stdout.fileno()
    deadline = time.monotonic() + timeout
    pending = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(f"no 'gslb: API on' line within {timeout}s\n{server.describe()}")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"gslb serve closed stdout before the API line\n{server.describe()}")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                server.stdout_lines.append(line)
                match = API_LINE.match(line)
                if match:
                    return match.group("url")


def start_with_api(zones: Path, log_dir: Path, *, extra: Iterable[str] = (), **options: Any) -> tuple[GslbProcess, str]:
    """A `gslb serve` on port 0 with its API on port 0; (process, API URL). Stop it yourself."""
    server = GslbProcess.start(zones, log_dir=log_dir, geoip=options.pop("geoip", TEST_GEOIP),
                               extra=["--api", "127.0.0.1:0", "--log-level", "info", *extra], **options)
    try:
        return server, read_api_url(server)
    except BaseException:
        server.stop()
        raise


# -- waiting ---------------------------------------------------------------------------------------

async def eventually(condition: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = 0.02) -> T:
    """Await `condition()` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


# -- DNS -------------------------------------------------------------------------------------------

def ask(server: GslbProcess, name: str, subnet: str | None = None, rdtype: str = "A",
        tcp: bool = False) -> tuple[str, list[str]]:
    """(rcode, sorted answer texts) for `name`, by a client in `subnet`/24 via ECS when given."""
    options = [dns.edns.ECSOption(subnet, 24)] if subnet is not None else None
    query = dns.message.make_query(name, rdtype, use_edns=0 if subnet is not None else None, options=options)
    if tcp:
        reply = dns.query.tcp(query, server.host, port=server.port, timeout=2)
    else:
        reply = dns.query.udp(query, server.host, port=server.port, timeout=2)
    return dns.rcode.to_text(reply.rcode()), sorted(rr.to_text() for rrset in reply.answer for rr in rrset)


def ecs_scope(server: GslbProcess, name: str, subnet: str) -> int | None:
    """The ECS SCOPE PREFIX-LENGTH of the reply to `name` asked from `subnet`/24."""
    query = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(subnet, 24)])
    reply = dns.query.udp(query, server.host, port=server.port, timeout=2)
    for option in reply.options:
        if isinstance(option, dns.edns.ECSOption):
            return option.scopelen
    return None


async def ask_async(server: GslbProcess, name: str, subnet: str | None = None, rdtype: str = "A") -> tuple[str, list[str]]:
    """`ask` off the event loop, so sites served by the test's own loop keep answering probes."""
    return await asyncio.to_thread(ask, server, name, subnet, rdtype)


# -- HTTP ------------------------------------------------------------------------------------------

async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def post_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any, str]:
    async with session.post(url, **kwargs) as response:
        text = await response.text()
        return response.status, await response.json(content_type=None), text


# -- sites -----------------------------------------------------------------------------------------



def sites_on(addresses: list[str]) -> Sites:
    """Sites on `addresses`, on a port free on all of them (a check probes one port)."""
    return Sites(free_port(addresses))


@contextlib.contextmanager
def http_sites(addresses: list[str]) -> Iterator[Sites]:
    """Sites on `addresses`, every one answering HTTP 200 until told otherwise; closed after."""
    running = sites_on(addresses)
    running.http(*addresses)
    try:
        yield running
    finally:
        running.close()
