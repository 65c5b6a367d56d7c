"""Predict the digits in people's image files: gather, decode, preprocess, classify in batches."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistctl.checkpoint import normalization
from mnistctl.engine import predict_logits
from mnistctl.preprocess import ImageError, read_image, resize_as_is, to_mnist

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CHUNK = 4096  # files decoded before a round of classification


@dataclass
class Prediction:
    path: str
    index: int | None = None  # predicted class index
    label: str | None = None  # predicted class name
    confidence: float | None = None
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None
    image: np.ndarray | None = None  # the 28x28 uint8 input the model saw

    def top(self, k: int, classes: list[str]) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(classes[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, classes: list[str]) -> dict[str, Any]:
        return {
            "path": self.path,
            "prediction": self.label,
            "confidence": self.confidence,
            "top3": [{"class": c, "probability": p} for c, p in self.top(3, classes)] if not self.error else [],
            "probabilities": dict(zip(classes, self.probabilities)) if not self.error else {},
            "error": self.error,
        }


def expand_inputs(specs: list[str]) -> list[tuple[str, str | None]]:
    """Files, directories (their images, sorted) and glob patterns -> (path, error or None)."""
    out: list[tuple[str, str | None]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out += [(str(p), None) for p in images] or [(spec, "directory holds no image files")]
        elif path.exists():
            out.append((spec, None))
        elif glob.has_magic(spec):
            matches = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            out += [(p, None) for p in matches] or [(spec, "no file matches this pattern")]
        else:
            out.append((spec, "no such file or directory"))
    return out


def prepare(path: str | Path, preprocess: bool = True) -> np.ndarray:
    decoded = read_image(path)
    return to_mnist(decoded) if preprocess else resize_as_is(decoded)


def predict_files(specs: list[str], ckpt: dict[str, Any], model: torch.nn.Module, preprocess: bool = True,
                  batch_size: int = 1000, device: torch.device | None = None) -> list[Prediction]:
    """One Prediction per input, in order; unreadable inputs carry an error instead."""
    norm = normalization(ckpt)
    classes = list(ckpt["classes"])
    results = [Prediction(path, error=err) for path, err in expand_inputs(specs)]
    for start in range(0, len(results), CHUNK):
        chunk = [r for r in results[start:start + CHUNK] if r.error is None]
        ready = []
        for r in chunk:
            try:
                r.image = prepare(r.path, preprocess)
                ready.append(r)
            except ImageError as exc:
                r.error = str(exc)
        if not ready:
            continue
        images = torch.from_numpy(np.stack([r.image for r in ready]))
        probs = torch.softmax(predict_logits(model, images, norm, batch_size, device), dim=1)
        conf, idx = probs.max(1)
        for r, p, c, i in zip(ready, probs.tolist(), conf.tolist(), idx.tolist()):
            r.probabilities, r.confidence, r.index, r.label = p, c, i, classes[i]
    return results
