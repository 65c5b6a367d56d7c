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

from mnistctl.images.around import TOO_LITTLE_INK, inside_frame, without_specks, without_table
from mnistctl.images.fit import CANVAS, fit, ink_box
from mnistctl.images.native import SMALL, native
from mnistctl.images.pixels import (
    at_most,
    border,
    enlarge,
    max_filter,
    median3,
    min_filter,
    otsu,
    percentile_rows,
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


MNIST_SPAN = 22  # px: an MNIST digit's ink spans 20 px at most (its box); a 28x28 picture whose ink (pixels above
MNIST_INK = 64  # this level: a JPEG's ringing stays below it) spans more is a digit filling its picture, fitted


def looks_like_mnist(d: Decoded) -> bool:
    """28x28 8-bit grey, light ink on a black border, no taller or wider than MNIST's 20-px box: an
    MNIST digit already. (Every one of MNIST's 55,000 training digits spans 20 px at most, even
    counting its faintest pixels; an 8x8 scan enlarged to 28x28 in light on dark spans all 28 and was
    read as given: 96.3% of 600 validation scans so, 98.0% fitted. Counted above 32, 9% of validation
    digits saved as JPEG at quality 50 spanned more, by the JPEG's ringing; above 64, none.)"""
    if d.raw is None or d.raw.shape != (CANVAS, CANVAS):
        return False
    edge = border(d.raw)
    # most of the border black (its median at most 10, counted: np.median costs more than the rest)
    if 2 * int(np.count_nonzero(edge <= 10)) <= edge.size or int(d.raw.max()) < 128:
        return False
    ink = d.raw > MNIST_INK
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= MNIST_SPAN


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
CORNER_EXTREME = 0.05  # a tiny picture's corner this near (of its range) to its lightest or darkest level is blank
TINY = 16  # px: a picture whose shorter side is shorter (an 8x8 scan) is all digit: its corners tell the paper,
# and it has too few pixels to tell uneven light from ink (``look``)


def to_mnist(d: Decoded) -> np.ndarray:
    """A 28x28 uint8 image of light ink on black, fitted and centred as MNIST digits are."""
    return analyse(d).image


def _as_ink(grey: np.ndarray, corner: int = 0) -> np.ndarray:
    """Ink as light on dark: the border is paper, so light paper is inverted (any colours, any
    number of grey levels).

    ``corner`` > 0 (a tiny picture, enlarged: ``corner`` px are one of its own pixels): a digit that
    fills its picture touches the edges, and a bold one (an 8x8 scan of a thick 0 or 8) covers as
    much of the border as the paper does: the border reads mid-grey or dark. Its four corner pixels
    (the picture's own) decide: blank paper is the picture's lightest or darkest level exactly, and
    a corner the digit reaches is seldom wholly ink, so the extreme more corners show is the paper;
    when as many show each, the corners' median, where it is clearly light or dark. Of 3,000 MNIST
    validation digits scanned at 8x8 (``benchmarks/writers.py``'s scans), 11 bold ones were read as
    light ink on dark paper by the border alone; written 1 px bolder, 92 by the corners' median and
    15 so (2 px: 148 and 27). (Not for larger pictures: a small photo's corners may be darkened by its
    lens.)"""
    h, w = grey.shape
    edge = border(grey, max(1, round(0.04 * min(h, w))))
    paper = float(edge[0]) if edge.min() == edge.max() else float(np.median(edge))  # a blank canvas's is one level
    if corner:
        c = corner
        corners = [grey[:c, :c], grey[:c, -c:], grey[-c:, :c], grey[-c:, -c:]]
        lo, hi = float(grey.min()), float(grey.max())
        near = CORNER_EXTREME * (hi - lo)
        light = sum(float(k.mean()) >= hi - near for k in corners)
        dark = sum(float(k.mean()) <= lo + near for k in corners)
        median = float(np.median(np.concatenate(corners)))
        if light != dark:
            paper = hi if light > dark else lo
        elif not MID_GREY[0] <= median <= MID_GREY[1]:
            paper = median
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
    ink = _as_ink(without_table(grey), corner=factor if tiny else 0)
    view = at_most(ink, longest)
    cleaned, threshold, turns = _clean(view, noisy=factor == 1, shading=not tiny)
    soft = _soft_mask(cleaned, threshold)
    return Look(ink, view, soft, turns, inside_frame(soft), d.scale / factor)


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
    # a tiny picture's blocks may part a stroke: no doubt for digit-tall pieces side by side
    tiny = min(d.grey.shape) < TINY
    view_ink, two_things = without_specks(view_ink[fy0:fy1, fx0:fx1], pairs=not tiny)
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
    (ox, oy), s = d.origin, seen.scale
    box = (int(ox + x0 * sx * s), int(oy + y0 * sy * s), int(np.ceil(ox + (x1 + 1) * sx * s)),
           int(np.ceil(oy + (y1 + 1) * sy * s)))
    # a picture under 16 px each way (an 8x8 scan) is one digit, however wide its ink
    several = max(d.grey.shape) >= TINY and (two_things or x1 - x0 > SEVERAL_WIDE * (y1 - y0))
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
        ink = without_specks(_soft_mask(*_clean(crop, turns)[:2]))[0]
    # a tiny picture's strokes are not thinned: the training's scans (``data.splits.scanned``) are not
    return Prepared(fit(ink, thin=not tiny), coverage, tuple(notes), redrawn=True, box=box,
                    several=several)


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
