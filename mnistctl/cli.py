"""The command line: each command declares its options, calls one core function, renders the result.

Logic lives in the core modules (``runs``, ``evaluation``, ``inference``, ``predict``,
``download``); how results look lives in ``render``. Only typer, rich and torch-free project
modules are imported at the top, so that ``mnistctl --help`` stays fast; the rest is imported
inside the commands.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from mnistctl import __version__
from mnistctl.config import INFERENCE_BATCH, DataConfig, ModelConfig, TrainConfig, default
from mnistctl.datasets import DATA_DIR_ENV, REGISTRY
from mnistctl.download import Pace
from mnistctl.errors import (
    FIXABLE_ERRNOS,
    ConfigError,
    DistributedError,
    MnistctlError,
    RunExistsError,
    Terminated,
    TrainingInterrupted,
)
from mnistctl.recipes import DEVICES, OPTIMIZERS, PRESETS, SCHEDULES, SPLITS, describe_preset

app = typer.Typer(
    name="mnistctl",
    help="Download MNIST, train a CNN on it, evaluate it, read your own digits, plot the curves, export and "
         "serve the model.",
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

# the option that sets each core setting: core errors name settings, the CLI names options
OPTION_OF = {"nf": "--nf", "dropout": "--dropout", "epochs": "--epochs", "epoch_fraction": "--epoch-fraction",
             "lr": "--lr", "batch_size": "--batch-size",
             "optimizer": "--optimizer", "schedule": "--schedule", "weight_decay": "--weight-decay",
             "label_smoothing": "--label-smoothing", "ema": "--ema", "seed": "--seed", "augment": "--augment",
             "val_fraction": "--val-split", "dataset": "--dataset", "device": "--device", "run_dir": "--run-dir",
             "patience": "--patience", "tensorboard": "--tensorboard", "init": "--init", "resume": "--resume",
             "config": "--config",
             "split": "--split", "count": "--count", "preset": "--preset", "output": "--output", "format": "--format"}


CheckpointOpt = Annotated[list[Path] | None, typer.Option(
    "--checkpoint", "-c", show_default=False, metavar="<path>",
    help="A checkpoint written by train, or a model.onnx written by export (default: the built-in model). "
         "Repeat it to average several models' probabilities (an ensemble).")]
DatasetOpt = Annotated[DatasetName, typer.Option("--dataset", "-d", help="Which MNIST-format data set.")]
DeviceOpt = Annotated[Device, typer.Option(help="Where to compute: auto picks cuda, then mps, then cpu.")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", envvar=DATA_DIR_ENV, show_default=False,
    help="Where data sets are stored (default: the per-user cache directory).")]

def _message(exc: MnistctlError) -> str:
    """The core's message, worded with this CLI's option names where it is about a setting."""
    if isinstance(exc, RunExistsError):
        return (f"run directory {exc.run_dir} already holds {' and '.join(exc.taken)}: choose another "
                f"--name/--run-dir, or continue it with --resume {exc.last}")
    if isinstance(exc, ConfigError) and exc.problem and exc.setting in OPTION_OF:
        return f"{OPTION_OF[exc.setting]} {exc.problem}"
    return str(exc)


class _errors:
    """Whether this is a secondary process of a distributed run (torchrun), whose errors, being
    process 0's too, only process 0 reports; a lost connection each reports itself."""

    secondary = False


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn project errors, and OS errors a user can fix, into one line on stderr and exit code 1;
    Ctrl-C into exit 130, SIGTERM into 143."""
    try:
        try:
            yield
        except MnistctlError as exc:
            if _errors.secondary and not isinstance(exc, DistributedError):
                raise typer.Exit(exc.exit_code if isinstance(exc, TrainingInterrupted) else 1) from None
            raise
    except TrainingInterrupted as exc:
        err_console.print(Text.assemble(("Interrupted: ", "bold yellow"), str(exc)), soft_wrap=True)
        err_console.print(f"Resume with: mnistctl train --resume {exc.checkpoint}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except MnistctlError as exc:
        _error(_message(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        if exc.errno not in FIXABLE_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where} ({FIXABLE_ERRNOS[exc.errno]})")
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        err_console.print(Text("Terminated." if isinstance(exc, Terminated) else "Interrupted.", style="yellow"))
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None


def _error(message: str) -> None:
    err_console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)


def command(*args: Any, **kwargs: Any):
    """``app.command``, with the docstring's paragraphs unwrapped so that --help wraps them to the
    terminal's width instead of breaking lines where the source does."""
    import inspect

    def register(func):
        paragraphs = inspect.cleandoc(func.__doc__ or "").split("\n\n")
        func.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
        return app.command(*args, **kwargs)(func)
    return register


def _models(arguments: list[Path] | None, options: list[Path] | None) -> list[Path] | None:
    """The models named as arguments and with --checkpoint, together (several: an ensemble)."""
    from mnistctl.inference import model_files

    return model_files([*(arguments or []), *(options or [])]) or None


def _say(text: str) -> None:
    """A line of output: wrapped at words on a terminal, left whole in a pipe or a file."""
    console.print(text, highlight=False, soft_wrap=not console.is_terminal)


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


@command()
def download(
    dataset: DatasetOpt = DatasetName.mnist,
    data_dir: DataDirOpt = None,
    mirror: Annotated[list[str] | None, typer.Option(
        "--mirror", "-m", show_default=False,
        help="A mirror to try first: http(s)://, file:// or a local directory. Repeatable; "
             "$MNISTCTL_MIRROR (whitespace-separated) adds more.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Fetch again even if valid files are present.")] = False,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Give up on a mirror that sends nothing for this many seconds.")] = Pace.timeout,
    deadline: Annotated[float, typer.Option(
        min=1, help="Give up on a mirror that takes longer than this per file (seconds), or that averages "
                    f"under {Pace.min_rate / 1024:g} kB/s after {Pace.grace:g} s; the next mirror is tried.",
    )] = Pace.deadline,
) -> None:
    """Fetch a data set's four IDX files, verify their checksums and store them."""
    from mnistctl import datasets
    from mnistctl.download import download as fetch_all
    from mnistctl.render import DownloadView, download_table

    view = DownloadView(err_console)
    with user_errors():
        info = datasets.get_dataset(dataset.value)
        directory = datasets.dataset_dir(info, data_dir)
        try:
            results = fetch_all(info, directory, datasets.resolve_mirrors(info, mirror), force=force,
                                progress=view, pace=Pace(timeout=timeout, deadline=deadline))
        finally:
            view.close()
    console.print(download_table(f"{info.title}: {directory}", results))


@command()
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
        from mnistctl.data import write_samples

        grid = write_samples(DataConfig(dataset=dataset.value), split.value, count, seed, output, data_dir)
    if terminal:
        from mnistctl.terminal import colourless, digit_grid

        console.print(digit_grid(grid.images.tolist(), grid.names, width=console.width, plain=colourless(console)))
    _say(f"Saved {len(grid.names)} {split.value} digits to [bold]{grid.path}[/]")


_RECIPE, _MODEL, _DATA, _RUN = "Recipe", "Model", "Data", "Run"


_PARAM = {"val_fraction": "val_split"}


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether an option was set on the command line or by its environment variable."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@command()
def train(
    ctx: typer.Context,
    preset: Annotated[Preset, typer.Option(
        rich_help_panel=_RECIPE,
        help="A recipe: " + "; ".join(f"'{k}' ({describe_preset(k)})" for k in PRESETS)
             + ". Options given explicitly override the preset.")] = Preset.original,
    epochs: Annotated[int, typer.Option(
        rich_help_panel=_RECIPE,
        help="Passes over the training images.")] = default(TrainConfig, "epochs"),
    epoch_fraction: Annotated[float, typer.Option(
        rich_help_panel=_RECIPE,
        help="Share of the training images each epoch trains on, a different random part each time "
             "(such as 0.5: half an epoch's steps and time; 1: all).")] = default(TrainConfig, "epoch_fraction"),
    lr: Annotated[float, typer.Option(
        rich_help_panel=_RECIPE, help="Peak learning rate.")] = default(TrainConfig, "lr"),
    batch_size: Annotated[int, typer.Option(
        rich_help_panel=_RECIPE,
        help="Images per training step (per process under torchrun).")] = default(TrainConfig, "batch_size"),
    optimizer: Annotated[Optimizer, typer.Option(
        rich_help_panel=_RECIPE, help="Optimizer.")] = Optimizer(default(TrainConfig, "optimizer")),
    schedule: Annotated[Schedule, typer.Option(
        rich_help_panel=_RECIPE, help="Learning-rate schedule over the whole run.")] = Schedule(
        default(TrainConfig, "schedule")),
    weight_decay: Annotated[float, typer.Option(
        rich_help_panel=_RECIPE, help="Weight decay.")] = default(TrainConfig, "weight_decay"),
    label_smoothing: Annotated[float, typer.Option(
        rich_help_panel=_RECIPE,
        help="Label smoothing of the cross-entropy.")] = default(TrainConfig, "label_smoothing"),
    ema: Annotated[float, typer.Option(
        rich_help_panel=_RECIPE,
        help="Keep an exponential moving average of the weights with this decay per step (such as 0.999) and "
             "validate and save it instead of the raw weights (0: off).")] = default(TrainConfig, "ema"),
    augment: Annotated[bool, typer.Option(
        "--augment/--no-augment", rich_help_panel=_RECIPE,
        help="Random small rotations, shifts and scaling, batched on tensors.")] = default(TrainConfig, "augment"),
    seed: Annotated[int, typer.Option(
        rich_help_panel=_RECIPE,
        help="Seed for initialisation, shuffling and augmentation.")] = default(TrainConfig, "seed"),
    nf: Annotated[int, typer.Option(
        rich_help_panel=_MODEL,
        help="Filters of the first convolution (then 2nf, 4nf).")] = default(ModelConfig, "nf"),
    dropout: Annotated[float, typer.Option(
        rich_help_panel=_MODEL,
        help="Dropout after the first dense layer.")] = default(ModelConfig, "dropout"),
    dataset: Annotated[DatasetName, typer.Option(
        "--dataset", "-d", rich_help_panel=_DATA, help="Which MNIST-format data set.")] = DatasetName(
        default(DataConfig, "dataset")),
    val_split: Annotated[float, typer.Option(
        show_default=f"{default(DataConfig, 'val_fraction'):.4f}: 5,000 of MNIST's 60,000", rich_help_panel=_DATA,
        help="Fraction of the training file held out for validation.")] = default(DataConfig, "val_fraction"),
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", envvar=DATA_DIR_ENV, show_default=False, rich_help_panel=_DATA,
        help="Where data sets are stored (default: the per-user cache directory).")] = None,
    device: Annotated[Device, typer.Option(
        rich_help_panel=_RUN, help="Where to compute: auto picks cuda, then mps, then cpu.")] = Device.auto,
    run_dir: Annotated[Path | None, typer.Option(
        show_default="runs/NAME", rich_help_panel=_RUN, help="Directory for checkpoints, history and plot.")] = None,
    name: Annotated[str | None, typer.Option(
        show_default="DATASET-nfN-TIMESTAMP", rich_help_panel=_RUN, help="Run name under runs/.")] = None,
    patience: Annotated[int, typer.Option(
        min=0, rich_help_panel=_RECIPE,
        help="Stop after this many epochs without a better validation accuracy (0: never).")]
    = default(TrainConfig, "patience"),
    config: Annotated[Path | None, typer.Option(
        "--config", show_default=False, rich_help_panel=_RUN,
        help="Read the settings from a JSON file (a run's config.json, or {\"nf\": 32, ...}); options given "
             "here override it.")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", rich_help_panel=_RUN,
        help="Print the resolved settings as JSON (config.json's format) and exit without training.")] = False,
    resume: Annotated[Path | None, typer.Option(
        show_default=False, rich_help_panel=_RUN,
        help="Continue a run from its last.pt, with the run's own settings; a finished run goes on "
             "when given more --epochs.")] = None,
    init: Annotated[str | None, typer.Option(
        show_default=False, rich_help_panel=_RUN, metavar="<path|builtin>",
        help="Fine-tune: start a new run from this checkpoint's weights ('builtin': the built-in model's), "
             "with a fresh optimizer and schedule.")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, show_default="PyTorch's choice", rich_help_panel=_RUN,
        help="CPU threads for PyTorch (fewer on a shared machine).")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", rich_help_panel=_RUN, help="No progress or epoch lines; only the final summary.")] = False,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", rich_help_panel=_RUN,
        help="Also write the losses, learning rate and accuracies as TensorBoard event files in the run "
             "directory (tensorboard --logdir runs).")] = False,
    save_model: Annotated[bool, typer.Option(
        "--save-model", rich_help_panel=_RUN,
        help="Also write the final model to ./mnist_cnn.pt, like the original script.")] = False,
) -> None:
    """Train the CNN, with a progress bar per epoch and a growing table of epochs.

    Writes config.json, best.pt, last.pt, history.json, metrics.csv and loss.png to the run directory.

    In several processes: torchrun --standalone --nproc-per-node 2 -m mnistctl train ... (see the README).
    """
    values: dict[str, Any] = {
        "epochs": epochs, "epoch_fraction": epoch_fraction, "lr": lr, "batch_size": batch_size,
        "optimizer": optimizer.value, "schedule": schedule.value,
        "weight_decay": weight_decay, "label_smoothing": label_smoothing, "ema": ema, "augment": augment, "seed": seed,
        "nf": nf, "dropout": dropout, "dataset": dataset.value, "val_fraction": val_split, "patience": patience}
    # only what was given on the command line: a config file, the preset or a resumed run supplies the rest
    settings = {k: v for k, v in values.items() if _given(ctx, _PARAM.get(k, k))}
    with user_errors():
        from mnistctl import accel, distributed

        if threads is not None:
            accel.set_threads(threads)
        group = distributed.join(device.value)  # one process, or one of several under torchrun
        _errors.secondary = not group.main  # the others' errors are process 0's too: it alone says them
        try:
            result = _train(ctx, group, settings, preset, config, resume, run_dir, name, init, print_config, quiet,
                            save_model, tensorboard, data_dir)
        finally:
            group.close()
    if result is None or not group.main:
        return
    from mnistctl.render import train_summary

    for line in train_summary(result):
        _say(line)


def _train(ctx: typer.Context, group, settings: dict[str, Any], preset, config: Path | None, resume: Path | None,
           run_dir: Path | None, name: str | None, init: str | None, print_config: bool, quiet: bool,
           save_model: bool, tensorboard: bool, data_dir: Path | None):
    """Plan the run and train it (every process of a group does), showing progress on process 0."""
    from mnistctl import runs
    from mnistctl.render import train_header, train_view

    chosen = preset.value if _given(ctx, "preset") else None
    if config is not None:
        from_file, file_settings = runs.read_config(config)
        chosen, settings = chosen or from_file, {**file_settings, **settings}
    plan = runs.plan_run(chosen, settings, resume=resume, run_dir=run_dir, name=name, init=init)
    for warning in plan.warnings if group.main else ():
        err_console.print(Text.assemble(("Warning: ", "bold yellow"), warning), soft_wrap=True)
    if print_config:
        if group.main:
            typer.echo(json.dumps(plan.config(), indent=2))
        return None
    view = train_view(console, quiet or not group.main)

    def ready(info) -> None:
        if not quiet and group.main:
            _say(train_header(plan, info))
        view.start(info.history)

    try:
        return runs.train(plan, group.device, data_dir, callbacks=view, on_ready=ready,
                          save_model=Path("mnist_cnn.pt") if save_model else None, tensorboard=tensorboard,
                          group=group)
    finally:
        view.stop()


@command()
def evaluate(
    checkpoint_arg: Annotated[list[Path] | None, typer.Argument(
        metavar="CHECKPOINT", show_default=False,
        help="The model to score (the same as --checkpoint); several are scored as an ensemble.")] = None,
    checkpoint_path: CheckpointOpt = None,
    split: Annotated[EvalSplit, typer.Option(help="Score on the test set or the validation part.")] = EvalSplit.test,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = INFERENCE_BATCH,
    device: DeviceOpt = Device.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
    plots: Annotated[Path | None, typer.Option(
        show_default=False, help="Write confusion.png and mistakes.png into this directory.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a checkpoint.

    Given several checkpoints, scores their ensemble: the average of their class probabilities.
    """
    with user_errors():
        from mnistctl import evaluation
        from mnistctl.inference import load_classifier
        from mnistctl.render import confusion_table, eval_summary, per_class_table

        models = _models(checkpoint_arg, checkpoint_path)
        clf = load_classifier(models, device.value, batch_size)
        result = evaluation.evaluate(clf, split.value, data_dir)
        written = evaluation.write_figures(result, plots) if plots is not None else []
    if as_json:
        single = str(models[0]) if models and len(models) == 1 else None
        typer.echo(json.dumps({"checkpoint": single, "ensemble": [str(m) for m in models] if single is None and models
                               else None, "model": clf.source,
                               "backend": clf.backend, "dataset": clf.dataset,
                               "model_config": clf.model_config.to_dict(), "epoch": clf.epoch,
                               **result.report.to_dict(), "plots": [str(p) for p in written]}, indent=2))
        return
    _say(eval_summary(result))
    console.print(per_class_table(result.report, console))
    console.print(confusion_table(result.report, console))
    for path in written:
        _say(f"Saved {path}")


@command()
def plot(
    paths: Annotated[list[Path], typer.Argument(help="Run directories, history.json files or checkpoints.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("loss.png"),
    show: Annotated[bool, typer.Option(help="Also open the figure in a window, where there is a display.")] = False,
    error_log: Annotated[bool, typer.Option(
        "--error-log", help="Plot the error rate on a log axis instead of the accuracy (where 98-99.7% differ).")]
    = False,
) -> None:
    """Training and validation loss (and accuracy) per epoch; several runs share the axes.

    A run directory's per-step training loss (metrics.csv) is drawn under its per-epoch points.
    """
    with user_errors():
        from mnistctl.plotting import plot_runs

        fig, labels, path = plot_runs(paths, output, error_log)
    _say(f"Saved {path} ({len(labels)} run{'s' if len(labels) > 1 else ''}: {', '.join(labels)})")
    if show:
        _show(fig, path)


@command()
def predict(
    paths: Annotated[list[str], typer.Argument(
        metavar="IMAGE",
        help="Image files, directories (their images, sorted), glob patterns (PNG, JPEG, BMP, GIF, TIFF, WebP), "
             "or - for one image on standard input.")],
    checkpoint_path: CheckpointOpt = None,
    preprocess: Annotated[bool, typer.Option(
        "--preprocess/--no-preprocess",
        help="Make each image look like an MNIST digit first (polarity, cleanup, 20 px box, centre of "
             "mass); --no-preprocess only resizes it to 28x28.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per image.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV: one row per image, for spreadsheets.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 input the model saw in the terminal.")] = False,
    save_inputs: Annotated[Path | None, typer.Option(
        show_default=False, help="Write the 28x28 inputs the model saw as PNGs into this directory.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = INFERENCE_BATCH,
    device: DeviceOpt = Device.cpu,
) -> None:
    """Read the digit in each image: a table of predictions with confidence and top 3.

    A prediction is marked unsure (? in the table, "unsure" in JSON and CSV) when the model gives it
    less than 80% or the picture does not look like a single digit. Exit code 1 when any image could
    not be read (the others are still predicted).
    """
    import sys

    with user_errors():
        from mnistctl import predict as core
        from mnistctl.inference import load_classifier
        from mnistctl.render import PredictProgress, input_panels, model_line, predictions_table

        if as_json and as_csv:
            raise ConfigError("choose one of --json and --csv")
        stdin = sys.stdin.buffer.read() if core.STDIN in paths and not sys.stdin.isatty() else None
        clf = load_classifier(checkpoint_path, device.value, batch_size)
        with PredictProgress(err_console) as progress:
            results = core.predict_files(paths, clf, preprocess, stdin=stdin, progress=progress.update)
        saved = core.save_inputs(results, save_inputs) if save_inputs is not None else []
    failed = sum(r.error is not None for r in results)
    if as_json:
        typer.echo(json.dumps([core.prediction_json(r, clf) for r in results], indent=2))
    elif as_csv:
        typer.echo(core.to_csv(results, clf.classes), nl=False)
    else:
        _say(model_line(clf))
        console.print(predictions_table(results, clf.dataset))
        from mnistctl.terminal import colourless

        for panel in input_panels(results, colourless(console)) if show else []:
            console.print(panel)
        if save_inputs is not None:
            _say(f"Saved {len(saved)} input{'s' if len(saved) != 1 else ''} the model saw to {save_inputs}")
    if failed:
        first = next(r for r in results if r.error is not None)
        many = f"{failed} of {len(results)} images could not be read; the first, " if failed > 1 else "could not read "
        _error(f"{many}{first.path}: {first.error}")
        raise typer.Exit(1)


ExportFormat = _choices("ExportFormat", ("onnx", "mnistctl"))


@command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write: model.onnx or model.pt.")],
    checkpoint_arg: Annotated[list[Path] | None, typer.Argument(
        metavar="CHECKPOINT", show_default=False,
        help="A checkpoint written by train (best.pt); several export as one ONNX ensemble.")] = None,
    checkpoint_path: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", "-c", show_default=False, metavar="<path>",
        help="The same as the CHECKPOINT argument.")] = None,
    fmt: Annotated[ExportFormat | None, typer.Option(
        "--format", "-f", show_default="from the extension of --output",
        help="onnx: a model for ONNX Runtime and other runtimes; mnistctl: an inference-only checkpoint.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export a trained model for deployment: ONNX, or an inference-only mnistctl checkpoint.

    Either records the model's test accuracy when the test set is downloaded.
    """
    with user_errors():
        from mnistctl.export import export_model
        from mnistctl.render import human_size, pct

        models = _models(checkpoint_arg, checkpoint_path)
        if models is None:
            raise ConfigError("give the checkpoint to export: mnistctl export runs/NAME/best.pt -o model.onnx")
        exported = export_model(models, output, fmt.value if fmt else None, data_dir)
    acc = exported.test_accuracy
    about = f", test accuracy {pct(acc)}" if acc is not None else " (test set not downloaded: accuracy not recorded)"
    _say(f"Saved {output}: {exported.description} ({human_size(output.stat().st_size)}{about})")


@command()
def serve(
    checkpoint_path: CheckpointOpt = None,
    host: Annotated[str, typer.Option(
        help="The address to listen on. The default answers only this machine; 0.0.0.0 answers every "
             "machine that can reach this one (see README before you do).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The TCP port (0: any free port).")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.001, help="Refuse larger uploads with 413 (megabytes).")] = 10.0,
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="Log each request on stderr.")] = True,
    device: DeviceOpt = Device.cpu,
) -> None:
    """Serve a page to draw digits on and a JSON prediction API (POST /predict, GET /model, GET /health).

    Needs the serve extra: pip install 'mnistctl\\[serve]'. Ctrl-C stops it.
    """
    with user_errors():
        from mnistctl import serve as core
        from mnistctl.inference import load_classifier
        from mnistctl.render import model_line

        clf = load_classifier(checkpoint_path, device.value)
        web = core.create_app(clf, max_upload=int(max_upload_mb * 1024 * 1024))
        listener = core.listen(host, port)
        _say(model_line(clf))
        _say(f"Serving at {listener.url}  (draw a digit there; POST an image to {listener.url}/predict; "
             "Ctrl-C stops)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            err_console.print(f"Listening on {host}: anyone who can reach this machine on port {port} can use "
                              "the model.", style="yellow", highlight=False, soft_wrap=True)
        try:
            core.run(web, listener, access_log=access_log)
        except KeyboardInterrupt:
            pass  # uvicorn already stopped cleanly; it re-raises the signal afterwards
    _say("Stopped.")


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


def _terminate(signum, frame) -> None:  # noqa: ARG001
    raise Terminated


def main() -> None:
    """The console script: SIGTERM unwinds like Ctrl-C; an error that is not the user's (a bug)
    keeps its traceback and asks to be reported."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except BrokenPipeError:  # the reader went away (`mnistctl predict ... | head`): nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, as a shell reports it
    except Exception as exc:
        import traceback

        if isinstance(exc, (MnistctlError, OSError)):  # a user error raised outside a command's own guard
            try:
                with user_errors():
                    raise exc
            except typer.Exit as done:
                sys.exit(done.exit_code)
            except OSError:
                pass  # not one a user can fix: a bug
        traceback.print_exception(exc)
        print(f"\nThis is a bug in mnistctl {__version__} ({type(exc).__name__}), not something you did. Please "
              "report it with the traceback above and the command you ran.", file=sys.stderr)
        sys.exit(70)  # EX_SOFTWARE
