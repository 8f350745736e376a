"""Server settings: built-in defaults, then the optional `--config FILE` (YAML), then flags.

A flag wins over the file, the file over the default. Paths in the file are relative to the file,
so a config can travel with its zones.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gslb.config.files import DEFAULT_MAX_BYTES, parse_size
from gslb.config.problems import Problem, Problems
from gslb.config.redisurl import check_url
from gslb.config.yamlload import load_yaml
from gslb.dns import udpio
from gslb.dns.rrl import RrlSettings
from gslb.dns.server import Listener, TcpLimits

DEFAULT_LISTENERS = (Listener("127.0.0.1", 1053), Listener("::1", 1053))
DEFAULT_API = Listener("127.0.0.1", 8053)
LOG_LEVELS = ("debug", "info", "warning", "error")
API_TOKEN_ENV = "GSLB_API_TOKEN"


def _source_tree() -> Path:
    """The folder above the imported `gslb` package: the repository when running from a checkout."""
    return Path(__file__).resolve().parent.parent


def _is_checkout(directory: Path) -> bool:
    """A gslb repository: its pyproject.toml names the project gslb."""
    try:
        text = (directory / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.replace(" ", "") == 'name="gslb"' for line in text.splitlines())


def _installed_dir(package: str) -> Path | None:
    # The data folders have no __init__.py (they are the repo's own folders), so they install
    # as namespace packages: ask for their location, not importlib.resources.files() (which
    # gives a MultiplexedPath for them).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _packaged_dir(package: str, repo_dir: str) -> Path:
    """The repo's top-level folder when the code runs from a checkout, else the installed copy."""
    checkout = _source_tree() / repo_dir
    if checkout.is_dir():
        return checkout
    return _installed_dir(package) or checkout  # reported as missing where it is used


@dataclass(frozen=True, slots=True)
class ZonesChoice:
    """Where `gslb serve` without --zones reads zones, and the words the start-up line uses."""

    path: Path
    origin: str  # "the checkout" | "the current directory" | "the packaged example"
    shown: str  # the path as the start-up line shows it: "./zones" for the current directory's

    def describe(self) -> str:
        return f"{self.shown} ({self.origin})"


def choose_default_zones(cwd: Path | None = None) -> ZonesChoice:
    """`./zones` when it exists (a checkout of gslb, or the operator's own folder): editing the
    zones in front of you must change what is served, whichever copy of gslb pip installed.
    Elsewhere, the example installed with the package (or the source tree's, run from one)."""
    cwd = Path.cwd() if cwd is None else cwd
    local = cwd / "zones"
    if local.is_dir():
        origin = "the checkout" if _is_checkout(cwd) else "the current directory"
        return ZonesChoice(local.absolute(), origin, "./zones")
    source = _source_tree()
    if (source / "zones").is_dir() and _is_checkout(source):
        return ZonesChoice(source / "zones", "the checkout", str(source / "zones"))
    packaged = _installed_dir("gslb.default_zones") or source / "zones"
    return ZonesChoice(packaged, "the packaged example", str(packaged))


def default_zones_dir() -> Path:
    return choose_default_zones().path


def default_geoip_file() -> Path:
    return _packaged_dir("gslb.default_geodata", "geodata") / "dbip-city-lite.mmdb"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """When a record has fewer than `healthy_below` of its endpoints UP, and when more than
    `servfail_above` of the last minute's responses were SERVFAIL (gslb/alerts.py)."""

    healthy_below: float = 0.5
    servfail_above: float = 0.05

    def __post_init__(self) -> None:
        for name in ("healthy_below", "servfail_above"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a fraction from 0 to 1 (0.5 = 50%), got {value!r}")


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """What one HTTP API client can cost (gslb/api/): bytes and nesting of a body, how long it may
    take to send a request, how many connections are held, and how wrong tokens are slowed down.
    Server config `api_limits: {max_connections: 64, header_timeout: 5s, ...}`; THREAT_MODEL.md."""

    max_body: int = 64 * 1024  # bytes of a request body; more: 413 before reading it
    max_json_depth: int = 32  # nesting of [ and { in a JSON body; deeper: 400 before parsing
    header_timeout: float = 10.0  # seconds from connect (or the previous response) to a complete request head
    body_timeout: float = 10.0  # seconds to receive a body once its head is in
    max_connections: int = 256  # open API connections; at the cap the oldest idle one is closed
    auth_failures: int = 10  # failed admin authentications from one address within auth_window ...
    auth_window: float = 60.0
    auth_backoff: float = 2.0  # ... answer 429 without checking the token for this long, doubled
    auth_backoff_max: float = 300.0  # at each repeat up to this

    def __post_init__(self) -> None:
        for item in fields(self):
            problem = _api_limit_problem(item.name, getattr(self, item.name))
            if problem is not None:
                raise ValueError(f"{item.name}: {problem}")
        if self.auth_backoff_max < self.auth_backoff:
            raise ValueError(f"auth_backoff_max: must be at least auth_backoff ({self.auth_backoff:g}s), "
                             f"got {self.auth_backoff_max:g}s")

    @classmethod
    def parse(cls, raw: object, problems: Problems, path: str = "api_limits") -> "ApiLimits":
        """The `api_limits:` mapping; every problem with its key path; defaults for what is missing."""
        known = [item.name for item in fields(cls)]
        if not isinstance(raw, dict):
            problems.add(path, f"must be a mapping with any of {', '.join(known)}")
            return cls()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                problems.add(f"{path}.{key}", f"unknown setting; expected one of {', '.join(known)}")
                continue
            if key not in API_LIMIT_COUNTS:
                value = _seconds(value)
            problem = _api_limit_problem(key, value)
            if problem is not None:
                problems.add(f"{path}.{key}", problem)
            else:
                values[key] = value
        try:
            return cls(**values)
        except ValueError as error:
            problems.add(path, str(error))
            return cls()


API_LIMIT_COUNTS = ("max_body", "max_json_depth", "max_connections", "auth_failures")


def _api_limit_problem(name: str, value: object) -> str | None:
    if name in API_LIMIT_COUNTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"must be a whole number >= 1, got {value!r}"
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return f"must be a duration > 0 (seconds, or like 10s or 500ms), got {value!r}"
    return None


def _seconds(value: object) -> object:
    """10, 10s, 1.5s, 500ms -> seconds; anything else is returned as it is, to be refused."""
    if isinstance(value, str):
        text = value.strip().lower()
        for suffix, scale in (("ms", 0.001), ("s", 1.0)):
            if text.endswith(suffix):
                try:
                    return float(text[:-len(suffix)]) * scale
                except ValueError:
                    return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@dataclass(frozen=True, slots=True)
class ServerSettings:
    zones: Path = field(default_factory=default_zones_dir)
    listen: tuple[Listener, ...] = DEFAULT_LISTENERS
    listen_explicit: bool = False  # a listener the user asked for must bind; a default may not
    geoip: Path | None = None  # None: the embedded default
    node_name: str | None = None
    tcp: TcpLimits = TcpLimits()
    log_level: str = "info"
    state: Path | None = None  # admin overrides file (gslb/health/admin.py); None: no overrides
    api: Listener | None = DEFAULT_API  # the HTTP API (gslb/api/); None: off
    api_explicit: bool = False  # an API address the user asked for must bind; the default may not
    api_token_file: Path | None = None  # bearer token for /admin; else $GSLB_API_TOKEN; else refused
    query_log: str | None = None  # JSON lines to this file, "-" for stdout; None: off
    query_log_sample: int = 1  # log one query in this many
    workers: int = 1  # DNS processes on SO_REUSEPORT sockets; probes and the API stay in the first
    # Where GeoIP region tables are cached (gslb/geo/tablecache.py); None: $GSLB_CACHE_DIR, else
    # ~/.cache/gslb. Unusable: tables are built in memory at each start, with one warning.
    cache_dir: Path | None = None
    alerts: AlertThresholds = AlertThresholds()
    rrl: RrlSettings | None = None  # response rate limiting on UDP (gslb/dns/rrl.py); None: off
    api_limits: ApiLimits = ApiLimits()
    max_zone_file_size: int = DEFAULT_MAX_BYTES  # bytes; a larger zone file is refused unread
    # Health shared through Redis (gslb/health/redis_link.py); None: this node's own probes only.
    redis: str | None = None  # redis://[USER:PASSWORD@]HOST:PORT/DB, rediss:// for TLS
    redis_prefix: str = "gslb:"  # the keys' and channels' prefix, for an ACL per agent
    vantage: str | None = None  # this node's (or probe agent's) vantage: it probes and publishes as it
    vantages: tuple[str, ...] = ()  # the vantages whose verdicts count (with the checks' vantages:)
    stale_after: float = 30.0  # seconds the store may be unreachable before this node probes for itself
    probe_source: str | None = None  # the local address probes leave from (gslb probe --source)
    udp_io: str = "auto"  # batched | per-datagram | auto (gslb/dns/udpio.py); auto: $GSLB_UDP_IO, else batched if built

    @property
    def geoip_file(self) -> Path:
        return self.geoip if self.geoip is not None else default_geoip_file()


FILE_KEYS = {"listen", "zones", "geoip", "cache_dir", "node_name", "tcp", "log_level", "state",
             "api", "api_token_file", "query_log", "query_log_sample", "alerts", "workers", "rrl",
             "api_limits",
             "max_zone_file_size", "udp_io"}
SHARED_HEALTH_KEYS = {"redis", "redis_prefix", "vantage", "vantages", "stale_after", "probe_source"}
FILE_KEYS |= SHARED_HEALTH_KEYS


def parse_listen(text: str) -> Listener:
    """Listener.parse, and for a host name the addresses it stands for: a DNS server binds
    addresses, and a name that resolves differently tomorrow must not move it, so a name is
    refused with the --listen flags to use instead."""
    try:
        return Listener.parse(text)
    except ValueError as error:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host or host.startswith("["):
            raise
        raise ValueError(f"{error}; {_addresses_hint(host, port)}") from None


def _addresses_hint(host: str, port: str) -> str:
    try:
        # Resolved here only to word the message; /etc/hosts answers for localhost.
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return "use an IP address, like 127.0.0.1:1053 or [::1]:1053"
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    shown = " ".join(f"--listen {Listener(address, int(port))}" for address in addresses)
    return f"use an address: {host} is {', '.join(addresses)} ({shown})"


def parse_api(text: object) -> Listener | None:
    """'127.0.0.1:8053', '[::1]:8053' or 'off' (YAML's bare `off` arrives as False)."""
    if text is False or (isinstance(text, str) and text.strip().lower() in ("off", "none", "no", "false")):
        return None
    if not isinstance(text, str):
        raise ValueError(f"must be HOST:PORT (like 127.0.0.1:8053) or off, got {text!r}")
    try:
        return Listener.parse(text)
    except ValueError:
        raise ValueError(f"must be HOST:PORT with an IP address (like 127.0.0.1:8053) or off, got {text!r}") from None


def parse_sample(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise ValueError(f"must be a whole number >= 1 (1 = every query), got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"must be a whole number >= 1 (1 = every query), got {value!r}")
    return number


def _from_file(path: Path, problems: Problems) -> dict[str, Any]:
    doc = load_yaml(path, problems)
    if problems:
        return {}
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        problems.add("", "the server config file must be a mapping (listen, zones, geoip, ...)")
        return {}
    values: dict[str, Any] = {}
    base = path.resolve().parent
    for key, value in doc.items():
        if key not in FILE_KEYS:
            problems.add(str(key), f"unknown setting; expected one of {', '.join(sorted(FILE_KEYS))}")
    if "listen" in doc:
        listen = doc["listen"] if isinstance(doc["listen"], list) else [doc["listen"]]
        parsed = []
        for index, text in enumerate(listen):
            try:
                parsed.append(parse_listen(str(text)))
            except ValueError as error:
                problems.add(f"listen[{index}]", str(error))
        if not parsed and not problems:
            problems.add("listen", "must list at least one HOST:PORT")
        values["listen"] = tuple(parsed)
    for key in ("zones", "geoip", "state", "cache_dir"):
        if key in doc:
            if not isinstance(doc[key], str):
                problems.add(key, "must be a path")
            else:
                values[key] = base / doc[key]
    if "node_name" in doc:
        node = doc["node_name"]
        if not isinstance(node, str) or not node or len(node.encode()) > 255:
            problems.add("node_name", "must be a non-empty string of at most 255 bytes")
        else:
            values["node_name"] = node
    if "api" in doc:
        try:
            values["api"] = parse_api(doc["api"])
            values["api_explicit"] = True
        except ValueError as error:
            problems.add("api", str(error))
    if "api_token_file" in doc:
        if not isinstance(doc["api_token_file"], str):
            problems.add("api_token_file", "must be a path to a file holding the admin API's bearer token")
        else:
            values["api_token_file"] = base / doc["api_token_file"]
    if "query_log" in doc:
        query_log = doc["query_log"]
        if query_log is None or query_log is False:
            values["query_log"] = None
        elif not isinstance(query_log, str) or not query_log:
            problems.add("query_log", "must be a file path, or - for standard output")
        else:
            values["query_log"] = query_log if query_log == "-" else str(base / query_log)
    if "query_log_sample" in doc:
        try:
            values["query_log_sample"] = parse_sample(doc["query_log_sample"])
        except ValueError as error:
            problems.add("query_log_sample", str(error))
    if "workers" in doc:
        try:
            values["workers"] = parse_workers(doc["workers"])
        except ValueError as error:
            problems.add("workers", str(error))
    if "alerts" in doc:
        alerts = doc["alerts"]
        known = {"healthy_below", "servfail_above"}
        if not isinstance(alerts, dict):
            problems.add("alerts", "must be a mapping with healthy_below and/or servfail_above (fractions, 0.5 = 50%)")
        else:
            for key in alerts:
                if key not in known:
                    problems.add(f"alerts.{key}", f"unknown setting; expected one of {', '.join(sorted(known))}")
            thresholds = {}
            for key in sorted(known & set(alerts)):
                value = alerts[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    problems.add(f"alerts.{key}", f"must be a fraction from 0 to 1 (0.5 = 50%), got {value!r}")
                else:
                    thresholds[key] = float(value)
            values["alerts"] = AlertThresholds(**thresholds)
    if "api_limits" in doc:
        values["api_limits"] = ApiLimits.parse(doc["api_limits"], problems)
    if "max_zone_file_size" in doc:
        try:
            values["max_zone_file_size"] = parse_size(doc["max_zone_file_size"])
        except ValueError as error:
            problems.add("max_zone_file_size", str(error))
    values.update(_shared_health(doc, problems))
    if "udp_io" in doc:
        try:
            values["udp_io"] = udpio.parse(doc["udp_io"], "udp_io")
            udpio.choose(values["udp_io"])
        except ValueError as error:
            problems.add("udp_io", str(error).removeprefix("udp_io "))
    if "log_level" in doc:
        if doc["log_level"] not in LOG_LEVELS:
            problems.add("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
        else:
            values["log_level"] = doc["log_level"]
    if "tcp" in doc:
        tcp = _tcp_limits(doc["tcp"], problems)
        if tcp is not None:
            values["tcp"] = tcp
    if "rrl" in doc:
        rrl = _rrl_settings(doc["rrl"], problems)
        if rrl is not None:
            values["rrl"] = rrl
    return values


TCP_KEYS = {"idle_timeout": "seconds", "busy_idle_timeout": "seconds", "lifetime": "seconds",
            "max_connections": "count", "max_connections_per_client": "count", "max_queued_bytes": "count"}


def _tcp_limits(tcp: object, problems: Problems) -> TcpLimits | None:
    if not isinstance(tcp, dict) or set(tcp) - set(TCP_KEYS):
        problems.add("tcp", "must be a mapping with idle_timeout (seconds) and/or max_connections"
                     f" (or {', '.join(sorted(set(TCP_KEYS) - {'idle_timeout', 'max_connections'}))})")
        return None
    values: dict[str, float | int] = {}
    for key, unit in TCP_KEYS.items():
        if key not in tcp:
            continue
        value = tcp[key]
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if unit == "count" and (number is None or number != int(number)):
            problems.add(f"tcp.{key}", f"must be a whole number, got {value!r}")
        elif number is None:
            problems.add(f"tcp.{key}", f"must be a number of seconds, got {value!r}")
        else:
            values[key] = int(number) if unit == "count" else float(number)
    try:
        return TcpLimits(**values)  # type: ignore[arg-type]
    except ValueError as error:
        problems.add("tcp", str(error))
        return None


RRL_KEYS = ("rate", "slip", "window", "ipv4_prefix", "ipv6_prefix", "exempt", "table_size")


def _rrl_settings(rrl: object, problems: Problems) -> RrlSettings | None:
    """`rrl: {rate: N, slip: 2, window: 15, ipv4_prefix: 24, ipv6_prefix: 56, exempt: [CIDR, ...]}`;
    `rrl: off` (or leaving it out) turns it off."""
    if rrl is None or rrl is False or (isinstance(rrl, str) and rrl.strip().lower() == "off"):
        return None
    if not isinstance(rrl, dict):
        problems.add("rrl", "must be a mapping like {rate: 20, slip: 2, window: 15} or off")
        return None
    count = len(problems)
    for key in rrl:
        if key not in RRL_KEYS:
            problems.add(f"rrl.{key}", f"unknown setting; expected one of {', '.join(RRL_KEYS)}")
    if "rate" not in rrl:
        problems.add("rrl.rate", "is required: the responses per second one client prefix may get of one kind")
    values: dict[str, object] = {}
    for key in ("rate", "slip", "window", "ipv4_prefix", "ipv6_prefix", "table_size"):
        if key in rrl:
            values[key] = rrl[key]
            try:
                RrlSettings(**{"rate": 1, key: rrl[key]})  # type: ignore[arg-type]
            except ValueError as error:
                problems.add(f"rrl.{key}", str(error).partition(" ")[2])
    exempt = rrl.get("exempt", [])
    if not isinstance(exempt, list):
        problems.add("rrl.exempt", "must be a list of networks, like [192.0.2.0/24, 2001:db8::/32]")
        exempt = []
    networks = []
    for index, text in enumerate(exempt):
        try:
            networks.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            problems.add(f"rrl.exempt[{index}]", f"must be a network like 192.0.2.0/24 or 2001:db8::/32, got {text!r}")
    if len(problems) > count:
        return None
    return RrlSettings(exempt=tuple(networks), **values)  # type: ignore[arg-type]


def load_settings(config_file: Path | None, flags: dict[str, Any]) -> tuple[ServerSettings, list[Problem]]:
    """Defaults < file < flags. `flags` holds only what was given on the command line."""
    problems = Problems(str(config_file) if config_file else "command line")
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_from_file(config_file, problems))
        if "listen" in values:
            values["listen_explicit"] = True
    flag_problems = Problems("command line")
    if flags.get("listen"):
        parsed = []
        for text in flags["listen"]:
            try:
                parsed.append(parse_listen(text))
            except ValueError as error:
                flag_problems.add("--listen", str(error))
        values["listen"] = tuple(parsed)
        values["listen_explicit"] = True
    for key in ("zones", "geoip", "state", "cache_dir"):
        if flags.get(key) is not None:
            values[key] = Path(flags[key])
    for key in ("node_name", "log_level"):
        if flags.get(key) is not None:
            values[key] = flags[key]
    if flags.get("api") is not None:
        try:
            values["api"] = parse_api(flags["api"])
            values["api_explicit"] = True
        except ValueError as error:
            flag_problems.add("--api", str(error))
    if flags.get("api_token_file") is not None:
        values["api_token_file"] = Path(flags["api_token_file"])
    if flags.get("query_log") is not None:
        values["query_log"] = flags["query_log"]
    if flags.get("query_log_sample") is not None:
        try:
            values["query_log_sample"] = parse_sample(flags["query_log_sample"])
        except ValueError as error:
            flag_problems.add("--query-log-sample", str(error))
    if flags.get("workers") is not None:
        try:
            values["workers"] = parse_workers(flags["workers"])
        except ValueError as error:
            flag_problems.add("--workers", str(error))
    values.update(_shared_health_flags(flags, flag_problems))
    settings = replace(ServerSettings(), **values)
    environment = Problems("")
    if settings.udp_io == udpio.AUTO:
        try:
            udpio.choose(settings.udp_io)  # $GSLB_UDP_IO must be a mode this build can run
        except ValueError as error:
            environment.add("", str(error))
    return settings, [*problems, *flag_problems, *environment]


# -- health shared through Redis ------------------------------------------------------------------

def parse_vantage(value: object) -> str:
    from gslb.health.checks import VANTAGE_NAME

    if not isinstance(value, str) or not VANTAGE_NAME.match(value):
        raise ValueError(f"must be a vantage name (letters, digits, '.', '_', '-'; up to 63), like eu, got {value!r}")
    return value


def parse_redis_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a URL like redis://gslb:PASSWORD@10.0.0.5:6379/0 (rediss:// for TLS)")
    problem = check_url(value.strip())
    if problem is not None:
        raise ValueError(problem)
    return value.strip()


def parse_source_address(value: object) -> str:
    import ipaddress

    try:
        return ipaddress.ip_address(str(value).strip()).compressed
    except ValueError:
        raise ValueError(f"must be a local IP address for the probes to leave from, got {value!r}") from None


def _shared_health(doc: dict[str, Any], problems: Problems) -> dict[str, Any]:
    from gslb.health.checks import parse_duration

    values: dict[str, Any] = {}
    parsers = {"redis": parse_redis_url, "vantage": parse_vantage, "probe_source": parse_source_address}
    for key, parse in parsers.items():
        if key in doc:
            try:
                values[key] = parse(doc[key])
            except ValueError as error:
                problems.add(key, str(error))
    if "redis_prefix" in doc:
        prefix = doc["redis_prefix"]
        if not isinstance(prefix, str) or not prefix or len(prefix) > 100 or any(c in prefix for c in " *?[]"):
            problems.add("redis_prefix", f"must be a key prefix without spaces or glob characters, like gslb:, got {prefix!r}")
        else:
            values["redis_prefix"] = prefix
    if "vantages" in doc:
        raw = doc["vantages"]
        if not isinstance(raw, list):
            problems.add("vantages", f"must list the vantages whose verdicts count, like [eu, us-east, asia], got {raw!r}")
        else:
            names = []
            for index, name in enumerate(raw):
                try:
                    names.append(parse_vantage(name))
                except ValueError as error:
                    problems.add(f"vantages[{index}]", str(error))
            values["vantages"] = tuple(dict.fromkeys(names))
    if "stale_after" in doc:
        try:
            values["stale_after"] = parse_duration(doc["stale_after"])
        except ValueError as error:
            problems.add("stale_after", str(error))
    return values


def _shared_health_flags(flags: dict[str, Any], problems: Problems) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, flag, parse in (("redis", "--redis", parse_redis_url), ("vantage", "--vantage", parse_vantage),
                             ("probe_source", "--source", parse_source_address)):
        if flags.get(key) is not None:
            try:
                values[key] = parse(flags[key])
            except ValueError as error:
                problems.add(flag, str(error))
    return values


def parse_workers(value: object) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError(f"must be a whole number of processes from 1 to 64, got {value!r}")
    return int(text)
