"""gslb/config/yamlload.py: every YAML mistake is one short line naming the line to fix, and no
document, however built, costs more than its size: aliases, nesting and numbers are bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gslb.config.problems import Problem, Problems, join_path, shown
from gslb.config.yamlload import ALIAS_NODES, MAX_DEPTH, load_yaml


def load(tmp_path: Path, text: str) -> tuple[object, list[str]]:
    path = tmp_path / "zone.yaml"
    path.write_text(text)
    problems = Problems(str(path))
    document = load_yaml(path, problems)
    return document, [str(p).removeprefix(f"{path}: ") for p in problems]


def laughs(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level a list of `width` aliases to the level before."""
    parts = ['&l0 [' + ", ".join(['"lol"'] * width) + "]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "origin: bomb.example.\nns: [ns1.bomb.example.]\nttl: [" + ", ".join(parts) + "]\nrecords: {}\n"


# -- aliases -------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [7, 9, 30])
def test_an_alias_bomb_is_one_short_line_naming_its_line(tmp_path, levels):
    text = laughs(levels)
    assert len(text) < 2000
    started = time.monotonic()
    document, problems = load(tmp_path, text)
    assert time.monotonic() - started < 2
    assert document is None
    (line,) = problems
    assert line.startswith("YAML error at line 3, column "), line
    assert line.endswith(f"aliases here repeat more than {ALIAS_NODES:,} nodes (an alias bomb?); "
                         "write the values out or use fewer aliases")


def test_aliases_that_share_a_block_are_fine(tmp_path):
    pools = "{eu: [192.0.2.1, 192.0.2.2], us: [198.51.100.1]}"
    records = "\n".join(f"  r{i}: {{type: A, pools: *pools, <<: *defaults}}" for i in range(500))
    document, problems = load(tmp_path, f"defaults: &defaults {{ttl: 60, check: web}}\n"
                                        f"shared: &pools {pools}\nrecords:\n{records}\n")
    assert problems == []
    assert document["records"]["r499"] == {"type": "A", "ttl": 60, "check": "web",
                                           "pools": {"eu": ["192.0.2.1", "192.0.2.2"], "us": ["198.51.100.1"]}}


def test_an_alias_inside_the_collection_it_names_is_a_loop(tmp_path):
    document, problems = load(tmp_path, "a: 1\nb: &x [1, *x]\n")
    assert document is None
    assert problems == [("YAML error at line 2, column 11: alias *x is inside the collection it refers to "
                         "(a loop); write the values out")]


@pytest.mark.parametrize(("text", "problem"), [
    ("a: *nowhere\n", "YAML error at line 1, column 4: found undefined alias 'nowhere'"),
    ("a: &x 1\nb: &x 2\n", "YAML error at line 2, column 4: anchor &x is defined twice (first at line 1); rename one"),
    ("a: 1\n---\nb: 2\n", "YAML error at line 2, column 1: a second YAML document starts here; the file must hold one"),
])
def test_alias_and_document_mistakes_are_one_line(tmp_path, text, problem):
    assert load(tmp_path, text) == (None, [problem])


# -- nesting ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "ttl: " + "[" * 100_000 + "]" * 100_000 + "\n",  # crashed libyaml's recursive composer (SIGSEGV)
    "ttl: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",  # RecursionError in the mapping constructor
    "- " * 100_000 + "x\n",
], ids=["flow-sequences", "flow-mappings", "block-sequences"])
def test_nesting_deeper_than_the_limit_is_refused(tmp_path, text):
    document, problems = load(tmp_path, text)
    assert document is None
    (line,) = problems
    assert line.startswith("YAML error at line 1, column ") and line.endswith(f"nested more than {MAX_DEPTH} levels deep")


def test_nesting_to_the_limit_is_fine(tmp_path):
    depth = MAX_DEPTH - 1  # the top-level mapping is one level
    document, problems = load(tmp_path, "a: " + "[" * depth + "1" + "]" * depth + "\n")
    assert problems == []
    value = document["a"]
    for _ in range(depth):
        value = value[0]
    assert value == 1


# -- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("number", ["1" * 5000, "0x" + "f" * 5000, str(2**129)])
def test_a_huge_number_is_a_problem_not_a_valueerror(tmp_path, number):
    _document, problems = load(tmp_path, f"ttl: {number}\n")
    assert problems == ["YAML error at line 1, column 6: this number is too large (more than 128 bits)"]


# -- where the mistake is --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "start"), [
    # The `{` on line 2 is never closed: libyaml notices on line 3; the line to fix is 2.
    ("records:\n  www: {type: A, value: 192.0.2.1\n  mail: {type: A, value: 192.0.2.2}\n",
     "YAML error at line 2, column 8: this flow mapping is not closed (did not find expected ',' or '}' at line 3, column 7)"),
    ("ns: [ns1.example.\nrecords: {}\n", "YAML error at line 1, column 5: this flow sequence is not closed ("),
    ('records:\n  www: {type: TXT, value: "v=spf1}\n  mail: {type: A}\n',
     "YAML error at line 2, column 27: this quoted scalar is not closed (found unexpected end of stream at line 4, column 1)"),
    ("records:\n  www\n  mail: {type: A}\n", "YAML error at line 2: a ':' is missing at the end of this line ("),
    # Where the parser's position is the mistake, it is reported as is (counted from 1).
    ("records:\n  www: {type: A}\n   mail: {type: A}\n", "YAML error at line 3, column 4: "),
    ("records:\n\twww: {type: A}\n", "YAML error at line 2, column 1: "),
    ("records:\n  www: type: A\n", "YAML error at line 2, column 12: mapping values are not allowed"),
    ("records:\n  www: {type: A}\n  www: {type: A}\n", "YAML error at line 3, column 3: duplicate key 'www'"),
])
def test_a_yaml_error_names_the_line_to_fix(tmp_path, text, start):
    document, problems = load(tmp_path, text)
    assert document is None
    (line,) = problems
    assert line.startswith(start), line


# -- reading -----------------------------------------------------------------------------------------

def test_a_file_over_the_limit_names_the_setting(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("origin: x.\n" * 100)
    problems = Problems(str(path))
    assert load_yaml(path, problems, max_bytes=1000, limit_setting="max_zone_file_size") is None
    assert [str(p) for p in problems] == [(f"{path}: not read: the file is 1.1 KiB, more than the 1000 bytes limit "
                                           "(max_zone_file_size); is it the right file?")]


def test_a_non_utf8_file_is_one_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"origin: \xff\n")
    problems = Problems(str(path))
    assert load_yaml(path, problems) is None
    assert [p.message for p in problems] == ["cannot read: not UTF-8 text (byte 8)"]


# -- echoed values ------------------------------------------------------------------------------------

def test_shown_cuts_long_values_to_80_characters_with_an_ellipsis():
    assert shown("short") == "'short'"
    long = shown("x" * 1000)
    assert len(long) == 80 and long.startswith("'xxx") and long.endswith("...")
    nested = [[[[1] * 1000] * 1000] * 1000]  # a billion items if printed whole
    started = time.monotonic()
    text = shown(nested)
    assert time.monotonic() - started < 0.1
    assert len(text) <= 80 and text.endswith("...")
    assert shown(10**5000) == "<int>"  # Python refuses to print it at all


def test_a_problem_is_one_bounded_line_whatever_it_was_given():
    problem = Problem("zone.yaml", "records." + "k" * 1000, "bad value\nsecond line " + "v" * 10_000)
    text = str(problem)
    assert "\n" not in text and len(text) < 700
    assert join_path("records", "n" * 1000) == "records." + "n" * 77 + "..."
