"""Ink placed as MNIST's digits are: cropped to its mass, its longer side scaled to 20 px
(anti-aliased, aspect ratio kept, a fine pen thickened and a marker thinned to MNIST's stroke),
centred by its centre of mass in 28x28; ``widen``, the second look at a redrawn digit; and
``at_width``, a narrow digit shown at a usual width (a doubt, never the answer).

Numpy and Pillow (through ``pixels``); no torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mnistctl.errors import ImageError
from mnistctl.images.pixels import max_filter, min_filter, reduce_to, to_array, to_pil

BOX, CANVAS = 20, 28
THICK = 3.5  # px at the final size: strokes wider than this (a marker) are thinned


def _mass_bounds(profile: np.ndarray, trim: float = 0.003) -> tuple[int, int]:
    """First and last index holding the ink mass, ignoring ``trim`` of it at each end."""
    c = np.cumsum(profile)
    total = c[-1]
    lo = int(np.searchsorted(c, total * trim, side="right"))
    hi = int(np.searchsorted(c, total * (1 - trim), side="left"))
    return lo, max(lo, min(hi, len(profile) - 1))


def ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), inclusive: where the ink mass is, ignoring a trace of it at each end."""
    y0, y1 = _mass_bounds(ink.sum(1))
    x0, x1 = _mass_bounds(ink.sum(0))
    return y0, y1, x0, x1


def stroke_width(ink: np.ndarray) -> float:
    """The typical stroke width in pixels: twice the ink area over its boundary length (a 1 px
    line reads as 2, a w px stroke as w)."""
    mask = ink > 0.5
    area = int(mask.sum())
    if area == 0:
        return 0.0
    inner = min_filter(mask)
    return 2.0 * area / max(1, area - int(inner.sum()))


def _thin_gently(ink: np.ndarray, largest: int) -> np.ndarray:
    """Erode with the largest odd window up to ``largest`` that keeps 60% of the ink, so that no
    stroke breaks (a marker's strokes get thinner, its closed loops stay closed as they were).

    A window of 2k+1 is k erosions by 3x3 (a square's minimum is separable and composes), so each
    larger window costs one small filter, and no window wider than the picture is tried: the work is
    bounded by the picture's size, not by the stroke's (a solid bar once took minutes)."""
    area, best = float((ink > 0.5).sum()), ink
    for _ in range(3, min(largest, 2 * max(ink.shape) + 1) + 1, 2):
        thinner = min_filter(best)
        if (thinner > 0.5).sum() < 0.6 * area:
            break
        best = thinner
    return best


def fit(ink: np.ndarray, thin: bool = True) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20 px (anti-aliased, aspect ratio kept), and place
    it in 28x28 with its centre of mass at the centre, as MNIST digits are. Strokes that would come
    out thinner than a pixel (a fine pen on a large canvas) are thickened first, as MNIST's are
    about two pixels wide; wider than ``THICK`` (a marker) thinned, unless ``thin`` is false (a tiny
    picture: an 8x8 scan of a bold pen, enlarged, is all stroke, and thinning it wore its shape away)."""
    y0, y1, x0, x1 = ink_box(ink)
    crop = ink[y0:y1 + 1, x0:x1 + 1]
    ch, cw = crop.shape
    scale = BOX / max(ch, cw)
    width = stroke_width(crop) * scale  # as it would come out
    if scale < 0.5 and (width < 1.0 or (thin and width > THICK)):
        # at four times the final size: a fine pen is thickened, a marker thinned, to MNIST's ~2.5 px
        mid = reduce_to(crop, 4 * BOX)
        mid = mid / max(float(mid.max()), 1e-6)
        if width < 1.0:
            mid = max_filter(mid, 7)
        else:
            mid = _thin_gently(mid, 2 * int(round((width - 2.5) * 4 / 2)) + 1)
        crop, (ch, cw) = mid, mid.shape
        scale = BOX / max(ch, cw)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    digit = np.clip(to_array(to_pil(crop).resize(size, method)), 0.0, None)
    if digit.max() <= 0:
        raise ImageError("no ink found: the image looks blank")
    digit /= digit.max()
    dh, dw = digit.shape
    ys, xs = np.mgrid[0:dh, 0:dw]
    mass = digit.sum()
    cy, cx = (ys * digit).sum() / mass, (xs * digit).sum() / mass
    top_y = int(np.clip(round(CANVAS / 2 - 0.5 - cy), 0, CANVAS - dh))
    left_x = int(np.clip(round(CANVAS / 2 - 0.5 - cx), 0, CANVAS - dw))
    out = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    out[top_y:top_y + dh, left_x:left_x + dw] = digit
    return np.round(out * 255.0).astype(np.uint8)


WIDER = 0.5  # ``widen``: each pixel becomes at least this share of its brightest four-neighbour


def widen(images: np.ndarray) -> np.ndarray:
    """Digits ``[..., 28, 28]`` (uint8) with strokes about half a pixel wider: each pixel becomes at
    least half of its brightest four-neighbour, a soft rim around every stroke.

    A model trained on MNIST knows its strokes' width and anti-aliased rims; people's strokes are
    thinner or thicker and a drawing's edges are hard. ``Classifier.classify`` reads a redrawn
    picture both as prepared and so widened, and averages the two (docs/design-notes.md: "Two looks")."""
    x = np.asarray(images)
    pad = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    near = np.maximum.reduce([pad[..., :-2, 1:-1], pad[..., 2:, 1:-1], pad[..., 1:-1, :-2], pad[..., 1:-1, 2:]])
    return np.maximum(x, np.round(near * WIDER).astype(x.dtype))


INK = 40  # ``at_width``: a pixel brighter than this (of 255) is ink


def at_width(images: np.ndarray, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """Prepared digits ``[N, 28, 28]`` whose ink is narrower than ``aspect`` (its width over its height)
    stretched sideways to that aspect, in the same rows, centred; and which were (bool ``[N]``).

    A condensed hand's 2, 4 or 8, fitted by its height as MNIST's digits are, is a thin upright
    stroke that a network trained on MNIST reads as a 1 and is sure of it. Shown at a usual width
    it is read as what it is; a 1 mostly stays a 1 (docs/design-notes.md: "Narrow hands")."""
    x = np.asarray(images)
    out, narrow = x.copy(), np.zeros(len(x), bool)
    for i, image in enumerate(x):
        ys, xs = np.nonzero(image > INK)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
        height, width = y1 - y0 + 1, x1 - x0 + 1
        if width / height >= aspect:
            continue
        wide = min(CANVAS, max(1, int(round(height * aspect))))
        crop = Image.fromarray(np.ascontiguousarray(image[y0:y1 + 1, x0:x1 + 1]))
        out[i] = 0
        left = CANVAS // 2 - wide // 2
        out[i, y0:y1 + 1, left:left + wide] = np.asarray(crop.resize((wide, int(height)), Image.Resampling.BILINEAR))
        narrow[i] = True
    return out, narrow
