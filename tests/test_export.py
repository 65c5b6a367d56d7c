"""`export`: real ONNX models with metadata, parity with PyTorch, and the torch-free fast path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, make_checkpoint
from mnistctl import __version__, checkpoint
from mnistctl.cli.commands import app
from mnistctl.config import DataConfig
from mnistctl.data.splits import load_split
from mnistctl.inference.classifier import OnnxClassifier, TorchClassifier, load_classifier
from mnistctl.inference.files import predict_files
from mnistctl.inference.onnx_format import export_onnx, pretrained_onnx_path
from people import make_people_set

runner = CliRunner()
ASSETS = REPO / "assets"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """A small checkpoint and its ONNX export (made with the real exporter)."""
    d = tmp_path_factory.mktemp("small")
    ckpt = make_checkpoint(nf=8, resumable=True)
    path = ckpt.save(d / "best.pt")
    export_onnx(ckpt, d / "model.onnx", test_accuracy=0.5)
    return path, d / "model.onnx"


@pytest.mark.slow
def test_onnx_model_takes_uint8_pixels_and_says_what_it_is(small):
    _, onnx_path = small
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    [inp] = proto.graph.input
    assert inp.name == "pixels" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # dynamic batch
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)] and meta["dataset"] == "mnist"
    assert meta["mnistctl_version"] == __version__ and float(meta["test_accuracy"]) == 0.5
    assert json.loads(meta["model_config"])["nf"] == 8


@pytest.mark.parametrize("n", [1, 1000])
def test_onnx_runtime_agrees_with_pytorch(small, n):
    ckpt_path, onnx_path = small
    pixels = np.random.default_rng(n).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"pixels": pixels})
    assert logits.shape == probs.shape == (n, 10)
    with torch.inference_mode():
        expected = checkpoint.load(ckpt_path).build_model()(torch.from_numpy(pixels))
    assert np.abs(logits - expected.numpy()).max() < 1e-4
    assert np.abs(probs - torch.softmax(expected, 1).numpy()).max() < 1e-5
    assert (probs.argmax(1) == expected.argmax(1).numpy()).all()


@pytest.mark.slow
def test_export_command_chooses_the_format_and_refuses_a_mismatch(small, tmp_path):
    ckpt_path, _ = small
    no_data = ["--data-dir", str(tmp_path / "none")]
    out = runner.invoke(app, ["export", str(ckpt_path), "-o", str(tmp_path / "m.onnx"), *no_data])
    assert out.exit_code == 0, out.output
    assert "ONNX model" in out.stdout and (tmp_path / "m.onnx").stat().st_size > 10_000
    clf = load_classifier(tmp_path / "m.onnx")
    assert isinstance(clf, OnnxClassifier) and clf.classes == tuple(str(i) for i in range(10))
    out = runner.invoke(app, ["export", str(ckpt_path), "-o", str(tmp_path / "m.pt"), *no_data])
    assert out.exit_code == 0 and "inference-only" in out.stdout
    assert not checkpoint.load(tmp_path / "m.pt").resumable
    for args, words in [(["-o", str(tmp_path / "x.pt"), "--format", "onnx"], "does not match the onnx format"),
                        (["-o", str(tmp_path / "x.onnx"), "--format", "mnistctl"], "does not match the mnistctl"),
                        (["-o", str(tmp_path / "x.txt")], "no known extension")]:
        out = runner.invoke(app, ["export", str(ckpt_path), *args, *no_data])
        assert out.exit_code == 1 and words in out.stderr and out.stderr.startswith("Error: --output"), out.stderr
        assert not list(tmp_path.glob("x.*"))
    out = runner.invoke(app, ["export", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "y.onnx")])
    assert out.exit_code == 1 and "already an ONNX model" in out.stderr


def test_bad_onnx_files_give_one_clear_line(tmp_path):
    (tmp_path / "garbage.onnx").write_bytes(b"not a model at all")
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    png = tmp_path / "one.png"
    png.write_bytes((ASSETS / "digit-4-paint.png").read_bytes())
    for path, words in [(tmp_path / "garbage.onnx", "not a readable ONNX model"),
                        (foreign, "not one exported by mnistctl"), (tmp_path / "nope.onnx", "does not exist")]:
        out = runner.invoke(app, ["predict", "-c", str(path), str(png)])
        assert out.exit_code == 1 and words in out.stderr and "Traceback" not in out.output, out.output
        assert len(out.stderr.strip().splitlines()) == 1


def test_the_built_in_model_ships_as_onnx_too():
    path = pretrained_onnx_path()
    assert path.is_file() and path.stat().st_size <= 2_000_000
    assert checkpoint.pretrained_path().stat().st_size <= 2_000_000
    clf = load_classifier()
    assert isinstance(clf, OnnxClassifier) and clf.source == "built-in model (mnist-best.onnx)"
    assert clf.test_accuracy >= 0.996 and clf.dataset == "mnist" and clf.nf == 40
    assert isinstance(load_classifier(device="auto"), TorchClassifier)  # PyTorch on request


def _without_torch(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter; stderr ends with whether torch was imported, and the exit code."""
    code = ("import sys\nfrom mnistctl.cli.commands import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH', 'torch' in sys.modules, code, file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
def test_predict_with_onnx_never_imports_torch(tmp_path, small):
    _, onnx_path = small
    for extra in ([], ["-c", str(onnx_path)]):
        out = _without_torch("predict", "--json", *extra, str(ASSETS / "digit-7-photo.jpg"))
        assert "TORCH False 0" in out.stderr, out.stderr
        doc = json.loads(out.stdout)
        assert len(doc) == 1 and doc[0]["error"] is None
    assert doc[0]["model"] == str(onnx_path)


@pytest.mark.slow
@pytest.mark.realdata
def test_shipped_onnx_matches_pytorch_on_all_10000_test_images(mnist_data_dir):
    images, labels = load_split(DataConfig(), "test", mnist_data_dir)
    pixels = images.numpy()
    ours = OnnxClassifier(pretrained_onnx_path()).probabilities(pixels)
    theirs = TorchClassifier(checkpoint.load_or_pretrained(None)).probabilities(pixels)
    assert ours.shape == theirs.shape == (10000, 10)
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours.argmax(1) == labels.numpy()).mean() >= 0.995


@pytest.mark.slow
@pytest.mark.realdata
def test_evaluate_an_onnx_model_without_torch(mnist_data_dir):
    out = _without_torch("evaluate", "--json", "-c", str(pretrained_onnx_path()), "--data-dir", str(mnist_data_dir))
    assert "TORCH False 0" in out.stderr, out.stderr
    doc = json.loads(out.stdout)
    assert doc["backend"] == "onnxruntime" and doc["images"] == 10000 and doc["accuracy"] >= 0.995


@pytest.mark.slow
@pytest.mark.realdata
def test_onnx_and_pytorch_read_people_style_digits_alike(tmp_path, mnist_data_dir):
    images, labels = load_split(DataConfig(), "test", mnist_data_dir)
    pick = torch.randperm(10000, generator=torch.Generator().manual_seed(1))[:200]
    items = make_people_set(images[pick].numpy(), labels[pick].numpy(), tmp_path, seed=1)
    paths = [str(p) for p, _ in items]
    fast = predict_files(paths, OnnxClassifier(pretrained_onnx_path()))
    slow = predict_files(paths, TorchClassifier(checkpoint.load_or_pretrained(None)))
    assert [r.prediction.label for r in fast] == [r.prediction.label for r in slow]
    assert max(abs(a.prediction.confidence - b.prediction.confidence) for a, b in zip(fast, slow)) < 1e-4


# --- ensembles: several models' probabilities averaged ---------------------------------------------

@pytest.mark.slow
def test_an_ensemble_averages_its_members_and_exports_as_one_onnx_model(tmp_path):
    from dataclasses import replace

    from mnistctl.errors import CheckpointError
    from mnistctl.inference.classifier import Ensemble

    paths = [make_checkpoint(nf=4, seed=s).save(tmp_path / f"m{s}.pt") for s in (1, 2, 3)]
    members = [TorchClassifier(checkpoint.load(p)) for p in paths]
    ensemble = load_classifier([str(p) for p in paths])
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3 and ensemble.nf == 4
    x = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    mean = np.mean([m.probabilities(x) for m in members], axis=0)
    assert np.allclose(ensemble.probabilities(x), mean, atol=1e-6)
    assert np.allclose(torch.softmax(torch.from_numpy(ensemble.logits(x)), 1).numpy(), mean, atol=1e-5)
    assert [p.index for p in ensemble.classify(x)] == list(mean.argmax(1))
    assert load_classifier([paths[0], paths[0]]).__class__ is TorchClassifier  # the same file twice: one model

    # one ONNX graph runs the three and gives the same probabilities; its test accuracy needs data
    done = runner.invoke(app, ["export", *map(str, paths), "-o", str(tmp_path / "ens.onnx"),
                               "--data-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "an ensemble of 3 models" in " ".join(done.stdout.split())
    onnx_model = OnnxClassifier(tmp_path / "ens.onnx")
    assert np.allclose(onnx_model.probabilities(x), mean, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "ens.onnx")).metadata_props}
    assert json.loads(props["ensemble"]) == [str(p) for p in paths]
    refused = runner.invoke(app, ["export", *map(str, paths), "-o", str(tmp_path / "ens.pt")])
    assert refused.exit_code == 1 and "several checkpoints export as one ONNX model only" in refused.stderr

    # models of other classes cannot vote together: one clear line
    kmnist = checkpoint.load(paths[0])
    kmnist = replace(kmnist, data_config=DataConfig(dataset="kmnist"), dataset="kmnist",
                     classes=[f"k{i}" for i in range(10)])
    kmnist.save(tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match="do not predict the same classes"):
        load_classifier([paths[0], tmp_path / "k.pt"])
    mixed = runner.invoke(app, ["predict", str(ASSETS / "digit-4-paint.png"), "-c", str(paths[0]),
                                "-c", str(tmp_path / "k.pt")])
    assert mixed.exit_code == 1 and "an ensemble needs models of one data set" in " ".join(mixed.stderr.split())


def test_predict_and_evaluate_take_several_models(tmp_path, small):
    pt, onnx_path = small
    other = make_checkpoint(nf=8, seed=9).save(tmp_path / "other.pt")
    out = runner.invoke(app, ["predict", str(ASSETS / "digit-4-paint.png"), "-c", str(pt), "-c", str(other),
                              "-c", str(onnx_path), "--json"])
    assert out.exit_code == 0, out.output
    [row] = json.loads(out.stdout)
    assert row["model"].startswith("ensemble of 3 models") and sum(row["probabilities"].values()) == pytest.approx(1)
    table = runner.invoke(app, ["predict", str(ASSETS / "digit-4-paint.png"), "-c", str(pt), "-c", str(other)])
    assert table.exit_code == 0 and "Model: ensemble of 2 models" in " ".join(table.stdout.split())
    # evaluate: arguments and --checkpoint together name the members
    evaluated = runner.invoke(app, ["evaluate", str(pt), "-c", str(other), "--json", "--data-dir", str(tmp_path)])
    assert evaluated.exit_code == 1 and "mnistctl download" in evaluated.stderr  # no data here: one clear line


def test_fit_temperature_finds_the_temperature_the_labels_were_drawn_with():
    """Labels drawn from softmax(z / 0.5) are best explained by T = 0.5, those from softmax(z / 2)
    by T = 2; argmax-free, so it cannot pass by accident."""
    from mnistctl.inference.evaluation import fit_temperature

    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20000, 10)).astype(np.float32)
    for true_t in (0.5, 2.0):
        p = np.exp(z / true_t - (z / true_t).max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        labels = (p.cumsum(1) > rng.random((len(z), 1))).argmax(1)
        assert fit_temperature(z, labels) == pytest.approx(true_t, rel=0.05)


@pytest.mark.slow
@pytest.mark.realdata
def test_export_calibrate_fits_the_built_in_models_temperature_and_keeps_its_answers(tmp_path, mnist_data_dir):
    """The built-in model was trained with label smoothing (never more than about 90% sure) and
    exported with --calibrate. Undo its temperature, calibrate again: the same temperature, the
    same predictions, confident answers for clear digits; a checkpoint saved before temperatures
    existed (no such setting) loads as T = 1."""
    from dataclasses import replace

    shipped = checkpoint.load_or_pretrained(None)
    assert 0.3 < shipped.model_config.temperature < 0.8
    raw = replace(shipped, model_config=replace(shipped.model_config, temperature=1.0))
    raw.save(tmp_path / "raw.pt")
    payload = torch.load(tmp_path / "raw.pt", weights_only=True)
    del payload["model_config"]["temperature"]  # as an older mnistctl wrote it
    torch.save(payload, tmp_path / "old.pt")
    assert checkpoint.load(tmp_path / "old.pt").model_config.temperature == 1.0
    out = runner.invoke(app, ["export", str(tmp_path / "old.pt"), "-o", str(tmp_path / "cal.onnx"), "--calibrate",
                              "--data-dir", str(mnist_data_dir)])
    assert out.exit_code == 0, out.output
    assert f"temperature {shipped.model_config.temperature:g} fitted on the validation split" in out.stdout
    images = load_split(DataConfig(), "test", mnist_data_dir)[0][:500].numpy()
    before = TorchClassifier(checkpoint.load(tmp_path / "old.pt")).probabilities(images)
    after = OnnxClassifier(tmp_path / "cal.onnx").probabilities(images)
    assert (before.argmax(1) == after.argmax(1)).all()
    assert np.median(before.max(1)) < 0.93 < 0.99 < np.median(after.max(1))
