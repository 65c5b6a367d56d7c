"""Array-first inference: classify a batch of 28x28 digits held in memory.

    from mnistctl.inference import load_classifier, prepare_image
    clf = load_classifier()                       # the built-in model, or load_classifier("best.pt")
    x = prepare_image("five.png")                 # path, bytes, stream or PIL image -> 28x28 uint8
    [p] = clf.classify(x[None])                   # a batch [N, 28, 28] of 0-255 pixels
    p.label, p.confidence, p.top(3)

Every front end (the CLI's ``predict``, a web server, a notebook) goes through ``Classifier``:
the same preprocessing, the same model, the same numbers. ``mnistctl.predict`` walks files on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistctl.errors import MnistctlError
from mnistctl.preprocess import ImageSource, prepare_image

__all__ = ["Classifier", "Prediction", "load_classifier", "prepare_image", "ImageSource"]


@dataclass(frozen=True)
class Prediction:
    """One image's class probabilities and the most likely class."""

    index: int  # the predicted class index
    label: str  # its name
    confidence: float  # its probability
    probabilities: tuple[float, ...]
    classes: tuple[str, ...]

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {"prediction": self.label, "confidence": self.confidence,
                "top3": [{"class": c, "probability": p} for c, p in self.top(3)],
                "probabilities": dict(zip(self.classes, self.probabilities))}


def predictions(probs: np.ndarray, classes: tuple[str, ...]) -> list[Prediction]:
    """Predictions from class probabilities ``[N, K]``."""
    idx = probs.argmax(1)
    return [Prediction(int(i), classes[int(i)], float(p[i]), tuple(float(v) for v in p), classes)
            for i, p in zip(idx, probs)]


class Classifier:
    """A trained model ready to classify 0-255 digit images ``[N, 28, 28]`` (uint8 arrays)."""

    def __init__(self, checkpoint, device: str | Any = "cpu", batch_size: int = 1000):
        from mnistctl import accel

        self.checkpoint = checkpoint
        self.device = accel.resolve_device(device) if isinstance(device, str) else device
        self.batch_size = batch_size
        self.model = accel.prepare_model(checkpoint.build_model(), self.device)
        self.classes = tuple(checkpoint.classes)

    @property
    def source(self) -> str:
        return self.checkpoint.source

    @property
    def dataset(self) -> str:
        return self.checkpoint.dataset

    @property
    def test_accuracy(self) -> float | None:
        return self.checkpoint.test_accuracy

    @property
    def nf(self) -> int:
        return self.checkpoint.model_config.nf

    def probabilities(self, images: Any) -> np.ndarray:
        """Class probabilities ``[N, K]`` (float32) for ``images`` ``[N, 28, 28]`` of 0-255 pixels."""
        import torch

        from mnistctl.engine import predict_logits

        batch = _as_batch(images)
        logits = predict_logits(self.model, torch.from_numpy(batch), self.batch_size, self.device)
        return torch.softmax(logits, dim=1).numpy()

    def classify(self, images: Any) -> list[Prediction]:
        return predictions(self.probabilities(images), self.classes)


def _as_batch(images: Any) -> np.ndarray:
    """A uint8 array ``[N, 28, 28]`` from an array-like (a tensor, an array, a list of 28x28s)."""
    if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
        images = images.detach().cpu().numpy() if hasattr(images, "detach") else images.numpy()
    batch = np.asarray(images)
    if batch.ndim == 4 and batch.shape[1] == 1:
        batch = batch[:, 0]
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3 or batch.shape[1:] != (28, 28):
        raise MnistctlError(f"expected images of shape [N, 28, 28], got {list(batch.shape)}")
    if batch.dtype != np.uint8:
        batch = np.clip(np.round(batch), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(batch)


def load_classifier(checkpoint: str | Path | None = None, device: str | Any = "cpu",
                    batch_size: int = 1000) -> Classifier:
    """A Classifier for a checkpoint file, or for the built-in model when ``checkpoint`` is None."""
    from mnistctl.checkpoint import load_or_pretrained

    return Classifier(load_or_pretrained(checkpoint), device, batch_size)
