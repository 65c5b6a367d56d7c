"""Training and evaluation: plain functions over in-memory tensors, in the spirit of
torchvision's reference ``train_one_epoch`` / ``evaluate``.

Every random draw of training (the epoch's shuffle, augmentation, dropout) comes from seeds
derived from (seed, epoch, step), so a run is reproducible on CPU and a run interrupted at any
step and resumed ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import ctypes
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistctl import checkpoint
from mnistctl.data import AugmentConfig, DataConfig, augment, load_split, normalize
from mnistctl.errors import CheckpointError, ConfigError, TrainingInterrupted
from mnistctl.fsutil import write_json
from mnistctl.model import ModelConfig, Net, num_parameters
from mnistctl.recipes import DEVICES, OPTIMIZERS, SCHEDULES


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "adam"
    schedule: str = "onecycle"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 1
    augment: bool = True
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.eval_batch_size >= 1, "the evaluation batch size must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit choice must be available."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not cuda:
        raise ConfigError("--device cuda is not available here (no CUDA GPU found): use --device cpu or auto")
    if name == "mps" and not mps:
        raise ConfigError("--device mps is not available here (no Apple GPU found): use --device cpu or auto")
    return torch.device(name)


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers, stable across runs and platforms."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (p + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & ((1 << 63) - 1)
    return value


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Whole batches only (the shuffle differs each epoch, so every image is seen); at least one,
    with the batch shrunk to ``n`` when there are fewer images than a batch."""
    return max(1, n // min(batch_size, n))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps: int):
    total = cfg.epochs * steps
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=0.2, div_factor=20, final_div_factor=200)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def tune_allocator() -> None:
    """Keep freed tensor memory in the process (glibc): without this every step's large buffers
    go back to the OS and fault in again, about a second per epoch of page faults on a laptop CPU.
    Peak memory does not change. A no-op elsewhere."""
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_allocator_tuned = False


def _channels_last(device: torch.device) -> bool:
    """Where the channels_last layout makes the convolutions faster (models and inputs alike)."""
    return device.type in ("cpu", "cuda")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to ``device``, in channels_last layout where that is faster."""
    model = model.to(device)
    if _channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    return model


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device, source: str | Path = "checkpoint") -> nn.Module:
    """The checkpoint's model with its weights, in eval mode, ready on ``device``."""
    return prepare_model(checkpoint.build_model(ckpt, source), device)


def _inputs(images: torch.Tensor, mean: float, std: float, device: torch.device) -> torch.Tensor:
    x = normalize(images, mean, std)
    if _channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@dataclass
class EpochStats:
    """Running sums of one epoch; kept in an interrupted checkpoint so the epoch can go on."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.seen)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.seen)


class TrainCallbacks:
    """Hooks the CLI implements to show progress; the defaults do nothing."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None: ...

    def on_batch(self, step: int, loss: float | None, images: int) -> None:
        """After each step; ``loss`` is None on steps where an accelerator was not synced."""

    def on_epoch_end(self, record: dict[str, Any]) -> None: ...


class _StopFlag:
    """Set by Ctrl-C while training, checked between steps so the state saved is consistent."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def _deferred_interrupt() -> Iterator[_StopFlag]:
    """The first Ctrl-C asks training to stop after the current step; a second one stops at once."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _Interrupted(Exception):
    def __init__(self, step: int):
        self.step = step


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, images: torch.Tensor,
                    labels: torch.Tensor, cfg: TrainConfig, norm: tuple[float, float], epoch: int,
                    stats: EpochStats, start_step: int = 0, callbacks: TrainCallbacks | None = None,
                    stop: _StopFlag | None = None) -> EpochStats:
    """One pass over ``images`` (uint8, on the training device) in shuffled batches.

    Starts at ``start_step`` (for a resumed run) and adds to ``stats``. Raises _Interrupted
    after a completed step when ``stop`` is set or a callback raised KeyboardInterrupt.
    """
    model.train()
    device = images.device
    n = len(labels)
    bs = min(cfg.batch_size, n)
    steps = steps_per_epoch(n, cfg.batch_size)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(cfg.seed, epoch))).to(device)
    aug = AugmentConfig()
    # on an accelerator, sums stay on the device and the host reads them every `sync` steps only
    sync = 1 if device.type == "cpu" else 25
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    start = time.perf_counter()
    try:
        for step in range(start_step, steps):
            torch.manual_seed(_seed(cfg.seed, epoch, step))  # augmentation and dropout draws
            idx = perm[step * bs:(step + 1) * bs]
            x = _inputs(images[idx], *norm, device)
            y = labels[idx]
            if cfg.augment:
                x = augment(x, aug)
            with _autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
            stats.seen += len(idx)
            loss_value = None
            if (step + 1) % sync == 0 or step + 1 == steps:
                loss_value = loss.item()
                stats.loss_sum += loss_sum.item()
                stats.correct += int(correct.item())
                loss_sum.zero_()
                correct.zero_()
            try:
                if callbacks:
                    callbacks.on_batch(step, loss_value, len(idx))
            except KeyboardInterrupt:
                raise _Interrupted(step + 1) from None
            if stop is not None and stop.requested:
                raise _Interrupted(step + 1)
    finally:
        stats.loss_sum += loss_sum.item()
        stats.correct += int(correct.item())
        stats.seconds += time.perf_counter() - start
    return stats


def _autocast(device: torch.device):
    """bf16 mixed precision on CUDA (where it is faster); full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, norm: tuple[float, float],
                   batch_size: int = 1000, device: torch.device | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) for uint8 ``images`` [N, 28, 28], in batches."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = _inputs(images[start:start + batch_size].to(device, non_blocking=True), *norm, device)
        with _autocast(device):
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0, model.cfg.num_classes)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


# --- a whole training run ----------------------------------------------------------------

@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    best_path: Path
    last_path: Path
    seconds: float
    files: list[Path] = field(default_factory=list)


def new_run_name(model_cfg: ModelConfig, data_cfg: DataConfig, root: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{data_cfg.dataset}-nf{model_cfg.nf}-{stamp}"
    name, i = base, 1
    while (root / name).exists():
        i += 1
        name = f"{base}-{i}"
    return name


def check_run_dir(run_dir: Path) -> None:
    """A new run must not overwrite the checkpoints of an earlier one."""
    taken = [p.name for p in (run_dir / "best.pt", run_dir / "last.pt") if p.exists()]
    if taken:
        raise ConfigError(f"run directory {run_dir} already holds {' and '.join(taken)}: choose another "
                          f"--name/--run-dir, or continue it with --resume {run_dir / 'last.pt'}")


def _state(model, optimizer, scheduler, model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig,
           history, epoch: int, step: int, partial: EpochStats | None, best: dict) -> dict[str, Any]:
    info = data_cfg.info
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return {
        "model_config": model_cfg.to_dict(),
        "data_config": asdict(data_cfg),
        "train_config": asdict(train_cfg),
        "dataset": info.name,
        "classes": list(info.classes),
        "normalization": {"mean": info.mean, "std": info.std},
        "model": weights,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,  # epochs completed
        "step_in_epoch": step,  # > 0 only when interrupted inside an epoch
        "partial_epoch": asdict(partial) if partial is not None else None,
        "history": history,
        "best": best,
    }


def fit(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig, run_dir: Path,
        device: torch.device, data_dir: str | Path | None = None, resume: dict[str, Any] | None = None,
        callbacks: TrainCallbacks | None = None,
        on_ready: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train (or resume training) and write best.pt, last.pt and history.json into ``run_dir``.

    On Ctrl-C, saves a resumable last.pt after the current step and raises TrainingInterrupted.
    """
    callbacks = callbacks or TrainCallbacks()
    if device.type == "cpu":
        tune_allocator()
    info = data_cfg.info
    norm = (info.mean, info.std)
    train_x, train_y = load_split(data_cfg, "train", data_dir)
    val_x, val_y = load_split(data_cfg, "val", data_dir)
    # the whole split lives on the training device: batches are gathered there, never copied
    train_x, train_y = train_x.to(device), train_y.to(device)
    val_x = val_x.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(train_cfg.seed)
    model = prepare_model(Net(model_cfg), device)
    optimizer = make_optimizer(model, train_cfg)
    steps = steps_per_epoch(len(train_y), train_cfg.batch_size)
    scheduler = make_scheduler(optimizer, train_cfg, steps)
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "val_acc": -1.0}
    start_epoch, start_step, partial = 0, 0, None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        history = list(resume["history"])
        best = dict(resume.get("best") or best)
        start_epoch, start_step = int(resume["epoch"]), int(resume.get("step_in_epoch") or 0)
        if resume.get("partial_epoch"):
            partial = EpochStats(**resume["partial_epoch"])
        if start_epoch >= train_cfg.epochs:
            raise ConfigError(f"that run already finished its {train_cfg.epochs} epochs: nothing to resume")

    run_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path, history_path = run_dir / "best.pt", run_dir / "last.pt", run_dir / "history.json"
    if on_ready:
        on_ready({"train_images": len(train_y), "val_images": len(val_y), "steps": steps,
                  "parameters": num_parameters(model), "device": str(device),
                  "start_epoch": start_epoch, "start_step": start_step})

    started = time.perf_counter()
    with _deferred_interrupt() as stop:
        for epoch in range(start_epoch, train_cfg.epochs):
            stats = partial or EpochStats()
            callbacks.on_epoch_start(epoch + 1, train_cfg.epochs, steps, start_step)
            try:
                train_one_epoch(model, optimizer, scheduler, train_x, train_y, train_cfg, norm, epoch,
                                stats, start_step, callbacks, stop)
            except _Interrupted as exc:
                checkpoint.save(last_path, _state(model, optimizer, scheduler, model_cfg, data_cfg, train_cfg,
                                                  history, epoch, exc.step, stats, best))
                raise TrainingInterrupted(last_path, epoch + 1, exc.step) from None
            start_step, partial = 0, None

            val_loss, val_acc = loss_and_accuracy(
                predict_logits(model, val_x, norm, train_cfg.eval_batch_size, device), val_y)
            record = {
                "epoch": epoch + 1,
                "train_loss": stats.loss, "train_acc": stats.accuracy,
                "val_loss": val_loss, "val_acc": val_acc,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": stats.seconds,
                "images_per_s": stats.seen / max(stats.seconds, 1e-9),
            }
            history.append(record)
            improved = val_acc > best["val_acc"]
            if improved:
                best = {"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss}
            state = _state(model, optimizer, scheduler, model_cfg, data_cfg, train_cfg,
                           history, epoch + 1, 0, None, best)
            checkpoint.save(last_path, state)
            if improved:
                checkpoint.save(best_path, state)
            write_json(history_path, {"run": run_dir.name, "dataset": info.name, "history": history})
            callbacks.on_epoch_end(record)
            if stop.requested and epoch + 1 < train_cfg.epochs:
                raise TrainingInterrupted(last_path, epoch + 2, 0)

    return FitResult(run_dir=run_dir, history=history, best_epoch=best["epoch"], best_val_acc=best["val_acc"],
                     best_path=best_path, last_path=last_path, seconds=time.perf_counter() - started,
                     files=[best_path, last_path, history_path])


def config_from_checkpoint(ckpt: dict[str, Any]) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    try:
        return (ModelConfig(**ckpt["model_config"]), DataConfig(**ckpt["data_config"]),
                TrainConfig(**ckpt["train_config"]))
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"the checkpoint's configuration is not one this mnistctl knows ({exc})") from None


def evaluate_checkpoint(ckpt: dict[str, Any], split: str = "test", batch_size: int = 1000,
                        device: torch.device | None = None, data_dir: str | Path | None = None,
                        source: str | Path = "checkpoint"):
    """Rebuild the model from a loaded checkpoint and score it on ``split``: an EvalReport,
    plus the images of the split (for figures of the mistakes)."""
    from mnistctl.metrics import report

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    device = device or torch.device("cpu")
    _, data_cfg, _ = config_from_checkpoint(ckpt)
    images, labels = load_split(data_cfg, split, data_dir)
    model = model_from_checkpoint(ckpt, device, source)
    start = time.perf_counter()
    logits = predict_logits(model, images, checkpoint.normalization(ckpt), batch_size, device)
    result = report(logits, labels, list(ckpt["classes"]), split)
    result.seconds = time.perf_counter() - start
    return result, images
