"""Draw docs/assets/preparation-strip.png: pictures of several kinds (people-style drawings of MNIST
*training* digits, made by tests/people.py) above the 28x28 inputs mnistctl prepares from them.

    python docs/scripts/preparation_strip.py [--data-dir DIR]    # needs the real MNIST (mnistctl download)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
OUT = REPO / "docs" / "assets" / "preparation-strip.png"
KINDS = [("photo", "photo of paper"), ("desk", "sheet on a table"), ("ruled", "ruled page"),
         ("coloured", "coloured ink"), ("transparent", "transparent"), ("thin-pen", "1-2 px pen"),
         ("marker", "marker"), ("canvas-32", "32x32 canvas")]
CELL, LABEL = 112, 18  # px: each picture's square, and the caption's height


def strip(data_dir: str | None) -> Image.Image:
    from mnistctl.config import DataConfig
    from mnistctl.data.splits import load_split
    from mnistctl.images.prepare import prepare
    from people import draw_style, save_as_people_do

    images, _ = load_split(DataConfig(), "train", data_dir)
    rng = np.random.default_rng(4)
    canvas = Image.new("RGB", (CELL * len(KINDS), 2 * CELL + LABEL), "white")
    pen = ImageDraw.Draw(canvas)
    for i, (kind, caption) in enumerate(KINDS):
        picture, how = draw_style(kind, images[100 + i].numpy(), rng)
        if how in ("rgb", "jpeg", "rgba", "transparent"):  # saved as people save them, then read back
            picture = Image.open(save_as_people_do(picture, Path(tempfile.mkdtemp()) / "picture", how, rng))
        data = io.BytesIO()
        picture.save(data, format="PNG")
        before = picture.convert("RGBA")
        shown = Image.new("RGBA", before.size, (236, 236, 236, 255))  # transparency shown as light grey
        shown.alpha_composite(before)
        canvas.paste(ImageOps.contain(shown.convert("RGB"), (CELL - 8, CELL - 8)), (i * CELL + 4, 4))
        after = Image.fromarray(prepare(data.getvalue()).image).resize((CELL - 8, CELL - 8), Image.Resampling.NEAREST)
        canvas.paste(after.convert("RGB"), (i * CELL + 4, CELL + 4))
        pen.text((i * CELL + 4, 2 * CELL + 3), caption, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("MNISTCTL_DATA_DIR"))
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    strip(args.data_dir).save(args.output, optimize=True)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
