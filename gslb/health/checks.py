"""`checks:` in zone YAML -> immutable Check values, with every problem reported by key path.

```yaml
checks:
  web:
    http: {path: /healthz, port: 443, tls: true, host: www.example.com, expect: [200, "200-399"],
           body: ok, load: {json: load}}
    interval: 5s
    timeout: 2s
    rise: 2
    fall: 3
    cold_start: up
  db:
    tcp: {port: 5432}
```

Each probe kind (`http`, `https`, `tcp`) is a small spec class found by name in `SPECS`; the code
that runs it is the class of the same kind in `gslb/health/probes.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Union

from gslb.config.problems import Problems, join_path
from gslb.health.status import Status

DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_RISE = 2
DEFAULT_FALL = 3
DEFAULT_USER_AGENT = "gslb-health/0.1"
DEFAULT_EXPECT = ((200, 399),)
COLD_STARTS = {"up": Status.UP, "down": Status.DOWN}
COMMON_KEYS = ("interval", "timeout", "rise", "fall", "cold_start")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class CheckTiming:
    """When to probe and how many results in a row change the state (gdnsd's rise/fall)."""

    interval: float = DEFAULT_INTERVAL  # seconds between the starts of two probes
    timeout: float = DEFAULT_TIMEOUT  # seconds one probe may take; shorter than the interval
    rise: int = DEFAULT_RISE  # consecutive successes for a down endpoint to come back
    fall: int = DEFAULT_FALL  # consecutive failures for an up endpoint to be withdrawn

    def __post_init__(self) -> None:
        if not 0 < self.timeout < self.interval:
            raise ValueError(f"timeout must be > 0 and shorter than the interval ({self.interval:g}s), got {self.timeout:g}s")
        if isinstance(self.rise, bool) or not isinstance(self.rise, int) or self.rise < 1:
            raise ValueError(f"rise must be an integer >= 1, got {self.rise!r}")
        if isinstance(self.fall, bool) or not isinstance(self.fall, int) or self.fall < 1:
            raise ValueError(f"fall must be an integer >= 1, got {self.fall!r}")

    @property
    def detection_time(self) -> float:
        """The longest a dead endpoint keeps serving: `fall` probes apart, the last timing out."""
        return self.interval * self.fall + self.timeout


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

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expect)

    def describe(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme} :{self.port}{self.path}"

    @classmethod
    def parse(cls, raw: Any, path: str, problems: Problems, tls_default: bool = False) -> "HttpSpec | None":
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            problems.add(path, f"must be a mapping like {{path: /healthz, port: 443, tls: true}}, got {raw!r}")
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
            problems.add(join_path(path, "path"), f"must be a URL path starting with '/', got {check_path!r}")
        values["path"] = check_path
        host = raw.get("host")
        if host is not None and (not isinstance(host, str) or not HOSTNAME.match(host)):
            problems.add(join_path(path, "host"), f"must be a host name like www.example.com, got {host!r}")
        values["host"] = host.rstrip(".") if isinstance(host, str) else None
        values["verify_tls"] = _boolean(raw, "verify_tls", True, path, problems)
        values["expect"] = _expect(raw.get("expect", None), join_path(path, "expect"), problems)
        for key in ("body", "user_agent"):
            if key in raw and (not isinstance(raw[key], str) or not raw[key] or "\n" in raw[key]):
                problems.add(join_path(path, key), f"must be a non-empty one-line string, got {raw[key]!r}")
        values["body"] = raw.get("body")
        values["user_agent"] = raw.get("user_agent", DEFAULT_USER_AGENT)
        values["load"] = _load_source(raw.get("load"), join_path(path, "load"), problems) if "load" in raw else None
        if len(problems) > before:
            return None
        return cls(**values)

    @classmethod
    def parse_https(cls, raw: Any, path: str, problems: Problems) -> "HttpSpec | None":
        return cls.parse(raw, path, problems, tls_default=True)


@dataclass(frozen=True, slots=True)
class TcpSpec:
    """Success is a completed TCP handshake within the timeout."""

    kind: ClassVar[str] = "tcp"
    port: int = 0

    def describe(self) -> str:
        return f"tcp :{self.port}"

    @classmethod
    def parse(cls, raw: Any, path: str, problems: Problems) -> "TcpSpec | None":
        if not isinstance(raw, dict) or "port" not in raw:
            problems.add(path, f"must be a mapping with the port to connect to, like {{port: 5432}}, got {raw!r}")
            return None
        before = len(problems)
        for key in raw:
            if key != "port":
                problems.add(join_path(path, key), "unknown key; a tcp check takes only port")
        port = _port(raw["port"], join_path(path, "port"), problems)
        return cls(port) if len(problems) == before else None


ProbeSpec = Union[HttpSpec, TcpSpec]

# The YAML key that names a probe kind -> its parser. Adding a kind is one class and one line.
SPECS: Mapping[str, Callable[[Any, str, Problems], ProbeSpec | None]] = MappingProxyType({
    "http": HttpSpec.parse,
    "https": HttpSpec.parse_https,
    "tcp": TcpSpec.parse,
})


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    spec: ProbeSpec
    timing: CheckTiming
    cold_start: Status = Status.UP  # the state before any probe result: UP (fail open) or DOWN

    def describe(self) -> str:
        t = self.timing
        return (f"{self.name}: {self.spec.describe()} every {t.interval:g}s, timeout {t.timeout:g}s, "
                f"rise {t.rise}, fall {t.fall}, cold start {self.cold_start.name.lower()}")


def parse_duration(value: Any) -> float:
    """5, 5s, 1.5s, 500ms, 1m -> seconds. A bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 5s, 500ms or 1m, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = DURATION.match(str(value))
        if not match:
            raise ValueError(f"must be a duration like 5s, 500ms or 1m, got {value!r}")
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not seconds > 0:
        raise ValueError(f"must be longer than zero, got {value!r}")
    return seconds


def parse_checks(raw: Any, problems: Problems, path: str = "checks") -> dict[str, Check]:
    """The valid checks of a zone's `checks:` mapping; every problem goes to `problems`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(path, "must map check names to checks, like {web: {http: {path: /healthz}}}")
        return {}
    checks: dict[str, Check] = {}
    for name, entry in raw.items():
        check = parse_check(str(name), entry, join_path(path, name), problems)
        if check is not None:
            checks[str(name)] = check
    return checks


def parse_check(name: str, entry: Any, path: str, problems: Problems) -> Check | None:
    if not isinstance(entry, dict):
        problems.add(path, "must be a mapping like {http: {path: /healthz}, interval: 5s}")
        return None
    before = len(problems)
    kinds = [key for key in entry if key in SPECS]
    for key in entry:
        if key not in SPECS and key not in COMMON_KEYS:
            problems.add(join_path(path, key), f"unknown key; expected one of {', '.join([*SPECS, *COMMON_KEYS])}")
    spec = None
    if len(kinds) != 1:
        what = f"has {' and '.join(kinds)}" if kinds else "says nothing about how to probe"
        problems.add(path, f"{what}; give exactly one of {', '.join(SPECS)}")
    else:
        spec = SPECS[kinds[0]](entry[kinds[0]], join_path(path, kinds[0]), problems)
    timing = _timing(entry, path, problems)
    cold_start = entry.get("cold_start", "up")
    if cold_start not in COLD_STARTS:
        problems.add(join_path(path, "cold_start"), f"must be up (serve until proven down) or down (withdraw until proven up), got {cold_start!r}")
    if len(problems) > before or spec is None or timing is None:
        return None
    return Check(name, spec, timing, COLD_STARTS[cold_start])


def _timing(entry: dict, path: str, problems: Problems) -> CheckTiming | None:
    before = len(problems)
    values: dict[str, Any] = {}
    for key in ("interval", "timeout"):
        if key in entry:
            try:
                values[key] = parse_duration(entry[key])
            except ValueError as error:
                problems.add(join_path(path, key), str(error))
    for key in ("rise", "fall"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                problems.add(join_path(path, key), f"must be an integer from 1 to 1000, got {value!r}")
            else:
                values[key] = value
    bad_durations = any(key in entry and key not in values for key in ("interval", "timeout"))
    if not bad_durations:
        interval = values.get("interval", DEFAULT_INTERVAL)
        # The default timeout is 2s, or half the interval when that is shorter.
        values.setdefault("timeout", min(DEFAULT_TIMEOUT, interval / 2))
        if not values["timeout"] < interval:
            problems.add(join_path(path, "timeout"),
                         f"must be shorter than the interval ({interval:g}s), got {values['timeout']:g}s")
    if len(problems) > before:
        return None
    return CheckTiming(**values)


def _boolean(raw: dict, key: str, default: bool, path: str, problems: Problems) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        problems.add(join_path(path, key), f"must be true or false, got {value!r}")
        return default
    return value


def _port(value: Any, path: str, problems: Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.add(path, f"must be a port number from 1 to 65535, got {value!r}")
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
            problems.add(item_path, f"must be a status code like 200 or a range like \"200-399\", got {item!r}")
            continue
        if not 100 <= low <= high <= 599:
            problems.add(item_path, f"status codes run from 100 to 599, low to high, got {item!r}")
            continue
        ranges.append((low, high))
    return tuple(ranges)


def _load_source(raw: Any, path: str, problems: Problems) -> LoadSource | None:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("json", "header"):
        problems.add(path, f"must be {{json: FIELD}} or {{header: NAME}}, got {raw!r}")
        return None
    (key, value), = raw.items()
    if not isinstance(value, str) or not value:
        problems.add(join_path(path, key), f"must be a non-empty string, got {value!r}")
        return None
    if key == "header" and not HEADER_NAME.match(value):
        problems.add(join_path(path, key), f"not a valid HTTP header name: {value!r}")
        return None
    return LoadSource(**{key: value})
