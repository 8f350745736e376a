"""Property tests for the API's input against a live `gslb serve`: admin bodies and explain queries.

One server for the module, with an admin state file, a token file and health-checked GSLB records
(their probes fail: nothing listens; admin overrides still apply). Hypothesis sends, with the right
token, POST /admin/endpoints/{address} with JSON bodies near the valid shape and far from it (any
JSON value, deep nesting, bytes that are not JSON or not UTF-8), at valid endpoints and at
addresses that are not; and GET /explain with any names, types, clients, subnets and `down`s.

Every answer must be one the API documents (never 500), JSON, and an error must be one line, below
the hard cap of gslb/api/errors.py (a value the client sent is quoted short, not echoed whole). At the end the server's log
must hold no traceback and no ERROR line. The budget comes from the hypothesis profile in
tests/conftest.py.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsserver import GslbProcess
from gslb.api.errors import MAX_MESSAGE
from opsserver import start_with_api, zone_text

TOKEN = "fuzz-token"
ENDPOINTS = ["127.0.0.111", "127.0.0.112", "127.0.0.121"]
ADMIN_STATUSES = {200, 400, 404, 413}
EXPLAIN_STATUSES = {200, 400}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GslbProcess, str]]:
    base = tmp_path_factory.mktemp("fuzz-api")
    zones = base / "zones"
    zones.mkdir()
    records = ("  www: {type: A, check: web, pools: {eu: [127.0.0.111, 127.0.0.112], us-east: [127.0.0.121]}}\n"
               "  v6: {type: AAAA, pools: {eu: ['2001:db8::1']}}\n"
               "  alias: {type: CNAME, value: www.ops.test.}\n")
    (zones / "ops.test.yaml").write_text(zone_text(records=records))
    (base / "token").write_text(TOKEN + "\n")
    server, url = start_with_api(zones, base / "logs", probe_name="ops.test.",
                                 extra=["--state", str(base / "state.yaml"), "--api-token-file", str(base / "token")])
    yield server, url
    server.stop()


def request(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        status = response.status
    finally:
        connection.close()
    try:
        document = json.loads(raw)
    except ValueError:
        raise AssertionError(f"{method} {path}: {status} with a body that is not JSON: {raw[:200]!r}") from None
    return status, document


def assert_error_shape(status: int, document: Any, what: str) -> None:
    if status == 200:
        return
    assert isinstance(document, dict) and set(document) == {"error"}, (what, document)
    message = document["error"]
    assert isinstance(message, str) and "\n" not in message, (what, message)
    # errors.one_line cuts a message at MAX_MESSAGE as a last line of defence; a message that needed
    # it echoed a value the client sent without quoting it short.
    assert len(message) < MAX_MESSAGE, f"{what}: a {len(message)}-char error: {message[:200]}..."


# -- admin bodies -------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.text(min_size=300, max_size=3000),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
states = st.sampled_from(["up", "down", "drain", "auto", "UP", "Down", "", "sideways"]) | json_values
checks = st.sampled_from(["web", "cold", "nope", ""]) | json_values
near_valid = st.fixed_dictionaries({"state": states}, optional={"check": checks, "colour": json_values})


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["near", "near", "near", "json", "deep", "bytes"]))
    if kind == "near":
        return json.dumps(draw(near_valid)).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        return (draw(st.sampled_from(['{"state":', "[", '{"a":'])) * depth).encode()
    return draw(st.binary(max_size=200))


addresses = st.sampled_from(ENDPOINTS + ["127.0.0.1", "::1", "2001:db8::1", "192.0.2.200", "not-an-ip", "1.2.3.4.5",
                                         "fe80::1%lo", "0x7f.1", "127.1", "%00", "..", "a" * 2000, "\u00e9"]) \
    | st.ip_addresses().map(str) | st.text(min_size=1, max_size=40)


@given(addresses, bodies())
def test_admin_bodies_get_a_documented_answer_never_a_500(api, address, body):
    _server, url = api
    path = "/admin/endpoints/" + urllib.parse.quote(address, safe="")
    status, document = request(url, "POST", path, body,
                               {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status in ADMIN_STATUSES, (address, body[:200], status, document)
    assert_error_shape(status, document, f"POST {path[:80]} {body[:80]!r}")


# -- explain ------------------------------------------------------------------------------------------

names = st.sampled_from(["www.ops.test", "www.ops.test.", "v6.ops.test", "alias.ops.test", "hello.ops.test",
                         "nope.ops.test", "ops.test", "example.org", ".", "..", "a" * 300]) | st.text(max_size=60)
types = st.sampled_from(["A", "AAAA", "TXT", "ANY", "CNAME", "SOA", "TYPE65280", "65280", "a", "", "A" * 300]) \
    | st.text(max_size=12)
text_or_address = st.ip_addresses().map(str) | st.sampled_from(["10.1.0.0", "10.2.0.0/16", "::/0", "0.0.0.0/0",
                                                                 "10.1.0.0/33", "x" * 400]) | st.text(max_size=30)


@given(st.fixed_dictionaries({"name": names}, optional={"type": types, "client": text_or_address,
                                                        "subnet": text_or_address}),
       st.lists(st.sampled_from(ENDPOINTS + ["eu", "us-east", "web/127.0.0.111", "nowhere"]) | st.text(max_size=20),
                max_size=3))
def test_explain_queries_get_a_documented_answer_never_a_500(api, parameters, down):
    _server, url = api
    query = urllib.parse.urlencode(list(parameters.items()) + [("down", value) for value in down])
    status, document = request(url, "GET", f"/explain?{query}")
    assert status in EXPLAIN_STATUSES, (parameters, down, status, document)
    assert_error_shape(status, document, f"GET /explain?{query[:120]}")


# -- what the fuzzers found (plain examples) --------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"state": "x" * 3000}, "state: must be one of up, down, drain, auto, got 'xxx"),
    ({"state": "down", "check": ["web"] * 1000}, "check: unknown check ['web'"),
    ({"state": "down", "y" * 3000: 1}, "yyy"),
], ids=["state", "check", "field"])
def test_a_long_value_in_an_admin_body_is_quoted_short(api, body, field):
    """Found by test_admin_bodies_...: the value was echoed whole, up to the 500-char hard cap."""
    _server, url = api
    status, document = request(url, "POST", "/admin/endpoints/127.0.0.111", json.dumps(body).encode(),
                               {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and document["error"].startswith(field) and len(document["error"]) < 200, document


@pytest.mark.parametrize("query", ["name=www.ops.test&client=" + "x" * 1000, "name=www.ops.test&subnet=" + "x" * 1000,
                                   "name=www.ops.test&" + "z" * 1000 + "=1"], ids=["client", "subnet", "parameter"])
def test_a_long_value_in_an_explain_query_is_quoted_short(api, query):
    _server, url = api
    status, document = request(url, "GET", f"/explain?{query}")
    assert status == 400 and len(document["error"]) < 200, document


def test_a_long_address_in_an_admin_path_is_quoted_short(api):
    _server, url = api
    status, document = request(url, "POST", "/admin/endpoints/" + "a" * 3000, b'{"state": "down"}',
                               {"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and document["error"].startswith("address: 'aaa") and len(document["error"]) < 200


def test_the_server_logged_no_traceback_and_no_error(api):
    """Runs after the properties above (file order): a client's mistake is never an ERROR."""
    server, _url = api
    log = server.stderr_text()
    assert "Traceback" not in log, log[-3000:]
    assert not [line for line in log.splitlines() if " ERROR " in line or line.startswith("ERROR")], log[-3000:]
