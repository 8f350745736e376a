"""Online signing of one zone: its apex key RRsets, RRSIGs over any RRset it serves, and
compact denial of existence.

Signatures are made on demand and cached per (owner, type, class, TTL, RDATA set, labels), so a
GSLB record with a few possible answers signs each answer once per validity window. The data
signed is the RFC 4034 section 6 canonical form, built here; the signature itself comes from
`cryptography` (ECDSA P-256 with SHA-256, algorithm 13), turned from DER into the fixed-size
r || s of RFC 6605 section 4.
"""

from __future__ import annotations

import math
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dnslib import AAAA, DNSKEY, DS, QTYPE, RD, RR, RRSIG, A, DNSBuffer, DNSLabel

from gslb.dnssec.keys import ALGORITHM, DIGEST_SHA256, PROTOCOL, Key, ds_digest, owner_wire
from gslb.names import Name, to_text

DNSKEY_TYPE, CDS_TYPE, CDNSKEY_TYPE, RRSIG_TYPE, NSEC_TYPE, NXNAME_TYPE = 48, 59, 60, 46, 47, 128
KEY_SET_TYPES = frozenset({DNSKEY_TYPE, CDS_TYPE, CDNSKEY_TYPE})  # signed by the KSK/CSK
# RFC 4034 section 6.2 as amended by RFC 6840 section 5.1 (NSEC left out): the types whose
# RDATA names are lowercased in the canonical form.
LOWERCASE_TYPES = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 17, 18, 21, 24, 26, 30, 33, 35, 36, 38, 39, 46})
CLOCK_SKEW = 3600  # inception this far in the past, for validators whose clocks run behind
DEFAULT_VALIDITY = 7 * 86400
DEFAULT_DNSKEY_TTL = 3600
DEFAULT_MAX_ENTRIES = 100_000
DENIALS_SHARE = 10  # the denial cache holds a tenth of max_entries, unless told otherwise
MIN_VALIDITY = 3 * 3600  # shorter leaves too little between refresh and expiry for caches to keep up
MAX_VALIDITY = 90 * 86400
_ADDRESS_TYPES = (A, AAAA)  # dnslib keeps their address as a tuple of byte values
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # immutable: built once, not per signature


class _CanonicalBuffer(DNSBuffer):  # type: ignore[misc]  # dnslib is untyped
    """dnslib's packing with names never compressed, lowercased for the types RFC 4034 6.2 lists."""

    def __init__(self, lowercase: bool) -> None:
        super().__init__()
        self.lowercase = lowercase

    def encode_name(self, name: object) -> None:
        self.encode_name_nocompress(name)

    def encode_name_nocompress(self, name: object) -> None:
        label = name if isinstance(name, DNSLabel) else DNSLabel(name)
        if self.lowercase:
            label = DNSLabel([part.lower() for part in label.label])
        super().encode_name_nocompress(label)


def canonical_rdata(rtype: int, rdata: RD) -> bytes:
    """RDATA in RFC 4034 section 6.2 canonical form (per RRset on every sign(), hit or miss)."""
    if type(rdata) in _ADDRESS_TYPES:  # the GSLB answers: their bytes as they are, without a buffer
        return bytes(rdata.data)
    buffer = _CanonicalBuffer(rtype in LOWERCASE_TYPES)
    rdata.pack(buffer)
    return bytes(buffer.data)


def type_bitmap(types: Iterable[int]) -> bytes:
    """The NSEC type bit maps field (RFC 4034 section 4.1.2), for any type numbers."""
    windows: dict[int, bytearray] = {}
    for rtype in sorted(set(types)):
        window = windows.setdefault(rtype >> 8, bytearray(32))
        window[(rtype & 0xFF) >> 3] |= 0x80 >> (rtype & 7)
    out = bytearray()
    for number, bits in sorted(windows.items()):
        used = bytes(bits).rstrip(b"\x00")
        out += bytes((number, len(used))) + used
    return bytes(out)


def type_name(rtype: int) -> str:
    if rtype == NXNAME_TYPE:
        return "NXNAME"
    name = QTYPE.get(rtype)
    return name if isinstance(name, str) else f"TYPE{rtype}"


class CompactNSEC(RD):  # type: ignore[misc]  # dnslib is untyped
    """NSEC RDATA for any type numbers (dnslib's NSEC knows only the types it has names for,
    and not NXNAME)."""

    attrs = ("label", "types")

    def __init__(self, label: DNSLabel, types: tuple[int, ...]) -> None:
        self.label = label
        self.types = types

    def pack(self, buffer: DNSBuffer) -> None:
        buffer.encode_name_nocompress(self.label)  # RFC 4034 section 4.1.1: never compressed
        buffer.append(type_bitmap(self.types))

    def __repr__(self) -> str:
        return f"{self.label} {' '.join(type_name(t) for t in self.types)}"


@dataclass(frozen=True, slots=True)
class _Entry:
    refresh_at: float
    rrs: tuple[RR, ...]  # the RRSIG RRs, owner as first asked for
    owner_labels: tuple[bytes, ...]  # that owner exactly, case kept


def _successor(owner: Name) -> tuple[bytes, ...]:
    """The next name of a minimally covering NSEC (RFC 4470 section 3.1.2, RFC 9824): `\\000.`
    + owner; for a name too long for that, the owner with its first label's last octet raised."""
    if sum(len(label) + 1 for label in owner) + 1 + 2 <= 255:
        return (b"\x00",) + owner
    labels = list(owner)
    first = labels[0]
    while first and first[-1] == 0xFF:
        first = first[:-1]
    if not first:
        return tuple(labels[1:])
    labels[0] = first[:-1] + bytes((first[-1] + 1,))
    return tuple(labels)


class ZoneSigner:
    """The signer of one zone, built once at load from its keys; per query it only signs on a
    cache miss. Two LRU caches: `max_entries` RRsets of answers, and `max_denials` denial NSECs
    apart, so a flood of queries for random names (each a new NSEC to sign) cannot evict the
    signatures of the names that exist. An entry is about 1.1 KB."""

    def __init__(self, origin: Name, keys: Sequence[Key], *, negative_ttl: int,
                 validity: int = DEFAULT_VALIDITY, dnskey_ttl: int = DEFAULT_DNSKEY_TTL,
                 max_entries: int = DEFAULT_MAX_ENTRIES, max_denials: int | None = None,
                 now: Callable[[], float] = time.time) -> None:
        if not MIN_VALIDITY <= validity <= MAX_VALIDITY:
            raise ValueError(f"validity must be from {MIN_VALIDITY} to {MAX_VALIDITY} seconds, got {validity}")
        if max_denials is None:
            max_denials = max(1, max_entries // DENIALS_SHARE)
        if max_entries < 1 or max_denials < 1:
            raise ValueError("max_entries and max_denials must be at least 1")
        self.origin = origin
        self.keys = tuple(keys)
        self.negative_ttl = negative_ttl
        self.validity = validity
        self.dnskey_ttl = dnskey_ttl
        self.max_entries = max_entries
        self.max_denials = max_denials
        self.now = now
        self.signer_name = DNSLabel(to_text(origin))
        self._signer_wire = owner_wire(origin)
        active = [key for key in self.keys if key.state == "active"]
        self._key_set_signers = tuple((key.tag, key.private_key) for key in active if key.signs_keys)
        self._zone_signers = tuple((key.tag, key.private_key) for key in active if key.signs_zone)
        self._apex = self._build_apex()
        self._cache: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self._denials: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self.signatures_made = 0  # one per key per RRset signed: the crypto done
        self.hits = 0
        self.misses = 0

    # -- the apex ----------------------------------------------------------------------------
    def _build_apex(self) -> dict[int, list[RR]]:
        owner = self.signer_name
        ttl = self.dnskey_ttl
        apex: dict[int, list[RR]] = {
            DNSKEY_TYPE: [RR(owner, DNSKEY_TYPE, 1, ttl, DNSKEY(key.flags, PROTOCOL, ALGORITHM, key.public_key))
                          for key in self.keys],
        }
        # RFC 7344: CDS/CDNSKEY say what the parent's DS set should be: the key-signing keys
        # that sign the DNSKEY set now.
        parent = [key for key in self.keys if key.state == "active" and key.signs_keys]
        if parent:
            apex[CDS_TYPE] = [RR(owner, CDS_TYPE, 1, ttl, DS(key.tag, ALGORITHM, DIGEST_SHA256, ds_digest(key)))
                              for key in parent]
            apex[CDNSKEY_TYPE] = [RR(owner, CDNSKEY_TYPE, 1, ttl,
                                     DNSKEY(key.flags, PROTOCOL, ALGORITHM, key.public_key)) for key in parent]
        return apex

    def apex_rrsets(self) -> dict[int, list[RR]]:
        """DNSKEY (every key published, active or retired), and CDS + CDNSKEY (the active
        KSK/CSKs) when there is one; fresh lists, the RRs shared."""
        return {rtype: list(rrs) for rtype, rrs in self._apex.items()}

    # -- signatures --------------------------------------------------------------------------
    @property
    def cache_size(self) -> int:
        """RRsets whose signatures are cached: answers and denial NSECs."""
        return len(self._cache) + len(self._denials)

    def sign(self, rrs: Sequence[RR], labels: int | None = None) -> list[RR]:
        """RRSIGs over the RRset `rrs` (one owner, type and class), one per active key that signs
        its type; [] when `rrs` is empty or no such key is active. `labels` overrides the Labels
        field: for an answer synthesised from a wildcard, the wildcard owner's label count
        without the `*` (RFC 4035 section 5.3.2)."""
        return self.sign_until(rrs, labels)[0]

    def sign_until(self, rrs: Sequence[RR], labels: int | None = None) -> tuple[list[RR], float]:
        """`sign`, and the time (of `now`) until which those RRSIGs are the ones to serve: a
        caller that keeps packed answers with them (the fast path) drops its copy then, and
        asks again (inf: nothing to sign with, nothing will change before a reload)."""
        if not rrs:
            return [], math.inf
        first = rrs[0]
        rtype, rclass, ttl, rname = first.rtype, first.rclass, first.ttl, first.rname
        given = tuple(rname.label)
        owner = tuple(map(bytes.lower, given))
        rdatas = tuple(sorted({canonical_rdata(rtype, rr.rdata) for rr in rrs}))  # RFC 4034 6.3: sorted, no duplicates
        key = (owner, rtype, rclass, ttl, rdatas, labels)
        now = self.now()
        cache = self._denials if rtype == NSEC_TYPE else self._cache
        entry = cache.get(key)
        if entry is not None and now < entry.refresh_at:
            cache.move_to_end(key)
            self.hits += 1
            if entry.owner_labels == given:
                return list(entry.rrs), entry.refresh_at
            return [RR(rname, RRSIG_TYPE, rclass, ttl, rr.rdata) for rr in entry.rrs], entry.refresh_at
        self.misses += 1
        signers = self._key_set_signers if rtype in KEY_SET_TYPES else self._zone_signers
        if not signers:
            return [], math.inf
        refresh_at, made = self._sign(owner, rtype, rclass, ttl, rdatas, labels, now, signers)
        entry = _Entry(refresh_at, tuple(RR(rname, RRSIG_TYPE, rclass, ttl, rdata) for rdata in made), given)
        cache[key] = entry
        cache.move_to_end(key)  # a refreshed entry was somewhere in the middle
        limit = self.max_denials if rtype == NSEC_TYPE else self.max_entries
        while len(cache) > limit:
            cache.popitem(last=False)
        return list(entry.rrs), refresh_at

    def _sign(self, owner: Name, rtype: int, rclass: int, ttl: int, rdatas: tuple[bytes, ...], labels: int | None,
              now: float, signers: tuple[tuple[int, ec.EllipticCurvePrivateKey], ...]) -> tuple[float, list[RRSIG]]:
        own_labels = len(owner) - (1 if owner and owner[0] == b"*" else 0)
        if labels is None:
            labels = own_labels
        elif not 0 <= labels <= own_labels:
            raise ValueError(f"labels must be from 0 to {own_labels} for {to_text(owner)}, got {labels}")
        # RFC 4035 section 5.3.2: a wildcard expansion is verified over the wildcard's own name.
        signed_owner = owner if labels == own_labels else (b"*",) + owner[len(owner) - labels:]
        inception = int(now) - CLOCK_SKEW
        expiration = int(now) + self.validity
        rrset_wire = b"".join(
            owner_wire(signed_owner) + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata for rdata in rdatas
        )
        made = []
        for tag, private_key in signers:
            header = struct.pack("!HBBIIIH", rtype, ALGORITHM, labels, ttl, expiration & 0xFFFFFFFF,
                                 inception & 0xFFFFFFFF, tag) + self._signer_wire
            der = private_key.sign(header + rrset_wire, _ECDSA_SHA256)
            r, s = decode_dss_signature(der)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            made.append(RRSIG(rtype, ALGORITHM, labels, ttl, expiration & 0xFFFFFFFF, inception & 0xFFFFFFFF, tag,
                              self.signer_name, signature))
            self.signatures_made += 1
        # Refreshed once less than a quarter of the window is left: caches that took the old
        # signature with a TTL up to that quarter still hold a valid one.
        refresh_at = expiration - (expiration - inception) / 4
        return refresh_at, made

    # -- denial of existence -----------------------------------------------------------------
    def denial(self, owner: DNSLabel, types: Iterable[int], nxname: bool) -> RR:
        """A compact-denial NSEC (RFC 9824), which is also an RFC 4470 minimally covering NSEC:
        at the queried name, next `\\000.` + name, the types that exist there plus RRSIG and NSEC,
        and NXNAME when the name does not exist at all. Sign it with `sign([nsec])`."""
        bitmap = set(types) | {RRSIG_TYPE, NSEC_TYPE}
        if nxname:
            bitmap.add(NXNAME_TYPE)
        lowered = tuple(label.lower() for label in owner.label)
        successor = _successor(lowered)
        if successor[:1] == (b"\x00",):
            successor = (b"\x00",) + tuple(owner.label)  # keep the case the owner was given in
        return RR(owner, NSEC_TYPE, 1, self.negative_ttl, CompactNSEC(DNSLabel(list(successor)), tuple(sorted(bitmap))))
