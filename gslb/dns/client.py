"""The client address of a packet, as geo routing and the logs see it."""

from __future__ import annotations

import ipaddress


def client_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The socket's text address as an address object; an IPv4 client seen through a
    dual-stack socket (::ffff:a.b.c.d) is the IPv4 address, and a zone index is dropped."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
