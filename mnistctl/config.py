"""The settings of a run as typed, validated dataclasses: where every default is written.

Torch-free, so the command line reads its help texts' defaults from here without importing
torch. Validation errors are ``ConfigError.invalid(setting, problem)``: the message names the
setting in the domain's words, the CLI re-words it with its option names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from mnistctl.datasets import MNIST, get_dataset
from mnistctl.errors import ConfigError
from mnistctl.recipes import OPTIMIZERS, SCHEDULES

# bounds for values that size the network: a checkpoint or option beyond them is refused before
# anything is allocated (nf=512 is already a 40M-parameter model for 28x28 images)
MAX_NF = 512
MAX_CLASSES = 1000
INFERENCE_BATCH = 1000  # images per forward pass when nothing is learned (evaluation, prediction)


def _check(checks: list[tuple[bool, str, str]]) -> None:
    for ok, setting, problem in checks:
        if not ok:
            raise ConfigError.invalid(setting, problem)


def _from_dict(cls, data: Any, what: str):
    """``cls(**data)``, with unknown keys or wrong types as a ConfigError naming ``what``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} is not a mapping of settings")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{what} has settings this mnistctl does not know: {', '.join(map(str, unknown))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{what} is not valid ({exc})") from None


@dataclass(frozen=True)
class ModelConfig:
    """The network: widths, classes, and the input normalisation it applies to 0-255 pixels."""

    nf: int = 16
    num_classes: int = 10
    batchnorm: bool = True
    dropout: float = 0.0
    mean: float = MNIST.mean  # the training images' mean and std, in [0, 1] units
    std: float = MNIST.std
    # the logits are divided by it: 1 as trained; `export --calibrate` fits it on the validation
    # split so that the confidences match the accuracy (a label-smoothed model's top out near 90%)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        _check([
            (type(self.nf) is int and 1 <= self.nf <= MAX_NF, "nf", f"must be a whole number from 1 to {MAX_NF}, "
                                                                  f"got {self.nf!r}"),
            (type(self.num_classes) is int and 2 <= self.num_classes <= MAX_CLASSES, "num_classes",
             f"must be a whole number from 2 to {MAX_CLASSES}, got {self.num_classes!r}"),
            (isinstance(self.batchnorm, bool), "batchnorm", f"must be true or false, got {self.batchnorm!r}"),
            (_number(self.dropout) and 0.0 <= self.dropout < 1.0, "dropout",
             f"must be in [0, 1), got {self.dropout!r}"),
            (_number(self.mean) and 0.0 <= self.mean <= 1.0, "mean", f"must be in [0, 1], got {self.mean!r}"),
            (_number(self.std) and 0.0 < self.std <= 1.0, "std", f"must be in (0, 1], got {self.std!r}"),
            (_number(self.temperature) and 0.01 <= self.temperature <= 100.0, "temperature",
             f"must be in [0.01, 100], got {self.temperature!r}"),
        ])

    @property
    def dense(self) -> int:
        return 4 * self.nf

    @property
    def hidden(self) -> int:
        return 2 * self.nf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, what: str = "the model configuration") -> ModelConfig:
        return _from_dict(cls, data, what)

    @classmethod
    def for_dataset(cls, dataset: str, **settings: Any) -> ModelConfig:
        """A config whose classes and normalisation are the data set's."""
        info = get_dataset(dataset)
        return cls(num_classes=len(info.classes), mean=info.mean, std=info.std, **settings)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how the training file is split into train and validation parts."""

    dataset: str = "mnist"
    val_fraction: float = 5000 / 60000  # 55,000 / 5,000 for MNIST
    split_seed: int = 0  # fixed, so every command agrees on which images are validation

    def __post_init__(self) -> None:
        get_dataset(self.dataset)  # an unknown name is a ConfigError listing the known ones
        _check([(_number(self.val_fraction) and 0.0 < self.val_fraction < 1.0, "val_fraction",
                 f"must be between 0 and 1 (exclusive), got {self.val_fraction!r}")])

    @property
    def info(self):
        return get_dataset(self.dataset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, what: str = "the data configuration") -> DataConfig:
        return _from_dict(cls, data, what)


@dataclass(frozen=True)
class TrainConfig:
    """How the network is trained. The defaults are the ``original`` recipe."""

    epochs: int = 10
    epoch_fraction: float = 1.0  # each epoch trains on this share of the training images (1: all)
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "adam"
    schedule: str = "onecycle"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step (0: off)
    seed: int = 1
    augment: bool = True
    patience: int = 0  # stop after this many epochs without a better validation accuracy (0: never)
    eval_batch_size: int = INFERENCE_BATCH

    def __post_init__(self) -> None:
        _check([
            (type(self.epochs) is int and self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs!r}"),
            (_number(self.epoch_fraction) and 0 < self.epoch_fraction <= 1, "epoch_fraction",
             f"must be in (0, 1], such as 0.5 for half of the training images per epoch, got {self.epoch_fraction!r}"),
            (_number(self.lr) and self.lr > 0, "lr", f"must be a positive number, got {self.lr!r}"),
            (type(self.batch_size) is int and self.batch_size >= 1, "batch_size",
             f"must be at least 1, got {self.batch_size!r}"),
            (self.optimizer in OPTIMIZERS, "optimizer",
             f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             f"must be >= 0, got {self.weight_decay!r}"),
            (_number(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
             f"must be in [0, 1), got {self.label_smoothing!r}"),
            (_number(self.ema) and 0 <= self.ema < 1, "ema",
             f"must be 0 (off) or a decay in (0, 1) such as 0.999, got {self.ema!r}"),
            (type(self.seed) is int, "seed", f"must be a whole number, got {self.seed!r}"),
            (isinstance(self.augment, bool), "augment", f"must be true or false, got {self.augment!r}"),
            (type(self.patience) is int and self.patience >= 0, "patience",
             f"must be 0 (off) or a number of epochs, got {self.patience!r}"),
            (type(self.eval_batch_size) is int and self.eval_batch_size >= 1, "eval_batch_size",
             f"must be at least 1, got {self.eval_batch_size!r}"),
        ])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, what: str = "the training configuration") -> TrainConfig:
        return _from_dict(cls, data, what)


def default(cls, name: str) -> Any:
    """The default of one setting, for help texts: ``default(TrainConfig, "lr")`` is 0.01."""
    for f in fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)
