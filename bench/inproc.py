"""In-process cost of one fast-path answer, without sockets: FastPath.answer and respond_udp.

    python bench/inproc.py [--subnets 10000] [--repeat 5] [--geoip FILE] [--cold]

Loads the bench zone (bench/zones/bench.example.yaml) plus a few records it lacks (round robin,
hash, a two-answer weighted record, a static and a GSLB wildcard) into a temporary directory, builds the same ECS query set
bench/run.py's case 3 uses (one distinct client subnet per query, 10,000 by default) for each
record, answers it once to fill the placement cache, then times whole passes over it. The figure
is this process's CPU time per query, in microseconds: the minimum and the median over `--repeat`
passes (on a shared machine the minimum is the steadier figure). With --cold every pass starts
with empty placement and packet caches, so each query is a miss: what a million distinct subnets
cost. It measures gslb's reply code
only; bench/run.py measures the server over real sockets. To compare two trees, run it with
PYTHONPATH pointing at each in turn (`git archive` a revision into a directory for the other).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import queries
import run

import gslb
from gslb.build import load
from gslb.settings import ServerSettings

EXTRA_RECORDS = """
  rr: {type: A, ttl: 30, policy: round_robin,
       pools: {na: [198.51.100.20, 198.51.100.21, 198.51.100.22], eu: [203.0.113.50, 203.0.113.51],
               asia: [203.0.113.52, 203.0.113.53], jp: [203.0.113.54], oc: [203.0.113.55, 203.0.113.56]}}
  hashed: {type: A, ttl: 30, policy: hash,
           pools: {na: [198.51.100.30, 198.51.100.31, 198.51.100.32], eu: [203.0.113.60, 203.0.113.61],
                   asia: [203.0.113.62, 203.0.113.63], jp: [203.0.113.64], oc: [203.0.113.65, 203.0.113.66]}}
  weighted2: {type: A, ttl: 30, policy: weighted, answers: 2,
              pools: {na: [{value: 198.51.100.40, weight: 3}, 198.51.100.41, 198.51.100.42],
                      eu: [{value: 203.0.113.70, weight: 2}, 203.0.113.71], asia: [203.0.113.72],
                      jp: [203.0.113.73], oc: [203.0.113.74]}}
  "*.apps": {type: A, value: 192.0.2.80}
  "*.shop": {type: A, ttl: 30, policy: weighted,
             pools: {na: [{value: 198.51.100.10, weight: 3}, {value: 198.51.100.11, weight: 1}],
                     eu: [203.0.113.10, 203.0.113.11], asia: [{value: 203.0.113.20, weight: 2}, 203.0.113.21],
                     jp: [203.0.113.30, 203.0.113.31], oc: [203.0.113.40, 203.0.113.41]}}
"""
# (label, owner name): the static one is bench/run.py's case 1, `www` its weighted case 3.
CASES = [
    ("static A, no ECS", None),
    ("static A", "static"),
    ("GSLB weighted (www)", "www"),
    ("GSLB round robin", "rr"),
    ("GSLB hash", "hashed"),
    ("GSLB weighted, answers 2", "weighted2"),
    # wildcards (RFC 4592): the exact lookup misses, then one dict lookup per label up to *.apps
    ("static A, wildcard", "web.apps"),
    ("static A, wildcard 4 deep", "a.b.c.web.apps"),
    ("GSLB weighted, wildcard", "web.shop"),  # the same pools as www
]


def zone_dir(workdir: Path) -> Path:
    zones = workdir / "zones"
    zones.mkdir()
    text = run.ZONE_FILE.read_text()
    marker = "records:\n"
    assert marker in text, "the bench zone's layout changed: records: not found"
    (zones / run.ZONE_FILE.name).write_text(text.replace(marker, marker + EXTRA_RECORDS.lstrip("\n"), 1))
    return zones


def timed(answer: Callable[[bytes, str], object], messages: list[bytes], repeat: int,
          before: Callable[[], object] = lambda: None) -> list[float]:
    """Microseconds of this process's CPU per query, one figure per pass over `messages` (after
    one warm pass; `before` runs ahead of each pass, untimed). CPU time rather than wall time:
    on a shared machine the time this process waits for a core is not its cost."""
    for message in messages:
        answer(message, "127.0.0.1")
    figures = []
    for _ in range(repeat):
        before()
        started = time.process_time_ns()
        for message in messages:
            answer(message, "127.0.0.1")
        figures.append((time.process_time_ns() - started) / len(messages) / 1000)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/inproc.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subnets", type=int, default=10_000, help="distinct ECS subnets (default 10,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes per case (default 5)")
    parser.add_argument("--geoip", type=Path, help="GeoIP .mmdb (default: as bench/run.py)")
    parser.add_argument("--cold", action="store_true", help="empty the placement and packet caches before each pass")
    args = parser.parse_args(argv)
    geoip = args.geoip or run.default_geoip()
    ecs_file, _ = queries.ecs_query_file(run.GSLB_NAME, geoip, run.ZONE_FILE, args.subnets)
    base = queries.read_query_file(ecs_file)
    with tempfile.TemporaryDirectory(prefix="gslb-inproc-") as workdir:
        loaded, problems = load(ServerSettings(zones=zone_dir(Path(workdir)), geoip=geoip))
        if loaded is None:
            raise SystemExit("bench: the zone does not load:\n" + "\n".join(map(str, problems)))
        fast, answerer = loaded.answerer.fast, loaded.answerer
        assert fast is not None
        caches = [entry.cache for entry in fast.table.values() if hasattr(entry, "cache")]

        def empty() -> None:
            for cache in caches:
                cache.clear()
            fast._packets.clear()  # the packet and shape caches: what a first query meets
            for _, shapes in fast._shapes:
                shapes.clear()
            fast._shaped = 0

        before = empty if args.cold else (lambda: None)
        gc.collect()
        gc.freeze()
        print(f"{len(base):,} ECS queries per case (static A also without ECS), {args.repeat} passes"
              f"{', caches emptied before each' if args.cold else ''}; "
              f"CPU microseconds per query, min / median; gslb from {Path(gslb.__file__).parent}")
        print(f"{'case':<28} {'FastPath.answer':>18} {'respond_udp':>18}")
        for label, owner in CASES:
            if owner is None:
                plain = dns.message.make_query(run.STATIC, "A", use_edns=0, payload=queries.EDNS_PAYLOAD)
                plain.id = 0
                messages = [plain.to_wire()] * len(base)
            else:
                messages = queries.renamed(base, run.GSLB_NAME, f"{owner}.bench.example.")
            if fast.answer(messages[0], "127.0.0.1") is None:
                raise SystemExit(f"bench: the fast path declines {owner}: nothing to time")
            fast_us = timed(fast.answer, messages, args.repeat, before)
            full_us = timed(answerer.respond_udp, messages, args.repeat, before)
            print(f"{label:<28} {min(fast_us):>8.2f} / {statistics.median(fast_us):>6.2f}  "
                  f"{min(full_us):>8.2f} / {statistics.median(full_us):>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
