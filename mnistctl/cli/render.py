"""How results look in a terminal: progress displays, tables and summary lines, built with Rich.

Torch-free. Each function takes the core's typed results and returns Rich renderables or
strings; the views implement the core's progress hooks (``download.DownloadProgress``). The CLI
prints what these return. A training run's displays are in ``mnistctl.cli.train_view``, a
search's in ``mnistctl.cli.tune_view``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mnistctl.cli.terminal import printable
from mnistctl.data.download import DownloadProgress

if TYPE_CHECKING:  # pragma: no cover
    from mnistctl.data.download import FileResult
    from mnistctl.inference.classifier import Classifier
    from mnistctl.inference.evaluation import Evaluation
    from mnistctl.inference.files import FilePrediction
    from mnistctl.inference.metrics import EvalReport
    from mnistctl.inference.pictures import Answers, PictureEvaluation


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
