"""A Redis URL as the configuration takes it: checked at load, and shown with its password hidden.

Here, below both the settings and the health engine, so that the settings can check a `--redis`
URL without importing the engine that will use it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """The URL for logs and /status: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_url(url: str) -> str | None:
    """A problem with a --redis URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"must be a redis://, rediss:// (TLS) or unix:// URL, like redis://gslb:PASSWORD@10.0.0.5:6379/0, got {redact(url)!r}"
    if parts.scheme != "unix" and not parts.hostname:
        return f"names no host: {redact(url)!r}"
    return None
