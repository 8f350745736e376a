#!/usr/bin/env bash
# Run the batched UDP tests against gslb/dns/_udpbatch.c built with AddressSanitizer and
# UndefinedBehaviorSanitizer: the extension's own tests (in this process) and the UDP wire tests
# (the gslb servers they start inherit the preload and import the same build).
#   tools/asan_udpbatch.sh [pytest args...]      default: tests/test_udpbatch.py tests/test_wire_*.py
# The ASan build replaces the in-place module for the run; the normal build is put back at exit.
# PYTHONMALLOC=malloc sends every Python allocation through malloc, so ASan sees the bounds of
# each bytes object and buffer. Leak detection is off: CPython itself does not free everything at
# exit; tests/test_udpbatch.py checks the extension's reference counting instead.
set -euo pipefail
cd "$(dirname "$0")/.."
libasan="$(gcc -print-file-name=libasan.so)"
[ -e "$libasan" ] || { echo "asan_udpbatch: libasan not found (apt-get install gcc)" >&2; exit 2; }
reports="$(mktemp -d -t gslb-asan-XXXXXX)"
trap 'python tools/build_udpbatch.py >/dev/null 2>&1 || echo "asan_udpbatch: rebuilding the normal module failed: python tools/build_udpbatch.py" >&2; rm -rf "$reports"' EXIT
python tools/build_udpbatch.py --asan --werror >/dev/null
[ $# -gt 0 ] || set -- tests/test_udpbatch.py tests/test_wire_*.py
export PYTHONMALLOC=malloc
# Reports go to files (pytest captures stderr, and the servers' stderr is in their log files).
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
LD_PRELOAD="$libasan" GSLB_UDP_IO=batched python -c "import gslb.dns._udpbatch as m, sys; print('asan_udpbatch: testing', m.__file__, file=sys.stderr)"
LD_PRELOAD="$libasan" GSLB_UDP_IO=batched PYTHONPATH="tools${PYTHONPATH:+:$PYTHONPATH}" \
    python -m pytest -q -p no:cacheprovider -p asan_pytest "$@" && status=0 || status=$?
if compgen -G "$reports/*" >/dev/null; then
    cat "$reports"/* >&2
    echo "asan_udpbatch: sanitizer reports above" >&2
    exit 1
fi
echo "asan_udpbatch: no sanitizer reports (pytest exit status $status)" >&2
exit "$status"
