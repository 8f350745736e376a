"""What the API answers when a request is wrong: one line of JSON, `{"error": "field: what is wrong"}`.

Every status the API sends for a client's mistake (400, 401, 403, 404, 405, 408, 413, 429) and for
its own trouble (500, 503) goes through `error_response`, so a client and a log reader see one
shape whatever raised it: a handler, the router, the body reader or the HTTP parser.
"""

from __future__ import annotations

import json

from aiohttp import web

MAX_MESSAGE = 500  # characters of an error message; longer echoes of client input are cut


class ApiError(Exception):
    """An error for the client: the HTTP status and a one-line message naming the field."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def one_line(message: str) -> str:
    """`message` without line breaks, cut to MAX_MESSAGE characters (it may echo client input)."""
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def error_body(message: str) -> str:
    return json.dumps({"error": one_line(message)}, separators=(",", ":"))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=error_body(message), content_type="application/json", headers=headers)


def raw_error(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response, for the moments no request object exists (a connection
    closed for slowness or at the connection cap): the same body as `error_response`."""
    body = error_body(message).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body
