"""Query files for dnsperf: one-line text files, and binary (-B) files of ECS queries.

A -B file is what a TCP client would send: each message preceded by its 2-byte length. dnsperf
overwrites the first two bytes (the ID) and sends the rest as it is, so every query can carry
its own EDNS Client Subnet option, which `dnsperf -E` cannot (it repeats one option).

Client subnets are real public prefixes that the GeoIP file places in the bench zone's regions:
random /24s are looked up with maxminddb and kept when their continent, country or subdivision is
served by a region. A small test database (MaxMind's test file maps a few dozen networks) has
too few such /24s; its networks are then carved into IPv4 /32s and IPv6 /56s instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import random
import struct
from collections import Counter
from pathlib import Path

import maxminddb
import yaml

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv4 ranges that are not global unicast (RFC 6890 and multicast/reserved), as integer ranges.
_NOT_GLOBAL = [
    (int(n.network_address), int(n.broadcast_address))
    for n in map(ipaddress.IPv4Network, (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    ))
]
EDNS_PAYLOAD = 1232
ECS_OPTION = 8


def cache_dir() -> Path:
    """Generated query files live here, outside git ($GSLB_BENCH_CACHE overrides)."""
    base = os.environ.get("GSLB_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gslb-bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text_query(path: Path, name: str, rtype: str = "A") -> Path:
    path.write_text(f"{name} {rtype}\n")
    return path


# --- which region a GeoIP record belongs to, by the zone's `serves:` codes -------------------------

def zone_serves(zone_file: Path) -> dict[str, str]:
    """Geo code (EU, AS-JP, NA-US-CA) -> region name, from a zone YAML's regions."""
    doc = yaml.safe_load(zone_file.read_text())
    return {code: region for region, spec in doc["regions"].items() for code in spec.get("serves", [])}


def region_of(record: dict | None, serves: dict[str, str]) -> str | None:
    if not record:
        return None
    continent = (record.get("continent") or {}).get("code")
    country = (record.get("country") or {}).get("iso_code")
    subdivisions = record.get("subdivisions") or []
    codes = []
    if continent and country and subdivisions:
        codes.append(f"{continent}-{country}-{subdivisions[0].get('iso_code')}")
    if continent and country:
        codes.append(f"{continent}-{country}")
    if continent:
        codes.append(continent)
    for code in codes:
        if code in serves:
            return serves[code]
    return None


# --- picking client subnets ----------------------------------------------------------------------

def pick_subnets(mmdb: Path, serves: dict[str, str], count: int, seed: int = 1) -> list[tuple[Network, str]]:
    """`count` distinct client subnets, as evenly spread over the regions as the data allows."""
    regions = sorted(set(serves.values()))
    reader = maxminddb.open_database(str(mmdb))
    try:
        chosen: dict[Network, str] = {}
        if reader.metadata().node_count > 200_000:  # a real database: sample random public /24s
            _sample_slash24s(reader, serves, regions, count, seed, chosen)
        if len(chosen) < count:
            _carve_networks(reader, serves, regions, count, chosen)
    finally:
        reader.close()
    if len(chosen) < count:
        raise SystemExit(f"bench: {mmdb} places only {len(chosen)} distinct subnets in the zone's regions; "
                         f"{count} wanted")
    subnets = list(chosen.items())
    random.Random(seed).shuffle(subnets)
    return subnets


def _sample_slash24s(reader, serves, regions, count, seed, chosen) -> None:
    rng = random.Random(seed)
    per_region: Counter[str] = Counter()
    cap = math.ceil(count / len(regions))  # even first; relaxed when a small region runs dry
    attempts, budget = 0, max(3 * count, 500_000)
    while len(chosen) < count and attempts < 3 * budget:
        attempts += 1
        if attempts == budget:
            cap = count
        start = rng.randrange(1 << 24) << 8
        if any(low <= start <= high for low, high in _NOT_GLOBAL):
            continue
        record, _ = reader.get_with_prefix_len(ipaddress.IPv4Address(start))
        region = region_of(record, serves)
        if region is None or per_region[region] >= cap:
            continue
        network = ipaddress.IPv4Network((start, 24))
        if network not in chosen:
            chosen[network] = region
            per_region[region] += 1


def _carve_networks(reader, serves, regions, count, chosen) -> None:
    """Enumerate the database's networks and carve them into IPv4 /32s and IPv6 /56s, taking
    from the regions in turn (for small test databases)."""
    by_region: dict[str, list[Network]] = {r: [] for r in regions}
    for network, record in reader:
        region = region_of(record, serves)
        if region is not None and not network.is_private:
            by_region[region].append(network)

    def carve(networks):  # round-robin over the region's networks, one subnet from each in turn
        iterators = [n.subnets(new_prefix=32 if n.version == 4 else max(56, n.prefixlen)) for n in networks]
        while iterators:
            for iterator in list(iterators):
                subnet = next(iterator, None)
                if subnet is None:
                    iterators.remove(iterator)
                else:
                    yield subnet

    sources = {r: carve(by_region[r]) for r in regions if by_region[r]}
    while len(chosen) < count and sources:
        for region, source in list(sources.items()):
            subnet = next(source, None)
            if subnet is None:
                del sources[region]
            elif subnet not in chosen:
                chosen[subnet] = region
            if len(chosen) >= count:
                break


# --- wire messages -------------------------------------------------------------------------------

def qname_wire(name: str) -> bytes:
    labels = [label.encode() for label in name.rstrip(".").split(".")]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def ecs_query(qname: bytes, subnet: Network, qtype: int = 1) -> bytes:
    """A query (ID 0, RD, EDNS payload 1232) with an ECS option for `subnet`, by templating.
    The same bytes as dnspython's make_query(..., options=[ECSOption(...)]) with id 0."""
    prefix = subnet.prefixlen
    address = subnet.network_address.packed[: (prefix + 7) // 8]
    option = struct.pack("!HBB", 1 if subnet.version == 4 else 2, prefix, 0) + address
    rdata = struct.pack("!HH", ECS_OPTION, len(option)) + option
    return (struct.pack("!6H", 0, 0x0100, 1, 0, 0, 1) + qname + struct.pack("!HH", qtype, 1)
            + b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, len(rdata)) + rdata)


def read_query_file(path: Path) -> list[bytes]:
    """The messages of a -B file (each preceded by its 2-byte length)."""
    data = path.read_bytes()
    messages, position = [], 0
    while position < len(data):
        (length,) = struct.unpack_from("!H", data, position)
        messages.append(data[position + 2:position + 2 + length])
        position += 2 + length
    return messages


def renamed(messages: list[bytes], old: str, new: str, rtype: str = "A") -> list[bytes]:
    """The same queries asking `new` (type `rtype`) instead of `old`: the question follows the
    12-byte header, so the rest of each message (its EDNS and ECS option) is kept as it is."""
    import dns.rdatatype

    before, after = qname_wire(old), qname_wire(new)
    qtype = struct.pack("!H", dns.rdatatype.from_text(rtype))
    end = 12 + len(before)
    return [m[:12] + after + qtype + m[end + 2:] if m[12:end] == before else m for m in messages]


def with_do(message: bytes) -> bytes:
    """The query with the DNSSEC OK bit set in its OPT record (the message's last RR, right after
    the question; dnsperf -D does not touch the messages of a -B file)."""
    position = 12
    while message[position]:
        position += message[position] + 1
    opt = position + 5  # past the question's name end, type and class: the OPT's root name
    assert message[opt:opt + 3] == b"\x00\x00\x29", "no OPT record after the question"
    flags = opt + 7  # name (1), type (2), class (2), extended rcode (1), version (1)
    return message[:flags] + bytes((message[flags] | 0x80,)) + message[flags + 1:]


def renamed_query_file(source: Path, old: str, new: str, rtype: str, path: Path, do: bool = False) -> Path:
    """A -B file of `source`'s queries renamed (`renamed`): another name, the same client subnets;
    with `do`, the DNSSEC OK bit set in each."""
    messages = renamed(read_query_file(source), old, new, rtype)
    if do:
        messages = [with_do(m) for m in messages]
    path.write_bytes(b"".join(struct.pack("!H", len(m)) + m for m in messages))
    return path


def ecs_query_dnspython(name: str, subnet: Network) -> bytes:
    import dns.edns
    import dns.message

    query = dns.message.make_query(name, "A", use_edns=0, payload=EDNS_PAYLOAD,
                                   options=[dns.edns.ECSOption(str(subnet.network_address), subnet.prefixlen)])
    query.id = 0
    return query.to_wire()


def ecs_query_file(name: str, mmdb: Path, zone_file: Path, count: int, seed: int = 1) -> tuple[Path, dict]:
    """A cached -B file of `count` queries for `name`, one distinct client subnet each, and its
    summary: {"regions": {region: subnets}, "examples": {region: one subnet}}. Up to 100,000
    queries are built with dnspython; more by templating (checked against dnspython on a sample)."""
    serves = zone_serves(zone_file)
    stat = mmdb.stat()
    key = hashlib.sha256(json.dumps([str(mmdb.resolve()), stat.st_size, stat.st_mtime_ns, sorted(serves.items()),
                                     name, count, seed]).encode()).hexdigest()[:16]
    path = cache_dir() / f"ecs-{count}-{key}.bin"
    summary_path = path.with_suffix(".json")
    if path.exists() and summary_path.exists():
        return path, json.loads(summary_path.read_text())
    subnets = pick_subnets(mmdb, serves, count, seed)
    qname = qname_wire(name)
    for subnet, _ in subnets[:1000]:
        assert ecs_query(qname, subnet) == ecs_query_dnspython(name, subnet), subnet
    build = (lambda s: ecs_query_dnspython(name, s)) if count <= 100_000 else (lambda s: ecs_query(qname, s))
    chunks = []
    for subnet, _ in subnets:
        message = build(subnet)
        chunks.append(struct.pack("!H", len(message)))
        chunks.append(message)
    partial = path.with_suffix(".part")
    partial.write_bytes(b"".join(chunks))
    partial.rename(path)
    examples: dict[str, str] = {}
    for subnet, region in subnets:
        examples.setdefault(region, str(subnet))
    summary = {"regions": dict(sorted(Counter(region for _, region in subnets).items())),
               "examples": dict(sorted(examples.items()))}
    summary_path.write_text(json.dumps(summary))
    return path, summary
