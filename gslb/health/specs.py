"""How each kind of health check is written in zone YAML, as immutable values: `http:`/`https:`
(a request, its expected status and body, where the site reports its load) and `tcp:` (a handshake).

A spec parses its own YAML with every problem at its key path, and says what its probes provide
beyond UP/DOWN (`provides()`: "rtt", "load"), which the policies that read them require
(gslb/policy/). The kinds are registered, with the probe that runs each, in gslb/health/kinds.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from gslb.config.problems import Problems, join_path, shown

DEFAULT_USER_AGENT = "gslb-health/0.1"
DEFAULT_EXPECT = ((200, 399),)
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
                      r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# What a check's probes can provide beyond UP/DOWN, by the name policies declare needs with.
RTT = "rtt"  # the round-trip time of a successful probe
LOAD = "load"  # the load the site reports in its health response


@dataclass(frozen=True, slots=True)
class LoadSource:
    """Where an HTTP health response reports the site's load: a JSON body field or a header."""

    json: str | None = None  # a field of the JSON body; dots reach into objects: "stats.load"
    header: str | None = None


@dataclass(frozen=True, slots=True)
class HttpSpec:
    kind: ClassVar[str] = "http"
    path: str = "/"
    port: int = 80
    tls: bool = False
    host: str | None = None  # Host header and TLS SNI; None: the endpoint's address
    verify_tls: bool = True
    expect: tuple[tuple[int, int], ...] = DEFAULT_EXPECT  # inclusive status ranges
    body: str | None = None  # the body must contain this text
    user_agent: str = DEFAULT_USER_AGENT
    load: LoadSource | None = None

    KEYS: ClassVar[tuple[str, ...]] = ("path", "port", "tls", "host", "verify_tls", "expect", "body", "user_agent", "load")

    def provides(self) -> frozenset[str]:
        return frozenset((RTT, LOAD)) if self.load is not None else frozenset((RTT,))

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expect)

    def describe(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme} :{self.port}{self.path}"

    @classmethod
    def parse(cls, raw: Any, path: str, problems: Problems, tls_default: bool = False) -> HttpSpec | None:
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            problems.add(path, f"must be a mapping like {{path: /healthz, port: 443, tls: true}}, got {shown(raw)}")
            return None
        before = len(problems)
        for key in raw:
            if key not in cls.KEYS:
                problems.add(join_path(path, key), f"unknown key; expected one of {', '.join(cls.KEYS)}")
        tls = _boolean(raw, "tls", tls_default, path, problems)
        if tls_default and tls is False:
            problems.add(join_path(path, "tls"), "an https check always uses TLS; use http: for plain HTTP")
        values: dict[str, Any] = {"tls": bool(tls)}
        values["port"] = _port(raw.get("port", 443 if tls else 80), join_path(path, "port"), problems)
        check_path = raw.get("path", "/")
        if not isinstance(check_path, str) or not check_path.startswith("/") or any(c in check_path for c in " \r\n"):
            problems.add(join_path(path, "path"), f"must be a URL path starting with '/', got {shown(check_path)}")
        values["path"] = check_path
        host = raw.get("host")
        if host is not None and (not isinstance(host, str) or not HOSTNAME.match(host)):
            problems.add(join_path(path, "host"), f"must be a host name like www.example.com, got {shown(host)}")
        values["host"] = host.rstrip(".") if isinstance(host, str) else None
        values["verify_tls"] = _boolean(raw, "verify_tls", True, path, problems)
        values["expect"] = _expect(raw.get("expect", None), join_path(path, "expect"), problems)
        for key in ("body", "user_agent"):
            if key in raw and (not isinstance(raw[key], str) or not raw[key] or "\n" in raw[key]):
                problems.add(join_path(path, key), f"must be a non-empty one-line string, got {shown(raw[key])}")
        values["body"] = raw.get("body")
        values["user_agent"] = raw.get("user_agent", DEFAULT_USER_AGENT)
        values["load"] = _load_source(raw.get("load"), join_path(path, "load"), problems) if "load" in raw else None
        if len(problems) > before:
            return None
        return cls(**values)

    @classmethod
    def parse_https(cls, raw: Any, path: str, problems: Problems) -> HttpSpec | None:
        return cls.parse(raw, path, problems, tls_default=True)


@dataclass(frozen=True, slots=True)
class TcpSpec:
    """Success is a completed TCP handshake within the timeout."""

    kind: ClassVar[str] = "tcp"
    port: int = 0

    def provides(self) -> frozenset[str]:
        return frozenset((RTT,))

    def describe(self) -> str:
        return f"tcp :{self.port}"

    @classmethod
    def parse(cls, raw: Any, path: str, problems: Problems) -> TcpSpec | None:
        if not isinstance(raw, dict) or "port" not in raw:
            problems.add(path, f"must be a mapping with the port to connect to, like {{port: 5432}}, got {shown(raw)}")
            return None
        before = len(problems)
        for key in raw:
            if key != "port":
                problems.add(join_path(path, key), "unknown key; a tcp check takes only port")
        port = _port(raw["port"], join_path(path, "port"), problems)
        return cls(port) if len(problems) == before else None


ProbeSpec = HttpSpec | TcpSpec


def _boolean(raw: dict[str, Any], key: str, default: bool, path: str, problems: Problems) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        problems.add(join_path(path, key), f"must be true or false, got {shown(value)}")
        return default
    return value


def _port(value: Any, path: str, problems: Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.add(path, f"must be a port number from 1 to 65535, got {shown(value)}")
        return 0
    return value


def _expect(raw: Any, path: str, problems: Problems) -> tuple[tuple[int, int], ...]:
    """200, [200, 204], ["200-399"] -> inclusive (low, high) ranges."""
    if raw is None:
        return DEFAULT_EXPECT
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        problems.add(path, "must list at least one status code or range, like [200, \"300-399\"]")
        return DEFAULT_EXPECT
    ranges: list[tuple[int, int]] = []
    for index, item in enumerate(items):
        item_path = join_path(path, index) if isinstance(raw, list) else path
        text = str(item).strip()
        low_text, _, high_text = text.partition("-")
        try:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise ValueError
            low, high = int(low_text), int(high_text or low_text)
        except ValueError:
            problems.add(item_path, f"must be a status code like 200 or a range like \"200-399\", got {shown(item)}")
            continue
        if not 100 <= low <= high <= 599:
            problems.add(item_path, f"status codes run from 100 to 599, low to high, got {shown(item)}")
            continue
        ranges.append((low, high))
    return tuple(ranges)


def _load_source(raw: Any, path: str, problems: Problems) -> LoadSource | None:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("json", "header"):
        problems.add(path, f"must be {{json: FIELD}} or {{header: NAME}}, got {shown(raw)}")
        return None
    (key, value), = raw.items()
    if not isinstance(value, str) or not value:
        problems.add(join_path(path, key), f"must be a non-empty string, got {shown(value)}")
        return None
    if key == "header" and not HEADER_NAME.match(value):
        problems.add(join_path(path, key), f"not a valid HTTP header name: {shown(value)}")
        return None
    return LoadSource(**{key: value})
