"""Soak: dnsperf at saturation for minutes while sites flap, zones are rewritten and /metrics is scraped.

    python bench/soak.py [--duration 600] [--workers 2] [--out bench/RESULTS.md]

Not part of the test suite. The script starts `gslb serve` (loopback, free ports, API on) over one
zone with two health-checked GSLB records whose six endpoints are HTTP sites on 127.0.0.51-56
(aiohttp, tests/sites.py), and for `--duration` seconds:

- dnsperf sends queries as fast as the server answers them (`-c 4 -q 100 -t 5`: at most 100 in
  flight, so a query is lost only when the server drops it or takes over 5 s);
- every `--flap` seconds one site, chosen at random, goes down if it is up, up if it is down (the
  probes, 1 s apart with fall 2 / rise 2, withdraw and restore it);
- every `--rewrite` seconds the zone file is rewritten, renamed into place: alternately a good
  zone (the serial bumped) and a bad one (a YAML syntax error, or a TTL of -5), which the server
  must refuse while it keeps serving the last good zone;
- /metrics is fetched every second.

Reported: dnsperf's queries sent / completed / lost, its QPS and maximum latency; the reloads ok
and failed (from /metrics) against the rewrites made; scrapes failed and the slowest scrape; RSS of
every gslb process at ready, once warm (after `--warmup` seconds of load) and at the end; tracebacks
in the server's log. The bar (issue 11): 0 lost, and RSS at the end within 10 % of the start
(the warm figure: caches fill in the first seconds). The server is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dns.exception
import dns.message
import dns.query

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "tests"))

from servers import free_port, process_tree  # noqa: E402

from sites import Sites  # noqa: E402

GEOIP = REPO / "tests" / "data" / "geo" / "GeoIP2-City-Test.mmdb"
SITES = [f"127.0.0.{n}" for n in range(51, 57)]
ZONE = """\
origin: soak.test.
ttl: 60
soa: {{mname: ns1.soak.test., rname: hostmaster.soak.test., serial: {serial}}}
ns: [ns1.soak.test.]
regions:
  eu: {{location: [50.11, 8.68]}}
  us-east: {{location: [39.04, -77.49]}}
subnets:
  127.0.0.0/8: eu
default_region: us-east
checks:
  web: {{http: {{path: /healthz, port: {port}}}, interval: 1s, timeout: 0.5s, fall: 2, rise: 2}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  static: {{type: A, value: 192.0.2.1}}
  txt: {{type: TXT, value: "soak {serial}"}}
  www: {{type: A, ttl: {ttl}, check: web, pools: {{eu: [127.0.0.51, 127.0.0.52], us-east: [127.0.0.53, 127.0.0.54]}}}}
  app: {{type: A, check: web, when_all_down: all, policy: failover,
         pools: {{eu: [127.0.0.55], us-east: [127.0.0.56]}}}}
"""
QUERIES = ["static.soak.test A", "www.soak.test A", "app.soak.test A", "nx.soak.test A", "soak.test SOA",
           "txt.soak.test TXT", "www.soak.test AAAA"]


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def process_rss(root: int) -> dict[str, float]:
    """RSS in MB of every process of the server, by name (main, worker-N, ...)."""
    found = {}
    for pid in sorted(process_tree(root)):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        if match is None:
            continue
        if pid == root:
            name = "main"
        elif "resource_tracker" in command:
            name = "multiprocessing resource tracker"
        elif "spawn_main" in command:
            workers = sum(1 for key in found if key.startswith("worker"))
            name = f"worker {workers + 1} (pid {pid})"  # spawned in order: pids rise
        else:
            name = f"child {pid}"

        found[name] = int(match.group(1)) / 1024
    return found


class Scraper(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.scrapes = self.failures = 0
        self.slowest = 0.0
        self.text = ""

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
                    self.text = response.read().decode()
                self.scrapes += 1
            except OSError:
                self.failures += 1
            self.slowest = max(self.slowest, time.monotonic() - started)

    def metric(self, name: str, labels: str = "") -> float | None:
        match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", self.text, re.M)
        return float(match.group(1)) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=600, help="seconds of load (default 600)")
    parser.add_argument("--workers", type=int, help="gslb serve --workers N")
    parser.add_argument("--warmup", type=float, help="seconds of load before the 'start' RSS (default: a tenth "
                                                     "of the duration, at most 60)")
    parser.add_argument("--flap", type=float, default=2.0, help="seconds between site flaps (default 2)")
    parser.add_argument("--rewrite", type=float, default=5.0, help="seconds between zone rewrites (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="append the markdown section to this file")
    a = parser.parse_args()
    if shutil.which("dnsperf") is None:
        print("soak: dnsperf is missing: apt-get install dnsperf", file=sys.stderr)
        return 2
    warmup = a.warmup if a.warmup is not None else min(60.0, a.duration / 10)
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="gslb-soak-"))
    zones = work / "zones"
    zones.mkdir()
    site_port = free_port()
    zone_file = zones / "soak.test.yaml"
    serial = 1
    write_atomically(zone_file, ZONE.format(serial=serial, port=site_port, ttl=30))
    queries = work / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    sites = Sites(site_port)
    sites.http(*SITES)
    port, api_port = free_port(), free_port()
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--geoip", str(GEOIP),
               "--listen", f"127.0.0.1:{port}", "--api", f"127.0.0.1:{api_port}", "--cache-dir", str(work / "cache"),
               "--log-level", "info"]
    if a.workers:
        command += ["--workers", str(a.workers)]
    stderr_path, stdout_path = work / "gslb.stderr", work / "gslb.stdout"
    load = os.getloadavg()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        server = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    rewrites = {"good": 0, "bad": 0}
    flaps = 0
    scraper = Scraper(f"http://127.0.0.1:{api_port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"soak: gslb did not start: {stderr_path.read_text(errors='replace')[-2000:]}")
            try:
                dns.query.udp(dns.message.make_query("soak.test.", "SOA"), "127.0.0.1", port=port, timeout=0.5)
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=2):
                    pass
                if not a.workers or len(process_rss(server.pid)) > a.workers - 1:
                    break
            except (OSError, dns.exception.DNSException):
                pass
            time.sleep(0.2)
        rss_ready = process_rss(server.pid)
        scraper.start()
        perf = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
                                 "-l", str(a.duration), "-c", "4", "-q", "100", "-t", "5", "-S", "10"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(perf.stdout), daemon=True)  # type: ignore[arg-type]
        reader.start()
        started = time.monotonic()
        rss_warm: dict[str, float] | None = None
        next_flap, next_rewrite = started + a.flap, started + a.rewrite
        bad_kind = 0
        while perf.poll() is None:
            now = time.monotonic()
            if rss_warm is None and now - started >= warmup:
                rss_warm = process_rss(server.pid)
            if now >= next_flap:
                site = rng.choice(SITES)
                if sites.running(site):
                    sites.stop(site)
                else:
                    sites.http(site)
                flaps += 1
                next_flap += a.flap
            if now >= next_rewrite:
                if (rewrites["good"] + rewrites["bad"]) % 2:
                    bad_kind += 1
                    text = ZONE.format(serial=serial, port=site_port, ttl=-5) if bad_kind % 2 else \
                        ZONE.format(serial=serial, port=site_port, ttl=30).replace("records:", "records: [", 1)
                    rewrites["bad"] += 1
                else:
                    serial += 1
                    text = ZONE.format(serial=serial, port=site_port, ttl=30)
                    rewrites["good"] += 1
                write_atomically(zone_file, text)
                next_rewrite += a.rewrite
            time.sleep(0.05)
        reader.join(10)
        rss_end = process_rss(server.pid)
        time.sleep(2)  # the last rewrite's reload, then one more scrape
        scraper.stopping.set()
        scraper.join(10)
        ok = scraper.metric("gslb_config_reloads_total", '{result="ok"}')
        failed = scraper.metric("gslb_config_reloads_total", '{result="failed"}')
        alive = server.poll() is None
    finally:
        scraper.stopping.set()
        server.send_signal(signal.SIGTERM)
        try:
            status = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            status = server.wait(10)
        sites.close()
    text_out = "".join(output)
    log = stderr_path.read_text(errors="replace")
    tracebacks = log.count("Traceback (most recent call last)")

    def figure(pattern: str) -> str:
        match = re.search(pattern, text_out)
        return match.group(1) if match else "?"

    sent, completed, lost = (figure(rf"Queries {what}:\s+(\d+)") for what in ("sent", "completed", "lost"))
    qps = figure(r"Queries per second:\s+([\d.]+)")
    max_latency = figure(r"Average Latency \(s\):.*max ([\d.]+)\)")
    rss_warm = rss_warm or rss_ready

    def rss_cell(name: str) -> str:
        start, end = rss_warm.get(name), rss_end.get(name)
        change = f" ({(end - start) / start:+.1%})" if start and end else ""
        return f"{rss_ready.get(name, 0):.1f} / {start or 0:.1f} / {end or 0:.1f} MB{change}"

    names = sorted(set(rss_ready) | set(rss_end), key=lambda n: (n != "main", n))
    workers = f" --workers {a.workers}" if a.workers else ""
    lines = [
        f"## Soak: {a.duration} s at saturation{' with `' + workers.strip() + '`' if workers else ', one process'}",
        "",
        f"`python bench/soak.py --duration {a.duration}{workers}`: dnsperf `-c 4 -q 100 -t 5` over {len(QUERIES)} "
        f"names (static, GSLB, NXDOMAIN, SOA, TXT, NODATA); {len(SITES)} health-checked HTTP sites, one flapped every "
        f"{a.flap:g} s ({flaps} flaps); the zone rewritten every {a.rewrite:g} s, renamed into place, alternately good "
        f"and bad ({rewrites['good']} good, {rewrites['bad']} bad: YAML errors and a negative TTL); /metrics every "
        f"second. Nothing pinned; load average at the start {load[0]:.1f} (other work on the machine).",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| dnsperf queries sent / completed / lost | {sent} / {completed} / {lost} |",
        f"| QPS / max latency | {float(qps) if qps != '?' else float('nan'):,.0f} / {float(max_latency) * 1000 if max_latency != '?' else float('nan'):.0f} ms |",
        f"| reloads ok / failed (/metrics) for {rewrites['good']} good / {rewrites['bad']} bad rewrites | "
        f"{ok if ok is None else int(ok)} / {failed if failed is None else int(failed)} |",
        f"| /metrics scrapes ok / failed / slowest | {scraper.scrapes} / {scraper.failures} / "
        f"{scraper.slowest * 1000:.0f} ms |",
        *(f"| RSS {name}: ready / warm ({warmup:g} s) / end | {rss_cell(name)} |" for name in names),
        f"| tracebacks in the server's log | {tracebacks} |",
        f"| server alive at the end / exit status (SIGTERM) | {'yes' if alive else 'NO'} / {status} |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    print(text_out[-1200:], file=sys.stderr)
    if a.out is not None:
        with a.out.open("a") as out:
            out.write("\n" + report)
    if tracebacks:
        print(f"soak: tracebacks in {stderr_path}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
