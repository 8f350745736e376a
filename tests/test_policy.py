"""Selection policies: each pinned by the behaviour a client population sees."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest

from gslb.dynamic import Endpoint
from gslb.health.status import Status
from gslb.policy import POLICIES, HashPolicy, Policy, RandomPolicy

PICKS = 10_000


def endpoints(*weights: int, region: str = "eu", prefix: str = "192.0.2.") -> list[Endpoint]:
    return [Endpoint(region, f"{prefix}{index + 10}", weight, None, None) for index, weight in enumerate(weights)]


def shares(policy: Policy, healthy: list[Endpoint], picks: int = PICKS, count: int = 0) -> dict[str, float]:
    seen = Counter(e.address for _ in range(picks) for e in policy.pick(healthy, count, 0))
    return {e.address: seen[e.address] / picks for e in healthy}


class FakeHealth:
    """A HealthView with fixed RTTs and loads by address."""

    def __init__(self, rtt: dict[str, float] | None = None, load: dict[str, float] | None = None) -> None:
        self._rtt = rtt or {}
        self._load = load or {}

    def status(self, check: str | None, address: str) -> Status:
        return Status.UP

    def rtt(self, check: str | None, address: str) -> float | None:
        return self._rtt.get(address)

    def load(self, check: str | None, address: str) -> float | None:
        return self._load.get(address)


def test_every_policy_is_registered_by_its_yaml_name():
    assert set(POLICIES) == {"all", "round_robin", "weighted", "random", "hash", "failover", "fastest", "least_loaded"}
    for name, cls in POLICIES.items():
        assert cls.name == name
        cls()  # the selector builds them without arguments


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_returns_count_distinct_healthy_endpoints(name):
    healthy = endpoints(1, 2, 3, 4)
    policy = POLICIES[name]()
    for count in (1, 2, 3, 4, 9):
        for client in range(0, 50 << 8, 1 << 8):
            picked = policy.pick(healthy, count, client)
            assert len(picked) == min(count, 4)
            assert len({e.address for e in picked}) == len(picked)
            assert all(e in healthy for e in picked)


@pytest.mark.parametrize("name", sorted(set(POLICIES) - {"all"}))
def test_count_zero_gives_single_answer(name):
    assert len(POLICIES[name]().pick(endpoints(1, 1, 1), 0, 0)) == 1


def test_all_returns_every_healthy_endpoint_capped_by_count():
    healthy = endpoints(1, 1, 1)
    assert list(POLICIES["all"]().pick(healthy, 0, 0)) == healthy
    assert list(POLICIES["all"]().pick(healthy, 2, 0)) == healthy[:2]


# -- round_robin ---------------------------------------------------------------------------------

def test_round_robin_rotates_evenly():
    healthy = endpoints(1, 1, 1)
    policy = POLICIES["round_robin"]()
    firsts = [policy.pick(healthy, 0, 0)[0].address for _ in range(9)]
    assert firsts == [e.address for e in healthy] * 3


def test_round_robin_count_two_gives_distinct_pairs_covering_all_over_a_cycle():
    healthy = endpoints(1, 1, 1)
    policy = POLICIES["round_robin"]()
    responses = [[e.address for e in policy.pick(healthy, 2, 0)] for _ in range(3)]
    assert all(len(set(r)) == 2 for r in responses)
    assert {r[0] for r in responses} == {e.address for e in healthy}  # each is first once
    assert Counter(a for r in responses for a in r) == {e.address: 2 for e in healthy}


def test_round_robin_keeps_rotating_per_region_when_regions_interleave():
    # One record's fallback can send two regions' clients through the same policy instance.
    eu, us = endpoints(1, 1, region="eu"), endpoints(1, 1, region="us", prefix="198.51.100.")
    policy = POLICIES["round_robin"]()
    eu_firsts = []
    for _ in range(4):
        eu_firsts.append(policy.pick(eu, 0, 0)[0].address)
        policy.pick(us, 0, 0)
    assert Counter(eu_firsts) == {eu[0].address: 2, eu[1].address: 2}


def test_round_robin_survives_the_healthy_set_shrinking_and_growing():
    healthy = endpoints(1, 1, 1, 1)
    policy = POLICIES["round_robin"]()
    for _ in range(3):
        policy.pick(healthy, 0, 0)
    assert policy.pick(healthy[:1], 0, 0) == healthy[:1]
    assert shares(policy, healthy, 400) == {e.address: 0.25 for e in healthy}


# -- weighted ------------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [(3, 1), (5, 3, 2), (1, 1, 0)])
def test_weighted_shares_are_within_two_points_of_weight_shares(weights):
    healthy = endpoints(*weights)
    got = shares(POLICIES["weighted"](), healthy)
    total = sum(weights)
    for endpoint in healthy:
        assert abs(got[endpoint.address] - endpoint.weight / total) < 0.02


def test_weighted_is_smooth_not_clumped():
    healthy = endpoints(5, 1, 1)
    policy = POLICIES["weighted"]()
    sequence = "".join("abc"[healthy.index(policy.pick(healthy, 0, 0)[0])] for _ in range(7))
    assert sequence == "aabacaa"  # nginx's documented order for 5:1:1


def test_weighted_exact_shares_in_every_full_period():
    healthy = endpoints(5, 3, 2)
    policy = POLICIES["weighted"]()
    for _ in range(20):
        assert shares(policy, healthy, 10) == {e.address: e.weight / 10 for e in healthy}


def test_weighted_zero_weight_serves_only_when_no_non_zero_endpoint_is_healthy():
    healthy = endpoints(2, 0, 0)
    policy = POLICIES["weighted"]()
    assert shares(policy, healthy, 100) == {healthy[0].address: 1.0, healthy[1].address: 0.0, healthy[2].address: 0.0}
    assert [e.address for e in policy.pick(healthy, 3, 0)] == [healthy[0].address]
    only_zero = healthy[1:]
    assert shares(policy, only_zero, 100) == {e.address: 0.5 for e in only_zero}


def test_weighted_does_not_drift_after_an_endpoint_leaves_and_returns():
    healthy = endpoints(3, 1)
    policy = POLICIES["weighted"]()
    for _ in range(1_001):
        policy.pick(healthy, 0, 0)
    for _ in range(777):  # the small one is down for a while
        assert policy.pick(healthy[:1], 0, 0)[0] is healthy[0]
    got = shares(policy, healthy)
    assert abs(got[healthy[0].address] - 0.75) < 0.02
    assert abs(got[healthy[1].address] - 0.25) < 0.02


def test_weighted_running_values_stay_bounded_under_flapping():
    healthy = endpoints(5, 3, 2, 0, 1)
    policy = POLICIES["weighted"]()
    flaps = random.Random(7)
    for _ in range(20_000):
        up = [e for e in healthy if flaps.random() < 0.7] or healthy[:1]
        policy.pick(up, flaps.choice((0, 1, 3)), 0)
    current = policy._current["eu"]
    assert sum(current.values()) == 0
    assert max(abs(v) for v in current.values()) <= 2 * sum(e.weight for e in healthy)


def test_weighted_count_two_gives_the_pick_then_the_next_due():
    healthy = endpoints(3, 1)
    policy = POLICIES["weighted"]()
    responses = [tuple(e.address for e in policy.pick(healthy, 2, 0)) for _ in range(4)]
    assert Counter(r[0] for r in responses) == {healthy[0].address: 3, healthy[1].address: 1}
    assert all(len(set(r)) == 2 for r in responses)


# -- random --------------------------------------------------------------------------------------

def test_random_is_roughly_uniform():
    healthy = endpoints(1, 1, 1, 1, 1)
    policy = RandomPolicy(seed=1)
    seen = Counter(policy.pick(healthy, 0, 0)[0].address for _ in range(PICKS))
    expected = PICKS / len(healthy)
    chi_square = sum((seen[e.address] - expected) ** 2 / expected for e in healthy)
    assert chi_square < 18.5  # 4 degrees of freedom, p = 0.001


# -- hash ----------------------------------------------------------------------------------------

def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def test_hash_same_client_gets_same_endpoint():
    healthy = endpoints(1, 1, 1, 1)
    policy = HashPolicy()
    first = policy.pick(healthy, 0, v4("203.0.113.7"))
    assert all(policy.pick(healthy, 0, v4("203.0.113.7")) == first for _ in range(10))
    assert HashPolicy().pick(healthy, 0, v4("203.0.113.7")) == first  # a fresh instance agrees


def test_hash_clients_in_one_subnet_map_identically():
    healthy = endpoints(1, 1, 1, 1)
    policy = HashPolicy()
    rng = random.Random(3)
    for _ in range(200):
        subnet = rng.getrandbits(24) << 8
        assert len({policy.pick(healthy, 0, subnet | host)[0].address for host in range(0, 256, 17)}) == 1
        subnet6 = rng.getrandbits(56) << 72
        host_bits = [rng.getrandbits(72) for _ in range(8)]
        assert len({policy.pick(healthy, 0, subnet6 | host)[0].address for host in host_bits}) == 1


def test_hash_is_stable_across_processes_and_restarts():
    # Pinned: Python's salted hash() would break these; a changed hash function moves every client.
    healthy = endpoints(1, 1, 1, 1)
    policy = HashPolicy()
    picks = [policy.pick(healthy, 0, key)[0].address[-2:]
             for key in (v4("198.51.100.1"), v4("203.0.113.1"), v4("10.1.2.3"), v4("172.16.0.1"),
                         v6("2001:db8::1"), v6("2001:db8:1:2::1"), v6("2a00:1450::1"), v6("2600::1"))]
    assert picks == PINNED_HASH_PICKS


PINNED_HASH_PICKS = ["11", "11", "12", "12", "12", "13", "11", "11"]


def test_hash_removing_an_endpoint_moves_only_its_clients_and_spreads_them():
    healthy = endpoints(1, 1, 1, 1)
    policy = HashPolicy()
    rng = random.Random(11)
    keys = [subnet << 8 for subnet in rng.sample(range(1 << 24), PICKS)]  # distinct /24s
    before = {key: policy.pick(healthy, 0, key)[0] for key in keys}
    removed = healthy[2]
    assert 0.15 < sum(e is removed for e in before.values()) / PICKS < 0.35  # balanced ring
    survivors = [e for e in healthy if e is not removed]
    after = {key: policy.pick(survivors, 0, key)[0] for key in keys}
    moved = [key for key in keys if after[key] is not before[key]]
    assert all(before[key] is removed for key in moved)  # nobody else moved
    assert len(moved) == sum(e is removed for e in before.values())
    spread = Counter(after[key].address for key in moved)
    assert all(spread[e.address] / len(moved) > 0.15 for e in survivors)
    # and when it returns, everyone is back where they were
    assert {key: policy.pick(healthy, 0, key)[0] for key in keys} == before


def test_hash_multiple_answers_start_with_the_single_answer():
    healthy = endpoints(1, 1, 1, 1)
    policy = HashPolicy()
    for key in range(0, 100 << 8, 1 << 8):
        assert policy.pick(healthy, 2, key)[0] is policy.pick(healthy, 0, key)[0]


def test_hash_scope_never_claims_wider_than_the_bits_it_reads():
    policy = HashPolicy()
    assert policy.scope(4, 16) == 24
    assert policy.scope(4, 26) == 26
    assert policy.scope(6, 40) == 56
    assert policy.scope(6, 64) == 64
    assert Policy().scope(4, 16) == 16  # the rest leave the region's scope as it is


# -- failover, fastest, least_loaded ----------------------------------------------------------

def test_failover_takes_the_first_healthy_in_listed_order():
    healthy = endpoints(1, 1, 1)
    policy = POLICIES["failover"]()
    assert list(policy.pick(healthy, 0, 0)) == healthy[:1]
    assert list(policy.pick(healthy[1:], 0, 0)) == healthy[1:2]
    assert list(policy.pick(healthy, 2, 0)) == healthy[:2]


def test_fastest_picks_the_lowest_rtt_and_ranks_unknown_last():
    a, b, c, d = endpoints(1, 1, 1, 1)
    health = FakeHealth(rtt={a.address: 0.050, b.address: 0.012, d.address: 0.012})
    policy = POLICIES["fastest"]()
    assert list(policy.pick([a, b, c, d], 0, 0, health, "web")) == [b]  # tie b/d: YAML order
    assert list(policy.pick([a, b, c, d], 4, 0, health, "web")) == [b, d, a, c]
    assert list(policy.pick([c, a], 0, 0, health, "web")) == [a]
    assert list(policy.pick([c, a], 0, 0, FakeHealth(), "web")) == [c]  # nothing known: first listed


def test_least_loaded_spreads_among_near_equals_and_avoids_a_much_more_loaded_site():
    a, b, c, d = endpoints(1, 1, 1, 1)
    health = FakeHealth(load={a.address: 0.40, b.address: 0.42, c.address: 0.90})
    policy = POLICIES["least_loaded"]()
    seen = Counter(policy.pick([a, b, c, d], 0, 0, health, "web")[0].address for _ in range(100))
    assert seen == {a.address: 50, b.address: 50}
    assert [e.address for e in policy.pick([a, b, c, d], 4, 0, health, "web")][2:] == [c.address, d.address]


def test_least_loaded_idle_sites_share_and_unknown_only_rotates_all():
    a, b, c = endpoints(1, 1, 1)
    policy = POLICIES["least_loaded"]()
    idle = FakeHealth(load={a.address: 0.0, b.address: 0.01, c.address: 0.5})
    assert Counter(policy.pick([a, b, c], 0, 0, idle)[0].address for _ in range(10)) == {a.address: 5, b.address: 5}
    unknown = Counter(policy.pick([a, b, c], 0, 0, FakeHealth())[0].address for _ in range(30))
    assert unknown == {a.address: 10, b.address: 10, c.address: 10}


# -- options and copies --------------------------------------------------------------------------

def test_hash_prefix_options_group_wider_subnets_and_widen_the_scope_to_match():
    healthy = endpoints(1, 1, 1, 1)
    wide = HashPolicy({"ipv4_prefix": 16, "ipv6_prefix": 32})
    assert wide.scope(4, 8) == 16 and wide.scope(6, 8) == 32 and wide.scope(4, 24) == 24
    rng = random.Random(5)
    for _ in range(100):
        subnet = rng.getrandbits(16) << 16
        assert len({wide.pick(healthy, 0, subnet | rng.getrandbits(16))[0].address for _ in range(8)}) == 1
    # Without options, the defaults: the same answers as ever.
    assert HashPolicy({}).scope(4, 16) == HashPolicy().scope(4, 16) == 24
    default = HashPolicy({})
    assert all(default.pick(healthy, 0, key) == HashPolicy().pick(healthy, 0, key) for key in range(0, 1 << 20, 4099))


def test_least_loaded_tolerance_option_widens_the_near_equals():
    a, b, c = endpoints(1, 1, 1)
    health = FakeHealth(load={a.address: 0.40, b.address: 0.55, c.address: 0.90})
    assert {POLICIES["least_loaded"]().pick([a, b, c], 0, 0, health)[0].address for _ in range(6)} == {a.address}
    wide = POLICIES["least_loaded"]({"tolerance": 0.5})
    assert {wide.pick([a, b, c], 0, 0, health)[0].address for _ in range(6)} == {a.address, b.address}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_fork_picks_what_the_next_pick_would_and_leaves_the_original_alone(name):
    healthy = endpoints(3, 2, 1)
    health = FakeHealth(rtt={e.address: 0.01 * i for i, e in enumerate(healthy)},
                        load={e.address: 0.1 for e in healthy})
    live = POLICIES[name]()
    for key in range(5):
        live.pick(healthy, 0, key << 8, health, "web")
    fork = live.fork()
    predicted = [list(fork.pick(healthy, 0, key << 8, health, "web")) for key in range(12)]
    assert [list(live.pick(healthy, 0, key << 8, health, "web")) for key in range(12)] == predicted
