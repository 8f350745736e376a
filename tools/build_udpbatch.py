"""Build gslb/dns/_udpbatch.c in place (next to the source), for a checkout that is not
pip-installed: `python tools/build_udpbatch.py`. `--asan` builds it with AddressSanitizer for
tools/asan_udpbatch.sh. (`pip install .` and `pip install -e .` build it through setup.py.)

Uses setuptools' build_ext without reading pyproject.toml, so an older setuptools will do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from setuptools import Distribution, Extension

REPO = Path(__file__).resolve().parent.parent
FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
ASAN = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]


def build(asan: bool = False, werror: bool = False) -> Path:
    flags = (ASAN if asan else FLAGS) + (["-Werror"] if werror else [])
    extension = Extension("gslb.dns._udpbatch", ["gslb/dns/_udpbatch.c"], extra_compile_args=flags,
                          extra_link_args=ASAN[:1] if asan else [])
    os.chdir(REPO)
    distribution = Distribution({"name": "gslb-udpbatch", "ext_modules": [extension]})
    command = distribution.get_command_obj("build_ext")
    command.inplace = True
    command.force = True
    command.build_temp = str(REPO / "build" / ("temp-asan" if asan else "temp"))
    command.ensure_finalized()
    command.run()
    return Path(command.get_ext_fullpath("gslb.dns._udpbatch"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asan", action="store_true", help="build with -fsanitize=address,undefined")
    parser.add_argument("--werror", action="store_true", help="warnings are errors")
    args = parser.parse_args()
    print(f"built {build(args.asan, args.werror)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
