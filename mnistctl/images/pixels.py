"""The pixel-level algorithms preprocessing is built from, each careful about its degenerate cases:
float images through Pillow and back, box resampling, Otsu's threshold (a two-level image
included), a picture's border, the 8-connected pieces of a mask, minimum, maximum and median filters,
and a mask from a reduced copy back at full size.

Numpy, OpenCV and Pillow; no torch.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def to_pil(a: np.ndarray) -> Image.Image:
    """A float image as a Pillow "F" image (for its filters and resampling)."""
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")


def to_array(img: Image.Image) -> np.ndarray:
    """A Pillow image as a float32 array."""
    return np.array(img, dtype=np.float32)  # a writable copy


def otsu(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of values in [0, 1]: the cut that maximises the between-class variance.

    When several cuts tie (a two-level image: every cut between the two levels separates the same
    pixels) the middle of the tied range is taken, not the first (which would cut just above the
    background and, in the first versions of this code, called every clean drawing blank).
    """
    hist, edges = _histogram(values, bins), np.linspace(0.0, 1.0, bins + 1)
    p = hist.astype(np.float64) / max(1, hist.sum())
    w0 = np.cumsum(p)[:-1]
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * w0 - mu[:-1]) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    best = between.max()
    ties = np.flatnonzero(between >= best * (1 - 1e-9))
    # the tied cuts form one run when the levels between them are empty: take its middle
    i = int(ties[len(ties) // 2]) if np.all(np.diff(ties) == 1) else int(ties[0])
    return float(edges[i + 1])


def _histogram(values: np.ndarray, bins: int) -> np.ndarray:
    """``np.histogram(values, bins, range=(0, 1))[0]``, the same counts, by OpenCV (8x faster).

    OpenCV's bins are half-open, so one more bin past 1 is counted and added to the last (1 is in
    it, as in numpy's); values below 0 are not counted by either, values above 1 are left out first.
    Each value's bin is floor(v * bins): exact for a power of two, as numpy's is."""
    v = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, 1)
    if v.size and float(v.max()) > 1.0:
        v = np.ascontiguousarray(v[v <= 1.0]).reshape(-1, 1)
    if v.size == 0:
        return np.zeros(bins, np.int64)
    hist = cv2.calcHist([v], [0], None, [bins + 1], [0.0, (bins + 1) / bins]).ravel().astype(np.int64)
    hist[bins - 1] += hist[bins]
    return hist[:bins]


def percentile_rows(rows: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(rows, q, axis=1)`` (linear interpolation), the same values, three times as fast:
    one partition at the lower rank, and the next value up is the least of what lies above it."""
    n = rows.shape[1]
    rank = q / 100 * (n - 1)
    lo = int(rank)
    part = np.partition(rows, lo, axis=1)
    below = part[:, lo]
    if lo + 1 >= n:
        return below
    above = part[:, lo + 1:].min(axis=1)
    diff, t = above - below, rank - lo  # as numpy's own interpolation, from whichever end is nearer
    return above - diff * (1 - t) if t >= 0.5 else below + diff * t


def rotate(a: np.ndarray, angle: float, expand: bool = False, fill: float = 0.0) -> np.ndarray:
    """``a`` turned ``angle`` degrees anticlockwise about its centre, bilinear, as Pillow's
    ``Image.rotate`` turns an "F" image (``expand``: large enough to hold all of it; ``fill``: where
    it was not), by OpenCV, 3-14x faster: a point's value comes from its four nearest pixels, the
    edge pixels repeated half a pixel out, ``fill`` beyond. (OpenCV weighs the four in 32nds of a
    pixel, Pillow exactly: values may differ by a little of the step between neighbours.)"""
    a = np.ascontiguousarray(a, dtype=np.float32)
    h, w = a.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    size = (w, h)
    if expand:  # Pillow's size: the turned corners' extent, rounded outwards; the centres kept together
        turn = -np.radians(angle % 360.0)
        cos, sin = round(float(np.cos(turn)), 15), round(float(np.sin(turn)), 15)
        xs = [cos * (x - w / 2) + sin * (y - h / 2) + w / 2 for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
        ys = [-sin * (x - w / 2) + cos * (y - h / 2) + h / 2 for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
        size = (int(np.ceil(max(xs)) - np.floor(min(xs))), int(np.ceil(max(ys)) - np.floor(min(ys))))
        matrix[:, 2] += ((size[0] - w) / 2, (size[1] - h) / 2)
    turned = cv2.warpAffine(a, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones_like(a, dtype=np.uint8), matrix, size, flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    turned[inside == 0] = fill
    return turned


def border(a: np.ndarray, ring: int = 1) -> np.ndarray:
    """The values of the ``ring`` outermost rows and columns of ``a``, flat (corners counted twice)."""
    return np.concatenate([a[:ring].ravel(), a[-ring:].ravel(), a[:, :ring].ravel(), a[:, -ring:].ravel()])


def at_most(a: np.ndarray, longest: int) -> np.ndarray:
    """``a`` reduced to ``longest`` pixels on its longer side when it is larger; else ``a`` itself."""
    return reduce_to(a, longest) if max(a.shape) > longest else a


def reduce_to(a: np.ndarray, longest: int) -> np.ndarray:
    """``a`` resampled (box filter) so that its longer side is ``longest`` pixels."""
    h, w = a.shape
    scale = longest / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return to_array(to_pil(a).resize(size, Image.Resampling.BOX))


def enlarge(a: np.ndarray, factor: int) -> np.ndarray:
    """``a`` (values in [0, 1]) ``factor`` times larger on each side, bicubic, clipped to [0, 1]."""
    h, w = a.shape
    big = cv2.resize(np.ascontiguousarray(a, dtype=np.float32), (w * factor, h * factor),
                     interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0.0, 1.0)


def pieces(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected pieces of a boolean mask: (labels 1..count, 0 for background; count).

    OpenCV's ``connectedComponents``, its labels renumbered in the order of each piece's first
    pixel in reading order (which piece wins a tie does not depend on OpenCV's algorithm)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if count <= 2:
        return labels, count - 1
    _, first = np.unique(labels.ravel(), return_index=True)
    order = np.empty(count, np.int32)
    order[0] = 0
    order[1 + np.argsort(first[1:])] = np.arange(1, count, dtype=np.int32)
    return order[labels], count - 1


def piece_boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """The box of each of ``pieces``' ``count`` pieces: int ``[count, 4]`` of x0, y0, x1, y1 (ends
    exclusive)."""
    ys, xs = np.nonzero(labels)
    which = labels[ys, xs] - 1
    box = np.stack([np.full(count, labels.shape[1]), np.full(count, labels.shape[0]), np.zeros(count, int),
                    np.zeros(count, int)], 1)
    np.minimum.at(box[:, 0], which, xs)
    np.minimum.at(box[:, 1], which, ys)
    np.maximum.at(box[:, 2], which, xs + 1)
    np.maximum.at(box[:, 3], which, ys + 1)
    return box


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


def min_filter(a: np.ndarray, size: int = 3) -> np.ndarray:
    """Each pixel the minimum of the ``size`` x ``size`` square around it (what lies beyond the
    picture's edge not counted): an erosion. Float32, or a mask for a mask."""
    if a.dtype == bool:
        return cv2.erode(a.view(np.uint8), _square(size)).view(bool)
    return cv2.erode(np.ascontiguousarray(a, dtype=np.float32), _square(size))


def max_filter(a: np.ndarray, size: int = 3) -> np.ndarray:
    """Each pixel the maximum of the ``size`` x ``size`` square around it: a dilation. Float32,
    or a mask for a mask."""
    if a.dtype == bool:
        return cv2.dilate(a.view(np.uint8), _square(size)).view(bool)
    return cv2.dilate(np.ascontiguousarray(a, dtype=np.float32), _square(size))


def median3(a: np.ndarray) -> np.ndarray:
    """Each pixel the median of the 3x3 square around it (the picture's edge repeated), float32."""
    return cv2.medianBlur(np.ascontiguousarray(a, dtype=np.float32), 3)


def full_size(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask made on a reduced copy, at the size of the picture it was reduced from (nearest)."""
    (h, w), (sh, sw) = shape, mask.shape
    rows = np.minimum(np.arange(h) * sh // h, sh - 1)
    cols = np.minimum(np.arange(w) * sw // w, sw - 1)
    return mask[rows][:, cols]
