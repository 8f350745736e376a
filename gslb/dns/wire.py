"""Small wire-format readers where dnslib falls short of the RFCs.

- dnslib's name decoder rejects labels that are not UTF-8 (RFC 2181 section 11 allows any
  octet) and follows compression pointers recursively, so a long pointer chain raises
  RecursionError. `decode_name` below is iterative, caps the hops, and keeps labels as bytes;
  `install()` puts it in place of dnslib's for the whole process.
- dnslib drops an EDNS option whose data is empty when it is the last one (`remaining() > 4`),
  and that is exactly what an NSID request looks like (RFC 5001). `opt_options` reads the OPT
  record's options from the packet itself.
"""

from __future__ import annotations

import struct

from dnslib.label import DNSBuffer, DNSLabel

MAX_POINTER_HOPS = 64  # a 255-byte name has at most 127 labels; real messages use a handful


def decode_name(self: DNSBuffer, last: int = -1) -> DNSLabel:
    labels: list[bytes] = []
    data = self.data
    offset = self.offset
    resume = None  # where the buffer continues after the first pointer
    hops = 0
    total = 0
    while True:
        if offset >= len(data):
            raise BufferError(f"name runs past the end of the message at offset {offset}")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise BufferError("truncated compression pointer")
            pointer = ((length & 0x3F) << 8) | data[offset + 1]
            if resume is None:
                resume = offset + 2
            if pointer >= offset or hops >= MAX_POINTER_HOPS:
                raise BufferError(f"bad compression pointer to {pointer} at offset {offset}")
            hops += 1
            offset = pointer
            continue
        if length & 0xC0:
            raise BufferError(f"unknown label type {length >> 6} at offset {offset}")
        offset += 1
        if length == 0:
            break
        label = bytes(data[offset:offset + length])
        if len(label) != length:
            raise BufferError("label runs past the end of the message")
        total += length + 1
        if total > 254:
            raise BufferError("name longer than 255 bytes")
        labels.append(label)
        offset += length
    self.offset = resume if resume is not None else offset
    return DNSLabel(labels)


def install() -> None:
    DNSBuffer.decode_name = decode_name


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def opt_options(packet: bytes) -> list[tuple[int, bytes]]:
    """The (code, data) options of the first OPT record, in order; [] when there is none.
    Call only on a packet that already parsed, so its structure is known to be sound."""
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", packet, 4)
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(packet, offset) + 4
    for index in range(ancount + nscount + arcount):
        offset = _skip_name(packet, offset)
        rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", packet, offset)
        offset += 10
        if rtype == 41 and index >= ancount + nscount:
            options = []
            position, end = offset, offset + rdlen
            while position + 4 <= end:
                code, length = struct.unpack_from("!HH", packet, position)
                options.append((code, bytes(packet[position + 4:position + 4 + length])))
                position += 4 + length
            return options
        offset += rdlen
    return []
