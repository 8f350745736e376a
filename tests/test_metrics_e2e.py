"""`/metrics` as Prometheus scrapes it: parsed with prometheus-client's own parser, counting
exactly the queries this test sent, and showing health, probes and reloads."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import GslbProcess
from opsserver import EU, Sites, ask, eventually, sites_on, start_with_api, zone_text

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def sites() -> Iterator[Sites]:
    running = sites_on(["127.0.0.141", "127.0.0.142"])
    running.http("127.0.0.141")  # 127.0.0.142 never answers
    yield running
    running.close()


@pytest.fixture(scope="module")
def server(sites: Sites, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    base = tmp_path_factory.mktemp("metrics")
    zones = base / "zones"
    zones.mkdir()
    records = "  www: {type: A, check: web, pools: {eu: [127.0.0.141], us-east: [127.0.0.142]}}\n"
    (zones / "metrics.test.yaml").write_text(zone_text("metrics.test.", port=sites.port, records=records, serial=7))
    process, url = start_with_api(zones, base / "logs", probe_name="metrics.test.")
    yield process, url
    process.stop()


async def scrape(url: str) -> tuple[Samples, dict[str, str], str]:
    """(samples by (name, labels), family types, the content type)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.get(f"{url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
            content_type = response.headers["Content-Type"]
    samples: Samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types, content_type


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def queries(samples: Samples, **labels: str) -> float:
    full = {"zone": "metrics.test.", "qtype": "A", "rcode": "NOERROR", "transport": "udp", "region": "", **labels}
    return value(samples, "gslb_dns_queries_total", **full)


async def test_metrics_count_the_queries_sent_by_zone_type_rcode_transport_and_region(server):
    process, url = server
    before, types, content_type = await scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert types["gslb_dns_queries"] == "counter" and types["gslb_dns_response_seconds"] == "histogram"
    for _ in range(25):
        assert ask(process, "hello.metrics.test", rdtype="TXT") == ("NOERROR", ['"hello"'])
    for _ in range(5):
        assert ask(process, "hello.metrics.test", rdtype="TXT", tcp=True)[0] == "NOERROR"
    for _ in range(3):
        assert ask(process, "nothing.metrics.test", rdtype="AAAA")[0] == "NXDOMAIN"
    for _ in range(4):
        assert ask(process, "www.metrics.test", EU) == ("NOERROR", ["127.0.0.141"])
    for _ in range(2):
        assert ask(process, "elsewhere.example", rdtype="A")[0] == "REFUSED"
    after, _, _ = await scrape(url)
    assert queries(after, qtype="TXT") - queries(before, qtype="TXT") == 25
    assert queries(after, qtype="TXT", transport="tcp") - queries(before, qtype="TXT", transport="tcp") == 5
    assert queries(after, qtype="AAAA", rcode="NXDOMAIN") - queries(before, qtype="AAAA", rcode="NXDOMAIN") == 3
    assert queries(after, region="eu") - queries(before, region="eu") == 4
    assert queries(after, zone="", rcode="REFUSED") - queries(before, zone="", rcode="REFUSED") == 2
    ecs_before = value(before, "gslb_dns_ecs_queries_total")
    assert value(after, "gslb_dns_ecs_queries_total") - ecs_before == 4
    count = value(after, "gslb_dns_response_seconds_count")
    assert count > value(before, "gslb_dns_response_seconds_count")  # TCP is always timed
    assert value(after, "gslb_dns_response_seconds_bucket", le="+Inf") == count


async def test_metrics_show_endpoint_state_probe_results_and_rtt(server):
    _, url = server

    async def probed() -> Samples | None:
        samples, _, _ = await scrape(url)
        ok = value(samples, "gslb_probes_total", check="web", address="127.0.0.141", result="ok")
        down = value(samples, "gslb_endpoint_up", check="web", address="127.0.0.142") == 0
        evaluated = value(samples, "gslb_record_healthy_ratio", record="www.metrics.test. A") == 0.5  # every second
        return samples if ok >= 2 and down and evaluated else None

    samples = await eventually(probed, 5, "probes counted, 127.0.0.142 down and the alert evaluated")
    assert value(samples, "gslb_endpoint_up", check="web", address="127.0.0.141") == 1
    assert value(samples, "gslb_endpoint_state", check="web", address="127.0.0.142", state="DOWN") == 1
    assert value(samples, "gslb_endpoint_state", check="web", address="127.0.0.142", state="UP") == 0
    assert value(samples, "gslb_probes_total", check="web", address="127.0.0.142", result="failed") >= 2
    assert value(samples, "gslb_health_changes_total", check="web", address="127.0.0.142", state="DOWN") == 1
    rtt_count = value(samples, "gslb_probe_rtt_seconds_count", check="web", address="127.0.0.141")
    assert rtt_count >= 2
    assert value(samples, "gslb_probe_rtt_seconds_bucket", check="web", address="127.0.0.141", le="+Inf") == rtt_count
    assert 0 < value(samples, "gslb_endpoint_rtt_seconds", check="web", address="127.0.0.141") < 1
    # 1 of 2 endpoints up is not below the default 50%.
    assert value(samples, "gslb_alert_record_unhealthy", record="www.metrics.test. A") == 0


async def test_metrics_show_the_configuration(server):
    _, url = server
    samples, _, _ = await scrape(url)
    assert value(samples, "gslb_zone_serial", zone="metrics.test.") == 7
    assert value(samples, "gslb_config_last_reload_successful") == 1
    assert ("gslb_config_reloads_total", frozenset({("result", "failed")})) in samples
    assert value(samples, "gslb_config_loaded_timestamp_seconds") > 1.7e9
    assert value(samples, "gslb_build_info", version=__import__("gslb").__version__) == 1
    assert value(samples, "gslb_servfail_ratio") == 0 and value(samples, "gslb_alert_servfail") == 0
