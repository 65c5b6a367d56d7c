"""`mnistctl train` with another batched augmentation, for the recipe sweep (benchmarks/sweep.py):

    python benchmarks/sweep_train.py VARIANT train --preset best ...

VARIANT names one of AUGMENTATIONS below; the rest is the `mnistctl train` command line. The
variants were tried on a GPU for --preset best and none did better on the validation split than
mnistctl's own (``base``), so they stay here rather than in mnistctl: elastic distortions (a
smooth random displacement field added to the affine grid, as in Simard et al. 2003) and a
stronger and a weaker affine range, and cutout (README: "Accuracy").
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnistctl.data.splits import AugmentConfig, random_affine_grid, warp
from mnistctl.training import loop as engine


@dataclass(frozen=True)
class Augmentation(AugmentConfig):
    """mnistctl's affine ranges (its defaults unless a variant changes them), plus an elastic field."""

    elastic: float = 0.0  # largest displacement at the coarse field's nodes, in pixels (0: none)
    nodes: int = 4  # the coarse field is nodes x nodes, upsampled bicubically to the image
    cutout: int = 0  # side of a square set to the background in half the images (0: none)


AUGMENTATIONS = {
    "base": Augmentation(),
    "elastic1.5": Augmentation(elastic=1.5),
    "elastic2.5": Augmentation(elastic=2.5),
    "elastic2.5-coarse": Augmentation(elastic=2.5, nodes=3),
    "strong": Augmentation(degrees=15, translate=0.12, scale=(0.85, 1.15)),
    "strong-elastic1.5": Augmentation(degrees=15, translate=0.12, scale=(0.85, 1.15), elastic=1.5),
    "weak": Augmentation(degrees=7, translate=0.08, scale=(0.92, 1.08)),
    "cutout8": Augmentation(cutout=8),
}


def augment(x: torch.Tensor, cfg: Augmentation, generator: torch.Generator | None = None) -> torch.Tensor:
    """mnistctl.data.splits.augment, plus the elastic displacement field when ``cfg.elastic`` > 0."""
    n, _, h, w = x.shape
    grid = random_affine_grid(x, cfg, generator)
    if cfg.elastic:
        noise = torch.rand(n, 2, cfg.nodes, cfg.nodes, generator=generator, device=x.device) * 2 - 1
        field = F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)
        grid = grid + (field * (cfg.elastic * 2.0 / w)).permute(0, 2, 3, 1).to(grid.dtype)  # pixels -> grid units
    out = warp(x, grid)
    if cfg.cutout:  # DeVries & Taylor 2017: the square's centre anywhere in the image, clipped at its edges
        centre = torch.rand(n, 2, 1, 1, generator=generator, device=x.device) * torch.tensor(
            [[[[h]], [[w]]]], device=x.device, dtype=x.dtype)
        on = torch.rand(n, 1, 1, 1, generator=generator, device=x.device) < 0.5
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
        half = cfg.cutout / 2
        inside = ((ys - centre[:, :1]).abs() < half) & ((xs - centre[:, 1:]).abs() < half) & on
        out = torch.where(inside, x.amin(), out)
    return out


if __name__ == "__main__":
    chosen = AUGMENTATIONS[sys.argv.pop(1)]
    engine.AugmentConfig = lambda: chosen  # what the training loop builds and applies
    engine.augment = augment
    sys.argv[0] = "mnistctl"
    from mnistctl.cli.commands import main

    main()
