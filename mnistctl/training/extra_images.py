"""``train --extra-images``: labelled pictures added to a run's training split, prepared as
``predict`` prepares a picture, at the share of the training images asked for."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mnistctl.config import DataConfig
from mnistctl.images.labelled import prepare_labelled
from mnistctl.training.loop import Pool


def with_extra_images(cfg: DataConfig, images: torch.Tensor, labels: torch.Tensor,
                      progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, Pool]:
    """The training split with ``cfg.extra_images`` after it, prepared as ``predict`` prepares a
    picture, and the ``Pool`` they form: how many of them an epoch takes. With ``cfg.extra_share``
    that many make up that share of each epoch's images, a fresh draw every epoch (``epoch_order``:
    the same in every process of a group and on resume), so that over a run all of them are seen;
    without, each is taken once an epoch."""
    extra_x, extra_y = map(torch.from_numpy, prepare_labelled(cfg.extra_images, cfg.info.classes, "extra_images",
                                                              progress))
    count = round(cfg.extra_share * len(labels) / (1 - cfg.extra_share)) if cfg.extra_share else len(extra_y)
    return torch.cat([images, extra_x]), torch.cat([labels, extra_y]), Pool(len(labels), count)
