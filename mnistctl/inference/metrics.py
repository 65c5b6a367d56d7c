"""Classification metrics from logits: confusion matrix, per-class scores, confident mistakes.

Numpy only, so a torch-free front end (ONNX Runtime) scores models the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ClassScore:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # images of this class

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "support": self.support}


@dataclass(frozen=True)
class Mistake:
    index: int  # in the split
    true: int
    predicted: int
    confidence: float  # of the wrong prediction


@dataclass
class EvalReport:
    split: str
    images: int
    loss: float
    accuracy: float
    classes: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    per_class: list[ClassScore]
    mistakes: list[Mistake]  # most confident first
    seconds: float = 0.0

    @property
    def correct(self) -> int:
        return sum(self.confusion[i][i] for i in range(len(self.classes)))

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "images": self.images, "loss": self.loss, "accuracy": self.accuracy,
                "classes": list(self.classes), "confusion": self.confusion,
                "per_class": [c.to_dict() for c in self.per_class], "mistakes": [asdict(m) for m in self.mistakes],
                "seconds": self.seconds}


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[K, K]``: rows are true classes, columns predicted ones."""
    pred, target = np.asarray(pred, dtype=np.int64), np.asarray(target, dtype=np.int64)
    return np.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits)`` (in float64)."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def report(logits: Any, labels: Any, classes: list[str], split: str, max_mistakes: int = 36) -> EvalReport:
    """Scores of ``logits`` [N, K] against ``labels`` [N] (numpy arrays or CPU tensors). Precision
    of a class never predicted and recall of a class absent from ``labels`` are 0, as are their F1."""
    k = len(classes)
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    probs = softmax(logits) if n else np.zeros((0, k))
    pred = probs.argmax(1)
    conf = probs.max(1) if n else np.zeros(0)
    cm = confusion_matrix(pred, labels, k)
    tp = np.diag(cm).astype(np.float64)
    precision = tp / np.maximum(cm.sum(0), 1)
    recall = tp / np.maximum(cm.sum(1), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    per_class = [ClassScore(classes[i], float(precision[i]), float(recall[i]), float(f1[i]), int(cm[i].sum()))
                 for i in range(k)]
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:max_mistakes]
    mistakes = [Mistake(int(i), int(labels[i]), int(pred[i]), float(conf[i])) for i in order]
    return EvalReport(split=split, images=n, loss=cross_entropy(logits, labels) if n else 0.0,
                      accuracy=float((pred == labels).mean()) if n else 0.0,
                      classes=list(classes), confusion=cm.tolist(), per_class=per_class, mistakes=mistakes)
