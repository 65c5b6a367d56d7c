"""The command line's shared parts: the Typer app and its consoles, the choices and option names
the commands share, and the one way a user error becomes a line on stderr and an exit code.

Imports only typer, rich and torch-free project modules, so that ``mnistctl --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import typer
from rich.console import Console
from rich.text import Text

from mnistctl.config import SETTINGS
from mnistctl.datasets import DATA_DIR_ENV, REGISTRY
from mnistctl.errors import (
    FIXABLE_ERRNOS,
    ConfigError,
    DistributedError,
    MnistctlError,
    RunExistsError,
    Terminated,
    TrainingInterrupted,
)
from mnistctl.recipes import (
    DEVICES,
    EVAL_SPLITS,
    EXPORT_FORMATS,
    LOG_FORMATS,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    SPLITS,
)

app = typer.Typer(
    name="mnistctl",
    help="Download MNIST, train a CNN on it, evaluate it, read your own digits, plot the curves, export and "
         "serve the model.",
    no_args_is_help=True,
    epilog="Docs: docs/index.md in the repository (mkdocs serve shows them as a site); "
           "mnistctl COMMAND --help for one command.",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)


def choices(values: Iterable[str]) -> Any:
    """``Literal[...]`` of ``values``: Typer shows and checks them as an option's choices."""
    return Literal[tuple(values)]


if TYPE_CHECKING:  # to a type checker, choices are strings
    DatasetName: TypeAlias = str
    Split: TypeAlias = str
    EvalSplit: TypeAlias = str
    Optimizer: TypeAlias = str
    Schedule: TypeAlias = str
    Device: TypeAlias = str
    Preset: TypeAlias = str
    ExportFormat: TypeAlias = str
    LogFormat: TypeAlias = str
else:
    DatasetName, Split, EvalSplit = choices(REGISTRY), choices(SPLITS), choices(EVAL_SPLITS)
    Optimizer, Schedule, Device = choices(OPTIMIZERS), choices(SCHEDULES), choices(DEVICES)
    Preset, ExportFormat, LogFormat = choices(PRESETS), choices(EXPORT_FORMATS), choices(LOG_FORMATS)

# the option that sets each core setting: core errors name settings, the CLI names options. The
# run's settings bring their own (mnistctl.config); these are the other commands' and train's run options
OPTION_OF = {**{name: s.option_name(name) for name, (_, _, s) in SETTINGS.items() if s.option},
             **{name: f"--{name.replace('_', '-')}" for name in (
                 "device", "run_dir", "tensorboard", "init", "resume", "config", "split", "count", "preset", "output",
                 "format", "mirror", "data_dir", "port", "threads", "images", "space", "trials", "timeout",
                 "objective", "sampler", "pruner")},
             "study_dir": "--dir"}


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
    if exc.setting in OPTION_OF and not isinstance(exc, ConfigError):  # advice about a setting: name its option
        return f"{exc} ({OPTION_OF[exc.setting]})"
    return str(exc)


class Reporting:
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
            if Reporting.secondary and not isinstance(exc, DistributedError):
                raise typer.Exit(exc.exit_code if isinstance(exc, TrainingInterrupted) else 1) from None
            raise
    except TrainingInterrupted as exc:
        err_console.print(Text.assemble(("Interrupted: ", "bold yellow"), str(exc)), soft_wrap=True)
        err_console.print(f"Resume with: mnistctl train --resume {exc.checkpoint}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except MnistctlError as exc:
        error_line(_message(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        if exc.errno not in FIXABLE_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        error_line(f"{exc.strerror or exc}{where} ({FIXABLE_ERRNOS[exc.errno]})")
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        err_console.print(Text("Terminated." if isinstance(exc, Terminated) else "Interrupted.", style="yellow"))
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None


def error_line(message: str) -> None:
    err_console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)


def warning_line(message: str) -> None:
    err_console.print(Text.assemble(("Warning: ", "bold yellow"), message), soft_wrap=True)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.command``, with the docstring's paragraphs unwrapped so that --help wraps them to the
    terminal's width instead of breaking lines where the source does."""
    import inspect

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        paragraphs = inspect.cleandoc(func.__doc__ or "").split("\n\n")
        func.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
        return app.command(*args, **kwargs)(func)
    return register


def models_given(arguments: list[Path] | None, options: list[Path] | None) -> list[Path] | None:
    """The models named as arguments and with --checkpoint, together (several: an ensemble)."""
    from mnistctl.inference.classifier import model_files

    return model_files([*(arguments or []), *(options or [])]) or None


def say(text: str) -> None:
    """A line of output: wrapped at words on a terminal, left whole in a pipe or a file."""
    console.print(text, highlight=False, soft_wrap=not console.is_terminal)
