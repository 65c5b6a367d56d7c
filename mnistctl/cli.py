"""The command line: each command checks its options, calls the core, and renders the result.

Only typer, rich and torch-free project modules are imported at the top, so that
``mnistctl --help`` stays fast; torch and matplotlib are imported inside the commands.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnistctl import __version__
from mnistctl.datasets import DATA_DIR_ENV, REGISTRY
from mnistctl.errors import MnistctlError

app = typer.Typer(
    name="mnistctl",
    help="Download MNIST, train a CNN on it, evaluate it, read your own digits, plot the curves.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

DatasetName = enum.Enum("DatasetName", {name: name for name in REGISTRY}, type=str)


class Split(str, enum.Enum):
    train = "train"
    val = "val"
    test = "test"


DatasetOpt = Annotated[DatasetName, typer.Option("--dataset", "-d", help="Which MNIST-format data set.")]
DataDirOpt = Annotated[Optional[Path], typer.Option(
    "--data-dir", envvar=DATA_DIR_ENV, show_default=False,
    help="Where data sets are stored [default: the per-user cache directory].")]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn project errors into one line on stderr and exit code 1; Ctrl-C into exit 130."""
    try:
        yield
    except MnistctlError as exc:
        err_console.print(Text.assemble(("Error: ", "bold red"), str(exc)), soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print(Text("Interrupted.", style="yellow"))
        raise typer.Exit(130) from None


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _version(value: bool) -> None:
    if value:
        console.print(f"mnistctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """mnistctl: from nothing to a trained handwritten-digit classifier, in the terminal."""


@app.command()
def download(
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    mirror: Annotated[Optional[list[str]], typer.Option(
        "--mirror", "-m", show_default=False,
        help="A mirror to try first: http(s)://, file:// or a local directory. Repeatable; "
             "$MNISTCTL_MIRROR (whitespace-separated) adds more.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Fetch again even if valid files are present.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Network timeout per request, in seconds.")] = 30.0,
) -> None:
    """Fetch a data set's four IDX files, verify their checksums and store them."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    from mnistctl import datasets
    from mnistctl.download import DownloadProgress
    from mnistctl.download import download as fetch_all

    class RichProgress(DownloadProgress):
        """A bar per file; the display starts with the first fetch, so a run that fetches
        nothing (or fails before any byte) prints no empty progress lines."""

        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=err_console, transient=True)
            self.live = False
            self.task = None
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

    reporter = RichProgress()
    with user_errors():
        info = datasets.get_dataset(dataset.value)
        directory = datasets.dataset_dir(info, data_dir)
        mirrors = datasets.resolve_mirrors(info, mirror)
        try:
            results = fetch_all(info, directory, mirrors, force=force, progress=reporter, timeout=timeout)
        finally:
            reporter.close()

    table = Table(title=f"{info.title}: {directory}")
    for col in ("file", "size", "source", "status"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for r in results:
        status = "[green]downloaded[/]" if r.status == "downloaded" else "[cyan]present[/]"
        table.add_row(r.name, _human_size(r.size), r.source, status)
    console.print(table)


@app.command()
def samples(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=400, help="How many digits.")] = 25,
    split: Annotated[Split, typer.Option(help="Which split to draw from.")] = Split.train,
    seed: Annotated[int, typer.Option(help="Random seed for the choice of digits.")] = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("samples.png"),
    terminal: Annotated[bool, typer.Option("--terminal", "-t", help="Also draw the digits in the terminal.")] = False,
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
) -> None:
    """Save a grid of random digits with their labels as a PNG (and show them in the terminal)."""
    with user_errors():
        from mnistctl.data import DataConfig, sample_digits
        from mnistctl.plotting import digit_grid_figure, save_figure

        cfg = DataConfig(dataset=dataset.value)
        images, labels = sample_digits(cfg, split.value, count, seed, data_dir)
        names = [cfg.info.classes[int(y)] for y in labels]
        title = f"{cfg.info.title}: {len(names)} random {split.value} images (seed {seed})"
        path = save_figure(digit_grid_figure(images.numpy(), names, suptitle=title), output)

    if terminal:
        from mnistctl.terminal import digit_grid

        console.print(digit_grid(images.tolist(), names, width=console.width))
    console.print(f"Saved {len(names)} {split.value} digits to [bold]{path}[/]")


def main() -> None:
    app()
