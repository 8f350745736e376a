"""gslb/config/files.py: an operator's file is read only if it is a regular file under a limit,
without ever blocking on what sits at the path, and replaced atomically keeping its mode."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from gslb.config.files import (
    FileRefused,
    FileTooLarge,
    NotRegularFile,
    parse_size,
    read_regular_file,
    replace_file,
    size_text,
)


def test_a_regular_file_under_the_limit_is_read_whole(tmp_path):
    path = tmp_path / "zone.yaml"
    path.write_bytes(b"origin: x.\n" * 1000)
    assert read_regular_file(path, limit=11_000) == b"origin: x.\n" * 1000


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "state.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []
    # In a thread: before the fix open() blocked until a writer came, which must fail the test,
    # not hang it.
    reader = threading.Thread(target=lambda: outcome.append(_attempt(fifo)), daemon=True)
    started = time.monotonic()
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "read_regular_file blocked on a FIFO"
    assert time.monotonic() - started < 2
    (error,) = outcome
    assert isinstance(error, NotRegularFile) and isinstance(error, OSError)
    assert str(error) == "is a FIFO (named pipe), not a regular file"


def _attempt(path: Path) -> BaseException | bytes:
    try:
        return read_regular_file(path)
    except BaseException as error:
        return error


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")])
def test_devices_and_directories_are_refused_by_kind(path, kind):
    with pytest.raises(NotRegularFile, match=f"^is {kind}, not a regular file$"):
        read_regular_file(path)


def test_a_missing_file_raises_file_not_found_as_open_does(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "absent.yaml")


def test_a_sparse_file_over_the_limit_is_refused_by_its_size_before_any_read(tmp_path):
    path = tmp_path / "x.yaml"
    with path.open("wb") as file:
        file.truncate(3 * 2**30)  # 3 GiB that cost no disk
    started = time.monotonic()
    with pytest.raises(FileTooLarge) as caught:
        read_regular_file(path, limit=64 * 2**20)
    assert time.monotonic() - started < 1
    assert str(caught.value) == "is 3 GiB, more than the 64 MiB limit"
    assert (caught.value.size, caught.value.limit) == (3 * 2**30, 64 * 2**20)


def test_a_file_that_holds_more_than_its_size_said_is_cut_at_the_limit():
    # /proc files are regular files that stat as 0 bytes: the size check passes, the read must
    # still stop at the limit (as it must for a file that grows while it is read).
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(FileTooLarge, match="^grew while being read, more than the 64 bytes limit$"):
        read_regular_file("/proc/self/maps", limit=64)


def test_refusals_are_oserrors_so_callers_that_catch_oserror_keep_working(tmp_path):
    assert issubclass(FileRefused, OSError)
    assert issubclass(FileTooLarge, FileRefused) and issubclass(NotRegularFile, FileRefused)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o600, 0o664])
def test_replace_file_keeps_the_old_files_mode(tmp_path, mode):
    path = tmp_path / "state.yaml"
    path.write_text("old\n")
    os.chmod(path, mode)
    replace_file(path, b"new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.yaml"]  # no temporary left


def test_replace_file_gives_a_new_file_the_mode_open_would(tmp_path):
    path = tmp_path / "new.yaml"
    old_umask = os.umask(0o027)
    try:
        replace_file(path, b"x\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize(("text", "size"), [(5, 5), ("64MiB", 64 * 2**20), ("64 MiB", 64 * 2**20),
                                            ("512KiB", 512 * 1024), ("1GiB", 2**30), ("100MB", 10**8), ("7", 7)])
def test_sizes_are_bytes_or_binary_and_decimal_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [0, -1, "1.5GiB", "big", True, None, "64 MiBs"])
def test_bad_sizes_say_what_to_write(text):
    with pytest.raises(ValueError, match="must be"):
        parse_size(text)


def test_size_text_is_short_and_exact_enough():
    assert [size_text(n) for n in (10, 1536, 64 * 2**20, 3 * 2**30)] == ["10 bytes", "1.5 KiB", "64 MiB", "3 GiB"]
