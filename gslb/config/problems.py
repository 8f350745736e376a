"""Problems found while validating user input, each one line with file and key path.

Loaders append to a `Problems` list and keep going, so `gslb check` can print every problem at
once (octoDNS returns all its validation reasons, not the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    path: str  # "records.www.pools.eu[1].weight"; "" for the file as a whole
    message: str  # what is wrong and, where it helps, what to do

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

    def extend(self, other: "Problems | list[Problem]") -> None:
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
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)
