"""What a run records per epoch, as typed records (torch-free: plots and reports read them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from mnistctl.errors import MnistctlError

if TYPE_CHECKING:  # only named in annotations: the base stays torch-free
    from mnistctl.training.distributed import Group
    from mnistctl.training.plan import RunPlan
    from mnistctl.training.run import RunInfo


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: training figures (running means over the epoch) and validation ones.

    Both losses are the plain cross-entropy, so they compare; with label smoothing the loss that
    was minimised is ``train_objective`` (NaN without smoothing)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float = math.nan  # the learning rate at the end of the epoch
    seconds: float = 0.0  # training time of the epoch (validation not included)
    images_per_s: float = 0.0
    train_objective: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if math.isnan(self.train_objective):
            del out["train_objective"]  # strict JSON has no NaN
        return out

    @classmethod
    def from_dict(cls, data: Any) -> EpochRecord:
        """A record from a history.json row or a checkpoint; MnistctlError when it is not one."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or not all(k in data for k in names[:5]):
            raise MnistctlError(f"not a per-epoch record (needs {', '.join(names[:5])})")
        try:
            values = {k: (int if k == "epoch" else float)(data[k]) for k in names if k in data}
        except (TypeError, ValueError):
            raise MnistctlError("a per-epoch record holds a value that is not a number") from None
        return cls(**values)  # type: ignore[arg-type]  # epoch is the int among the floats


@dataclass(frozen=True)
class Best:
    """The epoch with the best validation accuracy so far (epoch 0: none yet)."""

    epoch: int = 0
    val_acc: float = -1.0
    val_loss: float = math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Best:
        if not isinstance(data, dict):
            return cls()
        try:
            return cls(int(data.get("epoch", 0)), float(data.get("val_acc", -1.0)),
                       float(data.get("val_loss", math.inf)))
        except (TypeError, ValueError):
            raise MnistctlError("the best-epoch record holds a value that is not a number") from None


def parse_history(rows: Any) -> list[EpochRecord]:
    if not isinstance(rows, list):
        raise MnistctlError("the history is not a list of per-epoch records")
    return [EpochRecord.from_dict(r) for r in rows]


# --- the files of a run directory (named here only) ---------------------------------------------

CONFIG_FILE = "config.json"  # every setting of the run; `train --config` reads it
BEST_FILE = "best.pt"  # the checkpoint of the epoch with the best validation accuracy
LAST_FILE = "last.pt"  # the latest checkpoint, resumable (after Ctrl-C: mid-epoch)
HISTORY_FILE = "history.json"  # the per-epoch records
PLOT_FILE = "loss.png"  # the loss curves

# --- per-step metrics: metrics.csv in a run directory ------------------------------------------

METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("kind", "epoch", "step", "progress", "train_loss", "lr", "train_acc", "val_loss", "val_acc")


@dataclass(frozen=True)
class StepRecord:
    """The training loss (plain cross-entropy of one batch) and learning rate after a step;
    ``progress`` is in epochs (2.5: half-way through epoch 3)."""

    epoch: int
    step: int
    progress: float
    train_loss: float
    lr: float


def metrics_rows(steps: list[StepRecord], history: list[EpochRecord]) -> list[dict[str, Any]]:
    """metrics.csv's rows: the step rows, each epoch's row after its steps."""
    rows: list[dict[str, Any]] = []
    by_epoch = {r.epoch: r for r in history}
    done = set()
    for s in steps:
        for e in sorted(k for k in by_epoch if k < s.epoch and k not in done):
            rows.append(_epoch_row(by_epoch[e]))
            done.add(e)
        rows.append({"kind": "step", "epoch": s.epoch, "step": s.step, "progress": f"{s.progress:.4f}",
                     "train_loss": f"{s.train_loss:.6f}", "lr": f"{s.lr:.6g}"})
    rows += [_epoch_row(by_epoch[e]) for e in sorted(by_epoch) if e not in done]
    return rows


def _epoch_row(r: EpochRecord) -> dict[str, Any]:
    return {"kind": "epoch", "epoch": r.epoch, "step": "", "progress": f"{r.epoch:.4f}",
            "train_loss": f"{r.train_loss:.6f}", "lr": f"{r.lr:.6g}", "train_acc": f"{r.train_acc:.6f}",
            "val_loss": f"{r.val_loss:.6f}", "val_acc": f"{r.val_acc:.6f}"}


def read_steps(text: str) -> list[StepRecord]:
    """The step rows of a metrics.csv; MnistctlError when it is not one."""
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"kind", "epoch", "step", "progress", "train_loss", "lr"} <= set(
            reader.fieldnames):
        raise MnistctlError("not an mnistctl metrics.csv (its header lacks kind, epoch, step, progress, "
                            "train_loss, lr)")
    out = []
    try:
        for row in reader:
            if row["kind"] == "step":
                out.append(StepRecord(int(row["epoch"]), int(row["step"]), float(row["progress"]),
                                      float(row["train_loss"]), float(row["lr"])))
    except (TypeError, ValueError):
        raise MnistctlError("a metrics.csv row holds a value that is not a number") from None
    return out


class TrainCallbacks:
    """Hooks a front end implements to show a training run's progress (torch-free, so a front end
    subclasses it without importing torch); the defaults do nothing."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None: ...

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        """After each step; ``loss`` (the batch's plain cross-entropy) is None on steps where an
        accelerator was not synced."""

    def on_epoch_end(self, record: EpochRecord) -> None: ...

    def on_extra_images(self, done: int, total: int) -> None:
        """Before training, while the pictures of ``--extra-images`` are prepared: ``done`` of
        ``total`` (0 first, then every 256 and at the end)."""


class RunHooks(TrainCallbacks):
    """What a front end may hook into ``train_settings`` beyond the training loop's progress (the
    inherited ``on_*`` hooks); the defaults do nothing."""

    def on_join(self, group: Group) -> None:
        """This process has joined its group (of one, or of several under torchrun); nothing is planned yet."""

    def on_plan(self, plan: RunPlan, group: Group) -> bool:
        """The run is planned (on every process of a group). Return False to stop before anything is
        written or trained (as ``train --print-config`` does)."""
        return True

    def on_ready(self, info: RunInfo) -> None:
        """Data and model are in place; the first step is next."""
