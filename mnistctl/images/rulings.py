"""The printed lines of ruled and squared notebook paper, taken away from a picture of ink.

Works on ink maps in [0, 1] (1: the strongest ink), as ``mnistctl.images.prepare`` cleans them;
numpy and OpenCV (through ``pixels``).
"""

from __future__ import annotations

import numpy as np

from mnistctl.images.pixels import at_most, percentile_rows, rotate

# the printed lines of ruled or squared paper: straight rows of faint ink across the whole picture
RULING_TURNS = tuple(float(a) for a in range(-6, 7))  # degrees: the paper's turns looked at (then +-0.5)
RULING_LEVEL = 0.08  # a line inks the pixels of its row at least this much (of the strongest ink) ...
RULING_COVER = 0.85  # ... over this share of its row at least: it crosses the picture
RULING_FAINT = 0.7  # ... and is fainter than the pen: its typical level at most this (a 7's bar is not)
RULING_WIDTH = 0.04  # ... and thin: at most this share of the picture's height (or 3 px, if more)
RULING_SEARCH = 128  # px: the paper's turn is found on a copy this large
RULING_PAPER = 0.3  # beside a line (a few rows away) the paper is blank: at most this share of the line's level

Turns = tuple[float | None, float | None]  # the turns of a picture's lines along rows, along columns


def without_rulings(ink: np.ndarray, turns: Turns | None = None) -> tuple[np.ndarray, Turns]:
    """``ink`` (in [0, 1], 1 the strongest) without the lines of ruled or squared paper: rows (and
    columns) of faint ink that cross the whole picture, straight, the paper turned by up to 6 degrees.

    A line's pixels lose the line's own level, as if the paper there were blank (a pen stroke
    crossing it keeps its ink: the pen covers the line). Left alone: a digit's bar, even one that
    spans a tightly cropped picture (as dark as the rest of the digit, not fainter), a frame of
    full-strength lines (preprocessing takes it away), and anything that does not reach two
    opposite sides of the picture -- the test that lets almost every picture skip the search.

    Also returns the turns at which lines were found (along rows, along columns; None: none).
    ``turns``: those found on the whole picture, for a close cut-out of it, where the digit fills
    most of the picture and one of its strokes could pass for a line: no search there, and no
    lines where the whole picture had none."""
    if min(ink.shape) < 48:
        return ink, (None, None)
    search = turns is None
    along_rows, along_columns = turns or (None, None)
    if search or along_rows is not None:
        ink, along_rows = _rulings_removed(ink, along_rows)
    flipped = cleaned = ink.T  # the columns' lines, as rows
    if search or along_columns is not None:
        cleaned, along_columns = _rulings_removed(flipped, along_columns)
    return (ink if cleaned is flipped else np.ascontiguousarray(cleaned.T)), (along_rows, along_columns)


def _rulings_removed(ink: np.ndarray, turn: float | None) -> tuple[np.ndarray, float | None]:
    """``without_rulings`` for the lines that run along the rows (at up to 6 degrees), and their
    turn (None when there are none); ``turn``: theirs, known already."""
    h, w = ink.shape
    ring = max(2, round(0.04 * w))
    for side in (ink[:, :ring], ink[:, -ring:]):
        rows = np.median(side, axis=1)  # a line is a row inked along the strip; noise is not
        if rows.max() - np.median(rows) < RULING_LEVEL:
            return ink, None  # no line crosses this edge of the picture
    # the paper's turn: the one that lays the most ink along whole rows, on a small copy
    small = at_most(ink, RULING_SEARCH)

    def along(picture: np.ndarray, angle: float) -> float:  # how much faint ink lies along whole rows
        turned = rotate(picture, angle) if angle else picture
        width = picture.shape[1]
        middle = turned[:, width // 10:-(width // 10) or None]
        # each row's level over RULING_COVER of its length: a line's, not a digit's stroke (and
        # not a long stroke's the turn lays along the row: too dark)
        level = percentile_rows(middle, 100 * (1 - RULING_COVER))
        return float((level[level <= RULING_FAINT] ** 2).sum())

    if turn is None:  # whole degrees and the half degree either side on the small copy, then a quarter
        turn = max(RULING_TURNS, key=lambda a: along(small, a))
        turn = max((turn - 0.5, turn, turn + 0.5), key=lambda a: along(small, a))
        turn = max((turn - 0.25, turn, turn + 0.25), key=lambda a: along(ink, a))
    # the picture turned so that the lines lie along rows, all of it (nan where it was not); the
    # lines are looked for in its middle, the picture's own frame
    whole = rotate(ink, turn, expand=True, fill=float("nan")) if turn else ink
    top, left = (whole.shape[0] - h) // 2, (whole.shape[1] - w) // 2
    turned = whole[top:top + h, left:left + w]
    # rows inked across: RULING_COVER of them at RULING_LEVEL at least (looked at where the mean allows it)
    across = np.zeros(h, bool)
    typical = np.zeros(h, np.float32)  # each row's median
    rows = np.flatnonzero(np.nanmean(turned, axis=1) >= RULING_LEVEL * RULING_COVER)
    if rows.size:
        ordered = np.sort(turned[rows], axis=1)  # the turned-in corners (nan) last
        last = np.count_nonzero(~np.isnan(ordered), axis=1) - 1
        pick = np.arange(rows.size)
        across[rows] = ordered[pick, (last * (1 - RULING_COVER)).astype(int)] >= RULING_LEVEL
        typical[rows] = ordered[pick, last // 2]
    lines = np.zeros(h, bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], across.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):  # each band of rows inked across
        peak = float(typical[start:stop].max())
        if stop - start > max(3, RULING_WIDTH * h) or peak > RULING_FAINT:
            continue  # too wide or too dark for a printed line: the digit's own stroke
        # a line has blank paper on both sides, along most of its length (a stroke of the digit
        # may run beside it for a while); a stroke of the digit that the turn lays along the rows
        # goes on being ink beside its middle rows. Looked at where the line is only the line
        bare = np.abs(turned[start + int(typical[start:stop].argmax())] - peak) <= 0.5 * peak  # (nan: False)
        beside = [b[~np.isnan(b)] for b in (turned[r][bare] for r in (start - 3, stop + 2) if 0 <= r < h)]
        if not bare.any() or any(b.size and np.percentile(b, 30) > RULING_PAPER * peak for b in beside):
            continue
        lines[max(0, start - 1):stop + 1] = True  # with the rows of its soft edges
    if not lines.any():
        return ink, None
    # a pixel that is the line at level s and ink at a behind it reads s + (1 - s) a: a = (v - s) / (1 - s)
    # (along the whole of each line: near a corner of the picture, a line runs out of the middle)
    level = np.zeros((whole.shape[0], 1), np.float32)
    # (a row of a line's soft edge is as faint as the line at most: a stroke along it is ink, and at a level
    # of 1 the formula divided by zero)
    level[top:top + h, 0] = np.where(lines, np.minimum(typical, RULING_FAINT), 0.0)
    removed = np.nan_to_num(whole - np.clip((whole - level) / (1.0 - level), 0.0, None))
    if turn:  # turned back, and the picture's own part of it
        back = rotate(removed, -turn, expand=True)
        top, left = (back.shape[0] - h) // 2, (back.shape[1] - w) // 2
        removed = back[top:top + h, left:left + w]
    return np.clip(ink - removed, 0.0, None).astype(np.float32), turn
