"""The data layer: IDX parsing, splits held in memory as uint8 tensors, batches by indexing.

No per-item PIL work anywhere: a split is one ``[N, 28, 28]`` uint8 tensor, a batch is a
slice or an index into it, and augmentation is done on whole batches (the network normalises
its 0-255 input itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnistctl.config import DataConfig
from mnistctl.datasets import DatasetInfo, IdxFile, dataset_dir, get_dataset
from mnistctl.errors import ConfigError, DataError
from mnistctl.recipes import SPLITS

IMAGE_SIZE = 28
_IDX_UBYTE = 0x08


def _missing(info: DatasetInfo, path: Path) -> DataError:
    extra = "" if info.name == "mnist" else f" --dataset {info.name}"
    return DataError(f"{info.title} is not downloaded ({path} is missing): run "
                     f"`mnistctl download{extra}` first (or set --data-dir / MNISTCTL_DATA_DIR)")


def read_idx(path: Path, ndim: int, hint: str = "mnistctl download --force") -> torch.Tensor:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions into a uint8 tensor.

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
    return torch.from_numpy(raw[header:].reshape(dims))


def _path(info: DatasetInfo, spec: IdxFile, data_dir: str | Path | None) -> Path:
    path = dataset_dir(info, data_dir) / spec.name
    if not path.is_file():
        raise _missing(info, path)
    return path


@lru_cache(maxsize=4)
def _load_file_pair(dataset: str, split_file: str, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    info = get_dataset(dataset)
    img_spec, lbl_spec = info.split_files(split_file)
    hint = "mnistctl download --force" + ("" if dataset == "mnist" else f" --dataset {dataset}")
    images = read_idx(_path(info, img_spec, data_dir), 3, hint)
    labels = read_idx(_path(info, lbl_spec, data_dir), 1, hint).long()
    if len(images) != len(labels):
        raise DataError(f"{img_spec.name} has {len(images)} images but {lbl_spec.name} has "
                        f"{len(labels)} labels: run `{hint}`")
    if len(labels) and int(labels.max()) >= len(info.classes):
        raise DataError(f"{lbl_spec.name} has label {int(labels.max())}, but {info.name} has "
                        f"{len(info.classes)} classes: run `{hint}`")
    return images, labels


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into (train, val) index tensors."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ConfigError.invalid("val_fraction", f"{val_fraction} leaves no training images out of {n}",
                                  "the validation fraction")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def load_split(cfg: DataConfig, split: str, data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of ``split``: train, val or test."""
    if split not in SPLITS:
        raise ConfigError.invalid("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
    file_split = "test" if split == "test" else "train"
    images, labels = _load_file_pair(cfg.dataset, file_split, str(data_dir) if data_dir else None)
    if split == "test":
        return images, labels
    train_idx, val_idx = split_indices(len(labels), cfg.val_fraction, cfg.split_seed)
    idx = train_idx if split == "train" else val_idx
    return images[idx], labels[idx]


@dataclass(frozen=True)
class AugmentConfig:
    """Random small affine changes, drawn per image and applied to a whole batch at once."""

    degrees: float = 10.0
    translate: float = 0.1  # fraction of the image size
    scale: tuple[float, float] = (0.9, 1.1)


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a random rotation, shift and scaling to each image of a float batch [N, 1, H, W].

    One ``affine_grid`` + ``grid_sample`` for the whole batch; the background (the minimum of
    the batch, the paper colour) fills what moves in from outside. Works on any value range.
    """
    n = x.shape[0]
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:  # drawn where the batch lives: no host copy
        return torch.rand(n, generator=generator, device=dev) * (hi - lo) + lo

    angle = uniform(-cfg.degrees, cfg.degrees) * (math.pi / 180.0)
    scale = uniform(*cfg.scale)
    tx = uniform(-cfg.translate, cfg.translate) * 2.0
    ty = uniform(-cfg.translate, cfg.translate) * 2.0
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    background = x.amin()
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + background


def sample_digits(cfg: DataConfig, split: str, count: int, seed: int,
                  data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random (images, labels) of ``split``, drawn without replacement by ``seed``."""
    images, labels = load_split(cfg, split, data_dir)
    if count < 1:
        raise ConfigError.invalid("count", f"must be at least 1, got {count}", "the number of digits")
    count = min(count, len(labels))
    idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:count]
    return images[idx], labels[idx]


@dataclass
class SampleGrid:
    images: torch.Tensor  # uint8 [N, 28, 28]
    names: list[str]  # class name of each
    path: Path  # the PNG written


def write_samples(cfg: DataConfig, split: str, count: int, seed: int, output: str | Path,
                  data_dir: str | Path | None = None) -> SampleGrid:
    """Draw ``count`` random digits of ``split`` and save them as a labelled grid (PNG)."""
    from mnistctl.plotting import digit_grid_figure, save_figure

    images, labels = sample_digits(cfg, split, count, seed, data_dir)
    names = [cfg.info.classes[int(y)] for y in labels]
    title = f"{cfg.info.title}: {len(names)} random {split} images (seed {seed})"
    path = save_figure(digit_grid_figure(images.numpy(), names, suptitle=title), output)
    return SampleGrid(images, names, path)
