"""The fast path: the common UDP query answered from bytes prepared at load.

The general path (`answer.py`, dnslib objects) costs ~70 us a query; this one reads the header
and question by hand, looks the (name, type) up in a dict of pre-packed answers, and joins bytes.
It never decides anything itself: every static answer here was produced by the general path at
load (`Answerer._answer` on a synthetic query) and only packed differently, and dynamic answers
use the same Selector. Whatever it does not recognise - TCP, a malformed or unusual packet, CH,
ANY, NSID, a name at a delegation, a reply that would need truncation - it declines (returns
None) and the general path answers. `tests/test_fastpath_differential.py` holds the two to the
same answers over a large generated query set.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from dnslib import RR, DNSLabel, DNSQuestion, DNSRecord
from dnslib.label import DNSBuffer

from gslb.dns import ecs
from gslb.dns.client import client_address
from gslb.dns.answer import (C_IN, T_ANY, T_AXFR, T_CNAME, T_IXFR, Answerer, Reply, Request)
from gslb.dynamic import DynamicRecord
from gslb.names import Name, to_text
from gslb.selection import Selector
from gslb.zone import Catalog, Zone

MAX_CACHE = 200_000  # region placements kept per zone (ECS option bytes or source address)


class _NoCompression(DNSBuffer):
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


@dataclass(frozen=True, slots=True)
class Dynamic:
    zone: Zone
    record: DynamicRecord
    cache: dict  # ECS option bytes / source address -> (region, region scope, version, key)
    label: str  # the zone, for metrics


def _static_from(reply: Reply, qname: Name, zone: str) -> Static:
    sections = (reply.answer, reply.authority, reply.additional)
    body = b"".join(pack_rr(rr, qname) for section in sections for rr in section)
    return Static((0x04 if reply.authoritative else 0, reply.rcode), tuple(len(s) for s in sections), body, zone)


class FastPath:
    def __init__(self, catalog: Catalog, general: Answerer, selector: Selector) -> None:
        self.general = general
        self.selector = selector
        self.edns_size = general.settings.edns_udp_size
        self.table: dict[bytes, Static | Dynamic] = {}
        self.nodata: dict[bytes, Static] = {}  # name -> NODATA for types not in the table
        self.above: dict[bytes, Static | None] = {}  # existing names/ENTs/origins: NXDOMAIN below, or None (general path)
        self._clients: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        for zone in catalog.zones:
            self._compile(zone)
        self.refused = _static_from(Reply(rcode=5, authoritative=False), (), "")
        self.stats = general.stats

    # -- compile ---------------------------------------------------------------------------------
    def _general_reply(self, name: Name, qtype: int) -> Reply:
        question = DNSQuestion(DNSLabel(to_text(name)), qtype, C_IN)
        request = Request(DNSRecord(q=question), question, name, ipaddress.ip_address("127.0.0.1"), False)
        return self.general._answer(request)

    def _compile(self, zone: Zone) -> None:
        """Index one zone. NXDOMAIN and NODATA replies are the same for every name of a zone (the
        negative SOA), so they come from the general path once per zone; a plain RRset is its
        records with the owner pointing at the question; CNAME chains take the general path's
        reply. Everything below a delegation stays with the general path."""
        cuts = set(zone.referrals)
        below_cut = lambda name: any(name[len(name) - len(cut):] == cut for cut in cuts)  # noqa: E731
        label = zone.label
        nx_static = _static_from(self._general_reply((b"gslb-nxdomain-probe",) + zone.origin, 1), (), label)
        nodata = _static_from(self._general_reply(zone.origin, 65280), (), label)
        placements: dict = {}  # one region cache per zone, shared by its GSLB records
        self.above[wire_name(zone.origin)] = nx_static
        for name in zone.nonterminals:
            key = wire_name(name)
            self.above[key] = None if below_cut(name) else nx_static
            if not below_cut(name):
                self.nodata[key] = nodata
        apex_glue = [rr for rrset in zone.apex_glue for rr in rrset.records]
        for name, node in zone.nodes.items():
            key = wire_name(name)
            if below_cut(name):
                self.above[key] = None  # referrals, glue, DS: the general path
                continue
            self.above[key] = nx_static
            for qtype, record in node.dynamic.items():
                self.table[key + struct.pack("!HH", qtype, C_IN)] = Dynamic(zone, record, placements, label)
            if node.cname is not None:
                if not self._chain_is_dynamic(zone, node):
                    for qtype in (1, 28, T_CNAME):
                        reply = self._general_reply(name, qtype)
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
            self.nodata[key] = nodata

    def _chain_is_dynamic(self, zone: Zone, node) -> bool:  # type: ignore[no-untyped-def]
        seen = 0
        while node is not None and node.cname is not None and seen < 9:
            target = tuple(l.lower() for l in node.cname.records[0].rdata.label.label)
            node = zone.nodes.get(target)
            seen += 1
        return node is not None and bool(node.dynamic)

    # -- the hot path ----------------------------------------------------------------------------
    def answer(self, data: bytes, source: str) -> bytes | None:
        """The reply, or None to let the general path answer. `source` is the packet's source
        address as the socket gives it (text)."""
        size = len(data)
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
        if arcount == b"\x00\x00":
            if end != size:
                return None
            edns = False
            limit = 512
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
                entry = self._nxdomain_for(name)
                if entry is None:
                    return None
        scope = 0
        if entry.__class__ is Dynamic:
            found = self._dynamic(entry, subnet, source)
            if found is None:
                return None
            answers, scope, region = found
            rcode = 0
            flags = bytes((0x84 | (data[2] & 0x01), data[3] & 0x10))
            counts = struct.pack("!HHH", len(answers), 0, 1 if edns else 0)
            body = b"".join(answers)
        else:
            aa, rcode = entry.aa_rcode
            region = ""
            flags = bytes((0x80 | aa | (data[2] & 0x01), (data[3] & 0x10) | rcode))
            an, ns, ar = entry.counts
            counts = struct.pack("!HHH", an, ns, ar + 1 if edns else ar)
            body = entry.body
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
        stats = self.stats
        key = (entry.zone if region == "" and entry.__class__ is Static else entry.label,
               (data[qend] << 8) | data[qend + 1], rcode, "udp", region)
        counts = stats.counts
        counts[key] = counts.get(key, 0) + 1
        if subnet is not None:
            stats.ecs += 1
        return reply

    def _client(self, source: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        client = self._clients.get(source)
        if client is None:
            if len(self._clients) >= MAX_CACHE:
                self._clients.clear()
            client = self._clients[source] = client_address(source)
        return client

    def _nxdomain_for(self, name: bytes) -> Static | None:
        """NXDOMAIN when the nearest existing ancestor is in a zone and not below a cut."""
        above = self.above
        if name in above:
            return None  # the name exists, but this type is not precomputed: the general path
        position = 0
        while name[position] != 0:
            position += name[position] + 1
            found = above.get(name[position:], False)
            if found is not False:
                return found  # type: ignore[return-value]
        return self.refused

    def _valid_subnet(self, option: bytes) -> bool:
        try:
            ecs.decode(option)
        except ecs.EcsError:
            return False
        return True

    def _dynamic(self, entry: Dynamic, subnet: bytes | None, source: str) -> tuple[list[bytes], int, str] | None:
        cache = entry.cache
        if subnet is not None and len(subnet) > 4 and subnet[2]:
            placed = cache.get(subnet)
            if placed is None:
                try:
                    decoded = ecs.decode(subnet)
                except ecs.EcsError:
                    return None
                placed = self._place(entry, decoded.address)
                if len(cache) >= MAX_CACHE:
                    cache.clear()
                cache[subnet] = placed
            with_scope = True
        else:
            if subnet is not None and not self._valid_subnet(subnet):
                return None
            placed = cache.get(source)
            if placed is None:
                placed = self._place(entry, self._client(source))
                if len(cache) >= MAX_CACHE:
                    cache.clear()
                cache[source] = placed
            with_scope = False
        region, region_scope, version, key = placed
        record = entry.record
        selection = self.selector.select(record, region, key)
        if selection.servfail:
            return None
        if selection.degraded:
            answers = [e.degraded_wire for e in selection.endpoints]
        else:
            answers = [e.wire for e in selection.endpoints]
        scope = self.selector.policy(record).scope(version, region_scope) if with_scope else 0
        return answers, scope, selection.region or ""

    def _place(self, entry: Dynamic, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple:
        region_map = entry.zone.region_map
        if region_map is None:
            return None, 0, address.version, int(address)
        region, scope = region_map.place(address)  # no Placement object: the hot path needs two numbers
        return region, scope, address.version, int(address)
