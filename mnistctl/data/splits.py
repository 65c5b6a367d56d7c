"""The data layer: IDX parsing, splits held in memory as uint8 tensors, batches by indexing.

No per-item PIL work anywhere: a split is one ``[N, 28, 28]`` uint8 tensor, a batch is a
slice or an index into it, and augmentation is done on whole batches (the network normalises
its 0-255 input itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mnistctl.config import DataConfig
from mnistctl.data import idx as idx_files
from mnistctl.errors import ConfigError, one_of
from mnistctl.recipes import SPLITS


def read_idx(path: Path, ndim: int, hint: str = "mnistctl download --force") -> torch.Tensor:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions into a uint8 tensor (see
    ``mnistctl.data.idx.read_idx``)."""
    return torch.from_numpy(idx_files.read_idx(path, ndim, hint))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into (train, val) index tensors."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ConfigError.invalid("val_fraction", f"{val_fraction} leaves no training images out of {n}",
                                  "the validation fraction")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def load_split(cfg: DataConfig, split: str, data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of ``split``: train, val or test."""
    one_of("split", split, SPLITS)
    file_split = "test" if split == "test" else "train"
    images, labels = map(torch.from_numpy, idx_files.load_file_pair(cfg.dataset, file_split, data_dir))
    if split == "test":
        return images, labels
    train_idx, val_idx = split_indices(len(labels), cfg.val_fraction, cfg.split_seed)
    idx = train_idx if split == "train" else val_idx
    return images[idx], labels[idx]


@dataclass(frozen=True)
class AugmentConfig:
    """Random small affine changes, drawn per image and applied to a whole batch at once; with
    ``writers`` > 0, also the ways one person's writing differs from another's, that strong."""

    degrees: float = 10.0
    translate: float = 0.1  # fraction of the image size
    scale: tuple[float, float] = (0.9, 1.1)
    writers: float = 0.0  # strength of the writer-style changes below (0: none; 1: as listed)
    slant: float = 0.3  # x moved by up to this times y (a hand leaning left or right)
    aspect: float = 0.2  # width over height made up to exp(this) times wider (a wide hand), ...
    narrow: float = 0.7  # ... or up to exp(-this) times narrower (a narrow, upright hand: its 8s are no 1s)
    elastic: float = 1.5  # px: the largest shift of a smooth random displacement (a wobbly stroke), ...
    elastic_sigma: float = 3.0  # px: ... smoothed with a Gaussian this wide
    pen: float = 0.5  # chance of a bolder or a finer pen (``_pen``), half each
    low_res: float = 0.0  # share of the images shown as a small, low-resolution picture shows them (``_low_res``)
    low_sizes: tuple[int, int] = (7, 14)  # px: the sizes they are shrunk to (a digit 20 px high: 5 to 10 px)
    scans: float = 0.0  # share of the images shown as ``predict`` reads an 8x8 scan of them (``scanned``)
    scan_pens: float = 0.0  # share of those written with a bolder pen first: a third 2 px, the rest 1 px bolder


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a random rotation, shift and scaling to each image of a float batch [N, 1, H, W]
    (and, with ``cfg.writers``, a slant, a narrower or wider hand, an elastic wobble and a bolder
    or finer pen, as one writer's digits differ from another's; with ``cfg.low_res``, some images
    shrunk and enlarged back first, as a small picture shows a digit; with ``cfg.scans``, the first
    such share of the batch, changed so, then shown as ``predict`` reads an 8x8 scan of it).

    One ``affine_grid`` + ``grid_sample`` for the whole batch; the background (the minimum of
    the batch, the paper colour) fills what moves in from outside. Works on any value range with
    light ink on a dark background (MNIST's).
    """
    if cfg.low_res > 0:
        x = _low_res(x, cfg, generator)
    grid = random_affine_grid(x, cfg, generator)
    if cfg.writers > 0:
        grid = grid + _wobble(x, cfg, generator)
        x = _pen(x, cfg, generator)
    x = warp(x, grid)
    k = round(cfg.scans * x.shape[0])  # a batch is a random draw: its first k are (a fixed count, for CUDA graphs)
    if k:
        pens = None
        if cfg.scan_pens > 0:  # 2: 2 px bolder on each side, 1: 1 px, 0: as written
            draw = torch.rand(k, generator=generator, device=x.device)
            pens = (draw < cfg.scan_pens / 3).long() + (draw < cfg.scan_pens).long()
        x = torch.cat([scanned(x[:k], pens), x[k:]])
    return x


def random_affine_grid(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sampling grid [N, H, W, 2] of a random affine change per image of the batch ``x``."""
    n = x.shape[0]
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:  # drawn where the batch lives: no host copy
        return torch.rand(n, generator=generator, device=dev) * (hi - lo) + lo

    angle = uniform(-cfg.degrees, cfg.degrees) * (math.pi / 180.0)
    scale = uniform(*cfg.scale)
    tx = uniform(-cfg.translate, cfg.translate) * 2.0
    ty = uniform(-cfg.translate, cfg.translate) * 2.0
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    if cfg.writers > 0:  # output -> input: a slant (x by y) and a narrower or wider hand (x scaled)
        slant = uniform(-cfg.slant, cfg.slant) * cfg.writers
        wide = torch.exp(uniform(-cfg.narrow, cfg.aspect) * cfg.writers)
        hand = torch.zeros(n, 2, 2, device=dev, dtype=theta.dtype)
        hand[:, 0, 0], hand[:, 0, 1], hand[:, 1, 1] = 1.0 / wide, slant, 1.0
        theta = torch.cat([theta[:, :, :2] @ hand, theta[:, :, 2:]], 2)
    return F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)


def _wobble(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """A smooth random displacement per image [N, H, W, 2] (grid units), at most about
    ``cfg.elastic * cfg.writers`` pixels: Simard et al.'s elastic distortion, batched."""
    n, _, h, w = x.shape
    field = torch.rand(n, 2, h, w, generator=generator, device=x.device) * 2 - 1
    radius = max(1, int(2 * cfg.elastic_sigma))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=field.dtype)
    kernel = torch.exp(-0.5 * (taps / cfg.elastic_sigma) ** 2)
    kernel = kernel / kernel.sum()
    field = F.conv2d(field.reshape(2 * n, 1, h, w), kernel.view(1, 1, 1, -1), padding=(0, radius))
    field = F.conv2d(field, kernel.view(1, 1, -1, 1), padding=(radius, 0)).reshape(n, 2, h, w)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)  # the largest shift: 1 px ...
    pixels = field * cfg.elastic * cfg.writers  # ... then as many as asked
    return torch.stack([pixels[:, 0] * 2 / w, pixels[:, 1] * 2 / h], -1).to(x.dtype)


def _pen(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Some images drawn with a bolder pen (each pixel at least 0.7 of its 3x3 neighbourhood's
    brightest: about a pixel wider) or a finer one (the stroke's edges half gone: the mean of each
    pixel and its 3x3 minimum), ``cfg.pen * cfg.writers`` of them in all."""
    draw = torch.rand(x.shape[0], generator=generator, device=x.device).view(-1, 1, 1, 1)
    share = cfg.pen * min(cfg.writers, 1.0)
    background = x.amin()
    ink = x - background
    bolder = torch.maximum(ink, 0.7 * F.max_pool2d(ink, 3, stride=1, padding=1)) + background
    finer = 0.5 * (ink - F.max_pool2d(-ink, 3, stride=1, padding=1)) + background
    return torch.where(draw < share / 2, bolder, torch.where(draw < share, finer, x))


def _low_res(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """``cfg.low_res`` of the images as a small picture (a tiny canvas, an 8x8 scan) reaches the
    model: shrunk to a random size in ``cfg.low_sizes`` (area average) and enlarged back (bilinear),
    brightest pixel kept. Every size is made for the whole batch and each image picks one: no
    size drawn on the host, so a CUDA graph replays it with fresh draws."""
    n = x.shape[0]
    background = x.amin()
    ink = x - background
    sizes = range(cfg.low_sizes[0], cfg.low_sizes[1] + 1)
    shown = torch.stack([F.interpolate(F.interpolate(ink, size=(s, s), mode="area"), size=ink.shape[-2:],
                                       mode="bilinear", align_corners=False) for s in sizes])
    pick = torch.randint(len(sizes), (n,), generator=generator, device=x.device)
    small = shown[pick, torch.arange(n, device=x.device)]
    small = small * (ink.amax((1, 2, 3), keepdim=True) / small.amax((1, 2, 3), keepdim=True).clamp_min(1e-6))
    draw = torch.rand(n, generator=generator, device=x.device).view(-1, 1, 1, 1)
    return torch.where(draw < cfg.low_res, small + background, x)


SCAN_SIDE, SCAN_BLOCK = 8, 4  # an 8x8 scan: a 32x32 bitmap's 4x4 blocks of ink counted
SCAN_INK = 100 / 255  # the bitmap's ink: at least this share of the digit's brightest pixel
SCAN_ENLARGE = 8  # ``predict`` enlarges a picture under 64 px by a whole factor: an 8x8 one 8 times


def scanned(x: torch.Tensor, pens: torch.Tensor | None = None) -> torch.Tensor:
    """Digits ``[N, 1, 28, 28]`` (light ink on a dark background) as ``predict`` reads an 8x8 scan
    of them: the ink made two-level and fitted into a 32x32 bitmap (aspect kept, centred, nearest
    pixel), each 4x4 block's ink counted (an 8x8 picture of 17 levels: how old scanners, and UCI's
    handwritten digits, made them); then what ``mnistctl.images`` does with such a picture, batched:
    enlarged 8 times (bicubic), cut at Otsu's threshold with soft edges grown by a pixel, cropped
    to the ink's mass, its longer side scaled to 20 px (box filter) and centred by its centre of mass
    in 28x28. Its brightest pixel as the input's. Fixed shapes and no host sync, for CUDA graphs (the
    GPU test of ``tests/test_cudagraph.py`` trains with it; not yet run on a GPU).

    Left out (rarer for scans, costly batched): the noise and speck cleaning and the thinning of
    a marker (``predict`` does not thin a picture under 16 px either). On 3,000 MNIST validation digits
    against ``predict`` on their scans (``tests/people.block_counts``): a mean difference of 1.0% of full
    scale per pixel.

    ``pens`` ``[N]`` (0, 1 or 2): the two-level ink grown by that many pixels on each side first, as a
    bold pen (or a scanner that blots) writes it: at 8x8 the pen decides whether a 6's loop and an 8's
    holes show."""
    n, dev = x.shape[0], x.device
    background = x.amin()
    ink = x[:, 0] - background
    top = ink.amax((1, 2), keepdim=True).clamp_min(1e-6)
    mask = ink >= SCAN_INK * top
    if pens is not None:
        m = mask.float()[:, None]
        grown = torch.where(pens.view(-1, 1, 1, 1) == 2, F.max_pool2d(m, 5, stride=1, padding=2),
                            F.max_pool2d(m, 3, stride=1, padding=1))
        mask = torch.where(pens.view(-1, 1, 1, 1) > 0, grown, m)[:, 0] > 0.5
    # the bitmap: the mask's box fitted into 32x32, its longer side filling it (PIL's nearest pixel)
    per_row, per_col = mask.sum(2).float(), mask.sum(1).float()  # ink pixels in each
    y0, y1 = _mass_extent(per_row, trim=0.0)
    x0, x1 = _mass_extent(per_col, trim=0.0)
    h, w = (y1 - y0 + 1).float(), (x1 - x0 + 1).float()
    side = SCAN_SIDE * SCAN_BLOCK
    scale = side / torch.maximum(h, w)
    rows = _nearest(y0, h, (h * scale).round().clamp(min=1), side, mask.shape[1])
    cols = _nearest(x0, w, (w * scale).round().clamp(min=1), side, mask.shape[2])
    picked = torch.arange(n, device=dev)[:, None, None]
    bitmap = mask[picked, rows.clamp(min=0)[:, :, None], cols.clamp(min=0)[:, None, :]]
    bitmap = bitmap & (rows >= 0)[:, :, None] & (cols >= 0)[:, None, :]
    counts = bitmap.view(n, SCAN_SIDE, SCAN_BLOCK, SCAN_SIDE, SCAN_BLOCK).float().sum((2, 4))
    scan = torch.round(counts * (255 / 16)) / 255  # the PNG's 8-bit levels, as ink
    # predict: enlarged, cut at Otsu's threshold (soft edges, grown by a pixel), cropped to its mass
    big = F.interpolate(scan[:, None], scale_factor=SCAN_ENLARGE, mode="bicubic", align_corners=False)
    big = big.clamp(0, 1)[:, 0]
    big = big / big.amax((1, 2), keepdim=True).clamp_min(1e-6)
    cut = _otsu(big.reshape(n, -1))[:, None, None]
    grown = F.max_pool2d((big > cut).float()[:, None], 3, stride=1, padding=1)[:, 0]
    soft = grown * ((big - cut / 2) / (1 - cut / 2)).clamp(0, 1)
    out = _fit(soft)
    empty = per_row.sum(1) == 0  # no ink at all: left as it was
    out = torch.where(empty[:, None, None], ink / top, out)
    return (out * top + background)[:, None].to(x.dtype)


def _nearest(start: torch.Tensor, size: torch.Tensor, out: torch.Tensor, side: int, limit: int) -> torch.Tensor:
    """Per image, the source index ``[N, side]`` of each of ``side`` places when ``size`` pixels from
    ``start`` are scaled (nearest, as PIL) to ``out`` places centred among them; -1 outside."""
    o = torch.arange(side, device=start.device, dtype=torch.float32)[None]
    first = ((side - out) / 2).floor()[:, None]
    src = start[:, None] + ((o - first + 0.5) * size[:, None] / out[:, None]).floor().long()
    inside = (o >= first) & (o < first + out[:, None])
    return torch.where(inside, src.clamp(max=limit - 1), -1)


def _otsu(values: torch.Tensor, bins: int = 64) -> torch.Tensor:
    """Otsu's threshold of each row of ``values [N, P]`` in [0, 1], as ``mnistctl.images.pixels.otsu``
    finds it (the middle of a run of tied cuts), batched."""
    n, dev = values.shape[0], values.device
    which = (values * bins).floor().clamp(0, bins - 1).long() + torch.arange(n, device=dev)[:, None] * bins
    hist = torch.zeros(n * bins, device=dev, dtype=torch.float64)
    hist = hist.scatter_add_(0, which.reshape(-1), torch.ones(which.numel(), device=dev, dtype=torch.float64))
    p = hist.view(n, bins) / values.shape[1]
    edges = torch.linspace(0.0, 1.0, bins + 1, device=dev, dtype=torch.float64)
    w0 = p.cumsum(1)[:, :-1]
    mu = (p * (edges[:-1] + edges[1:]) / 2).cumsum(1)
    between = (mu[:, -1:] * w0 - mu[:, :-1]) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    tied = between >= between.amax(1, keepdim=True) * (1 - 1e-9)
    middle = tied.double().argmax(1) + tied.sum(1) // 2
    return edges[middle + 1].float()


def _mass_extent(profile: torch.Tensor, trim: float = 0.003) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index of ``profile [N, L]`` holding its mass, ``trim`` of it ignored at each end
    (``mnistctl.images.fit.ink_box``, batched; ``trim`` 0: the first and last non-zero index)."""
    c = profile.cumsum(1)
    total = c[:, -1:]
    lo = (c <= total * trim).sum(1)
    hi = (c < total * (1 - trim)).sum(1).clamp(max=profile.shape[1] - 1)
    return lo, torch.maximum(lo, hi)


def _fit(ink: torch.Tensor, box: int = 20, canvas: int = 28, fine: int = 4) -> torch.Tensor:
    """Ink ``[N, L, L]`` cropped to its mass, its longer side scaled to ``box`` px (aspect kept; a box
    filter, sampled ``fine`` times finer and averaged), placed in ``canvas`` px with its centre of mass
    at the centre and its brightest pixel 1 (``mnistctl.images.fit.fit``, batched)."""
    n, size, dev = ink.shape[0], ink.shape[-1], ink.device
    y0, y1 = _mass_extent(ink.sum(2))
    x0, x1 = _mass_extent(ink.sum(1))
    ch, cw = (y1 - y0 + 1).float(), (x1 - x0 + 1).float()
    scale = box / torch.maximum(ch, cw)
    dh, dw = (ch * scale).round().clamp(min=1), (cw * scale).round().clamp(min=1)
    along = torch.arange(size, device=dev)
    inside = ((along >= y0[:, None]) & (along <= y1[:, None]))[:, :, None] & \
             ((along >= x0[:, None]) & (along <= x1[:, None]))[:, None, :]
    u = (torch.arange(box * fine, device=dev, dtype=torch.float32) + 0.5) / fine  # output pixel centres
    gy = (y0[:, None] + u * (ch / dh)[:, None]) / size * 2 - 1
    gx = (x0[:, None] + u * (cw / dw)[:, None]) / size * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, box * fine, -1), gy[:, :, None].expand(-1, -1, box * fine)], -1)
    digit = F.avg_pool2d(F.grid_sample((ink * inside)[:, None], grid, mode="bilinear", padding_mode="zeros",
                                       align_corners=False), fine)[:, 0]
    place = torch.arange(box, device=dev)
    digit = digit * ((place < dh[:, None])[:, :, None] & (place < dw[:, None])[:, None, :])
    digit = digit / digit.amax((1, 2), keepdim=True).clamp_min(1e-6)
    mass = digit.sum((1, 2)).clamp_min(1e-6)
    cy, cx = (digit.sum(2) * place).sum(1) / mass, (digit.sum(1) * place).sum(1) / mass
    top = torch.minimum((canvas / 2 - 0.5 - cy).round().clamp(min=0), canvas - dh).long()
    left = torch.minimum((canvas / 2 - 0.5 - cx).round().clamp(min=0), canvas - dw).long()
    spot = torch.arange(canvas, device=dev)[None]
    si, sj = spot - top[:, None], spot - left[:, None]
    ok = ((si >= 0) & (si < box))[:, :, None] & ((sj >= 0) & (sj < box))[:, None, :]
    picked = torch.arange(n, device=dev)[:, None, None]
    return digit[picked, si.clamp(0, box - 1)[:, :, None], sj.clamp(0, box - 1)[:, None, :]] * ok


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``x`` resampled at ``grid`` (bilinear), the batch's background filling what comes from outside."""
    background = x.amin()
    out = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + background


def sample_digits(cfg: DataConfig, split: str, count: int, seed: int,
                  data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random (images, labels) of ``split``, drawn without replacement by ``seed``."""
    images, labels = load_split(cfg, split, data_dir)
    if count < 1:
        raise ConfigError.invalid("count", f"must be at least 1, got {count}", "the number of digits")
    count = min(count, len(labels))
    idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:count]
    return images[idx], labels[idx]


@dataclass
class SampleGrid:
    images: torch.Tensor  # uint8 [N, 28, 28]
    names: list[str]  # class name of each
    path: Path  # the PNG written


def write_samples(cfg: DataConfig, split: str, count: int, seed: int, output: str | Path,
                  data_dir: str | Path | None = None) -> SampleGrid:
    """Draw ``count`` random digits of ``split`` and save them as a labelled grid (PNG)."""
    from mnistctl.plotting import digit_grid_figure, figure_format, save_figure

    figure_format(output)  # a bad output path fails before the work
    images, labels = sample_digits(cfg, split, count, seed, data_dir)
    names = [cfg.info.classes[int(y)] for y in labels]
    title = f"{cfg.info.title}: {len(names)} random {split} images (seed {seed})"
    path = save_figure(digit_grid_figure(images.numpy(), names, suptitle=title), output)
    return SampleGrid(images, names, path)
