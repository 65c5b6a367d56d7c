"""Metrics on made-up logits whose answers are known by hand."""

from __future__ import annotations

import math

import torch

from mnistctl.inference.metrics import confusion_matrix, report


def _logits_for(pred: list[int], k: int, confidence: float = 0.9) -> torch.Tensor:
    """Logits whose softmax puts ``confidence`` on each ``pred`` class."""
    other = (1 - confidence) / (k - 1)
    probs = torch.full((len(pred), k), other)
    probs[torch.arange(len(pred)), torch.tensor(pred)] = confidence
    return probs.log()


def test_confusion_matrix_rows_are_true_columns_are_predicted():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_report_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = [0, 0, 1, 1, 1, 1]  # class 2 never predicted
    r = report(_logits_for(pred, 3), labels, ["a", "b", "c"], "test")
    assert r.images == 6 and r.correct == 4 and math.isclose(r.accuracy, 4 / 6)
    a, b, c = r.per_class
    assert (a.precision, a.recall, a.support) == (1.0, 2 / 3, 3)
    assert math.isclose(a.f1, 0.8)
    assert (b.precision, b.recall) == (0.5, 1.0) and math.isclose(b.f1, 2 / 3)
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 1)
    assert math.isclose(r.loss, -math.log(0.05) * 2 / 6 + -math.log(0.9) * 4 / 6, rel_tol=1e-5)
    assert [(m.index, m.true, m.predicted) for m in r.mistakes] == [(2, 0, 1), (5, 2, 1)]
    doc = r.to_dict()
    assert doc["per_class"][0] == {"class": "a", "precision": 1.0, "recall": 2 / 3, "f1": a.f1, "support": 3}
    assert doc["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_mistakes_are_most_confident_first_and_capped():
    labels = torch.zeros(50, dtype=torch.long)
    logits = torch.zeros(50, 2)
    logits[:, 1] = torch.linspace(0.1, 5, 50)  # every one wrong, more and more confidently
    r = report(logits, labels, ["x", "y"], "val", max_mistakes=5)
    assert [m.index for m in r.mistakes] == [49, 48, 47, 46, 45]
    assert r.mistakes[0].confidence > r.mistakes[-1].confidence and r.accuracy == 0.0


def test_empty_input_does_not_divide_by_zero():
    r = report(torch.empty(0, 10), torch.empty(0, dtype=torch.long), [str(i) for i in range(10)], "test")
    assert r.images == 0 and r.accuracy == 0.0 and r.loss == 0.0 and r.mistakes == []
