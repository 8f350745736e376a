"""HTTP(S) and TCP probes against real servers on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from gslb.health.checks import HttpSpec, LoadSource, TcpSpec
from gslb.health.kinds import PROBES
from gslb.health.probes import HttpProbe, TcpProbe, reported_load
from sites import self_signed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Site:
    """An aiohttp server on 127.0.0.1 that remembers what it was asked."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.local_addresses: list[str] = []  # the address each request arrived on
        self.sni: list[str | None] = []
        self.handler: Handler = self.ok
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.local_addresses.append(request.transport.get_extra_info("sockname")[0])  # type: ignore[union-attr]
        return await self.handler(request)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    server = Site()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
        yield client


def http(site: Site, **options) -> HttpSpec:
    return HttpSpec(port=site.port, **options)


def test_probe_classes_are_found_by_kind():
    assert PROBES == {"http": HttpProbe, "tcp": TcpProbe}


async def test_a_2xx_is_up_and_reports_rtt(site, session):
    result = await HttpProbe(http(site, path="/healthz"), session).probe("127.0.0.1")
    assert (result.ok, result.reason) == (True, "HTTP 200")
    assert result.rtt is not None and 0 < result.rtt < 1
    assert site.requests[-1].path == "/healthz"
    assert site.requests[-1].method == "GET"


async def test_a_503_is_down_with_the_status_as_the_reason(site, session):
    site.handler = lambda request: _response(503)
    result = await HttpProbe(http(site), session).probe("127.0.0.1")
    assert (result.ok, result.reason) == (False, "HTTP 503")


async def _response(status: int, text: str = "", headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


async def test_expect_lists_codes_and_ranges_and_redirects_are_not_followed(site, session):
    site.handler = lambda request: _response(204)
    assert not (await HttpProbe(http(site, expect=((200, 200),)), session).probe("127.0.0.1")).ok
    assert (await HttpProbe(http(site, expect=((200, 200), (204, 204))), session).probe("127.0.0.1")).ok
    site.handler = lambda request: _response(302, headers={"Location": "http://192.0.2.1/"})
    result = await HttpProbe(http(site), session).probe("127.0.0.1")  # 302 is within 200-399
    assert (result.ok, result.reason) == (True, "HTTP 302")
    assert len(site.requests) == 3


async def test_the_body_must_contain_the_expected_text(site, session):
    site.handler = lambda request: _response(200, "status: degraded")
    result = await HttpProbe(http(site, body="ok"), session).probe("127.0.0.1")
    assert (result.ok, result.reason) == (False, "HTTP 200 without 'ok' in the body")
    site.handler = lambda request: _response(200, "all ok here")
    assert (await HttpProbe(http(site, body="ok"), session).probe("127.0.0.1")).ok


async def test_host_header_comes_from_the_check_and_the_address_is_the_endpoint(site, session):
    await HttpProbe(http(site, host="www.example.com", user_agent="probe/9"), session).probe("127.0.0.1")
    request = site.requests[-1]
    assert request.headers["Host"] == f"www.example.com:{site.port}"
    assert request.headers["User-Agent"] == "probe/9"
    assert site.local_addresses[-1] == "127.0.0.1"
    await HttpProbe(http(site), session).probe("127.0.0.1")
    assert site.requests[-1].headers["Host"] == f"127.0.0.1:{site.port}"  # no host: the address


async def test_load_is_read_from_a_json_field_or_a_header(site, session):
    site.handler = lambda request: _response(200, '{"stats": {"load": 0.42}, "ok": true}',
                                             {"Content-Type": "application/json", "X-Load": "17"})
    result = await HttpProbe(http(site, load=LoadSource(json="stats.load")), session).probe("127.0.0.1")
    assert (result.ok, result.load) == (True, 0.42)
    result = await HttpProbe(http(site, load=LoadSource(header="X-Load")), session).probe("127.0.0.1")
    assert result.load == 17.0
    result = await HttpProbe(http(site, load=LoadSource(json="missing")), session).probe("127.0.0.1")
    assert (result.ok, result.load) == (True, None)  # no load reported is not a failure


def test_reported_load_ignores_what_is_not_a_number():
    source = LoadSource(json="load")
    assert reported_load(source, {}, b'{"load": "0.5"}') == 0.5
    assert reported_load(source, {}, b'{"load": true}') is None
    assert reported_load(source, {}, b'{"load": "NaN"}') is None
    assert reported_load(source, {}, b"not json") is None
    assert reported_load(LoadSource(header="X-Load"), {"X-Load": "high"}, b"") is None


async def test_a_closed_port_is_connection_refused(session):
    port = await _closed_port()
    result = await HttpProbe(HttpSpec(port=port), session).probe("127.0.0.1")
    assert (result.ok, result.reason) == (False, "connection refused")


async def _closed_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_tcp_probe_succeeds_on_a_handshake_and_fails_when_refused():
    accepted = asyncio.Event()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await TcpProbe(TcpSpec(port)).probe("127.0.0.1")
        assert (result.ok, result.reason) == (True, "TCP connect")
        assert result.rtt is not None and result.rtt < 1
        await asyncio.wait_for(accepted.wait(), 2)
    finally:
        server.close()
        await server.wait_closed()
    result = await TcpProbe(TcpSpec(port)).probe("127.0.0.1")
    assert (result.ok, result.reason) == (False, "connection refused")


# -- TLS ---------------------------------------------------------------------------------------

@pytest.fixture
async def tls_site(tmp_path) -> AsyncIterator[Site]:
    pytest.importorskip("cryptography")
    cert, key = self_signed(tmp_path, "www.example.com")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Site()
    context.sni_callback = lambda sock, name, ctx: server.sni.append(name)  # type: ignore[assignment, func-returns-value]
    await server.start(context)
    yield server
    await server.stop()


async def test_https_sends_sni_and_host_from_the_check_to_the_endpoint_address(tls_site, session):
    spec = HttpSpec(port=tls_site.port, tls=True, host="www.example.com", verify_tls=False)
    result = await HttpProbe(spec, session).probe("127.0.0.1")
    assert (result.ok, result.reason) == (True, "HTTP 200")
    assert tls_site.sni[-1] == "www.example.com"
    assert tls_site.requests[-1].headers["Host"] == f"www.example.com:{tls_site.port}"


async def test_https_verifies_the_certificate_unless_told_not_to(tls_site, session):
    spec = HttpSpec(port=tls_site.port, tls=True, host="www.example.com")  # self-signed: untrusted
    result = await HttpProbe(spec, session).probe("127.0.0.1")
    assert not result.ok
    assert result.reason.startswith("TLS certificate: ")
    assert "self-signed" in result.reason or "VERIFY_FAILED" in result.reason


# -- CNAME pool endpoints: a host name, probed at its probe: address or resolved now ----------

async def test_a_host_name_endpoint_is_the_host_header_at_its_probe_address(site, session):
    result = await HttpProbe(http(site, path="/healthz"), session).probe("127.0.0.1", host="lb-eu.example.net")
    assert result.ok
    assert site.requests[-1].headers["Host"] == f"lb-eu.example.net:{site.port}"
    assert site.local_addresses[-1] == "127.0.0.1"
    await HttpProbe(http(site, host="www.example.com"), session).probe("127.0.0.1", host="lb-eu.example.net")
    assert site.requests[-1].headers["Host"] == f"www.example.com:{site.port}"  # the check's own host: wins


async def test_without_a_probe_address_the_name_is_resolved_by_the_system_resolver(site, session):
    """localhost resolves through getaddrinfo (/etc/hosts) to the loopback the site listens on."""
    for probe in (HttpProbe(http(site), session), TcpProbe(TcpSpec(site.port))):
        result = await probe.probe("localhost", host="localhost")
        assert (result.ok, result.reason) == (True, "HTTP 200" if isinstance(probe, HttpProbe) else "TCP connect")
    assert site.requests[-1].headers["Host"] == f"localhost:{site.port}"


async def test_https_sends_the_endpoint_name_as_sni_and_host(tls_site, session):
    spec = HttpSpec(port=tls_site.port, tls=True, verify_tls=False)
    result = await HttpProbe(spec, session).probe("127.0.0.1", host="lb-eu.example.net")
    assert (result.ok, result.reason) == (True, "HTTP 200")
    assert tls_site.sni[-1] == "lb-eu.example.net"
    assert tls_site.requests[-1].headers["Host"] == f"lb-eu.example.net:{tls_site.port}"


async def test_https_verifies_the_certificate_against_the_endpoint_name(tls_site, session, tmp_path):
    """The site's certificate is for www.example.com: trusted, it passes for that name only."""
    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    spec = HttpSpec(port=tls_site.port, tls=True)
    probe = HttpProbe(spec, session)
    probe._ssl = trust
    assert (await probe.probe("127.0.0.1", host="www.example.com")).ok
    result = await probe.probe("127.0.0.1", host="lb-eu.example.net")
    assert not result.ok and result.reason.startswith("TLS certificate: ")
