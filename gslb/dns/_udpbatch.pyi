# The C extension gslb/dns/_udpbatch.c (optional: gslb/dns/udpio.py falls back without it).
from collections.abc import Callable

# Spelled out rather than imported from _typeshed/typing_extensions (stub-only modules that a
# dependency check of gslb's imports would take for missing packages).
WriteableBuffer = bytearray | memoryview
Buffer = bytes | bytearray | memoryview

BATCH: int
MIN_SLOT: int

def drain(
    fd: int,
    buffer: WriteableBuffer,
    respond: Callable[[bytes, str], Buffer | None],
    limit: Callable[[bytes, str], Buffer | None] | None,  # called with respond's reply (bytes in gslb)
    max_batches: int,
    /,
) -> tuple[int, int, int, int, BaseException | None]: ...
