"""How cost grows with the work: a large zone directory (--load-scale), and 1,000,000 distinct ECS
subnets against 10,000 (--ecs-million)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import queries
import servers

STATIC_RECORDS, GSLB_RECORDS, ZONE_FILES = 100_000, 1_000, 10
MILLION = 1_000_000


# --- --load-scale --------------------------------------------------------------------------------

def scale_zones(bench_zone: Path) -> Path:
    """A cached directory of ZONE_FILES zones holding STATIC_RECORDS A records and GSLB_RECORDS
    weighted GSLB records in all, with the bench zone's regions."""
    directory = queries.cache_dir() / f"zones-{STATIC_RECORDS}-{GSLB_RECORDS}-{ZONE_FILES}"
    if directory.is_dir():
        return directory
    partial = directory.with_suffix(".part")
    partial.mkdir(exist_ok=True)
    header = bench_zone.read_text().split("\nrecords:")[0]  # SOA, NS, regions
    regions = servers.load_zone(bench_zone)["regions"]
    for z in range(ZONE_FILES):
        origin = f"scale{z}.example."
        lines = [header.replace("bench.example.", origin), "", "records:", "  ns1: {type: A, value: 192.0.2.53}"]
        for i in range(STATIC_RECORDS // ZONE_FILES):
            n = z * STATIC_RECORDS // ZONE_FILES + i
            lines.append(f"  host{i}: {{type: A, value: 10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}}}")
        for i in range(GSLB_RECORDS // ZONE_FILES):
            lines += [f"  gslb{i}:", "    type: A", "    policy: weighted", "    answers: 1", "    pools:"]
            for r, region in enumerate(regions):
                lines.append(f"      {region}: [{{value: 198.18.{r}.{i % 250 + 1}, weight: 3}}, "
                             f"{{value: 198.19.{r}.{i % 250 + 1}, weight: 1}}]")
        (partial / f"{origin}yaml").write_text("\n".join(lines) + "\n")
    partial.rename(directory)
    return directory


def timed(command: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS in MB (from wait4's rusage), exit status and output of a command."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - started, usage.ru_maxrss / 1024, process.returncode, output.strip()


def load_scale(geoip: Path, bench_zones: Path, cpus: str) -> str:
    started = time.monotonic()
    big = scale_zones(bench_zones / "bench.example.yaml")
    print(f"bench: zones in {big} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    rows = []
    measured = {}
    for label, zones in (("bench zone (1 static, 1 GSLB)", bench_zones),
                         (f"{STATIC_RECORDS:,} static + {GSLB_RECORDS:,} GSLB in {ZONE_FILES} zones", big)):
        command = [sys.executable, "-m", "gslb", "check", "--zones", str(zones), "--geoip", str(geoip)]
        seconds, peak, status, output = timed(command)
        if status != 0:
            raise SystemExit(f"bench: `gslb check` failed on {zones} ({status}): {output[-2000:]}")
        serve_seconds, serve_rss = _serve_startup(zones, geoip, cpus)
        measured[zones] = (seconds, peak, serve_seconds, serve_rss)
        rows.append(f"| {label} | {seconds:.2f} | {peak:.0f} | {serve_seconds:.2f} | {serve_rss:.0f} |")
    (base_check, base_peak, base_serve, base_rss), (check, peak, serve, rss) = measured.values()
    return "\n".join([
        "## Load scale",
        "",
        "`gslb check` and `gslb serve` (until it prints that it listens) on the bench zone, then on a generated",
        f"directory ({big}). Peak RSS of `check` from wait4's rusage; the RSS of `serve` is VmRSS once listening.",
        "",
        "| zones | check s | check peak RSS MB | serve start s | serve RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Added by the large zones: check {check - base_check:.2f} s and {peak - base_peak:.0f} MB; "
        f"serve start {serve - base_serve:.2f} s and {rss - base_rss:.0f} MB.",
        "",
        "Reload time: not measured; gslb has no reload trigger yet (TODO when `serve` reloads on SIGHUP or an admin call).",
        "",
    ])


def _serve_startup(zones: Path, geoip: Path, cpus: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="gslb-bench-") as workdir:
        started = time.monotonic()
        server = servers.gslb(Path(workdir), cpus, zones, geoip, timeout=900)
        try:
            return time.monotonic() - started, server.rss_mb()
        finally:
            server.stop()


# --- --ecs-million -------------------------------------------------------------------------------

def ecs_million(bench, name: str, zone_file: Path) -> str:  # type: ignore[no-untyped-def]
    """gslb on case 3 with 10,000 and with 1,000,000 distinct client subnets, interleaved."""
    a = bench.args
    files = {}
    for count in (a.subnets, MILLION):
        started = time.monotonic()
        files[count] = queries.ecs_query_file(name, a.geoip, zone_file, count)
        print(f"bench: {count:,} ECS queries in {files[count][0]} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    server = bench.start("gslb", lambda: servers.gslb(bench.workdir, a.server_cpus, zone_file.parent, a.geoip))
    if server is None:
        raise SystemExit("bench: gslb did not start")
    bench.check_answers(["gslb"], files[MILLION][1]["examples"], [3])  # its gslb serves bench/zones only
    runs = {count: [] for count in files}
    for round_ in range(1, a.rounds + 1):
        for count, (path, _) in files.items():
            run = bench.dnsperf(server, path, True, 3, round_)
            runs[count].append(run)
            print(f"bench: round {round_} {count:,} subnets: {run.qps:,.0f} QPS, lost {run.lost}", file=sys.stderr)
    rss = server.rss_mb()
    base = statistics.median(r.qps for r in runs[a.subnets])
    rows = [f"| {count:,} | {', '.join(f'{r} {n:,}' for r, n in summary['regions'].items())} | "
            f"{statistics.median(r.qps for r in runs[count]):,.0f} | "
            f"{statistics.median(r.qps for r in runs[count]) / base:.2f} | "
            f"{statistics.median(r.avg_ms for r in runs[count]):.2f} | {sum(r.lost for r in runs[count])} | "
            f"{statistics.median(r.cpu_us for r in runs[count]):.1f} |"
            for count, (_, summary) in files.items()]
    return "\n".join([
        "## Case 3 with 1,000,000 distinct ECS subnets",
        "",
        f"{a.rounds} round(s) of {a.seconds} s, interleaved; gslb pinned to CPU {a.server_cpus}, dnsperf to "
        f"{a.client_cpus}; GeoIP file {a.geoip}. gslb's RSS after the runs: {rss:.0f} MB.",
        "",
        "| distinct subnets | by region | QPS (median) | ratio to the first row | avg latency ms | lost | CPU us/query |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        *[f"- {note}" for note in bench.notes],
    ]) + "\n"
