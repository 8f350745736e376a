"""Fuzz a live `gslb serve` with mutated packets over UDP and TCP, and check it keeps its promises.

    python bench/fuzz.py [--packets 1000000] [--rate 20000] [--burst 10000] [--tcp-share 0.15]
                         [--seed 1] [--workers N] [--out bench/RESULTS.md]

The script starts `gslb serve` on a free loopback port (the wire and geo test zones, the test
GeoIP file, NSID on, API off) and stops it by its PID at the end. It then sends `--packets`
packets in bursts of `--burst`: valid queries of every shape the server knows (plain, EDNS with
DO, ECS v4/v6, NSID, unknown options, CH) with one to three mutations each - bit flips, random
bytes, truncation, random lengths and whole random packets, inserted and deleted runs, wrong
section counts, compression pointer loops in the question, huge EDNS options (up to 60,000
bytes), ECS garbage, random opcodes, extra OPT records, bad label lengths, and QR set on some.
A `--tcp-share` of them go over TCP, pipelined on short connections, some with a wrong length
prefix (the stream then desynchronises, as a broken client's would).

Packets with QR set go out on their own UDP socket and their own TCP connections, so any reply
that arrives there is a reply to a response (RFC 8906 says drop it). Every other reply must have QR
set and an ID that was sent; a sample of them (and every TCP one) must parse with dnspython.
After each burst the script waits until the server's UDP receive queue is empty, then sends valid
queries (UDP and TCP) that must each be answered, with their question, within 3 s.

Reported: packets sent and the rate, replies, replies to QR-set packets, bad replies, valid
queries after bursts answered, the kernel's drops on the server's UDP socket (packets sent
faster than the server read them: never parsed), tracebacks and ERROR lines in the server's log,
RSS at the start and the end. Exit status 1 when a promise was broken.

On a loaded machine lower `--rate` rather than `--packets`: the kernel drops what the server
cannot read in time, and a dropped packet tests nothing. The script also lowers the rate by itself
(by 30 % after a burst with over 1 % dropped, back up by 10 % after a burst with none, never above
`--rate`); the drops are reported.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from servers import free_port, process_tree, rss_mb  # noqa: E402

REPO = BENCH.parent
DATA = REPO / "tests" / "data"
GEOIP = DATA / "geo" / "GeoIP2-City-Test.mmdb"

NAMES = [
    "wire.example.", "www.wire.example.", "WwW.Wire.EXAMPLE.", "mail.wire.example.", "chain1.wire.example.",
    "outside.wire.example.", "a.b.wire.example.", "deleg.wire.example.", "x.deleg.wire.example.",
    "child.wire.example.", "nope.wire.example.", "big1232.wire.example.", "10.2.0.192.in-addr.arpa.",
    "example.org.", ".", "geo.example.", "www.geo.example.", "www6.geo.example.", "partial.geo.example.",
    "nope.geo.example.",
]
TYPES = ["A", "AAAA", "NS", "SOA", "MX", "TXT", "SRV", "CNAME", "ANY", "DS", "AXFR", 65280]
# (name, type, ECS subnet or None, expected rcode): what must be answered after every burst
VALID = [
    ("www.wire.example.", "A", None, dns.rcode.NOERROR),
    ("wire.example.", "SOA", None, dns.rcode.NOERROR),
    ("nope.wire.example.", "A", None, dns.rcode.NXDOMAIN),
    ("www.geo.example.", "A", "81.2.69.160/27", dns.rcode.NOERROR),
    ("www.geo.example.", "A", "2001:218::/32", dns.rcode.NOERROR),
    ("big1232.wire.example.", "TXT", None, dns.rcode.NOERROR),
    ("example.org.", "A", None, dns.rcode.REFUSED),
    ("www.geo.example.", "AAAA", None, dns.rcode.NOERROR),
]
MUTATIONS = ("flip", "flip", "byte", "truncate", "random", "insert", "delete", "count", "pointer", "huge_option",
             "ecs", "opcode", "extra_opt", "label")


def seeds() -> list[bytes]:
    out = []
    for index, name in enumerate(NAMES):
        rdtype = TYPES[index % len(TYPES)]
        out.append(dns.message.make_query(name, "A", use_edns=False).to_wire())
        out.append(dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True).to_wire())
        out.append(dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption("81.2.69.160", 27)]).to_wire())
        out.append(dns.message.make_query(name, "AAAA", use_edns=0, options=[
            dns.edns.ECSOption("2001:218::", 32), dns.edns.GenericOption(3, b""),
            dns.edns.GenericOption(65001, b"x")]).to_wire())
    out.append(dns.message.make_query("id.server.", "TXT", rdclass="CH").to_wire())
    return out


def opt_record(options: bytes, size: int = 1232) -> bytes:
    return b"\x00\x00\x29" + struct.pack("!HIH", size, 0, len(options)) + options


class Mutator:
    def __init__(self, seed: int, qr_share: float, max_size: int) -> None:
        self.rng = random.Random(seed)
        self.seeds = seeds()
        self.qr_share = qr_share
        self.max_size = max_size

    def _bump_arcount(self, data: bytearray) -> None:
        if len(data) >= 12:
            data[10:12] = ((int.from_bytes(data[10:12], "big") + 1) & 0xFFFF).to_bytes(2, "big")

    def packet(self) -> bytes:
        rng = self.rng
        data = bytearray(rng.choice(self.seeds))
        data[0:2] = rng.randrange(65536).to_bytes(2, "big")
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(MUTATIONS)
            if kind == "flip" and data:
                for _ in range(rng.randint(1, 8)):
                    bit = rng.randrange(len(data) * 8)
                    data[bit // 8] ^= 1 << (bit % 8)
            elif kind == "byte" and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind == "truncate":
                del data[rng.randrange(len(data) + 1):]
            elif kind == "random":
                data = bytearray(rng.randbytes(rng.choice((rng.randrange(12), rng.randrange(600)))))
            elif kind == "insert":
                at = rng.randrange(len(data) + 1)
                data[at:at] = rng.randbytes(rng.randint(1, 64))
            elif kind == "delete" and data:
                at = rng.randrange(len(data))
                del data[at:at + rng.randint(1, 24)]
            elif kind == "count" and len(data) >= 12:
                at = 4 + 2 * rng.randrange(4)
                data[at:at + 2] = rng.choice((0, 1, 2, 3, 0x7FFF, 0xFFFF, rng.randrange(65536))).to_bytes(2, "big")
            elif kind == "pointer" and len(data) >= 14:
                target = rng.choice((12, 14, 0x3FFF, len(data), rng.randrange(len(data))))
                data[12:14] = (0xC000 | target & 0x3FFF).to_bytes(2, "big")
                if rng.random() < 0.5:
                    data[14:16] = b"\xc0\x0c"
            elif kind == "huge_option":
                size = rng.choice((0, 1, 255, 1500, 4000, 16000, 60000))
                data += opt_record(struct.pack("!HH", rng.randrange(65536), size) + rng.randbytes(size))
                self._bump_arcount(data)
            elif kind == "ecs":
                option = rng.randbytes(rng.randrange(24))
                if rng.random() < 0.6:
                    option = struct.pack("!HBB", rng.randrange(4), rng.randrange(256), rng.randrange(256)) + option
                data += opt_record(struct.pack("!HH", 8, len(option)) + option)
                self._bump_arcount(data)
            elif kind == "opcode" and len(data) >= 3:
                data[2] = (data[2] & 0x87) | (rng.randrange(16) << 3)
            elif kind == "extra_opt":
                data += opt_record(b"", rng.randrange(65536))
                self._bump_arcount(data)
            elif kind == "label" and len(data) >= 13:
                data[12] = rng.choice((63, 64, 127, 128, 191, 255))
        if len(data) >= 3:
            if rng.random() < self.qr_share:
                data[2] |= 0x80
            else:
                data[2] &= 0x7F
        return bytes(data[:self.max_size])


@dataclass
class Tally:
    udp_sent: int = 0
    tcp_sent: int = 0
    qr_sent: int = 0
    replies: int = 0
    replies_to_qr: int = 0
    qr_examples: list[str] = field(default_factory=list)
    without_qr: int = 0
    unknown_id: int = 0
    parsed: int = 0
    unparsable: int = 0
    bad_examples: list[str] = field(default_factory=list)
    tcp_connections: int = 0
    tcp_timeouts: int = 0
    valid_sent: int = 0
    valid_answered: int = 0
    valid_failures: list[str] = field(default_factory=list)
    send_seconds: float = 0.0
    udp_drops: int = 0
    rates: list[float] = field(default_factory=list)

    def bad(self, what: str, reply: bytes) -> None:
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"{what}: {reply[:64].hex()}")


def parses(reply: bytes) -> bool:
    """dnspython reads it (as a QUERY: an UPDATE's zone section rules would refuse a NOTIMP echo)."""
    try:
        dns.message.from_wire(reply[:2] + bytes((reply[2] & 0x87,)) + reply[3:])
        return True
    except dns.exception.DNSException:
        return False


def check_reply(tally: Tally, reply: bytes, ids: set[int] | None, parse: bool) -> None:
    tally.replies += 1
    if len(reply) < 12 or not reply[2] & 0x80:
        tally.without_qr += 1
        tally.bad("reply without QR", reply)
        return
    if ids is not None and int.from_bytes(reply[:2], "big") not in ids:
        tally.unknown_id += 1
        tally.bad("reply with an ID never sent", reply)
    if parse:
        tally.parsed += 1
        if not parses(reply):
            tally.unparsable += 1
            tally.bad("reply dnspython cannot parse", reply)


def udp_queue(port: int) -> tuple[int, int]:
    """(bytes waiting, packets dropped) on the server's UDP socket(s) bound to 127.0.0.1:port."""
    waiting = drops = 0
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[1] == local:
                waiting += int(fields[4].split(":")[1], 16)
                drops += int(fields[-1])
    return waiting, drops


class Server:
    def __init__(self, work: Path, workers: int | None) -> None:
        zones = work / "zones"
        zones.mkdir()
        for source in (DATA / "zones_wire", DATA / "zones_geo"):
            for file in source.glob("*.yaml"):
                shutil.copy(file, zones / file.name)
        self.port = free_port()
        command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--geoip", str(GEOIP),
                   "--listen", f"127.0.0.1:{self.port}", "--node-name", "fuzz-node", "--api", "off",
                   "--cache-dir", str(work / "cache"), "--log-level", "info"]
        if workers:
            command += ["--workers", str(workers)]
        self.stdout, self.stderr = work / "gslb.stdout", work / "gslb.stderr"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        ready = f"gslb: listening on 127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while ready not in self.stdout.read_text(errors="replace") or not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"fuzz: gslb did not start: {self.stderr.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            dns.query.udp(dns.message.make_query("wire.example.", "SOA"), "127.0.0.1", port=self.port, timeout=0.5)
            return True
        except (OSError, dns.exception.DNSException):
            return False

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def drain(sock: socket.socket, handle) -> None:  # type: ignore[no-untyped-def]
    while True:
        try:
            handle(sock.recv(70000))
        except BlockingIOError:
            return


def udp_burst(port: int, packets: list[bytes], rate: float, tally: Tally) -> None:
    """Send at `rate` packets/s; replies are read between sends. QR-set packets go out on a
    socket of their own: anything it receives is a reply to a response."""
    target = ("127.0.0.1", port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as main, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as qr:
        for sock in (main, qr):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setblocking(False)
        ids: set[int] = set()
        counter = 0

        def on_reply(reply: bytes) -> None:
            nonlocal counter
            counter += 1
            check_reply(tally, reply, ids, parse=counter % 8 == 0)

        def on_qr_reply(reply: bytes) -> None:
            tally.replies += 1
            tally.replies_to_qr += 1
            if len(tally.qr_examples) < 5:
                tally.qr_examples.append(reply[:64].hex())

        started = time.monotonic()
        for index, packet in enumerate(packets):
            if len(packet) >= 3 and packet[2] & 0x80:
                sock = qr
                tally.qr_sent += 1
            else:
                sock = main
                if len(packet) >= 2:
                    ids.add(int.from_bytes(packet[:2], "big"))
            try:
                sock.sendto(packet, target)
            except BlockingIOError:
                time.sleep(0.001)
                try:
                    sock.sendto(packet, target)
                except BlockingIOError:
                    pass
            tally.udp_sent += 1
            if index % 64 == 63:
                drain(main, on_reply)
                drain(qr, on_qr_reply)
                ahead = (index + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        tally.send_seconds += time.monotonic() - started
        # Wait for the server to read everything it was sent, then for the last replies.
        deadline = time.monotonic() + 60
        while udp_queue(port)[0] and time.monotonic() < deadline:
            drain(main, on_reply)
            drain(qr, on_qr_reply)
            time.sleep(0.01)
        quiet_until = time.monotonic() + 0.3
        with selectors.DefaultSelector() as selector:
            selector.register(main, selectors.EVENT_READ, on_reply)
            selector.register(qr, selectors.EVENT_READ, on_qr_reply)
            while time.monotonic() < quiet_until:
                for key, _ in selector.select(max(0.0, quiet_until - time.monotonic())):
                    drain(key.fileobj, key.data)  # type: ignore[arg-type]
                    quiet_until = time.monotonic() + 0.3


def tcp_connection(port: int, messages: list[bytes], framing_ok: bool, tally: Tally, qr: bool,
                   rng: random.Random) -> None:
    """One connection: every message framed (some prefixes wrong when not `framing_ok`), sent
    pipelined, then a half-close; the replies are read until the server closes."""
    stream = bytearray()
    for message in messages:
        length = len(message)
        if not framing_ok and rng.random() < 0.3:
            length = rng.choice((0, 1, 11, 12, length - 1, length + 1, 65535, rng.randrange(65536)))
        stream += struct.pack("!H", length & 0xFFFF) + message
    ids = {int.from_bytes(m[:2], "big") for m in messages if len(m) >= 2}
    tally.tcp_connections += 1
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close a connection whose stream made no sense
        tally.send_seconds += time.monotonic() - started
        received = bytearray()
        sock.settimeout(3)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                tally.tcp_timeouts += 1
                break
            except OSError:
                break
            if not chunk:
                break
            received += chunk
    position = 0
    while position + 2 <= len(received):
        length = int.from_bytes(received[position:position + 2], "big")
        reply = bytes(received[position + 2:position + 2 + length])
        position += 2 + length
        if qr:
            tally.replies += 1
            tally.replies_to_qr += 1
            if len(tally.qr_examples) < 5:
                tally.qr_examples.append(reply[:64].hex())
            continue
        check_reply(tally, reply, ids if framing_ok else None, parse=True)


def tcp_burst(port: int, packets: list[bytes], tally: Tally, rng: random.Random) -> None:
    queries = [p for p in packets if not (len(p) >= 3 and p[2] & 0x80)]
    responses = [p for p in packets if len(p) >= 3 and p[2] & 0x80]
    tally.tcp_sent += len(packets)
    tally.qr_sent += len(responses)
    position = 0
    while position < len(queries):
        count = rng.randint(1, 60)
        tcp_connection(port, queries[position:position + count], rng.random() < 0.8, tally, False, rng)
        position += count
    for start in range(0, len(responses), 60):
        tcp_connection(port, responses[start:start + 60], True, tally, True, rng)


def check_valid(port: int, tally: Tally, burst: int) -> None:
    for index, (name, rdtype, subnet, rcode) in enumerate(VALID):
        options = []
        if subnet is not None:
            address, prefix = subnet.split("/")
            options = [dns.edns.ECSOption(address, int(prefix))]
        query = dns.message.make_query(name, rdtype, use_edns=0 if options else None, options=options or None)
        tcp = index % 4 == 3
        tally.valid_sent += 1
        try:
            if tcp:
                reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=3)
            else:
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
        except (OSError, dns.exception.DNSException) as error:
            tally.valid_failures.append(f"burst {burst}: {name} {rdtype} {'TCP' if tcp else 'UDP'}: {error!r}")
            continue
        if reply.question != query.question or reply.rcode() != rcode:
            tally.valid_failures.append(f"burst {burst}: {name} {rdtype}: {dns.rcode.to_text(reply.rcode())}")
            continue
        tally.valid_answered += 1


def log_findings(text: str) -> tuple[int, list[str]]:
    tracebacks = text.count("Traceback (most recent call last)")
    errors = [line for line in text.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    return tracebacks, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=20_000, help="UDP packets per second to aim at (default 20000)")
    parser.add_argument("--burst", type=int, default=10_000, help="packets between valid-query checks (default 10000)")
    parser.add_argument("--tcp-share", type=float, default=0.15, help="share of packets sent over TCP (default 0.15)")
    parser.add_argument("--qr-share", type=float, default=0.05, help="share of packets with QR set (default 0.05)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, help="gslb serve --workers N")
    parser.add_argument("--out", type=Path, help="append the markdown section to this file")
    a = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gslb-fuzz-"))
    mutator = Mutator(a.seed, a.qr_share, max_size=65000)
    tcp_rng = random.Random(a.seed + 1)
    tally = Tally()
    load = os.getloadavg()
    server = Server(work, a.workers)
    started = time.monotonic()
    try:
        rss_start = server.rss_mb()
        bursts = (a.packets + a.burst - 1) // a.burst
        rate = a.rate
        for burst in range(bursts):
            size = min(a.burst, a.packets - burst * a.burst)
            packets = [mutator.packet() for _ in range(size)]
            tcp_count = int(size * a.tcp_share)
            drops_before = udp_queue(server.port)[1]
            udp_burst(server.port, packets[tcp_count:], rate, tally)
            dropped = udp_queue(server.port)[1] - drops_before
            tally.udp_drops += dropped
            tally.rates.append(rate)
            # A dropped packet was never parsed, so it tested nothing: slow down when the server
            # cannot keep up (a loaded machine), speed up again towards --rate when it can.
            if dropped > (size - tcp_count) // 100:
                rate = max(500.0, rate * 0.7)
            elif dropped == 0:
                rate = min(a.rate, rate * 1.1)
            tcp_burst(server.port, packets[:tcp_count], tally, tcp_rng)
            if server.process.poll() is not None:
                tally.valid_failures.append(f"burst {burst}: the server exited with {server.process.returncode}")
                break
            check_valid(server.port, tally, burst)
            if burst % 10 == 9 or burst == bursts - 1:
                sent = tally.udp_sent + tally.tcp_sent
                print(f"fuzz: {sent:,} packets, {tally.replies:,} replies, {tally.replies_to_qr} to QR-set packets, "
                      f"{tally.valid_answered}/{tally.valid_sent} valid answered, "
                      f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        rss_end = server.rss_mb()
    finally:
        status = server.stop()
    elapsed = time.monotonic() - started
    log = server.stderr.read_text(errors="replace")
    tracebacks, error_lines = log_findings(log)
    sent = tally.udp_sent + tally.tcp_sent
    ok = (tracebacks == 0 and not error_lines and tally.replies_to_qr == 0 and not tally.valid_failures
          and tally.without_qr == 0 and tally.unknown_id == 0 and tally.unparsable == 0 and status == 0)
    workers = f" --workers {a.workers}" if a.workers else ""
    lines = [
        f"## Fuzzing a live server: {sent:,} mutated packets{' (' + workers.strip() + ')' if workers else ''}",
        "",
        f"`python bench/fuzz.py --packets {a.packets} --rate {a.rate:g} --burst {a.burst} --tcp-share {a.tcp_share:g} "
        f"--seed {a.seed}{workers}`: the wire and geo test zones, one `gslb serve`{workers} on loopback; valid queries "
        "with 1-3 mutations each (bit flips, random bytes and lengths, truncation, inserted and deleted runs, wrong "
        "counts, compression pointer loops, huge EDNS options, ECS garbage, random opcodes, extra OPTs, bad label "
        f"lengths), {a.qr_share:.0%} with QR set; {a.tcp_share:.0%} over TCP, pipelined on short connections, a fifth "
        f"of them with wrong length prefixes. Load average at the start {load[0]:.1f}.",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| packets sent (UDP / TCP) | {tally.udp_sent:,} / {tally.tcp_sent:,} |",
        f"| UDP send rate (packets/s, while sending; aimed at {min(tally.rates):,.0f} to {max(tally.rates):,.0f}, "
        f"lowered while the kernel dropped) | {tally.udp_sent / max(tally.send_seconds, 1e-9):,.0f} |",
        f"| whole run, including the checks after each burst | {elapsed:.0f} s ({sent / elapsed:,.0f} packets/s) |",
        f"| packets with QR set / replies to them | {tally.qr_sent:,} / {tally.replies_to_qr} |",
        f"| replies (UDP and TCP) | {tally.replies:,} |",
        f"| replies without QR / with an ID never sent | {tally.without_qr} / {tally.unknown_id} |",
        f"| replies parsed by dnspython (1 in 8 UDP, every TCP) / unparsable | {tally.parsed:,} / {tally.unparsable} |",
        f"| TCP connections / waited out (3 s) | {tally.tcp_connections:,} / {tally.tcp_timeouts} |",
        f"| valid queries after each burst: answered / sent | {tally.valid_answered:,} / {tally.valid_sent:,} |",
        f"| UDP packets the kernel dropped (server busy; never parsed) | {tally.udp_drops:,} |",
        f"| tracebacks / ERROR lines in the server's log | {tracebacks} / {len(error_lines)} |",
        f"| RSS start / end | {rss_start:.0f} / {rss_end:.0f} MB |",
        f"| server exit status (SIGTERM) | {status} |",
        "",
    ]
    for title, items in (("Replies to QR-set packets", tally.qr_examples), ("Bad replies", tally.bad_examples),
                         ("Valid queries not answered", tally.valid_failures[:10]), ("Log errors", error_lines[:10])):
        if items:
            lines += [f"{title}:", "", *(f"    {item}" for item in items), ""]
    text = "\n".join(lines)
    print(text)
    if a.out is not None:
        with a.out.open("a") as out:
            out.write("\n" + text)
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"fuzz: promises broken; the server's log is in {server.stderr}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
