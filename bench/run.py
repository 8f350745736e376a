"""gslb side by side with NSD (and gdnsd, and dnslib's own server), measured with dnsperf.

    python bench/run.py [--rounds 3] [--seconds 10] [--cases 1,2,...,9] [--out bench/last-run.md]
    python bench/run.py --load-scale      # 100,000 static + 1,000 GSLB records: load time and memory
    python bench/run.py --ecs-million     # case 3 with 1,000,000 distinct ECS subnets vs 10,000
    python bench/run.py --per-datagram    # also gslb on its per-datagram UDP path (gslb-pd), every case gslb runs
    python bench/run.py --rate 40000      # every run at a fixed 40,000 QPS: CPU per query, p50/p99 latency

Installs nothing. See bench/README.md for what each case asks and how to read the table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    import dns.message  # noqa: F401 - dnspython, from gslb's test extra
    import dns.rdatatype

    import gslb  # noqa: F401
except ImportError as missing:
    raise SystemExit(f"bench: {missing.name} is missing; from the repository: pip install -e '.[test]'") from None

import queries
import scale
import servers
from servers import NotAvailable, Server

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ZONES = BENCH / "zones"
ZONE_FILE = ZONES / "bench.example.yaml"
TEST_GEOIP = REPO / "tests" / "data" / "geo" / "GeoIP2-City-Test.mmdb"

STATIC, GSLB_NAME, NX = "static.bench.example.", "www.bench.example.", "nx.bench.example."
WILD_NAME, CNAME_POOL = "a.wild.bench.example.", "cdn.bench.example."  # "*.wild" and "cdn" in the zone
# The signed copy of the bench zone, written with its key into the run's temporary directory.
SIGNED_ORIGIN = "bench-signed.example."
STATIC_SIGNED, GSLB_SIGNED = f"static.{SIGNED_ORIGIN}", f"www.{SIGNED_ORIGIN}"


@dataclass(frozen=True)
class Case:
    """One row group of the table: a query, the servers that answer it, and what a right answer
    is. Adding a case is one entry in CASES (and, for a new kind of server, one in SERVER_KINDS)."""

    label: str  # "{subnets}" is replaced by the number of ECS subnets
    servers: tuple[str, ...]  # SERVER_KINDS names that run it
    qname: str
    rtype: str = "A"
    ecs: bool = False  # one distinct ECS client subnet per query (a dnsperf -B file), else one text line
    dnsperf: tuple[str, ...] = ()  # extra dnsperf options, e.g. ("-D",) to set DO
    reference: int | None = 1  # NSD's case the ratios compare with (NSD runs it); None: reported, not compared
    rcode: int = 0  # what the check before the runs expects
    addresses: frozenset[str] | None = None  # ... the answer's addresses, when fixed
    pools: str | None = None  # ... or the zone record whose region pool answers (checked per ECS region)
    answer: str = "A"  # ... the answer's type: A (addresses) or CNAME (exactly one, to a pool's name)
    do: bool = False  # DNSSEC OK on every query (dnsperf -D, or the bit set in the -B file); checked: an RRSIG
    compare: int | None = None  # gslb's case it is reported beside (same server, same round), run with it


# The ratio columns compare with NSD in the same round: the case's `reference` (NSD has no GSLB
# records, so GSLB cases compare with NSD's static A).
CASES: dict[int, Case] = {
    1: Case("static A", ("gslb", "nsd"), STATIC, addresses=frozenset({"192.0.2.10"})),
    2: Case("GSLB A, no ECS", ("gslb",), GSLB_NAME, pools="www"),
    3: Case("GSLB A, ECS, {subnets} subnets", ("gslb", "gdnsd"), GSLB_NAME, ecs=True, pools="www"),
    4: Case("NXDOMAIN", ("gslb", "nsd"), NX, reference=4, rcode=3),
    5: Case("case 3, gslb --workers 1 and 2", ("gslb-workers1", "gslb-workers2"), GSLB_NAME, ecs=True,
            reference=None, pools="www"),
    6: Case("wildcard hit (static *.wild)", ("gslb", "nsd"), WILD_NAME, reference=6,
            addresses=frozenset({"192.0.2.20"}), compare=1),
    7: Case("CNAME pool, ECS, {subnets} subnets", ("gslb",), CNAME_POOL, ecs=True, pools="cdn", answer="CNAME",
            compare=3),
    8: Case("static A, DO, signed zone", ("gslb",), STATIC_SIGNED, do=True, addresses=frozenset({"192.0.2.10"}),
            compare=1),
    9: Case("GSLB A, ECS, {subnets} subnets, DO, signed zone", ("gslb",), GSLB_SIGNED, ecs=True, do=True,
            pools="www", compare=3),
}
CASE_NUMBERS = ",".join(map(str, CASES))


def _gslb(**options: Any) -> Callable[[Bench], Server]:
    def start(bench: Bench) -> Server:
        a = bench.args
        return servers.gslb(bench.workdir, a.server_cpus, bench.zones(), a.geoip, **options)
    return start


def signed_zones(workdir: Path) -> Path:
    """A zones directory for gslb: the bench zone as it is, and a copy of it at SIGNED_ORIGIN with
    `dnssec: {keys: ...}` and a fresh key (one CSK, `gslb dnssec keygen`), both in `workdir`."""
    zones = workdir / "zones"
    zones.mkdir()
    shutil.copy(ZONE_FILE, zones / ZONE_FILE.name)
    doc = servers.load_zone(ZONE_FILE)
    doc["origin"] = SIGNED_ORIGIN
    doc["dnssec"] = {"keys": f"keys/{SIGNED_ORIGIN.rstrip('.')}"}
    (zones / f"{SIGNED_ORIGIN.rstrip('.')}.yaml").write_text(
        "# bench/run.py: a signed copy of bench/zones/bench.example.yaml\n" + yaml.safe_dump(doc, sort_keys=False))
    keygen = subprocess.run([sys.executable, "-m", "gslb", "dnssec", "keygen", "--zones", str(zones),
                             SIGNED_ORIGIN.rstrip(".")], capture_output=True, text=True, cwd=REPO)
    if keygen.returncode != 0:
        raise SystemExit(f"bench: gslb dnssec keygen failed: {(keygen.stderr or keygen.stdout).strip()}")
    return zones


def _gdnsd(bench: Bench) -> Server:
    if shutil.which("gdnsd") is None:
        raise NotAvailable(f"not installed ({INSTALL['gdnsd']})")
    return servers.gdnsd(bench.workdir, bench.args.server_cpus, ZONE_FILE, bench.args.geoip)


# Every server a case can name, in the order the table lists them: how to start it.
SERVER_KINDS: dict[str, Callable[[Bench], Server]] = {
    "gslb": _gslb(),
    "gslb-pd": _gslb(udp_io="per-datagram"),
    "gslb-workers1": _gslb(workers=1),
    "gslb-workers2": _gslb(workers=2),
    "nsd": lambda bench: servers.nsd(bench.workdir, bench.args.server_cpus, ZONE_FILE),
    "gdnsd": _gdnsd,
}
INSTALL = {
    "dnsperf": "apt-get install dnsperf",
    "nsd": "apt-get install nsd",
    "taskset": "apt-get install util-linux",
    "gdnsd": "apt-get install gdnsd   (optional: the reference for case 3)",
}


@dataclass
class Run:
    case: int
    server: str
    round: int
    sent: int
    completed: int
    lost: int
    qps: float
    avg_ms: float
    max_ms: float
    cpu_us: float  # server CPU time (user + system, all its processes) per completed query
    other: float  # share of the server's CPUs busy with anything but the server (other processes, softirq)
    rcodes: str
    command: str
    p50_ms: float = float("nan")  # from dnsperf -v's per-query latencies (--rate only)
    p99_ms: float = float("nan")
    by_process: dict[str, float] = field(default_factory=dict)  # "main"/"pid N" -> CPU us per query
    response_bytes: float = float("nan")  # dnsperf's average response size (shows the RRSIGs of a DO case)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.servers: dict[str, Server] = {}
        self.unavailable: dict[str, str] = {}
        self.notes: list[str] = []
        self.commands: dict[str, str] = {}
        self.load_at_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        self._zones: Path | None = None

    def zones(self) -> Path:
        """gslb's zones directory: the bench zone and its signed copy, made once per run, so every
        gslb row serves the same zones whichever cases run."""
        if self._zones is None:
            self._zones = signed_zones(self.workdir)
            self.commands["keys"] = (f"python -m gslb dnssec keygen --zones ZONES {SIGNED_ORIGIN.rstrip('.')} "
                                     "(ZONES: the bench zone and its signed copy, in the run's temporary directory)")
        return self._zones

    # --- dnsperf ----------------------------------------------------------------------------------

    def dnsperf(self, server: Server, datafile: Path, binary: bool, case: int, round_: int,
                extra: tuple[str, ...] = ()) -> Run:
        a = self.args
        command = ["taskset", "-c", a.client_cpus, "dnsperf", "-s", "127.0.0.1", "-p", str(server.port),
                   "-d", str(datafile), "-l", str(a.seconds), "-c", str(a.clients), "-q", str(a.outstanding),
                   "-t", "2"] + (["-B"] if binary else []) + list(extra)
        if a.rate:
            # -v prints one line per answer with its latency: dnsperf 2.10 has no percentiles or
            # histogram of its own, only the average and standard deviation.
            command += ["-Q", str(a.rate), "-v"]
        cpus = servers.cpu_list(a.server_cpus)
        before, (busy_before, total_before) = server.cpu_seconds(), servers.busy_seconds(cpus)
        processes_before = servers.cpu_by_process(server.pid)
        output = subprocess.run(command, capture_output=True, text=True)
        cpu = server.cpu_seconds() - before
        processes = servers.cpu_by_process(server.pid)
        busy, total = servers.busy_seconds(cpus)
        other = max(0.0, (busy - busy_before - cpu) / max(total - total_before, 1e-9))
        if output.returncode != 0:
            raise SystemExit(f"bench: dnsperf failed ({output.returncode}): {output.stderr.strip() or output.stdout}")
        text = output.stdout

        def number(pattern: str) -> float:
            match = re.search(pattern, text)
            if match is None:
                raise SystemExit(f"bench: cannot read {pattern!r} in dnsperf's output:\n{text[-4000:]}")
            return float(match.group(1))

        completed = int(number(r"Queries completed:\s+(\d+)"))
        latency = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min [\d.]+, max ([\d.]+)\)", text)
        rcodes = re.search(r"Response codes:\s+(.*)", text)
        size = re.search(r"Average packet size:\s+request \d+, response (\d+)", text)
        p50 = p99 = float("nan")
        if a.rate:
            # `-v` prints "> RCODE NAME TYPE LATENCY" per answer; a timed-out query has no latency.
            latencies = sorted(float(last) for line in text.splitlines() if line.startswith("> ")
                               for last in [line.rsplit(None, 1)[-1]] if re.fullmatch(r"[\d.]+", last))
            if latencies:
                p50 = latencies[len(latencies) // 2] * 1000
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        by_process = {}
        if completed and len(processes) > 1:
            for pid, seconds in processes.items():
                spent = seconds - processes_before.get(pid, 0.0)
                if spent > 0:
                    by_process["main" if pid == server.pid else f"pid {pid}"] = spent / completed * 1e6
        self.commands[f"dnsperf, case {case}"] = shlex.join(command).replace(str(server.port), "PORT")
        return Run(case=case, server=server.name, round=round_, sent=int(number(r"Queries sent:\s+(\d+)")),
                   completed=completed, lost=int(number(r"Queries lost:\s+(\d+)")),
                   qps=number(r"Queries per second:\s+([\d.]+)"),
                   avg_ms=float(latency.group(1)) * 1000 if latency else float("nan"),
                   max_ms=float(latency.group(2)) * 1000 if latency else float("nan"),
                   cpu_us=cpu / completed * 1e6 if completed else float("nan"), other=other,
                   rcodes=rcodes.group(1).strip() if rcodes else "", command=shlex.join(command),
                   p50_ms=p50, p99_ms=p99, by_process=by_process,
                   response_bytes=float(size.group(1)) if size else float("nan"))

    # --- servers ----------------------------------------------------------------------------------

    def start(self, name: str, make) -> Server | None:  # type: ignore[no-untyped-def]
        try:
            server = make()
        except NotAvailable as error:
            self.unavailable[name] = str(error)
            print(f"bench: {name}: not available: {error}", file=sys.stderr)
            return None
        self.servers[name] = server
        env = "".join(f"{key}={shlex.quote(value)} " for key, value in (server.env or {}).items())
        self.commands[f"server {name}"] = env + shlex.join(server.command).replace(str(server.port), "PORT")
        print(f"bench: {name} answering on 127.0.0.1:{server.port} (pid {server.pid})", file=sys.stderr)
        return server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()

    def check_answers(self, names: list[str], ecs_examples: dict[str, str], cases: list[int] | None = None) -> None:
        """Before measuring: each server gives the answer each of its cases is about (in `cases`,
        default all), so no case measures a fast error. An ECS case is checked with one subnet of
        each region; every server answers NXDOMAIN for the NXDOMAIN case's name."""
        records = servers.load_zone(ZONE_FILE)["records"]
        problems = []
        for name in names:
            server = self.servers[name]
            checks = [CASES[4]]
            for number in cases or list(CASES):
                case = CASES[number]
                if name in case.servers or (name == "gslb-pd" and "gslb" in case.servers) or (
                        name == "dnslib" and number == 1):
                    checks.append(case)
            for case in checks:
                subnets = list(ecs_examples.items()) if case.ecs else [(None, None)]
                for region, subnet in subnets:
                    expected = case.addresses
                    if case.pools is not None and region is not None:
                        expected = {e["value"] if isinstance(e, dict) else e for e in records[case.pools]["pools"][region]}
                    reply = server.query(case.qname, case.rtype, subnet=subnet, do=case.do)
                    types = [dns.rdatatype.to_text(rrset.rdtype) for rrset in reply.answer]
                    if case.answer == "CNAME":
                        got = {item.target.to_text() for rrset in reply.answer for item in rrset
                               if rrset.rdtype == dns.rdatatype.CNAME}
                        wrong = types.count("CNAME") != 1 or len(got) != 1 or sum(
                            len(rrset) for rrset in reply.answer if rrset.rdtype == dns.rdatatype.CNAME) != 1
                    else:
                        got = {item.address for rrset in reply.answer for item in rrset if hasattr(item, "address")}
                        wrong = case.rcode == 0 and not got
                    if case.do and case.rcode == 0 and "RRSIG" not in types:
                        wrong = True
                    if reply.rcode() != case.rcode or (expected is not None and not got <= expected) or wrong:
                        problems.append(f"{name}: {case.qname} {subnet or ''}{' DO' if case.do else ''} gave rcode "
                                        f"{reply.rcode()} {sorted(got)} in {' '.join(types) or 'no answer'}")
        for problem in dict.fromkeys(problems):
            print(f"bench: WRONG ANSWER: {problem}", file=sys.stderr)
            self.notes.append(f"Wrong answer before the runs: {problem}")

    # --- the main benchmark -----------------------------------------------------------------------

    def query_file(self, number: int, ecs_file: Path | None) -> tuple[Path, bool]:
        case = CASES[number]
        if case.ecs:
            assert ecs_file is not None
            if case.qname == GSLB_NAME and case.rtype == "A" and not case.do:
                return ecs_file, True
            # Another name: the same subnets, the question renamed (it follows the 12-byte header);
            # DO is a bit in each message's OPT record (dnsperf -D does not change -B messages).
            return queries.renamed_query_file(ecs_file, GSLB_NAME, case.qname, case.rtype,
                                              self.workdir / f"ecs-case{number}.bin", do=case.do), True
        return queries.write_text_query(self.workdir / f"case{number}.txt", case.qname, case.rtype), False

    def run(self) -> str:
        a = self.args
        # A case reported beside another of gslb's (signed beside unsigned, ...) brings gslb's run of
        # that one along, so the ratio is always from the same rounds.
        beside = {CASES[number].compare for number in a.cases} - set(a.cases) - {None}
        cases = sorted({*a.cases, *beside})  # type: ignore[arg-type]
        ecs_file: Path | None = None
        ecs_summary: dict = {"regions": {}, "examples": {}}
        if any(CASES[number].ecs for number in cases):
            started = time.monotonic()
            ecs_file, ecs_summary = queries.ecs_query_file(GSLB_NAME, a.geoip, ZONE_FILE, a.subnets)
            print(f"bench: {a.subnets} ECS queries in {ecs_file} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
        references = {CASES[number].reference for number in cases} - {None}
        files = {number: self.query_file(number, ecs_file) for number in {*cases, *references} if number is not None}

        wanted = ["gslb", "nsd", *(name for number in a.cases for name in CASES[number].servers)]
        if a.per_datagram:
            wanted.append("gslb-pd")
        for name in SERVER_KINDS:  # in the table's order
            if name in wanted:
                self.start(name, lambda name=name: SERVER_KINDS[name](self))
        for name, server in self.servers.items():
            if name.startswith("gslb"):
                self.notes.append(f"{name}: {server.udp_line()}")
        if "gslb" not in self.servers or "nsd" not in self.servers:
            raise SystemExit("bench: gslb and NSD must both start; see the messages above")
        self.check_answers(list(self.servers), ecs_summary["examples"], cases)

        runs: list[Run] = []
        for round_ in range(1, a.rounds + 1):
            plan = [(number, name) for number in cases
                    for name in (("gslb",) if number in beside else CASES[number].servers)]
            if a.per_datagram:  # right after gslb's run of the same case: the closest comparison
                plan = [step for number, name in plan
                        for step in ([(number, name), (number, "gslb-pd")] if name == "gslb" else [(number, name)])]
            for reference in sorted((r for r in references if r is not None), reverse=True):
                if (reference, "nsd") not in plan:
                    plan.insert(0, (reference, "nsd"))  # the reference for the ratios
            for number, name in plan:
                server = self.servers.get(name)
                if server is None:
                    continue
                datafile, binary = files[number]
                extra = CASES[number].dnsperf + (("-D",) if CASES[number].do and not binary else ())
                run = self.dnsperf(server, datafile, binary, number, round_, extra)
                runs.append(run)
                print(f"bench: round {round_} case {number} {name}: {run.qps:,.0f} QPS, lost {run.lost}, "
                      f"{run.cpu_us:.1f} us/query, server CPU busy elsewhere {run.other:.0%}", file=sys.stderr)
        rss = {name: server.rss_mb() for name, server in self.servers.items()}

        if 1 in cases and not a.no_dnslib:  # once, after the rounds: its own row, compared with round 1
            server = self.start("dnslib", lambda: servers.dnslib_server(self.workdir, a.server_cpus))
            if server is not None:
                self.check_answers(["dnslib"], {}, [1])
                run = self.dnsperf(server, files[1][0], False, 1, 1)
                runs.append(run)
                rss["dnslib"] = server.rss_mb()
                print(f"bench: case 1 dnslib: {run.qps:,.0f} QPS", file=sys.stderr)
                server.stop()
        return self.report(cases, runs, rss, ecs_summary)

    # --- the table --------------------------------------------------------------------------------

    def report(self, cases: list[int], runs: list[Run], rss: dict[str, float], ecs_summary: dict) -> str:
        a = self.args
        nsd = {(r.case, r.round): r for r in runs if r.server == "nsd"}
        rows = ["| case | server | QPS (median) | QPS ratio to NSD | CPU us/query | CPU ratio to NSD | avg latency ms | "
                "p50 ms | p99 ms | max latency ms | lost | RSS MB |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        order = [*SERVER_KINDS, "dnslib"]
        split: list[str] = []
        for number in sorted({r.case for r in runs}):
            case = CASES[number]
            label = case.label.format(subnets=f"{a.subnets:,}")
            for name in sorted({r.server for r in runs if r.case == number}, key=order.index):
                mine = [r for r in runs if r.case == number and r.server == name]
                reference = case.reference
                qps_ratios = [r.qps / nsd[(reference, r.round)].qps for r in mine if (reference, r.round) in nsd]
                cpu_ratios = [r.cpu_us / nsd[(reference, r.round)].cpu_us for r in mine if (reference, r.round) in nsd]
                rows.append(
                    f"| {number}. {label} | {name} | {statistics.median(r.qps for r in mine):,.0f} | "
                    f"{_ratio(qps_ratios, reference)} | "
                    f"{statistics.median(r.cpu_us for r in mine):.1f} | {_ratio(cpu_ratios, reference)} | "
                    f"{statistics.median(r.avg_ms for r in mine):.2f} | {_ms(statistics.median(r.p50_ms for r in mine))} | "
                    f"{_ms(statistics.median(r.p99_ms for r in mine))} | {max(r.max_ms for r in mine):.1f} | "
                    f"{sum(r.lost for r in mine)} | {rss.get(name, float('nan')):.0f} |")
                processes = sorted({p for r in mine for p in r.by_process}, key=lambda p: (p != "main", p))
                if processes:
                    split.append(f"case {number} {name}: " + ", ".join(
                        f"{p} {statistics.median(r.by_process.get(p, 0.0) for r in mine):.1f}" for p in processes))
        for number in sorted(a.cases):
            for name in CASES[number].servers:
                if name in self.unavailable:
                    rows.append(f"| {number}. {CASES[number].label.format(subnets=f'{a.subnets:,}')} | {name} | "
                                f"not available: {self.unavailable[name]} | | | | | | | | | |")
        table = "\n".join(rows)
        beside = self.beside(runs)
        elsewhere = statistics.median(r.other for r in runs)
        if elsewhere > 0.15:
            self.notes.append(
                f"The servers' CPU was busy with something else {elsewhere:.0%} of the time (median over the runs; "
                f"load average at the start: {self.load_at_start}): other processes shared the machine, so QPS is "
                "understated and noisy. CPU us/query is the steadier figure; rerun on a quiet machine to compare QPS.")
        if split:
            self.notes.append(
                "CPU us/query by process (median over the rounds; main answers DNS as worker 0, each other pid "
                f"is a worker or a helper process; all pinned to CPU {a.server_cpus}): " + "; ".join(split) + ".")
        mode = (f"dnsperf at a fixed {a.rate:,} QPS (-Q), p50/p99 from its per-query latencies (-v)" if a.rate else
                "dnsperf at saturation (no -Q); p50/p99 only with --rate")
        lines = [
            "## dnsperf: gslb beside NSD",
            "",
            f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {a.rounds} round(s) of {a.seconds} s per "
            f"case, interleaved; servers pinned to CPU {a.server_cpus}, dnsperf to CPU {a.client_cpus}; {mode}. "
            "QPS, latency and CPU are medians over the rounds, lost is the sum, max latency the maximum; "
            "the ratios are to NSD in the same round (NXDOMAIN: NSD's NXDOMAIN; wildcard hit: NSD's wildcard hit; other cases: NSD's static A); "
            "dnslib ran once, after the rounds; n/c: reported, not compared.",
            "",
            table,
            "",
            *beside,
            f"ECS subnets: {sum(ecs_summary['regions'].values()):,} distinct, by region: "
            + ", ".join(f"{region} {count:,}" for region, count in ecs_summary["regions"].items())
            + f"; GeoIP file {a.geoip}." if ecs_summary["regions"] else f"GeoIP file {a.geoip}.",
            "",
            *[f"- {note}" for note in self.notes],
            "" if self.notes else "",
            "Per run:",
            "",
            "| round | case | server | sent | completed | lost | QPS | avg ms | p50 ms | p99 ms | max ms | CPU us/query | "
            "server CPU busy elsewhere | response codes | response bytes |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
            *[f"| {r.round} | {r.case} | {r.server} | {r.sent} | {r.completed} | {r.lost} | {r.qps:,.0f} | "
              f"{r.avg_ms:.2f} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {r.max_ms:.1f} | {r.cpu_us:.1f} | {r.other:.0%} | "
              f"{r.rcodes} | {r.response_bytes:.0f} |" for r in runs],
        ]
        return "\n".join(lines) + "\n"


    def beside(self, runs: list[Run]) -> list[str]:
        """The table of cases reported beside another of gslb's (a `compare` case): the ratios of
        each to the other, the same server in the same round."""
        a = self.args
        own = {(r.case, r.server, r.round): r for r in runs}
        order = [*SERVER_KINDS, "dnslib"]
        rows = []
        for number in sorted({r.case for r in runs}):
            base = CASES[number].compare
            if base is None:
                continue
            for name in sorted({r.server for r in runs if r.case == number}, key=order.index):
                pairs = [(r, own[(base, name, r.round)]) for r in runs
                         if r.case == number and r.server == name and (base, name, r.round) in own]
                if not pairs:
                    continue
                rows.append(
                    f"| {number}. {CASES[number].label.format(subnets=f'{a.subnets:,}')} | {name} | "
                    f"{base}. {CASES[base].label.format(subnets=f'{a.subnets:,}')} | "
                    f"{statistics.median(r.qps / b.qps for r, b in pairs):.2f} | "
                    f"{statistics.median(r.cpu_us / b.cpu_us for r, b in pairs):.2f} |")
        if not rows:
            return []
        return ["Cases beside another case (signed beside unsigned, wildcard beside exact, CNAME pool beside A "
                "pool): the median over the rounds of this case's figure / the other case's, same server, same round; "
                "at a fixed --rate the QPS ratio is ~1 and the CPU ratio is the cost:", "",
                "| case | server | beside | QPS ratio | CPU us/query ratio |", "| --- | --- | --- | ---: | ---: |",
                *rows, ""]


def _ratio(values: list[float], reference: int | None) -> str:
    return "n/c" if reference is None else f"{statistics.median(values):.2f}" if values else "-"


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # NaN: not measured


# --- the environment -----------------------------------------------------------------------------

def check_tools(required: list[str], optional: list[str]) -> None:
    missing = [tool for tool in required if shutil.which(tool) is None]
    for tool in optional:
        if shutil.which(tool) is None:
            print(f"bench: {tool} not found (optional); to include it: {INSTALL[tool]}", file=sys.stderr)
    if missing:
        for tool in missing:
            print(f"bench: {tool} not found; install it: {INSTALL[tool]}", file=sys.stderr)
        print("bench: on Debian/Ubuntu, all at once: apt-get install dnsperf nsd gdnsd", file=sys.stderr)
        raise SystemExit(2)


def versions() -> list[str]:
    def first_line(command: list[str], pattern: str) -> str:
        if shutil.which(command[0]) is None:
            return "not installed"
        result = subprocess.run(command, capture_output=True, text=True)
        match = re.search(pattern, result.stdout + result.stderr)
        return match.group(0).strip() if match else "unknown"

    def package(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    gslb_version = subprocess.run([sys.executable, "-m", "gslb", "--version"], capture_output=True, text=True)
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    return [
        f"gslb: {gslb_version.stdout.strip() or gslb_version.stderr.strip()} "
        f"({_git_revision()}); Python {platform.python_version()}; uvloop {package('uvloop')}; "
        f"dnslib {package('dnslib')}; dnspython {package('dnspython')}; maxminddb {package('maxminddb')}",
        f"NSD: {first_line(['nsd', '-v'], r'NSD version .*')}; dnsperf: {first_line(['dnsperf', '-h'], r'Version .*')}; "
        f"gdnsd: {first_line(['gdnsd'], r'gdnsd version .*')}",
        f"machine: {os.cpu_count()} CPUs, {cpu.group(1) if cpu else platform.machine()}; "
        f"Linux {platform.release()}",
    ]


def _git_revision() -> str:
    result = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return f"git {result.stdout.strip()}" if result.returncode == 0 else "not a git checkout"


def default_geoip() -> Path:
    from gslb.settings import default_geoip_file

    embedded = Path(default_geoip_file())
    if embedded.exists():
        return embedded
    print(f"bench: the embedded GeoIP data ({embedded}) is missing; using MaxMind's test file {TEST_GEOIP} "
          "(its networks are carved into /32 and /56 client subnets). Pass --geoip FILE to choose.", file=sys.stderr)
    return TEST_GEOIP


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running every case once (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="dnsperf -l: seconds per run (default 10)")
    parser.add_argument("--cases", default=CASE_NUMBERS, help=f"comma-separated case numbers (default {CASE_NUMBERS})")
    parser.add_argument("--out", type=Path, default=BENCH / "last-run.md", help="markdown report (default bench/last-run.md)")
    parser.add_argument("--geoip", type=Path, help="GeoIP .mmdb for gslb, gdnsd and the ECS subnets "
                        "(default: gslb's embedded file, else the MaxMind test file)")
    parser.add_argument("--subnets", type=int, default=10_000, help="distinct ECS subnets for case 3 (default 10,000)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c (default 4)")
    parser.add_argument("--outstanding", type=int, default=200, help="dnsperf -q (default 200)")
    parser.add_argument("--server-cpus", default="0", help="taskset -c for the servers (default 0)")
    parser.add_argument("--client-cpus", default="1", help="taskset -c for dnsperf (default 1)")
    parser.add_argument("--no-dnslib", action="store_true", help="skip the dnslib DNSServer row")
    parser.add_argument("--rate", type=int, metavar="Q",
                        help="dnsperf -Q Q: every run at a fixed Q queries per second instead of saturation (the issue's "
                             "figure: 40000); adds p50/p99 latency from dnsperf -v")
    parser.add_argument("--per-datagram", action="store_true",
                        help="also run gslb with GSLB_UDP_IO=per-datagram (row gslb-pd) after gslb in every case gslb runs (1-4, 6-9)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--load-scale", action="store_true",
                      help="only: load 100,000 static + 1,000 GSLB records with `gslb check` and `gslb serve`")
    mode.add_argument("--ecs-million", action="store_true",
                      help="only: case 3 with 1,000,000 distinct ECS subnets beside 10,000, interleaved")
    args = parser.parse_args(argv)
    args.cases = [int(c) for c in args.cases.split(",") if c.strip()]
    if not args.cases or not set(args.cases) <= set(CASES):
        parser.error(f"--cases: numbers from {', '.join(map(str, CASES))}")
    args.geoip = args.geoip or default_geoip()
    if not args.geoip.exists():
        parser.error(f"--geoip: {args.geoip} does not exist")
    return args


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # stop the servers on SIGTERM as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    command_line = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    if args.load_scale:
        body = scale.load_scale(args.geoip, ZONES, args.server_cpus)
    else:
        check_tools(["dnsperf", "taskset"] + ([] if args.ecs_million else ["nsd"]),
                    ["gdnsd"] if 3 in args.cases and not args.ecs_million else [])
        with tempfile.TemporaryDirectory(prefix="gslb-bench-") as workdir:
            bench = Bench(args, Path(workdir))
            try:
                body = scale.ecs_million(bench, GSLB_NAME, ZONE_FILE) if args.ecs_million else bench.run()
            finally:
                bench.stop_all()
        body += "\nCommands (PORT: a free port chosen per run):\n\n" + "\n".join(
            f"- {what}: `{command}`" for what, command in bench.commands.items()) + "\n"
    report = "\n".join([f"# gslb benchmark, {datetime.date.today()}", "", f"Run: `{command_line}`", "",
                        *[f"- {line}" for line in versions()], "", body])
    print(report)
    args.out.write_text(report)
    print(f"bench: written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
