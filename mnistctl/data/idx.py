"""IDX files (the MNIST format) read into numpy arrays, validated. Torch-free, so a front end that
runs an exported model (ONNX Runtime) reads the data the same way; ``mnistctl.data.splits`` wraps these
arrays as tensors without copying."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from mnistctl.datasets import DatasetInfo, IdxFile, dataset_dir, get_dataset
from mnistctl.errors import DataError

IMAGE_SIZE = 28
_IDX_UBYTE = 0x08


def _missing(info: DatasetInfo, path: Path) -> DataError:
    extra = "" if info.name == "mnist" else f" --dataset {info.name}"
    return DataError(f"{info.title} is not downloaded ({path} is missing): run "
                     f"`mnistctl download{extra}` first (or point the data directory, MNISTCTL_DATA_DIR, at its copy)",
                     setting="data_dir")


def read_idx(path: Path, ndim: int, hint: str = "mnistctl download --force") -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions into a uint8 array.

    Validates the magic number, the element type, the number of dimensions, the image size
    and the file length; a bad file raises DataError naming it and suggesting ``hint``.
    """
    def bad(what: str) -> DataError:
        return DataError(f"{path} is not a valid IDX file ({what}): run `{hint}` to fetch it again")

    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    header = 4 + 4 * ndim
    if raw.size < 4:
        raise bad(f"{raw.size} bytes, too short for a header")
    if raw[0] != 0 or raw[1] != 0:
        raise bad(f"bad magic number {bytes(raw[:4]).hex()}")
    if raw[2] != _IDX_UBYTE:
        raise bad(f"element type 0x{raw[2]:02x}, expected 0x08 (unsigned byte)")
    if raw[3] != ndim:
        raise bad(f"{raw[3]} dimensions, expected {ndim}")
    if raw.size < header:
        raise bad("truncated header")
    dims = tuple(int(d) for d in raw[4:header].view(">u4"))
    if ndim == 3 and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise bad(f"images are {dims[1]}x{dims[2]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    expected = header + math.prod(dims)
    if raw.size != expected:
        state = "truncated" if raw.size < expected else "trailing bytes"
        raise bad(f"{state}: {raw.size} bytes, header says {expected}")
    return raw[header:].reshape(dims)


def _path(info: DatasetInfo, spec: IdxFile, data_dir: str | Path | None) -> Path:
    path = dataset_dir(info, data_dir) / spec.name
    if not path.is_file():
        raise _missing(info, path)
    return path


def load_file_pair(dataset: str, split_file: str, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of a data set's ``train`` or ``test`` files,
    checked against each other; read once per process."""
    return _load_file_pair(dataset, split_file, str(data_dir) if data_dir else None)


@lru_cache(maxsize=4)
def _load_file_pair(dataset: str, split_file: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    info = get_dataset(dataset)
    img_spec, lbl_spec = info.split_files(split_file)
    hint = "mnistctl download --force" + ("" if dataset == "mnist" else f" --dataset {dataset}")
    images = read_idx(_path(info, img_spec, data_dir), 3, hint)
    labels = read_idx(_path(info, lbl_spec, data_dir), 1, hint).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{img_spec.name} has {len(images)} images but {lbl_spec.name} has "
                        f"{len(labels)} labels: run `{hint}`")
    if len(labels) and int(labels.max()) >= len(info.classes):
        raise DataError(f"{lbl_spec.name} has label {int(labels.max())}, but {info.name} has "
                        f"{len(info.classes)} classes: run `{hint}`")
    return images, labels
