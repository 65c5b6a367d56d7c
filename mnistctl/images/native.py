"""The size a picture is read at: a small picture that was enlarged -- in blocks, as nearest-neighbour
scaling and matplotlib's ``imshow`` make it (inside a plot's frame too), or smoothly by a whole
factor -- is read at its own size (``native``), so that the small-picture steps of
``mnistctl.images.prepare`` apply to it.

Numpy and Pillow (through ``pixels``); no torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mnistctl.images.fit import CANVAS
from mnistctl.images.pixels import border, to_array, to_pil
from mnistctl.images.read import Decoded

SMALL = 64  # px: a picture whose longer side is shorter is small: ``prepare.look`` enlarges it before its ink
# is found, and ``native`` reads an enlarged picture at such a size
NATIVE_LEAST = 8  # px: ``native`` reduces a picture to no fewer than this on its longer side
SMOOTH_UPTO = 512  # px: a larger picture is never taken for a smooth enlargement of a small one ...
SMOOTH_STEP = 0.25  # ... nor one with a step between neighbouring pixels over this share of its range ...
SMOOTH_ERROR = 0.1  # ... nor one that its reduction, enlarged back, misses anywhere by this share of its range


def native(d: Decoded) -> Decoded:
    """``d`` at its own resolution when it is a small picture (under ``SMALL`` px) enlarged: read at
    that size, the small-picture steps of ``look`` apply to it (an 8x8 scan shown at 64 or 256 px),
    and an MNIST digit enlarged in blocks is the MNIST digit again.

    Enlarged in blocks (nearest-neighbour scaling: each pixel a square of one level; of a size that
    is not whole, or on a grid off the picture's corner too, as matplotlib shows an 8x8 array in a
    figure's margins): ``_cells``; shown so inside a plot's frame (matplotlib's axes): ``_framed``, then
    ``_cells`` inside it. Enlarged smoothly (bilinear, bicubic), a picture of
    ``SMOOTH_UPTO`` px at most: ``_smooth``."""
    g = d.grey
    h, w = g.shape
    cells = _cells(g)
    if cells is not None:
        ys, xs = _within_margins(g, *cells)
        pitch = _pitch(g, cells)
        at = np.ix_(ys, xs)
        raw = None if d.raw is None else np.ascontiguousarray(d.raw[at])
        origin = d.origin if ys is cells[0] else (d.origin[0] + d.scale * max(0.0, float(xs[0]) - pitch / 2),
                                                  d.origin[1] + d.scale * max(0.0, float(ys[0]) - pitch / 2))
        return Decoded(np.ascontiguousarray(g[at]), raw, d.scale * pitch, origin)
    framed = _framed(g)
    if framed is not None:  # a plot: an array shown in blocks inside the frame of its axes
        (top, left), inside = framed
        cells = _cells(inside)
        if cells is not None:
            return Decoded(np.ascontiguousarray(inside[np.ix_(*cells)]), None, d.scale * _pitch(inside, cells),
                           (d.origin[0] + left * d.scale, d.origin[1] + top * d.scale))
    k = _smooth(g) if SMALL <= max(h, w) <= SMOOTH_UPTO else 0
    if k:
        return Decoded(to_array(to_pil(g).resize((w // k, h // k), Image.Resampling.BOX)), None, d.scale * k, d.origin)
    return d


def _pitch(g: np.ndarray, cells: tuple[np.ndarray, np.ndarray]) -> float:
    """Pixels of ``g`` per cell of the block grid ``cells`` (the rows and columns read)."""
    return max(g.shape) / max(len(cells[0]), len(cells[1]))


FRAME_SPAN = 0.25  # a plot's frame: its top line is a dark run across this share of the picture's width at least
FRAME_EDGE = 6  # px: what is left out inside the frame's lines (a spine of 0.8 pt at up to 300 dpi, anti-aliased)


def _framed(g: np.ndarray) -> tuple[tuple[int, int], np.ndarray] | None:
    """The inside of a plot's frame (matplotlib's axes round an ``imshow``: four thin dark lines, tick
    marks and labels outside them, perhaps a colour bar beside) and where it starts (top, left); None
    when there is none. (``native`` reads it only when it is an array shown in blocks.)

    Its top line is the first row with a run of dark pixels (darker than the middle of the picture's
    range) across ``FRAME_SPAN`` of the width at least; its sides are the columns where that run ends,
    dark down to its bottom line, the last row dark all along the run. ``FRAME_EDGE`` px inside the
    lines are left out: the lines' own width, and where the picture inside is dark too (light ink on
    dark) the lines cannot be told from it."""
    h, w = g.shape
    if min(h, w) < SMALL:
        return None
    dark = g < (float(g.min()) + float(g.max())) / 2
    rows = np.flatnonzero(np.count_nonzero(dark, axis=1) >= FRAME_SPAN * w)
    if rows.size == 0:
        return None
    top = int(rows[0])
    edges = np.flatnonzero(np.diff(np.concatenate([[0], dark[top].astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2]  # the row's dark runs
    longest = int(np.argmax(stops - starts))
    x0, x1 = int(starts[longest]), int(stops[longest]) - 1
    if x1 - x0 + 1 < FRAME_SPAN * w or top == 0 or x0 == 0 or x1 == w - 1:
        return None  # too short, or the picture's own edge (a dark canvas): a plot's frame has margins
    bottom = int(np.flatnonzero(dark[:, x0:x1 + 1].all(1))[-1])
    if bottom - top < SMALL or bottom == h - 1 or not dark[top:bottom + 1, [x0, x1]].all():
        return None
    y0, y1, left, right = top + FRAME_EDGE, bottom - FRAME_EDGE + 1, x0 + FRAME_EDGE, x1 - FRAME_EDGE + 1
    return (y0, left), g[y0:y1, left:right]


MARGINS_OTHER = 0.75  # an MNIST digit inside margins: its corners and this share of its edge of the other polarity


def _within_margins(g: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells ``ys``, ``xs`` of ``g`` without a figure's margins round an MNIST digit shown in
    them, light on black (matplotlib's ``imshow`` without axes: the margins would be taken for the
    paper and the black for the ink): 28x28 cells inside margins on all four sides, its corners and
    ``MARGINS_OTHER`` of its edge of the other polarity, and something of the margins' inside it (the
    digit). Else all of them: a drawing in blocks -- a solid bar, a square 0 -- is read as it is."""
    cells = g[np.ix_(ys, xs)]
    level = float(cells[0, 0])
    rows, cols = np.flatnonzero((cells != level).any(1)), np.flatnonzero((cells != level).any(0))
    if rows.size == 0 or rows[0] == 0 or cols[0] == 0 or rows[-1] == len(ys) - 1 or cols[-1] == len(xs) - 1:
        return ys, xs  # not margins on all four sides (a digit's own blank rows are on two at most)
    inner = cells[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    if inner.shape != (CANVAS, CANVAS):
        return ys, xs
    other = np.abs(inner - level) > 0.5
    if other[[0, 0, -1, -1], [0, -1, 0, -1]].all() and np.mean(border(other)) >= MARGINS_OTHER and not other.all():
        return ys[rows[0]:rows[-1] + 1], xs[cols[0]:cols[-1] + 1]
    return ys, xs


def _reduced_enough(h: int, w: int, k: int) -> bool:
    """Whether a picture h x w reduced k times is a small picture ``native`` reads at that size."""
    return k >= 2 and NATIVE_LEAST <= max(h, w) // k < SMALL


CELL_LEAST = 3  # px: the smallest cell of a size that is not whole, or off the corner, ``_cells`` looks for


def _cells(g: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows and the columns ``g`` is read at when it is a small picture enlarged in blocks (every
    change of level, along the rows and down the columns, on the blocks' grid); None otherwise. Blocks
    of a whole size k from the picture's corner, exactly: each block's first pixel. Blocks of any size
    (``CELL_LEAST`` px or more) on a grid with any offset, each change on the grid's lines to a pixel:
    the cells' centres (``_centres``)."""
    h, w = g.shape
    for line in (g[h // 2], g[:, w // 2]):  # first its middle row and column: most pictures stop there
        changes = np.flatnonzero(line[1:] != line[:-1])
        if changes.size > 1 and int(np.diff(changes).min()) < 2:
            return None  # changes at neighbouring pixels: no cells of 2 px or more
    cols = np.flatnonzero((g[:, 1:] != g[:, :-1]).any(0)) + 1  # where a column differs from the one before
    rows = np.flatnonzero((g[1:] != g[:-1]).any(1)) + 1
    if cols.size and rows.size:
        k = int(np.gcd.reduce(np.concatenate([cols, [w, h]])))
        if _reduced_enough(h, w, k):
            k = int(np.gcd.reduce(np.concatenate([rows, [k]])))
            if _reduced_enough(h, w, k):
                return np.arange(0, h, k), np.arange(0, w, k)
    ys, xs = _centres(rows, h), _centres(cols, w)
    if ys is None or xs is None or not NATIVE_LEAST <= max(len(ys), len(xs)) < SMALL:
        return None
    return ys, xs


def _centres(changes: np.ndarray, size: int) -> np.ndarray | None:
    """The pixels at the centres of the cells of a regular grid on which every one of ``changes``
    lies to a pixel (its pitch at least ``CELL_LEAST`` px, as large as fits; any offset), across
    ``size`` px; None when there is none."""
    if changes.size < 2:
        return None
    gaps = np.diff(changes)
    for parts in range(1, 5):  # the narrowest gap is a cell, or two, three, four of them
        guess = float(gaps.min()) / parts
        if guess < CELL_LEAST:
            return None
        index = np.concatenate([[0.0], np.cumsum(np.round(gaps / guess))])
        pitch, offset = np.polyfit(index, changes.astype(np.float64), 1)
        if pitch >= CELL_LEAST and float(np.abs(offset + pitch * index - changes).max()) <= 1.0:
            first, last = np.ceil(-offset / pitch - 0.5), np.ceil((size - offset) / pitch - 0.5)
            return np.clip(np.floor(offset + (np.arange(first, last) + 0.5) * pitch), 0, size - 1).astype(np.intp)
    return None


def _smooth(g: np.ndarray) -> int:
    """The largest whole factor by which ``g`` is a smooth enlargement of a small picture; else 0. No
    step between neighbouring pixels over ``SMOOTH_STEP`` of its range, and reduced k times (area),
    enlarged back (bicubic), it is itself within ``SMOOTH_ERROR`` of its range at every pixel. 8x8
    scans of MNIST validation digits enlarged bilinear, bicubic or Lanczos to 64-256 px: steps of
    0.14 at most, misses of 0.06; the writer-shift check's pictures and the people styles': misses
    of 0.18 at least (1,870 pictures, 561 of a size that some factor divides)."""
    h, w = g.shape
    # the whole factors that divide both sides, the smallest picture first (most photos have none)
    factors = [k for k in range(max(h, w) // NATIVE_LEAST, 1, -1) if h % k == w % k == 0 and _reduced_enough(h, w, k)]
    if not factors:
        return 0
    span = float(g.max() - g.min())
    row, col = g[h // 2], g[:, w // 2]  # first its middle row and column: most pictures stop there
    if span <= 0 or max(float(np.abs(np.diff(row)).max()), float(np.abs(np.diff(col)).max())) > SMOOTH_STEP * span:
        return 0
    if max(float(np.abs(np.diff(g, axis=0)).max()), float(np.abs(np.diff(g, axis=1)).max())) > SMOOTH_STEP * span:
        return 0
    picture = to_pil(g)
    for k in factors:
        back = picture.resize((w // k, h // k), Image.Resampling.BOX).resize((w, h), Image.Resampling.BICUBIC)
        if float(np.abs(to_array(back) - g).max()) <= SMOOTH_ERROR * span:
            return k
    return 0
