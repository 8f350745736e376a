"""DNSSEC on a reply: RRSIGs on its RRsets and compact denial for its negative answers.

`lookup.py` decides what a reply says; this adds what a validating resolver needs to believe it,
when the query set the DO bit and the zone has a signer (`dnssec: {keys: DIR}`, gslb/dnssec/):

- an RRSIG after every RRset of every section whose owner is authoritative data of a signed zone -
  the GSLB answer chosen for this client included (the signer caches per RRset content, so a
  record with a few possible answers signs each once per validity window);
- not the NS and glue of a referral (RFC 4035 section 3.1.4: the parent is not authoritative for
  them), but an NSEC at the cut with NS and no DS, signed: the proof that the child is unsigned;
- negative answers by compact denial (RFC 9824): NXDOMAIN becomes NOERROR with a signed SOA and
  a signed NSEC at the name whose bitmap holds NXNAME; NODATA gets a signed NSEC at the name
  listing the types it has. Both are made per name when asked, so no chain exists to walk and
  GSLB and synthesised names need nothing precomputed.

The apex's DNSKEY, CDS and CDNSKEY RRsets (`apex_keys`) answer their queries with or without DO:
they are zone data. Without DO nothing else changes: `secure` is only called for DO queries.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnslib import RR, DNSLabel

from gslb.dns.lookup import NOERROR, NXDOMAIN, T_CNAME, T_NS, T_SOA, Reply
from gslb.dnssec.signer import ZoneSigner as Signer
from gslb.names import Name
from gslb.zone import Catalog, Found, Node, Zone

T_DNSKEY, T_CDS, T_CDNSKEY, T_NSEC = 48, 59, 60, 47
APEX_KEY_TYPES = (T_DNSKEY, T_CDS, T_CDNSKEY)


def signer_of(zone: Zone | None) -> Signer | None:
    return zone.signer if zone is not None else None


def _lower(label: DNSLabel) -> Name:
    return tuple(part.lower() for part in label.label)


def apex_keys(catalog: Catalog, qname: Name, owner: DNSLabel, qtype: int) -> Reply | None:
    """The reply to DNSKEY, CDS or CDNSKEY at a signed zone's apex; None for any other question."""
    if qtype not in APEX_KEY_TYPES:
        return None
    zone = catalog.zone_for(qname)
    signer = signer_of(zone)
    if zone is None or signer is None or qname != zone.origin:
        return None
    rrs = signer.apex_rrsets().get(qtype)
    if not rrs:
        return None
    return Reply(answer=[RR(owner, r.rtype, r.rclass, r.ttl, r.rdata) for r in rrs], zone=zone.label)


def node_types(zone: Zone, node: Node) -> set[int]:
    """The types a name holds, as its NSEC bitmap says (the signer adds RRSIG and NSEC)."""
    types = set(node.rrsets) | set(node.dynamic)
    if node.name == zone.origin:
        types.update(APEX_KEY_TYPES)
    return types


def _rrsets(section: Sequence[RR]) -> list[list[RR]]:
    """The section's RRs grouped into RRsets, in order (lookup keeps an RRset's RRs together)."""
    groups: list[list[RR]] = []
    for rr in section:
        if groups and groups[-1][0].rtype == rr.rtype and _lower(groups[-1][0].rname) == _lower(rr.rname):
            groups[-1].append(rr)
        else:
            groups.append([rr])
    return groups


class _Zones:
    """Which signed zone, if any, is authoritative for an owner name (memoised per reply)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.seen: dict[Name, tuple[Zone, Signer] | None] = {}

    def authoritative(self, name: Name) -> tuple[Zone, Signer] | None:
        """The signed zone whose data `name` is: None when unsigned, outside, or at/below a cut."""
        if name in self.seen:
            return self.seen[name]
        zone = self.catalog.zone_for(name)
        signer = signer_of(zone)
        found: tuple[Zone, Signer] | None = None
        if zone is not None and signer is not None and zone.find(name)[0] is not Found.REFERRAL:
            found = (zone, signer)
        self.seen[name] = found
        return found


def _signed(rrsets: list[list[RR]], zones: _Zones) -> list[RR]:
    out: list[RR] = []
    for rrset in rrsets:
        out.extend(rrset)
        where = zones.authoritative(_lower(rrset[0].rname))
        if where is not None:
            out.extend(where[1].sign(rrset))
    return out


def _last_name(qname: Name, answer: Sequence[RR]) -> tuple[Name, DNSLabel | None]:
    """The name a negative answer is about: the question, or the end of the CNAME chain."""
    name: Name = qname
    label: DNSLabel | None = None
    for rr in answer:
        if rr.rtype == T_CNAME and _lower(rr.rname) == name:
            label = rr.rdata.label
            name = _lower(label)
    return name, label


def _denial(catalog: Catalog, name: Name, label: DNSLabel, qtype: int | None) -> tuple[RR, Signer] | None:
    """The compact-denial NSEC (unsigned) for a negative answer about `name` (written `label`),
    with the signer of its zone; None when the name is not signed data. `qtype` has no data at
    the name (that is what the answer says), even where a GSLB record of that type had nothing
    to give: its bit stays clear, or the NODATA proof would contradict itself."""
    zone = catalog.zone_for(name)
    signer = signer_of(zone)
    if zone is None or signer is None:
        return None
    found, where = zone.find(name)
    if isinstance(where, Node):  # the name's node (or the wildcard's that answers for it)
        present = node_types(zone, where)
        if qtype is not None:
            present.discard(qtype)
            if T_CNAME in where.dynamic:  # an empty CNAME pool: no CNAME was there to follow
                present.discard(T_CNAME)
        types: Sequence[int] = sorted(present)
    elif found is Found.REFERRAL:
        types = (T_NS,)  # a DS query at a cut: NS, no DS
    else:
        types = ()
    return _nsec(signer, name, label, types, found is Found.NXDOMAIN), signer


def _nsec(signer: Signer, name: Name, label: DNSLabel, types: Sequence[int], nxname: bool) -> RR:
    """The NSEC made from the lowercase name - so its next name, and its signature, are the same
    whatever case a client asks in - with the owner as the client wrote it."""
    nsec = signer.denial(DNSLabel(list(name)), types, nxname)
    return RR(label, nsec.rtype, nsec.rclass, nsec.ttl, nsec.rdata)


def secure(catalog: Catalog, reply: Reply, qname: Name, owner: DNSLabel, qtype: int | None = None) -> Reply:
    """`reply` (to a DO query for `qname`, written `owner` by the client, of type `qtype`) with
    its DNSSEC records added: changed in place, and returned for convenience."""
    if qtype == T_NSEC and not reply.answer and any(rr.rtype == T_SOA for rr in reply.authority):
        # Under compact denial every name has the NSEC made for it; a NODATA for NSEC whose proof
        # lists NSEC would contradict itself, so that NSEC is the answer.
        own = _denial(catalog, qname, owner, None)
        if own is not None:
            reply.rcode = NOERROR
            reply.answer = [own[0], *own[1].sign([own[0]])]
            reply.authority = []
            return reply
    zones = _Zones(catalog)
    authority: list[RR] = []
    for rrset in _rrsets(reply.authority):
        authority.extend(rrset)
        name = _lower(rrset[0].rname)
        where = zones.authoritative(name)
        if where is not None:
            authority.extend(where[1].sign(rrset))
        elif rrset[0].rtype == T_NS:
            # RFC 4035 section 3.1.4.1: a referral to an unsigned child carries the proof that
            # no DS exists at the cut; the NS and glue themselves are not signed.
            zone = catalog.zone_for(name)
            signer = signer_of(zone)
            if signer is not None:
                nsec = _nsec(signer, name, rrset[0].rname, (T_NS,), False)
                authority.append(nsec)
                authority.extend(signer.sign([nsec]))
    if any(rr.rtype == T_SOA for rr in reply.authority):  # lookup puts a SOA there only when negative
        name, label = _last_name(qname, reply.answer)
        denial = _denial(catalog, name, label if label is not None else owner, qtype)
        if denial is not None:
            nsec, signer = denial
            authority.append(nsec)
            authority.extend(signer.sign([nsec]))
            if reply.rcode == NXDOMAIN:
                reply.rcode = NOERROR  # RFC 9824 section 3: answered as NODATA, NXNAME in the bitmap
    reply.answer = _signed(_rrsets(reply.answer), zones)
    reply.authority = authority
    reply.additional = _signed(_rrsets(reply.additional), zones)
    return reply
