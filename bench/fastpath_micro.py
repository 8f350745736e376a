"""In-process cost of `FastPath.answer` per kind of question, wildcards (RFC 4592) beside exact names.

    python bench/fastpath_micro.py [--number 200000] [--repeat 5]

No sockets and no dnsperf: the bench zone (bench/zones/bench.example.yaml) plus a static wildcard
`*.apps` and a GSLB wildcard `*.shop` (the same pools and policy as `www`), loaded as `gslb serve`
loads it, and each query packet handed to the fast path `--number` times; the best of `--repeat`
rounds (the cases interleaved) is printed in microseconds per answer. A wildcard hit costs the exact lookup that misses plus
a walk up the name (one dict lookup per label) to the closest encloser.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

import dns.edns
import dns.message

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from gslb import service  # noqa: E402
from gslb.settings import ServerSettings  # noqa: E402

GEOIP = BENCH.parent / "tests" / "data" / "geo" / "GeoIP2-City-Test.mmdb"
WILDCARDS = """
  "*.apps": {type: A, value: 192.0.2.80}
  "*.shop":
    type: A
    ttl: 30
    policy: weighted
    answers: 1
    pools:
      na:   [{value: 198.51.100.10, weight: 3}, {value: 198.51.100.11, weight: 1}]
      eu:   [{value: 203.0.113.10, weight: 1}, {value: 203.0.113.11, weight: 1}]
      asia: [{value: 203.0.113.20, weight: 2}, {value: 203.0.113.21, weight: 1}]
      jp:   [{value: 203.0.113.30, weight: 1}, {value: 203.0.113.31, weight: 1}]
      oc:   [{value: 203.0.113.40, weight: 1}, {value: 203.0.113.41, weight: 1}]
"""
CASES = [
    ("static A, exact name", "static.bench.example.", None),
    ("static A, wildcard hit (1 label below *.apps)", "web.apps.bench.example.", None),
    ("static A, wildcard hit (4 labels below *.apps)", "a.b.c.web.apps.bench.example.", None),
    ("NXDOMAIN (zone has wildcards elsewhere)", "nx.bench.example.", None),
    ("GSLB A, exact name, no ECS", "www.bench.example.", None),
    ("GSLB A, wildcard hit, no ECS", "web.shop.bench.example.", None),
    ("GSLB A, exact name, ECS 81.2.69.160/27", "www.bench.example.", "81.2.69.160"),
    ("GSLB A, wildcard hit, ECS 81.2.69.160/27", "web.shop.bench.example.", "81.2.69.160"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        zones = Path(directory)
        text = (BENCH / "zones" / "bench.example.yaml").read_text()
        (zones / "bench.example.yaml").write_text(text.replace("\nrecords:\n", "\nrecords:" + WILDCARDS, 1))
        loaded, problems = service.load(ServerSettings(zones=zones, geoip=GEOIP))
        if loaded is None:
            print("\n".join(map(str, problems)), file=sys.stderr)
            return 1
    fast = loaded.answerer.fast
    packets = {}
    for label, name, subnet in CASES:
        options = [dns.edns.ECSOption(subnet, 27)] if subnet else []
        packets[label] = dns.message.make_query(name, "A", use_edns=0, options=options).to_wire()
    best = {label: float("inf") for label in packets}
    for _ in range(args.repeat):  # the cases interleaved, round after round: load that comes and goes hits all
        for label, packet in packets.items():
            if fast.answer(packet, "127.0.0.1") is None:
                continue
            took = timeit.timeit(lambda packet=packet: fast.answer(packet, "127.0.0.1"), number=args.number)
            best[label] = min(best[label], took)
    print("| question | us per FastPath.answer (best of rounds) |\n| --- | --- |")
    for label, took in best.items():
        print(f"| {label} | " + ("declined to the general path" if took == float("inf")
                                 else f"{took / args.number * 1e6:.2f}") + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
