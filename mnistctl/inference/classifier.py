"""Array-first inference: classify a batch of 28x28 digits held in memory.

    from mnistctl.inference.classifier import load_classifier, prepare_image
    clf = load_classifier()                       # the built-in model; or "best.pt", "model.onnx"
    x = prepare_image("five.png")                 # path, bytes, stream or PIL image -> 28x28 uint8
    [p] = clf.classify(x[None])                   # a batch [N, 28, 28] of 0-255 pixels
    p.label, p.confidence, p.top(3)

Every front end (the CLI's ``predict``, a web server, a notebook) goes through ``Classifier``:
the same preprocessing, the same model, the same numbers. ``mnistctl.inference.files`` walks files on top.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnistctl.config import INFERENCE_BATCH, DataConfig, ModelConfig
from mnistctl.errors import CheckpointError, ConfigError, MnistctlError
from mnistctl.images.fit import at_width, widen
from mnistctl.images.prepare import ImageSource, prepare_image
from mnistctl.inference.metrics import softmax

if TYPE_CHECKING:
    from mnistctl.checkpoint import Checkpoint
    from mnistctl.inference.files import FilePrediction
    from mnistctl.inference.numbers import NumberReading

__all__ = ["Classifier", "Ensemble", "OnnxClassifier", "Prediction", "TorchClassifier", "load_classifier",
           "prepare_image", "ImageSource"]


MAX_BATCH = 100_000  # images per forward pass at most (100,000 28x28 inputs: about 300 MB as float32)
UNSURE_BELOW = 0.8  # a prediction whose probability is lower is flagged as unsure
# ... and one of people's pictures when its ink is narrower than this (width over height) and, shown at this
# width, it reads as another digit: a condensed hand's 4 or 8 that the looks read as a sure 1. The widest aspect
# whose cost on people-style drawings of validation digits is at most half a point of unsure answers (0.4: +0.15,
# 0.45: +0.35, 0.5: +0.9 points); with it (and the looks at 0.985) the writer-shift check's mistakes marked went
# from 14 to 24 of 26 for a model trained with other hands (benchmarks/writers.py, its check half)
NARROW_BELOW = 0.45
# ... or when either of its two looks gives the choice less than this: the smallest threshold that, with the
# narrow test, marks two thirds of the built-in model's mistakes on the writer-shift check half at full size and
# as 8x8 scans, and on MNIST validation digits as 8x8 scans (23 of 27, 42 of 57, 32 of 48; docs/design-notes.md,
# "The night's round"); MNIST's own digits are read once and keep UNSURE_BELOW alone
LOOKS_BELOW = 0.95


@dataclass(frozen=True)
class Prediction:
    """One image's class probabilities and the most likely class. ``unsure`` when the model gives
    its choice less than ``UNSURE_BELOW`` (0.8): on the MNIST test set that flags 0.4% of the digits,
    about 40% of the built-in model's mistakes among them. A picture read with two looks
    (``Classifier.classify``) is unsure too when either look gives the choice less than
    ``LOOKS_BELOW`` (people's writing that the model half-knows), or when it is narrow and reads as
    another digit at a usual width (``wide``; docs/design-notes.md, "Unsure under writer shift" and
    "Narrow hands")."""

    index: int  # the predicted class index
    label: str  # its name
    confidence: float  # its probability
    probabilities: tuple[float, ...]
    classes: tuple[str, ...]
    least: float | None = None  # the lower of the two looks' probabilities of the choice; None: read once
    wide: int | None = None  # a narrow digit: the class it reads as at a usual width (None: not narrow, or read once)

    @property
    def unsure(self) -> bool:
        return self.doubt is not None

    @property
    def doubt(self) -> str | None:
        """Why it is unsure, in a few words (None when it is not): the unsure rules, in order."""
        if self.confidence < UNSURE_BELOW:
            return "low confidence"
        if self.least is not None and self.least < LOOKS_BELOW:
            return f"a look at it is only {self.least:.1%} sure"
        if self.wide is not None and self.wide != self.index:
            return f"it is narrow, and at a usual width it reads as {self.classes[self.wide]}"
        return None

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {"prediction": self.label, "confidence": self.confidence, "unsure": self.unsure,
                "top3": [{"class": c, "probability": p} for c, p in self.top(3)],
                "probabilities": dict(zip(self.classes, self.probabilities))}


def predictions(probs: np.ndarray, classes: tuple[str, ...], looks: np.ndarray | None = None,
                wide: np.ndarray | None = None) -> list[Prediction]:
    """Predictions from class probabilities ``[N, K]``; ``looks`` ``[N, 2, K]``: each of two looks'
    probabilities (NaN rows for an image read once); ``wide`` ``[N]``: the class a narrow digit
    reads as at a usual width (-1: not narrow, or read once)."""
    idx = probs.argmax(1)
    least = [None] * len(idx) if looks is None else \
        [None if np.isnan(look[0, 0]) else float(look[:, i].min()) for i, look in zip(idx, looks)]
    wider = [None] * len(idx) if wide is None else [None if w < 0 else int(w) for w in wide]
    return [Prediction(int(i), classes[int(i)], float(p[i]), tuple(float(v) for v in p), classes, low, w)
            for i, p, low, w in zip(idx, probs, least, wider)]


class Classifier:
    """A trained model ready to classify 0-255 digit images ``[N, 28, 28]`` (uint8 arrays).

    Two backends share this interface: ``TorchClassifier`` (a checkpoint run by PyTorch) and
    ``OnnxClassifier`` (an exported model run by ONNX Runtime, without importing torch).
    """

    backend = ""
    source: str  # where the model came from, for messages
    classes: tuple[str, ...]
    model_config: ModelConfig
    data_config: DataConfig
    epoch: int | None  # None for an ensemble
    test_accuracy: float | None

    @property
    def dataset(self) -> str:
        return self.data_config.dataset

    @property
    def nf(self) -> int:
        return self.model_config.nf

    def logits(self, images: Any) -> np.ndarray:
        """Logits ``[N, K]`` (float32) for ``images`` ``[N, 28, 28]`` of 0-255 pixels."""
        raise NotImplementedError

    def probabilities(self, images: Any) -> np.ndarray:
        """Class probabilities ``[N, K]`` (float32)."""
        return softmax(self.logits(images)).astype(np.float32)

    def classify(self, images: Any, redrawn: Sequence[bool] | np.ndarray | None = None) -> list[Prediction]:
        """Predictions for ``images`` ``[N, 28, 28]``. ``redrawn`` marks those that preprocessing made
        from people's pictures (``Prepared.redrawn``): each is read twice, as prepared and with its
        strokes half a pixel wider (``images.fit.widen``), and the two probabilities averaged -- on
        three practice corpora of people-style drawings of validation digits this made 19-77% fewer
        mistakes (docs/design-notes.md: "Two looks"). A narrow one is also read at a usual width
        (``images.fit.at_width``), only to doubt the answer when that reading differs. An MNIST digit
        given as it is is read once."""
        if redrawn is None or not np.any(redrawn):
            return predictions(self._finite(self.probabilities(images)), self.classes)
        batch = _as_batch(images)
        mask = np.asarray(redrawn, bool)
        if mask.shape != (len(batch),):
            raise MnistctlError(f"redrawn marks {mask.size} images, but the batch holds {len(batch)}")
        probs = np.array(self.probabilities(batch), np.float32)  # a copy that can be written
        looks = np.full((len(batch), 2, probs.shape[1]), np.nan, np.float32)
        looks[mask, 0], looks[mask, 1] = probs[mask], self.probabilities(widen(batch[mask]))
        probs[mask] = looks[mask].mean(1)
        wide = np.full(len(batch), -1)
        stretched, narrow = at_width(batch[mask], NARROW_BELOW)
        if narrow.any():
            wide[np.flatnonzero(mask)[narrow]] = self.probabilities(stretched[narrow]).argmax(1)
        return predictions(self._finite(probs), self.classes, looks, wide)

    def _finite(self, probs: np.ndarray) -> np.ndarray:
        """``probs``, unless the model gave something that is not a number (its weights hold NaN or
        infinity): then a CheckpointError, never a prediction (nor a NaN in JSON)."""
        if not np.isfinite(probs).all():
            raise CheckpointError(f"{self.source} gives outputs that are not numbers (NaN or infinity): its "
                                  "weights are damaged; train or export it again")
        return probs

    def predict(self, inputs: Any, preprocess: bool = True, numbers: str = "auto") -> list[FilePrediction]:
        """Read digits: ``inputs`` is an array of 0-255 pixels (one digit ``[28, 28]`` or a batch
        ``[N, 28, 28]``, numpy or torch, read as it is), or pictures -- one or a list of paths,
        bytes, streams or PIL images -- each prepared as ``mnistctl predict`` prepares it (made to
        look like an MNIST digit; ``preprocess=False`` only resizes). One reading per picture, with
        its ``prediction``, whether it is ``unsure`` and why (``reasons``); a picture that cannot be
        read has its ``error`` instead. A picture found to hold several digits (``numbers="auto"``;
        "always": read every picture as a number; "never": each as one digit) also has its
        ``number`` reading (``text`` is the answer either way)."""
        from mnistctl.inference.files import FilePrediction, predict_images

        if hasattr(inputs, "shape") and not hasattr(inputs, "getpixel"):  # an array, not a PIL image
            batch = _as_batch(inputs)
            return [FilePrediction(f"[{i}]", p, image=image)
                    for i, (p, image) in enumerate(zip(self.classify(batch), batch))]
        pictures = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        return predict_images(pictures, self, preprocess, _numbers(numbers))

    def read_number(self, picture: Any, digits: int | None = None) -> NumberReading:
        """Read the number in a picture (a path, bytes, a stream or a PIL image): its digits found
        left to right, each prepared and read as ``predict`` reads one digit. ``digits``: how many
        there are, when known. The reading's ``number`` keeps leading zeros; ``digits`` holds each
        digit's box and prediction; ``unsure`` and ``reasons`` say whether to doubt it."""
        from mnistctl.inference.numbers import read_number

        name = str(picture) if isinstance(picture, (str, Path)) else "image"
        return read_number(self, picture, name, digits)


class TorchClassifier(Classifier):
    backend = "pytorch"

    def __init__(self, checkpoint: Checkpoint, device: str | Any = "cpu", batch_size: int = INFERENCE_BATCH):
        from mnistctl import devices as accel

        self.checkpoint = checkpoint
        self.device = accel.resolve_device(device) if isinstance(device, str) else device
        self.batch_size = batch_size
        self.model = accel.prepare_model(checkpoint.build_model(), self.device)
        self.source = checkpoint.source
        self.classes = tuple(checkpoint.classes)
        self.model_config, self.data_config = checkpoint.model_config, checkpoint.data_config
        self.epoch, self.test_accuracy = checkpoint.epoch, checkpoint.test_accuracy

    def logits(self, images: Any) -> np.ndarray:
        import torch

        from mnistctl.model import predict_logits

        return predict_logits(self.model, torch.from_numpy(_as_batch(images)), self.batch_size, self.device).numpy()

    def probabilities(self, images: Any) -> np.ndarray:
        import torch

        return torch.softmax(torch.from_numpy(self.logits(images)), dim=1).numpy()


class OnnxClassifier(Classifier):
    """An exported model (``mnistctl export -o model.onnx``) run by ONNX Runtime on the CPU."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, label: str | None = None, batch_size: int = INFERENCE_BATCH, *,
                 trusted: bool = False, threads: int | None = None):
        from mnistctl.inference.onnx_format import check_self_contained, read_metadata

        try:
            import onnxruntime as ort

            if os.environ.get("ORT_DISABLE_TELEMETRY") == "1":  # set by mnistctl/__init__ unless a user chose
                ort.disable_telemetry_events()
        except ImportError:
            raise CheckpointError(f"{path} is an ONNX model, and running it needs onnxruntime: "
                                  "pip install 'mnistctl[onnx]'") from None
        path = Path(path)
        self.source = label or str(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} " + ("does not exist" if not path.exists() else "is not a file"))
        if not trusted:  # the shipped model is known to be self-contained: no onnx import on that start-up path
            check_self_contained(path, self.source)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr
        if threads is not None:  # several processes share the cores (serve --workers): each runs on its share
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (pybind) error types for unreadable files
            raise CheckpointError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:120]})") from None
        meta = read_metadata(self.session.get_modelmeta().custom_metadata_map, self.source)
        inputs = {i.name: (i.shape[1:], i.type) for i in self.session.get_inputs()}
        outputs = {o.name: o.shape[1:] for o in self.session.get_outputs()}
        if inputs.get("pixels") != ([1, 28, 28], "tensor(uint8)") or not {"logits", "probabilities"} <= set(outputs):
            raise CheckpointError(f"{self.source} does not take uint8 pixels [N, 1, 28, 28] and give logits and "
                                  "probabilities, as models written by `mnistctl export` do")
        widths = {outputs["logits"][0], outputs["probabilities"][0]} if outputs["logits"] else set()
        if widths != {len(meta.classes)}:
            raise CheckpointError(f"{self.source} gives {' and '.join(map(str, sorted(widths, key=str))) or 'unsized'} "
                                  f"outputs per image, but its metadata names {len(meta.classes)} classes")
        self.classes, self.model_config, self.data_config = meta.classes, meta.model_config, meta.data_config
        self.epoch, self.test_accuracy = meta.epoch, meta.test_accuracy
        self.batch_size = batch_size

    def _run(self, images: Any, output: str) -> np.ndarray:
        batch = _as_batch(images)[:, None]
        k = len(self.classes)
        try:
            parts = [self.session.run([output], {"pixels": batch[i:i + self.batch_size]})[0]
                     for i in range(0, len(batch), self.batch_size)]
        except Exception as exc:  # onnxruntime's own error types: an allocation or an operator that failed
            raise CheckpointError(f"{self.source} failed on ONNX Runtime ({str(exc).splitlines()[0][:160]})") from None
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, k), np.float32)

    def logits(self, images: Any) -> np.ndarray:
        return self._run(images, "logits")

    def probabilities(self, images: Any) -> np.ndarray:
        return self._run(images, "probabilities")


class Ensemble(Classifier):
    """Several models of the same classes voting together: their class probabilities averaged
    (``logits`` are the logarithms of the averages, so the cross-entropy scored is the ensemble's)."""

    def __init__(self, members: list[Classifier]):
        if len(members) < 2:
            raise MnistctlError("an ensemble needs at least two models")
        first = members[0]
        for other in members[1:]:
            if other.dataset != first.dataset or tuple(other.classes) != tuple(first.classes):
                raise CheckpointError(f"{other.source} ({other.dataset}) and {first.source} ({first.dataset}) do not "
                                      "predict the same classes: an ensemble needs models of one data set")
        self.members = members
        self.source = f"ensemble of {len(members)} models ({', '.join(m.source for m in members)})"
        self.backend = "+".join(dict.fromkeys(m.backend for m in members))
        self.classes, self.model_config, self.data_config = first.classes, first.model_config, first.data_config
        self.epoch, self.test_accuracy = None, None

    @property
    def nf(self) -> int | str:  # type: ignore[override]
        widths = list(dict.fromkeys(m.nf for m in self.members))
        return widths[0] if len(widths) == 1 else "/".join(map(str, widths))

    def probabilities(self, images: Any) -> np.ndarray:
        batch = _as_batch(images)
        return np.mean([m.probabilities(batch) for m in self.members], axis=0).astype(np.float32)

    def logits(self, images: Any) -> np.ndarray:
        return np.log(np.maximum(self.probabilities(images), 1e-12)).astype(np.float32)


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


def has_onnxruntime() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def model_files(paths: Sequence[str | Path]) -> list[Path]:
    """The distinct model files named, in order: the same file named twice counts once."""
    return list(dict.fromkeys(Path(p) for p in paths))


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a number of images a forward pass may take (1 to MAX_BATCH)."""
    if type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH:
        raise ConfigError.invalid("batch_size", f"must be a whole number from 1 to {MAX_BATCH:,}, got {batch_size!r}")
    return batch_size


def load_classifier(checkpoint: str | Path | Sequence[str | Path] | None = None, device: str | Any = "cpu",
                    batch_size: int = INFERENCE_BATCH, threads: int | None = None) -> Classifier:
    """A Classifier for a model file, or for the built-in model when ``checkpoint`` is None; for
    several files, their ``Ensemble`` (probabilities averaged).

    ``.onnx`` files run on ONNX Runtime, checkpoints on PyTorch. The built-in model runs on ONNX
    Runtime when it is installed and ``device`` is ``cpu`` (the fast path: no torch import), on
    PyTorch otherwise. ``threads``: CPU threads a model runs on (None: the runtime's choice; on
    PyTorch the setting is the process's).
    """
    from mnistctl.inference.onnx_format import PRETRAINED_ONNX, pretrained_onnx_path

    check_batch_size(batch_size)
    if checkpoint is not None and not isinstance(checkpoint, (str, Path)):
        files = model_files(checkpoint)
        if len(files) > 1:
            return Ensemble([load_classifier(p, device, batch_size, threads) for p in files])
        checkpoint = files[0] if files else None

    if checkpoint is not None and Path(checkpoint).suffix.lower() == ".onnx":
        return OnnxClassifier(checkpoint, batch_size=batch_size, threads=threads)
    if checkpoint is None and device == "cpu" and has_onnxruntime() and pretrained_onnx_path().is_file():
        return OnnxClassifier(pretrained_onnx_path(), f"built-in model ({PRETRAINED_ONNX})", batch_size, trusted=True,
                              threads=threads)
    from mnistctl.checkpoint import load_or_pretrained

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return TorchClassifier(load_or_pretrained(checkpoint), device, batch_size)


def _numbers(value: str) -> Any:
    """``numbers`` checked: one of ``inference.files.Numbers`` (auto, always, never)."""
    from typing import get_args

    from mnistctl.errors import one_of
    from mnistctl.inference.files import Numbers

    one_of("numbers", value, get_args(Numbers))
    return value
