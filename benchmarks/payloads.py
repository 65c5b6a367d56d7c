"""The pictures the preparation and serving benchmarks read: the draw-a-digit page's canvas, the
shipped photo (0.2 megapixels), a 12-megapixel phone photo made from it, and the people-style
corpus (``tests/people.py``) drawn from MNIST *training* digits.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "assets" / "digit-7-photo.jpg"  # 505 x 423: 0.21 megapixels

# digits as the page's pen draws them: strokes through these points of the 280 x 280 canvas
STROKES = {
    "7": [[(60, 60), (220, 60), (120, 230)]],
    "1": [[(120, 70), (150, 40), (150, 240)]],
    "4": [[(170, 240), (170, 40), (60, 170), (225, 170)]],
    "2": [[(70, 90), (110, 50), (180, 50), (210, 100), (70, 230), (220, 230)]],
    "5": [[(200, 45), (90, 45), (80, 125), (170, 120), (205, 175), (160, 230), (80, 215)]],
}


def canvas_png(digit: str = "7") -> bytes:
    """A digit as the page sends it: a 280 x 280 RGBA PNG, #111 strokes 20 px wide with round ends,
    anti-aliased (drawn four times larger and reduced), on white."""
    big = Image.new("RGBA", (1120, 1120), (255, 255, 255, 255))
    pen = ImageDraw.Draw(big)
    for stroke in STROKES[digit]:
        points = [(4 * x, 4 * y) for x, y in stroke]
        pen.line(points, fill=(17, 17, 17, 255), width=80, joint="curve")
        for x, y in points:
            pen.ellipse([x - 40, y - 40, x + 40, y + 40], fill=(17, 17, 17, 255))
    out = io.BytesIO()
    big.resize((280, 280), Image.Resampling.BOX).save(out, format="PNG")
    return out.getvalue()


def phone_photo() -> bytes:
    """A 12-megapixel (4000 x 3000) JPEG: the shipped photo enlarged, with a camera's grain."""
    rng = np.random.default_rng(12)
    big = np.asarray(Image.open(PHOTO).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC), np.float32)
    big = np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(big).save(out, format="JPEG", quality=88)
    return out.getvalue()


def people_corpus(directory: Path, per_style: int, data_dir: str | None) -> dict[str, list[tuple[Path, int]]]:
    """``per_style`` MNIST training digits drawn in each of the people styles, as files."""
    sys.path.insert(0, str(REPO / "tests"))
    from mnistctl.config import DataConfig
    from mnistctl.data.splits import load_split
    from people import make_corpus

    images, labels = load_split(DataConfig(), "train", data_dir)
    pick = np.random.default_rng(35).permutation(len(labels))[:per_style]
    return make_corpus(images.numpy()[pick], labels.numpy()[pick], directory, per_style=per_style, seed=35)
