"""Reading people's image files into grey levels: the picture formats of :data:`FORMATS` (HEIC
through an optional plugin) and nothing else, any mode, turned upright by its EXIF tag, with
every problem as an ImageError that names it and says what to do.

Only those formats' decoders are ever run: Pillow is told which it may try, so a PostScript or
EPS upload (even named .png) is never handed to Ghostscript, nor any other file to an outside
program.

Everything here works on numpy arrays and Pillow images; no torch.
"""

from __future__ import annotations

import io
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistctl.errors import ImageError

MAX_PIXELS = 50_000_000  # refuse larger images (decompression bombs) before decoding them
MAX_BYTES = 100_000_000  # refuse larger files (and standard input) before reading them
# the picture formats read (Pillow's names); HEIF joins them when its plugin is installed, and a
# camera's JPEG holding a second picture opens as MPO through the JPEG decoder
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF, WebP or HEIC"


@dataclass
class Decoded:
    grey: np.ndarray  # float32 [H, W] in [0, 1]
    raw: np.ndarray | None  # the uint8 grey pixels when the file was plain 8-bit grey, else None
    scale: float = 1.0  # the picture's pixels per pixel of ``grey`` (a JPEG decoded at a reduced scale: 2, 4, 8)
    origin: tuple[float, float] = (0.0, 0.0)  # where ``grey``'s (0, 0) lies in the picture's pixels (x, y): a part of
    # it read alone (``native``: the inside of a plot's frame)


ImageSource = Union[str, Path, bytes, bytearray, memoryview, BinaryIO, Image.Image]  # noqa: UP007 (3.10 runtime)


def read_image(source: ImageSource, longest: int | None = None) -> Decoded:
    """Decode an image of any common format and mode into grey levels: a file path, the bytes of
    a file, a binary stream or an already open PIL image.

    ``longest``: a JPEG larger than this on its longer side may be decoded at a half, a quarter or
    an eighth of its size (libjpeg scales while it decodes, and reads only the grey levels of a
    colour photo), as long as its longer side stays at least ``longest`` pixels.

    Transparent pixels count as background: they are filled with the colour opposite to the ink.
    Every problem (missing, empty, not an image, truncated, too large, animated) is an ImageError.
    """
    if isinstance(source, Image.Image):
        if source.format is not None and source.format not in (*FORMATS, "MPO", "HEIF"):
            raise ImageError(f"a {source.format} picture: mnistctl reads {FORMAT_NAMES} pictures")
        return _decode(source, longest)
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            info = path.stat()  # once: a directory of 10,000 digits is read at thousands a second
        except (FileNotFoundError, NotADirectoryError):
            raise ImageError("no such file") from None
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("not a file")
        if info.st_size == 0:
            raise ImageError("empty file (0 bytes)")
        if info.st_size > MAX_BYTES:
            raise ImageError(f"file too large ({info.st_size:,} bytes; a picture to read is at most {MAX_BYTES:,})")
        opened: Path | io.BytesIO | BinaryIO = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty file (0 bytes)")
        opened = io.BytesIO(bytes(source))
    else:
        opened = source
    try:
        try:
            return _open(opened, longest=longest)
        except UnidentifiedImageError:
            head = _head(opened)
            if not (_is_heif(head) and _heif_plugin() and _rewind(opened)):
                raise ImageError(_unreadable(head)) from None
            return _open(opened, (*FORMATS, "HEIF"))  # a HEIC photo, with the plugin now registered
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(_unreadable(b"")) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image too large (over the {MAX_PIXELS // 1_000_000} million pixel limit)") from None
    except _CORRUPT as exc:
        raise ImageError(f"truncated or corrupt image ({str(exc)[:80] or type(exc).__name__})") from None


def _open(opened: Path | BinaryIO, formats: tuple[str, ...] = FORMATS, longest: int | None = None) -> Decoded:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's remarks on odd files (corrupt EXIF, ...): not the user's concern
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(opened, formats=list(formats)) as img:
            return _decode(img, longest)


def _head(opened: Path | BinaryIO, size: int = 512) -> bytes:
    """The first bytes of a file Pillow could not read (empty when they cannot be read again)."""
    try:
        if isinstance(opened, Path):
            with opened.open("rb") as f:
                return f.read(size)
        opened.seek(0)
        return opened.read(size)
    except (OSError, ValueError, AttributeError):
        return b""


def _rewind(opened: Path | BinaryIO) -> bool:
    try:
        if not isinstance(opened, Path):
            opened.seek(0)
        return True
    except (OSError, ValueError, AttributeError):
        return False


HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _is_heif(head: bytes) -> bool:
    """HEIC/HEIF: an ISO media file whose major brand is one of HEIF's (an iPhone camera's photos)."""
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _heif_plugin() -> bool:
    """Teach Pillow HEIF when the optional plugin (``mnistctl[heif]``: pillow-heif) is installed;
    only when such a file comes, so that reading PNGs and JPEGs never imports it."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _unreadable(head: bytes) -> str:
    """Why a file cannot be read, and what to do, from its first bytes."""
    if _is_heif(head):
        return ("a HEIC photo (an iPhone camera's format), which needs a plugin: pip install 'mnistctl[heif]', "
                "or export the photo as JPEG")
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "an SVG drawing (vector graphics, not pixels): export it as PNG first"
    if head.startswith(b"%PDF"):
        return "a PDF document, not an image: export the page as PNG or JPEG first"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "a PostScript/EPS document, not a picture mnistctl reads: export it as PNG or JPEG first"
    return f"not an image (or not one of the formats mnistctl reads: {FORMAT_NAMES}): save it as PNG or JPEG"


# what Pillow's decoders raise on damaged files (a TIFF with a mangled tag raises TypeError or KeyError)
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, TypeError, KeyError, IndexError, struct.error,
            ZeroDivisionError)


def _decode(img: Image.Image, longest: int | None = None) -> Decoded:
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(f"image too large ({img.width}x{img.height} pixels, over the "
                         f"{MAX_PIXELS // 1_000_000} million pixel limit): scale it down first")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        raise ImageError(f"animated or multi-page image ({frames} frames): save the frame "
                         "you want as a single image")
    try:
        stored_grey = img.mode == "L"
        full = max(img.size)
        if img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L"):
            _draft(img, longest)
        img.load()
        decoded = _to_grey(_upright(img))
        decoded.scale = full / max(decoded.grey.shape)
        # raw: a picture stored as 8-bit grey (a colour photo decoded as grey is not an MNIST digit)
        return decoded if stored_grey or decoded.raw is None else Decoded(decoded.grey, None, decoded.scale)
    except _CORRUPT as exc:
        raise ImageError(f"truncated or corrupt image ({str(exc)[:80] or type(exc).__name__})") from None


def _draft(img: Image.Image, longest: int | None) -> None:
    """Have libjpeg decode grey levels only, at the smallest of its scales (1, 1/2, 1/4, 1/8) that
    keeps the longer side at least ``longest`` (a 12-megapixel photo at a quarter: 1000x750)."""
    if longest is None:
        img.draft("L", None)
        return
    scale = max(1, max(img.size) // longest)
    img.draft("L", (max(1, img.width // scale), max(1, img.height // scale)))


EXIF_ORIENTATION = 0x0112


def _upright(img: Image.Image) -> Image.Image:
    """The picture as viewers show it: a phone stores most photos sideways (or upside down) with an
    EXIF orientation tag saying how to turn them, and a digit read as stored would be read turned."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except _CORRUPT:  # a damaged EXIF block: the pixels may still be fine, as stored
        return img
    return ImageOps.exif_transpose(img) if orientation in (2, 3, 4, 5, 6, 7, 8) else img


def _to_grey(img: Image.Image) -> Decoded:
    if img.mode == "L":
        raw = np.asarray(img, dtype=np.uint8)
        return Decoded(raw.astype(np.float32) / 255.0, raw)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img.convert("F") if img.mode.startswith("I;16") else img, dtype=np.float32)
        if img.mode == "F":
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        # the range the values were stored in: 16 bits, 8 bits, or (floating point) 0 to 1
        if img.mode.startswith("I;16") or a.max() > 255:
            top = 65535.0
        else:
            top = 1.0 if img.mode == "F" and a.max() <= 1.0 else 255.0
        return Decoded(np.clip(a / top, 0.0, 1.0), None)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if not has_alpha:
        return Decoded(np.asarray(img.convert("L"), dtype=np.float32) / 255.0, None)
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
    opacity = np.asarray(rgba.getchannel("A"))
    if int(opacity.min()) == 255:  # an alpha channel, every pixel opaque (a browser's canvas)
        return Decoded(grey, None)
    alpha = opacity.astype(np.float32) / 255.0
    opaque = grey[alpha > 0.5]
    # ink drawn on transparency: fill the background with the colour opposite to the ink
    background = 1.0 if opaque.size == 0 or np.median(opaque) < 0.5 else 0.0
    return Decoded(alpha * grey + (1.0 - alpha) * background, None)
