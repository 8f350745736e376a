"""The API's JSON body reader: nesting is measured without recursion, the way json.loads counts it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.api.body import nesting_depth, parse_json
from gslb.api.errors import ApiError
from gslb.settings import ApiLimits

LIMITS = ApiLimits(max_json_depth=32)

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=40,
)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(values)
def test_nesting_depth_agrees_with_the_value(value):
    text = json.dumps(value)
    assert nesting_depth(text, 1000) == depth(value)
    assert parse_json(text.encode(), ApiLimits(max_json_depth=1000)) == value


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_value_or_a_400_never_another_exception(raw):
    try:
        parse_json(raw, LIMITS)
    except ApiError as error:
        assert error.status == 400 and "\n" not in error.message


@pytest.mark.parametrize("size", [33, 1000, 100_000])
def test_deep_bodies_are_refused_before_json_loads(size):
    with pytest.raises(ApiError, match="nested deeper than 32 levels"):
        parse_json(b"[" * size + b"]" * size, LIMITS)
    with pytest.raises(ApiError, match="nested deeper than 32 levels"):
        parse_json(b'{"a":' * size, LIMITS)
