"""Regional sites for health-check tests: `/healthz` HTTP(S) servers and bare TCP listeners on
127.0.0.x (any 127.x address is loopback), on one port, started and stopped at will from a
blocking test body; each remembers the Host headers (and, over TLS, the SNI names) it got. An HTTP site can refuse probes by where they come from (`refuse(site,
*peers)`: HTTP 503 to those peer addresses), which is how tests fail a site for one vantage."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` signed by its own key, as (cert.pem, key.pem) in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Sites:
    """HTTP and TCP servers on 127.0.0.x, run by an event loop in a background thread, so the
    (blocking) test body can start and stop a region's site at will."""

    def __init__(self, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        """With `ssl_context`, the HTTP sites speak HTTPS, and `sni` records each server name asked."""
        self.port = port
        self.ssl_context = ssl_context
        self.sni: list[str | None] = []
        if ssl_context is not None:
            ssl_context.sni_callback = lambda sock, name, context: self.sni.append(name)  # type: ignore[assignment, func-returns-value]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-sites", daemon=True)
        self.thread.start()
        self._stops: dict[str, Callable[[], object]] = {}
        self._refused: dict[str, frozenset[str]] = {}  # site -> peer addresses it answers 503
        self.hosts: dict[str, list[str]] = {}  # site -> the Host header of each request it got

    def refuse(self, address: str, *peers: str) -> None:
        """From now on the HTTP site at `address` answers 503 to probes from `peers` (none: it
        serves everyone again). Read by the site's loop at each request: no restart."""
        self._refused[address] = frozenset(peers)

    def refused(self, address: str) -> frozenset[str]:
        return self._refused.get(address, frozenset())

    def _call(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def http(self, *addresses: str) -> None:
        for address in addresses:
            if address not in self._stops:
                self._call(self._start_http(address))

    def tcp(self, *addresses: str) -> None:
        for address in addresses:
            if address not in self._stops:
                self._call(self._start_tcp(address))

    def running(self, address: str) -> bool:
        return address in self._stops

    def stop(self, *addresses: str) -> None:
        for address in addresses:
            if address in self._stops:
                self._call(self._stops.pop(address)())  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop(*list(self._stops))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start_http(self, address: str) -> None:
        async def healthz(request: web.Request) -> web.Response:
            self.hosts.setdefault(address, []).append(request.headers.get("Host", ""))
            if request.remote in self._refused.get(address, ()):
                return web.Response(status=503, text=f"refused for {request.remote}")
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, address, self.port, ssl_context=self.ssl_context).start()
        self._stops[address] = runner.cleanup

    async def _start_tcp(self, address: str) -> None:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(accept, address, self.port)

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        self._stops[address] = stop
