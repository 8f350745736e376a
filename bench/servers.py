"""The servers under test: start one pinned to CPUs, wait until it answers, measure it, stop it.

Every server runs in its own session (process group), so stopping it stops its children too
(NSD's xfrd and server processes, gslb's workers), and Ctrl-C in the terminal reaches only the
bench, which then stops them in order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import yaml

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH = Path(__file__).resolve().parent


class NotAvailable(Exception):
    """The server (or a flag it needs) is not there: reported in the table, not a failure."""


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and all its descendants that are alive."""
    total = 0
    for each in process_tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / CLOCK_TICKS


def cpu_by_process(root: int) -> dict[int, float]:
    """utime + stime of each live process of the tree, by pid (a --workers server's split)."""
    seconds = {}
    for each in process_tree(root):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[each] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def cpu_list(spec: str) -> list[int]:
    """taskset's list syntax: "0", "0-3", "0,2"."""
    cpus: list[int] = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cpus += range(int(low), int(high or low) + 1)
    return cpus


def busy_seconds(cpus: list[int]) -> tuple[float, float]:
    """(busy, total) CPU seconds so far on these CPUs, from /proc/stat (busy: all but idle and iowait)."""
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(v) for v in values[:8]]
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / CLOCK_TICKS, total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    total_kb = 0
    for each in process_tree(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    workdir: Path
    ready_line: str | None = None  # printed on stdout when ready; else: ready when it answers
    env: dict[str, str] | None = None  # added to the bench's environment
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> Server:
        self.stdout = self.workdir / f"{self.name}.stdout"
        self.stderr = self.workdir / f"{self.name}.stderr"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NotAvailable(f"{self.name} exited with status {self.process.returncode}: {self.tail()}")
            if self.ready_line is not None:
                if self.ready_line in self.stdout.read_text(errors="replace"):
                    return self
            elif self.answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise NotAvailable(f"{self.name} did not become ready in {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        text = (self.stderr.read_text(errors="replace") + self.stdout.read_text(errors="replace")).strip()
        return " | ".join(text.splitlines()[-4:]) or "(no output)"

    def udp_line(self) -> str:
        """gslb's start-up line naming its UDP path ("gslb: udp: batched (recvmmsg)")."""
        lines = [line for line in self.stdout.read_text(errors="replace").splitlines() if line.startswith("gslb: udp: ")]
        return lines[0].removeprefix("gslb: ") if lines else "udp: (not reported)"

    def answers(self) -> bool:
        try:
            dns.query.udp(dns.message.make_query("bench.example.", "SOA"), "127.0.0.1", port=self.port, timeout=0.2)
            return True
        except (OSError, dns.exception.DNSException):
            return False

    def query(self, name: str, rtype: str = "A", subnet: str | None = None, do: bool = False) -> dns.message.Message:
        options = []
        if subnet is not None:
            address, prefix = subnet.split("/")
            options = [dns.edns.ECSOption(address, int(prefix))]
        query = dns.message.make_query(name, rtype, use_edns=0 if options or do else None, options=options,
                                       want_dnssec=do)
        return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=2)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def pinned(cpus: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *command]


# --- the servers ---------------------------------------------------------------------------------

def gslb(workdir: Path, cpus: str, zones: Path, geoip: Path, workers: int | None = None, timeout: float = 60,
         udp_io: str | None = None) -> Server:
    """gslb serve; `udp_io` forces its UDP path (GSLB_UDP_IO): "per-datagram" is the row gslb-pd."""
    port = free_port()
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--listen", f"127.0.0.1:{port}",
               "--geoip", str(geoip)]
    name = "gslb"
    if workers is not None:
        command += ["--workers", str(workers)]
        name = f"gslb-workers{workers}"
    if udp_io == "per-datagram":
        name = "gslb-pd"
    server = Server(name, pinned(cpus, command), port, workdir, ready_line=f"gslb: listening on 127.0.0.1:{port}",
                    env={"GSLB_UDP_IO": udp_io} if udp_io else None)
    try:
        return server.start(timeout)
    except NotAvailable as error:
        if workers is not None and "unrecognized arguments: --workers" in server.tail():
            raise NotAvailable("`gslb serve --workers` does not exist yet") from error
        raise


def dnslib_server(workdir: Path, cpus: str) -> Server:
    port = free_port()
    command = [sys.executable, str(BENCH / "dnslib_server.py"), str(port)]
    return Server("dnslib", pinned(cpus, command), port, workdir, ready_line="ready").start()


def load_zone(zone_file: Path) -> dict:
    return yaml.safe_load(zone_file.read_text())


def static_zone_text(doc: dict) -> str:
    """The zone's SOA, NS and static records as an RFC 1035 zone file (for NSD and gdnsd)."""
    origin = doc["origin"]
    soa = doc["soa"]
    lines = [f"$ORIGIN {origin}", f"$TTL {doc.get('ttl', 300)}",
             f"@ SOA {soa['mname']} {soa['rname']} {soa['serial']} {soa['refresh']} {soa['retry']} "
             f"{soa['expire']} {soa['minimum']}"]
    lines += [f"@ NS {ns}" for ns in doc["ns"]]
    for owner, entries in doc["records"].items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if "pools" in entry:
                continue
            values = entry.get("values", [entry.get("value")])
            ttl = entry.get("ttl", "")
            lines += [f"{owner} {ttl} {entry['type']} {value}" for value in values]
    return "\n".join(lines) + "\n"


def nsd(workdir: Path, cpus: str, zone_file: Path) -> Server:
    port = free_port()
    doc = load_zone(zone_file)
    home = workdir / "nsd"
    home.mkdir()
    origin = doc["origin"]
    (home / "bench.zone").write_text(static_zone_text(doc))
    config = home / "nsd.conf"
    config.write_text(f"""server:
    port: {port}
    ip-address: 127.0.0.1
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{home}"
    pidfile: "{home}/nsd.pid"
    xfrdfile: "{home}/xfrd.state"
    xfrdir: "{home}"
    zonelistfile: "{home}/zone.list"
    database: "{home}/nsd.db"
    logfile: "{home}/nsd.log"
    verbosity: 0
    # NSD 4.6 ships with response rate limiting on: it would drop most benchmark queries.
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "{origin}"
    zonefile: "bench.zone"
""")
    return Server("nsd", pinned(cpus, ["nsd", "-d", "-c", str(config)]), port, workdir).start()


def gdnsd(workdir: Path, cpus: str, zone_file: Path, geoip: Path, name: str = "www") -> Server:
    """gdnsd 3 with the geoip plugin: a map from the zone's `serves:` codes to one datacenter per
    region, and a DYNA record whose datacenters answer one address of the region's pool, chosen
    by weight (the weighted plugin, multi = false), like the zone's `policy: weighted, answers: 1`."""
    port = free_port()
    doc = load_zone(zone_file)
    home = workdir / "gdnsd"
    (home / "zones").mkdir(parents=True)
    record = doc["records"][name]
    regions = list(doc["regions"])
    default = doc.get("default_region", regions[0])
    datacenters = [default] + [r for r in regions if r != default]
    tree: dict = {}
    for region, spec in doc["regions"].items():  # EU, AS-JP, NA-US-CA -> nested continent/country/...
        for code in spec.get("serves", []):
            node = tree
            parts = code.split("-")
            for part in parts[:-1]:
                child = node.setdefault(part, {})
                if isinstance(child, list):  # AS then AS-JP: AS becomes {default: [...], JP: [...]}
                    child = node[part] = {"default": child}
                node = child
            leaf = parts[-1]
            if isinstance(node.get(leaf), dict):
                node[leaf]["default"] = [region]
            else:
                node[leaf] = [region]

    def render(value) -> str:
        if isinstance(value, list):
            return "[ " + ", ".join(map(str, value)) + " ]"
        if not isinstance(value, dict):
            return str(value)
        return "{ " + ", ".join(f"{key} => {render(child)}" for key, child in value.items()) + " }"

    weighted = {f"{name}_{region}": {f"e{i}": [e["value"], e.get("weight", 1)] if isinstance(e, dict) else [e, 1]
                                     for i, e in enumerate(pool)}
                for region, pool in record["pools"].items()}
    dcmap = {region: f"%weighted!{name}_{region}" for region in record["pools"]}
    (home / "config").write_text(f"""options => {{
  listen => [ 127.0.0.1:{port} ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => {home}/run
  state_dir => {home}/state
}}
plugins => {{
  weighted => {{ multi => false, {", ".join(f"{key} => {render(value)}" for key, value in weighted.items())} }}
  geoip => {{
    maps => {{
      bench => {{
        geoip2_db => {geoip.resolve()}
        datacenters => {render(datacenters)}
        map => {render(tree)}
      }}
    }}
    resources => {{
      {name} => {{
        map => bench
        dcmap => {render(dcmap)}
      }}
    }}
  }}
}}
""")
    zone = static_zone_text(doc) + f"{name} {record.get('ttl', '')} DYNA geoip!{name}\n"
    (home / "zones" / doc["origin"].rstrip(".")).write_text(zone)
    return Server("gdnsd", pinned(cpus, ["gdnsd", "-c", str(home), "start"]), port, workdir).start()
