"""A SIGHUP reload of a 100,000-record zone directory under load, with `gslb serve --workers 2`.

    python bench/reload_under_load.py [--seconds 60] [--rate 10000] [--source DIR] [--out FILE]

The zones are bench/scale.py's directory (100,000 static + 1,000 GSLB records in 10 files),
copied to a scratch directory. gslb serves them with `--workers 2` and its API; once every
process has bound the port, dnsperf sends `--rate` queries per second (static and GSLB names,
`-S 1` per-second statistics) for `--seconds`, and a probing client sends one query every 10 ms,
each from a fresh socket (a new source port, so the kernel spreads the probes over both
processes: the main one and worker-1), timing each (1 s timeout). A fifth of the way in, one zone's serial is bumped and the
main process gets SIGHUP; the reload is over when a probe from each of 30 fresh sockets in a row
sees the new serial (every process swapped). Reported: dnsperf's queries sent, completed and lost
and its maximum latency; the probes' count, losses and latency (max, p99) during the reload window;
the lowest per-second QPS of dnsperf in that window; the reload's duration in the main process
(/status) and in each worker (their log lines).

`--source DIR` runs the gslb of another checkout (e.g. the main branch before the reload rework),
for a before/after comparison. Nothing is pinned: the two gslb processes, dnsperf and the prober
share the machine's cores, so the figures include that contention; the machine's load average at
the start is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dns.message

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import scale  # noqa: E402
from servers import free_port, process_tree, rss_mb  # noqa: E402

REPO = BENCH.parent
GEOIP = REPO / "tests" / "data" / "geo" / "GeoIP2-City-Test.mmdb"


def udp_sockets_on(port: int) -> int:
    with open("/proc/net/udp") as table:
        return sum(1 for line in list(table)[1:] if int(line.split()[1].split(":")[1], 16) == port)


def soa_serial(port: int, zone: str, timeout: float = 1.0) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(dns.message.make_query(zone, "SOA").to_wire(), ("127.0.0.1", port))
        try:
            reply = dns.message.from_wire(sock.recvfrom(4096)[0])
        except TimeoutError:
            return None
    return reply.answer[0][0].serial if reply.answer else None


class Prober(threading.Thread):
    """A query every 10 ms from a fresh socket: (monotonic time sent, seconds or None if lost)."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.port, self.wire = port, dns.message.make_query(name, "A").to_wire()
        self.samples: list[tuple[float, float | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                started = time.monotonic()
                sock.sendto(self.wire, ("127.0.0.1", self.port))
                try:
                    sock.recvfrom(4096)
                    self.samples.append((started, time.monotonic() - started))
                except TimeoutError:
                    self.samples.append((started, None))
            self.stopping.wait(0.01)


def query_file(path: Path) -> Path:
    lines = [f"host{i}.scale{z}.example. A" for z in range(scale.ZONE_FILES) for i in range(0, 10_000, 10)]
    lines += [f"gslb{i}.scale{z}.example. A" for z in range(scale.ZONE_FILES) for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    return path


def bump_serial(zone_file: Path) -> int:
    text = zone_file.read_text()
    serial = int(re.search(r"serial: (\d+)", text).group(1)) + 1  # type: ignore[union-attr]
    temporary = zone_file.with_suffix(".tmp")
    temporary.write_text(re.sub(r"serial: \d+", f"serial: {serial}", text, count=1))
    temporary.rename(zone_file)
    return serial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="dnsperf -l (default 60)")
    parser.add_argument("--rate", type=int, default=10_000, help="dnsperf -Q: queries per second (default 10000)")
    parser.add_argument("--source", type=Path, default=REPO, help="the checkout whose gslb runs (default this one)")
    parser.add_argument("--out", type=Path, help="append the markdown section to this file")
    a = parser.parse_args()
    if shutil.which("dnsperf") is None:
        print("bench: dnsperf is missing: apt-get install dnsperf", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gslb-reload-bench-"))
    zones = work / "zones"
    shutil.copytree(scale.scale_zones(BENCH / "zones" / "bench.example.yaml"), zones)
    queries = query_file(work / "queries.txt")
    port, api_port = free_port(), free_port()
    load = os.getloadavg()
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--geoip", str(GEOIP),
               "--listen", f"127.0.0.1:{port}", "--api", f"127.0.0.1:{api_port}", "--workers", "2", "--log-level", "info"]
    stderr_path = work / "gslb.stderr"
    with open(work / "gslb.stdout", "wb") as out, open(stderr_path, "wb") as err:
        server = subprocess.Popen(command, cwd=a.source, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        started = time.monotonic()
        while udp_sockets_on(port) < 2 or soa_serial(port, "scale0.example.") is None:  # every process bound
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit(f"bench: gslb did not start: {stderr_path.read_text()[-2000:]}")
            time.sleep(0.2)
        print(f"bench: serving 100,000 records with 2 processes after {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        rss_before = sum(rss_mb(pid) for pid in process_tree(server.pid))
        perf = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(a.seconds),
                                 "-Q", str(a.rate), "-c", "4", "-q", "200", "-t", "1", "-S", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        prober = Prober(port, "host1.scale1.example.")
        prober.start()
        time.sleep(a.seconds / 5)
        serial = bump_serial(zones / "scale0.example.yaml")
        hup = time.monotonic()
        server.send_signal(signal.SIGHUP)
        while not all(soa_serial(port, "scale0.example.") == serial for _ in range(30)):
            if time.monotonic() - hup > max(a.seconds, 300):
                raise SystemExit("bench: the new serial did not reach every process in 300 s:\n"
                                 + "\n".join(stderr_path.read_text(errors="replace").splitlines()[-20:]))
            time.sleep(0.05)
        done = time.monotonic()
        print(f"bench: every process serves serial {serial} {done - hup:.1f} s after SIGHUP", file=sys.stderr)
        output, _ = perf.communicate()
        prober.stopping.set()
        prober.join()
        rss_after = sum(rss_mb(pid) for pid in process_tree(server.pid))
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/status", timeout=10) as response:
            status = json.load(response)["config"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    stderr = stderr_path.read_text(errors="replace")
    shutil.rmtree(work, ignore_errors=True)

    def figure(pattern: str) -> str:
        match = re.search(pattern, output)
        return match.group(1) if match else "?"

    window = [seconds for sent, seconds in prober.samples if hup <= sent <= done]
    answered = sorted(s for s in window if s is not None)
    p99 = answered[int(len(answered) * 0.99) - 1] if answered else float("nan")
    # dnsperf -S 1 prints "<epoch>.<frac>: <qps>" lines; its clock is wall time
    wall_offset = time.time() - time.monotonic()
    per_second = [(float(t) - wall_offset, float(q)) for t, q in re.findall(r"^(\d+\.\d+): ([\d.]+)$", output, re.M)]
    during = [q for t, q in per_second if hup <= t <= done + 1]
    workers = re.findall(r"worker-(\d) gslb\.workers: generation (\d+) serving \(built in (\d+) ms\)", stderr)
    reload_ms = (status.get("last_reload") or {}).get("duration_ms")
    sent, completed, lost = (figure(rf"Queries {what}:\s+(\d+)") for what in ("sent", "completed", "lost"))
    max_latency = figure(r"Average Latency \(s\):.*max ([\d.]+)\)")
    max_latency_ms = f"{float(max_latency) * 1000:.0f} ms" if max_latency != "?" else "?"
    lines = [
        "## Reload under load (`--workers 2`, 100,000 records)",
        "",
        f"`python bench/reload_under_load.py --seconds {a.seconds} --rate {a.rate}`"
        + (f" (`--source {a.source}`)" if a.source != REPO else "")
        + f": bench/scale.py's directory (100,000 static + 1,000 GSLB records), `gslb serve --workers 2`, "
        f"dnsperf at {a.rate:,} QPS (`-c 4 -q 200 -t 1 -S 1`) and a probe every 10 ms from a fresh socket "
        f"(1 s timeout); SIGHUP after {a.seconds / 5:.0f} s with one zone's serial bumped; the reload window ends "
        "when 30 fresh sockets in a row see the new serial. Nothing pinned. Load average at the start "
        f"{load[0]:.1f} (other work on the machine: the figures are noisy).",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| dnsperf queries sent / completed / lost | {sent} / {completed} / {lost} |",
        f"| dnsperf max latency (whole run) | {max_latency_ms} |",
        f"| lowest dnsperf QPS in a second of the reload window | {min(during):,.0f} |" if during else
        "| lowest dnsperf QPS in the reload window | ? |",
        f"| reload window (SIGHUP to every process serving it) | {done - hup:.1f} s |",
        f"| main process: reload duration (/status) | {reload_ms} ms |",
        "| workers: build + swap (their log) | "
        + (", ".join(f"worker-{w} {ms} ms" for w, gen, ms in workers) or "no log line (an older gslb)") + " |",
        f"| probes in the window / lost / max / p99 latency | {len(window)} / {window.count(None)} / "
        f"{max(answered) * 1000 if answered else float('nan'):.0f} ms / {p99 * 1000:.0f} ms |",
        f"| RSS of the 2 processes before / after | {rss_before:.0f} / {rss_after:.0f} MB |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(output[-1500:], file=sys.stderr)
    if a.out is not None:
        with a.out.open("a") as out:
            out.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
