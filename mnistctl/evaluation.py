"""Score a checkpoint on a split of its own data set, and draw the figures of the result."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistctl import accel, engine
from mnistctl.checkpoint import Checkpoint
from mnistctl.data import load_split
from mnistctl.errors import ConfigError
from mnistctl.metrics import EvalReport, report

EVAL_SPLITS = ("test", "val")


@dataclass
class Evaluation:
    checkpoint: Checkpoint
    report: EvalReport
    images: torch.Tensor  # the split's images (uint8 [N, 28, 28]), for figures of the mistakes


def evaluate_checkpoint(ckpt: Checkpoint, split: str = "test", batch_size: int = 1000,
                        device: torch.device | None = None, data_dir: str | Path | None = None) -> Evaluation:
    """Rebuild the model from ``ckpt`` and score it on ``split`` (test, or the validation part)
    of the data set it was trained on."""
    if split not in EVAL_SPLITS:
        raise ConfigError.invalid("split", f"must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if batch_size < 1:
        raise ConfigError.invalid("batch_size", f"must be at least 1, got {batch_size}")
    device = device or torch.device("cpu")
    images, labels = load_split(ckpt.data_config, split, data_dir)
    model = accel.prepare_model(ckpt.build_model(), device)
    start = time.perf_counter()
    logits = engine.predict_logits(model, images, batch_size, device)
    result = report(logits, labels, ckpt.classes, split)
    result.seconds = time.perf_counter() - start
    return Evaluation(ckpt, result, images)


def write_figures(evaluation: Evaluation, directory: Path) -> list[Path]:
    """``confusion.png`` and (when there are mistakes) ``mistakes.png`` in ``directory``."""
    from mnistctl.plotting import confusion_figure, digit_grid_figure, save_figure

    r = evaluation.report
    title = f"{evaluation.checkpoint.source}: {r.split} accuracy {100 * r.accuracy:.2f}%"
    written = [save_figure(confusion_figure(r.confusion, r.classes, title), directory / "confusion.png")]
    if r.mistakes:
        m = r.mistakes
        titles = [f"true {r.classes[x.true]}, pred {r.classes[x.predicted]}\n{100 * x.confidence:.1f}%" for x in m]
        figure = digit_grid_figure(evaluation.images[[x.index for x in m]].numpy(), titles,
                                   suptitle="Most confidently wrong", title_colors=["firebrick"] * len(m))
        written.append(save_figure(figure, directory / "mistakes.png"))
    return written
