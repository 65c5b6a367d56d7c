"""``mnistctl tune``: the options of a search, one call of ``mnistctl.training.tune``, its trials shown
as they end and a summary (``--json`` for scripts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import typer

from mnistctl.cli.common import (
    DataDirOpt,
    DeviceOpt,
    Preset,
    console,
    err_console,
    say,
    user_errors,
    warning_line,
)
from mnistctl.errors import ConfigError, Terminated, TrainingInterrupted
from mnistctl.recipes import TUNE_OBJECTIVES, TUNE_PRUNERS, TUNE_SAMPLERS

if TYPE_CHECKING:  # to a type checker, choices are strings
    Objective: TypeAlias = str
    Sampler: TypeAlias = str
    Pruner: TypeAlias = str
else:
    from mnistctl.cli.common import choices

    Objective, Sampler, Pruner = choices(TUNE_OBJECTIVES), choices(TUNE_SAMPLERS), choices(TUNE_PRUNERS)

SEARCH, STUDY = "Search", "Study"  # help panels


def _shared(pairs: list[str]) -> dict[str, Any]:
    """``--set name=value`` pairs as settings (values read as JSON where they can be: 3, 0.5, true)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set takes name=value (such as --set epochs=3), got {pair!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        settings[name.strip().replace("-", "_")] = value
    return settings


def tune(
    space: Annotated[Path | None, typer.Option(
        "--space", show_default=False, metavar="<file>", rich_help_panel=SEARCH,
        help="A JSON or YAML file of train settings to search, such as {\"lr\": {\"log\": [0.001, 0.1]}, "
             "\"batch_size\": [64, 128]} [default: the preset's own space].")] = None,
    preset: Annotated[Preset, typer.Option(
        rich_help_panel=SEARCH, help="The recipe every trial starts from (and whose space is searched without "
                                     "--space).")] = "fast",
    shared: Annotated[list[str] | None, typer.Option(
        "--set", show_default=False, metavar="<name=value>", rich_help_panel=SEARCH,
        help="A train setting every trial shares (repeat it): --set epochs=3 --set nf=16.")] = None,
    trials: Annotated[int, typer.Option(
        min=1, max=100_000, rich_help_panel=SEARCH,
        help="Finished trials (complete or pruned) the study stops at, over all its processes.")] = 20,
    timeout: Annotated[float | None, typer.Option(
        min=1, show_default=False, rich_help_panel=SEARCH, help="Seconds this process searches, at most.")] = None,
    objective: Annotated[Objective, typer.Option(
        rich_help_panel=SEARCH, help="What a trial is scored on: validation accuracy or loss (never the test set).")]
    = "val_acc",
    sampler: Annotated[Sampler, typer.Option(rich_help_panel=SEARCH, help="How settings are proposed.")] = "tpe",
    pruner: Annotated[Pruner, typer.Option(
        rich_help_panel=SEARCH, help="What stops unpromising trials after an epoch.")] = "median",
    sampler_seed: Annotated[int, typer.Option(
        "--seed", rich_help_panel=SEARCH,
        help="The sampler's seed (--set seed=N sets the trials' training seed).")] = 0,
    study_dir: Annotated[Path | None, typer.Option(
        "--dir", show_default=False, metavar="<path>", rich_help_panel=STUDY,
        help="The study's directory [default: tunes/PRESET-TIMESTAMP].")] = None,
    resume: Annotated[Path | None, typer.Option(
        show_default=False, metavar="<path>", rich_help_panel=STUDY,
        help="Go on with the study in this directory: after Ctrl-C, or as one more process working on it.")] = None,
    storage: Annotated[str | None, typer.Option(
        show_default=False, metavar="<url>", rich_help_panel=STUDY,
        help="A database URL for the study (such as postgresql://...), so processes on several machines share "
             "it [default: a journal file in the study's directory].")] = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document of the study at the end.")] = False,
) -> None:
    """Search train's settings with Optuna: trials are ordinary runs, unpromising ones pruned after an epoch.

    Writes the study (tune.json, study.log), a run directory per trial under trials/, trials.csv,
    best-config.json (for train --config) and history, slice and importances pictures. Needs the tune
    extra: pip install 'mnistctl\\[tune]'.
    """
    with user_errors():
        from mnistctl import api
        from mnistctl.cli.tune_view import TuneView, tune_summary
        from mnistctl.training import tune as core

        if resume is not None and (space is not None or shared):
            warning_line(f"--space and --set are ignored with --resume: the study keeps {core.OPTIONS_FILE}'s")
        view = TuneView(console, core.load_options(resume).objective if resume is not None else objective) \
            if not as_json else core.TuneHooks()
        try:
            result = api.tune(preset, space=space, trials=trials, directory=study_dir, resume=resume,
                              objective=objective, sampler=sampler, pruner=pruner, sampler_seed=sampler_seed,
                              timeout=timeout, storage=storage, data_dir=data_dir, device=device, hooks=view,
                              **_shared(shared or []))
        except (KeyboardInterrupt, TrainingInterrupted) as exc:
            view.stop()
            code = exc.exit_code if isinstance(exc, TrainingInterrupted) else 143 if isinstance(exc, Terminated) \
                else 130
            if view.directory is None:
                raise
            err_console.print(f"Stopped: the trial in progress runs again on resuming. Resume with: mnistctl tune "
                              f"--resume {view.directory}", highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
        finally:
            view.stop()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in tune_summary(result):
        say(line)
