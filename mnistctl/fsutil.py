"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or Ctrl-C leaves either the old file or the new one, never a partial one. A write that
fails for a reason the user can fix (disk full, read-only, a file where a directory should be)
raises ``WriteError`` naming the file; the temporary files of processes that were killed
(``.NAME.*.part``) are removed by ``remove_stale_parts`` on the next run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mnistctl.errors import FIXABLE_ERRNOS, ConfigError, MnistctlError, WriteError

PART_SUFFIX = ".part"


def read_bounded(path: str | os.PathLike[str], limit: int, what: str,
                 error: type[MnistctlError] = MnistctlError) -> bytes:
    """The bytes of the regular file ``path``, refused up front (``error`` naming ``what``) when it is
    missing, not a regular file (a FIFO or a device would block or never end) or larger than
    ``limit`` bytes; never more than ``limit`` bytes are read (a file growing as it is read)."""
    import stat

    path = Path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{what} {path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    if info.st_size > limit:
        raise error(f"{what} {path} is too large ({info.st_size:,} bytes; at most {limit:,})")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} {path} is too large (more than {limit:,} bytes)")
    return data


def read_stream(stream: BinaryIO, limit: int, what: str, error: type[MnistctlError] = MnistctlError) -> bytes:
    """At most ``limit`` bytes of a binary stream (standard input), refused when it holds more."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} holds more than {limit:,} bytes: not one picture")
    return data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was.
    """
    target = Path(path)
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PART_SUFFIX, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _fixable(exc, target) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in FIXABLE_ERRNOS:
            raise WriteError(target, exc) from None
        raise


def _fixable(exc: OSError, target: Path) -> BaseException:
    return WriteError(target, exc) if exc.errno in FIXABLE_ERRNOS else exc


def remove_stale_parts(directory: str | os.PathLike[str], older_than: float = 120.0) -> list[Path]:
    """Remove the temporary files (``.NAME.*.part``) that killed processes left in ``directory``:
    those untouched for ``older_than`` seconds (a live writer touches its own far more often)."""
    removed: list[Path] = []
    now = time.time()
    try:
        candidates = list(Path(directory).glob(f".*{PART_SUFFIX}"))
    except OSError:
        return removed
    for part in candidates:
        try:
            if part.is_file() and now - part.stat().st_mtime > older_than:
                part.unlink()
                removed.append(part)
        except OSError:
            continue  # another process took it, or it is not ours to remove
    return removed


@contextmanager
def exclusive(directory: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (flock on the directory itself: no lock file is left
    behind, and the lock goes with the process if it dies). Another holder is a ConfigError naming
    ``what`` uses it."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError.invalid("run_dir", f"{directory} is in use by {what} still running: wait for it, or "
                                                 "choose another run directory", "the run directory") from None
        yield
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path: str | os.PathLike[str], columns: tuple[str, ...], rows: list[dict]) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def write_json(path: str | os.PathLike[str], obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")
