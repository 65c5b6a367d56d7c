"""mnistctl's ONNX models: what they take, what they give, what they say about themselves.

An exported model takes ``pixels``: uint8 ``[N, 1, 28, 28]``, 0-255, light ink on black as MNIST
stores digits (the normalisation is inside the graph), with a dynamic batch dimension N. It gives
``logits`` and ``probabilities`` (float32 ``[N, K]``). Its metadata (``metadata_props``) carries the
class names, data set, model and data configs, epoch, test accuracy and mnistctl version, so a model
file is all a runtime needs.

Writing needs torch, onnx and onnxscript (``export_onnx``); reading the metadata needs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistctl import __version__
from mnistctl.config import DataConfig, ModelConfig
from mnistctl.errors import CheckpointError, ConfigError

FORMAT = "mnistctl-onnx"
FORMAT_VERSION = 1
INPUT, OUTPUTS = "pixels", ("logits", "probabilities")
OPSET = 18
PRETRAINED_ONNX = "mnist-best.onnx"


def pretrained_onnx_path() -> Path:
    """The built-in model as ONNX, shipped beside the checkpoint it was exported from."""
    from importlib.resources import files

    return Path(str(files("mnistctl") / "pretrained" / PRETRAINED_ONNX))


@dataclass(frozen=True)
class OnnxMetadata:
    classes: tuple[str, ...]
    model_config: ModelConfig
    data_config: DataConfig
    epoch: int
    test_accuracy: float | None
    mnistctl_version: str

    def to_props(self) -> dict[str, str]:
        return {"format": FORMAT, "format_version": str(FORMAT_VERSION), "mnistctl_version": self.mnistctl_version,
                "dataset": self.data_config.dataset, "classes": json.dumps(list(self.classes)),
                "model_config": json.dumps(self.model_config.to_dict()),
                "data_config": json.dumps(self.data_config.to_dict()), "epoch": str(self.epoch),
                "test_accuracy": "" if self.test_accuracy is None else repr(self.test_accuracy),
                "input": f"{INPUT}: uint8 [N, 1, 28, 28], 0-255 (normalised inside the graph)",
                "outputs": "logits, probabilities: float32 [N, classes]"}


def read_metadata(props: dict[str, str], source: str) -> OnnxMetadata:
    """Check and parse an exported model's metadata; CheckpointError when it is not mnistctl's."""
    if props.get("format") != FORMAT:
        raise CheckpointError(f"{source} is an ONNX model but not one exported by mnistctl (no '{FORMAT}' "
                              "metadata): export it with `mnistctl export CHECKPOINT -o model.onnx`")
    if props.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{source} has mnistctl ONNX format version {props.get('format_version')}, "
                              f"this mnistctl ({__version__}) reads version {FORMAT_VERSION}: upgrade mnistctl")
    try:
        classes = json.loads(props["classes"])
        model_cfg = ModelConfig.from_dict(json.loads(props["model_config"]), "its model configuration")
        data_cfg = DataConfig.from_dict(json.loads(props["data_config"]), "its data configuration")
        epoch = int(props.get("epoch") or 0)
        accuracy = float(props["test_accuracy"]) if props.get("test_accuracy") else None
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source} has damaged mnistctl metadata ({exc})") from None
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)
            and len(classes) == model_cfg.num_classes):
        raise CheckpointError(f"{source} has damaged mnistctl metadata (class names)")
    return OnnxMetadata(tuple(classes), model_cfg, data_cfg, epoch, accuracy,
                        props.get("mnistctl_version", "unknown"))


def check_self_contained(path: Path, source: str) -> None:
    """Refuse an ONNX file whose tensors live in other files (ONNX "external data"): a model
    someone sends must not make mnistctl read files beside it, or elsewhere. Needs the onnx
    package; without it ONNX Runtime's own rule applies (external files only inside the model's
    directory)."""
    try:
        import onnx
    except ImportError:
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors
        raise CheckpointError(f"{source} is not a readable ONNX model ({str(exc).splitlines()[0][:100]})") from None

    def tensors(graph: Any) -> Any:
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from tensors(sub)

    external = [t.name for t in tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise CheckpointError(f"{source} keeps tensors in other files ({', '.join(external[:3])}): mnistctl "
                              "runs self-contained models only; export it again with `mnistctl export`")


def export_onnx(ckpt: Any, output: str | Path, test_accuracy: float | None = None, *, members: list[Any] | None = None
                ) -> Path:
    """Write ``ckpt``'s network as an ONNX model with PyTorch's exporter (``torch.onnx.export``),
    atomically. Needs onnx and onnxscript (``pip install 'mnistctl[onnx]'``).

    With ``members`` (checkpoints of the same classes), one graph runs them all and averages their
    probabilities (an ensemble; ``logits`` are the logarithms of the averages)."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise ConfigError("exporting to ONNX needs onnx and onnxscript: pip install 'mnistctl[onnx]'") from None
    import contextlib
    import io
    import warnings

    import torch

    from mnistctl.fsutil import atomic_path

    class WithProbabilities(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.net(pixels)
            return logits, torch.softmax(logits, dim=1)

    class Averaged(torch.nn.Module):
        def __init__(self, nets: list[torch.nn.Module]):
            super().__init__()
            self.nets = torch.nn.ModuleList(nets)

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs = torch.stack([torch.softmax(net(pixels), dim=1) for net in self.nets]).mean(0)
            return torch.log(probs.clamp_min(1e-12)), probs

    members = members or [ckpt]
    model = (WithProbabilities(ckpt.build_model()) if len(members) == 1
             else Averaged([m.build_model() for m in members])).eval()
    example = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    buffer = io.BytesIO()
    # the exporter prints progress lines and warnings: keep them out of mnistctl's output
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=[INPUT], output_names=list(OUTPUTS),
                                    dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}}, opset_version=OPSET,
                                    dynamo=True, verbose=False)
        assert program is not None  # the dynamo exporter returns its program
        program.save(buffer)  # type: ignore[arg-type]  # a binary file object works as well as a path
    proto = onnx.load_from_string(buffer.getvalue())
    meta = OnnxMetadata(tuple(ckpt.classes), ckpt.model_config, ckpt.data_config, ckpt.epoch,
                        test_accuracy if test_accuracy is not None else ckpt.test_accuracy, __version__)
    props = meta.to_props()
    if len(members) > 1:
        props["ensemble"] = json.dumps([m.source for m in members])
    onnx.helper.set_model_props(proto, props)
    what = f"an ensemble of {len(members)} CNNs" if len(members) > 1 else f"nf={ckpt.model_config.nf} CNN"
    proto.doc_string = f"mnistctl {__version__}: {what} for {ckpt.dataset}"
    onnx.checker.check_model(proto)
    output = Path(output)
    with atomic_path(output) as tmp:
        onnx.save(proto, str(tmp))
    return output

