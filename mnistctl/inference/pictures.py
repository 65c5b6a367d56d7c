"""Score a model on folders of labelled pictures -- people's own handwriting -- read exactly as
``mnistctl predict`` reads them (prepared, two looks, unsure marks), with ``evaluate``'s figures
and what only pictures have: which could not be read, and how right the sure and the unsure
answers are.

Labels come from sub-folder names (``DIR/7/*.png`` are sevens) or from a CSV file of ``path,label``
rows (paths relative to the CSV file's folder). Numpy only: no torch for an ONNX model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistctl.images.labelled import labelled_pictures
from mnistctl.inference.classifier import Classifier
from mnistctl.inference.files import FilePrediction, predict_files
from mnistctl.inference.metrics import EvalReport, report


@dataclass(frozen=True)
class Answers:
    """How many answers of a kind (sure or unsure) there were, and how many were right."""

    images: int
    right: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.images if self.images else None

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "right": self.right, "accuracy": self.accuracy}


@dataclass
class PictureEvaluation:
    """``evaluate --images``: the scores of the pictures read, and what only pictures have."""

    classifier: Classifier
    report: EvalReport
    images: np.ndarray  # the prepared 28x28 inputs of the pictures read, for figures of the mistakes
    paths: list[str]  # of the pictures read, in the report's order
    right: np.ndarray  # bool per picture read: read right
    unsure: np.ndarray  # bool per picture read: marked unsure (low confidence or doubts about the picture)
    unreadable: list[tuple[str, str]]  # (path, error)
    source: str  # the folder or CSV file scored

    @property
    def sure_answers(self) -> Answers:
        return Answers(int((~self.unsure).sum()), int((self.right & ~self.unsure).sum()))

    @property
    def unsure_answers(self) -> Answers:
        return Answers(int(self.unsure.sum()), int((self.right & self.unsure).sum()))

    @property
    def caught(self) -> int:
        """Mistakes marked unsure."""
        return int((~self.right & self.unsure).sum())

    def to_dict(self, models: list[str] | None = None) -> dict[str, Any]:
        """``evaluate --images --json``'s document."""
        clf = self.classifier
        single = str(models[0]) if models and len(models) == 1 else None
        mistakes = [{"index": m.index, "path": self.paths[m.index], "true": m.true, "predicted": m.predicted,
                     "confidence": m.confidence, "unsure": bool(self.unsure[m.index])} for m in self.report.mistakes]
        return {"checkpoint": single, "ensemble": [str(m) for m in models] if single is None and models else None,
                "model": clf.source, "backend": clf.backend, "dataset": clf.dataset,
                "model_config": clf.model_config.to_dict(), "epoch": clf.epoch, "pictures": self.source,
                **self.report.to_dict(), "mistakes": mistakes,
                "sure": self.sure_answers.to_dict(), "unsure": self.unsure_answers.to_dict(),
                "mistakes_marked_unsure": self.caught,
                "unreadable": [{"path": p, "error": e} for p, e in self.unreadable]}


def evaluate_pictures(clf: Classifier, source: str | Path, jobs: int | None = None) -> PictureEvaluation:
    """Read every labelled picture of ``source`` as ``predict`` does, and score the answers."""
    pictures = labelled_pictures(source, tuple(clf.classes))
    start = time.perf_counter()
    results = predict_files([p for p, _ in pictures], clf, jobs=jobs)
    read = [(r, label) for r, (_, label) in zip(results, pictures) if r.prediction is not None]
    # a picture found to hold several digits is scored by its one-digit reading, marked unsure
    probs = np.array([r.prediction.probabilities for r, _ in read if r.prediction is not None],
                     np.float64).reshape(-1, len(clf.classes))
    labels = np.array([label for _, label in read], np.int64)
    logits = np.log(np.maximum(probs, 1e-12))  # the two looks' averaged probabilities, as logits
    result = report(logits, labels, list(clf.classes), "pictures")
    result.seconds = time.perf_counter() - start
    return PictureEvaluation(
        clf, result, _inputs(r for r, _ in read), [r.path for r, _ in read], probs.argmax(1) == labels,
        np.array([r.unsure or r.number is not None for r, _ in read], bool),
        [(r.path, r.error or "") for r in results if r.prediction is None],
        str(source))


def _inputs(results: Any) -> np.ndarray:
    images = [r.image for r in results if isinstance(r, FilePrediction) and r.image is not None]
    return np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)
