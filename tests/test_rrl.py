"""Response rate limiting (gslb/dns/rrl.py): the accounting, the keys, slip, exemptions, memory."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from gslb.dns.rrl import (
    ANSWER,
    CLIENT_CACHE,
    ERROR,
    NODATA,
    NXDOMAIN,
    REFERRAL,
    ResponseRateLimiter,
    RrlSettings,
    response_kind,
    truncated,
)
from gslb.settings import load_settings


class Clock:
    """A clock the test moves; the limiter reads it on `tick()`, as the server does each second."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.limiter: ResponseRateLimiter | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        assert self.limiter is not None
        self.limiter.tick()


def reply(kind: str = "answer", ident: int = 1) -> bytes:
    query = dns.message.make_query("www.example.", "A", id=ident)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if kind == "answer":
        response.answer.append(dns.rrset.from_text("www.example.", 60, "IN", "A", "192.0.2.1"))
    elif kind == "nxdomain":
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(dns.rrset.from_text("example.", 60, "IN", "SOA", "ns. h. 1 2 3 4 5"))
    elif kind == "nodata":
        response.authority.append(dns.rrset.from_text("example.", 60, "IN", "SOA", "ns. h. 1 2 3 4 5"))
    elif kind == "referral":
        response.flags &= ~dns.flags.AA
        response.authority.append(dns.rrset.from_text("www.example.", 60, "IN", "NS", "ns.child."))
    elif kind == "refused":
        response.set_rcode(dns.rcode.REFUSED)
    return response.to_wire()


def limiter(clock: Clock | None = None, **options) -> ResponseRateLimiter:
    options.setdefault("rate", 5)
    clock = clock or Clock()
    clock.limiter = ResponseRateLimiter(RrlSettings(**options), clock)
    return clock.limiter


def outcomes(rrl: ResponseRateLimiter, count: int, source: str = "192.0.2.1", kind: str = "answer") -> list[str]:
    """'sent', 'slipped' or 'dropped' for each of `count` replies of one kind to one source."""
    wire = reply(kind)
    results = []
    for _ in range(count):
        out = rrl.limit(wire, source)
        results.append("dropped" if out is None else "sent" if out == wire else "slipped")
    return results


# -- what a response is ---------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "expected"), [("answer", ANSWER), ("nxdomain", NXDOMAIN), ("nodata", NODATA),
                                                ("referral", REFERRAL), ("refused", ERROR)])
def test_the_kind_is_read_from_the_reply_header(kind, expected):
    assert response_kind(reply(kind)) == expected


def test_a_slip_is_the_reply_truncated_to_its_question_with_tc_set():
    original = dns.message.from_wire(reply("answer", ident=4242))
    slip = dns.message.from_wire(truncated(reply("answer", ident=4242)))
    assert slip.id == 4242
    assert slip.flags & dns.flags.TC
    assert slip.flags & dns.flags.QR
    assert slip.question == original.question
    assert not slip.answer and not slip.authority and not slip.additional


# -- the accounting ---------------------------------------------------------------------------------

def test_responses_up_to_the_rate_are_sent_and_the_rest_limited_in_the_same_second():
    assert outcomes(limiter(rate=5, slip=0), 8) == ["sent"] * 5 + ["dropped"] * 3


def test_slip_2_sends_every_other_limited_response_truncated_starting_with_the_first():
    assert outcomes(limiter(rate=2, slip=2), 8) == ["sent"] * 2 + ["slipped", "dropped"] * 3


def test_slip_1_truncates_every_limited_response_and_slip_0_drops_them_all():
    assert outcomes(limiter(rate=1, slip=1), 4) == ["sent"] + ["slipped"] * 3
    assert outcomes(limiter(rate=1, slip=0), 4) == ["sent"] + ["dropped"] * 3


def test_credit_refills_at_the_rate_each_second_up_to_one_second_of_it():
    clock = Clock()
    rrl = limiter(clock, rate=3, slip=0)
    assert outcomes(rrl, 3) == ["sent"] * 3
    clock.advance(1)
    assert outcomes(rrl, 4) == ["sent"] * 3 + ["dropped"]
    clock.advance(100)  # a long pause earns no more than one second's worth
    assert outcomes(rrl, 4) == ["sent"] * 3 + ["dropped"]


def test_a_prefix_that_flooded_stays_limited_for_up_to_the_window():
    clock = Clock()
    rrl = limiter(clock, rate=10, slip=0, window=5)
    outcomes(rrl, 1000)  # deep in debt: held at -rate * window
    clock.advance(4)
    assert outcomes(rrl, 1) == ["dropped"], "recovered before the window"
    clock.advance(2)
    assert outcomes(rrl, 1) == ["sent"]


def test_counters_by_kind_and_action():
    rrl = limiter(rate=1, slip=2)
    outcomes(rrl, 5, kind="nxdomain")
    assert rrl.slipped == 2 and rrl.dropped == 2
    assert rrl.limited[NXDOMAIN] == [2, 2]


# -- the key ------------------------------------------------------------------------------------------

def test_the_key_is_the_ipv4_24_and_each_kind_has_its_own_bucket():
    rrl = limiter(rate=2, slip=0)
    assert outcomes(rrl, 2, "192.0.2.1") == ["sent"] * 2
    assert outcomes(rrl, 1, "192.0.2.200") == ["dropped"], "the same /24 shares the bucket"
    assert outcomes(rrl, 1, "192.0.3.1") == ["sent"], "another /24 has its own"
    assert outcomes(rrl, 1, "192.0.2.1", kind="nxdomain") == ["sent"], "another kind has its own"


def test_the_key_is_the_ipv6_56_and_a_mapped_ipv4_client_is_its_ipv4_address():
    rrl = limiter(rate=1, slip=0)
    assert outcomes(rrl, 1, "2001:db8:0:100::1") == ["sent"]
    assert outcomes(rrl, 1, "2001:db8:0:1ff::2") == ["dropped"]
    assert outcomes(rrl, 1, "2001:db8:0:200::1") == ["sent"]
    assert outcomes(rrl, 1, "198.51.100.7") == ["sent"]
    assert outcomes(rrl, 1, "::ffff:198.51.100.8") == ["dropped"]


def test_prefix_lengths_are_settings():
    rrl = limiter(rate=1, slip=0, ipv4_prefix=32, ipv6_prefix=64)
    assert outcomes(rrl, 1, "192.0.2.1") == ["sent"]
    assert outcomes(rrl, 1, "192.0.2.2") == ["sent"]
    assert outcomes(rrl, 1, "2001:db8:0:100::1") == ["sent"]
    assert outcomes(rrl, 1, "2001:db8:0:101::1") == ["sent"]


def test_exempt_networks_are_never_limited_and_spend_no_credit():
    rrl = limiter(rate=2, slip=0, exempt=(ipaddress.ip_network("192.0.2.128/25"), ipaddress.ip_network("2001:db8::/32")))
    assert outcomes(rrl, 50, "192.0.2.129") == ["sent"] * 50
    assert outcomes(rrl, 50, "2001:db8::1") == ["sent"] * 50
    assert outcomes(rrl, 3, "192.0.2.1") == ["sent"] * 2 + ["dropped"], "the rest of the /24 is limited"
    wide = limiter(rate=1, slip=0, exempt=(ipaddress.ip_network("10.0.0.0/8"),))
    assert outcomes(wide, 20, "10.1.2.3") == ["sent"] * 20
    assert outcomes(wide, 2, "11.1.2.3") == ["sent", "dropped"]


def test_memory_is_a_fixed_table_and_a_flood_of_prefixes_cannot_grow_it():
    rrl = limiter(rate=1, slip=0, table_size=1024)
    size = len(rrl._keys)
    wire = reply()
    for index in range(50_000):
        rrl.limit(wire, f"10.{index >> 8 & 255}.{index & 255}.1")
    assert len(rrl._keys) == len(rrl._credit) == size == 1024
    assert len(rrl._clients) <= CLIENT_CACHE
    assert outcomes(rrl, 2, "203.0.113.1") == ["sent", "dropped"]


# -- settings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"rate": 0}, "rate must be a whole number from 1 to 1000000, got 0"),
    ({"rate": 5, "slip": -1}, "slip must be a whole number from 0 to 10, got -1"),
    ({"rate": 5, "ipv4_prefix": 33}, "ipv4_prefix must be a whole number from 8 to 32, got 33"),
    ({"rate": 5, "window": True}, "window must be a whole number from 1 to 3600, got True"),
])
def test_settings_are_validated(options, message):
    with pytest.raises(ValueError, match=message):
        RrlSettings(**options)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gslb.yaml"
    path.write_text(text)
    return path


def test_rrl_is_off_unless_configured(tmp_path):
    settings, problems = load_settings(write_config(tmp_path, "log_level: info\n"), {})
    assert problems == [] and settings.rrl is None
    settings, problems = load_settings(write_config(tmp_path, "rrl: off\n"), {})
    assert problems == [] and settings.rrl is None


def test_the_rrl_mapping_becomes_settings(tmp_path):
    config = write_config(tmp_path, "rrl: {rate: 20, slip: 3, window: 10, ipv4_prefix: 28, ipv6_prefix: 48,"
                                    " exempt: [192.0.2.0/24, '2001:db8::/32']}\n")
    settings, problems = load_settings(config, {})
    assert problems == []
    assert settings.rrl == RrlSettings(rate=20, slip=3, window=10, ipv4_prefix=28, ipv6_prefix=48,
                                       exempt=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")))


@pytest.mark.parametrize(("text", "line"), [
    ("rrl: {slip: 2}", "rrl.rate: is required"),
    ("rrl: {rate: 0}", "rrl.rate: must be a whole number from 1 to 1000000, got 0"),
    ("rrl: {rate: 5, slip: lots}", "rrl.slip: must be a whole number from 0 to 10, got 'lots'"),
    ("rrl: {rate: 5, exempt: [nowhere]}", "rrl.exempt[0]: must be a network like 192.0.2.0/24"),
    ("rrl: {rate: 5, exempt: 192.0.2.0/24}", "rrl.exempt: must be a list of networks"),
    ("rrl: {rate: 5, burst: 3}", "rrl.burst: unknown setting; expected one of rate, slip, window"),
    ("rrl: 5", "rrl: must be a mapping like {rate: 20, slip: 2, window: 15} or off"),
])
def test_bad_rrl_settings_are_one_line_each_with_the_key_path(tmp_path, text, line):
    config = write_config(tmp_path, text + "\n")
    settings, problems = load_settings(config, {})
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"{config}: {line}"), str(problems[0])
