"""The status page in a real browser: Debian's headless Chromium driven by selenium.

The server runs the example zone (zones/) with its pool addresses moved to 127.0.0.x sites from
tests/sites.py and its checks made fast, so every probe stays on loopback. The browser's own log
is read for console errors. `GSLB_SCREENSHOT=docs/status-page.png` saves the page as it looks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.edns
import dns.exception
import dns.message
import dns.query
import pytest
import yaml

from dnsserver import EXAMPLE_ZONES, GslbProcess, wait_for
from opsserver import Sites, sites_on, start_with_api

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra has it)")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMEDRIVER is None or CHROMIUM is None,
                                reason="apt-get install chromium chromium-driver (.ci/run does)")

TOKEN = "page-token"
FIRST = 150  # sites on 127.0.0.150 and up
EXAMPLE_ZONE = next(EXAMPLE_ZONES.glob("*.yaml"))


def loopback_example() -> tuple[dict, dict[str, list[str]]]:
    """zones/'s example zone with every pool address replaced by a 127.0.0.x address and fast
    checks; (the zone document, {region: [its addresses]}). The checks' port is set by `write`."""
    doc = yaml.safe_load(EXAMPLE_ZONE.read_text())
    mapping: dict[str, str] = {}
    regions: dict[str, list[str]] = {}

    def local(value: Any) -> Any:
        address = value["value"] if isinstance(value, dict) else value
        mapping.setdefault(address, f"127.0.0.{FIRST + len(mapping)}")
        return {**value, "value": mapping[address]} if isinstance(value, dict) else mapping[address]

    for records in doc["records"].values():
        for record in records if isinstance(records, list) else [records]:
            for region, pool in (record.get("pools") or {}).items():
                record["pools"][region] = [local(value) for value in pool]
                for value in record["pools"][region]:
                    address = value["value"] if isinstance(value, dict) else value
                    if address not in regions.setdefault(region, []):
                        regions[region].append(address)
            if isinstance(record.get("when_all_down"), list):
                record["when_all_down"] = [local(value) for value in record["when_all_down"]]
    for check in doc.get("checks", {}).values():
        check.update(interval="0.3s", timeout="0.2s", rise=1, fall=1)
    return doc, regions


def write(doc: dict, directory: Path, port: int) -> Path:
    for check in doc.get("checks", {}).values():
        for kind in ("http", "https", "tcp"):
            if kind in check:
                check[kind]["port"] = port
        if "http" in check:
            check["http"]["path"] = "/healthz"  # what tests/sites.py serves
    directory.mkdir(parents=True)
    (directory / EXAMPLE_ZONE.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str, Sites, dict[str, list[str]]]]:
    base = tmp_path_factory.mktemp("page")
    doc, regions = loopback_example()
    addresses = sorted({a for pool in regions.values() for a in pool})
    sites = sites_on(addresses)
    zones = write(doc, base / "zones", sites.port)
    sites.http(*addresses)
    (base / "token").write_text(TOKEN)
    try:
        server, url = start_with_api(zones, base / "logs", probe_name="gslb.example.com.",
                                     extra=["--state", str(base / "state.yaml"), "--api-token-file", str(base / "token")])
    except BaseException:
        sites.close()
        raise
    try:
        yield server, url, sites, regions
    finally:
        server.stop()
        sites.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gslb-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def traffic(server: GslbProcess, stop: threading.Event) -> None:
    """Queries from a few places until `stop`: what the page's rates show in the screenshot."""
    questions = [("www.gslb.example.com", "198.18.0.0"), ("app.gslb.example.com", "198.18.0.0"),
                 ("www.gslb.example.com", "81.2.69.0"), ("app.gslb.example.com", "175.16.199.0"),
                 ("nothing.gslb.example.com", None)]
    while not stop.is_set():
        for name, subnet in questions:
            options = [dns.edns.ECSOption(subnet, 24)] if subnet else None
            query = dns.message.make_query(name, "A", use_edns=0, options=options)
            try:
                dns.query.udp(query, server.host, port=server.port, timeout=1)
            except dns.exception.Timeout:
                pass
        stop.wait(0.01)


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def region_health(driver: Any) -> dict[str, str]:
    return driver.execute_script(
        "const out = {}; document.querySelectorAll('#overlay g.region').forEach("
        "g => out[g.dataset.region] = g.dataset.health); return out;")


def updates(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.updates || 0)"))


def wait_for_updates(driver: Any, more: int = 1, timeout: float = 10) -> None:
    start = updates(driver)
    try:
        wait_for(lambda: updates(driver) >= start + more, timeout, f"{more} more /status polls drawn")
    except AssertionError as error:
        live = driver.execute_script("return document.getElementById('live').textContent")
        raise AssertionError(f"{error}; the page says {live!r}; console: {driver.get_log('browser')}") from None


def test_the_page_shows_every_region_of_the_example_zone_with_no_console_error(example, browser):
    server, url, _, _ = example
    browser.get(url + "/")
    wait_for_updates(browser)
    zone = yaml.safe_load(EXAMPLE_ZONE.read_text())
    expected = set(zone["regions"])
    wait_for(lambda: region_health(browser) and set(region_health(browser)) == expected, 10, "a marker per region")
    wait_for(lambda: set(region_health(browser).values()) == {"up"}, 10, "every region up")
    cards = browser.execute_script("return [...document.querySelectorAll('.region-card')].map(c => c.dataset.region)")
    assert set(cards) == expected
    # One line per continent, to the region its clients are sent to now.
    routes = browser.execute_script("return [...document.querySelectorAll('#overlay path.route')].map("
                                    "p => [p.dataset.continent, p.dataset.region])")
    assert {continent for continent, _ in routes} == {"NA", "SA", "EU", "AF", "AS", "OC"}
    assert dict(routes)["EU"] == "eu" and dict(routes)["AS"] == "asia"
    # Nothing came from anywhere but the API.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert resources and all(name.startswith(url) for name in resources), resources
    assert console_errors(browser) == []
    screenshot = os.environ.get("GSLB_SCREENSHOT")
    if screenshot:  # with some traffic, so the rates show
        stop = threading.Event()
        thread = threading.Thread(target=traffic, args=(server, stop), daemon=True)
        thread.start()
        try:
            wait_for_updates(browser, 4, timeout=20)
            browser.save_screenshot(screenshot)
        finally:
            stop.set()
            thread.join(5)
    assert "Traceback" not in server.stderr_text()


async def test_a_region_changes_colour_live_when_its_sites_go_down(example, browser):
    _, url, sites, regions = example
    browser.get(url + "/")
    wait_for(lambda: region_health(browser).get("eu") == "up", 15, "eu up")
    browser.execute_script("window.loadedOnce = 'yes'")  # gone if the page reloaded
    eu = regions["eu"]
    sites.stop(*eu)
    try:
        # app's eu endpoints are probed DOWN; www's (unchecked) still serve: degraded.
        wait_for(lambda: region_health(browser).get("eu") == "degraded", 15, "eu degraded on the map")
        route = browser.execute_script(
            "const p = document.querySelector('#overlay path.route[data-continent=EU]'); return p.dataset.region")
        assert route == "eu"  # www (the selected record) still answers from eu
        browser.execute_script("const s = document.getElementById('record'); s.value = 'app.gslb.example.com. A';"
                               "s.dispatchEvent(new Event('change'));")
        route = browser.execute_script(
            "const p = document.querySelector('#overlay path.route[data-continent=EU]');"
            "return [p.dataset.region, p.getAttribute('class')]")
        assert route[0] != "eu" and "fallback" in route[1]
        # An admin override takes the unchecked ones down too: the whole region is down.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for address in eu:
                async with http.post(f"{url}/admin/endpoints/{address}", json={"state": "down"},
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    assert response.status == 200, await response.text()
            wait_for(lambda: region_health(browser).get("eu") == "down", 10, "eu down on the map")
            changes = browser.execute_script("return document.getElementById('changes').textContent")
            assert all(address in changes for address in eu)
            for address in eu:
                async with http.post(f"{url}/admin/endpoints/{address}", json={"state": "auto"},
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    assert response.status == 200
    finally:
        sites.http(*eu)
    wait_for(lambda: region_health(browser).get("eu") == "up", 15, "eu up again")
    assert browser.execute_script("return window.loadedOnce") == "yes"
    assert console_errors(browser) == []


def test_admin_buttons_appear_only_with_a_token(example, browser):
    _, url, _, regions = example
    browser.get(url + "/")
    wait_for_updates(browser)
    assert browser.execute_script("return document.querySelectorAll('.region-card button').length") == 0
    browser.execute_script("const t = document.getElementById('token'); t.value = 'x';"
                           "t.dispatchEvent(new Event('input'));")
    wait_for(lambda: browser.execute_script("return document.querySelectorAll('.region-card button').length") > 0,
             5, "admin buttons")
    # A wrong token is refused by the API and the page says so.
    address = regions["asia"][0]
    browser.execute_script(
        "document.querySelector(`.region-card[data-region=asia] tr[data-address='" + address + "'] button`).click()")
    wait_for(lambda: "wrong token" in browser.execute_script("return document.getElementById('admin-result').textContent"),
             5, "the API's refusal shown")
    assert [e for e in console_errors(browser) if "401" not in e] == []


def test_a_script_asking_for_slash_still_gets_json(example):
    import json
    import urllib.request

    _, url, _, _ = example
    with urllib.request.urlopen(url + "/", timeout=5) as response:
        assert json.loads(response.read())["paths"][0] == "GET /"
    with urllib.request.urlopen(url + "/ui/world.svg", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("image/svg+xml")
        assert len(response.read()) < 300_000
