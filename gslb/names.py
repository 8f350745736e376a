"""Domain names as the server compares them: tuples of lower-cased wire labels.

DNS names compare case-insensitively in ASCII only (RFC 4343), which is exactly `bytes.lower()`.
A tuple of labels (leftmost first, the root is `()`) keeps a label that contains a dot apart
from a pair of labels, and slicing gives every ancestor for free.
"""

from __future__ import annotations

import re

from gslb.config.problems import shown

Name = tuple[bytes, ...]

WILDCARD = b"*"  # RFC 4592: a label that is exactly '*', leftmost, makes the name a wildcard

_LABEL = re.compile(rb"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


class NameError_(ValueError):
    """A name in user input that is not a valid domain name. The name is quoted with `shown()`:
    at most a line's worth of it, however long the input."""


def parse_absolute(text: str, *, wildcard: bool = False) -> Name:
    """'www.Example.com.' -> (b'www', b'example', b'com'). The trailing dot is required.
    `wildcard`: a leftmost '*' label is allowed (a record owner, or a question for one)."""
    if not isinstance(text, str) or not text:
        raise NameError_("must be a domain name")
    if text == ".":
        return ()
    if not text.endswith("."):
        raise NameError_(f"{shown(text)} must be fully qualified, ending in '.'")
    return _labels(text[:-1], wildcard)


def parse_owner(text: str, origin: Name) -> Name:
    """A record owner as written under `records:`: '@', a relative name, or an absolute one;
    '*' as its leftmost label makes it a wildcard (RFC 4592), '*' alone the wildcard at the apex."""
    if not isinstance(text, str):
        raise NameError_("must be a name ('@', 'www', or 'www.example.com.')")
    if text == "@":
        return origin
    if text.endswith("."):
        name = parse_absolute(text, wildcard=True)
        if name[len(name) - len(origin):] != origin:
            raise NameError_(f"{shown(text)} is outside the zone {to_text(origin)}")
        return name
    return _labels(text, True) + origin


def is_wildcard(name: Name) -> bool:
    return bool(name) and name[0] == WILDCARD


def _labels(text: str, wildcard: bool = False) -> Name:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise NameError_(f"{shown(text)} is not ASCII; write internationalised names as punycode (xn--...)") from None
    labels = tuple(raw.split(b"."))
    for index, label in enumerate(labels):
        if not label:
            raise NameError_(f"{shown(text)} has an empty label")
        if label == WILDCARD:
            if index or not wildcard:
                # BIND only warns about such a "non-terminal wildcard"; it never matches what its
                # writer meant (RFC 4592 section 2.1.1: only a leftmost '*' is a wildcard).
                where = "the leftmost label" if wildcard else "the leftmost label of a record's owner name"
                raise NameError_(f"{shown(text)}: '*' is a wildcard only as {where}, like '*.apps'")
            continue
        if b"*" in label:
            # 'a*' would be a literal name (RFC 4592 section 2.1.1) that no client means: refused
            # rather than served as a name nobody can have wanted.
            raise NameError_(f"{shown(text)}: label {shown(label.decode())} holds '*'; a wildcard is "
                             "a whole leftmost label '*', like '*.apps'")
        if len(label) > 63:
            raise NameError_(f"{shown(text)} has a label longer than 63 bytes")
        if not _LABEL.match(label):
            raise NameError_(f"{shown(text)}: label {shown(label.decode())} may hold only letters, digits, '-' and '_'")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise NameError_(f"{shown(text)} is longer than 255 bytes")
    return tuple(label.lower() for label in labels)


def to_text(name: Name) -> str:
    if not name:
        return "."
    return ".".join(label.decode("ascii", "backslashreplace") for label in name) + "."


def is_subdomain(name: Name, parent: Name) -> bool:
    """True when name is parent or below it."""
    return len(name) >= len(parent) and name[len(name) - len(parent):] == parent
