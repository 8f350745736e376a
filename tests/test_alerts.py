"""Alerts: a record below its healthy share (CRITICAL, then INFO on recovery) and a SERVFAIL rate
above its threshold over the last minute (WARNING), with gauges; thresholds from the config file."""

from __future__ import annotations

import logging
import re
from types import MappingProxyType

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import TEST_GEOIP, wait_for
from gslb import service
from gslb.alerts import Alerts
from gslb.health.admin import Overrides
from gslb.health.status import Status
from gslb.settings import AlertThresholds, ServerSettings, load_settings
from opsserver import EU, ask, start_with_api, zone_text

RECORDS = ("  www: {type: A, pools: {eu: [192.0.2.11, 192.0.2.12, 192.0.2.13], us-east: [192.0.2.21]}}\n"
           "  api: {type: A, pools: {eu: [192.0.2.31]}}\n")
WWW = "www.alert.test. A"


@pytest.fixture
def loaded(tmp_path):  # type: ignore[no-untyped-def]
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "alert.test.yaml").write_text(zone_text("alert.test.", records=RECORDS))
    loaded, problems = service.load(ServerSettings(zones=zones, geoip=TEST_GEOIP))
    assert problems == []
    return loaded


def down(loaded, *addresses: str) -> None:  # type: ignore[no-untyped-def]
    overrides = Overrides(MappingProxyType({address: Status.DOWN for address in addresses}))
    loaded.health.board.set_overrides(overrides)


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gslb.alerts"]
    caplog.clear()
    return lines


def test_a_record_below_half_healthy_is_one_critical_line_and_its_recovery_one_info(loaded, caplog):
    caplog.set_level(logging.INFO)
    alerts = Alerts(AlertThresholds(), lambda: loaded, loaded.answerer.stats)
    alerts.check()
    assert alert_lines(caplog) == [] and alerts.records[WWW].ratio == 1.0
    down(loaded, "192.0.2.11", "192.0.2.12")  # 2 of 4 down: 50% healthy is not below 50%
    alerts.check()
    assert alert_lines(caplog) == [] and not alerts.records[WWW].alerting
    down(loaded, "192.0.2.11", "192.0.2.12", "192.0.2.13")
    alerts.check()
    alerts.check()  # still down: no second line
    assert alert_lines(caplog) == [("CRITICAL", "www.alert.test. A: 1 of 4 endpoints healthy (25%), below 50%; "
                                                "down: eu 192.0.2.11, eu 192.0.2.12, eu 192.0.2.13")]
    assert alerts.records[WWW].alerting and alerts.records["api.alert.test. A"].ratio == 1.0
    down(loaded, "192.0.2.11")
    alerts.check()
    assert alert_lines(caplog) == [("INFO", "www.alert.test. A: 3 of 4 endpoints healthy (75%) again")]
    assert not alerts.records[WWW].alerting


def test_the_healthy_threshold_is_configurable(loaded, caplog):
    caplog.set_level(logging.INFO)
    alerts = Alerts(AlertThresholds(healthy_below=0.8), lambda: loaded, loaded.answerer.stats)
    down(loaded, "192.0.2.11")
    alerts.check()
    assert alert_lines(caplog)[0][0] == "CRITICAL"


def test_servfail_above_five_percent_of_the_last_minute_warns_once_then_recovers(loaded, caplog):
    caplog.set_level(logging.INFO)
    stats = loaded.answerer.stats
    now = [1000.0]
    alerts = Alerts(AlertThresholds(), lambda: loaded, stats, clock=lambda: now[0])

    def answered(count: int, rcode: int) -> None:
        for _ in range(count):
            stats.count("alert.test.", 1, rcode, "udp", "eu")

    alerts.check()
    answered(95, 0)
    answered(5, 2)  # exactly 5%: not above
    now[0] += 1
    alerts.check()
    assert alert_lines(caplog) == [] and alerts.servfail_ratio == pytest.approx(0.05)
    answered(1, 2)
    now[0] += 1
    alerts.check()
    assert alert_lines(caplog) == [("WARNING", "SERVFAIL 5.9% of 101 responses in the last 2s, above 5%")]
    assert alerts.servfail_alerting
    # A minute of clean answers later the window holds no SERVFAIL.
    for _ in range(14):
        now[0] += 5
        answered(50, 0)
        alerts.check()
    assert alerts.servfail_ratio < 0.05 and not alerts.servfail_alerting
    (level, message), = alert_lines(caplog)
    assert level == "INFO" and message.startswith("SERVFAIL") and "back at or below 5%" in message


def test_a_few_servfails_on_an_idle_server_do_not_alert(loaded, caplog):
    caplog.set_level(logging.INFO)
    stats = loaded.answerer.stats
    alerts = Alerts(AlertThresholds(), lambda: loaded, stats)
    alerts.check()
    for _ in range(3):
        stats.count("alert.test.", 1, 2, "udp", "eu")
    alerts.check()
    assert alerts.servfail_ratio == 1.0 and not alerts.servfail_alerting and alert_lines(caplog) == []


@pytest.mark.parametrize("text, problem", [
    ("alerts: {healthy_below: 2}\n", "alerts.healthy_below: must be a fraction from 0 to 1 (0.5 = 50%), got 2"),
    ("alerts: {servfail_above: '5%'}\n", "alerts.servfail_above: must be a fraction from 0 to 1 (0.5 = 50%), got '5%'"),
    ("alerts: {servfail: 0.1}\n", "alerts.servfail: unknown setting; expected one of healthy_below, servfail_above"),
    ("alerts: 0.5\n", "alerts: must be a mapping with healthy_below and/or servfail_above"),
])
def test_bad_alert_settings_are_reported_with_their_path(tmp_path, text, problem):
    config = tmp_path / "gslb.yaml"
    config.write_text(text)
    _, problems = load_settings(config, {})
    assert len(problems) == 1 and str(problems[0]).startswith(f"{config}: {problem}")


async def test_a_running_server_alerts_on_servfail_and_an_unhealthy_record(tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    # Nothing answers the `cold` check's probes: every endpoint starts DOWN and stays so.
    records = ("  dark: {type: A, check: cold, when_all_down: servfail, pools: {eu: [127.0.0.161], us-east: [127.0.0.162]}}\n"
               "  lit: {type: A, pools: {eu: [192.0.2.41]}}\n")
    (zones / "alert.test.yaml").write_text(zone_text("alert.test.", records=records))
    config = tmp_path / "gslb.yaml"
    config.write_text("alerts: {healthy_below: 0.75, servfail_above: 0.5}\n")
    server, url = start_with_api(zones, tmp_path / "logs", probe_name="alert.test.", config=config)
    try:
        for _ in range(15):
            assert ask(server, "dark.alert.test", EU)[0] == "SERVFAIL"
        for _ in range(14):
            assert ask(server, "lit.alert.test", EU)[0] == "NOERROR"  # 15 of 29: above 50%
        warning = re.compile(r"WARNING gslb.alerts: SERVFAIL \d+\.\d% of (2\d) responses in the last \d+s, above 50%")
        wait_for(lambda: warning.search(server.stderr_text()), 5, "the SERVFAIL warning")
        assert "CRITICAL gslb.alerts: dark.alert.test. A: 0 of 2 endpoints healthy (0%), below 75%" in server.stderr_text()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/metrics") as response:
                text = await response.text()
            async with session.get(f"{url}/status") as response:
                status = await response.json()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        assert samples[("gslb_alert_servfail", ())] == 1
        assert samples[("gslb_alert_record_unhealthy", (("record", "dark.alert.test. A"),))] == 1
        assert samples[("gslb_alert_record_unhealthy", (("record", "lit.alert.test. A"),))] == 0
        assert status["alerts"]["thresholds"] == {"healthy_below": 0.75, "servfail_above": 0.5}
        assert status["alerts"]["servfail"]["alerting"] is True
    finally:
        server.stop()


def test_a_record_with_nothing_healthy_is_one_critical_line_from_alerts_and_its_recovery_one_info(loaded, caplog):
    caplog.set_level(logging.INFO)
    alerts = Alerts(AlertThresholds(healthy_below=0.0), lambda: loaded, loaded.answerer.stats)
    alerts.check()
    down(loaded, "192.0.2.31")  # api's only endpoint
    for _ in range(3):
        alerts.check()
        # Queries while it lasts log nothing: selection is pure.
        assert loaded.selector.select(next(r for r in records(loaded) if r.path == "records.api"), "eu").all_down
    assert alert_lines(caplog) == [("CRITICAL", "api.alert.test. A: no healthy endpoint in any region; "
                                                "answering per when_all_down=all")]
    assert alerts.records["api.alert.test. A"].all_down and not alerts.records[WWW].all_down
    down(loaded)
    alerts.check()
    assert alert_lines(caplog) == [("INFO", "api.alert.test. A: endpoints healthy again")]
    assert [r for r in caplog.records if r.name == "gslb.selection"] == []


def test_records_are_evaluated_again_only_when_health_or_the_configuration_changed(loaded):
    alerts = Alerts(AlertThresholds(), lambda: loaded, loaded.answerer.stats)
    alerts.check()
    first = alerts.records
    alerts.check()
    assert alerts.records is first  # the health view's version did not move: nothing to look at
    down(loaded, "192.0.2.11")
    alerts.check()
    assert alerts.records is not first and alerts.records[WWW].healthy == 3


def test_alert_times_in_status_are_iso_8601(loaded):
    alerts = Alerts(AlertThresholds(), lambda: loaded, loaded.answerer.stats)
    down(loaded, "192.0.2.11", "192.0.2.12", "192.0.2.13")
    alerts.check()
    record, = [r for r in alerts.as_dict()["records"] if r["record"] == WWW]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["since"]), record
    assert alerts.as_dict()["servfail"]["since"] is None


def records(loaded):  # type: ignore[no-untyped-def]
    return [r for zone in loaded.catalog.zones for node in zone.nodes.values() for r in node.dynamic.values()]
