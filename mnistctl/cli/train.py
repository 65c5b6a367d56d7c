"""``mnistctl train``: its options, and the plan-then-fit it hands to ``mnistctl.training.run``; shown
with ``mnistctl.cli.render``'s header, live view and summary. Registered by ``mnistctl.cli.commands``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mnistctl.cli.common import (
    DatasetName,
    Device,
    Optimizer,
    Preset,
    Reporting,
    Schedule,
    console,
    say,
    user_errors,
    warning_line,
)
from mnistctl.config import DataConfig, ModelConfig, TrainConfig, default
from mnistctl.datasets import DATA_DIR_ENV
from mnistctl.recipes import PRESETS, describe_preset

_RECIPE, _MODEL, _DATA, _RUN = "Recipe", "Model", "Data", "Run"


_PARAM = {"val_fraction": "val_split"}


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether an option was set on the command line or by its environment variable."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


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
        from mnistctl import devices as accel
        from mnistctl.training import distributed

        if threads is not None:
            accel.set_threads(threads)
        group = distributed.join(device.value)  # one process, or one of several under torchrun
        Reporting.secondary = not group.main  # the others' errors are process 0's too: it alone says them
        try:
            result = _train(ctx, group, settings, preset, config, resume, run_dir, name, init, print_config, quiet,
                            save_model, tensorboard, data_dir)
        finally:
            group.close()
    if result is None or not group.main:
        return
    for warning in result.warnings:
        warning_line(warning)
    from mnistctl.cli.render import train_summary

    for line in train_summary(result):
        say(line)


def _train(ctx: typer.Context, group, settings: dict[str, Any], preset, config: Path | None, resume: Path | None,
           run_dir: Path | None, name: str | None, init: str | None, print_config: bool, quiet: bool,
           save_model: bool, tensorboard: bool, data_dir: Path | None):
    """Plan the run and train it (every process of a group does), showing progress on process 0."""
    from mnistctl.cli.render import train_header, train_view
    from mnistctl.training import run as runs

    chosen = preset.value if _given(ctx, "preset") else None
    if config is not None:
        from_file, file_settings = runs.read_config(config)
        chosen, settings = chosen or from_file, {**file_settings, **settings}
    plan = runs.plan_run(chosen, settings, resume=resume, run_dir=run_dir, name=name, init=init)
    for warning in plan.warnings if group.main else ():
        warning_line(warning)
    if print_config:
        if group.main:
            typer.echo(json.dumps(plan.config(), indent=2))
        return None
    view = train_view(console, quiet or not group.main)

    def ready(info) -> None:
        if not quiet and group.main:
            say(train_header(plan, info))
        view.start(info.history)

    try:
        return runs.train(plan, group.device, data_dir, callbacks=view, on_ready=ready,
                          save_model=Path("mnist_cnn.pt") if save_model else None, tensorboard=tensorboard,
                          group=group)
    finally:
        view.stop()
