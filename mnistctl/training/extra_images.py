"""``train --extra-images``: labelled pictures added to a run's training split, prepared as
``predict`` prepares a picture, at the share of the training images asked for."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mnistctl.config import DataConfig
from mnistctl.images.labelled import prepare_labelled


def with_extra_images(cfg: DataConfig, images: torch.Tensor, labels: torch.Tensor,
                      progress: Callable[[int, int], None] | None = None, jobs: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The training split with ``cfg.extra_images`` added, prepared as ``predict`` prepares a picture;
    how many were added, and how many pictures they were drawn from. With ``cfg.extra_share`` they
    make up that share of the result: all of them repeated as often as fits, then a random part of
    them, drawn once for the whole run (seeded by the split's seed, so that every process of a group
    and a resumed run train on the same images; a fresh draw each epoch read worse:
    docs/design-notes.md, "Other hands in training"). ``jobs``: processes that prepare the pictures
    (None: one per core)."""
    extra_x, extra_y = map(torch.from_numpy, prepare_labelled(cfg.extra_images, cfg.info.classes, "extra_images",
                                                              progress, jobs))
    m = len(extra_y)
    count = round(cfg.extra_share * len(labels) / (1 - cfg.extra_share)) if cfg.extra_share else m
    generator = torch.Generator().manual_seed(cfg.split_seed)
    idx = torch.cat([torch.arange(m).repeat(count // m), torch.randperm(m, generator=generator)[:count % m]])
    return torch.cat([images, extra_x[idx]]), torch.cat([labels, extra_y[idx]]), count, m
