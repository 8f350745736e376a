"""Prober cost: 10,000 endpoints under HTTP checks at a 10 s interval, against a local HTTP
server answering on many 127.x addresses (loopback only).

    python bench/prober.py [--endpoints 10000] [--interval 10] [--seconds 60]

The sites are one process (pinned to CPU 1) listening on 127.1.x.y:PORT, one socket per address,
answering every request with a minimal `200 ok` and closing. gslb (pinned to CPU 0) serves a
zone of 100 GSLB records whose pools hold the endpoints; it is measured after one full interval
of warm-up: CPU time over `--seconds` as a share of one core, probes done, and RSS. The anchor
from the issue: a Go plugin used 48 % of a core and 433 MB for 20,000 endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from servers import cpu_seconds, process_tree, rss_mb  # noqa: E402

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def addresses(count: int) -> list[str]:
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


class Site(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


async def serve_sites(hosts: list[str], port: int) -> None:
    loop = asyncio.get_running_loop()
    for host in hosts:
        await loop.create_server(Site, host, port, backlog=64, reuse_address=True)
    print("sites ready", flush=True)
    await asyncio.Event().wait()


def zone(hosts: list[str], port: int, interval: float) -> str:
    lines = [
        "origin: probes.bench.",
        "ns: [ns1.probes.bench.]",
        "regions:",
        "  eu: {location: [50.1, 8.7], serves: [EU]}",
        "  na: {location: [39.0, -77.5], serves: [NA]}",
        "default_region: eu",
        "checks:",
        f"  site: {{http: {{path: /healthz, port: {port}}}, interval: {interval}s, timeout: 2s, rise: 2, fall: 3}}",
        "records:",
        "  ns1: {type: A, value: 192.0.2.53}",
    ]
    per_record = 100
    for record in range(0, len(hosts), per_record):
        chunk = hosts[record:record + per_record]
        half = len(chunk) // 2
        lines.append(f"  r{record // per_record}: {{type: A, check: site, pools: "
                     f"{{eu: [{', '.join(chunk[:half])}], na: [{', '.join(chunk[half:])}]}}}}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.endpoints * 2 + 1024)), hard))
    hosts = addresses(args.endpoints)
    with tempfile.TemporaryDirectory() as work:
        zones = Path(work) / "zones"
        zones.mkdir()
        (zones / "probes.bench.yaml").write_text(zone(hosts, args.port, args.interval))
        sites = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-c",
             f"import sys; sys.path.insert(0, {str(BENCH)!r}); import asyncio, prober; "
             f"asyncio.run(prober.serve_sites(prober.addresses({args.endpoints}), {args.port}))"],
            stdout=subprocess.PIPE, text=True)
        gslb = None
        try:
            assert sites.stdout is not None
            if sites.stdout.readline().strip() != "sites ready":
                print("the sites did not start", file=sys.stderr)
                return 1
            gslb = subprocess.Popen(
                ["taskset", "-c", "0", sys.executable, "-m", "gslb", "serve", "--zones", str(zones),
                 "--listen", "127.0.0.1:0", "--api", "off", "--log-level", "warning"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert gslb.stdout is not None
            while "listening on" not in (line := gslb.stdout.readline()):
                if not line:
                    print(gslb.stderr.read() if gslb.stderr else "", file=sys.stderr)
                    return 1
            time.sleep(args.interval * 1.5)  # every probe task started and ran once (jittered start)
            pids = process_tree(gslb.pid)
            before = sum(cpu_seconds(pid) for pid in pids)
            started = time.monotonic()
            time.sleep(args.seconds)
            used = sum(cpu_seconds(pid) for pid in process_tree(gslb.pid)) - before
            elapsed = time.monotonic() - started
            rss = sum(rss_mb(pid) for pid in process_tree(gslb.pid))
            print("| endpoints | interval s | probes/s (expected) | gslb CPU, % of one core | gslb RSS MB |")
            print("| ---: | ---: | ---: | ---: | ---: |")
            print(f"| {args.endpoints:,} | {args.interval:g} | {args.endpoints / args.interval:,.0f} | "
                  f"{100 * used / elapsed:.1f} | {rss:.0f} |")
        finally:
            for process in (gslb, sites):
                if process is not None:
                    process.terminate()
                    try:
                        process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
