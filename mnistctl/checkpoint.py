"""Self-describing checkpoints, saved atomically and loaded with ``weights_only=True``.

A checkpoint holds everything needed to rebuild the model and carry on: model, data and
training configs, weights, optimizer and scheduler state, epoch (and the step inside it for an
interrupted run), history, dataset name, class names, normalisation, the mnistctl version and
a format version. Nothing in it is code: loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from mnistctl import __version__
from mnistctl.errors import CheckpointError
from mnistctl.fsutil import atomic_path

FORMAT = "mnistctl-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("model_config", "data_config", "model", "classes", "normalization", "history")


def save(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "mnistctl_version": __version__, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    unreadable = (f"{path} is not a readable checkpoint (truncated, corrupt or another format); "
                  "use a best.pt or last.pt written by `mnistctl train`")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # the file asks to import and call something: never done
            raise CheckpointError(f"{path} was refused: loading it would run code ({found.group(1)}); "
                                  "only plain mnistctl checkpoints are loaded") from None
        raise CheckpointError(unreadable) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError):
        raise CheckpointError(unreadable) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mnistctl checkpoint (no '{FORMAT}' marker); "
                              "use a best.pt or last.pt written by `mnistctl train`")
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}, but this mnistctl "
                              f"({__version__}) reads version {FORMAT_VERSION}: upgrade mnistctl or retrain")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is missing {', '.join(missing)}: it is incomplete or damaged")
    return ckpt


def normalization(ckpt: dict[str, Any]) -> tuple[float, float]:
    """The (mean, std) the checkpoint's model was trained with."""
    return ckpt["normalization"]["mean"], ckpt["normalization"]["std"]


def build_model(ckpt: dict[str, Any], source: str | Path = "checkpoint"):
    """The model described by a loaded checkpoint, with its weights, in eval mode."""
    from mnistctl.model import ModelConfig, Net

    try:
        cfg = ModelConfig(**ckpt["model_config"])
    except TypeError as exc:
        raise CheckpointError(f"{source} has a model config this mnistctl does not know ({exc})") from None
    model = Net(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{source}: weights do not fit the architecture its config "
                              f"describes (nf={cfg.nf}): {detail[:200]}") from None
    return model.eval()


PRETRAINED_NAME = "mnist-nf32.pt"
_TRAINING_STATE = ("optimizer", "scheduler", "partial_epoch")


def pretrained_path() -> Path:
    """The model shipped inside the package (trained by mnistctl on the real MNIST)."""
    from importlib.resources import files

    return Path(str(files("mnistctl") / "pretrained" / PRETRAINED_NAME))


def load_or_pretrained(path: str | Path | None, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], str]:
    """A checkpoint and a label saying where it came from: the given file, or the shipped model."""
    if path is not None:
        return load(path, map_location), str(path)
    shipped = pretrained_path()
    if not shipped.is_file():
        raise CheckpointError(f"the built-in model is missing from this installation ({shipped}): "
                              "reinstall mnistctl or pass --checkpoint")
    return load(shipped, map_location), f"built-in model ({PRETRAINED_NAME})"


def export(ckpt: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An inference-only copy: the same self-describing checkpoint without optimizer and
    scheduler state (a third of the size); it can be evaluated and used, not resumed."""
    state = {k: v for k, v in ckpt.items() if k not in _TRAINING_STATE and k not in
             ("format", "format_version", "mnistctl_version")}
    state["exported"] = True
    state.update(extra or {})
    return state
