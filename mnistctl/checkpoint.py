"""Typed, self-describing checkpoints: one writer (``Checkpoint.save``), one reader (``load``).

A checkpoint holds everything needed to rebuild the model and carry on: the model, data and
training configs, the weights, epoch, history, best epoch, dataset name and class names, the
mnistctl version and a format version; a resumable one also holds the optimizer and scheduler
state (and, when interrupted inside an epoch, the step and the epoch's running sums).

Files are written atomically and read with ``torch.load(weights_only=True)``: nothing in them
is code. Before anything is built from a file, its configuration is checked against documented
bounds and every tensor's shape against what the configuration implies, so a crafted file
cannot make mnistctl allocate more than the network its weights describe.

Format versions: 2 (this one: normalisation is part of the model config) and 1 (mnistctl 0.1.0:
normalisation stored beside it), which is upgraded on load.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mnistctl import __version__
from mnistctl.config import DataConfig, ModelConfig, TrainConfig
from mnistctl.errors import CheckpointError, MnistctlError
from mnistctl.fsutil import atomic_path
from mnistctl.runfiles import Best, EpochRecord, parse_history

if TYPE_CHECKING:
    from mnistctl.model import Net

FORMAT = "mnistctl-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PRETRAINED_NAME = "mnist-best.pt"
PRETRAINED_LABEL = f"built-in model ({PRETRAINED_NAME})"


@dataclass
class TrainingState:
    """What only a resumable checkpoint holds: enough to continue exactly where it stopped."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    step_in_epoch: int = 0  # > 0 only when interrupted inside an epoch
    partial_epoch: dict[str, float] | None = None  # that epoch's running sums so far
    processes: int = 1  # the run's processes when it started: a step is batch_size x processes images
    # with an average of the weights (``TrainConfig.ema``) the checkpoint's weights are the average;
    # the weights being trained and the average's update count are kept here
    raw_weights: dict[str, torch.Tensor] | None = None
    ema_updates: int = 0


@dataclass
class Checkpoint:
    model_config: ModelConfig
    data_config: DataConfig
    train_config: TrainConfig
    weights: dict[str, torch.Tensor]
    classes: list[str]
    dataset: str
    epoch: int = 0  # epochs completed
    history: list[EpochRecord] = field(default_factory=list)
    best: Best = field(default_factory=Best)
    training: TrainingState | None = None
    test_accuracy: float | None = None  # recorded by export
    mnistctl_version: str = __version__
    source: str = "checkpoint"  # where it was loaded from, for messages; not saved

    @property
    def resumable(self) -> bool:
        return self.training is not None

    def build_model(self) -> Net:
        """The network with these weights, in eval mode, on the CPU."""
        from mnistctl.model import Net

        model = Net(self.model_config)
        model.load_state_dict(self.weights)  # shapes were checked when the checkpoint was made
        return model.eval()

    def inference_only(self, test_accuracy: float | None = None) -> Checkpoint:
        """The same checkpoint without optimizer and scheduler state (a third of the size): it can
        be evaluated, predicted with and exported, not resumed."""
        acc = test_accuracy if test_accuracy is not None else self.test_accuracy
        return replace(self, training=None, test_accuracy=acc)

    def to_payload(self) -> dict[str, Any]:
        """The plain dict written to disk (tensors, numbers, strings, lists and dicts only)."""
        t = self.training
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mnistctl_version": __version__,
            "model_config": self.model_config.to_dict(),
            "data_config": self.data_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "dataset": self.dataset,
            "classes": list(self.classes),
            "weights": _on_cpu(self.weights),
            "epoch": self.epoch,
            "history": [r.to_dict() for r in self.history],
            "best": self.best.to_dict(),
            "test_accuracy": self.test_accuracy,
            "training": None if t is None else {"optimizer": t.optimizer, "scheduler": t.scheduler,
                                                "step_in_epoch": t.step_in_epoch,
                                                "partial_epoch": t.partial_epoch, "processes": t.processes,
                                                "raw_weights": _on_cpu(t.raw_weights), "ema_updates": t.ema_updates},
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash or Ctrl-C leaves the old file or the new one, never half."""
        path = Path(path)
        buffer = io.BytesIO()  # serialised first: a full disk is then a plain OSError (WriteError), not torch's
        torch.save(self.to_payload(), buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())
        return path

    @classmethod
    def from_payload(cls, payload: Any, source: str = "checkpoint") -> Checkpoint:
        """Check and convert what ``torch.load`` read; every problem is a CheckpointError."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{source} is not an mnistctl checkpoint (no '{FORMAT}' marker); "
                                  "use a best.pt or last.pt written by `mnistctl train`")
        version = payload.get("format_version")
        if version not in READABLE_VERSIONS:
            raise CheckpointError(f"{source} has checkpoint format version {version}, but this mnistctl "
                                  f"({__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))}: "
                                  "upgrade mnistctl or retrain")
        if version == 1:
            payload = _upgrade_v1(payload)
        required = ("model_config", "data_config", "train_config", "weights", "classes", "dataset", "history")
        missing = [k for k in required if k not in payload]
        if missing:
            raise CheckpointError(f"{source} is missing {', '.join(missing)}: it is incomplete or damaged")
        try:
            model_cfg = ModelConfig.from_dict(payload["model_config"], "its model configuration")
            data_cfg = DataConfig.from_dict(payload["data_config"], "its data configuration")
            train_cfg = TrainConfig.from_dict(payload["train_config"], "its training configuration")
            ckpt = cls(
                model_config=model_cfg, data_config=data_cfg, train_config=train_cfg,
                weights=_checked_weights(payload["weights"], model_cfg),
                classes=_checked_classes(payload["classes"], model_cfg.num_classes),
                dataset=_checked_str(payload["dataset"], "dataset"),
                epoch=_checked_int(payload.get("epoch", 0), "epoch"),
                history=parse_history(payload["history"]),
                best=Best.from_dict(payload.get("best")),
                training=_checked_training(payload.get("training"), model_cfg),
                test_accuracy=_checked_fraction(payload.get("test_accuracy")),
                mnistctl_version=str(payload.get("mnistctl_version", "unknown")),
                source=source,
            )
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        except MnistctlError as exc:  # ConfigError and history errors, in domain words
            raise CheckpointError(f"{source} does not hold a valid configuration: {exc}") from None
        return ckpt


def _on_cpu(weights: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if weights is None else {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}


def _checked_weights(weights: Any, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from mnistctl.model import expected_shapes

    if not isinstance(weights, dict):
        raise CheckpointError("its weights are not a mapping of tensors")
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        detail = (f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(map(str, extra[:3]))}")
        raise CheckpointError(f"weights do not fit the architecture its config describes (nf={cfg.nf}): {detail}")
    for key, shape in expected.items():
        t = weights[key]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"weight {key} is not a tensor")
        if t.layout != torch.strided or t.device.type == "meta":  # sparse, or shapes without values
            raise CheckpointError(f"weight {key} is not a dense tensor with values "
                                  f"({'on the meta device' if t.device.type == 'meta' else str(t.layout)})")
        if tuple(t.shape) != shape:
            raise CheckpointError(f"weights do not fit the architecture its config describes (nf={cfg.nf}): "
                                  f"{key} has shape {list(t.shape)}, expected {list(shape)}")
        if not (t.is_floating_point() or key.endswith("num_batches_tracked")):
            raise CheckpointError(f"weight {key} is not a floating-point tensor")
    return dict(weights)


def _checked_classes(classes: Any, num_classes: int) -> list[str]:
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError("its class names are not a list of strings")
    if len(classes) != num_classes:
        raise CheckpointError(f"it names {len(classes)} classes but its model has {num_classes} outputs")
    return list(classes)


def _checked_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise CheckpointError(f"its {what} is not a string")
    return value


def _checked_int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise CheckpointError(f"its {what} is not a whole number >= 0")
    return value


def _checked_fraction(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise CheckpointError("its recorded test accuracy is not a fraction")
    return float(value)


def _checked_training(value: Any, cfg: ModelConfig) -> TrainingState | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("optimizer"), dict) \
            or not isinstance(value.get("scheduler"), dict):
        raise CheckpointError("its training state (optimizer, scheduler) is damaged")
    partial = value.get("partial_epoch")
    if partial is not None and not (isinstance(partial, dict) and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in partial.values())):
        raise CheckpointError("its interrupted epoch's sums are damaged")
    processes = _checked_int(value.get("processes", 1), "number of processes")
    if processes < 1:
        raise CheckpointError("its number of processes is not a whole number >= 1")
    raw = value.get("raw_weights")
    return TrainingState(value["optimizer"], value["scheduler"],
                         _checked_int(value.get("step_in_epoch", 0), "step in epoch"), partial, processes,
                         None if raw is None else _checked_weights(raw, cfg),
                         _checked_int(value.get("ema_updates", 0), "count of weight-average updates"))


def _upgrade_v1(p: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (mnistctl 0.1.0) -> the format 2 layout: normalisation moves into the model config,
    ``model`` becomes ``weights``, training state gathers under ``training``."""
    norm = p.get("normalization")
    model_cfg = p.get("model_config")
    if isinstance(model_cfg, dict) and isinstance(norm, dict):
        model_cfg = {**model_cfg, "mean": norm.get("mean"), "std": norm.get("std")}
    training = None
    if p.get("optimizer") is not None:
        training = {"optimizer": p.get("optimizer"), "scheduler": p.get("scheduler"),
                    "step_in_epoch": p.get("step_in_epoch") or 0, "partial_epoch": p.get("partial_epoch")}
    out = {k: v for k, v in p.items() if k not in ("normalization", "model", "optimizer", "scheduler",
                                                     "step_in_epoch", "partial_epoch", "exported")}
    out.update(model_config=model_cfg, training=training)
    if "model" in p:
        out["weights"] = p["model"]
    out.setdefault("train_config", {})
    return out


def load(path: str | Path, label: str | None = None) -> Checkpoint:
    """Read and check a checkpoint file; every failure is a CheckpointError naming the file."""
    path = Path(path)
    source = label or str(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    unreadable = (f"{path} is not a readable checkpoint (truncated, corrupt or another format); "
                  "use a best.pt or last.pt written by `mnistctl train`")
    try:
        with warnings.catch_warnings():  # torch's remarks on a damaged file (an odd pickle protocol): ours say it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # the file asks to import and call something: never done
            raise CheckpointError(f"{path} was refused: loading it would run code ({found.group(1)}); "
                                  "only plain mnistctl checkpoints are loaded") from None
        raise CheckpointError(unreadable) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError,
            TypeError, AttributeError, MemoryError):
        raise CheckpointError(unreadable) from None
    return Checkpoint.from_payload(payload, source)


def pretrained_path() -> Path:
    """The model shipped inside the package (trained by mnistctl on the real MNIST)."""
    from importlib.resources import files

    return Path(str(files("mnistctl") / "pretrained" / PRETRAINED_NAME))


def load_or_pretrained(path: str | Path | None) -> Checkpoint:
    """The given checkpoint file, or the shipped model when ``path`` is None."""
    if path is not None:
        return load(path)
    shipped = pretrained_path()
    if not shipped.is_file():
        raise CheckpointError(f"the built-in model is missing from this installation ({shipped}): "
                              "reinstall mnistctl or pass a checkpoint")
    return load(shipped, PRETRAINED_LABEL)
