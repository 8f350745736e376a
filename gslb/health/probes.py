"""One probe of one endpoint, at its own address: an HTTP(S) request or a TCP handshake.

A CNAME pool's endpoint is a host name: it is probed at its `probe:` address, or at the name as
the system resolver resolves it at probe time, with the name as HTTP Host and TLS SNI.

A probe class is registered with its check kind in gslb/health/kinds.py and has one method, `probe(address)`, which
returns a `ProbeResult` for every outcome it expects (refused, reset, TLS errors, bad status,
wrong body). Anything else it raises is a bug; the monitor logs it and restarts the task. The
monitor, not the probe, enforces the check's timeout.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from gslb.health.specs import HttpSpec, LoadSource, TcpSpec

BODY_LIMIT = 65536  # bytes of a health response read for `body:` and `load: {json: ...}`


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str  # "HTTP 200", "HTTP 503", "connection refused", "timeout after 2s"
    rtt: float | None = None  # seconds, for results that reached the site
    load: float | None = None  # what the site reported, when the check reads it


def describe_error(error: BaseException) -> str:
    """A short reason for a failed connection, the same words for HTTP and TCP probes."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        certificate = error.certificate_error
        detail = getattr(certificate, "verify_message", None) or getattr(certificate, "reason", None) or certificate
        return f"TLS certificate: {detail}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return describe_error(error.os_error)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError) or getattr(error, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# Probes close their connections with a reset (SO_LINGER 0), as HAProxy's checks do: a probe is
# a fresh connection every time (so it sees what a new client sees), and closing it normally
# would leave a TIME_WAIT socket per probe, thousands of them on a busy checker.
ABORTIVE_CLOSE = struct.pack("ii", 1, 0)


def abortive_socket(addr_info: tuple) -> socket.socket:  # type: ignore[type-arg]
    """The socket factory for the probes' aiohttp connector."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORTIVE_CLOSE)
    return sock


def url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Probe:
    kind: ClassVar[str] = ""
    local_addr: tuple[str, int] | None = None  # where probes leave from (HTTP probes: their session's connector)

    async def probe(self, address: str, host: str | None = None) -> ProbeResult:
        """`address`: where to connect (an IP address, or a host name the system resolver
        resolves now); `host`: a CNAME pool endpoint's name, the HTTP Host and TLS SNI unless
        the check sets its own `host:`."""
        raise NotImplementedError


class HttpProbe(Probe):
    """GET `path` from the endpoint's address; Host and SNI come from the check, not from DNS."""

    kind = "http"

    def __init__(self, spec: HttpSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        default_port = 443 if spec.tls else 80
        self._scheme = "https" if spec.tls else "http"
        self._host_header = None
        if spec.host is not None:
            self._host_header = spec.host if spec.port == default_port else f"{spec.host}:{spec.port}"
        self._read_body = spec.body is not None or (spec.load is not None and spec.load.json is not None)
        self._ssl: Any = (True if spec.verify_tls else False) if spec.tls else True

    def url(self, address: str) -> URL:
        return URL(f"{self._scheme}://{url_host(address)}:{self.spec.port}{self.spec.path}")

    async def probe(self, address: str, host: str | None = None) -> ProbeResult:
        spec = self.spec
        headers = {"User-Agent": spec.user_agent, "Accept": "*/*"}
        host_header, name = self._host_header, spec.host
        if name is None and host is not None:
            name = host
            host_header = host if spec.port == (443 if spec.tls else 80) else f"{host}:{spec.port}"
        if host_header is not None:
            headers["Host"] = host_header
        options: dict[str, Any] = {"headers": headers, "allow_redirects": False, "ssl": self._ssl}
        if spec.tls and name is not None:
            options["server_hostname"] = name
        started = time.monotonic()
        try:
            async with self.session.get(self.url(address), **options) as response:
                body = await response.content.read(BODY_LIMIT) if self._read_body else b""
                rtt = time.monotonic() - started
                status = response.status
                load = reported_load(spec.load, response.headers, body)
        except (aiohttp.ClientError, OSError, ssl.SSLError) as error:
            return ProbeResult(False, describe_error(error))
        if not spec.expects(status):
            return ProbeResult(False, f"HTTP {status}", rtt, load)
        if spec.body is not None and spec.body not in body.decode("utf-8", "replace"):
            return ProbeResult(False, f"HTTP {status} without {spec.body!r} in the body", rtt, load)
        return ProbeResult(True, f"HTTP {status}", rtt, load)


def reported_load(source: LoadSource | None, headers: Mapping[str, str], body: bytes) -> float | None:
    """The number the site put in a header or a JSON body field; None when absent or not a number."""
    if source is None:
        return None
    value: Any
    if source.header is not None:
        value = headers.get(source.header)
    else:
        try:
            value = json.loads(body)
        except ValueError:
            return None
        for part in (source.json or "").split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # not NaN


class TcpProbe(Probe):
    kind = "tcp"

    def __init__(self, spec: TcpSpec, session: aiohttp.ClientSession | None = None) -> None:
        self.spec = spec

    async def probe(self, address: str, host: str | None = None) -> ProbeResult:
        started = time.monotonic()
        try:
            _reader, writer = await asyncio.open_connection(address, self.spec.port, local_addr=self.local_addr)
        except OSError as error:
            return ProbeResult(False, describe_error(error))
        rtt = time.monotonic() - started
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORTIVE_CLOSE)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return ProbeResult(True, "TCP connect", rtt)

