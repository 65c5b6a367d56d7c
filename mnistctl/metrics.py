"""Classification metrics from logits: confusion matrix, per-class scores, confident mistakes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F


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


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str], split: str,
           max_mistakes: int = 36) -> EvalReport:
    """Scores of ``logits`` [N, K] against ``labels`` [N]. Precision of a class never predicted
    and recall of a class absent from ``labels`` are 0, as are their F1."""
    k = len(classes)
    labels = labels.long()
    probs = F.softmax(logits.float(), dim=1)
    conf, pred = probs.max(1)
    cm = confusion_matrix(pred, labels, k)
    tp = cm.diag().double()
    precision = tp / cm.sum(0).clamp(min=1)
    recall = tp / cm.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    per_class = [ClassScore(classes[i], precision[i].item(), recall[i].item(), f1[i].item(), int(cm[i].sum()))
                 for i in range(k)]
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[conf[wrong].argsort(descending=True)][:max_mistakes]
    mistakes = [Mistake(int(i), int(labels[i]), int(pred[i]), conf[i].item()) for i in order]
    n = len(labels)
    return EvalReport(split=split, images=n, loss=F.cross_entropy(logits.float(), labels).item() if n else 0.0,
                      accuracy=(pred == labels).double().mean().item() if n else 0.0,
                      classes=list(classes), confusion=cm.tolist(), per_class=per_class, mistakes=mistakes)
