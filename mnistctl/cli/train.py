"""``mnistctl train``: its options, and the plan-then-fit it hands to ``mnistctl.training.run``; shown
with ``mnistctl.cli.render``'s header, live view and summary. Registered by ``mnistctl.cli.commands``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mnistctl.cli.common import (
    Device,
    Preset,
    Reporting,
    choices,
    console,
    say,
    user_errors,
    warning_line,
)
from mnistctl.config import DATA, RECIPE, SETTINGS, user_settings
from mnistctl.datasets import DATA_DIR_ENV
from mnistctl.recipes import PRESETS, describe_preset
from mnistctl.runfiles import RunHooks

_RUN = "Run"


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether an option was set on the command line or by its environment variable."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _setting_options() -> list[inspect.Parameter]:
    """One option per user setting, from its declaration in ``mnistctl.config``: flag, type, default,
    help, choices and panel (the rules themselves are the config's, checked there)."""
    params = []
    for name in user_settings():
        _, f, s = SETTINGS[name]
        kind = {"int": int, "float": float, "bool": bool, "str": str}[f.type] if isinstance(f.type, str) else f.type
        decls = [s.flag_for(name, kind), *([s.short] if s.short else [])]
        option = typer.Option(*decls, rich_help_panel=s.panel, help=s.help, show_default=s.show_default or True,
                              metavar=s.metavar)
        annotation = Annotated[choices(s.choices) if s.choices else kind, option]  # type: ignore[valid-type]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=annotation))
    return params


def _options(
    ctx: typer.Context,
    preset: Annotated[Preset, typer.Option(
        rich_help_panel=RECIPE,
        help="A recipe: " + "; ".join(f"'{k}' ({describe_preset(k)})" for k in PRESETS)
             + ". Options given explicitly override the preset.")] = "original",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", envvar=DATA_DIR_ENV, show_default=False, rich_help_panel=DATA,
        help="Where data sets are stored (default: the per-user cache directory).")] = None,
    device: Annotated[Device, typer.Option(
        rich_help_panel=_RUN, help="Where to compute: auto picks cuda, then mps, then cpu.")] = "auto",
    run_dir: Annotated[Path | None, typer.Option(
        show_default="runs/NAME", rich_help_panel=_RUN, help="Directory for checkpoints, history and plot.")] = None,
    name: Annotated[str | None, typer.Option(
        show_default="DATASET-nfN-TIMESTAMP", rich_help_panel=_RUN, help="Run name under runs/.")] = None,
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
    """The options of ``train`` that are not settings of the run (the settings are generated)."""


def train(ctx: typer.Context, **options: Any) -> None:
    """Train the CNN, with a progress bar per epoch and a growing table of epochs.

    Writes config.json, best.pt, last.pt, history.json, metrics.csv and loss.png to the run directory.

    In several processes: torchrun --standalone --nproc-per-node 2 -m mnistctl train ... (see the README).
    """
    # only what was given on the command line: a config file, the preset or a resumed run supplies the rest
    settings = {k: options[k] for k in user_settings() if _given(ctx, k)}
    run = {k: options[k] for k in inspect.signature(_options).parameters if k != "ctx"}
    hooks = _TrainHooks(run["quiet"], run["print_config"])
    with user_errors():
        from mnistctl.training.run import train_settings

        try:
            result = train_settings(run["preset"] if _given(ctx, "preset") else None, settings,
                                    config_file=run["config"], resume=run["resume"], init=run["init"],
                                    run_dir=run["run_dir"], name=run["name"], data_dir=run["data_dir"],
                                    device=run["device"], threads=run["threads"], tensorboard=run["tensorboard"],
                                    save_model="mnist_cnn.pt" if run["save_model"] else None, hooks=hooks)
        finally:
            hooks.stop()
    if result is None or not hooks.main:
        return
    for warning in result.warnings:
        warning_line(warning)
    from mnistctl.cli.train_view import train_summary

    for line in train_summary(result):
        say(line)


class _TrainHooks(RunHooks):
    """The run as this CLI shows it: warnings and ``--print-config`` once planned, then the header
    and the live view (or plain lines) on process 0 of a group."""

    def __init__(self, quiet: bool, print_config: bool) -> None:
        self.quiet, self.print_config, self.main = quiet, print_config, True
        self.plan: Any = None
        self.view: Any = None

    def on_join(self, group: Any) -> None:
        self.main = group.main
        Reporting.secondary = not group.main  # the others' errors are process 0's too: it alone says them

    def on_plan(self, plan: Any, group: Any) -> bool:
        for warning in plan.warnings if self.main else ():
            warning_line(warning)
        if self.print_config:
            if self.main:
                typer.echo(json.dumps(plan.config(), indent=2))
            return False
        from mnistctl.cli.train_view import train_view

        self.plan, self.view = plan, train_view(console, self.quiet or not self.main)
        return True

    def on_ready(self, info: Any) -> None:
        from mnistctl.cli.train_view import train_header

        if not self.quiet and self.main:
            say(train_header(self.plan, info))
        self.view.start(info.history)

    def on_extra_images(self, done: int, total: int) -> None:
        if done == 0 and self.main and not self.quiet:
            say(f"Preparing {total:,} picture{'s' if total != 1 else ''} of --extra-images, as predict prepares one")

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        self.view.on_epoch_start(epoch, epochs, steps, start_step)

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        self.view.on_batch(step, loss, images)

    def on_epoch_end(self, record: Any) -> None:
        self.view.on_epoch_end(record)

    def stop(self) -> None:
        if self.view is not None:
            self.view.stop()


# ctx and --preset, the settings (panels Recipe, Model, Data), then the options of the run
_static = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.name != "ctx" else p
           for p in inspect.signature(_options, eval_str=True).parameters.values()]
train.__signature__ = inspect.Signature([*_static[:2], *_setting_options(), *_static[2:]])  # type: ignore[attr-defined]
