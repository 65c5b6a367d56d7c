"""The training loop and batched inference: plain functions over in-memory tensors, in the spirit
of torchvision's reference ``train_one_epoch`` / ``evaluate``. Whole runs (fit, resume, interrupt,
history, files) are in ``mnistctl.training.run``; device details in ``mnistctl.devices``.

Every random draw of training (the epoch's shuffle, augmentation, dropout) comes from seeds
derived from (seed, epoch, step), so a run is reproducible on CPU and a run interrupted at any
step and resumed ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistctl.config import TrainConfig
from mnistctl.data.splits import AugmentConfig, augment
from mnistctl.devices import as_input, autocast
from mnistctl.errors import ConfigError, one_of
from mnistctl.model import predict_logits  # noqa: F401  (re-exported: the loop's inference)
from mnistctl.runfiles import TrainCallbacks
from mnistctl.training.cudagraph import StepGraph
from mnistctl.training.distributed import Group

# --- optimizers and schedules: registries whose names are recipes.OPTIMIZERS / SCHEDULES ------

OptimizerFactory = Callable[[Any, TrainConfig], torch.optim.Optimizer]
ScheduleFactory = Callable[[torch.optim.Optimizer, TrainConfig, int], Any]


@functools.cache
def _eager_class(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``cls`` with the methods torch.optim wraps for ``torch.compile`` unwrapped.

    Those wrappers (on ``step``, ``zero_grad``, ``add_param_group``, ``state_dict`` and
    ``load_state_dict``) import ``torch._dynamo`` on first use, which takes about as long as
    ``import torch`` itself, in every training process. Outside compilation all they add is
    ``no_grad`` around ``step``, so the subclass runs the same code: same updates, same
    ``state_dict``, still an instance of ``cls`` for the schedulers and hooks."""
    raw_step = inspect.unwrap(cls.step)

    def step(self: Any, closure: Any = None) -> Any:
        with torch.no_grad():
            return raw_step(self, closure)

    methods = {name: inspect.unwrap(getattr(cls, name))
               for name in ("zero_grad", "add_param_group", "state_dict", "load_state_dict")}
    return type(cls.__name__, (cls,), {"__module__": __name__, "__doc__": cls.__doc__, "step": step, **methods})


def _optimizer_class(cls: Any) -> Any:
    """torch.optim's ``cls`` where ``torch.compile`` has been loaded (say, a notebook that compiles
    something): nothing left to save, and its guards may then matter. Otherwise its eager copy, so
    a plain training run never pays for importing the compiler."""
    return cls if "torch._dynamo" in sys.modules else _eager_class(cls)


OPTIMIZER_REGISTRY: dict[str, OptimizerFactory] = {
    "adam": lambda params, cfg: _optimizer_class(torch.optim.Adam)(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "adamw": lambda params, cfg: _optimizer_class(torch.optim.AdamW)(params, lr=cfg.lr,
                                                                     weight_decay=cfg.weight_decay),
    "sgd": lambda params, cfg: _optimizer_class(torch.optim.SGD)(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                                                                 weight_decay=cfg.weight_decay),
}

WARMUP = 0.2  # the one-cycle schedule's share of steps rising to the peak learning rate


def _constant(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int) -> Any:
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _one_cycle(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int) -> Any:
    """Warm-up over the first fifth of the steps, then annealing. A run too short for a warm-up
    of more than one step starts near the peak (torch's OneCycleLR divides by zero when its
    warm-up ends on the first step: 5 steps in all, such as ``--epochs 1 --epoch-fraction 0.01``),
    and a run of one step takes it at the peak (OneCycleLR would give it the final, lowest rate)."""
    if total == 1:
        return _constant(opt, cfg, total)
    warmup = WARMUP if WARMUP * total > 1 else 0.5 / total
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=warmup,
                                               div_factor=20, final_div_factor=200)


SCHEDULE_REGISTRY: dict[str, ScheduleFactory] = {
    "onecycle": _one_cycle,
    "cosine": lambda opt, cfg, total: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total),
    "constant": _constant,
}


def _lookup(registry: dict[str, Any], name: str, setting: str) -> Any:
    return registry[one_of(setting, name, registry)]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return _lookup(OPTIMIZER_REGISTRY, cfg.optimizer, "optimizer")(model.parameters(), cfg)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The learning-rate schedule over the whole run (``cfg.epochs * steps_per_epoch`` steps)."""
    return _lookup(SCHEDULE_REGISTRY, cfg.schedule, "schedule")(optimizer, cfg, cfg.epochs * steps_per_epoch)


class WeightAverage:
    """An exponential moving average (EMA) of a model's weights and BatchNorm statistics, updated
    after every optimizer step: ``avg += (1 - d) * (weights - avg)``. The decay ``d`` warms up as
    ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so the first steps' random weights fade
    fast. ``module`` is the averaged network (in eval mode), what is validated and saved."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0):
        self.decay = decay
        self.updates = updates
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
        self._floats = ([a for a, _ in pairs if a.is_floating_point()], [m for a, m in pairs if a.is_floating_point()])
        self._counters = [(a, m) for a, m in pairs if not a.is_floating_point()]  # BatchNorm's: copied

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(*self._floats, 1.0 - d)
        for a, m in self._counters:
            a.copy_(m)


# --- the loop -------------------------------------------------------------------------------

def new_window(device: torch.device) -> torch.Tensor:
    """A step's running sums on ``device``: loss, objective, correct, images, stop requests."""
    return torch.zeros(5, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers, stable across runs and platforms."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (p + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & ((1 << 63) - 1)
    return value


def steps_per_epoch(n: int, batch_size: int, fraction: float = 1.0) -> int:
    """Steps of one epoch over ``n`` images: whole batches, the last one taking the remainder too;
    at least one, with the batch shrunk to ``n`` when there are fewer images than a batch. With
    ``fraction`` < 1 (``TrainConfig.epoch_fraction``), that share of them, rounded up."""
    whole = max(1, n // min(batch_size, n))
    if fraction < 1 and batch_size > n:  # the batch would shrink to every image: the share could not be kept
        raise ConfigError.invalid("epoch_fraction", f"{fraction:g} of {n:,} training images is fewer than one batch "
                                                    f"of {batch_size:,}: choose a smaller batch size or a larger "
                                                    "fraction")
    return whole if fraction >= 1 else min(whole, math.ceil(round(whole * fraction, 9)))


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


class Interrupted(Exception):
    """Raised by train_one_epoch after a completed step when asked to stop; ``together`` when every
    process of the group stops at this step (not so for a Ctrl-C that could not wait)."""

    def __init__(self, step: int, together: bool = True):
        super().__init__(step)
        self.step = step
        self.together = together


@dataclass
class Learner:
    """What a training step changes: the model (DistributedDataParallel-wrapped in a group), its
    optimizer and schedule, and optionally an average of its weights (EMA, updated after every
    step) and a CUDA graph that replays whole batches' forward and backward passes (one per run:
    see ``mnistctl.training.cudagraph``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    average: WeightAverage | None = None
    graph: StepGraph | None = None


@dataclass
class EpochControl:
    """How an epoch runs beyond its data: the step it starts at (a resumed run's), progress hooks,
    the question whether to stop, the group of processes sharing it and the images per step over
    all of them (by default ``batch_size`` per process)."""

    start_step: int = 0
    callbacks: TrainCallbacks | None = None
    should_stop: Callable[[], bool] | None = None
    group: Group | None = None
    global_batch: int | None = None


class _StepSums:
    """A step's forward and backward pass, adding the batch's loss and accuracy to sums ``window``
    kept on the device (no host sync per step), which ``flush`` adds to ``stats``."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                 window: torch.Tensor, stats: EpochStats) -> None:
        self.model, self.images, self.labels, self.cfg = model, images, labels, cfg
        self.window, self.stats = window, stats
        self.aug = AugmentConfig(writers=cfg.writer_style, low_res=cfg.low_res, scans=cfg.scans,
                                 scan_pens=cfg.scan_pens)
        self.smoothing = cfg.label_smoothing > 0  # then the loss minimised is not the cross-entropy reported

    def forward_backward(self, idx: torch.Tensor, weight: float = 1.0) -> None:
        """Everything of a step but the optimizer's: the gradients of the batch ``idx``, and its sums."""
        cfg, window, device = self.cfg, self.window, self.images.device
        x = as_input(self.images[idx], device)
        y = self.labels[idx]
        if cfg.augment:
            x = augment(x.float(), self.aug)
        with autocast(device):
            logits = self.model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        (loss * weight if weight != 1.0 else loss).backward()
        count = len(idx)
        ce = F.cross_entropy(logits.detach().float(), y) if self.smoothing else loss.detach()
        window[0] += ce * count
        if self.smoothing:
            window[1] += loss.detach() * count
        window[2] += (logits.argmax(1) == y).sum()
        window[3] += count

    def flush(self) -> tuple[float, float]:
        """Add the sums since the last flush to ``stats``: (their mean loss, the stop requests counted)."""
        loss_sum, objective_sum, correct, seen, stops = self.window.tolist()
        self.window.zero_()
        stats = self.stats
        stats.loss_sum += loss_sum
        stats.objective_sum += objective_sum
        stats.correct += int(correct)
        stats.seen += int(seen)
        return loss_sum / max(seen, 1), stops


def train_one_epoch(learner: Learner, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, epoch: int,
                    stats: EpochStats, control: EpochControl | None = None) -> EpochStats:
    """One pass over ``images`` (uint8 [N, 28, 28], on the training device) in shuffled batches.

    Each step takes the next ``control.global_batch`` images of the epoch's shuffle; the last step
    also takes the remainder, so every image is seen once. With ``cfg.epoch_fraction`` < 1 the
    epoch stops after that share of its steps: a different random part of the images each epoch.
    In a group of several processes each trains on its part of the step's images (see
    ``mnistctl.training.distributed``); the sums in ``stats`` are the whole group's.

    Starts at ``control.start_step`` and adds to ``stats``. Raises Interrupted after a completed
    step when ``control.should_stop()`` is true (on any process of the group) or a callback raised
    KeyboardInterrupt.
    """
    control = control or EpochControl()
    model, optimizer, scheduler, average, graph = (learner.model, learner.optimizer, learner.scheduler,
                                                   learner.average, learner.graph)
    start_step, callbacks, should_stop, global_batch = (control.start_step, control.callbacks, control.should_stop,
                                                        control.global_batch)
    group = control.group or Group(device=images.device)
    model.train()
    device = images.device
    n = len(labels)
    batch = min(global_batch or cfg.batch_size * group.world, n)
    whole = steps_per_epoch(n, batch)
    steps = steps_per_epoch(n, batch, cfg.epoch_fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, epoch))).to(device)
    # sums stay on the device; the host reads them (and processes add theirs up) every `sync` steps
    sync = 1 if device.type == "cpu" and not group.active else 25
    window = graph.window if graph is not None else new_window(device)
    if graph is not None:
        graph.bind(model, images, tuple(images.shape), labels, cfg.augment, cfg.label_smoothing)
    sums = _StepSums(model, images, labels, cfg, window, stats)
    forward_backward, flush = sums.forward_backward, sums.flush

    start = time.perf_counter()
    try:
        for step in range(start_step, steps):
            lo = step * batch
            hi = n if step == whole - 1 else lo + batch
            a, b = group.part(lo, hi)
            idx = perm[a:b]
            torch.manual_seed(derive_seed(cfg.seed, epoch, step, *group.seed_parts))  # augmentation, dropout
            if graph is not None and graph.fits(b - a):
                graph.run(forward_backward, idx)
            else:
                optimizer.zero_grad(set_to_none=True)
                # the processes' gradients are averaged: weighting each by its share of the step's images
                # makes that the gradient of the mean loss over all of them
                forward_backward(idx, (b - a) * group.world / (hi - lo) if group.active else 1.0)
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update()
            if group.tracing:
                group.record("batch", epoch=epoch, step=step, images=idx.tolist())
            loss_value, stop = None, False
            if (step + 1) % sync == 0 or step + 1 == steps:
                if group.active:
                    window[4] = float(should_stop is not None and should_stop())
                    group.all_sum(window)
                loss_value, stops = flush()
                stop = stops > 0
            if not group.active:
                stop = should_stop is not None and should_stop()
            try:
                if callbacks:
                    callbacks.on_batch(step, loss_value, hi - lo)
            except KeyboardInterrupt:
                raise Interrupted(step + 1, together=False) from None
            if stop:
                raise Interrupted(step + 1)
    finally:
        flush()  # what this process did since the last sync, when it stops early
        stats.seconds += time.perf_counter() - start
    return stats


@torch.inference_mode()
def evaluate_shared(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    group: Group | None = None) -> tuple[float, float, int]:
    """(mean cross-entropy, accuracy, images counted) over ``images``, each process of ``group``
    scoring its part and the sums added up, so every process gets the same numbers."""
    group = group or Group(device=images.device)
    a, b = group.part(0, len(labels))
    logits = predict_logits(model, images[a:b], batch_size, images.device)
    y = labels[a:b].cpu()
    sums = torch.tensor([F.cross_entropy(logits, y, reduction="sum").item() if b > a else 0.0,
                         float((logits.argmax(1) == y).sum()), float(b - a)], dtype=torch.float64,
                        device=group.device if group.active else "cpu")
    if group.tracing:
        group.record("val", images=list(range(a, b)))
    loss_sum, correct, count = group.all_sum(sums).tolist()
    return loss_sum / max(count, 1), correct / max(count, 1), int(count)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
