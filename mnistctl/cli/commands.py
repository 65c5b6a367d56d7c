"""The command line: each command declares its options, calls one core function, renders the result.

Logic lives in the core (``mnistctl.api`` and the wings under it); how results look lives in
``mnistctl.cli.render``. The app, the shared choices and the handling of user errors are in
``mnistctl.cli.common``; the ``train`` command, whose options come from the settings, in
``mnistctl.cli.train``. Only typer, rich and torch-free project modules are imported at the top,
so that ``mnistctl --help`` stays fast; the rest is imported inside the commands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mnistctl import __version__
from mnistctl.cli.common import (
    OPTION_OF,
    CheckpointOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    EvalSplit,
    ExportFormat,
    LogFormat,
    Optimizer,
    Schedule,
    Split,
    app,
    command,
    console,
    err_console,
    models_given,
    say,
    user_errors,
)
from mnistctl.cli.predict import predict
from mnistctl.cli.train import train
from mnistctl.cli.tune import tune
from mnistctl.config import INFERENCE_BATCH, DataConfig
from mnistctl.data.download import Pace
from mnistctl.errors import ConfigError, MnistctlError, Terminated
from mnistctl.recipes import MAX_UPLOAD_MB, UPLOAD_MB

__all__ = ["OPTION_OF", "Optimizer", "Schedule", "app", "main", "train"]


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
    dataset: DatasetOpt = "mnist",
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
    from mnistctl.cli.render import DownloadView, download_table
    from mnistctl.data.download import download as fetch_all

    view = DownloadView(err_console)
    with user_errors():
        info = datasets.get_dataset(dataset)
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
    split: Annotated[Split, typer.Option(help="Which split to draw from.")] = "train",
    seed: Annotated[int, typer.Option(help="Random seed for the choice of digits.")] = 0,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("samples.png"),
    terminal: Annotated[bool, typer.Option("--terminal", "-t", help="Also draw the digits in the terminal.")] = False,
    dataset: DatasetOpt = "mnist",
    data_dir: DataDirOpt = None,
) -> None:
    """Save a grid of random digits with their labels as a PNG (and show them in the terminal)."""
    with user_errors():
        from mnistctl.data.splits import write_samples

        grid = write_samples(DataConfig(dataset=dataset), split, count, seed, output, data_dir)
    if terminal:
        from mnistctl.cli.terminal import colourless, digit_grid

        console.print(digit_grid(grid.images.tolist(), grid.names, width=console.width, plain=colourless(console)))
    say(f"Saved {len(grid.names)} {split} digits to [bold]{grid.path}[/]")


command()(train)  # in mnistctl.cli.train; registered here to keep the commands in this order
command()(tune)  # in mnistctl.cli.tune


@command()
def evaluate(
    checkpoint_arg: Annotated[list[Path] | None, typer.Argument(
        metavar="CHECKPOINT", show_default=False,
        help="The model to score (the same as --checkpoint); several are scored as an ensemble.")] = None,
    checkpoint_path: CheckpointOpt = None,
    split: Annotated[EvalSplit, typer.Option(help="Score on the test set or the validation part.")] = "test",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = INFERENCE_BATCH,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")] = False,
    plots: Annotated[Path | None, typer.Option(
        show_default=False, help="Write confusion.png and mistakes.png into this directory.")] = None,
    data_dir: DataDirOpt = None,
    images: Annotated[Path | None, typer.Option(
        show_default=False, metavar="<folder or csv>",
        help="Score on your own labelled pictures instead, read as predict reads them: a folder with one "
             "sub-folder per class (7/ holds sevens), or a CSV file of path,label rows.")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, max=256, show_default=False,
        help="With --images: processes preparing pictures [default: one per core].")] = None,
) -> None:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix of a checkpoint.

    Given several checkpoints, scores their ensemble: the average of their class probabilities.
    With --images, scores your own labelled pictures, and says how right the sure and the unsure
    answers are.
    """
    with user_errors():
        from mnistctl import api
        from mnistctl.cli.render import confusion_table, eval_summary, per_class_table, pictures_summary
        from mnistctl.inference.evaluation import write_figures

        models = models_given(checkpoint_arg, checkpoint_path)
        if images is not None:
            scored = api.evaluate_pictures(models, images, device="cpu" if device == "auto" else device, jobs=jobs)
            written = write_figures(scored, plots) if plots is not None else []
            if as_json:
                typer.echo(json.dumps(scored.to_dict([str(m) for m in models or []]) | {
                    "plots": [str(p) for p in written]}, indent=2))
                return
            say(eval_summary(scored))
            say(pictures_summary(scored))
            console.print(per_class_table(scored.report, console))
            console.print(confusion_table(scored.report, console))
            for path in written:
                say(f"Saved {path}")
            return
        result = api.evaluate(models, split, data_dir=data_dir, device=device, batch_size=batch_size)
        written = write_figures(result, plots) if plots is not None else []
    if as_json:
        typer.echo(json.dumps(result.to_dict(models, written), indent=2))
        return
    say(eval_summary(result))
    console.print(per_class_table(result.report, console))
    console.print(confusion_table(result.report, console))
    for path in written:
        say(f"Saved {path}")


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
    say(f"Saved {path} ({len(labels)} run{'s' if len(labels) > 1 else ''}: {', '.join(labels)})")
    if show:
        _show(fig, path)


command()(predict)  # in mnistctl.cli.predict


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
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="Fit a temperature on the validation split so that the confidences match the "
                            "accuracy (a model trained with label smoothing is otherwise never more than "
                            "about 90% sure). Predictions do not change.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Export a trained model for deployment: ONNX, or an inference-only mnistctl checkpoint.

    Either records the model's test accuracy when the test set is downloaded.
    """
    with user_errors():
        from mnistctl import api
        from mnistctl.cli.render import human_size, pct

        models = models_given(checkpoint_arg, checkpoint_path)
        if models is None:
            raise ConfigError("give the checkpoint to export: mnistctl export runs/NAME/best.pt -o model.onnx")
        exported = api.export(models, output, format=fmt, data_dir=data_dir, calibrate=calibrate)
    acc = exported.test_accuracy
    about = f", test accuracy {pct(acc)}" if acc is not None else " (test set not downloaded: accuracy not recorded)"
    if exported.temperatures:
        about += f", temperature {', '.join(f'{t:g}' for t in exported.temperatures)} fitted on the validation split"
    say(f"Saved {output}: {exported.description} ({human_size(output.stat().st_size)}{about})")


@command()
def serve(
    checkpoint_path: CheckpointOpt = None,
    host: Annotated[str, typer.Option(
        help="The address to listen on. The default answers only this machine; 0.0.0.0 answers every "
             "machine that can reach this one (see README before you do).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The TCP port (0: any free port).")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.001, max=MAX_UPLOAD_MB, help="Refuse larger uploads with 413 (megabytes).")]
    = UPLOAD_MB,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", show_default=False, metavar="<name>",
        help="Also answer requests for this host name (repeat it for several; '*': any). By default only "
             "this machine's names (localhost, 127.0.0.1, ::1) and the --host address are answered.")] = None,
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="Log each request on stderr.")] = True,
    log_format: Annotated[LogFormat, typer.Option(
        help="The access log's lines: text, or one JSON object per request (for log collectors).")] = "text",
    workers: Annotated[int | None, typer.Option(
        min=1, max=64, show_default=False,
        help="Processes answering requests, each with its own copy of the model [default: one per core, at most "
             "8].")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Serve a page to draw digits on and a JSON prediction API (POST /predict; GET /model, /health,
    /ready, /metrics).

    Needs the serve extra: pip install 'mnistctl\\[serve]'. Ctrl-C stops it.
    """
    with user_errors():
        from mnistctl import api
        from mnistctl.cli.render import model_line
        from mnistctl.images.preparers import usable_cores
        from mnistctl.serve import app as core
        from mnistctl.serve import server

        processes = workers or min(usable_cores(), server.DEFAULT_WORKERS_AT_MOST)
        options = server.ServeOptions(
            model=[str(p) for p in checkpoint_path] if checkpoint_path else None, device=device,
            max_upload=int(max_upload_mb * 1024 * 1024), hosts=core.allowed_hosts(host, tuple(allow_host or ())),
            access_log=log_format if access_log else None, workers=processes,
            threads=max(1, usable_cores() // processes) if processes > 1 else None)
        clf = api.load(checkpoint_path, device=device, threads=options.threads)  # here too: errors before serving
        listener = core.listen(host, port)
        say(model_line(clf))
        say(f"Serving at {listener.url}  (draw a digit there; POST an image to {listener.url}/predict; "
             "Ctrl-C stops)" + (f"; {processes} worker processes" if processes > 1 else ""))
        if host not in ("127.0.0.1", "localhost", "::1"):
            err_console.print(f"Listening on {host}: anyone who can reach this machine on port {port} can use "
                              "the model.", style="yellow", highlight=False, soft_wrap=True)
        try:
            server.run(options, listener, clf)
        except KeyboardInterrupt:
            pass  # uvicorn already stopped cleanly; it re-raises the signal afterwards
    say("Stopped.")


def _show(fig: Any, path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    if matplotlib.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
        err_console.print(f"No display to show the figure on; it is saved in {path}.", highlight=False)
        return
    manager = plt.figure().canvas.manager
    assert manager is not None  # a figure on an interactive backend has one
    manager.canvas.figure = fig
    fig.set_canvas(manager.canvas)
    plt.show()


def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise Terminated


def _one_of_a_group() -> bool:
    """This process is one of several started by torchrun."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _leave(code: object) -> None:
    """End a process of a group now, its files written and its output flushed: the interpreter's
    own ending would tear down gloo's threads, which, with a partner gone or still closing, can
    abort the process ("terminate called without an active exception") after its work is done."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def main() -> None:
    """The console script: SIGTERM unwinds like Ctrl-C; an error that is not the user's (a bug)
    keeps its traceback and asks to be reported. PyTorch's C++ warnings (c10d's retries and their
    stack frames, when processes of a group cannot meet) stay off stderr: the CLI says what went
    wrong in one line; TORCH_CPP_LOG_LEVEL set by a user wins."""
    import signal

    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(standalone_mode=True)
    except SystemExit as done:
        if _one_of_a_group():
            _leave(done.code)
        raise
    except BrokenPipeError:  # the reader went away (`mnistctl predict ... | head`): nothing more to say
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
