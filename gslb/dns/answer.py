"""One query in, one response out: parsing, EDNS, packing, and the one point that counts it.

This is the general path, built on dnslib's object model: every query can take it, and every
unusual one (TCP, truncation, ANY, CNAME chains, errors) always does. What goes in each section
is `lookup.py`'s (RFC 1034 4.3.2 over the catalog), and a GSLB answer's endpoints are
`gslb.resolve`'s; this module turns bytes into a question and sections back into bytes. It never
awaits, never raises for a bad packet, and returns None only for the packets RFC 8906 lets a
server drop (shorter than a header, or QR already set).

Every reply - fast path or general, UDP or TCP, an answer or an error - goes through `_observe`
once: counted in QueryStats under its real transport, timed when sampled, and handed to the
query log when the log takes it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dnslib import RR, TXT, DNSError, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, EDNSOption

from gslb.dns import dnssec_answer, ecs, wire
from gslb.dns.client import client_address
from gslb.dns.dynamic_answer import DynamicAnswers
from gslb.dns.lookup import (
    BADVERS,
    C_ANY,
    C_CH,
    C_IN,
    FORMERR,
    NOTIMP,
    REFUSED,
    SERVFAIL,
    T_ANY,
    T_AXFR,
    T_IXFR,
    T_OPT,
    T_TXT,
    Reply,
    lookup,
)
from gslb.names import Name
from gslb.stats import CountKey, QueryStats
from gslb.zone import Catalog

if TYPE_CHECKING:
    from gslb.querylog import QueryLog

log = logging.getLogger(__name__)
wire.install()

OPT_NSID = 3
EDNS_UDP_SIZE = 1232  # the DNS flag day 2020 size: no IP fragmentation on any common path
CHAOS_NAMES = {(b"id", b"server"), (b"hostname", b"bind")}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A reply with what the observer counts: (bytes, (zone, qtype, rcode, transport, region), had ECS).
Outcome = tuple[bytes, CountKey, bool]


class FastAnswers(Protocol):
    """The fast path as the Answerer sees it (gslb/dns/fastpath.py): an Outcome, or None to let
    the general path answer. UDP only; `source` is the socket's text address."""

    def answer(self, data: bytes, source: str) -> Outcome | None: ...


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


def _flags_from(query_bitmap: int, *, aa: bool, tc: bool, rcode: int) -> int:
    opcode = query_bitmap & 0x7800
    # RD and CD are copied into replies to QUERY (RFC 1035, RFC 6840 section 5.9); a reply to any
    # other opcode carries no flags but QR, as BIND's dns_message_reply() does (ISC's compliance
    # tester flags an RD or CD copied into a NOTIMP).
    rd_cd = query_bitmap & 0x0110 if not opcode else 0
    return 0x8000 | opcode | (0x0400 if aa else 0) | (0x0200 if tc else 0) | rd_cd | (rcode & 0xF)


def _header_only(packet: bytes, rcode: int) -> bytes:
    """A reply built from the raw 12-byte header, for queries dnslib cannot parse."""
    bitmap = int.from_bytes(packet[2:4], "big")
    flags = _flags_from(bitmap, aa=False, tc=False, rcode=rcode)
    return packet[0:2] + flags.to_bytes(2, "big") + bytes(8)


def _key(zone: str, qtype: int, rcode: int, tcp: bool, region: str = "") -> CountKey:
    return (zone, qtype, rcode, "tcp" if tcp else "udp", region)


class Answerer:
    def __init__(
        self,
        catalog: Catalog,
        settings: AnswerSettings = AnswerSettings(),
        dynamic: DynamicAnswers | None = None,
        stats: QueryStats | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.dynamic = dynamic  # GSLB answers; None = GSLB records answer NODATA (probes, self-tests)
        self.stats = stats if stats is not None else QueryStats()
        self._nsid = settings.node_name.encode() if settings.node_name else None
        self.fast: FastAnswers | None = None  # set by the serving layer; None = general path only
        self.querylog: QueryLog | None = None  # set by the serving layer; None = no query log
        self._signed = any(dnssec_answer.signer_of(zone) is not None for zone in catalog.zones)

    # -- entry points ------------------------------------------------------------------------
    def respond_udp(self, packet: bytes, source: str) -> bytes | None:
        """A UDP query: the fast path when it takes it, else the general path."""
        stats = self.stats
        left = stats.untimed - 1
        fast = self.fast
        if left and self.querylog is None and fast is not None:
            # Most queries: neither timed nor logged. `_observe`'s counting, inline: its call and
            # the checks for timing and logging were a fifth of a fast answer's cost.
            stats.untimed = left
            try:
                outcome = fast.answer(packet, source)
            except Exception:  # noqa: BLE001 - an exception in a datagram callback closes the socket
                log.exception("fast path failed on a query from %s; answered by the general path", source)
                outcome = None
            if outcome is not None:
                reply, key, had_ecs = outcome
                counts = stats.counts
                counts[key] = counts.get(key, 0) + 1
                if had_ecs:
                    stats.ecs += 1
                return reply
            started = time.perf_counter()  # the general path is always timed
            outcome = self._general_udp(packet, source)
            if outcome is None:
                return None
            return self._observe(outcome, time.perf_counter() - started, source, packet, False)
        querylog = self.querylog
        logged = querylog is not None and querylog.take()
        timed = logged or self.stats.sample()  # the fast path is timed one query in LATENCY_SAMPLE
        started = time.perf_counter() if timed else 0.0
        outcome = None
        fast = self.fast
        if fast is not None:
            try:
                outcome = fast.answer(packet, source)
            except Exception:  # noqa: BLE001 - an exception in a datagram callback closes the socket
                log.exception("fast path failed on a query from %s; answered by the general path", source)
        if outcome is None:
            if not timed:  # the general path is always timed
                timed = True
                started = time.perf_counter()
            outcome = self._general_udp(packet, source)
            if outcome is None:
                return None
        return self._observe(outcome, time.perf_counter() - started if timed else None, source, packet, logged)

    def respond(self, packet: bytes, client: Address, tcp: bool = False) -> bytes | None:
        """A query by the general path (TCP, or UDP the fast path declined); `client` is the
        packet's source address."""
        started = time.perf_counter()
        outcome = self._general(packet, client, tcp)
        if outcome is None:
            return None
        querylog = self.querylog
        logged = querylog is not None and querylog.take()
        return self._observe(outcome, time.perf_counter() - started, client, packet, logged)

    def _observe(self, outcome: Outcome, elapsed: float | None, client: Any, packet: bytes, logged: bool) -> bytes:
        """The one point every reply passes: counted, timed when `elapsed` is given, logged."""
        reply, key, had_ecs = outcome
        stats = self.stats
        counts = stats.counts
        counts[key] = counts.get(key, 0) + 1
        if had_ecs:
            stats.ecs += 1
        if elapsed is not None:
            stats.observe(elapsed)
            if logged:
                self.querylog.add(self.catalog, client, packet, reply, elapsed, key[3])  # type: ignore[union-attr]
        return reply

    def _general_udp(self, packet: bytes, source: str) -> Outcome | None:
        try:
            client = client_address(source)
        except ValueError:
            return None
        return self._general(packet, client, False)

    def _general(self, packet: bytes, client: Address, tcp: bool) -> Outcome | None:
        try:
            return self._respond(packet, client, tcp)
        except Exception:  # noqa: BLE001 - one bad query must never stop the server
            log.exception("internal error answering a query from %s", client)
            if len(packet) < 12:
                return None
            return _header_only(packet, SERVFAIL), _key("", 0, SERVFAIL, tcp), False

    def _respond(self, packet: bytes, client: Address, tcp: bool) -> Outcome | None:
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
            return _header_only(packet, FORMERR), _key("", 0, FORMERR, tcp), False
        header = record.header
        if header.opcode != 0 and len(record.questions) != 1:
            log.debug("NOTIMP to %s: opcode %d", client, header.opcode)
            return self._error(record, NOTIMP, tcp, with_question=False)
        if len(record.questions) != 1:
            log.debug("FORMERR to %s: QDCOUNT %d", client, len(record.questions))
            return self._error(record, FORMERR, tcp, with_question=False)
        question = record.questions[0]
        request = Request(record, question, tuple(label.lower() for label in question.qname.label), client, tcp)
        problem = self._read_edns(record, request, packet)
        if problem is not None:
            return problem
        if header.opcode != 0:
            log.debug("NOTIMP to %s: opcode %d", client, header.opcode)
            return self._pack(request, Reply(rcode=NOTIMP, authoritative=False))
        reply = self._answer(request)
        if request.edns_do and self._signed:
            dnssec_answer.secure(self.catalog, reply, request.qname, request.question.qname,
                                  request.question.qtype)
        return self._pack(request, reply)

    # -- EDNS --------------------------------------------------------------------------------
    def _read_edns(self, record: DNSRecord, request: Request, packet: bytes) -> Outcome | None:
        """Fill in the EDNS facts of `request`; a reply when the OPT itself decides it."""
        opts = [rr for rr in record.ar if rr.rtype == T_OPT]
        if not opts:
            request.udp_limit = 512
            return None
        if len(opts) > 1 or opts[0].rname.label != ():
            log.debug("FORMERR to %s: %d OPT records or OPT not at the root", request.client, len(opts))
            return self._error(record, FORMERR, request.tcp, with_question=True)
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
        if self._signed:
            keys = dnssec_answer.apex_keys(self.catalog, request.qname, request.question.qname, qtype)
            if keys is not None:
                return keys
        return lookup(self.catalog, request.qname, request.question.qname, qtype, tcp=request.tcp,
                      client=request.client, subnet=request.subnet, gslb=self.dynamic)

    def _chaos(self, request: Request) -> Reply:
        if self._nsid is None or request.qname not in CHAOS_NAMES or request.question.qtype not in (T_TXT, T_ANY):
            return Reply(rcode=REFUSED, authoritative=False)
        txt = TXT(self._nsid)
        return Reply(answer=[RR(request.question.qname, T_TXT, C_CH, 0, txt)])

    # -- packing -----------------------------------------------------------------------------
    def _error(self, record: DNSRecord, rcode: int, tcp: bool, with_question: bool) -> Outcome:
        qtype = record.questions[0].qtype if len(record.questions) == 1 else 0
        flags = _flags_from(record.header.bitmap, aa=False, tc=False, rcode=rcode)
        response = DNSRecord(header=DNSHeader(id=record.header.id, bitmap=flags))
        if with_question and record.questions:
            response.add_question(record.questions[0])
        opts = [rr for rr in record.ar if rr.rtype == T_OPT]
        if len(opts) == 1 and opts[0].rname.label == ():
            # RFC 6891 section 6.1.1: a reply to an EDNS query carries an OPT, errors included.
            response.add_ar(RR(DNSLabel([]), T_OPT, self.settings.edns_udp_size, opts[0].ttl & 0x8000, []))
        return response.pack(), _key("", qtype, rcode, tcp), False

    def _pack(self, request: Request, reply: Reply) -> Outcome:
        record = request.record
        flags = _flags_from(record.header.bitmap, aa=reply.authoritative, tc=False, rcode=reply.rcode)
        response = DNSRecord(header=DNSHeader(id=record.header.id, bitmap=flags), q=request.question)
        response.rr = reply.answer
        response.auth = reply.authority
        response.ar = list(reply.additional)
        opt = self._opt(request, reply) if request.edns else None
        if opt is not None:
            response.ar.append(opt)
        data = response.pack()
        limit = 65535 if request.tcp else request.udp_limit
        if len(data) > limit:
            # Too big: header, question and OPT only, TC set; the client retries over TCP (RFC 2181
            # section 9 allows partial RRsets, but an empty truncated answer is what resolvers expect).
            truncated = DNSRecord(header=DNSHeader(id=record.header.id, bitmap=flags | 0x0200), q=request.question)
            if opt is not None:
                truncated.ar = [opt]
            data = truncated.pack()
        key = _key(reply.zone, request.question.qtype, reply.rcode, request.tcp, reply.region)
        return data, key, request.subnet is not None

    def _opt(self, request: Request, reply: Reply) -> RR:
        options = []
        if request.nsid and self._nsid is not None:
            options.append(EDNSOption(OPT_NSID, self._nsid))
        if request.subnet is not None and reply.rcode != FORMERR:
            options.append(EDNSOption(ecs.OPTION_CODE, request.subnet.encode(reply.scope_prefix)))
        ttl = ((reply.rcode >> 4) << 24) | (0x8000 if request.edns_do else 0)
        return RR(DNSLabel([]), T_OPT, self.settings.edns_udp_size, ttl, options)
