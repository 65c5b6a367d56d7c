"""The settings of a run as typed, validated dataclasses: where every setting and default is written.

Each field is declared once, with :func:`setting`: its default, help text, rule (or choices) and
how a user sets it. ``mnistctl train``'s options, the option names in error messages,
``config.json``, ``--print-config`` and the CLI reference all derive from these declarations
(:data:`SETTINGS`, :func:`user_settings`); adding a setting is one field here.

Torch-free, so the command line builds its options and help from here without importing torch.
Validation errors are ``ConfigError.invalid(setting, problem)``: the message names the setting in
the domain's words, the CLI re-words it with its option names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, TypeVar

from mnistctl.datasets import MNIST, REGISTRY, DatasetInfo, get_dataset
from mnistctl.errors import ConfigError, one_of
from mnistctl.recipes import OPTIMIZERS, SCHEDULES

# bounds for values that size the network: a checkpoint or option beyond them is refused before
# anything is allocated (nf=512 is already a 40M-parameter model for 28x28 images)
MAX_NF = 512
MAX_CLASSES = 1000
INFERENCE_BATCH = 1000  # images per forward pass when nothing is learned (evaluation, prediction)

RECIPE, MODEL, DATA = "Recipe", "Model", "Data"  # the help panels of `train`'s options


@dataclass(frozen=True)
class Setting:
    """How one config field is checked and set by a user.

    ``rule`` is the check and ``problem`` says it in words ("must be at least 1"); ``choices``
    instead lists the allowed names. ``option`` is False for settings a run derives (the data set's
    classes and normalisation, the split seed, a calibrated temperature): they have no option and a
    config file's values for them are ignored. ``flag`` defaults to ``--name-with-dashes``
    (``--name/--no-name`` for true/false settings)."""

    help: str
    problem: str = ""
    rule: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] = ()
    panel: str = RECIPE
    option: bool = True
    flag: str | None = None
    short: str | None = None
    show_default: str | None = None
    metavar: str | None = None  # how help shows the value (default: its type)

    def check(self, name: str, value: Any) -> None:
        if self.choices:
            one_of(name, value, self.choices)
        elif self.rule is not None and not self.rule(value):
            raise ConfigError.invalid(name, f"{self.problem}, got {value!r}")

    def flag_for(self, name: str, kind: type) -> str:
        dashed = "--" + name.replace("_", "-")
        return self.flag or (f"{dashed}/--no-{dashed[2:]}" if kind is bool else dashed)

    def option_name(self, name: str) -> str:
        """The option a message names: ``--augment`` for ``--augment/--no-augment``."""
        return self.flag_for(name, object).split("/")[0]


def setting(default: Any, help: str, problem: str = "", rule: Callable[[Any], bool] | None = None, **how: Any) -> Any:
    """A dataclass field carrying its :class:`Setting` as metadata."""
    return field(default=default, metadata={"setting": Setting(help, problem, rule, **how)})


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _whole(low: int, high: float = math.inf) -> Callable[[Any], bool]:
    return lambda x: type(x) is int and low <= x <= high


def _within(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[Any], bool]:
    return lambda x: (is_number(x) and (low < x if low_open else low <= x) and (x < high if high_open else x <= high))


def _flag(x: Any) -> bool:
    return isinstance(x, bool)


TRUE_OR_FALSE = "must be true or false"

C = TypeVar("C")


class _Settings:
    """What the three configs share: validation from the fields' declarations, and dicts."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            f.metadata["setting"].check(f.name, getattr(self, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: Any, what: str | None = None) -> C:
        """``cls(**data)``, with unknown keys or wrong types as a ConfigError naming ``what``."""
        what = what or f"the {cls._what} configuration"  # type: ignore[attr-defined]
        if not isinstance(data, dict):
            raise ConfigError(f"{what} is not a mapping of settings")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ConfigError(f"{what} has settings this mnistctl does not know: {', '.join(map(str, unknown))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{what} is not valid ({exc})") from None


@dataclass(frozen=True)
class ModelConfig(_Settings):
    """The network: widths, classes, and the input normalisation it applies to 0-255 pixels."""

    _what = "model"

    nf: int = setting(16, "Filters of the first convolution (then 2nf, 4nf).",
                      f"must be a whole number from 1 to {MAX_NF}", _whole(1, MAX_NF), panel=MODEL)
    num_classes: int = setting(10, "Classes the network tells apart (the data set's).",
                               f"must be a whole number from 2 to {MAX_CLASSES}", _whole(2, MAX_CLASSES), option=False)
    batchnorm: bool = setting(True, "Batch normalisation after each convolution.", TRUE_OR_FALSE, _flag, panel=MODEL)
    dropout: float = setting(0.0, "Dropout after the first dense layer.", "must be in [0, 1)",
                             _within(0, 1, high_open=True), panel=MODEL)
    # the training images' mean and std, in [0, 1] units
    mean: float = setting(MNIST.mean, "Mean of the training images' pixels (0-1).", "must be in [0, 1]",
                          _within(0, 1), option=False)
    std: float = setting(MNIST.std, "Standard deviation of the training images' pixels (0-1).", "must be in (0, 1]",
                         _within(0, 1, low_open=True), option=False)
    # the logits are divided by it: 1 as trained; `export --calibrate` fits it on the validation
    # split so that the confidences match the accuracy (a label-smoothed model's top out near 90%)
    temperature: float = setting(1.0, "Divides the logits (1 as trained; export --calibrate fits it).",
                                 "must be in [0.01, 100]", _within(0.01, 100), option=False)

    @property
    def dense(self) -> int:
        return 4 * self.nf

    @property
    def hidden(self) -> int:
        return 2 * self.nf

    @classmethod
    def for_dataset(cls, dataset: str, **settings: Any) -> ModelConfig:
        """A config whose classes and normalisation are the data set's."""
        info = get_dataset(dataset)
        return cls(num_classes=len(info.classes), mean=info.mean, std=info.std, **settings)


@dataclass(frozen=True)
class DataConfig(_Settings):
    """Which data, and how the training file is split into train and validation parts."""

    _what = "data"

    dataset: str = setting("mnist", "Which MNIST-format data set.", choices=tuple(REGISTRY), panel=DATA, short="-d")
    val_fraction: float = setting(5000 / 60000, "Fraction of the training file held out for validation.",
                                  "must be between 0 and 1 (exclusive)", _within(0, 1, True, True), panel=DATA,
                                  flag="--val-split", show_default=f"{5000 / 60000:.4f}: 5,000 of MNIST's 60,000")
    extra_images: str = setting(
        "", "Also train on these labelled pictures (a folder of one sub-folder per class, or a CSV file of "
            "path,label rows), prepared as predict prepares a picture: handwriting the data set lacks.",
        "must be a path to a folder or a CSV file (or empty: none)", lambda x: isinstance(x, str), panel=DATA,
        show_default="none", metavar="<folder|csv>")
    extra_share: float = setting(
        0.0, "The share of the training images that --extra-images make up, each picture repeated or left out "
             "at random to reach it, one draw for the whole run (0: each picture once).",
        "must be in [0, 1), such as 0.1 for one training image in ten", _within(0, 1, high_open=True), panel=DATA)
    # fixed, so every command agrees on which images are validation
    split_seed: int = setting(0, "Seed of the train/validation split.", "must be a whole number", _whole(-2**63),
                              option=False)

    def __post_init__(self) -> None:
        get_dataset(self.dataset)  # an unknown name is a ConfigError listing the known ones
        super().__post_init__()
        if self.extra_share and not self.extra_images:
            raise ConfigError.invalid("extra_share", f"is {self.extra_share:g}, a share of extra images, but none "
                                                     "are given")
        if self.extra_images:  # absolute, so a run resumed from another directory finds the pictures
            object.__setattr__(self, "extra_images", os.path.abspath(self.extra_images))

    @property
    def info(self) -> DatasetInfo:
        return get_dataset(self.dataset)


@dataclass(frozen=True)
class TrainConfig(_Settings):
    """How the network is trained. The defaults are the ``original`` recipe."""

    _what = "training"

    epochs: int = setting(10, "Passes over the training images.", "must be at least 1", _whole(1))
    # each epoch trains on this share of the training images (1: all)
    epoch_fraction: float = setting(
        1.0, "Share of the training images each epoch trains on, a different random part each time (such as 0.5: "
             "half an epoch's steps and time; 1: all).",
        "must be in (0, 1], such as 0.5 for half of the training images per epoch", _within(0, 1, low_open=True))
    lr: float = setting(0.01, "Peak learning rate.", "must be a positive number", lambda x: is_number(x) and x > 0)
    batch_size: int = setting(64, "Images per training step (per process under torchrun).", "must be at least 1",
                              _whole(1))
    optimizer: str = setting("adam", "Optimizer.", choices=OPTIMIZERS)
    schedule: str = setting("onecycle", "Learning-rate schedule over the whole run.", choices=SCHEDULES)
    weight_decay: float = setting(0.0, "Weight decay.", "must be >= 0", lambda x: is_number(x) and x >= 0)
    label_smoothing: float = setting(0.0, "Label smoothing of the cross-entropy.", "must be in [0, 1)",
                                     _within(0, 1, high_open=True))
    # decay of an exponential moving average of the weights, per step (0: off)
    ema: float = setting(0.0, "Keep an exponential moving average of the weights with this decay per step (such as "
                              "0.999) and validate and save it instead of the raw weights (0: off).",
                         "must be 0 (off) or a decay in (0, 1) such as 0.999", _within(0, 1, high_open=True))
    seed: int = setting(1, "Seed for initialisation, shuffling and augmentation.", "must be a whole number",
                        _whole(-2**63))
    augment: bool = setting(True, "Random small rotations, shifts and scaling, batched on tensors.", TRUE_OR_FALSE,
                            _flag)
    writer_style: float = setting(
        0.0, "With --augment, also vary the digits as writers differ, this strongly: slant, narrower or wider "
             "hands, an elastic wobble, a bolder or finer pen (0: off; 1: full).",
        "must be between 0 (off) and 2", _within(0, 2))
    low_res: float = setting(
        0.0, "With --augment, show this share of each batch as a small, low-resolution picture shows the digit: "
             "shrunk to 7-14 px and enlarged back (0: off).",
        "must be between 0 (off) and 1 (every image)", _within(0, 1))
    scans: float = setting(
        0.0, "With --augment, show this share of each batch as predict reads an 8x8 scan of the digit (its ink "
             "counted in 4x4 blocks of a 32x32 bitmap, as old scanners and UCI's handwritten digits have it), "
             "after the other changes (0: off).",
        "must be between 0 (off) and 1 (every image)", _within(0, 1))
    scan_pens: float = setting(
        0.0, "With --scans, write this share of the scans with a bolder pen first (a third of them 2 px, the rest "
             "1 px bolder on each side: at 8x8 the pen decides whether loops and holes show; 0: off).",
        "must be between 0 (off) and 1 (every scan)", _within(0, 1))
    patience: int = setting(0, "Stop after this many epochs without a better validation accuracy (0: never).",
                            "must be 0 (off) or a number of epochs", _whole(0))
    eval_batch_size: int = setting(INFERENCE_BATCH, "Images per forward pass when validating.", "must be at least 1",
                                   _whole(1))


CONFIGS: tuple[type[_Settings], ...] = (TrainConfig, ModelConfig, DataConfig)
# every setting by name: (the config it belongs to, its field, its declaration)
SETTINGS: dict[str, tuple[type[_Settings], Field, Setting]] = {
    f.name: (cls, f, f.metadata["setting"]) for cls in CONFIGS for f in fields(cls)}  # type: ignore[arg-type]


def user_settings(cls: type[_Settings] | None = None) -> tuple[str, ...]:
    """The names a user may set (as options, in a config file, in ``mnistctl.train``), of one
    config or of all three."""
    return tuple(name for name, (owner, _, s) in SETTINGS.items() if s.option and cls in (None, owner))


def derived_settings() -> tuple[str, ...]:
    """The settings a run derives itself; a config file's values for them are ignored."""
    return tuple(name for name, (_, _, s) in SETTINGS.items() if not s.option)


def default(cls: type, name: str) -> Any:
    """The default of one setting, for help texts: ``default(TrainConfig, "lr")`` is 0.01."""
    for f in fields(cls):
        if f.name == name:
            return f.default if f.default is not MISSING else None
    raise KeyError(name)
