"""What lies around a digit and is not it: the frame of a form or a canvas, a table showing round
the sheet in a photo, and specks of dust or stray clicks beside the digit.

Works on ink maps in [0, 1] (``without_table``: on the grey picture), as ``mnistctl.images.prepare``
makes them; numpy, OpenCV and Pillow (through ``pixels``); no torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mnistctl.images.pixels import at_most, border, full_size, max_filter, otsu, piece_boxes, pieces

TOO_LITTLE_INK = 4  # pixels: an ink box smaller than this on both sides (work resolution) is a speck


FRAME_LINE = 0.9  # a row or column this full of ink, near its side of the picture, is part of a frame


def inside_frame(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """Where the inside of a frame around the digit is (y0, y1, x0, x1; ends exclusive), or None.

    A frame -- a form's box, a drawing canvas's border in a screenshot -- is ink along all four
    sides: rows and columns almost all ink within a sixth of the picture from each side. A digit
    has no such lines on every side (a 0 filling the picture is round, a 7's bar is one side)."""
    mask = ink > 0
    h, w = mask.shape
    rows, cols = mask.mean(1), mask.mean(0)
    bh, bw = max(2, h // 6), max(2, w // 6)
    top, bottom = np.flatnonzero(rows[:bh] >= FRAME_LINE), np.flatnonzero(rows[h - bh:] >= FRAME_LINE)
    left, right = np.flatnonzero(cols[:bw] >= FRAME_LINE), np.flatnonzero(cols[w - bw:] >= FRAME_LINE)
    if not (top.size and bottom.size and left.size and right.size):
        return None
    y0, y1 = int(top.max()) + 1, h - bh + int(bottom.min())
    x0, x1 = int(left.max()) + 1, w - bw + int(right.min())
    # the lines' soft inner edges: step past rows and columns still half ink
    while y0 < y1 and rows[y0] >= 0.5:
        y0 += 1
    while y1 > y0 and rows[y1 - 1] >= 0.5:
        y1 -= 1
    while x0 < x1 and cols[x0] >= 0.5:
        x0 += 1
    while x1 > x0 and cols[x1 - 1] >= 0.5:
        x1 -= 1
    # and a pixel more, for anti-aliasing
    y0, y1, x0, x1 = y0 + 1, y1 - 1, x0 + 1, x1 - 1
    if y1 - y0 < 4 or x1 - x0 < 4 or ink[y0:y1, x0:x1].sum() < 1.0:
        return None  # nothing inside: the lines are the drawing
    return y0, y1, x0, x1


SPECK_SHARE = 0.05  # a piece of ink apart from the digit with less than this share of the ink is a speck
PIECES_SIZE = 64  # pieces of ink are told apart on a copy this large (longest side)


def without_specks(ink: np.ndarray, pairs: bool = True) -> tuple[np.ndarray, bool]:
    """``ink`` without the small pieces lying apart from the digit (dust on a scan, a stray click in
    a paint program), and whether a large piece lies apart too (is it a single digit?).

    The digit is the largest piece, grown by every piece that reaches within a quarter of its size
    of it (the separate strokes of a 4 or a 5, a broken pencil line); what stays apart is a speck
    when it holds less than ``SPECK_SHARE`` of the ink, and is kept (with the doubt) otherwise.
    With ``pairs``, pieces that near are still doubted when two of them are digit-tall and side by
    side (``side_by_side``): two digits written close, a "13" or a "98"."""
    small = at_most(ink, PIECES_SIZE)
    labels, count = pieces(small > 0)
    if count < 2:
        return ink, False
    mass = np.bincount(labels.ravel(), weights=small.ravel(), minlength=count + 1)[1:]
    x0s, y0s, x1s, y1s = piece_boxes(labels, count).T
    box = np.stack([y0s, y1s - 1, x0s, x1s - 1], 1)  # y0, y1, x0, x1 per piece, inclusive
    kept = np.zeros(count, bool)
    kept[int(mass.argmax())] = True
    while True:
        y0, y1 = box[kept, 0].min(), box[kept, 1].max()
        x0, x1 = box[kept, 2].min(), box[kept, 3].max()
        reach = 0.25 * max(y1 - y0, x1 - x0) + 1
        near = ~kept & (box[:, 0] <= y1 + reach) & (box[:, 1] >= y0 - reach) & \
            (box[:, 2] <= x1 + reach) & (box[:, 3] >= x0 - reach)
        if not near.any():
            break
        kept |= near
    apart, large = ~kept, mass >= SPECK_SHARE * mass.sum()
    specks = apart & ~large
    pair = pairs and side_by_side(box[kept & large])
    if not specks.any():
        return ink, bool(apart.any()) or pair
    keep = np.concatenate([[True], ~specks])[labels]  # per pixel of the small copy
    return np.where(full_size(keep, ink.shape), ink, 0.0).astype(np.float32), bool((apart & ~specks).any()) or pair


OVERLAP = 0.4  # pieces sharing this share of the narrower one's width are strokes of one digit
SIDE_TALL = 0.6  # two pieces at least this share of the ink's height ...
SIDE_SHARE = 0.1  # ... sharing at most this share of the narrower one's columns: two digits


def side_by_side(box: np.ndarray) -> bool:
    """Whether two of these pieces (y0, y1, x0, x1 each, inclusive) are digit-tall and side by side,
    sharing hardly a column: two digits written close, not the strokes of one (a 4's or a 5's strokes
    share columns, even a 4's whose strokes do not meet: a fifth of them or more in the people-style
    corpus; a 5's flag or a 7's bar is short)."""
    height = box[:, 1].max() - box[:, 0].min() + 1 if len(box) else 0
    tall = box[box[:, 1] - box[:, 0] + 1 >= SIDE_TALL * height]
    spans = sorted((int(x0), int(x1)) for _, _, x0, x1 in tall)
    return any(min(a1, b1) - b0 + 1 <= SIDE_SHARE * min(a1 - a0 + 1, b1 - b0 + 1)
               for (a0, a1), (b0, b1) in zip(spans, spans[1:]))


# a table around a sheet: dark regions touching the border cover this share of it ...
TABLE_CONTACT = 0.15
TABLE_SIDE = 0.8  # ... and at least this share of one side of the picture
TABLE_DEPTH = 2  # ... reaching this many pixels of the 64-px copy into the picture, on average (twice
# as many when it runs along all four sides: thinner, that is the frame of a form or a canvas)
TABLE_EDGE = 0.25  # pixels this far from the sheet's tone towards the table's are the sheet's edge: painted too
SHEET_AREA, SHEET_FILL = 0.3, 0.7  # the sheet: this share of the picture at least, this solid (of its box)
SHEET_SHAPE = 0.84  # ... and with the digit on it, this share of its box at the best turn: a rectangle
# (an ellipse fills 0.79 of its box)


def without_table(grey: np.ndarray) -> np.ndarray:
    """A photo of a sheet lying on a table, the table showing along some sides, with the table
    painted in the sheet's tone (so the paper decides the polarity and the table is not ink).

    On a 64-px copy, split light from dark (Otsu). There is a table when all of these hold: dark
    regions touching the border cover ``TABLE_CONTACT`` of it, and nearly all of one side (the
    sheet's edge crosses the picture); the largest light region (the sheet) is large, solid and
    nearly fills its bounding box with the digit on it (a rectangle, turned up to 20 degrees);
    and other dark pieces lie apart from the border (the digit). A drawing that touches its edge
    (along part of a side), light ink on dark paper (no solid sheet) and a page without a table
    are left as they are; so are the thin lines of a frame along the border (``inside_frame``
    takes them away)."""
    if min(grey.shape) < 48:
        return grey
    edge = border(grey)
    if edge.min() == edge.max():
        return grey  # the border all one level (a drawing on a blank canvas): no table shows along it
    step = max(1, min(grey.shape) // (8 * PIECES_SIZE))  # a large photo: every few pixels are enough here
    small = at_most(grey[::step, ::step], PIECES_SIZE)
    light = small > otsu(small)
    ring = np.zeros(small.shape, bool)
    ring[[0, -1]], ring[:, [0, -1]] = True, True
    if (~light[ring]).mean() < TABLE_CONTACT or light.mean() < SHEET_AREA:
        return grey
    table = _at_border(~light, ring)
    ink = ~light & ~table
    if ink.sum() < TOO_LITTLE_INK:
        return grey  # nothing apart from the border: the dark along the border is the drawing
    lights, _ = pieces(light)
    sheet = lights == np.bincount(lights.ravel())[1:].argmax() + 1
    if sheet.mean() < SHEET_AREA or _box_fill(sheet) < SHEET_FILL or _box_fill(sheet | ink) < SHEET_SHAPE:
        return grey  # too small, or not a sheet: a fat light digit on dark paper is round, its holes dark
    sides = [float(side.mean()) >= TABLE_SIDE for side in (table[0], table[-1], table[:, 0], table[:, -1])]
    if not any(sides):
        return grey  # no side is the table's: the dark along the border is a drawing touching its edge
    depth = table.sum() / (table & ring).sum()  # how far it reaches into the picture, on average
    if depth < TABLE_DEPTH or (all(sides) and depth < 2 * TABLE_DEPTH):
        return grey  # lines along the border, or all around it: a frame, which inside_frame takes away
    # what is painted: the table with the sheet's edge, where the copy's pixels mix the two
    # (``TABLE_EDGE``), unless that would reach the digit; grown by a pixel of the copy
    paper = float(np.median(small[sheet]))
    wider = _at_border(small < paper - TABLE_EDGE * (paper - float(np.median(small[table]))), ring)
    if not (wider & ink).any():
        table = wider
    grown = max_filter(table)
    return np.where(full_size(grown, grey.shape), paper, grey).astype(np.float32)


SHEET_TURNS = range(-20, 21, 4)  # degrees: the turns of a sheet at which its box is measured


def _box_fill(mask: np.ndarray) -> float:
    """The share of its bounding box a mask fills, at the best of a few turns (``SHEET_TURNS``):
    about 1 for a rectangle at any of them, 0.79 for an ellipse at all."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    best = 0.0
    for angle in SHEET_TURNS:
        turned = np.asarray(img.rotate(angle, expand=True) if angle else img) > 127
        ys, xs = np.nonzero(turned)
        if ys.size:
            best = max(best, ys.size / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))
    return best


def _at_border(mask: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """The pieces of ``mask`` that touch the border (``ring``: the border's pixels)."""
    labels, count = pieces(mask)
    touching = np.zeros(count + 1, bool)
    touching[np.unique(labels[ring])] = True
    touching[0] = False
    return touching[labels]
