"""Turn people's images of digits into MNIST-style inputs, the way MNIST itself was made.

MNIST digits are light ink on black, anti-aliased into a 20x20 box (aspect ratio kept) and placed
in 28x28 so that their intensity centre of mass is at the centre. Photos, scans and drawings are
not: they are dark ink on light paper, large, off-centre, noisy and unevenly lit. ``to_mnist``
bridges the two; an image that already looks like an MNIST digit passes through unchanged.

Everything here works on numpy arrays and Pillow images; no torch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from mnistctl.errors import MnistctlError

MAX_PIXELS = 50_000_000  # refuse larger images (decompression bombs) before decoding them
WORK_SIZE = 320  # larger images are reduced to this longest side before the finer steps
BOX, CANVAS = 20, 28


class ImageError(MnistctlError):
    """One image could not be read or holds no digit."""


@dataclass
class Decoded:
    grey: np.ndarray  # float32 [H, W] in [0, 1]
    raw: np.ndarray | None  # the uint8 grey pixels when the file was plain 8-bit grey, else None


ImageSource = Union[str, Path, bytes, bytearray, memoryview, BinaryIO, Image.Image]  # noqa: UP007 (3.10 runtime)


def read_image(source: ImageSource) -> Decoded:
    """Decode an image of any common format and mode into grey levels: a file path, the bytes of
    a file, a binary stream or an already open PIL image.

    Transparent pixels count as background: they are filled with the colour opposite to the ink.
    Every problem (missing, empty, not an image, truncated, too large, animated) is an ImageError.
    """
    if isinstance(source, Image.Image):
        return _decode(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError("no such file" if not path.exists() else "not a file")
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
        opened = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty file (0 bytes)")
        opened = io.BytesIO(bytes(source))
    else:
        opened = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened) as img:
                return _decode(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image too large (over the {MAX_PIXELS // 1_000_000} million pixel limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"truncated or corrupt image ({str(exc)[:80]})") from None


def _decode(img: Image.Image) -> Decoded:
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(f"image too large ({img.width}x{img.height} pixels, over the "
                         f"{MAX_PIXELS // 1_000_000} million pixel limit): scale it down first")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        raise ImageError(f"animated or multi-page image ({frames} frames): save the frame "
                         "you want as a single image")
    try:
        img.load()
        return _to_grey(img)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"truncated or corrupt image ({str(exc)[:80]})") from None


def _to_grey(img: Image.Image) -> Decoded:
    if img.mode == "L":
        raw = np.asarray(img, dtype=np.uint8)
        return Decoded(raw.astype(np.float32) / 255.0, raw)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img.convert("F") if img.mode.startswith("I;16") else img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Decoded(np.clip(a / top, 0.0, 1.0), None)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if not has_alpha:
        return Decoded(np.asarray(img.convert("L"), dtype=np.float32) / 255.0, None)
    rgba = img.convert("RGBA")
    grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    opaque = grey[alpha > 0.5]
    # ink drawn on transparency: fill the background with the colour opposite to the ink
    background = 1.0 if opaque.size == 0 or np.median(opaque) < 0.5 else 0.0
    return Decoded(alpha * grey + (1.0 - alpha) * background, None)


def looks_like_mnist(d: Decoded) -> bool:
    """28x28 8-bit grey, light ink on a black border: an MNIST digit already."""
    if d.raw is None or d.raw.shape != (CANVAS, CANVAS):
        return False
    border = np.concatenate([d.raw[0], d.raw[-1], d.raw[:, 0], d.raw[:, -1]])
    return int(np.median(border)) <= 10 and int(d.raw.max()) >= 128


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")


def _arr(img: Image.Image) -> np.ndarray:
    return np.array(img, dtype=np.float32)  # a writable copy


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=64, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    w0 = np.cumsum(p)
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(edges[int(np.argmax(between)) + 1])


def _background(ink: np.ndarray) -> np.ndarray:
    """A smooth estimate of the background level (uneven light, paper tone), per pixel."""
    h, w = ink.shape
    cells = 8
    bh, bw = max(1, h // cells), max(1, w // cells)
    ch, cw = h // bh, w // bw
    blocks = ink[: ch * bh, : cw * bw].reshape(ch, bh, cw, bw)
    low = np.percentile(blocks, 25, axis=(1, 3)).astype(np.float32)
    smooth = _pil(low).filter(ImageFilter.MinFilter(3)).resize((w, h), Image.Resampling.BILINEAR)
    return _arr(smooth)


def _mass_bounds(profile: np.ndarray, trim: float = 0.003) -> tuple[int, int]:
    """First and last index holding the ink mass, ignoring ``trim`` of it at each end."""
    c = np.cumsum(profile)
    total = c[-1]
    lo = int(np.searchsorted(c, total * trim, side="right"))
    hi = int(np.searchsorted(c, total * (1 - trim), side="left"))
    return lo, max(lo, min(hi, len(profile) - 1))


def to_mnist(d: Decoded) -> np.ndarray:
    """A 28x28 uint8 image of light ink on black, fitted and centred as MNIST digits are."""
    if looks_like_mnist(d):
        return d.raw.copy()
    grey = d.grey
    h, w = grey.shape
    if max(h, w) > WORK_SIZE:
        scale = WORK_SIZE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = _arr(_pil(grey).resize(size, Image.Resampling.BOX))
        h, w = grey.shape

    # polarity: the border is background; MNIST wants light ink on dark
    ring = max(1, round(0.04 * min(h, w)))
    border = np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(), grey[:, :ring].ravel(),
                             grey[:, -ring:].ravel()])
    ink = 1.0 - grey if np.median(border) > 0.5 else grey.copy()

    # uneven light and paper tone: subtract a smooth background estimate
    if min(h, w) >= 16:
        ink = np.clip(ink - _background(ink), 0.0, None)
    # faint noise and texture: a median filter, then keep what stands out from the background
    if min(h, w) >= 9:
        ink = _arr(_pil(ink).filter(ImageFilter.MedianFilter(3)))
    top = float(ink.max())
    if top < 0.08:
        raise ImageError("no ink found: the image looks blank")
    ink /= top
    threshold = _otsu(ink)
    if threshold <= 0.02:
        raise ImageError("no ink found: the image looks blank")
    mask = _arr(_pil((ink > threshold).astype(np.float32)).filter(ImageFilter.MaxFilter(3))) > 0
    lo = threshold * 0.5
    ink = np.where(mask, np.clip((ink - lo) / (1.0 - lo), 0.0, 1.0), 0.0).astype(np.float32)
    if ink.sum() < 1.0:
        raise ImageError("no ink found: the image looks blank")

    # crop to the ink, scale the longer side to 20 px (anti-aliased), keep the aspect ratio
    y0, y1 = _mass_bounds(ink.sum(1))
    x0, x1 = _mass_bounds(ink.sum(0))
    crop = ink[y0:y1 + 1, x0:x1 + 1]
    ch, cw = crop.shape
    scale = BOX / max(ch, cw)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    digit = np.clip(_arr(_pil(crop).resize(size, method)), 0.0, None)
    if digit.max() <= 0:
        raise ImageError("no ink found: the image looks blank")
    digit /= digit.max()

    # place it in 28x28 with its centre of mass at the centre
    dh, dw = digit.shape
    ys, xs = np.mgrid[0:dh, 0:dw]
    mass = digit.sum()
    cy, cx = (ys * digit).sum() / mass, (xs * digit).sum() / mass
    top_y = int(np.clip(round(CANVAS / 2 - 0.5 - cy), 0, CANVAS - dh))
    left_x = int(np.clip(round(CANVAS / 2 - 0.5 - cx), 0, CANVAS - dw))
    out = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    out[top_y:top_y + dh, left_x:left_x + dw] = digit
    return np.round(out * 255.0).astype(np.uint8)


def resize_as_is(d: Decoded) -> np.ndarray:
    """``--no-preprocess``: the image only resized to 28x28 (for inputs prepared by hand)."""
    if d.raw is not None and d.raw.shape == (CANVAS, CANVAS):
        return d.raw.copy()
    img = _pil(d.grey).resize((CANVAS, CANVAS), Image.Resampling.BOX if max(d.grey.shape) > CANVAS
                              else Image.Resampling.BILINEAR)
    return np.round(np.clip(_arr(img), 0, 1) * 255.0).astype(np.uint8)


def prepare_image(source: ImageSource, preprocess: bool = True) -> np.ndarray:
    """Any image (path, bytes, stream, PIL image) -> the 28x28 uint8 input a model takes: made to
    look like an MNIST digit (``to_mnist``) or, with ``preprocess=False``, only resized."""
    decoded = read_image(source)
    return to_mnist(decoded) if preprocess else resize_as_is(decoded)
