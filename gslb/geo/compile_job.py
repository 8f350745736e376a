"""``python -m gslb.geo.compile_job``: the background process that compiles one region table.

RegionMap starts it (through compiled_cache.Pending) when no cached table fits. It reads one JSON
request on stdin ({"path", "key", "rules", "directory"}), compiles and caches the table, and
prints one JSON line: {"kind": "file", "path", "temporary"} or {"kind": "error", "reason"}.
"""

from __future__ import annotations

import json
import sys

from gslb.geo.compiled_cache import compile_request


def main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
    except ValueError as error:
        result = {"kind": "error", "reason": f"bad request: {error}"}
    else:
        result = compile_request(request)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["kind"] == "file" else 1


if __name__ == "__main__":
    sys.exit(main())
