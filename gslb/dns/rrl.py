"""Response rate limiting (RRL) for UDP replies, as BIND, Knot and NSD do it.

A spoofed-source flood turns an authoritative server into an amplifier aimed at the spoofed
address. RRL caps the responses per second one client prefix gets of one kind (answer, NODATA,
NXDOMAIN, referral, error): over the rate, replies are dropped, except every `slip`-th, which is
sent truncated (TC=1, no records) so a real client behind the prefix retries over TCP, which
cannot be spoofed and is never limited.

The accounting is BIND's "responses per second with a window": each (prefix, kind) bucket earns
`rate` credits a second, holds at most `rate`, spends one per response, and may fall into debt down
to `-rate * window`, so a prefix that flooded stays limited for up to `window` seconds after its
flood ends. The key is the packet's source address, never EDNS Client Subnet (which the sender
writes). Memory is fixed: a table of `table_size` buckets indexed by the key's hash, two candidate
slots per key, the staler one reused for a new key (like Knot's table: a prefix evicted under a
flood of many prefixes starts again with full credit; nothing grows).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

ANSWER, NODATA, NXDOMAIN, REFERRAL, ERROR = range(5)
KINDS = ("answer", "nodata", "nxdomain", "referral", "error")  # metric label values, by kind
ACTIONS = ("slipped", "dropped")
NONE, ALL, SOME = range(3)  # how much of a bucket's prefix is exempt
CLIENT_CACHE = 16384  # source address strings remembered with their parsed keys

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RrlSettings:
    """`rrl:` in the server config. Off unless configured."""

    rate: int  # responses per second per (client prefix, kind)
    slip: int = 2  # 0: drop every limited response; 1: truncate every one; N: truncate every Nth
    window: int = 15  # seconds a prefix that went over the rate stays limited at most
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[Network, ...] = ()  # sources never limited (monitoring, big resolvers you trust)
    table_size: int = 65536  # buckets; rounded up to a power of two

    def __post_init__(self) -> None:
        for name, low, high in (("rate", 1, 1_000_000), ("slip", 0, 10), ("window", 1, 3600),
                                ("ipv4_prefix", 8, 32), ("ipv6_prefix", 16, 128),
                                ("table_size", 16, 1 << 24)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")


def response_kind(reply: bytes) -> int:
    """The kind of a reply from its header alone: rcode, ANCOUNT, AA and NSCOUNT."""
    rcode = reply[3] & 0x0F
    if rcode == 0:
        if reply[6] or reply[7]:
            return ANSWER
        if not reply[2] & 0x04 and (reply[8] or reply[9]):
            return REFERRAL  # not authoritative, NS records in the authority section
        return NODATA
    if rcode == 3:
        return NXDOMAIN
    return ERROR


def truncated(reply: bytes) -> bytes:
    """`reply` as a slip: the same header with TC set and the question only (RFC 1035 4.1.1)."""
    end = 12
    size = len(reply)
    if reply[4] == 0 and reply[5] == 1:
        while end < size:
            length = reply[end]
            if length == 0:
                end += 5  # the root label, QTYPE, QCLASS
                break
            if length >= 0xC0:  # a question name is never compressed, but stay safe
                end += 6
                break
            end += length + 1
        if end > size:
            end = 12
    return b"".join((reply[:2], bytes((reply[2] | 0x02, reply[3], 0, 1 if end > 12 else 0, 0, 0, 0, 0, 0, 0)),
                     reply[12:end]))


class ResponseRateLimiter:
    """`limit(reply, source)` -> the reply, its truncated slip, or None (drop). One per process;
    called on the event loop only, so no locks."""

    def __init__(self, settings: RrlSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.rate = settings.rate
        self.floor = -settings.rate * settings.window
        self.slip = settings.slip
        self._clock = clock
        self._shift4 = 32 - settings.ipv4_prefix
        self._shift6 = 128 - settings.ipv6_prefix
        size = 16
        while size < settings.table_size:
            size <<= 1
        self._mask = size - 1
        self._keys: list[int] = [-1] * size
        self._credit = [0] * size
        self._stamp = [0] * size
        self._slips = [0] * size  # limited responses since the bucket was last in credit
        # Whether a bucket's prefix is exempt, worked out once when the bucket is taken: NONE, ALL,
        # or SOME (an exempt network inside the prefix: then the address decides, per reply).
        self._exempt_state = [NONE] * size
        # (family, network >> shift, shift): integer compares, no address objects per reply.
        self._exempt = tuple((4 if net.version == 4 else 6, int(net.network_address) >> (net.max_prefixlen - net.prefixlen),
                              net.max_prefixlen - net.prefixlen) for net in settings.exempt)
        self.limited = [[0, 0] for _ in KINDS]  # [kind][0 slipped, 1 dropped]
        self._clients: dict[str, tuple[int, int, int]] = {}
        self.now = 0
        self.tick()

    def tick(self) -> None:
        """Read the clock. The server calls this every second (and `limit` never reads the
        clock itself: a clock read would cost more than the rest of the accounting)."""
        self.now = int(self._clock())

    def limit(self, reply: bytes, source: str) -> bytes | None:
        # Kind: response_kind inlined (this runs once per UDP reply).
        rcode = reply[3] & 0x0F
        if rcode == 0:
            if reply[6] or reply[7]:
                kind = ANSWER
            elif not reply[2] & 0x04 and (reply[8] or reply[9]):
                kind = REFERRAL
            else:
                kind = NODATA
        elif rcode == 3:
            kind = NXDOMAIN
        else:
            kind = ERROR
        client = self._clients.get(source)
        if client is None:
            client = self._learn(source)
            if client is None:
                return reply  # not an address we can key (never from a socket): not limited
        key = client[0] | kind << 1
        mask = self._mask
        index = hash(key) & mask
        now = self.now
        if self._keys[index] != key:
            index = self._slot(key, now, client)
        if self._exempt:
            state = self._exempt_state[index]
            if state == ALL or state == SOME and self._exempted(client[1], client[2]):
                return reply
        credit = self._credit[index]
        if now != self._stamp[index]:
            credit += (now - self._stamp[index]) * self.rate
            if credit >= self.rate:
                credit = self.rate
                self._slips[index] = 0
            self._stamp[index] = now
        credit -= 1
        if credit >= 0:
            self._credit[index] = credit
            return reply
        self._credit[index] = credit if credit > self.floor else self.floor
        # BIND's slip: the first limited response of a bucket slips, then every `slip`-th.
        slips = self._slips[index]
        self._slips[index] = slips + 1
        if self.slip and slips % self.slip == 0:
            self.limited[kind][0] += 1
            return truncated(reply)
        self.limited[kind][1] += 1
        return None

    def _learn(self, source: str) -> tuple[int, int, int] | None:
        """(prefix key without the kind, family, address as an integer) for a source address
        string, remembered in a cache that is emptied when full (bounded; a spoofed flood of
        random sources only makes it miss)."""
        try:
            if ":" in source:
                packed = socket.inet_pton(socket.AF_INET6, source.partition("%")[0])
                if packed[:12] == b"\x00" * 10 + b"\xff\xff":  # ::ffff:a.b.c.d is an IPv4 client
                    address, family = int.from_bytes(packed[12:], "big"), 4
                else:
                    address, family = int.from_bytes(packed, "big"), 6
            else:
                address, family = int.from_bytes(socket.inet_pton(socket.AF_INET, source), "big"), 4
        except OSError:
            return None
        if family == 4:
            client = ((address >> self._shift4) << 4, 4, address)
        else:
            client = ((address >> self._shift6) << 4 | 1, 6, address)
        if len(self._clients) >= CLIENT_CACHE:
            self._clients.clear()
        self._clients[source] = client
        return client

    def _slot(self, key: int, now: int, client: tuple[int, int, int]) -> int:
        """The bucket for a key not in its first slot: its second slot, else the staler of the two
        reset for it with full credit."""
        first = hash(key) & self._mask
        second = (first ^ (hash(key) >> 17 | 1)) & self._mask
        keys = self._keys
        if keys[second] == key:
            return second
        index = first if self._stamp[first] <= self._stamp[second] else second
        keys[index] = key
        self._credit[index] = self.rate
        self._stamp[index] = now
        self._slips[index] = 0
        if self._exempt:
            self._exempt_state[index] = self._prefix_exemption(client[1], client[2])
        return index

    def _prefix_exemption(self, family: int, address: int) -> int:
        shift = self._shift4 if family == 4 else self._shift6
        network = address >> shift
        state = NONE
        for exempt_family, exempt_network, exempt_shift in self._exempt:
            if exempt_family != family:
                continue
            if exempt_shift >= shift:  # the exempt network is as wide or wider: all or nothing
                if network >> (exempt_shift - shift) == exempt_network:
                    return ALL
            elif exempt_network >> (shift - exempt_shift) == network:  # a narrower one inside
                state = SOME
        return state

    def _exempted(self, family: int, address: int) -> bool:
        for exempt_family, network, shift in self._exempt:
            if family == exempt_family and address >> shift == network:
                return True
        return False

    @property
    def slipped(self) -> int:
        return sum(counts[0] for counts in self.limited)

    @property
    def dropped(self) -> int:
        return sum(counts[1] for counts in self.limited)
