"""mnistctl: a terminal toolkit for MNIST-sized handwritten-digit classifiers, and its Python API.

    import mnistctl
    run = mnistctl.train("fast")                    # -> mnistctl.Run
    clf = mnistctl.load(run.best_path)              # -> mnistctl.Classifier (or mnistctl.load(): built-in)
    clf.predict(["seven.png", "two.jpg"])           # pictures, or [N, 28, 28] arrays of 0-255 pixels
    mnistctl.evaluate(clf, split="test")
    mnistctl.export(run.best_path, "model.onnx")

Nothing here imports torch until a function needs it (see ``mnistctl.api``).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

# mnistctl contacts nothing: ONNX Runtime's telemetry (on by default: a device id and an event
# database under ~/.cache/Microsoft, uploads to a Microsoft host) is off unless a user turns it on
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from mnistctl.api import BUILTIN, evaluate, evaluate_pictures, export, load, train, tune
    from mnistctl.config import DataConfig, ModelConfig, TrainConfig
    from mnistctl.errors import MnistctlError
    from mnistctl.inference.classifier import Classifier, Prediction
    from mnistctl.inference.evaluation import Evaluation
    from mnistctl.inference.files import FilePrediction
    from mnistctl.inference.pictures import PictureEvaluation
    from mnistctl.runfiles import RunHooks
    from mnistctl.training.run import Run

# name -> the module that defines it, imported on first use
_LAZY = {
    "train": "mnistctl.api", "load": "mnistctl.api", "evaluate": "mnistctl.api", "export": "mnistctl.api",
    "evaluate_pictures": "mnistctl.api", "PictureEvaluation": "mnistctl.inference.pictures", "tune": "mnistctl.api",
    "BUILTIN": "mnistctl.api",
    "Run": "mnistctl.training.run", "RunHooks": "mnistctl.runfiles",
    "Classifier": "mnistctl.inference.classifier", "Prediction": "mnistctl.inference.classifier",
    "FilePrediction": "mnistctl.inference.files", "Evaluation": "mnistctl.inference.evaluation",
    "TrainConfig": "mnistctl.config", "ModelConfig": "mnistctl.config", "DataConfig": "mnistctl.config",
    "MnistctlError": "mnistctl.errors",
}

__all__ = [  # _LAZY's names (a test checks that they agree)
    "BUILTIN", "Classifier", "DataConfig", "Evaluation", "FilePrediction", "MnistctlError", "ModelConfig",
    "PictureEvaluation", "Prediction", "Run", "RunHooks", "TrainConfig", "__version__", "evaluate",
    "evaluate_pictures", "export", "load", "train", "tune",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mnistctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
