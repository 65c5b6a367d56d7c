"""The registry of MNIST-format data sets, declared as data, and where their files live.

Every data set here has the same four IDX files, 28x28 uint8 images and 10 classes. Checksums
are MD5s: ``md5`` of the decompressed IDX bytes where it is published (so a mirror may serve
``.gz`` or raw files), otherwise ``gz_md5`` of the published ``.gz`` file.

This module imports neither torch nor numpy: the CLI reads it to build ``--help``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mnistctl.errors import ConfigError

DATA_DIR_ENV = "MNISTCTL_DATA_DIR"
MIRROR_ENV = "MNISTCTL_MIRROR"


@dataclass(frozen=True)
class IdxFile:
    name: str  # the file name as stored on disk, decompressed
    md5: str | None = None  # MD5 of the decompressed IDX bytes
    gz_md5: str | None = None  # MD5 of the published .gz file
    size: int | None = None  # bytes of the decompressed IDX file: nothing longer is stored


# the decompressed sizes of the four files every data set here has: 60,000 training and 10,000 test
# images of 28x28 (a 16-byte header) and their labels (an 8-byte header)
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = 16 + 60_000 * 784, 8 + 60_000, 16 + 10_000 * 784, 8 + 10_000


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    mirrors: tuple[str, ...]
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    classes: tuple[str, ...]
    mean: float  # normalisation constants of the training images, in [0, 1] units
    std: float

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    def split_files(self, split: str) -> tuple[IdxFile, IdxFile]:
        """The (images, labels) files behind a split: train and val share the train files."""
        if split in ("train", "val"):
            return self.train_images, self.train_labels
        if split == "test":
            return self.test_images, self.test_labels
        raise ConfigError(f"unknown split {split!r}: use train, val or test")


MNIST = DatasetInfo(
    name="mnist",
    title="MNIST handwritten digits",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",  # answers 404 nowadays; kept last
    ),
    train_images=IdxFile("train-images-idx3-ubyte", md5="6bbc9ace898e44ae57da46a324031adb", size=TRAIN_IMAGES),
    train_labels=IdxFile("train-labels-idx1-ubyte", md5="a25bea736e30d166cdddb491f175f624", size=TRAIN_LABELS),
    test_images=IdxFile("t10k-images-idx3-ubyte", md5="2646ac647ad5339dbf082846283269ea", size=TEST_IMAGES),
    test_labels=IdxFile("t10k-labels-idx1-ubyte", md5="27ae3e4e09519cfbb04c329615203637", size=TEST_LABELS),
    classes=tuple(str(d) for d in range(10)),
    mean=0.1307,
    std=0.3081,
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando article images)",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    train_images=IdxFile("train-images-idx3-ubyte", gz_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d", size=TRAIN_IMAGES),
    train_labels=IdxFile("train-labels-idx1-ubyte", gz_md5="25c81989df183df01b3e8a0aad5dffbe", size=TRAIN_LABELS),
    test_images=IdxFile("t10k-images-idx3-ubyte", gz_md5="bef4ecab320f06d8554ea6380940ec79", size=TEST_IMAGES),
    test_labels=IdxFile("t10k-labels-idx1-ubyte", gz_md5="bb300cfdad3c16e7a12a480ee83cd310", size=TEST_LABELS),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mean=0.2860,
    std=0.3530,
)

KMNIST = DatasetInfo(
    name="kmnist",
    title="Kuzushiji-MNIST (cursive Japanese)",
    mirrors=(
        "https://storage.googleapis.com/kuzushiji-mnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
    train_images=IdxFile("train-images-idx3-ubyte", gz_md5="bdb82020997e1d708af4cf47b453dcf7", size=TRAIN_IMAGES),
    train_labels=IdxFile("train-labels-idx1-ubyte", gz_md5="e144d726b3acfaa3e44228e80efcd344", size=TRAIN_LABELS),
    test_images=IdxFile("t10k-images-idx3-ubyte", gz_md5="5c965bf0a639b31b8f53240b1b52f4d7", size=TEST_IMAGES),
    test_labels=IdxFile("t10k-labels-idx1-ubyte", gz_md5="7320c461ea6c1c855c0b718fb2a4b134", size=TEST_LABELS),
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mean=0.1918,
    std=0.3483,
)

REGISTRY: dict[str, DatasetInfo] = {d.name: d for d in (MNIST, FASHION_MNIST, KMNIST)}


def get_dataset(name: str) -> DatasetInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ConfigError(f"unknown dataset {name!r}: known datasets are {known}") from None


def default_data_dir() -> Path:
    """The per-user cache directory, following the platform's convention."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "mnistctl" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "mnistctl"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "mnistctl"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``--data-dir`` if given, else ``$MNISTCTL_DATA_DIR``, else the cache directory."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir()
    return Path(chosen).expanduser()


def dataset_dir(info: DatasetInfo, data_dir: str | os.PathLike[str] | None = None) -> Path:
    return resolve_data_dir(data_dir) / info.name


def resolve_mirrors(info: DatasetInfo, user_mirrors: list[str] | None = None) -> list[str]:
    """Mirrors in the order they are tried: ``--mirror`` values, ``$MNISTCTL_MIRROR``
    (whitespace-separated), then the data set's own mirrors. Duplicates are dropped."""
    env = os.environ.get(MIRROR_ENV, "").split()
    ordered = [*(user_mirrors or []), *env, *info.mirrors]
    return list(dict.fromkeys(m for m in ordered if m))
