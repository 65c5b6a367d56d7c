"""Take a model out of a run: as ONNX (for ONNX Runtime and other runtimes) or as an
inference-only mnistctl checkpoint; either records the model's test accuracy."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mnistctl.errors import CheckpointError, ConfigError, DataError, one_of
from mnistctl.recipes import EXPORT_FORMATS

FORMATS = EXPORT_FORMATS


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    test_accuracy: float | None
    members: int = 1  # models averaged in it
    temperatures: tuple[float, ...] = ()  # fitted by --calibrate, one per model

    @property
    def description(self) -> str:
        ensemble = f"an ensemble of {self.members} models, " if self.members > 1 else ""
        return f"ONNX model ({ensemble}uint8 pixels in, logits and probabilities out)" if self.format == "onnx" \
            else "inference-only mnistctl checkpoint"


def format_for(output: Path, fmt: str | None = None) -> str:
    """The export format: ``fmt`` when given (the extension must agree), else from the extension."""
    if output.is_dir():
        raise ConfigError.invalid("output", f"{output} is a directory: give a file name such as "
                                            f"{output / 'model.onnx'}", label="the output")
    suffix = output.suffix.lower()
    by_suffix = next((name for name, suffixes in FORMATS.items() if suffix in suffixes), None)
    if fmt is None:
        if by_suffix is None:
            raise ConfigError.invalid("output", f"{output} has no known extension: name it .onnx (ONNX) or .pt "
                                                "(mnistctl checkpoint), or choose the format", "the output file")
        return by_suffix
    one_of("format", fmt, FORMATS)
    if by_suffix != fmt:
        wanted = FORMATS[fmt][0]
        raise ConfigError.invalid("output", f"{output} does not match the {fmt} format: name it "
                                            f"{output.with_suffix(wanted).name}, or choose the format its "
                                            "extension implies", "the output file")
    return fmt


def export_model(source: str | Path | Sequence[str | Path], output: str | Path, fmt: str | None = None,
                 data_dir: str | Path | None = None, calibrate: bool = False) -> Exported:
    """Export the checkpoint ``source`` to ``output`` (atomically), measuring its test accuracy
    first when the test set is downloaded. Several checkpoints (of the same classes) export to
    one ONNX model that averages their probabilities. With ``calibrate`` each model first gets
    the temperature that fits its confidences to the validation split (needs the data set)."""
    from mnistctl.checkpoint import load
    from mnistctl.inference.classifier import Classifier, Ensemble, TorchClassifier, model_files
    from mnistctl.inference.evaluation import calibrate as calibrated
    from mnistctl.inference.evaluation import evaluate

    output = Path(output)
    fmt = format_for(output, fmt)
    sources = model_files([source] if isinstance(source, (str, Path)) else list(source))
    for path in sources:
        if path.suffix.lower() == ".onnx":
            raise ConfigError(f"{path} is already an ONNX model: export from the checkpoint it was made from")
    if len(sources) > 1 and fmt != "onnx":
        raise ConfigError.invalid("output", f"{output}: several checkpoints export as one ONNX model only: name it "
                                            f"{output.with_suffix('.onnx').name}", "the output file")
    # by its mode, not os.access: root may write anything, but a file marked read-only is not ours to replace
    if output.is_file() and not (output.stat().st_mode & 0o222 and os.access(output, os.W_OK)):
        raise ConfigError.invalid("output", f"{output} is read-only: make it writable or remove it first, or "
                                            "choose another name", "the output file")
    checkpoints = [load(path) for path in sources]
    for ckpt in checkpoints:
        broken = [k for k, v in ckpt.weights.items() if v.is_floating_point() and not bool(v.isfinite().all())]
        if broken:
            raise CheckpointError(f"{ckpt.source} holds weights that are not numbers (NaN or infinity, in "
                                  f"{broken[0]}): a model that gives no answers is not exported")
    if calibrate:
        checkpoints = [calibrated(c, "val", data_dir) for c in checkpoints]
    classifiers: list[Classifier] = [TorchClassifier(c) for c in checkpoints]
    clf = classifiers[0] if len(classifiers) == 1 else Ensemble(classifiers)  # refuses models of other classes
    accuracy: float | None
    try:
        accuracy = evaluate(clf, "test", data_dir).report.accuracy
    except DataError:
        accuracy = checkpoints[0].test_accuracy if len(checkpoints) == 1 else None
    if fmt == "onnx":
        from mnistctl.inference.onnx_format import export_onnx

        export_onnx(checkpoints[0], output, accuracy, members=checkpoints)
    else:
        checkpoints[0].inference_only(accuracy).save(output)
    temperatures = tuple(c.model_config.temperature for c in checkpoints) if calibrate else ()
    return Exported(output, fmt, accuracy, len(checkpoints), temperatures)
