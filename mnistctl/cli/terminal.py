"""Digits drawn right in the terminal: with colour, Unicode half blocks in grey levels (two pixel
rows per text line); without (NO_COLOR, TERM=dumb, a pipe), characters of increasing density."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters (a file name's ANSI escapes, newlines, ...) but those in
    ``keep`` written as escapes (``\x1b``), so that a name cannot drive the terminal it is shown on."""
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)


UPPER_HALF = "\u2580"
RAMP = " .:-=+*#%@"  # ink density, for terminals without colour


def digit_text(image: Sequence[Sequence[int]], plain: bool = False) -> Text:
    """A [H, W] grid of 0-255 intensities as Rich text, ``H/2`` lines of ``W`` cells; ``plain``:
    characters from RAMP (two pixel rows averaged per line) instead of coloured half blocks."""
    rows = [[int(v) for v in row] for row in image]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    text = Text()
    for n, (top, bottom) in enumerate(zip(rows[::2], rows[1::2])):
        if n:
            text.append("\n")
        for t, b in zip(top, bottom):
            if plain:
                text.append(RAMP[min(len(RAMP) - 1, (t + b) * len(RAMP) // 511)])
            else:
                text.append(UPPER_HALF, style=f"rgb({t},{t},{t}) on rgb({b},{b},{b})")
    return text


def colourless(console: Console) -> bool:
    """Whether ``console`` shows no colour (NO_COLOR, TERM=dumb, not a terminal): draw digits plain."""
    return console.no_color or console.color_system is None


def digit_grid(images: Sequence[Sequence[Sequence[int]]], captions: Sequence[str],
               width: int = 80, plain: bool = False) -> RenderableType:
    """Digits side by side with a caption under each, as many per row as fit in ``width``."""
    per_row = max(1, width // 30)
    rows = []
    for start in range(0, len(images), per_row):
        table = Table.grid(padding=(0, 2))
        cells = [Group(digit_text(img, plain), Text(cap, justify="center", style="bold"))
                 for img, cap in zip(images[start:start + per_row], captions[start:start + per_row])]
        table.add_row(*cells)
        rows.append(table)
    return Group(*rows)
