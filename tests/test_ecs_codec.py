"""The EDNS Client Subnet codec (RFC 7871 section 6), checked against dnspython's encoder."""

from __future__ import annotations

import ipaddress

import dns.edns
import pytest

from gslb.dns import ecs


def dnspython_wire(address: str, source: int) -> bytes:
    return dns.edns.ECSOption(address, source).to_wire()


@pytest.mark.parametrize(
    "address, source",
    [("81.2.69.0", 24), ("81.2.69.142", 32), ("0.0.0.0", 0), ("10.0.0.0", 9), ("2001:db8::", 56),
     ("2001:db8:1:2::", 64), ("::", 0), ("2001:db8::1", 128)],
)
def test_decode_reads_what_dnspython_writes(address: str, source: int) -> None:
    subnet = ecs.decode(dnspython_wire(address, source))
    assert subnet.source_prefix == source
    assert subnet.scope_prefix == 0
    network = ipaddress.ip_network(f"{address}/{source}", strict=False)
    assert subnet.address == network.network_address
    assert subnet.family == (1 if network.version == 4 else 2)


def test_encode_query_matches_dnspython() -> None:
    for address, source in (("81.2.69.0", 24), ("2001:db8::", 48), ("10.1.2.3", 13)):
        assert ecs.encode_query(address, source) == dnspython_wire(address, source)


def test_reply_echoes_family_source_and_address_with_our_scope() -> None:
    """RFC 7871 section 7.2.1: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as in the query."""
    subnet = ecs.decode(dnspython_wire("81.2.69.0", 24))
    reply = dns.edns.ECSOption.from_wire_parser(8, dns.wire.Parser(subnet.encode(16)))
    assert (reply.address, reply.srclen, reply.scopelen) == ("81.2.69.0", 24, 16)


@pytest.mark.parametrize(
    "data, field",
    [
        (b"", "at least 4"),
        (b"\x00\x01\x18", "at least 4"),
        (b"\x00\x03\x00\x00", "FAMILY 3"),
        (b"\x00\x00\x00\x00", "FAMILY 0"),
        (b"\x00\x01\x21\x00" + bytes(5), "longer than an address"),
        (b"\x00\x02\x81\x00" + bytes(17), "longer than an address"),
        (b"\x00\x01\x18\x00\x51\x02\x45\x00", "needs exactly 3"),  # 4 address bytes for a /24
        (b"\x00\x01\x18\x00\x51\x02", "needs exactly 3"),  # 2 address bytes for a /24
        (b"\x00\x01\x00\x00\x00", "needs exactly 0"),
        (b"\x00\x01\x17\x00\x51\x02\x45", "bits set past"),  # /23 with the 24th bit set
        (b"\x00\x01\x04\x00\x1f", "bits set past"),
    ],
)
def test_malformed_options_are_rejected_with_the_field_at_fault(data: bytes, field: str) -> None:
    with pytest.raises(ecs.EcsError, match=field):
        ecs.decode(data)


def test_nonzero_scope_in_a_query_is_ignored() -> None:
    subnet = ecs.decode(b"\x00\x01\x18\x10\x51\x02\x45")
    assert subnet.source_prefix == 24
