"""Every reply is counted once, under the transport it really went out on.

Replies are counted at one point (gslb/dns/answer.py `_observe`), fast path and general path,
answers and errors alike. Errors built before a question is understood (FORMERR for a bad
QDCOUNT or an unparseable packet, NOTIMP) were once counted as "udp" whatever the transport.
"""

from __future__ import annotations

import struct
from typing import Iterator

import dns.message
import dns.rcode
import pytest

from dnsserver import GslbProcess
from opsserver import ask, start_with_api, zone_text
from test_metrics_e2e import Samples, scrape, value

HEADER_ID = 0x2B2B


def header(*, flags: int = 0x0100, qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", HEADER_ID, flags, qd, 0, 0, 0)


QDCOUNT_0 = header(qd=0)  # FORMERR, no question (qtype "other")
CUT_SHORT = header() + b"\x03www"  # FORMERR, unparseable
NOTIMP = header(flags=15 << 11) + b"\x05hello\x0astats-test\x00" + struct.pack("!HH", 16, 1)  # NOTIMP, TXT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    base = tmp_path_factory.mktemp("stats")
    zones = base / "zones"
    zones.mkdir()
    (zones / "stats-test.yaml").write_text(zone_text("stats-test."))
    process, url = start_with_api(zones, base / "logs", probe_name="stats-test.")
    yield process, url
    process.stop()


def errors(samples: Samples, transport: str, rcode: str, qtype: str) -> float:
    return value(samples, "gslb_dns_queries_total", zone="", qtype=qtype, rcode=rcode, transport=transport, region="")


def total(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "gslb_dns_queries_total")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_errors_are_counted_under_the_transport_they_came_on(server, transport):
    process, url = server
    tcp = transport == "tcp"
    before, _, _ = await scrape(url)
    for packet, rcode, times in ((QDCOUNT_0, dns.rcode.FORMERR, 3), (CUT_SHORT, dns.rcode.FORMERR, 2),
                                 (NOTIMP, dns.rcode.NOTIMP, 4)):
        for _ in range(times):
            reply = process.send_raw(packet, tcp=tcp)
            assert reply is not None and reply[3] & 0x0F == rcode
    after, _, _ = await scrape(url)
    other = "udp" if tcp else "tcp"
    assert errors(after, transport, "FORMERR", "other") - errors(before, transport, "FORMERR", "other") == 5
    assert errors(after, transport, "NOTIMP", "TXT") - errors(before, transport, "NOTIMP", "TXT") == 4
    assert errors(after, other, "FORMERR", "other") == errors(before, other, "FORMERR", "other")
    assert errors(after, other, "NOTIMP", "TXT") == errors(before, other, "NOTIMP", "TXT")
    assert total(after) - total(before) == 9


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_each_answer_is_counted_exactly_once(server, tcp):
    process, url = server
    before, _, _ = await scrape(url)
    for _ in range(7):
        assert ask(process, "hello.stats-test", rdtype="TXT", tcp=tcp) == ("NOERROR", ['"hello"'])
    query = dns.message.make_query("hello.stats-test.", "TXT", use_edns=False)  # no EDNS: another fast-path shape
    assert process.send_raw(query.to_wire(), tcp=tcp) is not None
    after, _, _ = await scrape(url)
    assert total(after) - total(before) == 8
    transport = "tcp" if tcp else "udp"
    key = {"zone": "stats-test.", "qtype": "TXT", "rcode": "NOERROR", "transport": transport, "region": ""}
    assert value(after, "gslb_dns_queries_total", **key) - value(before, "gslb_dns_queries_total", **key) == 8
