"""`python tests/selftest_fault.py serve ...`: `gslb serve`, except that a reload's self-test fails
while the file named by $GSLB_TEST_SELF_TEST_FAILS exists. The only way a test can make a valid
configuration fail its self-test; everything else is the real server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's gslb, not an installed one

import gslb.build  # noqa: E402
from gslb.config.problems import Problem  # noqa: E402

_real_self_test = gslb.build.self_test


def _self_test(loaded):  # type: ignore[no-untyped-def]
    marker = os.environ.get("GSLB_TEST_SELF_TEST_FAILS")
    if marker and Path(marker).exists():
        return [Problem("", "", "self-test: failed on purpose (tests/selftest_fault.py)")]
    return _real_self_test(loaded)


gslb.build.self_test = _self_test

if __name__ == "__main__":
    from gslb.cli import main

    raise SystemExit(main())
