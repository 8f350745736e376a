"""One query in, one response out: the whole decision of what a client is told.

This is the general path, built on dnslib's object model: every query can take it, and every
unusual one (TCP, truncation, ANY, CNAME chains, errors) always does. It only reads the immutable
Catalog and in-memory state; it never awaits, never raises for a bad packet, and returns None
only for the packets RFC 8906 lets a server drop (shorter than a header, or QR already set).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from dnslib import RR, TXT, DNSError, DNSLabel, DNSQuestion, DNSRecord, EDNSOption, RD

from gslb.dns import ecs, wire
from gslb.dns.client import client_address
from gslb.names import Name
from gslb.stats import QueryStats
from gslb.zone import Catalog, Found, Node, Referral, RRset, Zone

if TYPE_CHECKING:
    from gslb.dns.fastpath import FastPath
    from gslb.querylog import QueryLog

log = logging.getLogger(__name__)
wire.install()

# RCODEs (RFC 1035, RFC 6891)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
# Types and classes
T_A, T_NS, T_CNAME, T_SOA, T_TXT, T_AAAA, T_OPT, T_IXFR, T_AXFR, T_ANY, T_HINFO = 1, 2, 5, 6, 16, 28, 41, 251, 252, 255, 13
C_IN, C_CH, C_ANY = 1, 3, 255
OPT_NSID = 3

EDNS_UDP_SIZE = 1232  # the DNS flag day 2020 size: no IP fragmentation on any common path
MAX_CNAME_CHAIN = 8
CHAOS_NAMES = {(b"id", b"server"), (b"hostname", b"bind")}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    node_name: str | None = None  # NSID and CH TXT id.server; None = not disclosed
    edns_udp_size: int = EDNS_UDP_SIZE


@dataclass(slots=True)
class Request:
    """What the answer needs to know about a parsed query."""

    record: DNSRecord
    question: DNSQuestion
    qname: Name
    client: Address
    tcp: bool
    edns: bool = False
    edns_do: bool = False
    udp_limit: int = 512
    nsid: bool = False
    subnet: ecs.ClientSubnet | None = None
    zone: str = ""  # the zone that answered, for metrics and the query log ("" = none of ours)
    region: str = ""  # the region a GSLB answer came from


@dataclass(slots=True)
class Reply:
    rcode: int = NOERROR
    authoritative: bool = True
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    scope_prefix: int = 0  # ECS scope: 0 unless the answer depends on the client's address


# A hook for answers that depend on the client (GSLB records): (zone, node, qtype, request, reply)
# -> adds RRs to reply.answer and sets reply.scope_prefix. Installed by the serving layer.
DynamicAnswerer = Callable[[Zone, Node, int, Request, Reply], None]


def _flags_from(query_bitmap: int, *, aa: bool, tc: bool, rcode: int) -> int:
    opcode = query_bitmap & 0x7800
    rd_cd = query_bitmap & 0x0110  # RD and CD are copied (RFC 1035, RFC 6840 section 5.9)
    return 0x8000 | opcode | (0x0400 if aa else 0) | (0x0200 if tc else 0) | rd_cd | (rcode & 0xF)


def _header_only(packet: bytes, rcode: int) -> bytes:
    """A reply built from the raw 12-byte header, for queries dnslib cannot parse."""
    bitmap = int.from_bytes(packet[2:4], "big")
    flags = _flags_from(bitmap, aa=False, tc=False, rcode=rcode)
    return packet[0:2] + flags.to_bytes(2, "big") + bytes(8)


class Answerer:
    def __init__(
        self,
        catalog: Catalog,
        settings: AnswerSettings = AnswerSettings(),
        dynamic: DynamicAnswerer | None = None,
        stats: QueryStats | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.dynamic = dynamic
        self.stats = stats if stats is not None else QueryStats()
        self._nsid = settings.node_name.encode() if settings.node_name else None
        self.fast: "FastPath | None" = None  # set by the serving layer; None = general path only
        self.querylog: "QueryLog | None" = None  # set by the serving layer; None = no query log

    def respond_udp(self, packet: bytes, source: str) -> bytes | None:
        """A UDP query: the fast path when it takes it, else the general path."""
        querylog = self.querylog
        if querylog is not None and querylog.take():
            # A query the log samples: timed, and queued (raw) for the log's writer thread.
            started = time.perf_counter()
            reply = self._fast(packet, source)
            if reply is not None:
                self.stats.observe(time.perf_counter() - started)
            else:
                reply = self._general_udp(packet, source)
            if reply is not None:
                querylog.add(self.catalog, source, packet, reply, time.perf_counter() - started, "udp")
            return reply
        if self.stats.sample():
            started = time.perf_counter()
            reply = self._fast(packet, source)
            if reply is not None:
                self.stats.observe(time.perf_counter() - started)
                return reply
        else:
            reply = self._fast(packet, source)
            if reply is not None:
                return reply
        return self._general_udp(packet, source)

    def _fast(self, packet: bytes, source: str) -> bytes | None:
        fast = self.fast
        if fast is None:
            return None
        try:
            return fast.answer(packet, source)
        except Exception:  # noqa: BLE001 - an exception in a datagram callback closes the socket
            log.exception("fast path failed on a query from %s; answered by the general path", source)
            return None

    def _general_udp(self, packet: bytes, source: str) -> bytes | None:
        try:
            client = client_address(source)
        except ValueError:
            return None
        return self.respond(packet, client, False)

    # -- entry point -------------------------------------------------------------------------
    def respond(self, packet: bytes, client: Address, tcp: bool = False) -> bytes | None:
        started = time.perf_counter()
        try:
            reply = self._respond(packet, client, tcp)
        except Exception:  # noqa: BLE001 - one bad query must never stop the server
            log.exception("internal error answering a query from %s", client)
            if len(packet) < 12:
                return None
            reply = _header_only(packet, SERVFAIL)
            self.stats.count("", 0, SERVFAIL, "tcp" if tcp else "udp", "")
        if reply is not None:
            elapsed = time.perf_counter() - started
            self.stats.observe(elapsed)
            if tcp and self.querylog is not None and self.querylog.take():  # UDP is logged in respond_udp
                self.querylog.add(self.catalog, client, packet, reply, elapsed, "tcp")
        return reply

    def _respond(self, packet: bytes, client: Address, tcp: bool) -> bytes | None:
        if len(packet) < 12:
            log.debug("dropped %d-byte packet from %s: shorter than a DNS header", len(packet), client)
            return None
        if packet[2] & 0x80:
            log.debug("dropped packet from %s: QR set (a response, not a query)", client)
            return None
        try:
            record = DNSRecord.parse(packet)
        except (DNSError, ValueError, IndexError, UnicodeError, BufferError, RecursionError) as error:
            log.debug("FORMERR to %s: cannot parse the query: %s", client, error)
            self.stats.count("", 0, FORMERR, "tcp" if tcp else "udp", "")
            return _header_only(packet, FORMERR)
        header = record.header
        if header.opcode != 0 and len(record.questions) != 1:
            log.debug("NOTIMP to %s: opcode %d", client, header.opcode)
            return self._error(record, NOTIMP, with_question=False)
        if len(record.questions) != 1:
            log.debug("FORMERR to %s: QDCOUNT %d", client, len(record.questions))
            return self._error(record, FORMERR, with_question=False)
        question = record.questions[0]
        request = Request(record, question, tuple(l.lower() for l in question.qname.label), client, tcp)
        problem = self._read_edns(record, request, packet)
        if problem is not None:
            return problem
        if header.opcode != 0:
            log.debug("NOTIMP to %s: opcode %d", client, header.opcode)
            return self._pack(request, Reply(rcode=NOTIMP, authoritative=False))
        reply = self._answer(request)
        return self._pack(request, reply)

    # -- EDNS --------------------------------------------------------------------------------
    def _read_edns(self, record: DNSRecord, request: Request, packet: bytes) -> bytes | None:
        """Fill in the EDNS facts of `request`; a reply when the OPT itself decides it."""
        opts = [rr for rr in record.ar if rr.rtype == T_OPT]
        if not opts:
            request.udp_limit = 512
            return None
        if len(opts) > 1 or opts[0].rname.label != ():
            log.debug("FORMERR to %s: %d OPT records or OPT not at the root", request.client, len(opts))
            return self._error(record, FORMERR, with_question=True)
        opt = opts[0]
        request.edns = True
        request.udp_limit = min(max(opt.rclass, 512), self.settings.edns_udp_size)
        version = (opt.ttl >> 16) & 0xFF
        request.edns_do = bool(opt.ttl & 0x8000)
        if version > 0:
            log.debug("BADVERS to %s: EDNS version %d", request.client, version)
            return self._pack(request, Reply(rcode=BADVERS, authoritative=False))
        for code, data in wire.opt_options(packet):
            if code == OPT_NSID:
                request.nsid = True
            elif code == ecs.OPTION_CODE and request.subnet is None:
                try:
                    request.subnet = ecs.decode(data)
                except ecs.EcsError as error:
                    log.debug("FORMERR to %s: %s", request.client, error)
                    return self._pack(request, Reply(rcode=FORMERR, authoritative=False))
        return None

    # -- the answer --------------------------------------------------------------------------
    def _answer(self, request: Request) -> Reply:
        qclass, qtype = request.question.qclass, request.question.qtype
        if qclass == C_CH:
            return self._chaos(request)
        if qclass not in (C_IN, C_ANY):
            return Reply(rcode=REFUSED, authoritative=False)
        if qtype in (T_AXFR, T_IXFR):
            return Reply(rcode=REFUSED, authoritative=False)  # no zone transfers
        zone = self.catalog.zone_for(request.qname)
        if zone is None:
            return Reply(rcode=REFUSED, authoritative=False)
        request.zone = zone.label
        reply = Reply()
        name = request.qname
        owner = request.question.qname
        for _ in range(MAX_CNAME_CHAIN + 1):
            found, where = zone.find(name)
            if found is Found.NXDOMAIN:
                reply.rcode = NXDOMAIN
                reply.authority.append(_negative_soa(zone))
                return reply
            if found is Found.EMPTY_NONTERMINAL:
                reply.authority.append(_negative_soa(zone))
                return reply
            if found is Found.REFERRAL:
                assert isinstance(where, Referral)
                if where.cut == name and qtype == 43 and not reply.answer:  # DS lives in the parent
                    reply.authority.append(_negative_soa(zone))
                    return reply
                # Only the part before the cut is ours: AA clear when nothing else was answered.
                reply.authoritative = bool(reply.answer)
                reply.authority.extend(where.ns.records)
                for rrset in where.glue:
                    reply.additional.extend(rrset.records)
                return reply
            assert isinstance(where, Node)
            node = where
            cname = node.cname
            if cname is None or qtype in (T_CNAME, T_ANY):
                break
            reply.answer.extend(_owned(cname, owner))
            target_label = cname.records[0].rdata.label
            target = tuple(l.lower() for l in target_label.label)
            if not zone.contains(target):
                return reply  # pointing outside: the resolver follows it
            name, owner = target, target_label
        else:
            log.warning("CNAME chain longer than %d at %s", MAX_CNAME_CHAIN, request.question.qname)
            reply.rcode = SERVFAIL
            return reply
        self._node_answer(zone, node, qtype, owner, request, reply)
        return reply

    def _node_answer(self, zone: Zone, node: Node, qtype: int, owner: DNSLabel, request: Request, reply: Reply) -> None:
        if qtype == T_ANY:
            self._any(zone, node, owner, request, reply)
            return
        rrset = node.rrsets.get(qtype)
        if rrset is not None:
            reply.answer.extend(_owned(rrset, owner))
            if qtype == T_NS and node.name == zone.origin:
                for glue in zone.apex_glue:
                    reply.additional.extend(glue.records)
            return
        if qtype in node.dynamic and self.dynamic is not None:
            self.dynamic(zone, node, qtype, request, reply)
            return
        reply.authority.append(_negative_soa(zone))  # NODATA (RFC 2308 section 2.2)

    def _any(self, zone: Zone, node: Node, owner: DNSLabel, request: Request, reply: Reply) -> None:
        """RFC 8482: over UDP one RRset (or a synthesised HINFO) instead of everything; TCP,
        where size costs nothing extra, gets every RRset."""
        rrsets = [node.rrsets[t] for t in sorted(node.rrsets)]
        if request.tcp:
            for rrset in rrsets:
                reply.answer.extend(_owned(rrset, owner))
            for qtype in sorted(node.dynamic):
                if self.dynamic is not None:
                    self.dynamic(zone, node, qtype, request, reply)
            if not reply.answer:
                reply.authority.append(_negative_soa(zone))
            return
        if rrsets:
            reply.answer.extend(_owned(rrsets[0], owner))
        elif node.dynamic and self.dynamic is not None:
            self.dynamic(zone, node, min(node.dynamic), request, reply)
        else:
            hinfo = RD(b"\x07RFC8482\x00")
            reply.answer.append(RR(owner, T_HINFO, C_IN, zone.soa.ttl, hinfo))

    def _chaos(self, request: Request) -> Reply:
        if self._nsid is None or request.qname not in CHAOS_NAMES or request.question.qtype not in (T_TXT, T_ANY):
            return Reply(rcode=REFUSED, authoritative=False)
        txt = TXT(self._nsid)
        return Reply(answer=[RR(request.question.qname, T_TXT, C_CH, 0, txt)])

    # -- packing -----------------------------------------------------------------------------
    def _error(self, record: DNSRecord, rcode: int, with_question: bool) -> bytes:
        qtype = record.questions[0].qtype if len(record.questions) == 1 else 0
        self.stats.count("", qtype, rcode, "udp", "")
        flags = _flags_from(record.header.bitmap, aa=False, tc=False, rcode=rcode)
        response = DNSRecord(header=_header(record.header.id, flags))
        if with_question and record.questions:
            response.add_question(record.questions[0])
        opts = [rr for rr in record.ar if rr.rtype == T_OPT]
        if len(opts) == 1 and opts[0].rname.label == ():
            # RFC 6891 section 6.1.1: a reply to an EDNS query carries an OPT, errors included.
            response.add_ar(RR(DNSLabel([]), T_OPT, self.settings.edns_udp_size, opts[0].ttl & 0x8000, []))
        return response.pack()

    def _pack(self, request: Request, reply: Reply) -> bytes:
        self.stats.count(request.zone, request.question.qtype, reply.rcode, "tcp" if request.tcp else "udp", request.region)
        if request.subnet is not None:
            self.stats.ecs += 1
        record = request.record
        flags = _flags_from(record.header.bitmap, aa=reply.authoritative, tc=False, rcode=reply.rcode)
        response = DNSRecord(header=_header(record.header.id, flags), q=request.question)
        response.rr = reply.answer
        response.auth = reply.authority
        response.ar = list(reply.additional)
        opt = self._opt(request, reply) if request.edns else None
        if opt is not None:
            response.ar.append(opt)
        data = response.pack()
        limit = 65535 if request.tcp else request.udp_limit
        if len(data) <= limit:
            return data
        # Too big: header, question and OPT only, TC set; the client retries over TCP (RFC 2181
        # section 9 allows partial RRsets, but an empty truncated answer is what resolvers expect).
        flags |= 0x0200
        truncated = DNSRecord(header=_header(record.header.id, flags), q=request.question)
        if opt is not None:
            truncated.ar = [opt]
        return truncated.pack()

    def _opt(self, request: Request, reply: Reply) -> RR:
        options = []
        if request.nsid and self._nsid is not None:
            options.append(EDNSOption(OPT_NSID, self._nsid))
        if request.subnet is not None and reply.rcode != FORMERR:
            options.append(EDNSOption(ecs.OPTION_CODE, request.subnet.encode(reply.scope_prefix)))
        ttl = ((reply.rcode >> 4) << 24) | (0x8000 if request.edns_do else 0)
        return RR(DNSLabel([]), T_OPT, self.settings.edns_udp_size, ttl, options)


def _header(ident: int, flags: int):
    from dnslib import DNSHeader

    return DNSHeader(id=ident, bitmap=flags)


def _owned(rrset: RRset, owner: DNSLabel) -> list[RR]:
    """The RRset with the owner name as the client wrote it: the bytes then compress to the
    question's name, and 0x20-randomising resolvers see their own case back."""
    return [RR(owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in rrset.records]


def _negative_soa(zone: Zone) -> RR:
    soa = zone.soa.records[0]
    return RR(soa.rname, T_SOA, C_IN, zone.negative_ttl, soa.rdata)
