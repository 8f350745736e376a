"""Problems found while validating user input, each one line with file and key path.

Loaders append to a `Problems` list and keep going, so `gslb check` can print every problem at
once (octoDNS returns all its validation reasons, not the first).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# A value quoted back to the user is cut to this many characters: a problem is one readable line,
# however big the value (a YAML alias bomb under `ttl:` once made a 34.7 MB one-line error).
SHOWN_CHARS = 80
ELLIPSIS = "..."
# The last line of defence for messages and key paths built without `shown()`.
MAX_MESSAGE_CHARS = 400
MAX_PATH_CHARS = 200

_bounded = reprlib.Repr()
_bounded.maxlevel = 3
_bounded.maxlist = _bounded.maxtuple = _bounded.maxset = _bounded.maxdict = 6
_bounded.maxstring = _bounded.maxother = _bounded.maxlong = SHOWN_CHARS


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its first characters and '...' when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """repr(value) for a message, at most `limit` characters, in work bounded whatever the value
    (a string is cut before repr; a list or mapping is walked only a few items and levels deep)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else clip(repr(value[:limit]), limit)
    try:
        text = _bounded.repr(value)
    except (ValueError, RecursionError):  # an int too long to print (Python caps int -> str)
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    path: str  # "records.www.pools.eu[1].weight"; "" for the file as a whole
    message: str  # what is wrong and, where it helps, what to do

    def __post_init__(self) -> None:
        # One line each, whatever a caller put in: a newline inside a value would split a problem.
        for name, limit in (("path", MAX_PATH_CHARS), ("message", MAX_MESSAGE_CHARS)):
            text = getattr(self, name)
            if len(text) > limit or "\n" in text or "\r" in text:
                object.__setattr__(self, name, clip(" ".join(text[: limit + 1].splitlines()), limit))

    def __str__(self) -> str:
        if not self.file:
            return self.message
        if self.path:
            return f"{self.file}: {self.path}: {self.message}"
        return f"{self.file}: {self.message}"


class Problems:
    """An append-only list of problems for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self._items.append(Problem(self.file, path, message))

    def extend(self, other: Problems | list[Problem]) -> None:
        self._items.extend(other)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


class ConfigError(Exception):
    """Raised with every problem found, when a caller needs valid configuration or nothing."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def join_path(parent: str, key: object) -> str:
    """`records` + `www` -> `records.www`; integers index: `pools.eu` + 1 -> `pools.eu[1]`."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{parent}[{key}]"
    text = clip(key if isinstance(key, str) else shown(key))
    return f"{parent}.{text}" if parent else text
