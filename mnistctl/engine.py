"""The training loop and batched inference: plain functions over in-memory tensors, in the spirit
of torchvision's reference ``train_one_epoch`` / ``evaluate``. Whole runs (fit, resume, interrupt,
history, files) are in ``mnistctl.runs``; device details in ``mnistctl.accel``.

Every random draw of training (the epoch's shuffle, augmentation, dropout) comes from seeds
derived from (seed, epoch, step), so a run is reproducible on CPU and a run interrupted at any
step and resumed ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistctl.accel import as_input, autocast
from mnistctl.config import INFERENCE_BATCH, TrainConfig
from mnistctl.data import AugmentConfig, augment
from mnistctl.errors import ConfigError
from mnistctl.history import EpochRecord

# --- optimizers and schedules: registries whose names are recipes.OPTIMIZERS / SCHEDULES ------

OptimizerFactory = Callable[[Any, TrainConfig], torch.optim.Optimizer]
ScheduleFactory = Callable[[torch.optim.Optimizer, TrainConfig, int], Any]

OPTIMIZER_REGISTRY: dict[str, OptimizerFactory] = {
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "adamw": lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                                               weight_decay=cfg.weight_decay),
}

SCHEDULE_REGISTRY: dict[str, ScheduleFactory] = {
    "onecycle": lambda opt, cfg, total: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total, pct_start=0.2, div_factor=20, final_div_factor=200),
    "cosine": lambda opt, cfg, total: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total),
    "constant": lambda opt, cfg, total: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0),
}


def _lookup(registry: dict[str, Any], name: str, setting: str):
    try:
        return registry[name]
    except KeyError:
        raise ConfigError.invalid(setting, f"must be one of {', '.join(registry)}, got {name!r}") from None


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return _lookup(OPTIMIZER_REGISTRY, cfg.optimizer, "optimizer")(model.parameters(), cfg)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule over the whole run (``cfg.epochs * steps_per_epoch`` steps)."""
    return _lookup(SCHEDULE_REGISTRY, cfg.schedule, "schedule")(optimizer, cfg, cfg.epochs * steps_per_epoch)


# --- the loop -------------------------------------------------------------------------------

def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers, stable across runs and platforms."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (p + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & ((1 << 63) - 1)
    return value


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Whole batches only (the shuffle differs each epoch, so every image is seen); at least one,
    with the batch shrunk to ``n`` when there are fewer images than a batch."""
    return max(1, n // min(batch_size, n))


@dataclass
class EpochStats:
    """Running sums of one epoch; kept in an interrupted checkpoint so the epoch can go on."""

    loss_sum: float = 0.0  # plain cross-entropy, comparable with the validation loss
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    objective_sum: float = 0.0  # the loss minimised, when it differs (label smoothing)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.seen)

    @property
    def objective(self) -> float:
        return self.objective_sum / max(1, self.seen)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.seen)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float] | None) -> EpochStats:
        if not data:
            return cls()
        return cls(float(data.get("loss_sum", 0.0)), int(data.get("correct", 0)), int(data.get("seen", 0)),
                   float(data.get("seconds", 0.0)), float(data.get("objective_sum", 0.0)))


class TrainCallbacks:
    """Hooks a front end implements to show progress; the defaults do nothing."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None: ...

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        """After each step; ``loss`` (the batch's plain cross-entropy) is None on steps where an
        accelerator was not synced."""

    def on_epoch_end(self, record: EpochRecord) -> None: ...


class Interrupted(Exception):
    """Raised by train_one_epoch after a completed step when asked to stop."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, images: torch.Tensor,
                    labels: torch.Tensor, cfg: TrainConfig, epoch: int, stats: EpochStats,
                    start_step: int = 0, callbacks: TrainCallbacks | None = None,
                    should_stop: Callable[[], bool] | None = None) -> EpochStats:
    """One pass over ``images`` (uint8 [N, 28, 28], on the training device) in shuffled batches.

    Starts at ``start_step`` (for a resumed run) and adds to ``stats``. Raises Interrupted after
    a completed step when ``should_stop()`` is true or a callback raised KeyboardInterrupt.
    """
    model.train()
    device = images.device
    n = len(labels)
    bs = min(cfg.batch_size, n)
    steps = steps_per_epoch(n, cfg.batch_size)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, epoch))).to(device)
    aug = AugmentConfig()
    # on an accelerator, sums stay on the device and the host reads them every `sync` steps only
    sync = 1 if device.type == "cpu" else 25
    smoothing = cfg.label_smoothing > 0  # then the loss minimised is not the cross-entropy reported
    loss_sum = torch.zeros((), device=device)
    objective_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    start = time.perf_counter()
    try:
        for step in range(start_step, steps):
            torch.manual_seed(derive_seed(cfg.seed, epoch, step))  # augmentation and dropout draws
            idx = perm[step * bs:(step + 1) * bs]
            x = as_input(images[idx], device)
            y = labels[idx]
            if cfg.augment:
                x = augment(x.float(), aug)
            with autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            ce = F.cross_entropy(logits.detach().float(), y) if smoothing else loss.detach()
            loss_sum += ce * len(idx)
            if smoothing:
                objective_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
            stats.seen += len(idx)
            loss_value = None
            if (step + 1) % sync == 0 or step + 1 == steps:
                loss_value = ce.item()
                stats.loss_sum += loss_sum.item()
                stats.objective_sum += objective_sum.item()
                stats.correct += int(correct.item())
                loss_sum.zero_()
                objective_sum.zero_()
                correct.zero_()
            try:
                if callbacks:
                    callbacks.on_batch(step, loss_value, len(idx))
            except KeyboardInterrupt:
                raise Interrupted(step + 1) from None
            if should_stop is not None and should_stop():
                raise Interrupted(step + 1)
    finally:
        stats.loss_sum += loss_sum.item()
        stats.objective_sum += objective_sum.item()
        stats.correct += int(correct.item())
        stats.seconds += time.perf_counter() - start
    return stats


# --- inference ------------------------------------------------------------------------------

@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = INFERENCE_BATCH,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) for 0-255 ``images`` [N, 28, 28] or [N, 1, 28, 28], in batches."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = as_input(images[start:start + batch_size], device)
        with autocast(device):
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0, model.cfg.num_classes)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
