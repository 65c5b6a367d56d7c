"""How results look in a terminal: progress displays, tables and summary lines, built with Rich.

Torch-free. Each function takes the core's typed results and returns Rich renderables or
strings; the views implement the core's progress hooks (``engine.TrainCallbacks``,
``download.DownloadProgress``). The CLI prints what these return.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mnistctl.cli.terminal import printable
from mnistctl.data.download import DownloadProgress
from mnistctl.runfiles import TrainCallbacks

if TYPE_CHECKING:  # pragma: no cover
    from mnistctl.data.download import FileResult
    from mnistctl.inference.classifier import Classifier
    from mnistctl.inference.evaluation import Evaluation
    from mnistctl.inference.files import FilePrediction
    from mnistctl.inference.metrics import EvalReport
    from mnistctl.inference.pictures import Answers, PictureEvaluation
    from mnistctl.runfiles import EpochRecord
    from mnistctl.training.run import Run, RunInfo, RunPlan


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


# --- download ---------------------------------------------------------------------------------

class DownloadView(DownloadProgress):
    """A bar per file; the display starts with the first fetch, so a run that fetches nothing
    (or fails before any byte) prints no empty progress lines."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.live = False
        self.task: Any = None  # a rich.progress.TaskID once started
        self.done = 0

    def start(self, name: str, source: str, total: int | None) -> None:
        if not self.live:
            self.progress.start()
            self.live = True
        self.task = self.progress.add_task(name, total=total)
        self.done = 0

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.progress.advance(self.task, nbytes)

    def stop(self, ok: bool) -> None:
        if ok:
            self.progress.update(self.task, total=self.done, completed=self.done)
        else:
            self.progress.remove_task(self.task)

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def download_table(title: str, results: Sequence[FileResult]) -> Table:
    table = Table(title=title)
    for col in ("file", "size", "source", "status"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for r in results:
        status = "[green]downloaded[/]" if r.status == "downloaded" else "[cyan]present[/]"
        table.add_row(r.name, human_size(r.size), r.source, status)
    return table


# --- train ------------------------------------------------------------------------------------

def train_header(plan: RunPlan, info: RunInfo) -> str:
    t, resumed = plan.train_config, plan.resume is not None
    where = ""
    if resumed:
        where = f" from epoch {info.start_epoch + 1}" + (f", step {info.start_step + 1}" if info.start_step else "")
    return (f"{'Resuming' if resumed else 'Training'} nf={plan.model_config.nf} CNN ({info.parameters:,} parameters) "
            f"on {plan.data_config.info.title}{where}: {info.train_images:,} training"
            + (f" ({info.extra_images:,} of them from {escape(printable(plan.data_config.extra_images))})"
               if info.extra_images else "")
            + f" / {info.val_images:,} validation images, "
            f"{t.epochs} epoch{'s' if t.epochs != 1 else ''} of {info.steps} steps"
            + (f" ({t.epoch_fraction:.0%} of the training images each)" if t.epoch_fraction < 1 else "")
            + f", {_batch(t.batch_size, info)}, "
            f"{t.optimizer} lr {t.lr:g} ({t.schedule})"
            + (f", weight decay {t.weight_decay:g}" if t.weight_decay else "")
            + f", augment {'on' if t.augment else 'off'}, "
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


# --- evaluate ---------------------------------------------------------------------------------

def pictures_summary(scored: PictureEvaluation) -> str:
    """How right the sure and the unsure answers were, and the pictures that could not be read."""
    sure, unsure = scored.sure_answers, scored.unsure_answers
    wrong = scored.report.images - scored.report.correct

    def how_right(answers: Answers) -> str:
        return "none" if answers.accuracy is None else \
            f"{pct(answers.accuracy)} right ({answers.right:,}/{answers.images:,})"

    parts = [f"{escape(printable(scored.source))}: sure answers {how_right(sure)}", f"unsure {how_right(unsure)}",
             f"{scored.caught:,} of {wrong:,} mistakes marked unsure"]
    if scored.unreadable:
        first_path, first_error = scored.unreadable[0]
        parts.append(f"[yellow]{len(scored.unreadable):,} could not be read[/] "
                     f"(first: {escape(printable(first_path))}: {escape(first_error)})")
    return "; ".join(parts)


def eval_summary(evaluation: Evaluation | PictureEvaluation) -> str:
    clf, r = evaluation.classifier, evaluation.report
    epoch = f"epoch {clf.epoch}, " if clf.epoch is not None else ""
    return (f"[bold]{clf.source}[/] ({clf.dataset}, nf={clf.nf}, {epoch}{clf.backend}): "
            f"{r.split} accuracy [bold green]{pct(r.accuracy)}[/] ({r.correct:,}/{r.images:,}), "
            f"mean loss {r.loss:.4f}, {r.seconds:.2f} s")


def fits(console: Console, renderable: RenderableType) -> bool:
    """Whether ``renderable`` can be drawn in the console's width without squeezing its cells."""
    unbounded = console.options.update_width(1 << 16)  # measured without the clamp to the console's width
    return Measurement.get(console, unbounded, renderable).minimum <= console.width


def per_class_table(r: EvalReport, console: Console | None = None) -> RenderableType:
    """Precision, recall, F1 and support per class; in a narrow terminal, a compact table of the
    three scores (percent, without the % signs)."""
    table = Table(title="Per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right", no_wrap=True)
    for c in r.per_class:
        table.add_row(c.name, pct(c.precision), pct(c.recall), pct(c.f1), f"{c.support:,}")
    if console is None or fits(console, table):
        return table
    compact = Table(title="Per class, %", box=None, pad_edge=False)
    for col in ("", "P", "R", "F1"):
        compact.add_column(col, justify="right", overflow="fold")
    for c in r.per_class:
        compact.add_row(c.name, f"{100 * c.precision:.1f}", f"{100 * c.recall:.1f}", f"{100 * c.f1:.1f}")
    return compact


def confusion_table(r: EvalReport, console: Console | None = None) -> RenderableType:
    """The confusion matrix; in a terminal too narrow for it, the most frequent confusions as lines."""
    table = Table(title="Confusion matrix (rows: true, columns: predicted)")
    table.add_column("", no_wrap=True)
    for c in r.classes:
        table.add_column(c[:6], justify="right", no_wrap=True)
    for i, row in enumerate(r.confusion):
        cells = [f"[bold green]{v}[/]" if i == j else (f"[red]{v}[/]" if v else "[dim]·[/]")
                 for j, v in enumerate(row)]
        table.add_row(f"[bold]{r.classes[i][:10]}[/]", *cells)
    if console is None or fits(console, table):
        return table
    pairs = sorted(((v, i, j) for i, row in enumerate(r.confusion) for j, v in enumerate(row) if i != j and v),
                   reverse=True)[:10]
    lines = Text("Most confused (true as predicted):\n" if pairs else "No confusions.\n", style="bold")
    for v, i, j in pairs:
        lines.append(f"{r.classes[i]} as {r.classes[j]}: {v}\n", style="")
    return lines


# --- predict ----------------------------------------------------------------------------------

def model_line(clf: Classifier) -> str:
    from mnistctl.datasets import REGISTRY

    title = REGISTRY[clf.dataset].title if clf.dataset in REGISTRY else clf.dataset
    about = f", {pct(clf.test_accuracy)} on the {title} test set" if clf.test_accuracy is not None else ""
    return f"Model: {clf.source} (nf={clf.nf}, {clf.dataset}{about})"


class PredictProgress:
    """A progress bar on stderr while many files are read (more than ``MIN_FILES``, on a terminal);
    nothing otherwise, so that pipes and ``--json`` output stay clean."""

    MIN_FILES = 200

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Any = None  # a rich Progress, once there are enough files to show one
        self.task: Any = None

    def __enter__(self) -> PredictProgress:
        return self

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            if total <= self.MIN_FILES or not self.console.is_terminal:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("reading images"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("", total=total)
        self.progress.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def predictions_table(results: Sequence[FilePrediction], dataset: str) -> Table:
    """A row per file; an unsure prediction is marked with ? and its reasons. When a picture was
    read as a number, a number column takes the digit column's place (a single digit shows there
    too) and the last column shows each digit's confidence."""
    table = Table()
    numbers = any(r.number is not None for r in results)
    answer = "number" if numbers else "digit" if dataset == "mnist" else "class"
    justify: Any
    for col, justify in (("file", "left"), (answer, "right" if numbers else "center"), ("confidence", "right"),
                         ("top 3 / digits" if numbers else "top 3", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in results:
        p = r.prediction
        if p is None:
            table.add_row(Text(printable(r.path)), "[red]-[/]", "", Text(f"error: {printable(r.error or '')}",
                                                                          style="red"))
            continue
        label = Text(r.text or "", style="bold")
        if r.number is not None:
            confidence = ""
            detail = Text("  ".join(f"{d.prediction.label} {100 * d.prediction.confidence:.1f}%"
                                    for d in r.number.digits))
        else:
            confidence = f"{100 * p.confidence:.1f}%"
            detail = Text("  ".join(f"{c} {100 * q:.1f}%" for c, q in p.top(3)))
        if r.unsure:
            label = Text(f"{r.text}?", style="bold yellow")
            detail.append(f"\nunsure: {'; '.join(r.reasons)}", style="yellow")
        table.add_row(Text(printable(r.path)), label, confidence, detail)
    return table


def input_panels(results: Sequence[FilePrediction], plain: bool = False) -> list[RenderableType]:
    """The 28x28 input of each readable file drawn in the terminal, with its prediction."""
    from mnistctl.cli.terminal import digit_text

    panels: list[RenderableType] = []
    for r in results:
        if r.image is None or r.prediction is None:
            continue
        shown = [(r.image, r.prediction)] if r.number is None else [(d.image, d.prediction) for d in r.number.digits]
        for k, (image, p) in enumerate(shown, 1):
            which = f" (digit {k} of {len(shown)})" if len(shown) > 1 else ""
            grid = Table.grid(padding=(0, 2))
            grid.add_row(digit_text(image.tolist(), plain), Text.assemble(
                (f"{printable(r.path)}{which}\n", "dim"), ("→ ", ""), (p.label, "bold green"),
                f"  ({100 * p.confidence:.1f}%)"))
            panels.append(grid)
    return panels
