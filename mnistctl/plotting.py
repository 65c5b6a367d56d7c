"""Figures, drawn with matplotlib's object API on the headless Agg canvas and saved atomically."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from mnistctl.fsutil import atomic_path


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi, bbox_inches="tight")
    return path


def digit_grid_figure(images, titles: Sequence[str], suptitle: str | None = None,
                      title_colors: Sequence[str] | None = None) -> Figure:
    """A square-ish grid of 28x28 digits (light ink on black, as MNIST stores them)."""
    n = len(titles)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.4 * cols, 1.55 * rows + (0.4 if suptitle else 0)), dpi=100)
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
