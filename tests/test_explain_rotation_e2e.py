"""`/explain` is a read: explaining a stateful record (weighted, round robin) never moves the
rotation that DNS clients see. A real `gslb serve`, its API over HTTP, dnspython clients.

Two records with the same weighted pools start from the same state (nothing asked yet). DNS
clients ask `plain` 60 times in a row, and `explained` 60 times with 1,000 `/explain` calls for it
spread in between: both must see the same sequence. And each explain, made on a copy of the live
rotation, names the answer the next DNS query gets.
"""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from dnsserver import GslbProcess
from opsserver import EU, ask_async, get_json, start_with_api, zone_text

POOL = "{eu: [{value: 192.0.2.1, weight: 3}, {value: 192.0.2.2, weight: 2}, {value: 192.0.2.3, weight: 1}]}"
ROBIN = "{eu: [192.0.2.11, 192.0.2.12, 192.0.2.13]}"
RECORDS = (f"  plain: {{type: A, policy: weighted, pools: {POOL}}}\n"
           f"  explained: {{type: A, policy: weighted, pools: {POOL}}}\n"
           f"  robin: {{type: A, policy: round_robin, pools: {ROBIN}}}\n")
QUERIES = 60
EXPLAINS = 1000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    base = tmp_path_factory.mktemp("explain-rotation")
    zones = base / "zones"
    zones.mkdir()
    (zones / "ops.test.yaml").write_text(zone_text(records=RECORDS))
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.")
    yield server, url
    server.stop()


async def answer(server: GslbProcess, name: str) -> str:
    rcode, addresses = await ask_async(server, name, EU)
    assert rcode == "NOERROR" and len(addresses) == 1, (rcode, addresses)
    return addresses[0]


async def explained(http: aiohttp.ClientSession, url: str, name: str) -> str:
    status, body = await get_json(http, f"{url}/explain", params={"name": name, "subnet": f"{EU}/24"})
    assert status == 200, body
    assert len(body["answer"]) == 1, body
    return str(body["answer"][0])


async def test_a_thousand_explains_do_not_change_the_weighted_sequence_dns_clients_see(api):
    server, url = api
    plain = [await answer(server, "plain.ops.test") for _ in range(QUERIES)]
    # Smooth weighted round robin, 3:2:1, over the first cycle (and every one after it).
    assert plain[:6] == ["192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.3", "192.0.2.2", "192.0.2.1"]
    seen, made = [], 0
    async with aiohttp.ClientSession() as http:
        for index in range(QUERIES):
            batch = EXPLAINS * (index + 1) // QUERIES - made  # spread 1,000 over the 60 gaps
            predictions = {await explained(http, url, "explained.ops.test") for _ in range(batch)}
            made += batch
            seen.append(await answer(server, "explained.ops.test"))
            # Every explain in the gap was made on a copy of the same live state: the next answer.
            assert predictions == {seen[-1]}, (index, predictions, seen[-1])
    assert made == EXPLAINS
    assert seen == plain


async def test_explain_of_a_round_robin_record_leaves_its_rotation_alone(api):
    server, url = api
    async with aiohttp.ClientSession() as http:
        first = await answer(server, "robin.ops.test")
        for _ in range(5):
            await explained(http, url, "robin.ops.test")
        second = await answer(server, "robin.ops.test")
        third = await answer(server, "robin.ops.test")
    addresses = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    start = addresses.index(first)
    assert [second, third] == [addresses[(start + 1) % 3], addresses[(start + 2) % 3]]
