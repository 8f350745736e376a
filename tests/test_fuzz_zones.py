"""Property tests for the zone loader: whatever an operator writes, gslb answers with a catalog or
with problems, each one line of bounded length, and never with an exception.

Three sources of input:
- arbitrary YAML-able documents whose keys are mostly the zone format's own (so they get deep
  into the builder), given to the ZoneBuilder;
- the test zones with one to three structural mutations (a value replaced by anything, a key
  removed or added, a list emptied), given to the ZoneBuilder, and when one still builds, read
  from a file, located against the test GeoIP data, assembled and asked a query for each name:
  a zone the loader accepts must be servable;
- the test zone files' text with one to three text mutations (characters, YAML anchors, aliases,
  tags, merges, flow brackets, tabs, deleted and repeated lines), read from a file by
  load_zone_file: the YAML layer included.

Every problem must come out below Problem's hard caps (MAX_MESSAGE_CHARS, MAX_PATH_CHARS): the
caps clip a message as a last line of defence, and a message that needed them echoed a value
without `shown()`. The budget comes from the hypothesis profile in tests/conftest.py.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
from pathlib import Path
from typing import Any

import dns.message
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gslb import build
from gslb.config.problems import MAX_MESSAGE_CHARS, MAX_PATH_CHARS, Problem, Problems
from gslb.config.zonefile import ZONE_KEYS, ZoneBuilder, load_zone_file
from gslb.names import to_text
from gslb.settings import ServerSettings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
ZONE_FILES = [DATA / "zones_geo" / "geo.example.yaml", DATA / "zones_wire" / "wire.example.yaml",
              REPO / "zones" / "gslb.example.com.yaml"]
TEXTS = [path.read_text() for path in ZONE_FILES]
DOCUMENTS = [yaml.safe_load(text) for text in TEXTS]

RECORD_KEYS = ["type", "value", "values", "ttl", "pools", "policy", "answers", "check", "when_all_down",
               "ttl_degraded", "order", "weight", "location", "serves", "http", "tcp", "interval", "timeout",
               "rise", "fall", "cold_start", "path", "port", "host", "expect", "mname", "rname", "serial"]
TYPES = ["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS", "PTR", "SOA", "HTTPS", "a", "", "TYPE65280"]

scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30) | st.text(max_size=2000).map(lambda s: s * 3)
    # what YAML's explicit tags make: !!binary, !!timestamp, !!set
    | st.binary(max_size=8) | st.dates() | st.datetimes() | st.sets(st.integers(0, 3), max_size=3)
    | st.sampled_from(TYPES + ["192.0.2.1", "2001:db8::1", "www.example.", "@", "*", "10 mail.example.", "30s",
                               "1h", "-1", "0", "us-east", "eu", "EU", "NA-US-CA", "10.0.0.0/8", "fd00::/8",
                               "weighted", "failover", "all", "servfail", "down", "up", "x" * 300])
)
keys = st.sampled_from(sorted(ZONE_KEYS) + RECORD_KEYS + ["www", "@", "*.x", "a.b", "us-east", "eu", "web"]) \
    | st.text(max_size=12) | st.integers(-5, 5)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


def assert_problems_bounded(problems: Problems | list[Problem]) -> None:
    for problem in problems:
        assert "\n" not in str(problem) and "\r" not in str(problem), str(problem)
        assert len(problem.message) < MAX_MESSAGE_CHARS, f"message needed the hard cap: {problem.message}"
        assert len(problem.path) < MAX_PATH_CHARS, f"key path needed the hard cap: {problem.path}"


def build_document(document: Any) -> tuple[Any, Problems]:
    problems = Problems("fuzz.yaml")
    zone = ZoneBuilder("fuzz.yaml", document, problems).build()
    assert (zone is None) == bool(problems), [str(p) for p in problems]
    assert_problems_bounded(problems)
    return zone, problems


# -- arbitrary documents ----------------------------------------------------------------------------

@given(st.dictionaries(st.sampled_from(sorted(ZONE_KEYS)) | keys, values, max_size=9) | values)
def test_any_document_gives_a_zone_or_bounded_problems(document):
    build_document(document)


# -- mutated valid zones ----------------------------------------------------------------------------

def _containers(node: Any, path: tuple = ()) -> list[tuple]:
    """Every (path, container) in the document, the root included."""
    found = []
    if isinstance(node, (dict, list)):
        found.append((path, node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            found.extend(_containers(child, path + (key,)))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(DOCUMENTS)))
    for _ in range(draw(st.integers(1, 3))):
        containers = _containers(document)
        _path, container = draw(st.sampled_from(containers))
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add", "empty"]))
        if isinstance(container, dict):
            if not container or kind == "add":
                container[draw(keys)] = draw(values)
                continue
            key = draw(st.sampled_from(sorted(container, key=repr)))
            if kind == "delete":
                del container[key]
            elif kind == "empty":
                container[key] = draw(st.sampled_from([None, [], {}, ""]))
            else:
                container[key] = draw(values)
        else:
            if not container or kind == "add":
                container.append(draw(values))
                continue
            index = draw(st.integers(0, len(container) - 1))
            if kind == "delete":
                del container[index]
            elif kind == "empty":
                container[index] = draw(st.sampled_from([None, [], {}, ""]))
            else:
                container[index] = draw(values)
    return document


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """A zones directory of one file and the test GeoIP data, opened once."""
    zones = tmp_path_factory.mktemp("zones")
    settings = ServerSettings(zones=zones, geoip=DATA / "geo" / "GeoIP2-City-Test.mmdb")
    geo, problems = build.open_geo(settings)
    assert geo is not None, problems
    return settings, geo


@given(mutated_documents())
def test_a_mutated_zone_gives_bounded_problems_or_a_zone_that_serves(serving, document):
    zone, _problems = build_document(document)
    if zone is None:
        return
    settings, geo = serving
    try:
        text = yaml.safe_dump(document)
    except yaml.YAMLError:
        return  # a value YAML cannot write (the builder took it from memory): nothing to serve from a file
    for old in settings.zones.glob("*.yaml"):
        old.unlink()
    (settings.zones / "fuzz.yaml").write_text(text)
    loaded, problems = build.load(settings, geo)
    assert_problems_bounded(problems)
    if loaded is None:
        return
    assert not build.self_test(loaded)
    errors = ErrorLines()
    logging.getLogger("gslb").addHandler(errors)
    try:
        for name in list(loaded.catalog.zones[0].nodes)[:20]:
            for rdtype in ("A", "AAAA", "ANY", "TXT"):
                packet = dns.message.make_query(to_text(name), rdtype, use_edns=0).to_wire()
                for raw in (loaded.answerer.respond(packet, ipaddress.ip_address("81.2.69.160"), False),
                            loaded.answerer.respond_udp(packet, "81.2.69.160")):
                    assert raw is not None
                    dns.message.from_wire(bytes(raw))
    finally:
        logging.getLogger("gslb").removeHandler(errors)
    assert not errors.lines, errors.lines


class ErrorLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# -- mutated zone text ------------------------------------------------------------------------------

SNIPPETS = ["&a ", "*a", "*missing", "<<: *a\n", "!!python/object:os.system ", "!!binary ", "!!int ", "!!float ",
            "!!str ", "!!set ", "!!omap ", "? ", ": ", "- ", "{", "}", "[", "]", ",", "\t", "'", '"', "#", "|\n",
            ">\n", "%YAML 1.1\n", "---\n", "...\n", "\\", "\x00", "\ufeff", "0x10", "0o17", "1e400", ".nan",
            "-.inf", "~", "yes", "no", "on", "2001-12-14", "12:30:00", "1_000", "\u2028", "@"]


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        kind = draw(st.sampled_from(["snippet", "snippet", "char", "delete_line", "repeat_line", "truncate"]))
        if kind == "snippet":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif kind == "char" and text:
            at = draw(st.integers(0, len(text) - 1))
            text = text[:at] + draw(st.characters()) + text[at + 1:]
        elif kind == "delete_line":
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
        elif kind == "repeat_line":
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            text = "\n".join(lines)
        elif kind == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
    return text


@pytest.fixture(scope="module")
def zone_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("text") / "fuzz.yaml"


@given(mutated_texts())
def test_mutated_zone_text_gives_a_zone_or_bounded_problems(zone_path, text):
    zone_path.write_text(text, "utf-8", errors="surrogatepass")
    zone, problems = load_zone_file(zone_path)
    assert (zone is None) == bool(problems)
    assert_problems_bounded(problems)


@given(st.binary(max_size=300))
def test_any_bytes_in_a_zone_file_give_a_zone_or_bounded_problems(zone_path, data):
    zone_path.write_bytes(data)
    zone, problems = load_zone_file(zone_path)
    assert (zone is None) == bool(problems)
    assert_problems_bounded(problems)


# -- what the fuzzers found (plain examples) --------------------------------------------------------

def test_an_origin_that_is_a_mapping_is_one_short_problem():
    """Found by test_any_document_...: str() of the mapping was checked as a name and echoed whole."""
    _zone, problems = build_document({"origin": {"checks": ["\U00016b90" * 200], "ns": "x" * 500}})
    assert [p.path for p in problems] == ["origin"]
    assert problems and "must be the zone's name" in next(iter(problems)).message


@pytest.mark.parametrize("origin", ["\u00e9" * 1000 + ".", "a" * 64 + "." + "b" * 2000 + ".", "x!" * 600 + "."], ids=["non-ascii", "long", "bad-label"])
def test_a_long_bad_origin_is_quoted_in_a_bounded_message(origin):
    _zone, problems = build_document({"origin": origin, "ns": ["ns1.example."], "soa": {}})
    assert any(p.path == "origin" for p in problems)


def test_a_long_bad_record_name_is_quoted_in_a_bounded_message():
    document = copy.deepcopy(DOCUMENTS[0])
    document["records"]["\u00e9" * 1000] = {"type": "A", "value": "192.0.2.1"}
    document["records"]["www"] = {"type": "CNAME", "value": "y!" * 500 + "."}
    _zone, problems = build_document(document)
    assert len(problems) == 2


def test_a_cold_start_that_is_a_list_is_a_problem_not_a_type_error():
    """Found by test_a_mutated_zone_...: `cold_start not in COLD_STARTS` raised TypeError
    (unhashable list) out of the loader."""
    document = copy.deepcopy(DOCUMENTS[2])
    document["checks"]["web"]["cold_start"] = []
    _zone, problems = build_document(document)
    assert [p.path for p in problems] == ["checks.web.cold_start"]


@pytest.mark.parametrize("where", ["default_region", "subnets", "interval", "cold_start", "path", "port", "expect"])
def test_a_long_bad_value_is_quoted_short_in_regions_and_checks(where):
    """Found by test_a_mutated_zone_...: regions and checks echoed the value whole (repr), up to
    Problem's hard cap."""
    long = {"k": "x" * 3000}
    document = copy.deepcopy(DOCUMENTS[2])
    web = document["checks"]["web"]
    if where == "default_region":
        document["default_region"] = long
    elif where == "subnets":
        document["subnets"]["198.18.0.0/15"] = "x" * 3000
    elif where in ("interval", "cold_start"):
        web[where] = "x" * 3000
    else:
        web["http"][where] = "y" * 3000 if where != "expect" else ["z" * 3000]
    _zone, problems = build_document(document)  # asserts every message is below the hard cap
    assert problems


def test_a_check_name_that_is_a_list_is_a_problem_not_a_type_error():
    """Found by test_a_mutated_zone_...: `check not in check_names` (a set) raised TypeError."""
    document = copy.deepcopy(DOCUMENTS[2])
    document["records"]["app"]["check"] = ["web"]
    _zone, problems = build_document(document)
    assert [p.path for p in problems] == ["records.app.check"]


@pytest.mark.parametrize("text", ["!!float origin: x.\n", "soa: !!float \n", "ttl: !!int \n", "ttl: !!int x\n",
                                  "ttl: !!bool x\n", "ttl: !!timestamp x\n", "ttl: !!timestamp 2001-13-99\n",
                                  "ttl: !!map x\n"],
                         ids=["float-key", "float-empty", "int-empty", "int-text", "bool", "timestamp", "date", "map"])
def test_a_value_its_tag_cannot_read_is_a_yaml_problem_with_its_line(zone_path, text):
    """Found by test_mutated_zone_text_...: PyYAML raised ValueError, IndexError, KeyError or
    AttributeError (not a YAMLError) out of load_zone_file for an explicit tag on a bad value."""
    zone_path.write_text("origin: x.\nns: [ns1.x.]\n" + text)
    zone, problems = load_zone_file(zone_path)
    assert zone is None and len(problems) == 1
    assert "line 3" in next(iter(problems)).message and "!!" in next(iter(problems)).message


@pytest.mark.parametrize("policy", [{"hash": {"ipv4_prefix": "x" * 3000}}, "y" * 3000, {"a" * 3000: 1, "b": 2}],
                         ids=["option", "name", "mapping"])
def test_a_long_bad_policy_is_quoted_short(policy):
    document = copy.deepcopy(DOCUMENTS[2])
    document["records"]["www"]["policy"] = policy
    _zone, problems = build_document(document)  # asserts every message is below the hard cap
    assert [p.path for p in problems][:1] and all(p.path.startswith("records.www.policy") for p in problems)


@pytest.mark.parametrize("code", ["x" * 3000, "EU-" + "y" * 3000, "NA-US-" + "z" * 3000], ids=["continent", "country", "subdivision"])
def test_a_long_bad_geo_code_is_quoted_short(code):
    """Found by test_a_mutated_zone_... (fuzz profile): serves: echoed the code whole (repr), twice."""
    document = copy.deepcopy(DOCUMENTS[0])
    document["regions"]["lab"]["serves"] = [code]
    _zone, problems = build_document(document)  # asserts every message is below the hard cap
    assert [p.path for p in problems][0] == "regions.lab.serves[0]"  # then the pools of the refused regions
