"""Figures, drawn with matplotlib's object API on the headless Agg canvas and saved atomically."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure

from mnistctl.errors import ConfigError
from mnistctl.fsutil import atomic_path
from mnistctl.runfiles import HISTORY_FILE, LAST_FILE, METRICS_FILE, EpochRecord, parse_history, read_steps


def figure_format(path: str | Path) -> str:
    """The image format ``path``'s extension names (png without one); a ConfigError for one that
    matplotlib cannot write or a path that is a directory. Commands call it before their work."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ConfigError.invalid("output", f"{path} names an image type that cannot be written (.{fmt}): use one of "
                                            f"{', '.join('.' + k for k in sorted(supported))}", label="the output")
    if path.is_dir():
        raise ConfigError.invalid("output", f"{path} is a directory: give a file name such as {path / 'out.png'}",
                                  label="the output")
    return fmt


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` atomically, in the format its extension names (PNG without one)."""
    fmt = figure_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi, bbox_inches="tight")
    return Path(path)


def digit_grid_figure(images: Any, titles: Sequence[str], suptitle: str | None = None,
                      title_colors: Sequence[str] | None = None) -> Figure:
    """A square-ish grid of 28x28 digits (light ink on black, as MNIST stores them)."""
    n = len(titles)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    row_height = 1.85 if any("\n" in t for t in titles) else 1.55
    fig = Figure(figsize=(1.4 * cols, row_height * rows + (0.4 if suptitle else 0)), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            color = title_colors[i] if title_colors else "black"
            ax.set_title(titles[i], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


RunCurves = tuple  # (label, per-epoch records) or (label, records, per-step records)


def history_figure(runs: Sequence[RunCurves], error_log: bool = False) -> Figure:
    """Training and validation loss per epoch (as the original project's figure) and accuracy,
    for one or several runs on the same axes. A run's per-step training loss (metrics.csv) is
    drawn as a thin line under its per-epoch points, so a one-epoch run has a curve too.
    ``error_log``: the right panel shows the error rate on a log axis, where 98-99.7% can be told
    apart."""
    fig = Figure(figsize=(11, 4.2), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    several = len(runs) > 1
    for i, (label, history, *rest) in enumerate(runs):
        steps = rest[0] if rest else []
        color = f"C{i}"
        epochs = [r.epoch for r in history]
        prefix = f"{label}: " if several else ""
        if steps:
            loss_ax.plot([s.progress for s in steps], [s.train_loss for s in steps], "-", color=color, lw=0.8,
                         alpha=0.35, label=f"{prefix}train loss per step")
        loss_ax.plot(epochs, [r.train_loss for r in history], "-o", color=color, ms=3,
                     label=f"{prefix}train loss")
        loss_ax.plot(epochs, [r.val_loss for r in history], "--s", color=color, ms=3,
                     label=f"{prefix}validation loss")
        shown = (lambda acc: 100 * (1 - acc)) if error_log else (lambda acc: 100 * acc)  # noqa: E731
        acc_ax.plot(epochs, [shown(r.train_acc) for r in history], "-o", color=color, ms=3,
                    label=f"{prefix}train")
        acc_ax.plot(epochs, [shown(r.val_acc) for r in history], "--s", color=color, ms=3,
                    label=f"{prefix}validation")
    loss_ax.set(title="Loss (cross-entropy, both)", xlabel="epoch", ylabel="cross-entropy")
    if error_log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        acc_ax.set_yscale("log")
        acc_ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        acc_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        acc_ax.yaxis.set_minor_formatter(NullFormatter())
        acc_ax.set(title="Error rate", xlabel="epoch", ylabel="error (log scale)")
    else:
        acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if not several and runs:
        fig.suptitle(runs[0][0])
    fig.tight_layout()
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> Figure:
    import numpy as np

    cm = np.asarray(confusion)
    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.subplots()
    # log-ish scaling so the few mistakes are visible next to ~1000 correct per class
    shown = np.log1p(cm)
    im = ax.imshow(shown, cmap="Blues")
    k = len(classes)
    ax.set_xticks(range(k), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = shown.max() * 0.6
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    return fig


def load_history(path: str | Path) -> tuple[str, list[EpochRecord], list]:
    """(label, per-epoch history, per-step records) from a run directory, a history.json or a
    checkpoint; the per-step records come from the run directory's metrics.csv, when there is one."""
    import json

    from mnistctl.errors import MnistctlError

    path = Path(path)
    if path.is_dir():
        if (path / HISTORY_FILE).is_file():
            path = path / HISTORY_FILE
        elif (path / LAST_FILE).is_file():
            path = path / LAST_FILE
        else:
            raise MnistctlError(f"{path} holds no history.json or last.pt: is it a run directory?")
    if not path.exists():
        raise MnistctlError(f"{path} does not exist")
    if not path.is_file():
        raise MnistctlError(f"{path} is not a regular file (a FIFO or a device?): give a run directory, "
                            "a history.json or a checkpoint")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows, label = data["history"], data.get("run") or path.parent.name
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MnistctlError(f"{path} is not a mnistctl history file ({type(exc).__name__})") from None
        try:
            history = parse_history(rows)
        except MnistctlError as exc:
            raise MnistctlError(f"{path} does not hold a per-epoch history ({exc})") from None
    else:
        from mnistctl import checkpoint

        history, label = checkpoint.load(path).history, path.parent.name or path.stem
    if not history:
        raise MnistctlError(f"{path} has no completed epoch to plot yet")
    try:
        steps = read_steps((path.parent / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, MnistctlError):
        steps = []  # no per-step record (an older run, or a checkpoint copied elsewhere)
    return label, history, steps


def plot_runs(paths: Sequence[str | Path], output: str | Path,
              error_log: bool = False) -> tuple[Figure, list[str], Path]:
    """Draw the histories of several runs on shared axes into ``output``: (figure, labels, path)."""
    figure_format(output)
    runs = [load_history(p) for p in paths]
    labels = [label for label, *_ in runs]
    if len(set(labels)) < len(labels):  # same run name twice: label by path instead
        runs = [(str(p), *rest) for p, (_, *rest) in zip(paths, runs)]  # type: ignore[misc]
    fig = history_figure(runs, error_log)
    return fig, [label for label, *_ in runs], save_figure(fig, output)
