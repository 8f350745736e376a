# The C extension gslb/dns/_udpbatch.c (optional: gslb/dns/udpio.py falls back without it).
from collections.abc import Callable

from _typeshed import WriteableBuffer
from typing_extensions import Buffer

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
