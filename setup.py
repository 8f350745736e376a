"""The optional C extension (gslb/dns/_udpbatch.c: batched UDP I/O with recvmmsg/sendmmsg).

Everything else about the package is in pyproject.toml. The extension is optional the way
PyYAML's libyaml binding and msgpack's are: where it cannot be built (no compiler, no
recvmmsg), `pip install .` still succeeds and gslb answers UDP on asyncio's per-datagram path
(gslb/dns/udpio.py chooses at import). GSLB_NO_EXTENSIONS=1 skips the build altogether.
"""

import os
import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith(("linux", "freebsd")) and not os.environ.get("GSLB_NO_EXTENSIONS"):
    extensions.append(Extension("gslb.dns._udpbatch", ["gslb/dns/_udpbatch.c"], optional=True,
                                extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]))

setup(ext_modules=extensions)
