"""The admin API's failed-authentication backoff and its rate-limited log, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from gslb.api.auth import MAX_CLIENTS, AuthThrottle, RateLimitedLog, client_key
from gslb.settings import ApiLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LIMITS = ApiLimits(auth_failures=3, auth_window=10.0, auth_backoff=2.0, auth_backoff_max=8.0)


def test_the_nth_failure_within_the_window_starts_a_block_that_doubles_up_to_the_maximum():
    clock = Clock()
    throttle = AuthThrottle(LIMITS, clock)
    blocks = []
    for _ in range(5):
        assert throttle.failed("a") is None and throttle.failed("a") is None
        block = throttle.failed("a")
        blocks.append(block)
        assert throttle.retry_after("a") == block
        clock.now += block - 0.5
        assert throttle.retry_after("a") == 0.5
        clock.now += 0.5
        assert throttle.retry_after("a") is None
    assert blocks == [2.0, 4.0, 8.0, 8.0, 8.0]


def test_failures_spread_wider_than_the_window_never_block():
    clock = Clock()
    throttle = AuthThrottle(LIMITS, clock)
    for _ in range(20):
        assert throttle.failed("a") is None
        clock.now += 5.1  # two failures per window at most
    assert throttle.retry_after("a") is None


def test_a_success_or_a_long_quiet_spell_starts_the_backoff_again():
    clock = Clock()
    throttle = AuthThrottle(LIMITS, clock)
    for _ in range(3):
        throttle.failed("a")
    clock.now += 2
    throttle.succeeded("a")
    assert [throttle.failed("a") for _ in range(3)] == [None, None, 2.0]
    clock.now += 100
    assert [throttle.failed("a") for _ in range(3)] == [None, None, 2.0]


def test_clients_are_charged_separately_and_memory_is_bounded():
    clock = Clock()
    throttle = AuthThrottle(LIMITS, clock)
    for _ in range(3):
        throttle.failed("a")
    assert throttle.retry_after("b") is None
    for index in range(MAX_CLIENTS + 10):
        throttle.failed(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    assert len(throttle._clients) == MAX_CLIENTS


@pytest.mark.parametrize("remote, key", [("192.0.2.7", "192.0.2.7"), ("2001:db8:1:2:3::4", "2001:db8:1:2::/64"),
                                         ("::ffff:192.0.2.7", "192.0.2.7"), (None, "unknown")])
def test_an_ipv6_client_is_its_64(remote, key):
    assert client_key(remote) == key


def test_the_log_keeps_a_burst_then_sums_up_the_rest_in_one_line(caplog):
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.limited"), "failures", burst=3, period=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, "test.limited"):
        for index in range(50):
            limited.warning("failure %d", index)
        clock.now += 10
        limited.warning("failure %d", 50)
    assert [r.getMessage() for r in caplog.records] == [
        "failure 0", "failure 1", "failure 2",
        "47 more failures not logged in 10s (at most 3 lines per 10s)",
        "failure 50"]


@pytest.mark.parametrize("values, problem", [
    ({"auth_failures": 0}, "auth_failures: must be a whole number >= 1, got 0"),
    ({"header_timeout": -1}, "header_timeout: must be a duration > 0"),
    ({"auth_backoff": 10, "auth_backoff_max": 5}, "auth_backoff_max: must be at least auth_backoff (10s), got 5s"),
])
def test_limits_refuse_nonsense(values, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        ApiLimits(**values)
