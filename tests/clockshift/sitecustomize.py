"""Loaded by a test's `gslb serve` when this directory is on PYTHONPATH: its wall clock
(time.time, which the DNSSEC signer dates signatures by) runs GSLB_TEST_CLOCK_SHIFT seconds off,
so a test can make it sign with signatures that have already expired.
"""

import os
import time

_shift = float(os.environ.get("GSLB_TEST_CLOCK_SHIFT", "0"))
if _shift:
    _real_time = time.time
    time.time = lambda: _real_time() + _shift
