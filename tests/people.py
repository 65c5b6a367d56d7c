"""Real MNIST test digits presented the way people present their own digits.

Dark ink on light, noisy, unevenly lit paper; scaled up to a few hundred pixels; off-centre with
wide margins; saved as RGB or RGBA PNG (some with a transparent background) or as JPEG.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def paper_digit(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 28x28 MNIST digit (light on dark) as a photo-like RGB image of dark ink on paper."""
    return _paper(digit, rng)[0]


def _paper(digit: np.ndarray, rng: np.random.Generator,
           lines: str | None = None) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``paper_digit``, and where the digit's box is on it: (top, left, height, width). ``lines``:
    "ruled" or "squared" paper (``lined_paper``). A wider ``digit`` (a number, ``number_strip``)
    keeps its shape."""
    scale = rng.uniform(4, 10)
    side = int(28 * scale)
    across = int(side * digit.shape[1] / digit.shape[0])
    ink = np.asarray(Image.fromarray(digit).resize((across, side), Image.Resampling.BICUBIC), np.float32) / 255
    ink = np.clip(ink, 0, 1)
    h = int(side * rng.uniform(1.4, 2.2))
    if across > side:  # a number: paper enough above and below it for a turned photo to keep it whole
        h = max(h, side + int(0.3 * across))
    w = int(across * rng.uniform(1.4, 2.2))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - across + 1)
    strength = np.zeros((h, w), np.float32)
    strength[top:top + side, left:left + across] = ink * rng.uniform(0.75, 0.95)
    base = rng.uniform(175, 235)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = rng.uniform(-25, 25) * (xx / w - 0.5) + rng.uniform(-25, 25) * (yy / h - 0.5)
    paper = base + light + rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(3, 10)
    tint = rng.uniform(0.93, 1.0, 3)
    rgb = np.stack([paper * t for t in tint], -1)
    if lines:
        rgb = rgb * (1 - _printed_lines(yy, xx, side, lines, rng))
    rgb = rgb * (1 - strength[..., None])
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB"), (int(top), int(left), side, across)


def _printed_lines(yy: np.ndarray, xx: np.ndarray, side: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """How much light a notebook's printed lines take away per pixel and channel (h, w, 3): a
    ruling every 0.67-1.25 digit heights (ruled), or squares of 0.4-0.8 of one (squared), blue to
    bluish grey, 0.7-2.5 px wide, 12-57% darker than the paper (about 30% on average; the pen:
    75-95%); a ruled page may have a red margin line down it."""
    height = side * 20 / 28  # the digit's height on the page
    pitch = height / (rng.uniform(0.8, 1.5) if kind == "ruled" else rng.uniform(1.25, 2.5))
    width = rng.uniform(0.7, 2.5)

    def line(pos: np.ndarray, offset: float) -> np.ndarray:  # 1 on a line, soft at its edges
        return np.clip(width / 2 + 0.5 - np.abs((pos - offset + pitch / 2) % pitch - pitch / 2), 0, 1)

    on = line(yy, rng.uniform(0, pitch))
    if kind == "squared":
        on = np.maximum(on, line(xx, rng.uniform(0, pitch)))
    colour = np.array([rng.uniform(0.7, 1.0), rng.uniform(0.45, 0.8), rng.uniform(0.1, 0.4)])  # blue, bluish grey
    taken = (on * rng.uniform(0.25, 0.7))[..., None] * colour
    if kind == "ruled" and rng.random() < 0.5:  # the margin
        margin = np.clip(width - np.abs(xx - rng.uniform(0, xx.shape[1])), 0, 1) * rng.uniform(0.3, 0.6)
        taken = np.maximum(taken, margin[..., None] * np.array([0.05, 0.8, 0.8]))
    return taken


def lined_paper(digit: np.ndarray, rng: np.random.Generator, kind: str, turn: float = 4.0) -> Image.Image:
    """``paper_digit`` written on a notebook's "ruled" or "squared" page, photographed turned by up
    to ``turn`` degrees (and cropped inside the page)."""
    img = _paper(digit, rng, lines=kind)[0]
    w, h = img.size
    turned = img.rotate(float(rng.uniform(-turn, turn)), resample=Image.Resampling.BILINEAR)
    cut = 0.5 * np.sin(np.radians(turn)) + 0.01  # the corners the turn brought in
    return turned.crop((int(cut * h), int(cut * w), w - int(cut * h), h - int(cut * w)))


def desk_photo(digit: np.ndarray, rng: np.random.Generator, turn: float = 5.0) -> Image.Image:
    """``paper_digit``'s sheet photographed lying on a table: the table shows along one to three
    sides (darker, tinted, textured), the sheet runs out of the picture on the others, and the
    phone is held turned by up to ``turn`` degrees."""
    sheet, (top, left, side, across) = _paper(digit, rng)
    sw, sh = sheet.size
    shows = rng.random(4) < 0.45  # table beyond the sheet's top, bottom, left, right
    if not shows.any():
        shows[rng.integers(4)] = True
    if shows.all():
        shows[rng.integers(4)] = False
    # the picture's window over the sheet (sheet pixels; beyond the sheet lies the table)
    y0 = -rng.uniform(0.08, 0.3) * sh if shows[0] else rng.uniform(0, 0.6) * top
    y1 = sh * (1 + rng.uniform(0.08, 0.3)) if shows[1] else sh - rng.uniform(0, 0.6) * (sh - top - side)
    x0 = -rng.uniform(0.08, 0.3) * sw if shows[2] else rng.uniform(0, 0.6) * left
    x1 = sw * (1 + rng.uniform(0.08, 0.3)) if shows[3] else sw - rng.uniform(0, 0.6) * (sw - left - across)
    h, w = int(y1 - y0), int(x1 - x0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tone = rng.uniform(50, 150)
    grain = np.sin(yy / rng.uniform(3, 9) + rng.uniform(0, 6) + 2 * np.sin(xx / rng.uniform(30, 80)))
    table = tone + rng.uniform(4, 15) * grain + rng.uniform(-20, 20) * (xx / w - 0.5) \
        + rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(2, 6)
    tint = np.array([1.0, rng.uniform(0.75, 0.95), rng.uniform(0.5, 0.8)])  # wood, more or less
    photo = Image.fromarray(np.clip(table[..., None] * tint, 0, 255).astype(np.uint8), "RGB")
    photo.paste(sheet, (int(round(-x0)), int(round(-y0))))
    return photo.rotate(float(rng.uniform(-turn, turn)), resample=Image.Resampling.BILINEAR,
                        fillcolor=tuple(int(tone * t) for t in tint))


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


# --- the people-style corpus: every way people hand a digit to a program ------------------------

def _binary(digit: np.ndarray, threshold: int = 100) -> np.ndarray:
    """An MNIST digit as a two-level mask (True: ink)."""
    return digit >= threshold


def _up(mask: np.ndarray, size: int) -> np.ndarray:
    """A mask scaled to ``size`` pixels high (and as wide as its shape says), hard-edged (as a paint
    program's pencil)."""
    across = int(size * mask.shape[1] / mask.shape[0])
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((across, size), Image.Resampling.BILINEAR)
    return np.asarray(img) >= 128


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a one-pixel skeleton of a mask (for pen-like strokes)."""
    m = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(m, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]
            neighbours = sum(p)
            transitions = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8))
            if step == 0:
                cond = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                cond = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (m == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & cond
            if remove.any():
                m[remove] = 0
                changed = True
        if not changed:
            return m[1:-1, 1:-1].astype(bool)


def _prune(skeleton: np.ndarray, steps: int) -> np.ndarray:
    """Remove the last ``steps`` pixels of every branch: the short spurs thinning leaves vanish (and
    real stroke ends get a little shorter)."""
    m = skeleton.copy()
    for _ in range(steps):
        n = sum(np.roll(np.roll(m, dy, 0), dx, 1).astype(np.uint8)
                for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
        ends = m & (n <= 1)
        if not ends.any():
            break
        m &= ~ends
    return m


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(size))
    return np.asarray(img) > 0


def _on_canvas(mask: np.ndarray, h: int, w: int, rng: np.random.Generator, touch: bool = False) -> np.ndarray:
    """``mask`` placed at a random spot of an ``h`` x ``w`` canvas (touching an edge if asked)."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    ch, cw = crop.shape
    if cw >= w:  # a number (``number_strip``) wider than a digit's canvas
        w = cw + h // 2
    canvas = np.zeros((h, w), bool)
    if touch:
        side = rng.integers(4)
        top = 0 if side == 0 else h - ch if side == 1 else rng.integers(0, h - ch + 1)
        left = 0 if side == 2 else w - cw if side == 3 else rng.integers(0, w - cw + 1)
    else:
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    canvas[top:top + ch, left:left + cw] = crop
    return canvas


def _paint(mask: np.ndarray, ink, paper) -> Image.Image:
    rgb = np.where(mask[..., None], np.array(ink, np.uint8), np.array(paper, np.uint8)).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _grey(mask: np.ndarray, ink: int = 0, paper: int = 255) -> Image.Image:
    return Image.fromarray(np.where(mask, ink, paper).astype(np.uint8), "L")


def block_counts(shape: np.ndarray, side: int = 8) -> Image.Image:
    """A digit as an old scanner's low-resolution digits were made: its two-level ``shape`` (a
    boolean mask, True for ink; or an MNIST digit, thresholded) fitted into a 32x32 bitmap (aspect
    kept, centred), each 4x4 block's ink pixels counted (0-16; an 8x8 picture for ``side`` 8), dark
    ink on white paper."""
    mask = shape if shape.dtype == bool else _binary(shape)
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    bitmap = 4 * side
    scale = bitmap / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    big = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) >= 128
    canvas = np.zeros((bitmap, bitmap), bool)
    top, left = (bitmap - big.shape[0]) // 2, (bitmap - big.shape[1]) // 2
    canvas[top:top + big.shape[0], left:left + big.shape[1]] = big
    counts = canvas.reshape(side, 4, side, 4).sum((1, 3))
    return Image.fromarray(np.round(255 - counts * 255 / 16).astype(np.uint8), "L")


def draw_style(name: str, digit: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """One MNIST digit drawn in style ``name``: (image, file suffix)."""
    if name in ("photo", "jpeg", "rgba", "transparent"):
        img = paper_digit(digit, rng)
        return img, {"photo": "rgb", "jpeg": "jpeg", "rgba": "rgba", "transparent": "transparent"}[name]
    size = int(rng.integers(180, 320))
    shape = _up(_binary(digit), size)
    if name == "two-level":  # 8-bit grey PNG, black pencil on white, no anti-aliasing
        return _grey(_on_canvas(shape, int(size * 1.3), int(size * 1.5), rng)), "png"
    if name == "1-bit":
        return _grey(_on_canvas(shape, int(size * 1.4), int(size * 1.4), rng)).convert("1"), "png"
    if name == "white-on-black":
        return _grey(_on_canvas(shape, int(size * 1.4), int(size * 1.2), rng), ink=255, paper=0), "png"
    if name == "coloured":
        ink, paper = [((255, 0, 0), (255, 255, 0)), ((20, 40, 200), (200, 240, 200)),
                      ((0, 120, 0), (250, 230, 240)), ((90, 0, 120), (255, 200, 120))][int(rng.integers(4))]
        return _paint(_on_canvas(shape, int(size * 1.3), int(size * 1.3), rng), ink, paper), "png"
    if name == "thin-pen":  # 1-2 px strokes
        pen = _prune(_thin(shape), size // 30)  # the centre line of each stroke, without spurs
        if rng.random() < 0.5:  # a 2 px pen
            pen = pen | np.roll(pen, 1, 0) | np.roll(pen, 1, 1) | np.roll(np.roll(pen, 1, 0), 1, 1)
        return _grey(_on_canvas(pen, int(size * 1.3), int(size * 1.3), rng)), "png"
    if name == "marker":  # thick strokes
        return _grey(_on_canvas(_dilate(shape, int(size * 0.06) | 1), int(size * 1.4), int(size * 1.4), rng)), "png"
    if name in ("canvas-32", "canvas-64"):
        side = 32 if name == "canvas-32" else 64
        # the same two-level shape as the other styles, drawn smaller (an earlier lower cut, 60, filled
        # loops: it changed the number of holes of 11% of training digits at 32 px, this cut 3%)
        small = _up(_binary(digit), int(side * rng.uniform(0.8, 1.0)))
        return _grey(_on_canvas(small, side, side, rng)), "png"
    if name == "edge":
        return _grey(_on_canvas(shape, int(size * 1.5), int(size * 1.5), rng, touch=True)), "png"
    if name == "sparse":  # a small digit on a large canvas
        small = _up(_binary(digit), int(rng.integers(90, 160)))
        return _grey(_on_canvas(small, 2000, 2000, rng)), "png"
    if name == "boxed":  # in a box: a form's cell, a canvas border in a screenshot
        side = int(size * rng.uniform(1.3, 1.6))
        canvas = _on_canvas(shape, side, side, rng)
        inset, width = int(rng.integers(0, side // 30 + 1)), int(rng.integers(2, max(3, side // 60) + 1))
        a, b, r = inset, side - inset, canvas.shape[1] - inset  # the box's outer edges (top, bottom, right)
        canvas[a:a + width, a:r] = canvas[b - width:b, a:r] = canvas[a:b, a:a + width] = canvas[a:b, r - width:r] = True
        return _grey(canvas), "png"
    if name == "dusty":  # a scan with specks of dust (or the stray clicks of a paint program)
        canvas = _on_canvas(shape, int(size * 1.5), int(size * 1.5), rng)
        h, w = canvas.shape
        yy, xx = np.mgrid[0:h, 0:w]
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.uniform(0.004, 0.012) * h
            canvas |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        return _grey(canvas), "png"
    if name == "desk":  # a photo of the sheet on a table, the table showing around it
        return desk_photo(digit, rng), "jpeg"
    if name in ("ruled", "squared"):  # a notebook's page: printed lines, fainter than the pen
        return lined_paper(digit, rng, name), "jpeg"
    if name == "phone":  # a photo stored sideways or upside down, with the EXIF tag that turns it back
        orientation = int(rng.choice([3, 6, 8]))
        turn = {3: 180, 6: 90, 8: 270}[orientation]
        return paper_digit(digit, rng).rotate(turn, expand=True), f"phone-{orientation}"
    raise ValueError(name)


STYLES = ("photo", "jpeg", "rgba", "transparent", "two-level", "1-bit", "white-on-black", "coloured",
          "thin-pen", "marker", "canvas-32", "canvas-64", "edge", "sparse", "boxed", "dusty", "phone", "desk",
          "ruled", "squared")


def make_corpus(images: np.ndarray, labels: np.ndarray, directory: Path, per_style: int,
                styles: tuple[str, ...] = STYLES, seed: int = 0) -> dict[str, list[tuple[Path, int]]]:
    """The first ``per_style`` digits drawn in each style, as files: the same digits in every style,
    so that the styles compare like with like."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[tuple[Path, int]]] = {}
    for name in styles:
        out[name] = []
        for i in range(per_style):
            k = i % len(labels)
            img, kind = draw_style(name, images[k], rng)
            stem = directory / f"{name}-{i:03d}"
            if kind in ("rgb", "jpeg", "rgba", "transparent"):
                path = save_as_people_do(img, stem, kind, rng)
            elif kind.startswith("phone-"):
                exif = Image.Exif()
                exif[0x0112] = int(kind.split("-")[1])  # the orientation tag
                path = stem.with_suffix(".jpg")
                img.save(path, exif=exif, quality=int(rng.integers(70, 92)))
            else:
                path = stem.with_suffix(".png")
                img.save(path)
            out[name].append((path, int(labels[k])))
    return out


# --- numbers: digits side by side, drawn in the same styles -----------------------------------------

NUMBER_STYLES = tuple(s for s in STYLES if not s.startswith("canvas-"))  # a number on a 32 px canvas: no
SPACINGS = {"gaps": (2, 7), "tight": (0, 2), "touching": (-1, 1), "overlapping": (-4, -1)}  # px at 28 high


def number_strip(digits: np.ndarray, rng: np.random.Generator, spacing: str = "gaps",
                 slant: float = 0.0) -> np.ndarray:
    """MNIST digits (28x28, light on dark) side by side as one light-on-dark picture 28 px high:
    each cut to its ink's columns, ``SPACINGS[spacing]`` px apart (negative: overlapping, the
    brighter stroke kept), each a pixel or two up or down, the whole slanted by ``slant`` (x moved
    by slant * height, as handwriting leans)."""
    lo, hi = SPACINGS[spacing]
    crops = []
    for d in digits:
        cols = np.flatnonzero(d.max(0) > 30)
        crops.append(d[:, cols[0]:cols[-1] + 1])
    gaps = [int(rng.integers(lo, hi)) for _ in crops[1:]]
    width = sum(c.shape[1] for c in crops) + sum(gaps) + 8
    strip = np.zeros((32, width), np.uint8)
    x = 4
    for c, gap in zip(crops, [*gaps, 0]):
        y = 2 + int(rng.integers(-2, 3))
        np.maximum(strip[y:y + 28, x:x + c.shape[1]], c, out=strip[y:y + 28, x:x + c.shape[1]])
        x += c.shape[1] + gap
    if slant:
        strip = np.asarray(Image.fromarray(strip).transform(
            (width, 32), Image.Transform.AFFINE, (1, slant, -16 * slant, 0, 1, 0), Image.Resampling.BILINEAR))
    return strip


def make_number_corpus(images: np.ndarray, labels: np.ndarray, directory: Path, count: int,
                       sizes: tuple[int, int] = (2, 9), spacings: tuple[str, ...] = tuple(SPACINGS),
                       styles: tuple[str, ...] = NUMBER_STYLES, seed: int = 0) -> list[tuple[Path, str, str, str]]:
    """``count`` numbers of ``sizes`` (2-8) digits drawn from ``images``, each in a style and a
    spacing taken in turn, half of them slanted: (path, the number, style, spacing)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        style, spacing = styles[i % len(styles)], spacings[(i // len(styles)) % len(spacings)]
        pick = rng.integers(0, len(labels), int(rng.integers(*sizes)))
        slant = float(rng.uniform(-0.25, 0.25)) if i % 2 else 0.0
        img, kind = draw_style(style, number_strip(images[pick], rng, spacing, slant), rng)
        stem = directory / f"{style}-{spacing}-{i:04d}"
        if kind.startswith("phone-"):
            exif = Image.Exif()
            exif[0x0112] = int(kind.split("-")[1])
            path = stem.with_suffix(".jpg")
            img.save(path, exif=exif, quality=int(rng.integers(70, 92)))
        elif kind in ("rgb", "jpeg", "rgba", "transparent"):
            path = save_as_people_do(img, stem, kind, rng)
        else:
            path = stem.with_suffix(".png")
            img.save(path)
        out.append((path, "".join(str(int(labels[k])) for k in pick), style, spacing))
    return out


def number_picture(digits: np.ndarray, gap: int, rng: np.random.Generator) -> bytes:
    """Digits (28x28, light on dark) three times larger, side by side ``gap`` px apart (negative:
    overlapping), each a few pixels up or down, as dark ink on light paper: PNG bytes."""
    crops = []
    for d in digits:
        big = np.asarray(Image.fromarray(d).resize((84, 84), Image.Resampling.BICUBIC), np.float32)
        cols = np.flatnonzero(big.max(0) > 40)
        crops.append(big[:, cols[0]:cols[-1] + 1])
    canvas = np.zeros((144, sum(c.shape[1] for c in crops) + gap * (len(crops) - 1) + 80), np.float32)
    x = 40
    for c in crops:
        y = 30 + int(rng.integers(-6, 7))
        np.maximum(canvas[y:y + 84, x:x + c.shape[1]], c, out=canvas[y:y + 84, x:x + c.shape[1]])
        x += c.shape[1] + gap
    out = io.BytesIO()
    Image.fromarray(np.clip(235 - canvas * 0.85, 0, 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()
