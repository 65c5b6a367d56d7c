"""What a run records as it trains, beside its checkpoints: the training loss and learning rate
about every ``STEP_POINTS``-th of an epoch (metrics.csv), and the same scalars as TensorBoard
event files when asked."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mnistctl.errors import ConfigError, MnistctlError
from mnistctl.runfiles import METRICS_FILE, EpochRecord, StepRecord, read_steps
from mnistctl.training import loop as engine


class StepLog(engine.TrainCallbacks):
    """Passes the hooks on to the front end's, and keeps the loss and learning rate about every
    ``every`` steps (on an accelerator, when the loss is synced)."""

    def __init__(self, inner: engine.TrainCallbacks, optimizer: torch.optim.Optimizer, steps: int,
                 kept: list[StepRecord], board: TensorBoard | None = None):
        self.inner, self.optimizer, self.steps, self.records, self.board = inner, optimizer, steps, kept, board
        self.every = max(1, steps // STEP_POINTS)
        self.epoch, self.last = 0, -1

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        self.epoch, self.last = epoch, start_step - 1
        self.inner.on_epoch_start(epoch, epochs, steps, start_step)

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        if loss is not None and (step - self.last >= self.every or step + 1 == self.steps):
            self.last = step
            self.records.append(StepRecord(self.epoch, step + 1, self.epoch - 1 + (step + 1) / self.steps, loss,
                                           self.optimizer.param_groups[0]["lr"]))
            if self.board is not None:
                self.board.step(self.records[-1], self.steps)
        self.inner.on_batch(step, loss, images)

    def on_epoch_end(self, record: EpochRecord) -> None:
        if self.board is not None:
            self.board.epoch(record, self.steps)
        self.inner.on_epoch_end(record)


class TensorBoard:
    """The scalars of metrics.csv as TensorBoard event files in the run directory, so that
    ``tensorboard --logdir runs`` shows every run (``torch.utils.tensorboard``; the tensorboard extra)."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("writing TensorBoard logs needs the tensorboard package: "
                              "pip install 'mnistctl[tensorboard]'", setting="tensorboard",
                              problem="needs the tensorboard package: pip install 'mnistctl[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def step(self, r: StepRecord, steps: int) -> None:
        at = (r.epoch - 1) * steps + r.step
        self.writer.add_scalar("train/loss_per_step", r.train_loss, at)
        self.writer.add_scalar("train/lr", r.lr, at)

    def epoch(self, r: EpochRecord, steps: int) -> None:
        at = r.epoch * steps
        for name, value in (("train/loss", r.train_loss), ("train/accuracy", r.train_acc), ("val/loss", r.val_loss),
                            ("val/accuracy", r.val_acc), ("train/objective", r.train_objective)):
            if not math.isnan(value):
                self.writer.add_scalar(name, value, at)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


STEP_POINTS = 50  # per-step points kept per epoch in metrics.csv


def kept_steps(run_dir: Path, epoch: int, step: int, steps: int) -> list[StepRecord]:
    """The step rows of an earlier part of this run, up to where it resumes (none if unreadable)."""
    try:
        records = read_steps((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, MnistctlError):
        return []
    return [r for r in records if (r.epoch - 1) * steps + r.step <= epoch * steps + step]
