"""pytest plugin for tools/asan_udpbatch.sh: under ASan with PYTHONMALLOC=malloc a `gslb serve`
starts several times slower, so the test servers get longer to report their listeners."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import dnsserver

    dnsserver.START_TIMEOUT = 90.0
