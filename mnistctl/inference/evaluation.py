"""Score a model on a split of its own data set, and draw the figures of the result.

Works for every ``inference.Classifier``: a checkpoint on PyTorch, or an exported model on ONNX
Runtime (the test split is then read without importing torch).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistctl.config import INFERENCE_BATCH, DataConfig
from mnistctl.data import idx
from mnistctl.errors import one_of
from mnistctl.inference.classifier import Classifier
from mnistctl.inference.metrics import EvalReport, report

if TYPE_CHECKING:
    from mnistctl.inference.pictures import PictureEvaluation
from mnistctl.recipes import EVAL_SPLITS


@dataclass
class Evaluation:
    classifier: Classifier
    report: EvalReport
    images: np.ndarray  # the split's images (uint8 [N, 28, 28]), for figures of the mistakes

    def to_dict(self, models: Sequence[str | Path] | None = None, plots: Sequence[Path] = ()) -> dict[str, Any]:
        """``evaluate --json``'s document: which model (the ``models`` files named, None for the
        built-in one), its figures (``report``'s), and the ``plots`` written."""
        clf = self.classifier
        single = str(models[0]) if models and len(models) == 1 else None
        return {"checkpoint": single, "ensemble": [str(m) for m in models] if single is None and models else None,
                "model": clf.source, "backend": clf.backend, "dataset": clf.dataset,
                "model_config": clf.model_config.to_dict(), "epoch": clf.epoch,
                **self.report.to_dict(), "plots": [str(p) for p in plots]}


def split_arrays(data_config: DataConfig, split: str,
                 data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of ``split`` as numpy arrays; only the validation part needs torch (its
    seeded permutation is torch's)."""
    one_of("split", split, EVAL_SPLITS)
    if split == "test":
        return idx.load_file_pair(data_config.dataset, "test", data_dir)
    from mnistctl.data.splits import load_split

    images, labels = load_split(data_config, split, data_dir)
    return images.numpy(), labels.numpy()


def evaluate(clf: Classifier, split: str = "test", data_dir: str | Path | None = None) -> Evaluation:
    """Score ``clf`` on ``split`` (test, or the validation part) of the data set it was trained on."""
    images, labels = split_arrays(clf.data_config, split, data_dir)
    start = time.perf_counter()
    logits = clf.logits(images)
    result = report(logits, labels, list(clf.classes), split)
    result.seconds = time.perf_counter() - start
    return Evaluation(clf, result, images)


def evaluate_checkpoint(ckpt: Any, split: str = "test", batch_size: int = INFERENCE_BATCH, device: Any = None,
                        data_dir: str | Path | None = None) -> Evaluation:
    """Rebuild the model of a loaded checkpoint (on ``device``, CPU by default) and score it."""
    from mnistctl.inference.classifier import TorchClassifier, check_batch_size

    return evaluate(TorchClassifier(ckpt, device or "cpu", check_batch_size(batch_size)), split, data_dir)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T for which ``softmax(logits / T)`` has the lowest cross-entropy on
    ``labels`` (temperature scaling, Guo et al. 2017). The cross-entropy is convex in 1/T, so a
    golden-section search over 1/T in [0.05, 20] finds it."""
    z = logits.astype(np.float64)
    picked = z[np.arange(len(labels)), labels]

    def loss(beta: float) -> float:
        b = beta * z
        top = b.max(1)
        return float(np.mean(top + np.log(np.exp(b - top[:, None]).sum(1)) - beta * picked))

    lo, hi = 0.05, 20.0
    ratio = (5 ** 0.5 - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(80):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return 2 / (lo + hi)


def calibrate(ckpt: Any, split: str = "val", data_dir: str | Path | None = None) -> Any:
    """``ckpt`` with the temperature that makes its confidences match its accuracy on ``split``
    (the validation part by default: the test set stays for scoring). A calibrated checkpoint
    is calibrated again on top of its temperature. Argmax, and so the accuracy, is unchanged.
    The temperature is kept to 3 significant digits."""
    from dataclasses import replace

    from mnistctl.inference.classifier import TorchClassifier

    images, labels = split_arrays(ckpt.data_config, split, data_dir)
    extra = fit_temperature(TorchClassifier(ckpt).logits(images), labels)
    cfg = replace(ckpt.model_config, temperature=float(f"{ckpt.model_config.temperature * extra:.3g}"))
    return replace(ckpt, model_config=cfg)


def write_figures(evaluation: Evaluation | PictureEvaluation, directory: Path) -> list[Path]:
    """``confusion.png`` and (when there are mistakes) ``mistakes.png`` in ``directory``."""
    from mnistctl.plotting import confusion_figure, digit_grid_figure, save_figure

    r = evaluation.report
    title = f"{evaluation.classifier.source}: {r.split} accuracy {100 * r.accuracy:.2f}%"
    written = [save_figure(confusion_figure(r.confusion, r.classes, title), directory / "confusion.png")]
    if r.mistakes:
        m = r.mistakes
        titles = [f"true {r.classes[x.true]}, pred {r.classes[x.predicted]}\n{100 * x.confidence:.1f}%" for x in m]
        figure = digit_grid_figure(evaluation.images[[x.index for x in m]], titles,
                                   suptitle="Most confidently wrong", title_colors=["firebrick"] * len(m))
        written.append(save_figure(figure, directory / "mistakes.png"))
    return written
