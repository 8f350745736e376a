"""min_healthy in the Selector and geoproximity bias in the region rules, without a server.

min_healthy: a region with fewer UP endpoints than that counts as down (Azure MinChildEndpoints,
Cloudflare minimum_origins, gdnsd up_thresh), under every policy; `trace()` tells the same walk.
Bias: Route 53's formula, biased distance = d * (1 - bias/100) for bias > 0, d / (1 + bias/100)
for bias < 0.
"""

from __future__ import annotations

import pytest

from gslb.config.dynamic import parse_dynamic
from gslb.config.problems import Problems
from gslb.geo import GeoFacts, RegionRules, great_circle_km
from gslb.geo.rules import biased_km
from gslb.health.status import Status
from gslb.policy import POLICIES
from gslb.selection import Selector, trace
from test_selection import RULES, View, addresses

EU = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
US = ["198.51.100.1", "198.51.100.2"]
ASIA = ["203.0.113.1"]


def record(min_healthy="60%", **extra):
    """eu 3 endpoints, us 2, asia 1 (so a count above 1 is refused: shares here)."""
    entry = {"type": "A", "pools": {"eu": EU, "us": US, "asia": ASIA}, "policy": "all", **extra}
    if min_healthy is not None:
        entry["min_healthy"] = min_healthy
    problems = Problems("test")
    built = parse_dynamic((b"www", b"example"), 1, entry, "records.www", 300, RULES, set(), problems)
    assert built is not None, list(problems)
    return built


def down(*addresses_down, drain=()):
    states = {address: Status.DOWN for address in addresses_down}
    states.update({address: Status.DRAIN for address in drain})
    return View(states)


def select(rec, view, region="eu", key=0):
    return Selector([rec], view).select(rec, region, key)


def test_min_healthy_above_a_pool_is_refused_with_the_pools_named():
    problems = Problems("zone.yaml")
    entry = {"type": "A", "pools": {"eu": EU, "us": US, "asia": ASIA}, "min_healthy": 2}
    assert parse_dynamic((b"www",), 1, entry, "records.www", 300, RULES, set(), problems) is None
    assert [str(p) for p in problems] == [
        "zone.yaml: records.www.min_healthy: 2 is more healthy endpoints than some pools hold (asia has 1): "
        "those regions could never serve; lower it, add endpoints, or use a share like 50%"]


def test_a_share_is_of_each_pool_rounded_up():
    rec = record("50%")
    assert dict(rec.min_up) == {"eu": 2, "us": 1, "asia": 1}
    assert rec.min_healthy == "50%"
    assert dict(record("100%").min_up) == {"eu": 3, "us": 2, "asia": 1}
    assert dict(record("1%").min_up) == {"eu": 1, "us": 1, "asia": 1}


def test_a_region_below_min_healthy_counts_as_down_and_its_clients_go_to_the_next():
    rec = record("60%")  # eu needs 2 of 3, us 2 of 2, asia 1 of 1
    selection = select(rec, down("192.0.2.1", "192.0.2.2"))
    assert selection.region != "eu" and selection.degraded
    assert selection.region == rec.regions_for("eu")[1]


def test_without_min_healthy_one_healthy_endpoint_keeps_the_region():
    rec = record(None)
    selection = select(rec, down("192.0.2.1", "192.0.2.2"))
    assert (selection.region, addresses(selection)) == ("eu", ["192.0.2.3"])


def test_enough_healthy_endpoints_serve_only_the_healthy_ones_degraded():
    rec = record("60%")
    selection = select(rec, down("192.0.2.1"))
    assert (selection.region, addresses(selection), selection.degraded) == ("eu", ["192.0.2.2", "192.0.2.3"], True)


def test_drained_endpoints_are_not_healthy_for_min_healthy():
    rec = record("60%")
    selection = select(rec, down("192.0.2.1", drain=["192.0.2.2"]))
    assert selection.region != "eu"


def test_when_no_region_has_enough_healthy_endpoints_beat_dead_ones():
    rec = record("100%")  # every endpoint of a region must be up
    view = down("192.0.2.1", "198.51.100.1", "203.0.113.1")
    selection = select(rec, view)
    assert (selection.region, addresses(selection), selection.degraded, selection.all_down) == (
        "eu", ["192.0.2.2", "192.0.2.3"], True, False)
    walked = trace(rec, "eu", view)
    assert walked.region == "eu" and walked.below_min and not walked.all_down
    assert walked.steps[0].why == "2 of 3 healthy, below min_healthy 3: serves (no region has min_healthy)"


def test_when_everything_is_down_when_all_down_still_applies():
    rec = record("60%", when_all_down="servfail")
    everything = down(*EU, *US, *ASIA)
    assert select(rec, everything).servfail
    assert trace(rec, "eu", everything).all_down


@pytest.mark.parametrize("policy", sorted(name for name in POLICIES if not POLICIES[name].needs))
def test_min_healthy_works_with_every_policy(policy):
    rec = record("60%", policy=policy)
    view = down("192.0.2.1", "192.0.2.2")
    for key in range(20):
        selection = select(rec, view, key=key)
        assert selection.region == rec.regions_for("eu")[1], policy
        assert set(addresses(selection)) <= set(US + ASIA)


def test_trace_says_why_each_region_was_skipped_and_which_serves():
    rec = record("60%")
    walked = trace(rec, "eu", down("192.0.2.1", "192.0.2.2"))
    assert walked.as_text() == (f"eu: 1 of 3 healthy, below min_healthy 2: skipped; "
                                f"{walked.steps[1].region}: {walked.steps[1].why}")
    assert walked.steps[1].why.endswith(": serves")
    assert walked.region == select(rec, down("192.0.2.1", "192.0.2.2")).region


def test_everything_up_takes_the_fast_branch_and_the_own_region():
    rec = record("100%")
    selection = select(rec, View())
    assert (selection.region, selection.degraded) == ("eu", False)


# -- bias --------------------------------------------------------------------------------------------
def test_route53_bias_formula():
    assert biased_km(150, 50) == 75  # Route 53's example: server A, 150 km, bias +50
    assert biased_km(100, -50) == 200
    assert biased_km(100, 0) == 100
    assert biased_km(100, 99) == pytest.approx(1)
    assert biased_km(100, -99) == pytest.approx(10000)


LONDON = GeoFacts(continent="EU", country="GB", latitude=51.51, longitude=-0.09)
PLACES = {"dub": (53.35, -6.26), "fra": (50.11, 8.68)}


def bias_rules(**bias) -> RegionRules:
    return RegionRules(regions=("dub", "fra"), locations=PLACES, serves={}, bias=bias)


def test_positive_bias_widens_a_region_and_negative_bias_shrinks_it():
    to_dub, to_fra = great_circle_km((51.51, -0.09), PLACES["dub"]), great_circle_km((51.51, -0.09), PLACES["fra"])
    assert to_dub < to_fra < to_dub / 0.6
    assert bias_rules().match(LONDON)[0] == "dub"
    region, rule = bias_rules(fra=40).match(LONDON)
    assert region == "fra"
    assert rule == f"nearest fra ({to_fra:.0f} km, biased {to_fra * 0.6:.0f} km)"
    assert bias_rules(dub=-40).match(LONDON)[0] == "fra"  # 463 / 0.6 = 772 > 637
    assert bias_rules(dub=-20).match(LONDON)[0] == "dub"  # 463 / 0.8 = 579 < 637


def test_distances_list_every_region_real_and_biased():
    point = (51.51, -0.09)
    to_dub, to_fra = great_circle_km(point, PLACES["dub"]), great_circle_km(point, PLACES["fra"])
    assert bias_rules(fra=40).distances(point) == [("dub", to_dub, to_dub), ("fra", to_fra, to_fra * 0.6)]


def test_bias_must_be_within_route53_range():
    with pytest.raises(ValueError, match="bias of fra: 100 is not in -99..99"):
        bias_rules(fra=100)
    with pytest.raises(ValueError, match="unknown region 'xx'"):
        bias_rules(xx=10)
