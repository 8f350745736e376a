"""Reading an operator's file without letting the file decide how long or how much.

A path an operator names (a zone, the admin state file, the GeoIP file) may turn out to be a FIFO
(open() blocks until a writer comes), a device (/dev/zero never ends) or a sparse file of many
gigabytes. `read_regular_file` opens without blocking, accepts regular files only, and never
reads more than its limit, even when the file grows while it is read.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from gslb.config.problems import shown

# The default for zone files and the admin state file: far above any real zone (a 100,000-record
# zone is about 5 MB), far below what would hurt the server to hold in memory.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_CHUNK = 1024 * 1024
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class FileRefused(OSError):
    """The path exists but is not a file gslb will read: not a regular file, or too large.
    `str()` is one line without the path, for the caller to prefix with where it came from."""


class NotRegularFile(FileRefused):
    pass


class FileTooLarge(FileRefused):
    def __init__(self, size: int | None, limit: int) -> None:
        how_big = f"is {size_text(size)}" if size is not None else "grew while being read"
        super().__init__(f"{how_big}, more than the {size_text(limit)} limit")
        self.size = size
        self.limit = limit


def size_text(size: int) -> str:
    """1536 -> '1.5 KiB'; 67108864 -> '64 MiB'."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "bytes":
                return f"{size} bytes"
            return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_SIZE = re.compile(r"\s*(\d{1,15})\s*(bytes|B|KiB|MiB|GiB|KB|MB|GB|k|M|G)?\s*")
_SIZE_UNITS = {None: 1, "bytes": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "k": 1 << 10,
               "M": 1 << 20, "G": 1 << 30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_size(value: object) -> int:
    """67108864, '64MiB', '64 MiB', '512KiB', '1GiB' (or KB/MB/GB, powers of ten) -> bytes >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"must be a size in bytes, or like 64MiB, 512KiB, 1GiB; got {shown(value)}")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 1:
        raise ValueError(f"must be at least 1 byte, got {shown(value)}")
    return size


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular_file(path: str | os.PathLike[str], limit: int = DEFAULT_MAX_BYTES) -> tuple[int, os.stat_result]:
    """A descriptor opened without blocking, and its fstat, for a regular file of at most `limit`
    bytes; FileRefused otherwise (the descriptor is then closed). The caller closes it."""
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(descriptor)  # the opened file itself: no race with a rename in between
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"is {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileTooLarge(info.st_size, limit)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, info


def read_regular_file(path: str | os.PathLike[str], limit: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Raises FileNotFoundError and other
    OSErrors as open() does, and FileRefused (an OSError) for a FIFO, socket, device or directory
    and for a file over the limit, checked before reading and again while reading (it may grow)."""
    descriptor, _info = open_regular_file(path, limit)
    try:
        data = bytearray()
        while len(data) <= limit:
            chunk = os.read(descriptor, min(_CHUNK, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise FileTooLarge(None, limit)
    return bytes(data)


def _umask() -> int:
    """The process umask without changing it (os.umask can only set it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def replace_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`: a temporary file in the same folder, synced, then
    renamed over it, so a reader, a restart or a crash never sees half a file. The new file keeps
    the old one's permission bits (and owner, where the process may set it); a new file gets the
    mode open() would give it (0666 less the umask)."""
    path = Path(path)
    try:
        old: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        old = None
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask())
            if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(file.fileno(), old.st_uid, old.st_gid)
                except PermissionError:
                    pass  # only root may give a file away; the mode is kept all the same
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
