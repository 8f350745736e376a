"""Health shared through Redis at scale: 10,000 HTTP-checked endpoints probed every 10 s from three
vantages (three `gslb probe` agents), two DNS nodes (`gslb serve --redis`), one redis-server, all on
loopback.

    python bench/redis_scale.py [--endpoints 10000] [--interval 10] [--seconds 60] [--trials 20]

The sites are one process answering `200 ok` on 127.1.x.y:PORT, one socket per address (as in
bench/prober.py); it takes `fail ADDRESS` on its standard input to close one address's socket
(probes then get "connection refused" from every vantage). The agents probe from 127.0.0.2, .3
and .4 (`--source`). After one and a half intervals of warm-up it measures, over `--seconds`: the
CPU (share of one core) and RSS of one agent and one DNS node, and Redis's commands per second
(INFO commandstats, before and after). Then the failover: `--trials` sites, each in its own
record, fail at once (each endpoint's probe phase is random, so one failure per record is one
independent trial); for each, the time until both nodes answer without it (polled over UDP every
50 ms). Prints Markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from servers import cpu_seconds, free_port, rss_mb  # noqa: E402

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
PER_RECORD = 10
VANTAGES = {"eu": "127.0.0.2", "us": "127.0.0.3", "asia": "127.0.0.4"}


def addresses(count: int) -> list[str]:
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


# -- the sites (a child process) ----------------------------------------------------------------------

class Site(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


async def serve_sites(hosts: list[str], port: int) -> None:
    loop = asyncio.get_running_loop()
    servers = {host: await loop.create_server(Site, host, port, backlog=64, reuse_address=True) for host in hosts}
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("sites ready", flush=True)
    while line := (await reader.readline()).decode().split():
        if line[0] == "fail" and line[1] in servers:
            servers.pop(line[1]).close()
        print(f"done {' '.join(line)}", flush=True)


# -- the zone -----------------------------------------------------------------------------------------

def zone(hosts: list[str], port: int, interval: float) -> str:
    lines = [
        "origin: scale.bench.",
        "ns: [ns1.scale.bench.]",
        "regions:",
        "  eu: {location: [50.1, 8.7], serves: [EU]}",
        "default_region: eu",
        "checks:",
        f"  site: {{http: {{path: /healthz, port: {port}}}, interval: {interval}s, timeout: {min(2.0, interval / 2):g}s, rise: 2, fall: 3}}",
        "records:",
        "  ns1: {type: A, value: 192.0.2.53}",
    ]
    for index in range(0, len(hosts), PER_RECORD):
        lines.append(f"  r{index // PER_RECORD}: {{type: A, check: site, pools: {{eu: [{', '.join(hosts[index:index + PER_RECORD])}]}}}}")
    return "\n".join(lines) + "\n"


# -- helpers ------------------------------------------------------------------------------------------

def redis_command(port: int, *words: str) -> str:
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            if not chunk or (data.startswith(b"$") and len(data) >= int(data[1:data.index(b"\r\n")]) + data.index(b"\r\n") + 4) \
                    or (data[:1] in (b"+", b"-") and data.endswith(b"\r\n")):
                break
    return data.decode("utf-8", "replace")


def commandstats(port: int) -> dict[str, int]:
    stats = {}
    for line in redis_command(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            fields = dict(item.split("=") for item in rest.split(","))
            stats[name[len("cmdstat_"):]] = int(fields["calls"])
    return stats


def dns_answer(port: int, name: str) -> set[str]:
    """The A addresses of `name` from the node at 127.0.0.1:port (a minimal query, no dependency)."""
    import dns.message
    import dns.query

    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return {rr.address for rrset in reply.answer for rr in rrset}


def wait_line(process: subprocess.Popen[str], prefix: str, timeout: float = 120) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited before printing {prefix!r}")
        if line.startswith(prefix):
            return line
    raise RuntimeError(f"no {prefix!r} within {timeout}s")


def stop(*processes: subprocess.Popen[str] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--port", type=int, default=18081)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.endpoints * 2 + 1024)), hard))
    hosts = addresses(args.endpoints)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed", file=sys.stderr)
        return 1
    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as work:
        zones = Path(work) / "zones"
        zones.mkdir()
        (zones / "scale.bench.yaml").write_text(zone(hosts, args.port, args.interval))
        redis_port = free_port()
        try:
            redis = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL, text=True)
            processes.append(redis)
            sites = subprocess.Popen(
                [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCH)!r}); import asyncio, redis_scale; "
                 f"asyncio.run(redis_scale.serve_sites(redis_scale.addresses({args.endpoints}), {args.port}))"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            processes.append(sites)
            wait_line(sites, "sites ready")
            url = f"redis://127.0.0.1:{redis_port}/0"
            config = Path(work) / "node.yaml"
            config.write_text(f"redis: {url}\nvantages: [{', '.join(VANTAGES)}]\n")
            agents = []
            for vantage, source in VANTAGES.items():
                agent = subprocess.Popen([sys.executable, "-m", "gslb", "probe", "--zones", str(zones), "--redis", url,
                                          "--vantage", vantage, "--source", source, "--log-level", "warning"],
                                         stdout=subprocess.PIPE, stderr=(Path(work) / f"agent-{vantage}.log").open("w"),
                                         text=True, cwd=REPO)
                processes.append(agent)
                agents.append(agent)
            for agent in agents:
                wait_line(agent, "gslb: probing")
            nodes, dns_ports = [], []
            for index in (1, 2):
                node = subprocess.Popen([sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--config",
                                         str(config), "--listen", "127.0.0.1:0", "--api", "off", "--log-level", "warning",
                                         "--node-name", f"node-{index}"], stdout=subprocess.PIPE, text=True, cwd=REPO)
                processes.append(node)
                nodes.append(node)
                line = wait_line(node, "gslb: listening on")
                dns_ports.append(int(line.split()[3].rsplit(":", 1)[1]))
            time.sleep(args.interval * 1.5)  # every probe ran once (jittered starts) and was published

            watched = {"agent (eu)": agents[0], "DNS node 1": nodes[0]}
            before_cpu = {name: cpu_seconds(p.pid) for name, p in watched.items()}
            before_stats = commandstats(redis_port)
            started = time.monotonic()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - started
            used = {name: cpu_seconds(p.pid) - before_cpu[name] for name, p in watched.items()}
            rss = {name: rss_mb(p.pid) for name, p in watched.items()}
            after_stats = commandstats(redis_port)
            calls = {name: after_stats.get(name, 0) - before_stats.get(name, 0) for name in after_stats}
            calls = {name: count for name, count in calls.items() if count > 0 and name != "info"}
            load = os.getloadavg()

            # -- failover trials: one failing site per record, all at once ----------------------------
            trials = []
            for trial in range(args.trials):
                record = (trial * 37) % (args.endpoints // PER_RECORD)
                trials.append((f"r{record}.scale.bench.", hosts[record * PER_RECORD + trial % PER_RECORD]))
            for _name, address in trials:
                if not all(address in dns_answer(port, _name) for port in dns_ports):
                    print((Path(work) / "agent-eu.log").read_text()[-3000:], file=sys.stderr)
                    raise RuntimeError(f"{address} not served before the trials")
            assert sites.stdin is not None
            failed_at: dict[str, float] = {}
            for _name, address in trials:
                sites.stdin.write(f"fail {address}\n")
                sites.stdin.flush()
                wait_line(sites, "done fail")
                failed_at[address] = time.monotonic()
            gone: dict[str, float] = {}
            deadline = time.monotonic() + args.interval * 3 + 2 + 30
            while len(gone) < len(trials) and time.monotonic() < deadline:
                for name, address in trials:
                    if address not in gone and all(address not in dns_answer(port, name) for port in dns_ports):
                        gone[address] = time.monotonic() - failed_at[address]
                time.sleep(0.05)
            times = sorted(gone.values())
        finally:
            stop(*reversed(processes))

    print(f"10,000-endpoint shape: {args.endpoints:,} endpoints, HTTP every {args.interval:g}s (timeout {min(2.0, args.interval / 2):g}s, fall 3, "
          f"rise 2), {len(VANTAGES)} agents, 2 DNS nodes, measured over {elapsed:.0f}s; load average at the end "
          f"{load[0]:.1f} (2 cores)\n")
    print("| process | CPU, % of one core | RSS MB |")
    print("| --- | ---: | ---: |")
    for name in watched:
        print(f"| {name} | {100 * used[name] / elapsed:.1f} | {rss[name]:.0f} |")
    total = sum(calls.values())
    print(f"\nRedis: {total / elapsed:,.1f} commands/s in all: "
          + ", ".join(f"{name} {count / elapsed:,.1f}" for name, count in sorted(calls.items(), key=lambda i: -i[1])))
    if times:
        print(f"\nFailover (site fails for every vantage -> both nodes answer without it), {len(times)} of "
              f"{len(trials)} trials: median {statistics.median(times):.1f}s, min {times[0]:.1f}s, max {times[-1]:.1f}s "
              f"(bound interval x fall + timeout + publish: {args.interval * 3 + 2:g}s + ~0.1s)")
    print(json.dumps({"cpu": {k: round(100 * v / elapsed, 1) for k, v in used.items()}, "rss": rss,
                      "redis_per_s": {k: round(v / elapsed, 1) for k, v in calls.items()}, "failover": times}))
    return 0 if len(times) == len(trials) else 1


if __name__ == "__main__":
    raise SystemExit(main())
