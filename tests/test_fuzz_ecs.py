"""Property tests for the EDNS Client Subnet codec (RFC 7871 section 6) and its use by the answerer.

- Any option data decodes to a ClientSubnet or raises EcsError, never anything else; what
  decodes re-encodes to the same bytes (with the scope we set).
- Every address and prefix round-trips through encode_query and decode, agreeing with dnspython.
- Over both answer paths a query whose ECS option the codec refuses gets FORMERR, and one it
  accepts never does; neither ever logs an error.
The budget comes from the hypothesis profile in tests/conftest.py.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import struct
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gslb import service
from gslb.dns import ecs
from gslb.settings import ServerSettings

DATA = Path(__file__).resolve().parent / "data"


@st.composite
def prefixes(draw: st.DrawFn) -> tuple[str, int]:
    address = draw(st.ip_addresses())
    return str(address), draw(st.integers(0, 32 if address.version == 4 else 128))


@st.composite
def option_data(draw: st.DrawFn) -> bytes:
    """Mostly near-valid options (a real head with a wrong detail), some pure noise."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=40))
    family = draw(st.sampled_from([1, 2, 1, 2, 0, 3, 0xFFFF]))
    source = draw(st.integers(0, 255) | st.sampled_from([0, 24, 32, 33, 56, 128, 129]))
    scope = draw(st.integers(0, 255))
    needed = (source + 7) // 8
    size = draw(st.sampled_from([needed, needed, max(0, needed - 1), needed + 1]) | st.integers(0, 20))
    return struct.pack("!HBB", family, source, scope) + draw(st.binary(min_size=size, max_size=size))


@given(option_data())
def test_the_fast_paths_subnet_number_accepts_what_decode_accepts_and_reads_the_same_address(data):
    """ecs.subnet_number places the fast path's cache misses; it must refuse exactly what decode
    refuses (a FORMERR) and read the same address, for any option with a SOURCE PREFIX-LENGTH."""
    try:
        subnet = ecs.decode(data)
    except ecs.EcsError:
        assert ecs.subnet_number(data) is None
        return
    if subnet.source_prefix == 0:
        assert ecs.subnet_number(data) is None  # no address: the caller places the source instead
    else:
        assert ecs.subnet_number(data) == (subnet.address.version, int(subnet.address))


@given(option_data())
def test_any_option_decodes_or_is_an_ecs_error(data):
    try:
        subnet = ecs.decode(data)
    except ecs.EcsError as error:
        assert "\n" not in str(error) and len(str(error)) < 200
        return
    assert subnet.family in (1, 2)
    assert subnet.encode(subnet.scope_prefix) == data
    assert subnet.source_prefix <= (32 if subnet.family == 1 else 128)


@given(prefixes())
def test_every_prefix_round_trips_and_agrees_with_dnspython(prefix):
    address, source = prefix
    data = ecs.encode_query(address, source)
    assert data == dns.edns.ECSOption(address, source).to_wire()
    subnet = ecs.decode(data)
    network = ipaddress.ip_network(f"{address}/{source}", strict=False)
    assert (subnet.address, subnet.source_prefix, subnet.scope_prefix) == (network.network_address, source, 0)
    assert subnet.family == (1 if network.version == 4 else 2)
    reply = subnet.encode(min(source + 3, 32 if network.version == 4 else 128))
    assert ecs.decode(reply).address == subnet.address


# -- through the answerer ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    zones = tmp_path_factory.mktemp("zones")
    for source in (DATA / "zones_wire", DATA / "zones_geo"):
        for file in source.glob("*.yaml"):
            shutil.copy(file, zones / file.name)
    settings = ServerSettings(zones=zones, geoip=DATA / "geo" / "GeoIP2-City-Test.mmdb")
    result, problems = service.load(settings)
    assert result is not None, problems
    return result.answerer


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def error_lines():
    handler = ErrorLog()
    logging.getLogger("gslb").addHandler(handler)
    yield handler
    logging.getLogger("gslb").removeHandler(handler)


@given(option_data(), st.sampled_from(["www.geo.example.", "static.geo.example.", "www.wire.example.",
                                        "nope.wire.example.", "example.org."]))
def test_an_ecs_option_the_codec_refuses_is_formerr_on_both_paths(answerer, error_lines, data, name):
    error_lines.lines.clear()
    try:
        ecs.decode(data)
        valid = True
    except ecs.EcsError:
        valid = False
    query = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.GenericOption(8, data)])
    packet = query.to_wire()
    replies = [answerer.respond(packet, ipaddress.ip_address("192.0.2.1"), False),
               answerer.respond_udp(packet, "192.0.2.1")]
    for raw in replies:
        assert raw is not None
        reply = dns.message.from_wire(bytes(raw))
        assert (reply.rcode() == dns.rcode.FORMERR) == (not valid), (data.hex(), name, reply.to_text())
        echoed = [o for o in reply.options if o.otype == 8]
        if not valid:
            assert not echoed  # a malformed option is not echoed back
    assert not error_lines.lines, (data.hex(), error_lines.lines)
