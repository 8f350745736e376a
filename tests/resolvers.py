"""Real resolvers in front of a test `gslb serve`: unbound in the foreground on a free port,
delv runs, and a UDP proxy that can corrupt what passes through it.

`run_unbound(directory, body, probe)` writes `body` (the `server:` options after the common ones,
and the stub zones) to an unbound.conf, checks it with unbound-checkconf, starts unbound with -d
and waits until it answers `probe`; it yields the port and always stops unbound by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from dnsserver import wait_for

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
DELV = shutil.which("delv") or "/usr/bin/delv"


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (unbound cannot be told to pick one)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


@contextmanager
def run_unbound(directory: Path, body: str, probe: str) -> Iterator[int]:
    """unbound with `body` appended to a loopback-only, foreground, no-chroot `server:` clause."""
    port = free_port()
    config = directory / "unbound.conf"
    config.write_text(f"""
server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
{body}""")
    check = subprocess.run(["unbound-checkconf", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log_path = directory / "unbound.log"
    log = log_path.open("wb")
    process = subprocess.Popen([UNBOUND, "-d", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def answering() -> bool:
        try:
            dns.query.udp(dns.message.make_query(probe, "SOA"), "127.0.0.1", port=port, timeout=0.3)
            return True
        except (dns.exception.Timeout, OSError):
            assert process.poll() is None, log_path.read_text()
            return False

    try:
        wait_for(answering, 15, "unbound to answer")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def delv(port: int, anchors: Path, zone: str, name: str, rdtype: str = "A", *extra: str) -> str:
    """delv asking 127.0.0.1:port, trusting `anchors` (a trust-anchors clause) for `zone`; its
    output (stdout and stderr: delv reports failures on stderr)."""
    result = subprocess.run([DELV, "@127.0.0.1", "-p", str(port), "-a", str(anchors), f"+root={zone}", name, rdtype,
                             *extra], capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


class UdpProxy:
    """Forwards UDP datagrams from 127.0.0.1:port to `upstream`, passing each reply through
    `change` (bytes -> bytes) on the way back. One thread; stop with `close()`."""

    def __init__(self, upstream: tuple[str, int], change: Callable[[bytes], bytes]) -> None:
        self.upstream = upstream
        self.change = change
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.settimeout(2)
            while not self._stop.is_set():
                try:
                    query, client = self.sock.recvfrom(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    out.sendto(query, self.upstream)
                    reply, _ = out.recvfrom(65535)
                    self.sock.sendto(self.change(reply), client)
                except OSError:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
