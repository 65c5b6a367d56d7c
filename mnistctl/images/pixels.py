"""The pixel-level algorithms preprocessing is built from, each careful about its degenerate cases:
float images through Pillow and back, box resampling, Otsu's threshold (a two-level image
included), a picture's border, the 8-connected pieces of a mask, and a mask from a reduced copy back at full size.

Numpy and Pillow only; no torch.
"""

from __future__ import annotations

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
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    w0 = np.cumsum(p)[:-1]
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * w0 - mu[:-1]) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    best = between.max()
    ties = np.flatnonzero(between >= best * (1 - 1e-9))
    # the tied cuts form one run when the levels between them are empty: take its middle
    i = int(ties[len(ties) // 2]) if np.all(np.diff(ties) == 1) else int(ties[0])
    return float(edges[i + 1])


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


def pieces(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected pieces of a boolean mask: (labels 1..count, 0 for background; count)."""
    h, w = mask.shape
    flat = mask.ravel().tolist()
    labels = [0] * (h * w)
    count = 0
    for start in np.flatnonzero(mask).tolist():
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:
            i = stack.pop()
            y, x = divmod(i, w)
            for ny in (y - 1, y, y + 1):
                if 0 <= ny < h:
                    for nx in (x - 1, x, x + 1):
                        j = ny * w + nx
                        if 0 <= nx < w and flat[j] and not labels[j]:
                            labels[j] = count
                            stack.append(j)
    return np.array(labels, dtype=np.int32).reshape(h, w), count


def full_size(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask made on a reduced copy, at the size of the picture it was reduced from (nearest)."""
    (h, w), (sh, sw) = shape, mask.shape
    rows = np.minimum(np.arange(h) * sh // h, sh - 1)
    cols = np.minimum(np.arange(w) * sw // w, sw - 1)
    return mask[rows][:, cols]
