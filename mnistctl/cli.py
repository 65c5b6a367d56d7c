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
from mnistctl.recipes import DEVICES, OPTIMIZERS, PRESETS, SCHEDULES, SPLITS

app = typer.Typer(
    name="mnistctl",
    help="Download MNIST, train a CNN on it, evaluate it, read your own digits, plot the curves.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

def _choices(name: str, values) -> type[enum.Enum]:
    """A str Enum of ``values`` (Typer shows and checks them as the option's choices)."""
    return enum.Enum(name, {v: v for v in values}, type=str)


DatasetName = _choices("DatasetName", REGISTRY)
Split = _choices("Split", SPLITS)
EvalSplit = _choices("EvalSplit", ("test", "val"))
Optimizer = _choices("Optimizer", OPTIMIZERS)
Schedule = _choices("Schedule", SCHEDULES)
Device = _choices("Device", DEVICES)
Preset = _choices("Preset", PRESETS)


DatasetOpt = Annotated[DatasetName, typer.Option("--dataset", "-d", help="Which MNIST-format data set.")]
DeviceOpt = Annotated[Device, typer.Option(help="Where to compute: auto picks cuda, then mps, then cpu.")]
DataDirOpt = Annotated[Optional[Path], typer.Option(
    "--data-dir", envvar=DATA_DIR_ENV, show_default=False,
    help="Where data sets are stored (default: the per-user cache directory).")]


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




def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@app.command()
def train(
    preset: Annotated[Preset, typer.Option(
        help="A recipe: 'original' (the original project's, 99.5%+ at --nf 32) or 'fast' (nf 16, 1 epoch, "
             "batch 128, lr 0.02, label smoothing 0.1, no augmentation: 99% in seconds on a CPU). "
             "Options given explicitly override the preset.")] = Preset.original,
    epochs: Annotated[Optional[int], typer.Option(show_default=False, help="Passes over the training images (default: 10).")] = None,
    lr: Annotated[Optional[float], typer.Option(show_default=False, help="Peak learning rate (default: 0.01).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(show_default=False, help="Images per training step (default: 64).")] = None,
    nf: Annotated[Optional[int], typer.Option(
        show_default=False, help="Filters of the first convolution (then 2nf, 4nf) (default: 16).")] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(show_default=False, help="Optimizer (default: adam).")] = None,
    schedule: Annotated[Optional[Schedule], typer.Option(
        show_default=False, help="Learning-rate schedule over the whole run (default: onecycle).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(show_default=False, help="Weight decay (default: 0).")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(
        show_default=False, help="Label smoothing of the cross-entropy (default: 0).")] = None,
    dropout: Annotated[float, typer.Option(help="Dropout after the first dense layer.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, shuffling and augmentation.")] = 1,
    device: DeviceOpt = Device.auto,
    val_split: Annotated[float, typer.Option(
        show_default="0.0833: 5,000 of MNIST's 60,000",
        help="Fraction of the training file held out for validation.")] = 5000 / 60000,
    augment: Annotated[Optional[bool], typer.Option(
        "--augment/--no-augment", show_default=False,
        help="Random small rotations, shifts and scaling, batched on tensors (default: on).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        show_default=False, help="Directory for checkpoints, history and plot (default: runs/NAME).")] = None,
    name: Annotated[Optional[str], typer.Option(
        show_default=False, help="Run name under runs/ (default: a fresh DATASET-nfN-TIMESTAMP).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        show_default=False, help="Continue from a checkpoint (its last.pt); its settings are used.")] = None,
    save_model: Annotated[bool, typer.Option(
        "--save-model", help="Also write the final model to ./mnist_cnn.pt, like the original script.")] = False,
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
) -> None:
    """Train the CNN, with a progress bar per epoch and a table of epochs; writes best.pt,
    last.pt, history.json and loss.png to the run directory."""
    with user_errors():
        import shutil

        from mnistctl import checkpoint, engine
        from mnistctl.data import DataConfig
        from mnistctl.errors import ConfigError, TrainingInterrupted
        from mnistctl.fsutil import atomic_path
        from mnistctl.model import ModelConfig
        from mnistctl.plotting import history_figure, save_figure

        resumed = None
        if resume is not None:
            resumed = checkpoint.load(resume)
            if resumed.get("optimizer") is None:
                raise ConfigError(f"{resume} is an exported, inference-only checkpoint without optimizer "
                                  "state: resume from the run's last.pt instead")
            model_cfg, data_cfg, train_cfg = engine.config_from_checkpoint(resumed)
            out_dir = run_dir or resume.parent
        else:
            given = {"nf": nf, "epochs": epochs, "lr": lr, "batch_size": batch_size, "augment": augment,
                     "optimizer": optimizer.value if optimizer else None, "weight_decay": weight_decay,
                     "schedule": schedule.value if schedule else None, "label_smoothing": label_smoothing}
            recipe = {**PRESETS[preset.value], **{k: v for k, v in given.items() if v is not None}}
            model_cfg = ModelConfig(nf=recipe.pop("nf"), dropout=dropout)
            data_cfg = DataConfig(dataset=dataset.value, val_fraction=val_split)
            train_cfg = engine.TrainConfig(seed=seed, **recipe)
            out_dir = run_dir or Path("runs") / (name or engine.new_run_name(model_cfg, data_cfg, Path("runs")))
            engine.check_run_dir(out_dir)
        dev = engine.resolve_device(device.value)

        view = _TrainView()

        def ready(facts: dict) -> None:
            what = "Resuming" if resumed else "Training"
            where = f" from epoch {facts['start_epoch'] + 1}" + (
                f", step {facts['start_step'] + 1}" if facts["start_step"] else "") if resumed else ""
            console.print(
                f"{what} nf={model_cfg.nf} CNN ({facts['parameters']:,} parameters) on {data_cfg.info.title}"
                f"{where}: {facts['train_images']:,} training / {facts['val_images']:,} validation images, "
                f"{train_cfg.epochs} epochs of {facts['steps']} steps, batch {train_cfg.batch_size}, "
                f"{train_cfg.optimizer} lr {train_cfg.lr:g} ({train_cfg.schedule}), "
                f"augment {'on' if train_cfg.augment else 'off'}, device {facts['device']}, "
                f"run directory [bold]{out_dir}[/]", highlight=False)
            for record in (resumed or {}).get("history", []):
                view.add_row(record)
            view.start()

        try:
            result = engine.fit(model_cfg, data_cfg, train_cfg, out_dir, dev, data_dir,
                                resume=resumed, callbacks=view, on_ready=ready)
        except TrainingInterrupted as exc:
            view.stop()
            err_console.print(Text.assemble(("Interrupted: ", "bold yellow"), str(exc)), soft_wrap=True)
            err_console.print(f"Resume with: mnistctl train --resume {exc.checkpoint}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(130) from None
        finally:
            view.stop()

        plot_path = save_figure(history_figure([(out_dir.name, result.history)]), out_dir / "loss.png")
        extra = []
        if save_model:
            with atomic_path(Path("mnist_cnn.pt")) as tmp:
                shutil.copyfile(result.last_path, tmp)
            extra.append(Path("mnist_cnn.pt"))

    best = result.history[result.best_epoch - 1]
    console.print(
        f"Done in {result.seconds:.1f} s. Best epoch {result.best_epoch}: validation accuracy "
        f"[bold green]{_pct(best['val_acc'])}[/], loss {best['val_loss']:.4f}.", highlight=False)
    console.print(f"Files: {', '.join(str(p) for p in [*result.files, plot_path, *extra])}", highlight=False,
                  soft_wrap=True)
    console.print(f"Next: mnistctl evaluate --checkpoint {result.best_path}", highlight=False, soft_wrap=True)


class _TrainView:
    """A growing table of epochs with the current epoch's progress bar under it; implements
    the engine's TrainCallbacks hooks."""

    def __init__(self) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.table = Table(box=None)
        for col in ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds", "img/s"):
            self.table.add_column(col, justify="right")
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:,.0f} img/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.live = Live(Group(self.table, self.progress), console=console, refresh_per_second=8)
        self.task = None
        self.best = -1.0
        self.started = False
        self.t0, self.images = 0.0, 0

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        import time

        if self.task is not None:
            self.progress.remove_task(self.task)
        self.t0, self.images = time.perf_counter(), 0
        self.task = self.progress.add_task("", total=steps, completed=start_step,
                                           epoch=f"{epoch}/{epochs}", loss=float("nan"), speed=0.0)

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        import time

        self.images += images
        fields = {"speed": self.images / max(time.perf_counter() - self.t0, 1e-9)}
        if loss is not None:
            fields["loss"] = loss
        self.progress.update(self.task, advance=1, **fields)

    def on_epoch_end(self, record: dict) -> None:
        self.progress.remove_task(self.task)
        self.task = None
        self.add_row(record)

    def add_row(self, r: dict) -> None:
        best = r["val_acc"] > self.best
        self.best = max(self.best, r["val_acc"])
        style = "bold green" if best else None
        self.table.add_row(str(r["epoch"]), f"{r['train_loss']:.4f}", _pct(r["train_acc"]),
                           f"{r['val_loss']:.4f}", _pct(r["val_acc"]), f"{r['lr']:.2e}",
                           f"{r['seconds']:.1f}", f"{r['images_per_s']:,.0f}", style=style)

    def start(self) -> None:
        self.live.start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.started = False
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
            self.live.stop()
            if not console.is_terminal:  # Live's last frame ends without a newline there
                console.line()


@app.command()
def evaluate(
    checkpoint_path: Annotated[Optional[Path], typer.Option(
        "--checkpoint", "-c", show_default=False,
        help="A checkpoint written by train (default: the built-in model).")] = None,
    split: Annotated[EvalSplit, typer.Option(help="Score on the test set or the validation part.")] = EvalSplit.test,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1000,
    device: DeviceOpt = Device.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
    plots: Annotated[Optional[Path], typer.Option(
        show_default=False, help="Write confusion.png and mistakes.png into this directory.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a checkpoint."""
    with user_errors():
        import json

        from mnistctl import checkpoint, engine

        dev = engine.resolve_device(device.value)
        ckpt, source = checkpoint.load_or_pretrained(checkpoint_path)
        result, images = engine.evaluate_checkpoint(ckpt, split.value, batch_size, dev, data_dir, source=source)
        written = []
        if plots is not None:
            from mnistctl.plotting import confusion_figure, digit_grid_figure, save_figure

            title = f"{source}: {split.value} accuracy {_pct(result.accuracy)}"
            written.append(save_figure(confusion_figure(result.confusion, result.classes, title),
                                       plots / "confusion.png"))
            if result.mistakes:
                m = result.mistakes
                titles = [f"true {result.classes[x['true']]}, pred {result.classes[x['predicted']]}\n"
                          f"{100 * x['confidence']:.1f}%" for x in m]
                written.append(save_figure(digit_grid_figure(
                    images[[x["index"] for x in m]].numpy(), titles,
                    suptitle="Most confidently wrong", title_colors=["firebrick"] * len(m)), plots / "mistakes.png"))

    info = {"checkpoint": source, "dataset": ckpt["dataset"], "model_config": ckpt["model_config"],
            "epoch": ckpt["epoch"]}
    if as_json:
        doc = {**info, **result.to_dict(), "plots": [str(p) for p in written]}
        typer.echo(json.dumps(doc, indent=2))
        return

    correct = round(result.accuracy * result.images)
    console.print(
        f"[bold]{source}[/] ({ckpt['dataset']}, nf={ckpt['model_config']['nf']}, epoch {ckpt['epoch']}): "
        f"{split.value} accuracy [bold green]{_pct(result.accuracy)}[/] ({correct:,}/{result.images:,}), "
        f"mean loss {result.loss:.4f}, {result.seconds:.2f} s", highlight=False, soft_wrap=True)
    per_class = Table(title="Per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(col, justify="right")
    for r in result.per_class:
        per_class.add_row(r["class"], _pct(r["precision"]), _pct(r["recall"]), _pct(r["f1"]), f"{r['support']:,}")
    console.print(per_class)
    cm = Table(title="Confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for c in result.classes:
        cm.add_column(c[:6], justify="right")
    for i, row in enumerate(result.confusion):
        cells = [f"[bold green]{v}[/]" if i == j else (f"[red]{v}[/]" if v else "[dim]·[/]")
                 for j, v in enumerate(row)]
        cm.add_row(f"[bold]{result.classes[i][:10]}[/]", *cells)
    console.print(cm)
    for path in written:
        console.print(f"Saved {path}", highlight=False)


@app.command()
def plot(
    paths: Annotated[list[Path], typer.Argument(help="Run directories, history.json files or checkpoints.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("loss.png"),
    show: Annotated[bool, typer.Option(help="Also open the figure in a window, where there is a display.")] = False,
) -> None:
    """Training and validation loss (and accuracy) per epoch; several runs share the axes."""
    with user_errors():
        from mnistctl.plotting import history_figure, load_history, save_figure

        runs = [load_history(p) for p in paths]
        labels = [label for label, _ in runs]
        if len(set(labels)) < len(labels):  # same run name twice: label by path instead
            runs = [(str(p), h) for p, (_, h) in zip(paths, runs)]
        fig = history_figure(runs)
        path = save_figure(fig, output)
    console.print(f"Saved {path} ({len(runs)} run{'s' if len(runs) > 1 else ''}: {', '.join(l for l, _ in runs)})",
                  highlight=False, soft_wrap=True)
    if show:
        _show(fig, path)


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(
        help="Image files, directories (their images, sorted) or glob patterns: PNG, JPEG, BMP, GIF, TIFF, WebP.")],
    checkpoint_path: Annotated[Optional[Path], typer.Option(
        "--checkpoint", "-c", show_default=False, help="A checkpoint (default: the built-in model).")] = None,
    preprocess: Annotated[bool, typer.Option(
        "--preprocess/--no-preprocess",
        help="Make each image look like an MNIST digit first (polarity, cleanup, 20 px box, centre of "
             "mass); --no-preprocess only resizes it to 28x28.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per image.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 input the model saw in the terminal.")] = False,
    save_inputs: Annotated[Optional[Path], typer.Option(
        show_default=False, help="Write the 28x28 inputs the model saw as PNGs into this directory.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 1000,
    device: DeviceOpt = Device.cpu,
) -> None:
    """Read the digit in each image: a table of predictions with confidence and top 3.
    Exit code 1 when any image could not be read (the others are still predicted)."""
    with user_errors():
        import json

        from mnistctl import checkpoint, engine
        from mnistctl.predict import predict_files

        dev = engine.resolve_device(device.value)
        ckpt, source = checkpoint.load_or_pretrained(checkpoint_path)
        model = engine.model_from_checkpoint(ckpt, dev, source)
        results = predict_files(paths, ckpt, model, preprocess, batch_size, dev)
        classes = list(ckpt["classes"])
        saved = _save_inputs(results, save_inputs) if save_inputs is not None else []

    failed = sum(r.error is not None for r in results)
    if as_json:
        typer.echo(json.dumps([{**r.to_dict(classes), "model": source} for r in results], indent=2))
    else:
        about = f", {_pct(ckpt['test_accuracy'])} on the MNIST test set" if "test_accuracy" in ckpt else ""
        console.print(f"Model: {source} (nf={ckpt['model_config']['nf']}, {ckpt['dataset']}{about})",
                      highlight=False, soft_wrap=True)
        table = Table()
        for col, justify in (("file", "left"), ("digit" if ckpt["dataset"] == "mnist" else "class", "center"),
                             ("confidence", "right"), ("top 3", "left")):
            table.add_column(col, justify=justify, overflow="fold")
        for r in results:
            if r.error:
                table.add_row(r.path, "[red]-[/]", "", Text(f"error: {r.error}", style="red"))
            else:
                top3 = "  ".join(f"{c} {100 * p:.1f}%" for c, p in r.top(3, classes))
                table.add_row(r.path, f"[bold]{r.label}[/]", f"{100 * r.confidence:.1f}%", top3)
        console.print(table)
        if show:
            from mnistctl.terminal import digit_text

            for r in results:
                if r.image is not None:
                    grid = Table.grid(padding=(0, 2))
                    grid.add_row(digit_text(r.image.tolist()), Text.assemble(
                        (f"{r.path}\n", "dim"), ("→ ", ""), (str(r.label), "bold green"),
                        f"  ({100 * r.confidence:.1f}%)"))
                    console.print(grid)
        for path in saved:
            console.print(f"Saved input {path}", highlight=False)
        if failed:
            err_console.print(f"{failed} of {len(results)} image{'s' if len(results) > 1 else ''} could not be read.",
                              highlight=False)
    if failed:
        raise typer.Exit(1)


def _save_inputs(results, directory: Path) -> list[Path]:
    from PIL import Image

    from mnistctl.fsutil import atomic_path

    out, used = [], set()
    for r in results:
        if r.image is None:
            continue
        stem = Path(r.path).stem
        name, i = f"{stem}.png", 1
        while name in used:
            i += 1
            name = f"{stem}-{i}.png"
        used.add(name)
        with atomic_path(directory / name) as tmp:
            Image.fromarray(r.image).save(tmp, format="PNG")
        out.append(directory / name)
    return out


@app.command()
def export(
    checkpoint_path: Annotated[Path, typer.Argument(help="A checkpoint written by train (best.pt).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the inference-only copy.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Write an inference-only copy of a checkpoint (no optimizer state; a third of the size),
    recording its test accuracy when the test set is downloaded."""
    with user_errors():
        from mnistctl import checkpoint, engine
        from mnistctl.errors import DataError

        ckpt = checkpoint.load(checkpoint_path)
        extra = {}
        try:
            report, _ = engine.evaluate_checkpoint(ckpt, "test", data_dir=data_dir, source=checkpoint_path)
            extra["test_accuracy"] = report.accuracy
        except DataError:
            pass
        checkpoint.save(output, checkpoint.export(ckpt, extra))
    size = output.stat().st_size
    acc = f", test accuracy {_pct(extra['test_accuracy'])}" if extra else " (test set not downloaded: accuracy not recorded)"
    console.print(f"Saved {output} ({_human_size(size)}{acc})", highlight=False, soft_wrap=True)


def _show(fig, path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
        err_console.print(f"No display to show the figure on; it is saved in {path}.", highlight=False)
        return
    manager = plt.figure().canvas.manager
    manager.canvas.figure = fig
    fig.set_canvas(manager.canvas)
    plt.show()


def main() -> None:
    app()
