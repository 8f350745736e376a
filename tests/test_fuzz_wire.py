"""Property tests for the wire parser: whatever bytes arrive, the answerer answers or drops them
the way RFC 1035 and RFC 8906 allow, and never fails inside.

Both entry points are driven in one process over the wire and geo test zones: `respond` (the
general path, dnslib's parser, UDP and TCP) and `respond_udp` (the fast path first, the general
path when it declines). For every packet:

- a packet shorter than a header, or with QR set (a response), gets no reply (RFC 8906 drops);
  every other packet gets one;
- a reply parses with dnspython (an independent parser), has QR set and the query's ID, and
  over UDP fits 512 bytes, or the EDNS size we advertise when the query had an OPT;
- nothing is logged at ERROR: the answerer's catch-all turns an internal error into SERVFAIL
  and a traceback, which for a client's packet is a bug.

Valid generated queries must in addition get a reply whose question is theirs.
The budget comes from the hypothesis profile in tests/conftest.py.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import struct
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb import service
from gslb.settings import ServerSettings

DATA = Path(__file__).resolve().parent / "data"
CLIENT = ipaddress.ip_address("192.0.2.1")
EDNS_SIZE = 1232

NAMES = [
    "wire.example.", "www.wire.example.", "WwW.Wire.EXAMPLE.", "mail.wire.example.", "chain1.wire.example.",
    "outside.wire.example.", "a.b.wire.example.", "deleg.wire.example.", "x.deleg.wire.example.",
    "child.wire.example.", "nope.wire.example.", "big1232.wire.example.", "10.2.0.192.in-addr.arpa.",
    "example.org.", ".", "geo.example.", "www.geo.example.", "www6.geo.example.", "partial.geo.example.",
    "nope.geo.example.", "id.server.", "hostname.bind.",
]
TYPES = ["A", "AAAA", "NS", "SOA", "MX", "TXT", "SRV", "CNAME", "ANY", "DS", "AXFR", "IXFR", "OPT", 65280]


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    zones = tmp_path_factory.mktemp("zones")
    for source in (DATA / "zones_wire", DATA / "zones_geo"):
        for file in source.glob("*.yaml"):
            shutil.copy(file, zones / file.name)
    settings = ServerSettings(zones=zones, geoip=DATA / "geo" / "GeoIP2-City-Test.mmdb", node_name="fuzz-node")
    result, problems = service.load(settings)
    assert result is not None, problems
    assert result.answerer.fast is not None
    return result.answerer


class ErrorLog(logging.Handler):
    """Records every ERROR (and worse) line logged while a packet is answered."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def errors():
    handler = ErrorLog()
    logger = logging.getLogger("gslb")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def check_reply(packet: bytes, reply: bytes | None, *, tcp: bool) -> dns.message.Message | None:
    """The invariants every (packet, reply) pair holds; the parsed reply, if any."""
    if len(packet) < 12 or packet[2] & 0x80:
        assert reply is None, f"replied to a packet RFC 8906 drops: {packet.hex()}"
        return None
    assert reply is not None, f"no reply to a {len(packet)}-byte query without QR: {packet.hex()}"
    # dnspython reads an UPDATE (opcode 5) by RFC 2136's rules (a zone section of type SOA); a
    # NOTIMP to a broken UPDATE echoes its header and question, so the reply is read as a QUERY
    # and the opcode compared on its own.
    opcode = (reply[2] >> 3) & 0xF
    assert opcode == (packet[2] >> 3) & 0xF, f"opcode changed: query {packet.hex()} reply {bytes(reply).hex()}"
    as_query = bytes(reply[:2]) + bytes((reply[2] & 0x87,)) + bytes(reply[3:])  # dnslib packs into a bytearray
    try:
        message = dns.message.from_wire(as_query)
    except dns.exception.DNSException as error:
        raise AssertionError(f"dnspython cannot parse the reply ({error!r}): query {packet.hex()} reply {bytes(reply).hex()}") from None
    assert message.flags & dns.flags.QR, packet.hex()
    assert message.id == int.from_bytes(packet[:2], "big"), packet.hex()
    if not tcp:
        limit = EDNS_SIZE if message.edns >= 0 else 512
        assert len(reply) <= limit, f"{len(reply)}-byte UDP reply over {limit}: query {packet.hex()}"
    return message


def answer_everywhere(answerer, packet: bytes, errors: ErrorLog) -> list[dns.message.Message | None]:
    """The packet through the general path (UDP, TCP) and the UDP entry (fast path first)."""
    errors.lines.clear()
    parsed = [
        check_reply(packet, answerer.respond(packet, CLIENT, False), tcp=False),
        check_reply(packet, answerer.respond(packet, CLIENT, True), tcp=True),
        check_reply(packet, answerer.respond_udp(packet, str(CLIENT)), tcp=False),
    ]
    assert not errors.lines, f"logged at ERROR for query {packet.hex()}: {errors.lines[0]}"
    return parsed


# -- strategies ------------------------------------------------------------------------------------

def _seeds() -> list[bytes]:
    """Valid queries of every shape the server knows: plain, EDNS with DO, ECS v4 and v6, NSID,
    unknown options, CH class."""
    seeds = []
    for index, name in enumerate(NAMES):
        rdtype = TYPES[index % len(TYPES)]
        seeds.append(dns.message.make_query(name, "A", use_edns=False).to_wire())
        seeds.append(dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True).to_wire())
        seeds.append(dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption("81.2.69.160", 27)]).to_wire())
        seeds.append(dns.message.make_query(name, "AAAA", use_edns=0, options=[
            dns.edns.ECSOption("2001:218::", 32), dns.edns.GenericOption(3, b""), dns.edns.GenericOption(65001, b"x")]).to_wire())
    seeds.append(dns.message.make_query("id.server.", "TXT", rdclass="CH").to_wire())
    return seeds


SEEDS = _seeds()


def _opt(options: bytes, size: int = 1232) -> bytes:
    return b"\x00\x00\x29" + struct.pack("!HIH", size, 0, len(options)) + options


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid query with one to four mutations: the packet shapes bench/fuzz.py sends."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from([
            "flip", "byte", "truncate", "insert", "delete", "count", "pointer", "huge_option", "ecs", "opcode",
            "extra_opt", "label",
        ]))
        if kind == "flip" and data:
            bit = draw(st.integers(0, len(data) * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
        elif kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete" and data:
            at = draw(st.integers(0, len(data) - 1))
            del data[at:at + draw(st.integers(1, 20))]
        elif kind == "count" and len(data) >= 12:
            field = draw(st.integers(0, 3))
            value = draw(st.sampled_from([0, 1, 2, 3, 0x7FFF, 0xFFFF]))
            data[4 + 2 * field:6 + 2 * field] = value.to_bytes(2, "big")
        elif kind == "pointer" and len(data) >= 14:
            # A compression pointer in the question: to itself, forward, or a two-pointer loop.
            target = draw(st.sampled_from([12, 14, 0x3FFF, len(data)]))
            data[12:14] = (0xC000 | target & 0x3FFF).to_bytes(2, "big")
            if draw(st.booleans()):
                data[14:16] = b"\xc0\x0c"
        elif kind == "huge_option":
            size = draw(st.sampled_from([0, 1, 255, 1500, 4000, 60000]))
            data += _opt(struct.pack("!HH", draw(st.integers(0, 65535)), size) + bytes(size))
            if len(data) >= 12:
                data[10:12] = (int.from_bytes(data[10:12], "big") + 1 & 0xFFFF).to_bytes(2, "big")
        elif kind == "ecs":
            option = draw(st.binary(max_size=24))
            if draw(st.booleans()):  # a plausible head, then garbage
                option = struct.pack("!HBB", draw(st.integers(0, 3)), draw(st.integers(0, 255)),
                                     draw(st.integers(0, 255))) + option
            data += _opt(struct.pack("!HH", 8, len(option)) + option)
            if len(data) >= 12:
                data[10:12] = (int.from_bytes(data[10:12], "big") + 1 & 0xFFFF).to_bytes(2, "big")
        elif kind == "opcode" and len(data) >= 3:
            data[2] = (data[2] & 0x87) | (draw(st.integers(0, 15)) << 3)
        elif kind == "extra_opt":
            data += _opt(b"", draw(st.integers(0, 65535)))
            if len(data) >= 12:
                data[10:12] = (int.from_bytes(data[10:12], "big") + 1 & 0xFFFF).to_bytes(2, "big")
        elif kind == "label" and len(data) >= 13:
            data[12] = draw(st.sampled_from([63, 64, 127, 128, 191, 255]))
    if draw(st.booleans()) and len(data) >= 3:
        data[2] &= 0x7F  # mostly queries: the QR-set case is drawn on its own below
    return bytes(data)


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


@st.composite
def valid_queries(draw: st.DrawFn) -> dns.message.Message:
    base = draw(st.sampled_from(NAMES))
    prefix = draw(st.lists(labels, max_size=3))
    name = dns.name.from_text(".".join(prefix + [base]) if prefix and base != "." else base)
    rdtype = draw(st.sampled_from([*TYPES[:10], "HTTPS", "CAA", "PTR"]) | st.integers(1, 65535).filter(
        lambda t: not (128 <= t <= 255) and t != 41))
    rdclass = draw(st.sampled_from(["IN", "IN", "IN", "CH", "ANY", 42]))
    options = []
    if draw(st.booleans()):
        address = draw(st.ip_addresses())
        bits = 32 if address.version == 4 else 128
        options.append(dns.edns.ECSOption(str(address), draw(st.integers(0, bits))))
    if draw(st.booleans()):
        options.append(dns.edns.GenericOption(3, b""))
    edns = draw(st.sampled_from([None, 0]))
    message = dns.message.make_query(
        name, rdtype, rdclass, use_edns=0 if options else edns, options=options or None,
        payload=draw(st.sampled_from([512, 1232, 4096, 65535])), want_dnssec=draw(st.booleans()))
    message.id = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        message.flags &= ~dns.flags.RD
    if draw(st.booleans()):
        message.flags |= dns.flags.CD
    return message


# -- properties ------------------------------------------------------------------------------------

@given(st.binary(max_size=600))
def test_any_bytes_are_answered_or_dropped_never_an_error(answerer, errors, packet):
    answer_everywhere(answerer, packet, errors)


@given(mutated())
def test_mutated_queries_are_answered_or_dropped_never_an_error(answerer, errors, packet):
    answer_everywhere(answerer, packet, errors)


@given(mutated())
def test_no_reply_to_a_packet_with_qr_set(answerer, errors, packet):
    if len(packet) < 3:
        packet = packet + bytes(3 - len(packet))
    packet = packet[:2] + bytes((packet[2] | 0x80,)) + packet[3:]
    assert answer_everywhere(answerer, packet, errors) == [None, None, None]


@given(valid_queries())
def test_valid_queries_get_a_reply_to_their_question(answerer, errors, query):
    packet = query.to_wire()
    for reply in answer_everywhere(answerer, packet, errors):
        assert reply is not None
        assert reply.opcode() == dns.opcode.QUERY
        assert reply.question == query.question, (packet.hex(), reply.to_text())
        assert (reply.edns >= 0) == (query.edns >= 0), packet.hex()
