"""Real MNIST test digits presented the way people present their own digits.

Dark ink on light, noisy, unevenly lit paper; scaled up to a few hundred pixels; off-centre with
wide margins; saved as RGB or RGBA PNG (some with a transparent background) or as JPEG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def paper_digit(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 28x28 MNIST digit (light on dark) as a photo-like RGB image of dark ink on paper."""
    scale = rng.uniform(4, 10)
    side = int(28 * scale)
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    ink = np.clip(ink, 0, 1)
    h = int(side * rng.uniform(1.4, 2.2))
    w = int(side * rng.uniform(1.4, 2.2))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    strength = np.zeros((h, w), np.float32)
    strength[top:top + side, left:left + side] = ink * rng.uniform(0.75, 0.95)
    base = rng.uniform(175, 235)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = rng.uniform(-25, 25) * (xx / w - 0.5) + rng.uniform(-25, 25) * (yy / h - 0.5)
    paper = base + light + rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(3, 10)
    tint = rng.uniform(0.93, 1.0, 3)
    rgb = np.stack([paper * t for t in tint], -1) * (1 - strength[..., None])
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def save_as_people_do(img: Image.Image, path_stem: Path, kind: str, rng: np.random.Generator) -> Path:
    if kind == "jpeg":
        path = path_stem.with_suffix(".jpg")
        img.save(path, quality=int(rng.integers(55, 90)))
    elif kind == "rgba":
        path = path_stem.with_suffix(".png")
        img.convert("RGBA").save(path)
    elif kind == "transparent":  # ink on a transparent background, as paint programs export
        path = path_stem.with_suffix(".png")
        grey = np.asarray(img.convert("L"), dtype=np.float32)
        alpha = np.clip((grey.max() - grey) * 2.2, 0, 255).astype(np.uint8)
        rgba = np.zeros(grey.shape + (4,), np.uint8)
        rgba[..., 3] = alpha
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        path = path_stem.with_suffix(".png")
        img.save(path)
    return path


KINDS = ("rgb", "rgba", "jpeg", "transparent")


def make_people_set(images: np.ndarray, labels: np.ndarray, directory: Path, seed: int = 0) -> list[tuple[Path, int]]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, (digit, label) in enumerate(zip(images, labels)):
        kind = KINDS[i % len(KINDS)]
        out.append((save_as_people_do(paper_digit(digit, rng), directory / f"digit-{i:04d}", kind, rng), int(label)))
    return out
