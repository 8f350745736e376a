"""Record values from zone YAML, validated and turned into dnslib rdata objects once, at load.

Each parser takes the YAML value (a string in zone-file presentation form, or a mapping with
named fields) and returns the rdata, or raises ValueError with a message that says what to write.
Target names must be fully qualified: a relative `mail` silently meaning `mail.<origin>` is the
classic zone-file trap, and octoDNS refuses it for the same reason.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from typing import Any

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, RD, SRV, TXT, A, DNSLabel

from gslb.config.problems import shown
from gslb.names import NameError_, parse_absolute, to_text


def _target(value: Any, what: str = "name") -> DNSLabel:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a fully qualified domain name ending in '.'")
    try:
        return DNSLabel(to_text(parse_absolute(value)))
    except NameError_ as error:
        raise ValueError(str(error)) from None


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if not isinstance(value, str) or len(value) > 40:
                raise ValueError
            value = int(value, 10)
        except ValueError:
            raise ValueError(f"{what} must be an integer from {low} to {high}, got {shown(value)}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be an integer from {low} to {high}, got {shown(value)}")
    number: int = value  # an int by now (checked or parsed above)
    return number


# Durations as BIND and gdnsd write TTLs: 30s, 5m, 1h, 1d, 1w, or several like 1h30m.
_DURATION = re.compile(r"(?:\d{1,10}[smhdw]){1,5}", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d{1,10})([smhdw])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HINT = "durations like 30s, 5m, 1h, 1d work too"


def seconds(value: Any, what: str, low: int, high: int) -> int:
    """A TTL or SOA timer: whole seconds (300), or a duration (5m, 1h30m, 1d); within low..high."""
    if isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        total = sum(int(number) * _UNIT_SECONDS[unit.lower()]
                    for number, unit in _DURATION_PART.findall(value.strip()))
        if not low <= total <= high:
            raise ValueError(f"{what} must be from {low} to {high} seconds, got {shown(value)} ({total} seconds)")
        return total
    try:
        return _integer(value, what, low, high)
    except ValueError as error:
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            raise ValueError(f"{error}; {DURATION_HINT}") from None
        raise


def article(type_name: str) -> str:
    """'an A', 'an MX', 'a CNAME': types are read letter by letter, so the article follows the
    first letter's sound (ay, em, en, es: an; see, tee, pee: a)."""
    return f"{'an' if type_name[:1].upper() in 'AEFHILMNORSX' else 'a'} {type_name}"


def _fields(value: Any, names: tuple[str, ...], example: str) -> list[Any]:
    """A value given as 'f1 f2 ...' or as {f1: ..., f2: ...}, as a list in `names` order."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise ValueError(f"needs exactly the keys {', '.join(names)} (like {example!r})")
        return [value[n] for n in names]
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as error:
            raise ValueError(f"cannot split {shown(value)}: {error}") from None
        if len(parts) == len(names):
            return parts
    raise ValueError(f"must be {' '.join(f'<{n}>' for n in names)}, like {example!r}")


def parse_a(value: Any) -> RD:
    try:
        return A(tuple(ipaddress.IPv4Address(value).packed))  # dnslib keeps the 4 octets as a tuple
    except (ipaddress.AddressValueError, ValueError):
        raise ValueError(f"must be an IPv4 address, got {shown(value)}") from None


def parse_aaaa(value: Any) -> RD:
    try:
        return AAAA(ipaddress.IPv6Address(value).compressed)
    except (ipaddress.AddressValueError, ValueError):
        raise ValueError(f"must be an IPv6 address, got {shown(value)}") from None


def parse_mx(value: Any) -> RD:
    preference, exchange = _fields(value, ("preference", "exchange"), "10 mail.example.com.")
    return MX(_target(exchange, "exchange"), _integer(preference, "preference", 0, 65535))


def parse_srv(value: Any) -> RD:
    priority, weight, port, target = _fields(
        value, ("priority", "weight", "port", "target"), "10 5 443 sip.example.com."
    )
    return SRV(
        _integer(priority, "priority", 0, 65535),
        _integer(weight, "weight", 0, 65535),
        _integer(port, "port", 0, 65535),
        _target(target, "target"),
    )


def parse_caa(value: Any) -> RD:
    flags, tag, text = _fields(value, ("flags", "tag", "value"), '0 issue "letsencrypt.org"')
    tag = str(tag)
    if not tag.isascii() or not tag.isalnum() or len(tag) > 15:
        raise ValueError(f"tag must be 1-15 ASCII letters or digits (issue, issuewild, iodef), got {shown(tag)}")
    return CAA(_integer(flags, "flags", 0, 255), tag, str(text))


def parse_txt(value: Any) -> RD:
    """One TXT record; a string longer than 255 bytes is split into 255-byte character-strings
    (RFC 1035 caps each at 255), which clients join back together (SPF, DKIM)."""
    if isinstance(value, str):
        strings = [value]
    elif isinstance(value, list) and value and all(isinstance(s, str) for s in value):
        strings = value
    else:
        raise ValueError("must be a string, or a list of strings for one record of several strings")
    chunks: list[bytes] = []
    for text in strings:
        raw = text.encode("utf-8")
        chunks.extend([raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""])
    if sum(len(c) + 1 for c in chunks) > 65535:
        raise ValueError("is longer than a record can hold (65535 bytes)")
    return TXT(chunks)


def _name_record(cls: type) -> Callable[[Any], RD]:
    def parse(value: Any) -> RD:
        return cls(_target(value))
    return parse


# The YAML type name -> (DNS type code, parser). Adding a type is one line here.
PARSERS: dict[str, tuple[int, Callable[[Any], RD]]] = {
    "A": (1, parse_a),
    "AAAA": (28, parse_aaaa),
    "CNAME": (5, _name_record(CNAME)),
    "MX": (15, parse_mx),
    "TXT": (16, parse_txt),
    "SRV": (33, parse_srv),
    "CAA": (257, parse_caa),
    "PTR": (12, _name_record(PTR)),
    "NS": (2, _name_record(NS)),
}
