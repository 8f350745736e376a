"""The fast path: the common UDP query answered from bytes prepared at load.

The general path (`answer.py`, dnslib objects) costs ~70 us a query; this one reads the header
and question by hand, looks the (name, type) up in a dict of pre-packed answers, and joins bytes.
It never decides anything itself: every static answer here is what `lookup.py` - the general
path's own RFC 1034 lookup - gives for that name and type, packed once at load, and a GSLB
answer follows a `gslb.plan` Plan: the general path's decision over the same Selector, its
region-and-health part kept per health version and its rotation laid out as pre-packed bodies.
Whatever it does not recognise - TCP, a malformed or unusual packet, CH, ANY, NSID, a name at a
delegation, a reply that would need truncation - it declines (returns None) and the general path
answers. `tests/test_fastpath_differential.py` holds the two to the same answers over a large
generated query set, stateful policies included.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dnslib import RR, DNSLabel
from dnslib.label import DNSBuffer

from gslb.dns import ecs
from gslb.dns.client import client_address
from gslb.dns.dnssec_answer import APEX_KEY_TYPES, apex_keys, signer_of
from gslb.dns.lookup import C_IN, REFUSED, T_ANY, T_AXFR, T_CNAME, T_IXFR, Reply, lookup, nodata, nxdomain
from gslb.dynamic import DynamicRecord, Endpoint
from gslb.health.status import ALWAYS_UP, HealthView
from gslb.names import Name, is_wildcard
from gslb.plan import Plan, Planner, Plans
from gslb.resolve import Place, RegionLocator, Resolver, place, place_subnet
from gslb.stats import CountKey
from gslb.zone import Catalog, Found, Node, Zone

MAX_CACHE = 200_000  # region placements kept per zone (ECS option bytes or source address)
# Queries seen, by their bytes after the ID: the packet cache (PowerDNS's idea). A hit skips the
# parse: a static reply is its stored bytes behind the query's ID, a GSLB reply one schedule
# step between stored bytes. Bounded in entries and in the size of what is kept (typically
# ~300 bytes an entry, at most ~1 KB: under 17 MB per cache when full); cleared whole when
# full, like the placement caches.
MAX_PACKETS = 16_384
MAX_PACKET_SIZE = 320  # queries longer than this are answered, never kept
MAX_KEPT_REPLY = 512  # nor are static replies longer than this
_place = tuple.__new__  # a Place without NamedTuple's Python-level __new__
_from_bytes = int.from_bytes
_U16 = tuple(n.to_bytes(2, "big") for n in range(256))
# GSLB queries with ECS are also kept by shape: their bytes without the ECS address, when the
# option comes last, for addresses of 3 and 7 bytes (the /24 and /56 RFC 7871 section 11.1 asks
# resolvers to send). Every client subnet asking the same question shares one shape, so a
# resolver's ten thousandth subnet costs what its first did less the parse.
SHAPED_ADDRESS_SIZES = (3, 7)
_BYTE = tuple(bytes((n,)) for n in range(256))


class _NoCompression(DNSBuffer):  # type: ignore[misc]
    """Rdata packed alone must not point into itself: offsets would be wrong inside a message."""

    def encode_name(self, name):  # type: ignore[no-untyped-def]
        return self.encode_name_nocompress(name)


def wire_name(name: Name) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in name) + b"\x00"


def pack_rr(rr: RR, qname: Name) -> bytes:
    owner = tuple(label.lower() for label in rr.rname.label)
    head = b"\xc0\x0c" if owner == qname else wire_name(owner)
    if rr.rtype == 1 or rr.rtype == 28:  # the bulk of big zones: no buffer needed
        rdata = bytes(rr.rdata.data)
    else:
        buffer = _NoCompression()
        rr.rdata.pack(buffer)
        rdata = bytes(buffer.data)
    return head + struct.pack("!HHIH", rr.rtype, rr.rclass, rr.ttl, len(rdata)) + rdata


@dataclass(frozen=True, slots=True)
class Static:
    """A whole reply body after the question: counts, the flag byte's AA/rcode and the RRs."""

    aa_rcode: tuple[int, int]  # (0x04 or 0, rcode)
    counts: tuple[int, int, int]  # answer, authority, additional (without OPT)
    body: bytes
    zone: str  # metrics label


class Seen:
    """A GSLB query in the packet cache: everything but the answer RRs, which the plan gives."""

    __slots__ = ("entry", "region", "client", "head", "middle", "tail", "limit", "zone", "qtype", "ecs")

    def __init__(self, entry: Dynamic, where: Place, head: bytes, middle: bytes, tail: bytes, limit: int,
                 qtype: int, had_ecs: bool) -> None:
        self.entry = entry
        self.region = where[0]  # the client's region: the plan's key
        self.client = where[3]  # the address as an int, for the policies that pick per query
        self.head = head  # flags and QDCOUNT
        self.middle = middle  # NSCOUNT, ARCOUNT, the question
        self.tail = tail  # the OPT record, its ECS scope set
        self.limit = limit  # the reply size the query allows
        self.zone = entry.zone
        self.qtype = qtype
        self.ecs = had_ecs  # the query carried an ECS option (counted as such)


def _nowhere(number: int, version: int) -> tuple[str | None, int]:
    return None, 0  # a zone without regions


class Shape:
    """A GSLB question with ECS in the shape cache: the reply's parts but the answer RRs (the
    plan's), the ECS scope (the placement's) and the address (the query's own)."""

    __slots__ = ("entry", "head", "middle", "opt", "limit", "zone", "qtype", "version", "shift", "host_bits", "place",
                 "scopes", "signed", "offset")

    def __init__(self, entry: Dynamic, head: bytes, middle: bytes, opt: bytes, limit: int, qtype: int,
                 subnet: bytes, scopes: tuple[bytes, ...], signed: tuple[bytes, bytes] | None) -> None:
        self.entry = entry
        self.head = head  # flags and QDCOUNT
        self.middle = middle  # NSCOUNT, ARCOUNT, the question
        self.opt = opt  # the OPT record up to the ECS option's SCOPE PREFIX-LENGTH
        self.limit = limit
        self.zone = entry.zone
        self.qtype = qtype
        # FAMILY and SOURCE PREFIX-LENGTH are the shape's, checked when it was made: what reading
        # an address of this shape needs (ecs.subnet_number's work, done once).
        bits = 32 if subnet[1] == ecs.FAMILY_IPV4 else 128
        self.version = 4 if bits == 32 else 6
        self.shift = bits - 8 * (len(subnet) - 4)
        self.host_bits = (1 << (bits - subnet[2])) - 1
        self.offset = 0 if bits == 32 else 1 << 128  # IPv6 keys of Dynamic.numbers past every IPv4 one
        self.scopes = scopes  # the reply's SCOPE PREFIX-LENGTH byte for each region scope
        # A DO query to a signed zone: (the question's name, wire and lowercase; that and its type),
        # whose answer gets its RRSIGs from SignedAnswers.rrsig at each hit (signatures are
        # refreshed, so never kept here).
        self.signed = signed
        region_map = entry.region_map
        self.place: Callable[[int, int], tuple[str | None, int]] = (
            region_map.place_number if region_map is not None else _nowhere)


@dataclass(frozen=True, slots=True)
class Dynamic:
    region_map: RegionLocator | None
    record: DynamicRecord
    cache: dict[bytes | str, Place]  # ECS option bytes / source address -> where the client falls
    zone: str  # metrics label
    plans: Plans = field(default_factory=dict)  # the client's region -> the record's plan (gslb/plan.py)
    # Shapes' placements, per zone like `cache`: the address as an int (IPv6 ones offset past
    # 2**128) -> (region, region scope). An int key is cheap to hash; a miss costs ~1 us.
    numbers: dict[int, tuple[str | None, int]] = field(default_factory=dict)


class SignedAnswers(Protocol):
    """DO answers for signed zones, packed and kept (gslb/dns/fastpath_dnssec.py's SignedFast)."""

    def static(self, name: bytes, qtype: bytes) -> Static | None: ...
    def rrsig(self, zone: str, key: bytes, qname: bytes, endpoints: Sequence[Endpoint],
              degraded: bool) -> tuple[bytes, int]: ...


def _leaves_catalog(catalog: Catalog, record: DynamicRecord) -> bool:
    """Whether every name a GSLB CNAME record can answer with is outside the zones served here."""
    fixed = record.when_all_down if isinstance(record.when_all_down, tuple) else ()
    return all(catalog.zone_for(tuple(part.lower() for part in e.record.rdata.label.label)) is None
               for e in (*record.endpoints, *fixed))


def _no_planner(record: DynamicRecord, region: str | None, plans: Plans) -> Plan:
    raise RuntimeError("a GSLB entry in a fast path built without a resolver")


def _static_from(reply: Reply, qname: Name, zone: str) -> Static:
    sections = (reply.answer, reply.authority, reply.additional)
    body = b"".join(pack_rr(rr, qname) for section in sections for rr in section)
    counts = (len(reply.answer), len(reply.authority), len(reply.additional))
    return Static((0x04 if reply.authoritative else 0, reply.rcode), counts, body, zone)


def _synthesis_is_uniform(catalog: Catalog, source: Node) -> bool:
    """Whether the '*' name's own table entries are what every name it synthesises gets, owner
    aside. Only a CNAME chain can tell them apart: one that comes back to a synthesised name (or
    to the '*' name) stops at a different place for each question. Those go to the general path."""
    if source.cname is None:
        return True
    owner = DNSLabel(list(source.name))
    for qtype in (1, 28):
        for rr in lookup(catalog, source.name, owner, qtype).answer:
            if rr.rtype != T_CNAME:
                continue
            target = tuple(label.lower() for label in rr.rdata.label.label)
            zone = catalog.zone_for(target)
            if is_wildcard(target) or zone is not None and zone.find(target)[0] is Found.WILDCARD:
                return False
    return True


class FastPath:
    def __init__(self, catalog: Catalog, resolver: Resolver | None, edns_size: int) -> None:
        """Tables for every zone of `catalog`; GSLB answers from `resolver` (None: GSLB records
        are left to the general path). `edns_size` is the UDP payload size the server offers."""
        self.resolver = resolver
        # GSLB answers follow plans over the resolver's Selector (gslb/plan.py): the same decision
        # as Resolver.decide's, its region-and-health part kept per health version.
        planner = Planner(resolver.selector) if resolver is not None else None
        self._plan: Callable[[DynamicRecord, str | None, Plans], Plan] = (
            planner.plan if planner is not None else _no_planner)
        self._health: HealthView = planner.health if planner is not None else ALWAYS_UP
        self.edns_size = edns_size
        self.table: dict[bytes, Static | Dynamic] = {}
        self.nodata: dict[bytes, Static] = {}  # name -> NODATA for types not in the table
        self.above: dict[bytes, Static | None] = {}  # existing names/ENTs/origins: NXDOMAIN below, or None (general path)
        # RFC 4592: closest encloser -> its '*' child, whose table entries answer every name the
        # wildcard synthesises (their owners already point at the question, c00c).
        self.wild: dict[bytes, bytes] = {}
        self._clients: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        # ECS options already decoded without error: a static answer to an ECS query only needs
        # to know the option is valid, and decoding it every time was ~40% of that answer's cost.
        self._valid_options: set[bytes] = set()
        # Query bytes after the ID -> the reply's parts: (bytes after the ID, metrics key, ECS) for
        # a static reply, a Seen for a GSLB one placed by ECS. No signature is kept (signers
        # refresh them): signed static answers are never kept, signed GSLB ones only as shapes.
        self._packets: dict[bytes, tuple[bytes, CountKey, bool] | Seen] = {}
        # By ECS address size: the query's bytes after the ID, less the address -> its Shape.
        self._shapes: tuple[tuple[int, dict[bytes, Shape]], ...] = tuple(
            (size, {}) for size in SHAPED_ADDRESS_SIZES)
        self._shaped = 0  # shapes kept, over all sizes
        # GSLB queries placed by their source address (no ECS address), by (bytes after the ID,
        # source): most resolvers send no ECS, and each resolver asks the same questions again.
        self._sourced: dict[tuple[bytes, str], Seen] = {}
        self._scopes_by_record: dict[tuple[int, int], tuple[bytes, ...]] = {}  # id() of entries in self.table
        # A child zone served here answers every name below its origin, whatever its parent holds
        # there: its origin is a cut for the parent, and parents are compiled first, so the
        # child's entries are the ones left in the tables.
        origins = {zone.origin for zone in catalog.zones}
        inner: dict[Name, set[Name]] = {}
        for zone in catalog.zones:
            for start in range(1, len(zone.origin) + 1):
                if zone.origin[start:] in origins:
                    inner.setdefault(zone.origin[start:], set()).add(zone.origin)
        for zone in sorted(catalog.zones, key=lambda z: len(z.origin)):
            self._compile(catalog, zone, inner.get(zone.origin, set()))
        # DO queries to signed zones are answered by `dnssec`, which the build step sets
        # (gslb/dns/fastpath_dnssec.py); without it they take the general path.
        self.signed_zones = frozenset(zone.label for zone in catalog.zones if signer_of(zone) is not None)
        self.dnssec: SignedAnswers | None = None
        self.refused = _static_from(Reply(rcode=REFUSED, authoritative=False), (), "")

    # -- the build step --------------------------------------------------------------------------
    def _compile(self, catalog: Catalog, zone: Zone, children: set[Name]) -> None:
        """Index one zone. NXDOMAIN and NODATA replies are the same for every name of a zone (the
        negative SOA), so they are built once per zone from its SOA; a plain RRset is its records
        with the owner pointing at the question; a CNAME chain is what `lookup` answers for it,
        unless the chain ends at a GSLB record. Everything below a delegation stays with the
        general path."""
        cuts = set(zone.referrals) | children

        def below_cut(name: Name) -> bool:
            return any(name[len(name) - len(cut):] == cut for cut in cuts)

        label = zone.label
        nx_static = _static_from(nxdomain(zone), (), label)
        nodata_static = _static_from(nodata(zone), (), label)
        placements: dict[bytes | str, Place] = {}  # one region cache per zone, shared by its GSLB records
        numbers: dict[int, tuple[str | None, int]] = {}  # and the shapes' one
        self.above[wire_name(zone.origin)] = nx_static
        for name in zone.nonterminals:
            key = wire_name(name)
            self.above[key] = None if below_cut(name) else nx_static
            if not below_cut(name):
                self.nodata[key] = nodata_static
        apex_glue = [rr for rrset in zone.apex_glue for rr in rrset.records]
        for name, node in zone.nodes.items():
            key = wire_name(name)
            if below_cut(name):
                self.above[key] = None  # referrals, glue, DS: the general path
                continue
            self.above[key] = nx_static
            if self.resolver is not None:
                for qtype, record in node.dynamic.items():
                    entry = Dynamic(zone.region_map, record, placements, label, numbers=numbers)
                    self.table[key + struct.pack("!HH", qtype, C_IN)] = entry
                    if qtype == T_CNAME and _leaves_catalog(catalog, record):
                        # A and AAAA get the CNAME alone, the same bytes; a target served here
                        # would be followed (RFC 1034 4.3.2): the general path does that.
                        for chased in (1, 28):
                            self.table[key + struct.pack("!HH", chased, C_IN)] = entry
            if T_CNAME in node.dynamic:
                continue  # other types at a GSLB CNAME: the general path
            if node.cname is not None:
                owner = DNSLabel(list(name))
                for qtype in (1, 28, T_CNAME):
                    reply = lookup(catalog, name, owner, qtype)
                    if not reply.client_dependent:  # a chain to a GSLB record: the general path
                        self.table[key + struct.pack("!HH", qtype, C_IN)] = _static_from(reply, name, label)
                continue  # other types at a CNAME: the general path
            for qtype, rrset in node.rrsets.items():
                answer = b"".join(pack_rr(rr, name) for rr in rrset.records)
                glue = b""
                glue_count = 0
                if qtype == 2 and name == zone.origin:
                    glue = b"".join(pack_rr(rr, name) for rr in apex_glue)
                    glue_count = len(apex_glue)
                self.table[key + struct.pack("!HH", qtype, C_IN)] = Static(
                    (0x04, 0), (len(rrset.records), 0, glue_count), answer + glue, label)
            if not node.dynamic or self.resolver is not None:
                self.nodata[key] = nodata_static
        for encloser, source in zone.wildcards.items():
            if below_cut(source.name):
                continue
            if _synthesis_is_uniform(catalog, source):
                self.wild[wire_name(encloser)] = wire_name(source.name)
            else:
                self.above[wire_name(encloser)] = None  # every name it synthesises: the general path
        for qtype in APEX_KEY_TYPES:  # a signed zone's DNSKEY, CDS, CDNSKEY: zone data, DO or not
            keys = apex_keys(catalog, zone.origin, DNSLabel(list(zone.origin)), qtype)
            if keys is not None:
                self.table[wire_name(zone.origin) + struct.pack("!HH", qtype, C_IN)] = _static_from(keys, zone.origin, label)

    # -- the hot path ----------------------------------------------------------------------------
    def answer(self, data: bytes, source: str) -> tuple[bytes, CountKey, bool] | None:
        """(the reply, its metrics key, whether it carried ECS), or None to let the general path
        answer. `source` is the packet's source address as the socket gives it (text)."""
        rest = data[2:]  # every cache's key but the shapes' (bytes keep their hash: hashed once)
        seen = self._packets.get(rest)
        if seen is not None:
            if isinstance(seen, tuple):
                return data[0:2] + seen[0], seen[1], seen[2]
            return self._again(data, seen)
        size = len(data)
        if self._shaped:
            for address_size, shapes in self._shapes:
                shape = shapes.get(data[2:size - address_size])
                if shape is not None:
                    return self._answer_shape(data, shape, size - address_size)
        if self._sourced:
            seen = self._sourced.get((rest, source))
            if seen is not None:
                return self._again(data, seen)
        if size < 17 or data[2] & 0xFE or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None  # QR/opcode/AA/TC set, or not exactly one question and nothing else
        arcount = data[10:12]
        position = 12
        try:
            length = data[position]
            while length:
                if length > 63:
                    return None  # compression in a question, or a bad label: the general path
                position += length + 1
                length = data[position]
        except IndexError:
            return None
        qend = position + 1
        if qend - 12 > 255:
            return None  # longer than a name may be: FORMERR from the general path
        end = qend + 4
        if end > size:
            return None
        if data[qend + 2:end] != b"\x00\x01":
            return None  # not class IN
        name = data[12:qend].lower()
        # -- EDNS ----------------------------------------------------------------------------
        subnet = None
        subnet_end = 0
        if arcount == b"\x00\x00":
            if end != size:
                return None
            edns = False
            limit = 512
            do_bit = 0
        elif arcount == b"\x00\x01":
            # OPT: root name, type 41, class = UDP size, ttl = ext-rcode/version/flags, rdlen
            if size < end + 11 or data[end:end + 3] != b"\x00\x00\x29" or data[end + 6] != 0:
                return None  # not an OPT at the root, or EDNS version > 0 (BADVERS)
            edns = True
            udp_size = (data[end + 3] << 8) | data[end + 4]
            limit = udp_size if 512 < udp_size < self.edns_size else (512 if udp_size <= 512 else self.edns_size)
            do_bit = data[end + 7] & 0x80
            rdlen = (data[end + 9] << 8) | data[end + 10]
            position = end + 11
            if position + rdlen != size:
                return None
            while position < size:
                if position + 4 > size:
                    return None
                code = (data[position] << 8) | data[position + 1]
                olen = (data[position + 2] << 8) | data[position + 3]
                value = data[position + 4:position + 4 + olen]
                if len(value) != olen:
                    return None
                if code == 8:
                    if subnet is None:
                        subnet = value
                        subnet_end = position + 4 + olen
                elif code == 3:
                    return None  # NSID: the general path
                position += 4 + olen
        else:
            return None
        # -- lookup --------------------------------------------------------------------------
        entry = self.table.get(name + data[qend:qend + 2] + b"\x00\x01")
        if entry is None:
            qtype = (data[qend] << 8) | data[qend + 1]
            if qtype in (T_ANY, T_AXFR, T_IXFR) or qtype >= 128 and qtype < 256 or qtype == 41:
                return None
            entry = self.nodata.get(name)
            if entry is None:
                entry = self._nxdomain_for(name, data[qend:end])
                if entry is None:
                    return None
        scope = 0
        if entry.__class__ is Dynamic:
            # Where the client falls: cached per ECS option bytes (with an address) or per source.
            if subnet is None:
                where = entry.cache.get(source)
            elif len(subnet) > 4 and subnet[2]:
                where = entry.cache.get(subnet)
            else:
                where = None  # ECS without an address: checked, then the source is the key
            if where is None:
                where = self._place(entry, subnet, source)
                if where is None:
                    return None  # a malformed ECS option: FORMERR from the general path
            # What the region's answer depends on besides the client, kept per health version.
            plan = entry.plans.get(where[0])
            if plan is None or plan.version != self._health.version:
                plan = self._plan(entry.record, where[0], entry.plans)
            if plan.servfail:
                return None
            body, ancount, endpoints = plan.answer(where[3])
            if not ancount:
                return None  # every endpoint forced down: a NODATA with the SOA, from the general path
            scope = plan.scope(where[2], where[1]) if where[4] else 0
            region = plan.label
            rcode = 0
            flags = bytes((0x84 | (data[2] & 0x01), data[3] & 0x10))
            if do_bit and entry.zone in self.signed_zones:
                if not endpoints or self.dnssec is None:
                    return None  # nothing to sign, or no signed answers here: the general path
                rrsig, signatures = self.dnssec.rrsig(
                    entry.zone, name + data[qend:qend + 2] + body, name, endpoints, plan.degraded)
                body += rrsig
                ancount += signatures
            counts = struct.pack("!HHH", ancount, 0, 1 if edns else 0)
        else:
            if do_bit and entry.zone in self.signed_zones:
                entry = self.dnssec.static(name, data[qend:qend + 2]) if self.dnssec is not None else None
                if entry is None:
                    return None
            aa, rcode = entry.aa_rcode  # type: ignore[union-attr]
            region = ""
            flags = bytes((0x80 | aa | (data[2] & 0x01), (data[3] & 0x10) | rcode))
            an, ns, ar = entry.counts  # type: ignore[union-attr]
            counts = struct.pack("!HHH", an, ns, ar + 1 if edns else ar)
            body = entry.body  # type: ignore[union-attr]
            if subnet is not None and not self._valid_subnet(subnet):
                return None  # malformed ECS: FORMERR from the general path
        reply = data[0:2] + flags + b"\x00\x01" + counts + data[12:end] + body
        if edns:
            if subnet is not None:
                option = subnet[0:3] + bytes((scope,)) + subnet[4:]
                reply += b"\x00\x00\x29" + struct.pack("!HBBBBH", self.edns_size, 0, 0, do_bit, 0, len(option) + 4) \
                    + b"\x00\x08" + struct.pack("!H", len(option)) + option
            else:
                reply += b"\x00\x00\x29" + struct.pack("!HBBBBH", self.edns_size, 0, 0, do_bit, 0, 0)
        if len(reply) > limit:
            return None  # truncation: the general path
        key = (entry.zone, (data[qend] << 8) | data[qend + 1], rcode, "udp", region)
        if size <= MAX_PACKET_SIZE:
            # Signed answers (DO to a signed zone) are kept only as shapes, which sign at each hit.
            signed = do_bit and entry.zone in self.signed_zones
            if entry.__class__ is not Dynamic:
                if len(reply) <= MAX_KEPT_REPLY and not signed:
                    self._keep(rest, (reply[2:], key, subnet is not None))
            elif subnet is not None and where is not None and where[4] and plan is not None:  # placed by ECS
                # The reply: ID, flags, QDCOUNT | ANCOUNT | NSCOUNT, ARCOUNT, question | RRs | OPT.
                address_size = len(subnet) - 4
                if subnet_end == size and address_size in SHAPED_ADDRESS_SIZES:
                    self._keep_shape(data[2:size - address_size], address_size, Shape(
                        entry, reply[2:6], reply[8:end], reply[end + len(body):len(reply) - address_size - 1],
                        limit, key[1], subnet, self._scope_bytes(entry, subnet[1], plan.scope),
                        (name, name + data[qend:qend + 2]) if signed else None))
                elif not signed:
                    self._keep(rest, Seen(entry, where, reply[2:6], reply[8:end], reply[end + len(body):],
                                          limit, key[1], True))
            elif where is not None and not signed:  # placed by the source address: kept per source
                sourced = self._sourced
                if len(sourced) >= MAX_PACKETS:
                    sourced.clear()
                sourced[(rest, source)] = Seen(entry, where, reply[2:6], reply[8:end], reply[end + len(body):],
                                                   limit, key[1], subnet is not None)
        return reply, key, subnet is not None

    def _keep(self, key: bytes, kept: tuple[bytes, CountKey, bool] | Seen) -> None:
        packets = self._packets
        if len(packets) >= MAX_PACKETS:
            packets.clear()
        packets[key] = kept

    def _scope_bytes(self, entry: Dynamic, family: int, scope: Callable[[int, int], int]) -> tuple[bytes, ...]:
        """The SCOPE PREFIX-LENGTH byte for each region scope, by the record's policy (Plan.scope,
        the same for every plan of the record): worked out once per record and family."""
        key = (id(entry), family)
        scopes = self._scopes_by_record.get(key)
        if scopes is None:
            version, bits = (4, 32) if family == ecs.FAMILY_IPV4 else (6, 128)
            scopes = self._scopes_by_record[key] = tuple(_BYTE[scope(version, prefix)] for prefix in range(bits + 1))
        return scopes

    def _keep_shape(self, key: bytes, address_size: int, shape: Shape) -> None:
        if self._shaped >= MAX_PACKETS:
            for _, shapes in self._shapes:
                shapes.clear()
            self._shaped = 0
        for size, shapes in self._shapes:
            if size == address_size:
                if key not in shapes:
                    self._shaped += 1
                shapes[key] = shape

    def _answer_shape(self, data: bytes, shape: Shape, address_at: int) -> tuple[bytes, CountKey, bool] | None:
        """A GSLB query with ECS whose shape the cache holds: placed by its own address, then the
        plan's next answer between the shape's parts."""
        entry = shape.entry
        number = _from_bytes(data[address_at:], "big") << shape.shift
        if number & shape.host_bits:
            return None  # address bits past the source prefix: FORMERR from the general path
        numbers = entry.numbers
        placed = numbers.get(number + shape.offset)
        if placed is None:
            placed = shape.place(number, shape.version)
            if len(numbers) >= MAX_CACHE:
                numbers.clear()
            numbers[number + shape.offset] = placed
        region, region_scope = placed
        plan = entry.plans.get(region)
        if plan is None or plan.version != self._health.version:
            plan = self._plan(entry.record, region, entry.plans)
        if plan.servfail:
            return None
        body, ancount, endpoints = plan.answer(number)
        if not ancount:
            return None  # every endpoint forced down: a NODATA with the SOA, from the general path
        signed = shape.signed
        if signed is not None:
            if self.dnssec is None:
                return None
            rrsig, signatures = self.dnssec.rrsig(entry.zone, signed[1] + body, signed[0], endpoints, plan.degraded)
            body += rrsig
            ancount += signatures
        count = _U16[ancount] if ancount < 256 else ancount.to_bytes(2, "big")
        reply = b"".join((data[0:2], shape.head, count, shape.middle, body, shape.opt,
                          shape.scopes[region_scope], data[address_at:]))
        if len(reply) > shape.limit:
            return None
        return reply, (shape.zone, shape.qtype, 0, "udp", plan.label), True

    def _again(self, data: bytes, seen: Seen) -> tuple[bytes, CountKey, bool] | None:
        """A GSLB query the packet cache has seen: the plan's next answer between its parts."""
        entry = seen.entry
        plan = entry.plans.get(seen.region)
        if plan is None or plan.version != self._health.version:
            plan = self._plan(entry.record, seen.region, entry.plans)
        if plan.servfail:
            return None
        body, ancount, _ = plan.answer(seen.client)
        if not ancount:
            return None  # every endpoint forced down: a NODATA with the SOA, from the general path
        count = _U16[ancount] if ancount < 256 else ancount.to_bytes(2, "big")
        reply = b"".join((data[0:2], seen.head, count, seen.middle, body, seen.tail))
        if len(reply) > seen.limit:
            return None
        return reply, (seen.zone, seen.qtype, 0, "udp", plan.label), seen.ecs

    def _client(self, source: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        client = self._clients.get(source)
        if client is None:
            if len(self._clients) >= MAX_CACHE:
                self._clients.clear()
            client = self._clients[source] = client_address(source)
        return client

    def _nxdomain_for(self, name: bytes, qtype_class: bytes) -> Static | Dynamic | None:
        """NXDOMAIN when the nearest existing ancestor (the closest encloser) is in a zone and not
        below a cut - unless its '*' child synthesises the answer (RFC 4592)."""
        above = self.above
        if name in above:
            return None  # the name exists, but this type is not precomputed: the general path
        position = 0
        while name[position] != 0:
            position += name[position] + 1
            found = above.get(name[position:], False)
            if found is not False:
                if self.wild:
                    source = self.wild.get(name[position:])
                    if source is not None:
                        entry = self.table.get(source + qtype_class)
                        return entry if entry is not None else self.nodata.get(source)
                return found  # type: ignore[return-value]
        return self.refused

    def _valid_subnet(self, option: bytes) -> bool:
        valid = self._valid_options
        if option in valid:
            return True
        try:
            ecs.decode(option)
        except ecs.EcsError:
            return False
        if len(valid) >= MAX_CACHE:
            valid.clear()
        valid.add(option)
        return True

    def _place(self, entry: Dynamic, subnet: bytes | None, source: str) -> Place | None:
        """Where the client falls, placed and cached; None for a malformed ECS option."""
        cache = entry.cache
        if subnet is not None and len(subnet) > 4 and subnet[2]:
            # An ECS address (non-zero SOURCE PREFIX-LENGTH): the option's bytes are the key.
            # Placed from the bytes: a million distinct subnets miss this cache every time.
            placed = place_subnet(entry.region_map, subnet)
            if placed is None:
                return None
            where = placed
            key: bytes | str = subnet
        else:
            if subnet is not None and not self._valid_subnet(subnet):
                return None
            known = cache.get(source)
            if known is not None:
                return known
            where = place(entry.region_map, self._client(source), None)
            key = source
        if len(cache) >= MAX_CACHE:
            cache.clear()
        cache[key] = where
        return where
