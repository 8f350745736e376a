"""In-process cost of DNSSEC on the fast path: FastPath.answer with and without DO.

    python bench/dnssec_fastpath.py [--subnets 10000] [--rounds 5] [--geoip FILE]

The bench zone (bench/zones/bench.example.yaml) is loaded twice in this process - as it is, and
signed (`dnssec: {keys: ...}` with a fresh key in a temporary directory) - and each case is
timed over many calls after a warm-up pass (so signatures and placements are cached, as in a
steady state): a static A, a GSLB answer with a different ECS subnet per query (10,000 by
default, placed in every region by the GeoIP file), and a name that does not exist. Reported:
microseconds per answer, the best of `--rounds`. Then the cost of a cache miss: one signature
(ECDSA P-256) of an RRset the signer has not seen, per call to ZoneSigner.sign.
No sockets: this is the answering code alone; bench/run.py measures the server with dnsperf.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dns.edns
import dns.message
from dnslib import RR, A, DNSLabel

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import queries  # noqa: E402

from gslb import service  # noqa: E402
from gslb.dnssec.keys import keygen  # noqa: E402
from gslb.settings import ServerSettings  # noqa: E402

ZONE_FILE = BENCH / "zones" / "bench.example.yaml"
DEFAULT_GEOIP = REPO / "geodata" / "dbip-city-lite.mmdb"


def load(directory: Path, geoip: Path, signed: bool):
    directory.mkdir(parents=True)
    text = ZONE_FILE.read_text()
    if signed:
        text += "\ndnssec: {keys: keys}\n"
        keygen(directory / "keys", (b"bench", b"example"), "csk")
    (directory / ZONE_FILE.name).write_text(text)
    loaded, problems = service.load(ServerSettings(zones=directory, geoip=geoip))
    if loaded is None:
        raise SystemExit("\n".join(str(p) for p in problems))
    return loaded


def packets(name: str, do: bool, subnets: list | None = None, count: int = 1) -> list[bytes]:
    out = []
    for index in range(count):
        options = []
        if subnets is not None:
            network = subnets[index % len(subnets)][0]
            options.append(dns.edns.ECSOption(str(network.network_address), network.prefixlen))
        query = dns.message.make_query(name, "A", use_edns=0, want_dnssec=do, options=options, id=index & 0xFFFF)
        out.append(query.to_wire())
    return out


def per_answer(fast, wires: list[bytes], calls: int, rounds: int) -> float:
    """Microseconds per FastPath.answer, best of `rounds`; fails if the fast path declines."""
    for wire in wires:  # warm-up: placements and signatures cached
        if fast.answer(wire, "127.0.0.1") is None:
            raise SystemExit(f"the fast path declined {dns.message.from_wire(wire).question[0]}")
    best = float("inf")
    size = len(wires)
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(calls):
            fast.answer(wires[index % size], "127.0.0.1")
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subnets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--geoip", type=Path, default=DEFAULT_GEOIP)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gslb-dnssec-bench-"))
    try:
        plain = load(work / "plain", args.geoip, False).answerer.fast
        signed_loaded = load(work / "signed", args.geoip, True)
        signed = signed_loaded.answerer.fast
        subnets = queries.pick_subnets(args.geoip, queries.zone_serves(ZONE_FILE), args.subnets)
        cases = [("static A", "static.bench.example.", None, 1),
                 (f"GSLB A + ECS ({args.subnets} subnets)", "www.bench.example.", subnets, args.subnets),
                 ("NXDOMAIN (one name)", "nx.bench.example.", None, 1)]
        print("| case | unsigned zone, no DO | signed zone, no DO | signed zone, DO |")
        print("| --- | --- | --- | --- |")
        for title, name, nets, count in cases:
            figures = [per_answer(plain, packets(name, False, nets, count), args.calls, args.rounds),
                       per_answer(signed, packets(name, False, nets, count), args.calls, args.rounds),
                       per_answer(signed, packets(name, True, nets, count), args.calls, args.rounds)]
            print(f"| {title} | " + " | ".join(f"{f:.2f} us" for f in figures) + " |")
        signer = next(z.signer for z in signed_loaded.catalog.zones if z.signer is not None)
        owner = DNSLabel("miss.bench.example.")
        misses = 2000
        started = time.perf_counter()
        for index in range(misses):  # a new RRset each time: a miss, one signature
            address = str(ipaddress.IPv4Address(0x0A000000 + index))
            signer.sign([RR(owner, 1, 1, 30, A(address))])
        print(f"\ncache miss: {(time.perf_counter() - started) / misses * 1e6:.1f} us per ZoneSigner.sign "
              f"(one ECDSA P-256 signature); signatures made in all: {signer.signatures_made}, "
              f"cache hits: {signer.hits}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
