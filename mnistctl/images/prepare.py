"""Turn people's images of digits into MNIST-style inputs, the way MNIST itself was made.

MNIST digits are light ink on black, anti-aliased into a 20x20 box (aspect ratio kept) and placed
in 28x28 so that their intensity centre of mass is at the centre. Photos, scans and drawings are
not: they are dark ink on light paper, large, off-centre, noisy and unevenly lit. ``to_mnist``
bridges the two; an image that already looks like an MNIST digit passes through unchanged.

Everything here works on numpy arrays and Pillow images; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mnistctl.images.fit import CANVAS, fit, ink_box
from mnistctl.images.native import SMALL, native
from mnistctl.images.pixels import (
    at_most,
    border,
    enlarge,
    full_size,
    max_filter,
    median3,
    min_filter,
    otsu,
    percentile_rows,
    piece_boxes,
    pieces,
    to_array,
    to_pil,
)
from mnistctl.images.read import Decoded, ImageError, ImageSource, read_image  # noqa: F401  (re-exported)
from mnistctl.images.rulings import Turns, without_rulings

if TYPE_CHECKING:
    from mnistctl.images.numbers import Layout

WORK_SIZE = 320  # larger images are reduced to this longest side before the finer steps
# a large JPEG is decoded at a reduced scale that keeps this longest side at least: the digit is cut out
# of it and reduced to WORK_SIZE, so a digit a third of the picture wide loses nothing
DECODE_LONGEST = 3 * WORK_SIZE


def looks_like_mnist(d: Decoded) -> bool:
    """28x28 8-bit grey, light ink on a black border: an MNIST digit already."""
    if d.raw is None or d.raw.shape != (CANVAS, CANVAS):
        return False
    edge = border(d.raw)
    # most of the border black (its median at most 10, counted: np.median costs more than the rest)
    return 2 * int(np.count_nonzero(edge <= 10)) > edge.size and int(d.raw.max()) >= 128


def _background(ink: np.ndarray) -> np.ndarray | None:
    """A smooth estimate of the background level (uneven light, paper tone), per pixel; None
    when it is 0 everywhere.

    The 25th percentile of each of 8x8 blocks, the minimum over neighbouring blocks, upsampled.
    It is capped at the levels found along the border: smooth lighting peaks at an edge, so a higher
    estimate inside means a thick stroke filled its blocks (which must not be subtracted away).
    A drawing on a blank canvas has paper of exactly 0 in most blocks: counted, that tells the
    estimate is 0 without working it out.
    """
    h, w = ink.shape
    cells = 8
    bh, bw = max(1, h // cells), max(1, w // cells)
    ch, cw = h // bh, w // bw
    blocks = ink[: ch * bh, : cw * bw].reshape(ch, bh, cw, bw)
    # a block's 25th percentile is 0 when the values up to its (interpolated) rank all are
    blank = np.count_nonzero(blocks == 0, axis=(1, 3)) > int(np.ceil(0.25 * (bh * bw - 1)))
    if max_filter(blank).all():  # every block next to (or is) one whose percentile is 0: the minimum is 0
        return None
    low = min_filter(percentile_rows(blocks.transpose(0, 2, 1, 3).reshape(ch * cw, bh * bw), 25).reshape(ch, cw))
    low = np.minimum(low, float(border(low).max()) + 0.02)
    return to_array(to_pil(low).resize((w, h), Image.Resampling.BILINEAR))


@dataclass
class Prepared:
    """A 28x28 model input, and what preprocessing noticed about the image it came from."""

    image: np.ndarray  # uint8 [28, 28], light ink on black
    coverage: float = 0.0  # the fraction of the picture that is ink
    notes: tuple[str, ...] = ()  # reasons to doubt it is a single digit
    redrawn: bool = False  # made from a picture that was not an MNIST digit already (``to_mnist`` redrew it)
    box: tuple[int, int, int, int] | None = None  # the ink's box in the picture's pixels (x0, y0, x1, y1; ends
    # exclusive); None when the picture was only resized
    several: bool = False  # the ink is wider than a digit or in separate places: it may be a number
    layout: Layout | str | None = None  # its digits as a number is read (or why they cannot be found), where
    # they were looked for (``preparers.prepare_or_error``: in the process that prepared it)


SEVERAL_WIDE = 1.15  # ink wider than this times its height may be several digits side by side
INK_EVERYWHERE = 0.35  # coverage above which a picture probably is not one digit (unless it is SMALL: an 8x8
# scan's digit covers 35-60% of it)
MEDIAN_KEEP = 0.9  # the noise filter is used only when it keeps this share of the strong ink (and adds
# at most the rest)
MID_GREY = (0.25, 0.75)  # a border between these levels does not tell dark ink from light by itself
TINY = 16  # px: a picture whose shorter side is shorter (an 8x8 scan) is all digit: its corners tell the paper,
# and it has too few pixels to tell uneven light from ink (``look``)
TOO_LITTLE_INK = 4  # pixels: an ink box smaller than this on both sides (work resolution) is a speck


def to_mnist(d: Decoded) -> np.ndarray:
    """A 28x28 uint8 image of light ink on black, fitted and centred as MNIST digits are."""
    return analyse(d).image


def _as_ink(grey: np.ndarray, corner: int = 0) -> np.ndarray:
    """Ink as light on dark: the border is paper, so light paper is inverted (any colours, any
    number of grey levels).

    ``corner`` > 0 (a tiny picture, enlarged: ``corner`` px are one of its own pixels): a digit that
    fills its picture touches the edges, and a bold one (an 8x8 scan of a thick 0 or 8) covers as
    much of the border as the paper does: the border reads mid-grey or dark. Where the four corner
    pixels (the picture's own) are clearly light or dark, they are the paper: a digit seldom reaches
    them. Of 3,000 MNIST validation digits scanned at 8x8 (``benchmarks/writers.py``'s scans), 11
    bold ones were read as light ink on dark paper before, and the model saw the paper as the digit.
    (Not for larger pictures: a small photo's corners may be darkened by its lens.)"""
    h, w = grey.shape
    edge = border(grey, max(1, round(0.04 * min(h, w))))
    paper = float(edge[0]) if edge.min() == edge.max() else float(np.median(edge))  # a blank canvas's is one level
    if corner:
        c = corner
        corners = float(np.median(np.concatenate([grey[:c, :c], grey[:c, -c:], grey[-c:, :c], grey[-c:, -c:]])))
        if not MID_GREY[0] <= corners <= MID_GREY[1]:
            paper = corners
    dark_ink = paper > 0.5
    if MID_GREY[0] <= paper <= MID_GREY[1]:
        # a mid-grey border (grey paper, a vignette darkening the corners): the ink is what stands
        # out furthest from the picture's typical level, darker or lighter
        step = int(np.ceil(np.sqrt(grey.size / 250_000)))  # a sample of at most about 250,000 pixels
        sample = grey[::step, ::step]
        level = float(np.median(sample))
        row = sample.reshape(1, -1)  # a small digit on a large page is 0.05% ink
        lo, hi = percentile_rows(row, 0.02)[0], percentile_rows(row, 99.98)[0]
        dark_ink = level - float(lo) >= float(hi) - level
    if dark_ink:
        return (1.0 - grey).astype(np.float32)
    return grey.astype(np.float32, copy=True)


FAINTEST = 0.08  # ink fainter than this (of the full range) after the background is taken away: a blank picture


def _full_range(grey: np.ndarray) -> np.ndarray:
    """A tiny picture (all digit) whose levels span less than ``FAINTEST`` stretched to the full range:
    scikit-learn's 8x8 digits saved as they are hold block counts 0-16 of 255 (or of 1, as floats),
    and read as a blank picture. A larger picture so faint stays blank: there it is most likely noise."""
    lo, hi = float(grey.min()), float(grey.max())
    return ((grey - lo) / (hi - lo)).astype(np.float32) if 0 < hi - lo < FAINTEST else grey


def _clean(ink: np.ndarray, turns: Turns | None = None, noisy: bool = True,
           shading: bool = True) -> tuple[np.ndarray, float, Turns]:
    """Ink in [0, 1] with the background removed, a notebook's printed lines taken away and noise
    suppressed (``noisy``: a picture at its own pixels; an enlarged one is smooth); its Otsu
    threshold; and the turns of the lines found (``rulings.without_rulings``). Raises ImageError
    when there is no ink.

    ``shading`` false (a tiny picture, enlarged): no background estimate. It is made in eighths of the
    picture: in an 8x8 scan an eighth is one pixel, and a bold digit's inner pixels (no paper near
    them) were taken for background and cut out of its strokes (a thick 0 came out as four blobs)."""
    h, w = ink.shape
    # uneven light and paper tone: subtract a smooth background estimate
    if shading and min(h, w) >= 16:
        background = _background(ink)
        if background is not None:
            ink = np.clip(ink - background, 0.0, None)
    top = float(ink.max())
    if top < FAINTEST:
        raise ImageError("no ink found: the image looks blank")
    ink, turns = without_rulings(ink / top, turns)
    # faint noise and texture: a 3x3 median filter -- unless it would take a noticeable part of the
    # strokes themselves (the thin necks of a digit on a tiny canvas, a 1-2 px pen), or add as much
    # (the 1-2 px loops of a digit on a tiny canvas, filled): a clean drawing does not need it, and a
    # filter allowed to take 40% of the ink broke such digits into pieces
    if noisy and min(h, w) >= 9:
        filtered = median3(ink)
        strong, kept = ink > 0.5, filtered > 0.5
        count, added = int(strong.sum()), int(np.count_nonzero(kept & ~strong))
        if count and kept.sum() >= MEDIAN_KEEP * count and added <= (1 - MEDIAN_KEEP) * count \
                and filtered.max() >= 0.08:
            ink = filtered / float(filtered.max())
    threshold = otsu(ink)
    if threshold <= 0.02:
        raise ImageError("no ink found: the image looks blank")
    return ink, threshold, turns


def _soft_mask(ink: np.ndarray, threshold: float) -> np.ndarray:
    """Keep what stands out (above the threshold, grown by a pixel to keep anti-aliased edges, except
    on a small canvas where a pixel is a large part of a stroke), with soft edges."""
    mask = ink > threshold
    if min(ink.shape) >= 48:
        mask = max_filter(mask)
    lo = threshold * 0.5
    out = np.where(mask, np.clip((ink - lo) / (1.0 - lo), 0.0, 1.0), 0.0).astype(np.float32)
    if out.sum() < 1.0:
        raise ImageError("no ink found: the image looks blank")
    return out


FRAME_LINE = 0.9  # a row or column this full of ink, near its side of the picture, is part of a frame


def _inside_frame(ink: np.ndarray) -> tuple[int, int, int, int] | None:
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


def _without_specks(ink: np.ndarray) -> tuple[np.ndarray, bool]:
    """``ink`` without the small pieces lying apart from the digit (dust on a scan, a stray click in
    a paint program), and whether a large piece lies apart too (is it a single digit?).

    The digit is the largest piece, grown by every piece that reaches within a quarter of its size
    of it (the separate strokes of a 4 or a 5, a broken pencil line); what stays apart is a speck
    when it holds less than ``SPECK_SHARE`` of the ink, and is kept (with the doubt) otherwise."""
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
    apart = ~kept
    specks = apart & (mass < SPECK_SHARE * mass.sum())
    if not specks.any():
        return ink, bool(apart.any())
    keep = np.concatenate([[True], ~specks])[labels]  # per pixel of the small copy
    return np.where(full_size(keep, ink.shape), ink, 0.0).astype(np.float32), bool((apart & ~specks).any())


# a table around a sheet: dark regions touching the border cover this share of it ...
TABLE_CONTACT = 0.15
TABLE_SIDE = 0.8  # ... and at least this share of one side of the picture
TABLE_DEPTH = 2  # ... reaching this many pixels of the 64-px copy into the picture, on average (twice
# as many when it runs along all four sides: thinner, that is the frame of a form or a canvas)
TABLE_EDGE = 0.25  # pixels this far from the sheet's tone towards the table's are the sheet's edge: painted too
SHEET_AREA, SHEET_FILL = 0.3, 0.7  # the sheet: this share of the picture at least, this solid (of its box)
SHEET_SHAPE = 0.84  # ... and with the digit on it, this share of its box at the best turn: a rectangle
# (an ellipse fills 0.79 of its box)


def _without_table(grey: np.ndarray) -> np.ndarray:
    """A photo of a sheet lying on a table, the table showing along some sides, with the table
    painted in the sheet's tone (so the paper decides the polarity and the table is not ink).

    On a 64-px copy, split light from dark (Otsu). There is a table when all of these hold: dark
    regions touching the border cover ``TABLE_CONTACT`` of it, and nearly all of one side (the
    sheet's edge crosses the picture); the largest light region (the sheet) is large, solid and
    nearly fills its bounding box with the digit on it (a rectangle, turned up to 20 degrees);
    and other dark pieces lie apart from the border (the digit). A drawing that touches its edge
    (along part of a side), light ink on dark paper (no solid sheet) and a page without a table
    are left as they are; so are the thin lines of a frame along the border (``_inside_frame``
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
        return grey  # lines along the border, or all around it: a frame, which _inside_frame takes away
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


@dataclass
class Look:
    """A picture's ink made ready for finding what is on it (``look``)."""

    ink: np.ndarray  # the whole picture as light ink on dark, a table around the sheet painted out
    view: np.ndarray  # ``ink`` reduced to the work size (``ink`` itself when it is no larger)
    soft: np.ndarray  # ``view`` cleaned (background, printed lines, noise) and soft-masked
    turns: Turns  # the printed lines' turns (``rulings``), to clean a crop of the picture alike
    inside: tuple[int, int, int, int] | None  # (y0, y1, x0, x1) of ``soft`` inside a frame round it, if any
    scale: float  # the picture's own pixels per pixel of ``ink``


def look(d: Decoded, longest: int) -> Look:
    """``d`` as ink, reduced to ``longest`` px at most, cleaned and soft-masked, and the inside of a
    frame round it: the first steps of reading one digit (``analyse``) and a number
    (``numbers.find_digits``), at their own work sizes.

    A small picture (under ``SMALL`` px on its longer side: a digit on a tiny canvas, an 8x8 scan)
    is enlarged first, smoothly and by a whole factor, so that its ink is found where a pixel is a
    small part of a stroke: at its own size the threshold cut off its grey edges and broke its
    strokes. On 8x8 pictures of the writer-shift check's *check* half (benchmarks/writers.py) the
    built-in model of the time read 80.9% before and 84.9% so (today's: 86.8% and 89.3%); the
    full-size check and the people-style digits of the validation split were unchanged."""
    grey, factor = d.grey, 1
    tiny = min(grey.shape) < TINY
    if tiny:
        grey = _full_range(grey)
    if max(grey.shape) < SMALL:
        factor = -(-SMALL // max(grey.shape))
        grey = enlarge(grey, factor)
    ink = _as_ink(_without_table(grey), corner=factor if tiny else 0)
    view = at_most(ink, longest)
    cleaned, threshold, turns = _clean(view, noisy=factor == 1, shading=not tiny)
    soft = _soft_mask(cleaned, threshold)
    return Look(ink, view, soft, turns, _inside_frame(soft), d.scale / factor)


def analyse(d: Decoded) -> Prepared:
    """``to_mnist`` with what it noticed: how much of the picture is ink, and any reason to doubt
    that it shows a single digit (ink everywhere, ink in separate places, a mere speck)."""
    if looks_like_mnist(d):
        assert d.raw is not None  # looks_like_mnist says there is a raw 28x28 picture
        ys, xs = np.nonzero(d.raw > 0)
        return Prepared(d.raw.copy(), float(np.mean(d.raw > 127)),
                        box=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    # a look at the whole picture (enlarged when small, reduced when large) finds where the digit is and how
    # much ink there is; a frame around the digit is left out: what is inside it is the picture
    seen = look(d, WORK_SIZE)
    ink, view, view_ink, turns, inside = seen.ink, seen.view, seen.soft, seen.turns, seen.inside
    fy0, fy1, fx0, fx1 = inside or (0, view_ink.shape[0], 0, view_ink.shape[1])
    view_ink, two_things = _without_specks(view_ink[fy0:fy1, fx0:fx1])
    coverage = float((view_ink > 0).mean())
    y0, y1, x0, x1 = ink_box(view_ink)
    y0, y1, x0, x1 = y0 + fy0, y1 + fy0, x0 + fx0, x1 + fx0
    notes = []
    if two_things:
        notes.append("ink in separate places: is it a single digit?")
    if coverage > INK_EVERYWHERE and max(d.grey.shape) >= SMALL:  # (a tiny picture is mostly its digit)
        notes.append(f"ink covers {100 * coverage:.0f}% of the picture: is it a single digit?")
    if max(y1 - y0, x1 - x0) + 1 < TOO_LITTLE_INK:
        notes.append("very little ink: is it a digit?")
    sy, sx = ink.shape[0] / view.shape[0], ink.shape[1] / view.shape[1]
    box = (int(x0 * sx * seen.scale), int(y0 * sy * seen.scale), int(np.ceil((x1 + 1) * sx * seen.scale)),
           int(np.ceil((y1 + 1) * sy * seen.scale)))
    several = two_things or x1 - x0 > SEVERAL_WIDE * (y1 - y0)
    if view is ink:
        ink = view_ink
    else:
        # a large picture: cut the digit out at full resolution (a small digit on a large page
        # keeps its strokes), with a margin, and prepare that
        margin = max(y1 - y0, x1 - x0) * 0.15 + 2
        # (inside the frame, where there is one)
        (lo_y, hi_y), (lo_x, hi_x) = ((0, ink.shape[0]), (0, ink.shape[1])) if inside is None else \
            ((int(np.ceil(fy0 * sy)), int(fy1 * sy)), (int(np.ceil(fx0 * sx)), int(fx1 * sx)))
        top, bottom = max(lo_y, int((y0 - margin) * sy)), min(hi_y, int(np.ceil((y1 + 1 + margin) * sy)))
        left, right = max(lo_x, int((x0 - margin) * sx)), min(hi_x, int(np.ceil((x1 + 1 + margin) * sx)))
        crop = at_most(ink[top:bottom, left:right], WORK_SIZE)
        ink = _without_specks(_soft_mask(*_clean(crop, turns)[:2]))[0]
    return Prepared(fit(ink), coverage, tuple(notes), redrawn=True, box=box, several=several)


def resize_as_is(d: Decoded) -> np.ndarray:
    """``--no-preprocess``: the image only resized to 28x28 (for inputs prepared by hand)."""
    if d.raw is not None and d.raw.shape == (CANVAS, CANVAS):
        return d.raw.copy()
    img = to_pil(d.grey).resize((CANVAS, CANVAS), Image.Resampling.BOX if max(d.grey.shape) > CANVAS
                              else Image.Resampling.BILINEAR)
    return np.round(np.clip(to_array(img), 0, 1) * 255.0).astype(np.uint8)


def prepare_image(source: ImageSource, preprocess: bool = True) -> np.ndarray:
    """Any image (path, bytes, stream, PIL image) -> the 28x28 uint8 input a model takes: made to
    look like an MNIST digit (``to_mnist``) or, with ``preprocess=False``, only resized."""
    return prepare(source, preprocess).image


def prepare(source: ImageSource, preprocess: bool = True) -> Prepared:
    """``prepare_image`` with what preprocessing noticed (``Prepared.notes``)."""
    return prepared_from(decode(source, preprocess), preprocess)


def decode(source: ImageSource, preprocess: bool = True) -> Decoded:
    """``source`` decoded as ``prepare`` decodes it: when it preprocesses, a large picture reduced
    and a small one that was enlarged seen at its own size (``native``)."""
    return native(read_image(source, DECODE_LONGEST)) if preprocess else read_image(source)


def prepared_from(decoded: Decoded, preprocess: bool = True) -> Prepared:
    """What ``prepare`` makes of a decoded picture."""
    return analyse(decoded) if preprocess else Prepared(resize_as_is(decoded))
