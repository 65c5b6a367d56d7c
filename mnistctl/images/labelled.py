"""Labelled pictures: a folder of one sub-folder per class (``DIR/7/*.png`` are sevens), or a CSV
file of ``path,label`` rows (paths relative to the CSV file's folder). ``evaluate --images`` scores a
model on them; ``train --extra-images`` trains on them beside the data set's images.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnistctl.errors import ConfigError
from mnistctl.fsutil import read_bounded
from mnistctl.images.preparers import prepared_files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_LABELS_FILE = 10_000_000  # bytes: a labels CSV larger than this is refused


def _bad(problem: str, setting: str) -> ConfigError:
    """A problem with the labelled pictures (the CLI names the option ``setting`` is)."""
    return ConfigError(problem, setting=setting, problem=problem)


def labelled_pictures(source: str | Path, classes: tuple[str, ...], setting: str = "images") -> list[tuple[str, int]]:
    """(path, class index) of every picture of ``source``: a folder of one sub-folder per class,
    or a CSV file of ``path,label`` rows. A label that is not one of ``classes`` is a ConfigError
    about ``setting``."""
    source = Path(source)
    if source.is_file():
        return _from_csv(source, classes, setting)
    if not source.is_dir():
        raise _bad(f"{source} is neither a folder of pictures nor a CSV file of labels", setting)
    found: list[tuple[str, int]] = []
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise _bad(f"{source} has no sub-folders: put each class's pictures in a folder named after it "
                   f"({', '.join(classes)}), or give a CSV file of labels", setting)
    for folder in folders:
        if folder.name not in classes:
            raise _bad(f"the folder {folder.name!r} of {source} is not a class of the model "
                       f"({', '.join(classes)})", setting)
        label = classes.index(folder.name)
        found += [(str(p), label) for p in sorted(folder.rglob("*"))
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise _bad(f"no pictures in the class folders of {source}", setting)
    return found


def _from_csv(path: Path, classes: tuple[str, ...], setting: str) -> list[tuple[str, int]]:
    text = read_bounded(path, MAX_LABELS_FILE, "the labels file", ConfigError).decode("utf-8-sig", "replace")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    found = []
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise _bad(f"{path}, row {number}: needs a path and a label", setting)
        name, label = row[0].strip(), row[1].strip()
        if label not in classes:
            raise _bad(f"{path}, row {number}: the label {label!r} is not a class of the model "
                       f"({', '.join(classes)})", setting)
        found.append((str(path.parent / name), classes.index(label)))
    if not found:
        raise _bad(f"{path} lists no pictures (rows of path,label)", setting)
    return found


def prepare_labelled(source: str | Path, classes: tuple[str, ...], setting: str = "images",
                     progress: Callable[[int, int], None] | None = None,
                     jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every labelled picture of ``source`` prepared as ``predict`` prepares one: (uint8 [N, 28, 28]
    inputs, int64 [N] class indices). A picture that cannot be read is a ConfigError naming it (and
    how many more), so that nothing trains on part of what was given. ``progress(done, total)`` is
    called first with 0, then every 256 pictures and at the end. ``jobs``: processes that prepare
    them (None: one per core; ``preparers.prepared_files``)."""
    pictures = labelled_pictures(source, classes, setting)
    images, failed = [], []
    if progress is not None:
        progress(0, len(pictures))
    with prepared_files([path for path, _ in pictures], jobs=jobs) as prepared:
        for done, ((path, _), outcome) in enumerate(zip(pictures, prepared), 1):
            if isinstance(outcome, str):
                failed.append(f"{path}: {outcome}")
            else:
                images.append(outcome.image)
            if progress is not None and (done % 256 == 0 or done == len(pictures)):
                progress(done, len(pictures))
    if failed:
        more = f" ({len(failed) - 1} more pictures cannot be read either)" if len(failed) > 1 else ""
        raise _bad(f"cannot use {failed[0]}{more}", setting)
    return np.stack(images), np.array([label for _, label in pictures], np.int64)
