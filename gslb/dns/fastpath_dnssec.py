"""The fast path's DO answers for signed zones: signed replies packed once and kept.

A DO query for a signed zone stays on the fast path (`fastpath.py`). What it answers is what the
general path answers - `lookup` and `dnssec_answer.secure` - packed once per (name, type) and
kept with the time it must be rebuilt: before the earliest of its signatures comes within the
signer's refresh margin of expiry. Rebuilding asks the signer again, which re-signs only what
its own cache no longer holds, so a reply is fresh without a reload and a hit costs no crypto.

A GSLB answer's RRSIG depends on the endpoints chosen for the client: it is packed once per
distinct answer RRset (the answer's bytes are the key) and kept. Both tables are bounded; when
one is full it is emptied, and the entries come back on the next queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from dnslib import RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from gslb.dns.dnssec_answer import apex_keys, secure, signer_of
from gslb.dns.fastpath import Static, pack_rr, wire_name
from gslb.dns.lookup import Reply, lookup
from gslb.dnssec.signer import ZoneSigner
from gslb.dynamic import Endpoint
from gslb.names import Name
from gslb.zone import Catalog

MAX_SIGNED = 100_000  # signed replies kept: (name, type) pairs, NXDOMAIN names included
MAX_RRSIGS = 10_000  # GSLB answer RRsets with their packed RRSIGs
REBUILD_AT_MOST_EVERY = 60.0  # seconds: a reply whose signer still returns old signatures is not rebuilt per query
REFRESH_MARGIN = 0.25  # of a signature's validity: rebuilt (and, if the signer agrees, re-signed) with this much left


def name_of(wire: bytes) -> Name:
    labels = []
    position = 0
    while wire[position]:
        length = wire[position]
        labels.append(wire[position + 1:position + 1 + length])
        position += length + 1
    return tuple(labels)


def refresh_time(rrs: Sequence[RR], now: float) -> float:
    """When a reply holding `rrs` must be rebuilt: a margin before its first RRSIG expires."""
    due = now + 86400.0
    for rr in rrs:
        if rr.rtype == 46:
            sig = rr.rdata
            due = min(due, sig.sig_exp - (sig.sig_exp - sig.sig_inc) * REFRESH_MARGIN)
    return max(due, now + REBUILD_AT_MOST_EVERY)


def _packed(reply: Reply, owner: DNSLabel, qtype: int) -> Static:
    """The reply's sections packed as dnslib packs them on the general path, names compressed
    (a signed reply names its zone in every RRSIG and SOA): the bytes after a question of the
    same length, so the pointers hold for the client's question whatever its case."""
    message = DNSRecord(DNSHeader(), q=DNSQuestion(owner, qtype))
    message.rr, message.auth, message.ar = reply.answer, reply.authority, list(reply.additional)
    start = 12 + len(wire_name(tuple(owner.label))) + 4
    body = bytes(message.pack()[start:])
    counts = (len(reply.answer), len(reply.authority), len(reply.additional))
    return Static((0x04 if reply.authoritative else 0, reply.rcode), counts, body, reply.zone)


class SignedFast:
    """DO variants of the fast path's answers for the signed zones of one catalog (the fast
    path's `SignedAnswers`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.signers: dict[str, ZoneSigner] = {}
        for zone in catalog.zones:
            signer = signer_of(zone)
            if signer is not None:
                self.signers[zone.label] = signer
        self.replies: dict[bytes, tuple[Static | None, float]] = {}
        self.rrsigs: dict[bytes, tuple[bytes, int, float]] = {}
        self.clock: Callable[[], float] = time.time  # the signers' clock (tests move both)

    def static(self, name: bytes, qtype: bytes) -> Static | None:
        """The signed reply to (name, type) as packed bytes; None when the general path must
        answer (a GSLB record at the end of a CNAME chain)."""
        key = name + qtype
        hit = self.replies.get(key)
        now = self.clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        qname = name_of(name)
        owner = DNSLabel(list(qname))
        number = int.from_bytes(qtype, "big")
        reply = apex_keys(self.catalog, qname, owner, number) or lookup(self.catalog, qname, owner, number)
        entry: Static | None = None
        if not reply.client_dependent:
            secure(self.catalog, reply, qname, owner, number)
            entry = _packed(reply, owner, number)
        if len(self.replies) >= MAX_SIGNED:
            self.replies.clear()
        self.replies[key] = (entry, refresh_time((*reply.answer, *reply.authority, *reply.additional), now))
        return entry

    def rrsig(self, zone: str, key: bytes, qname: bytes, endpoints: Sequence[Endpoint],
              degraded: bool) -> tuple[bytes, int]:
        """The packed RRSIG(s) of a GSLB answer to `qname` (wire form, lowercase) and how many
        there are; `key`: the question's name and type and the answer's bytes. The RRset is
        signed under the question's name, so a name a wildcard synthesised is signed as if it
        existed (online signing needs no wildcard proof)."""
        hit = self.rrsigs.get(key)
        now = self.clock()
        if hit is not None and hit[2] > now:
            return hit[0], hit[1]
        name = name_of(qname)
        owner = DNSLabel(list(name))
        rrs = [e.degraded_record if degraded else e.record for e in endpoints]
        sigs, until = self.signers[zone].sign_until([RR(owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in rrs])
        packed = b"".join(pack_rr(sig, name) for sig in sigs)
        if len(self.rrsigs) >= MAX_RRSIGS:
            self.rrsigs.clear()
        self.rrsigs[key] = (packed, len(sigs), until)
        return packed, len(sigs)
