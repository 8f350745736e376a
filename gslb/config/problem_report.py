"""Printing problems the way `gslb check` and `gslb serve` both do."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from gslb.config.problems import Problem


def report(problems: Iterable[Problem]) -> int:
    """Every problem on stderr, one line each, then a count; returns the exit status 1."""
    items = list(problems)
    for problem in items:
        print(problem, file=sys.stderr)
    print(f"gslb: {len(items)} problem{'s' if len(items) != 1 else ''} found", file=sys.stderr)
    return 1
