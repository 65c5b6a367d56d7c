"""Classification metrics from logits: confusion matrix, per-class scores, confident mistakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class EvalReport:
    split: str
    images: int
    loss: float
    accuracy: float
    classes: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    per_class: list[dict[str, Any]]  # class, precision, recall, f1, support
    mistakes: list[dict[str, Any]]  # index, true, predicted, confidence; most confident first
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str], split: str,
           max_mistakes: int = 36) -> EvalReport:
    k = len(classes)
    probs = F.softmax(logits, dim=1)
    conf, pred = probs.max(1)
    cm = confusion_matrix(pred, labels, k)
    tp = cm.diag().double()
    precision = tp / cm.sum(0).clamp(min=1)
    recall = tp / cm.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    per_class = [{"class": classes[i], "precision": precision[i].item(), "recall": recall[i].item(),
                  "f1": f1[i].item(), "support": int(cm[i].sum())} for i in range(k)]
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[conf[wrong].argsort(descending=True)][:max_mistakes]
    mistakes = [{"index": int(i), "true": int(labels[i]), "predicted": int(pred[i]),
                 "confidence": conf[i].item()} for i in order]
    return EvalReport(split=split, images=len(labels), loss=F.cross_entropy(logits, labels).item(),
                      accuracy=(pred == labels).double().mean().item() if len(labels) else 0.0,
                      classes=list(classes), confusion=cm.tolist(), per_class=per_class, mistakes=mistakes)
