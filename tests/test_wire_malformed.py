"""Packets a server must survive (RFC 1035 4.1, RFC 8906): bad opcodes, bad counts, unparseable
questions, fragments and responses sent as queries, and a seeded fuzz loop.

These run against their own server, so a crash here cannot hide behind another module's results;
after every bad packet the server must still answer a normal query.
"""

from __future__ import annotations

import random
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from conftest import NODE_NAME
from dnsserver import WIRE_ZONES

QUERY_ID = 0x5A5A
RD = 0x0100
WWW_QUESTION = b"\x03www\x04wire\x07example\x00" + struct.pack("!HH", 1, 1)


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(WIRE_ZONES, node_name=NODE_NAME)


@pytest.fixture(autouse=True)
def still_serving_afterwards(server):
    """Every test here ends by proving the server still answers, over UDP and TCP, and that no
    packet reached the catch-all that logs a traceback (an internal error, not a parse rule)."""
    yield
    assert server.alive(), f"the server died\n{server.describe()}"
    assert "Traceback" not in server.stderr_text(), server.describe()
    for tcp in (False, True):
        reply = server.query("www.wire.example.", "A", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR, f"no normal answer over {'TCP' if tcp else 'UDP'} afterwards"


def header(*, ident: int = QUERY_ID, flags: int = RD, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def parsed(wire: bytes | None) -> dns.message.Message:
    assert wire is not None, "no reply"
    return dns.message.from_wire(wire)


def header_of(wire: bytes | None) -> tuple[int, int, int]:
    """(id, flags, rcode) from a reply's raw header, for replies dnspython may not parse."""
    assert wire is not None, "no reply"
    assert len(wire) >= 12, f"reply shorter than a header: {wire!r}"
    ident, flags = struct.unpack("!HH", wire[:4])
    return ident, flags, flags & 0xF


# -- opcodes (RFC 1035 4.1.1, RFC 8906 3.1.4) ------------------------------------------------------

@pytest.mark.parametrize(
    "opcode",
    [dns.opcode.IQUERY, dns.opcode.STATUS, 3, dns.opcode.NOTIFY, dns.opcode.UPDATE, 6, 15],
)
def test_opcode_other_than_query_gets_notimp(server, tcp, opcode):
    wire = header(flags=(opcode << 11) | RD) + WWW_QUESTION
    ident, flags, rcode = header_of(server.send_raw(wire, tcp=tcp))
    assert ident == QUERY_ID
    assert flags & 0x8000, "QR not set"
    assert (flags >> 11) & 0xF == opcode, "opcode not copied"
    assert rcode == dns.rcode.NOTIMP
    assert not flags & 0x0400, "AA set on an error"


CD = 0x0010


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, 3, dns.opcode.NOTIFY, dns.opcode.UPDATE, 15])
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
def test_notimp_copies_neither_rd_nor_cd_as_bind_does(server, tcp, opcode, edns):
    """BIND's dns_message_reply() keeps RD and CD only in replies to QUERY; for any other opcode
    the reply's flags are QR alone. ISC's DNS compliance tester flags a NOTIMP that copies them."""
    query = dns.message.make_query("www.wire.example.", "A", use_edns=0 if edns else False)
    query.set_opcode(opcode)
    query.flags |= dns.flags.RD | dns.flags.CD
    wire = server.send_raw(query.to_wire(), tcp=tcp)
    _, flags, rcode = header_of(wire)
    assert rcode == dns.rcode.NOTIMP and (flags >> 11) & 0xF == opcode
    assert flags & ~0x780F == 0x8000, f"flags {flags:#06x}: only QR (and the opcode and rcode) may be set"
    if edns:  # RFC 6891 6.1.1: still an OPT in the reply (read raw: dnspython parses UPDATE strictly)
        assert wire is not None and struct.unpack("!H", wire[10:12])[0] == 1 and b"\x00\x00\x29" in wire[12:]


def test_a_header_only_query_of_another_opcode_gets_notimp_with_qr_alone(server, tcp):
    """RFC 8906 8.1.4's probe (dig +opcode=15 +header-only), here with RD and CD set."""
    wire = server.send_raw(header(flags=(15 << 11) | RD | CD, qd=0), tcp=tcp)
    ident, flags, rcode = header_of(wire)
    assert (ident, rcode, flags) == (QUERY_ID, dns.rcode.NOTIMP, 0x8000 | (15 << 11) | dns.rcode.NOTIMP)


def test_a_query_still_gets_rd_and_cd_back(server, tcp):
    query = dns.message.make_query("www.wire.example.", "A")
    query.flags |= dns.flags.RD | dns.flags.CD
    _, flags, rcode = header_of(server.send_raw(query.to_wire(), tcp=tcp))
    assert rcode == dns.rcode.NOERROR and flags & (RD | CD) == RD | CD


def test_notimp_keeps_the_question(server, tcp):
    query = dns.message.make_query("www.wire.example.", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = parsed(server.send_raw(query.to_wire(), tcp=tcp))
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == dns.opcode.NOTIFY
    assert reply.question == query.question


# -- question counts ----------------------------------------------------------------------------

def test_qdcount_0_gets_formerr(server, tcp):
    ident, flags, rcode = header_of(server.send_raw(header(qd=0), tcp=tcp))
    assert (ident, rcode) == (QUERY_ID, dns.rcode.FORMERR)
    assert flags & 0x8000


def test_qdcount_2_gets_formerr(server, tcp):
    mail = b"\x04mail\x04wire\x07example\x00" + struct.pack("!HH", 1, 1)
    ident, flags, rcode = header_of(server.send_raw(header(qd=2) + WWW_QUESTION + mail, tcp=tcp))
    assert (ident, rcode) == (QUERY_ID, dns.rcode.FORMERR)
    assert flags & 0x8000


def test_qdcount_larger_than_the_packet_gets_formerr(server, tcp):
    ident, _, rcode = header_of(server.send_raw(header(qd=40) + WWW_QUESTION, tcp=tcp))
    assert (ident, rcode) == (QUERY_ID, dns.rcode.FORMERR)


# -- questions that cannot be parsed, behind an intact header -----------------------------------

UNPARSEABLE = {
    "truncated-label": b"\x03ww",
    "label-runs-past-the-end": b"\x3fwww",
    "missing-root-label": b"\x03www\x04wire\x07example",
    "no-type-and-class": b"\x03www\x04wire\x07example\x00",
    "type-without-class": b"\x03www\x04wire\x07example\x00\x00\x01",
    "pointer-forward": b"\xc0\x20" + struct.pack("!HH", 1, 1),
    "pointer-to-itself": b"\xc0\x0c" + struct.pack("!HH", 1, 1),
    "pointer-past-the-end": b"\xc3\xff" + struct.pack("!HH", 1, 1),
    "pointer-loop": b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1),
    "half-a-pointer": b"\xc0",
    "reserved-label-type-0x40": b"\x41www\x00" + struct.pack("!HH", 1, 1),
    "reserved-label-type-0x80": b"\x81w\x00" + struct.pack("!HH", 1, 1),
}


@pytest.mark.parametrize("question", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_unparseable_question_behind_an_intact_header_gets_formerr(server, tcp, question):
    ident, flags, rcode = header_of(server.send_raw(header() + question, tcp=tcp))
    assert ident == QUERY_ID
    assert flags & 0x8000, "QR not set"
    assert rcode == dns.rcode.FORMERR
    assert flags & RD, "RD not copied"


def test_truncated_additional_section_gets_formerr(server, tcp):
    ident, _, rcode = header_of(server.send_raw(header(ar=1) + WWW_QUESTION + b"\x00\x00\x29", tcp=tcp))
    assert (ident, rcode) == (QUERY_ID, dns.rcode.FORMERR)


def test_binary_label_is_a_name_not_a_format_error_rfc2181_11(server, tcp):
    # Any octet may stand in a label; this name is well formed and simply does not exist.
    question = b"\x02\xff\xfe\x04wire\x07example\x00" + struct.pack("!HH", 1, 1)
    ident, _, rcode = header_of(server.send_raw(header() + question, tcp=tcp))
    assert ident == QUERY_ID
    assert rcode == dns.rcode.NXDOMAIN



def name_of_length(octets: int) -> bytes:
    """A name under wire.example. that takes exactly `octets` bytes on the wire."""
    suffix = b"\x04wire\x07example\x00"
    labels, left = b"", octets - len(suffix)
    while left:
        size = min(63, left - 1)
        if left - (size + 1) == 1:  # one byte left over could not hold a label
            size -= 1
        labels += bytes([size]) + b"a" * size
        left -= size + 1
    name = labels + suffix
    assert len(name) == octets
    return name


def test_name_of_255_octets_is_answered_rfc1035_3_1(server, tcp):
    question = name_of_length(255) + struct.pack("!HH", 1, 1)
    ident, _, rcode = header_of(server.send_raw(header() + question, tcp=tcp))
    assert (ident, rcode) == (QUERY_ID, dns.rcode.NXDOMAIN)


@pytest.mark.parametrize(
    "tcp",
    [
        False,
        True,
    ],
    ids=["udp", "tcp"],
)
@pytest.mark.parametrize("octets", [256, 300])
def test_name_longer_than_255_octets_gets_formerr_rfc1035_3_1(server, tcp, octets):
    question = name_of_length(octets) + struct.pack("!HH", 1, 1)
    ident, _, rcode = header_of(server.send_raw(header() + question, tcp=tcp))
    assert ident == QUERY_ID
    assert rcode == dns.rcode.FORMERR

def pointer_chain_packet(links: int) -> bytes:
    """A valid query plus two additional records: the first's opaque rdata holds a chain of
    `links` compression pointers, each pointing at the one before; the second's owner name is
    a pointer to the end of that chain."""
    query = header(ar=2) + WWW_QUESTION
    start = len(query) + 1 + 10  # the first record: root owner, then type/class/ttl/rdlength
    chain = bytearray(b"\x00")  # a root label to end the name
    previous = start
    for index in range(links):
        chain += struct.pack("!H", 0xC000 | previous)
        previous = start + 1 + 2 * index
    first = b"\x00" + struct.pack("!HHIH", 65280, 1, 0, len(chain)) + bytes(chain)
    second = struct.pack("!H", 0xC000 | previous) + struct.pack("!HHIH", 1, 1, 0, 4) + bytes(4)
    return query + first + second


def test_short_pointer_chain_in_the_additional_section_is_parsed(server, tcp):
    # The same shape as the test below with a short chain: a well-formed query, answered.
    reply = parsed(server.send_raw(pointer_chain_packet(20), tcp=tcp))
    assert reply.rcode() == dns.rcode.NOERROR


def test_long_compression_pointer_chain_gets_formerr(server, tcp):
    # A name longer than 255 octets is malformed (RFC 1035 3.1) whatever its pointers do.
    ident, _, rcode = header_of(server.send_raw(pointer_chain_packet(2000), tcp=tcp))
    assert ident == QUERY_ID
    assert rcode == dns.rcode.FORMERR


# -- packets that get no reply (RFC 1035 4.1.1, RFC 8906 3.1.1) -------------------------------------

@pytest.mark.parametrize("size", [0, 1, 2, 11])
def test_packet_shorter_than_a_header_gets_no_reply(server, size):
    packet = (header() + WWW_QUESTION)[:size]
    assert server.client.send_udp_fenced(packet) is None


@pytest.mark.parametrize("size", [0, 1, 11])
def test_tcp_message_shorter_than_a_header_gets_no_reply_and_the_connection_closes(server, size):
    with server.tcp() as stream:
        stream.send((header() + WWW_QUESTION)[:size])
        assert stream.recv_message(timeout=1) is None
        assert stream.closed_by_peer(timeout=2)


@pytest.mark.parametrize("flags", [0x8000, 0x8100, 0x8400 | RD], ids=["qr", "qr-rd", "qr-aa-rd"])
def test_packet_with_qr_set_gets_no_reply(server, flags):
    assert server.client.send_udp_fenced(header(flags=flags) + WWW_QUESTION) is None


def test_response_sent_to_the_server_is_not_answered(server):
    reply_wire = server.send_udp(dns.message.make_query("www.wire.example.", "A").to_wire())
    assert reply_wire is not None
    assert server.client.send_udp_fenced(reply_wire) is None  # a reflected reply must not start a loop


def test_tcp_message_with_qr_set_gets_no_reply(server):
    with server.tcp() as stream:
        stream.send(header(flags=0x8000) + WWW_QUESTION)
        assert stream.recv_message(timeout=1) is None


def test_wrong_length_prefix_does_not_hang_other_connections(server):
    with server.tcp() as stream:
        stream.send_raw(b"\xff\xff" + header() + WWW_QUESTION)  # promises 65535 bytes, sends 40
        reply = server.query("mail.wire.example.", "A", tcp=True)  # another connection still works
        assert reply.rcode() == dns.rcode.NOERROR


# -- fuzz ------------------------------------------------------------------------------------------

SEEDS = [
    dns.message.make_query("www.wire.example.", "A").to_wire(),
    dns.message.make_query("wire.example.", "ANY", use_edns=0).to_wire(),
    dns.message.make_query("host.deleg.wire.example.", "A", use_edns=0, want_dnssec=True).to_wire(),
    dns.message.make_query("chain1.wire.example.", "A", use_edns=0, payload=4096).to_wire(),
    dns.message.make_query("id.server.", "TXT", "CH", use_edns=0).to_wire(),
    header(ar=1) + WWW_QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\x08\x00\x08\x00\x01\x18\x00\xc0\x00\x02",
]


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(6)
        if action == 0 and data:  # flip a bit
            index = rng.randrange(len(data))
            data[index] ^= 1 << rng.randrange(8)
        elif action == 1 and data:  # replace a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 2:  # cut the tail
            del data[rng.randrange(len(data) + 1):]
        elif action == 3:  # insert junk
            index = rng.randrange(len(data) + 1)
            data[index:index] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif action == 4 and len(data) >= 12:  # scramble a count
            index = 4 + 2 * rng.randrange(4)
            data[index:index + 2] = struct.pack("!H", rng.choice([0, 1, 2, 3, 255, 65535]))
        else:  # a random packet
            data = bytearray(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return bytes(data)


def expects_reply(packet: bytes) -> bool:
    """RFC 8906: everything but a fragment or a response gets an answer."""
    return len(packet) >= 12 and not packet[2] & 0x80


def test_random_and_mutated_packets_over_udp_never_stop_the_server(server):
    rng = random.Random(8906)
    for round_ in range(400):
        packet = mutate(rng, rng.choice(SEEDS))
        if rng.random() < 0.7 and len(packet) >= 3:
            packet = packet[:2] + bytes([packet[2] & 0x7F]) + packet[3:]  # mostly queries
        reply = server.client.send_udp_fenced(packet)
        if expects_reply(packet):
            assert reply is not None, f"round {round_}: no reply to {packet.hex()}"
            assert reply[:2] == packet[:2], f"round {round_}: reply id differs"
            assert reply[2] & 0x80, f"round {round_}: reply without QR"
        else:
            assert reply is None, f"round {round_}: a reply to a packet that must be dropped: {packet.hex()}"
        if round_ % 50 == 49:
            assert server.alive(), f"round {round_}: the server died\n{server.describe()}"
            assert server.query("www.wire.example.", "A").rcode() == dns.rcode.NOERROR


def test_random_and_mutated_messages_over_tcp_never_stop_the_server(server):
    rng = random.Random(7766)
    for round_ in range(100):
        packet = mutate(rng, rng.choice(SEEDS))[:65535]
        if len(packet) >= 3:
            packet = packet[:2] + bytes([packet[2] & 0x7F]) + packet[3:]
        reply = server.send_tcp_raw(packet, timeout=1.0 if expects_reply(packet) else 0.2)
        if expects_reply(packet):
            assert reply is not None, f"round {round_}: no reply to {packet.hex()}"
            assert reply[:2] == packet[:2] and reply[2] & 0x80
        if round_ % 25 == 24:
            assert server.alive(), f"round {round_}: the server died\n{server.describe()}"
            assert server.query("www.wire.example.", "A", tcp=True).rcode() == dns.rcode.NOERROR


def test_fuzzed_packets_cause_no_internal_errors(server):
    """Malformed packets are answered by the parser's own rules (FORMERR and friends), never
    by the catch-all in Answerer.respond that logs a traceback and answers SERVFAIL."""
    rng = random.Random(1035)
    for _ in range(300):
        packet = mutate(rng, rng.choice(SEEDS))
        if len(packet) >= 12:
            packet = packet[:2] + bytes([packet[2] & 0x7F]) + packet[3:]
            reply = server.send_udp(packet, timeout=1.0)
            assert reply is not None
            assert reply[3] & 0xF != dns.rcode.SERVFAIL, f"SERVFAIL (an internal error) for {packet.hex()}"
