"""Reading a JSON request body with bounded work: size, time and nesting.

Python's json module parses nested arrays by recursion, so a body of 60,000 `[` raises
RecursionError deep inside the parser. The nesting is measured first, by a linear scan that skips
string contents, and a body nested deeper than `api_limits.max_json_depth` is refused before
json.loads sees it. The body must fit in `max_body` bytes (refused from its Content-Length when it
says so) and arrive within `body_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from gslb.api.errors import ApiError
from gslb.settings import ApiLimits

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def nesting_depth(text: str, limit: int) -> int:
    """The deepest nesting of arrays and objects in JSON `text`, counting stops past `limit`.
    Brackets inside strings do not count; for text that is not JSON the number means little,
    and json.loads refuses it afterwards anyway."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, limits: ApiLimits) -> Any:
    """`raw` as JSON, or ApiError 400 saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"body: not UTF-8 ({error.reason} at byte {error.start})") from None
    depth = nesting_depth(text, limits.max_json_depth)
    if depth > limits.max_json_depth:
        raise ApiError(400, f"body: JSON nested deeper than {limits.max_json_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, f"body: not valid JSON ({error})") from None


async def read_body(request: web.Request, limits: ApiLimits) -> bytes:
    """The whole body within the size and time limits; ApiError 413 or 408 (the connection is
    then closed: the rest of a late body is not worth waiting for)."""
    length = request.content_length
    if length is not None and length > limits.max_body:
        raise ApiError(413, f"body: {length} bytes is larger than {limits.max_body} bytes")
    try:
        return await asyncio.wait_for(request.read(), limits.body_timeout)
    except TimeoutError:
        raise ApiError(408, f"body: not received within {limits.body_timeout:g}s") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body: larger than {limits.max_body} bytes") from None


async def json_object(request: web.Request, limits: ApiLimits, example: str) -> dict[str, Any]:
    """The body as a JSON object; `example` shows the caller what one looks like."""
    if not request.can_read_body:
        raise ApiError(400, f"body: required, JSON like {example}")
    data = parse_json(await read_body(request, limits), limits)
    if not isinstance(data, dict):
        raise ApiError(400, f"body: must be a JSON object like {example}")
    return data
