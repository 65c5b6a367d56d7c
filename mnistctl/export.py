"""Take a model out of a run: an inference-only checkpoint that records its test accuracy."""

from __future__ import annotations

from pathlib import Path

from mnistctl.checkpoint import Checkpoint, load
from mnistctl.errors import DataError


def export_checkpoint(source: str | Path, output: str | Path, data_dir: str | Path | None = None) -> Checkpoint:
    """Write ``source`` without its optimizer and scheduler state to ``output``; its test accuracy
    is measured and recorded when the test set is downloaded. Returns what was written."""
    from mnistctl.evaluation import evaluate_checkpoint

    ckpt = load(source)
    try:
        accuracy = evaluate_checkpoint(ckpt, "test", data_dir=data_dir).report.accuracy
    except DataError:
        accuracy = None
    exported = ckpt.inference_only(accuracy)
    exported.save(output)
    return exported
