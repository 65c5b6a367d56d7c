"""Digits drawn right in the terminal with Unicode half blocks: two pixel rows per text line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

UPPER_HALF = "\u2580"


def digit_text(image: Sequence[Sequence[int]]) -> Text:
    """A [H, W] grid of 0-255 intensities as Rich text, ``H/2`` lines of ``W`` cells."""
    rows = [[int(v) for v in row] for row in image]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    text = Text()
    for top, bottom in zip(rows[::2], rows[1::2]):
        for t, b in zip(top, bottom):
            text.append(UPPER_HALF, style=f"rgb({t},{t},{t}) on rgb({b},{b},{b})")
        text.append("\n")
    text.rstrip()
    return text


def digit_grid(images: Sequence[Sequence[Sequence[int]]], captions: Sequence[str],
               width: int = 80) -> RenderableType:
    """Digits side by side with a caption under each, as many per row as fit in ``width``."""
    per_row = max(1, width // 30)
    rows = []
    for start in range(0, len(images), per_row):
        table = Table.grid(padding=(0, 2))
        cells = [Group(digit_text(img), Text(cap, justify="center", style="bold"))
                 for img, cap in zip(images[start:start + per_row], captions[start:start + per_row])]
        table.add_row(*cells)
        rows.append(table)
    return Group(*rows)
