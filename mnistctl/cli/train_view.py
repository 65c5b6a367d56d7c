"""How a training run looks in a terminal: the header line, the live table of epochs with a
progress bar (plain lines in a pipe or CI, nothing with --quiet) and the summary, built with Rich.

Torch-free: the views implement the core's progress hooks (``engine.TrainCallbacks``); the CLI
prints what these return. (The other commands' displays are in ``mnistctl.cli.render``.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from mnistctl.cli.render import pct
from mnistctl.cli.terminal import printable
from mnistctl.runfiles import TrainCallbacks

if TYPE_CHECKING:  # pragma: no cover
    from mnistctl.config import TrainConfig
    from mnistctl.runfiles import EpochRecord
    from mnistctl.training.run import Run, RunInfo, RunPlan


def _drawn(info: RunInfo) -> str:
    """Which of the extra pictures a run trains on, when not each of them once."""
    if info.extra_images < info.extra_pictures:
        return f": a random {info.extra_images:,} of its {info.extra_pictures:,} pictures, the same every epoch"
    if info.extra_images > info.extra_pictures:
        return f": its {info.extra_pictures:,} pictures, repeated"
    return ""


def train_header(plan: RunPlan, info: RunInfo) -> str:
    t, resumed = plan.train_config, plan.resume is not None
    where = ""
    if resumed:
        where = f" from epoch {info.start_epoch + 1}" + (f", step {info.start_step + 1}" if info.start_step else "")
    return (f"{'Resuming' if resumed else 'Training'} nf={plan.model_config.nf} CNN ({info.parameters:,} parameters) "
            f"on {plan.data_config.info.title}{where}: {info.train_images:,} training"
            + (f" ({info.extra_images:,} of them from {escape(printable(plan.data_config.extra_images))}"
               f"{_drawn(info)})" if info.extra_images else "")
            + f" / {info.val_images:,} validation images, "
            f"{t.epochs} epoch{'s' if t.epochs != 1 else ''} of {info.steps} steps"
            + (f" ({t.epoch_fraction:.0%} of the training images each)" if t.epoch_fraction < 1 else "")
            + f", {_batch(t.batch_size, info)}, "
            f"{t.optimizer} lr {t.lr:g} ({t.schedule})"
            + (f", weight decay {t.weight_decay:g}" if t.weight_decay else "")
            + f", augment {_augment(t)}, "
            f"device {info.device}"
            + (f" ({info.threads} thread{'s' if info.threads != 1 else ''}{' each' if info.processes > 1 else ''})"
               if info.device == "cpu" else "")
            + (f", from the weights of {plan.init.source}" if plan.init is not None else "")
            + (f", extended to {t.epochs} epochs (a new {t.schedule} schedule over the added ones)" if plan.extends
               else "")
            + (f", dropout {plan.model_config.dropout:g}" if plan.model_config.dropout else "")
            + (f", label smoothing {t.label_smoothing:g} (losses shown are plain cross-entropy)"
               if t.label_smoothing else "")
            + (f", validating and saving an average of the weights (EMA {t.ema:g})" if t.ema else "")
            + (f", early stopping after {t.patience} epochs without improvement" if t.patience else "")
            + f", run directory [bold]{plan.run_dir}[/]")


def _augment(t: TrainConfig) -> str:
    """"off", "on", or "on" and what it adds to the affine changes ("on (writer style 0.5, 15% at low
    resolution, 10% as 8x8 scans)")."""
    if not t.augment:
        return "off"
    parts = ([f"writer style {t.writer_style:g}"] if t.writer_style else []) \
        + ([f"{t.low_res:.0%} at low resolution"] if t.low_res else []) \
        + ([f"{t.scans:.0%} as 8x8 scans"] if t.scans else [])
    return "on" + (f" ({', '.join(parts)})" if parts else "")


def _batch(batch_size: int, info: RunInfo) -> str:
    """The step's size: per process and in all under torchrun; a resumed run keeps its global batch."""
    total = info.global_batch or batch_size
    if info.processes > 1:
        return f"batch {batch_size} per process, {total} per step ({info.processes} processes, {info.backend})"
    if total != batch_size:
        return f"batch {total} ({batch_size} x the {total // batch_size} processes the run started with)"
    return f"batch {batch_size}"


class TrainView(TrainCallbacks):
    """A growing table of epochs with the current epoch's progress bar under it; implements the
    engine's TrainCallbacks hooks."""

    COLUMNS = ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds", "img/s")

    def __init__(self, console: Console) -> None:
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        # a narrow terminal (under 80 columns) drops the learning rate and the seconds: the rest fits in 60
        narrow = console.width < 80
        self.columns = tuple(c for c in self.COLUMNS if not (narrow and c in ("lr", "seconds")))
        self.table = Table(box=None)
        for col in self.columns:
            self.table.add_column(col, justify="right", no_wrap=True)
        wide = () if narrow else (TextColumn("{task.fields[speed]:,.0f} img/s"), TimeElapsedColumn())
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), *wide, TextColumn("ETA"), TimeRemainingColumn(),
            console=console)
        self.live = Live(Group(self.table, self.progress), console=console, refresh_per_second=8)
        self.task: Any = None
        self.best = -1.0
        self.started = False
        self.t0, self.images = 0.0, 0

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.t0, self.images = time.perf_counter(), 0
        self.task = self.progress.add_task("", total=steps, completed=start_step,
                                           epoch=f"{epoch}/{epochs}", loss=float("nan"), speed=0.0)

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        self.images += images
        fields: dict[str, Any] = {"speed": self.images / max(time.perf_counter() - self.t0, 1e-9)}
        if loss is not None:
            fields["loss"] = loss
        self.progress.update(self.task, advance=1, **fields)

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.progress.remove_task(self.task)
        self.task = None
        self.add_row(record)

    def add_row(self, r: EpochRecord) -> None:
        best = r.val_acc > self.best
        self.best = max(self.best, r.val_acc)
        cells = dict(zip(self.COLUMNS, (str(r.epoch), f"{r.train_loss:.4f}", pct(r.train_acc), f"{r.val_loss:.4f}",
                                        pct(r.val_acc), f"{r.lr:.2e}", f"{r.seconds:.1f}", f"{r.images_per_s:,.0f}")))
        self.table.add_row(*(cells[c] for c in self.columns), style="bold green" if best else None)

    def start(self, history: Sequence[EpochRecord] = ()) -> None:
        for record in history:
            self.add_row(record)
        self.live.start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.started = False
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
            self.live.stop()
            if not self.console.is_terminal:  # Live's last frame ends without a newline there
                self.console.line()


class PlainTrainView(TrainCallbacks):
    """Training progress as plain lines, for pipes, log files and CI: one line per epoch, and one
    every ``every`` seconds within a long epoch."""

    def __init__(self, console: Console, every: float = 30.0) -> None:
        self.console, self.every = console, every
        self.best = -1.0
        self.epoch, self.epochs, self.steps = 0, 0, 0
        self.t0 = self.last = 0.0
        self.images = 0

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)
        self.console.file.flush()

    def start(self, history: Sequence[EpochRecord] = ()) -> None:
        for record in history:
            self.best = max(self.best, record.val_acc)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.t0 = self.last = time.perf_counter()
        self.images = 0

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        self.images += images
        now = time.perf_counter()
        if now - self.last >= self.every and loss is not None:
            self.last = now
            self._say(f"epoch {self.epoch}/{self.epochs}: step {step + 1}/{self.steps}, loss {loss:.4f}, "
                      f"{self.images / max(now - self.t0, 1e-9):,.0f} img/s")

    def on_epoch_end(self, r: EpochRecord) -> None:
        best = r.val_acc > self.best
        self.best = max(self.best, r.val_acc)
        objective = "" if math.isnan(r.train_objective) else f" (smoothed {r.train_objective:.4f})"
        self._say(f"epoch {r.epoch}/{self.epochs}: train loss {r.train_loss:.4f}{objective} acc {pct(r.train_acc)}, "
                  f"val loss {r.val_loss:.4f} acc {pct(r.val_acc)}{' (best)' if best else ''}, lr {r.lr:.2e}, "
                  f"{r.seconds:.1f} s, {r.images_per_s:,.0f} img/s")

    def stop(self) -> None:
        pass


class QuietTrainView(PlainTrainView):
    """--quiet: nothing while training."""

    def _say(self, text: str) -> None:
        pass


def train_view(console: Console, quiet: bool = False) -> TrainView | PlainTrainView:
    """The live table and progress bar on a terminal; plain lines in a pipe, a file or CI."""
    if quiet:
        return QuietTrainView(console)
    return TrainView(console) if console.is_terminal else PlainTrainView(console)


def train_summary(result: Run) -> list[str]:
    best = result.best_record
    waited = result.history[-1].epoch - best.epoch
    early = (f"Stopped early after epoch {result.history[-1].epoch}: no better validation accuracy for "
             f"{waited} epoch{'s' if waited != 1 else ''}. " if result.stopped_early else "")
    return [f"{early}Done in {result.seconds:.1f} s. Best epoch {best.epoch}: validation accuracy "
            f"[bold green]{pct(best.val_acc)}[/], loss {best.val_loss:.4f}.",
            f"Files: {', '.join(str(p) for p in result.files)}",
            f"Next: mnistctl evaluate --checkpoint {result.best_path}"]
