"""The EDNS Client Subnet option (RFC 7871, option code 8): decode, validate, encode.

dnslib carries EDNS options as opaque (code, bytes) pairs, so this small codec is ours. Every
malformation RFC 7871 section 6 names makes the query a FORMERR; `decode` raises `EcsError` with
the field at fault.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

OPTION_CODE = 8
FAMILY_IPV4 = 1
FAMILY_IPV6 = 2
_BITS = {FAMILY_IPV4: 32, FAMILY_IPV6: 128}


class EcsError(ValueError):
    """A malformed ECS option; the query gets FORMERR."""


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    family: int
    source_prefix: int
    scope_prefix: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    raw_address: bytes  # the address bytes as sent, echoed back unchanged

    def encode(self, scope_prefix: int) -> bytes:
        """Option data for the reply: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as received, with
        our SCOPE PREFIX-LENGTH (RFC 7871 section 7.2.1)."""
        return (
            self.family.to_bytes(2, "big")
            + bytes((self.source_prefix, scope_prefix))
            + self.raw_address
        )


def decode(data: bytes) -> ClientSubnet:
    if len(data) < 4:
        raise EcsError(f"ECS option is {len(data)} bytes; it needs at least 4")
    family = int.from_bytes(data[0:2], "big")
    source_prefix, scope_prefix = data[2], data[3]
    if family not in _BITS:
        raise EcsError(f"ECS FAMILY {family} is unknown; 1 (IPv4) and 2 (IPv6) are defined")
    bits = _BITS[family]
    if source_prefix > bits:
        raise EcsError(f"ECS SOURCE PREFIX-LENGTH {source_prefix} is longer than an address ({bits} bits)")
    # A non-zero SCOPE PREFIX-LENGTH in a query breaks a MUST of section 6, but section 6's list
    # of FORMERR cases leaves it out, as do BIND and Knot: it is ignored here too.
    raw = data[4:]
    needed = (source_prefix + 7) // 8
    if len(raw) != needed:
        raise EcsError(
            f"ECS ADDRESS has {len(raw)} bytes; SOURCE PREFIX-LENGTH {source_prefix} needs exactly {needed}"
        )
    value = int.from_bytes(raw, "big") << (8 * (bits // 8 - needed)) if needed else 0
    host_bits = bits - source_prefix
    if value & ((1 << host_bits) - 1):
        raise EcsError(f"ECS ADDRESS has bits set past SOURCE PREFIX-LENGTH {source_prefix}")
    address = ipaddress.IPv4Address(value) if family == FAMILY_IPV4 else ipaddress.IPv6Address(value)
    return ClientSubnet(family, source_prefix, scope_prefix, address, bytes(raw))


def subnet_number(data: bytes) -> tuple[int, int] | None:
    """(IP version, the address as an int) of an ECS option with a non-zero SOURCE
    PREFIX-LENGTH; None wherever `decode` raises. The fast path's placement miss: the same checks
    without an ipaddress object or a ClientSubnet (tests/test_ecs.py holds the two equal)."""
    if len(data) < 5 or data[0]:
        return None
    family = data[1]
    if family == FAMILY_IPV4:
        bits, version = 32, 4
    elif family == FAMILY_IPV6:
        bits, version = 128, 6
    else:
        return None
    source_prefix = data[2]
    needed = (source_prefix + 7) >> 3
    if source_prefix > bits or len(data) - 4 != needed:
        return None
    value = int.from_bytes(data[4:], "big") << (bits - 8 * needed)
    if value & ((1 << (bits - source_prefix)) - 1):
        return None
    return version, value


def encode_query(address: str, source_prefix: int) -> bytes:
    """Option data for a query (used by tests and the benchmark's query generator)."""
    ip = ipaddress.ip_address(address)
    family = FAMILY_IPV4 if ip.version == 4 else FAMILY_IPV6
    network = ipaddress.ip_network(f"{ip}/{source_prefix}", strict=False)
    raw = network.network_address.packed[: (source_prefix + 7) // 8]
    return family.to_bytes(2, "big") + bytes((source_prefix, 0)) + raw
