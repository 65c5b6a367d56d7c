"""Model, training engine, checkpoints and the train/evaluate/plot commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_fake_dataset
from mnistctl import checkpoint, engine
from mnistctl.cli import app
from mnistctl.data import DataConfig
from mnistctl.errors import CheckpointError, ConfigError, TrainingInterrupted
from mnistctl.model import ModelConfig, Net
from mnistctl.recipes import PRESETS

runner = CliRunner()
CPU = torch.device("cpu")


@pytest.fixture
def fake_data_dir(tmp_path) -> Path:
    """A data directory whose "mnist" is 600 random training and 100 test images."""
    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    for name, data in make_fake_dataset(n_train=600, n_test=100).items():
        (d / name).write_bytes(data)
    return tmp_path / "data"


# --- the network -------------------------------------------------------------------------

def test_network_shape_follows_the_original():
    model = Net(ModelConfig(nf=16))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1))]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 64, 3, 3)  # 28 -> 14 -> 7 -> 3
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert (dense[0].in_features, dense[0].out_features) == (576, 64)
    assert dense[-1].out_features == 10
    wide = [m for m in Net(ModelConfig(nf=32)).modules() if isinstance(m, torch.nn.Linear)]
    assert (wide[0].in_features, wide[0].out_features) == (1152, 128)


@pytest.mark.parametrize("make, option", [
    (lambda: ModelConfig(nf=0), "--nf"),
    (lambda: engine.TrainConfig(lr=0), "--lr"),
    (lambda: engine.TrainConfig(lr=-1e-3), "--lr"),
    (lambda: engine.TrainConfig(batch_size=0), "--batch-size"),
    (lambda: engine.TrainConfig(epochs=0), "--epochs"),
    (lambda: DataConfig(val_fraction=1.5), "--val-split"),
    (lambda: DataConfig(val_fraction=0.0), "--val-split"),
])
def test_invalid_settings_name_the_option(make, option):
    with pytest.raises(ConfigError, match=option):
        make()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_refused():
    with pytest.raises(ConfigError, match="--device cuda is not available"):
        engine.resolve_device("cuda")
    assert engine.resolve_device("auto").type in ("cpu", "mps")


@pytest.mark.parametrize("args, option", [
    (["--lr", "0"], "--lr"), (["--nf", "0"], "--nf"), (["--batch-size", "0"], "--batch-size"),
    (["--val-split", "1"], "--val-split"), (["--epochs", "0"], "--epochs"), (["--device", "cuda"], "--device"),
])
def test_cli_rejects_bad_options_before_any_work(tmp_path, args, option):
    if option == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", *args, "--run-dir", str(run_dir), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert option in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run_dir.exists()  # nothing was started


# --- training ----------------------------------------------------------------------------

SMALL = dict(model=ModelConfig(nf=4), data=DataConfig(val_fraction=0.2))


def _fit(run_dir, data_dir, epochs=2, **kw):
    cfg = engine.TrainConfig(epochs=epochs, batch_size=64, seed=5)
    return engine.fit(SMALL["model"], SMALL["data"], cfg, run_dir, CPU, data_dir, **kw)


def _weights(path):
    return checkpoint.load(path)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_timing(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in history]


def test_same_seed_gives_identical_runs(tmp_path, fake_data_dir):
    a = _fit(tmp_path / "a", fake_data_dir)
    b = _fit(tmp_path / "b", fake_data_dir)
    assert _strip_timing(a.history) == _strip_timing(b.history)
    assert _same(_weights(a.last_path), _weights(b.last_path))
    c = engine.fit(SMALL["model"], SMALL["data"], engine.TrainConfig(epochs=2, batch_size=64, seed=6),
                   tmp_path / "c", CPU, fake_data_dir)
    assert not _same(_weights(a.last_path), _weights(c.last_path))


class _CtrlCAt(engine.TrainCallbacks):
    def __init__(self, epoch: int, step: int):
        self.at = (epoch, step)
        self.epoch = 0

    def on_epoch_start(self, epoch, epochs, steps, start_step):
        self.epoch = epoch

    def on_batch(self, step, loss, images):
        if (self.epoch, step) == self.at:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, fake_data_dir):
    whole = _fit(tmp_path / "whole", fake_data_dir, epochs=3)
    with pytest.raises(TrainingInterrupted) as err:
        _fit(tmp_path / "cut", fake_data_dir, epochs=3, callbacks=_CtrlCAt(epoch=2, step=3))
    saved = checkpoint.load(err.value.checkpoint)
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 4)
    assert len(saved["history"]) == 1
    resumed = _fit(tmp_path / "cut", fake_data_dir, epochs=3, resume=saved)
    assert _same(_weights(whole.last_path), _weights(resumed.last_path))
    assert _strip_timing(whole.history) == _strip_timing(resumed.history)
    assert checkpoint.load(resumed.last_path)["optimizer"]["state"].keys() == \
        checkpoint.load(whole.last_path)["optimizer"]["state"].keys()


def test_checkpoint_is_self_describing(tmp_path, fake_data_dir):
    result = _fit(tmp_path / "run", fake_data_dir)
    ckpt = checkpoint.load(result.best_path)
    for key in ("model_config", "data_config", "train_config", "model", "optimizer", "scheduler", "epoch",
                "history", "dataset", "classes", "normalization", "mnistctl_version", "format_version"):
        assert key in ckpt, key
    assert ckpt["classes"] == [str(i) for i in range(10)] and ckpt["normalization"]["mean"] == 0.1307
    # the model rebuilt from the file alone predicts like the trained one
    model = checkpoint.build_model(ckpt)
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    norm = (0.1307, 0.3081)
    again = checkpoint.build_model(checkpoint.load(result.best_path))
    assert torch.equal(engine.predict_logits(model, x, norm), engine.predict_logits(again, x, norm))
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_a_new_run_never_overwrites_an_old_one(tmp_path, fake_data_dir):
    _fit(tmp_path / "run", fake_data_dir)
    with pytest.raises(ConfigError, match="--resume"):
        engine.check_run_dir(tmp_path / "run")


def test_crash_while_saving_keeps_the_old_checkpoint(tmp_path, fake_data_dir, monkeypatch):
    result = _fit(tmp_path / "run", fake_data_dir)
    before = result.best_path.read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save(result.best_path, {"anything": 1})
    assert result.best_path.read_bytes() == before
    assert [p.name for p in result.best_path.parent.iterdir() if p.name.endswith(".part")] == []


# --- bad checkpoints ---------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "mnistctl-checkpoint", "payload": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(evil)
    assert not marker.exists()
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(evil)])
    assert result.exit_code == 1 and "refused" in result.stderr and not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def _bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    future = tmp_path / "future.pt"
    torch.save({**torch.load(good, weights_only=True), "format_version": 99}, future)
    wrong_arch = tmp_path / "wrong_arch.pt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["model_config"]["nf"] = 8
    torch.save(ckpt, wrong_arch)
    return {
        "missing": (tmp_path / "nope.pt", "does not exist"),
        "truncated": (truncated, "not a readable checkpoint"),
        "garbage": (garbage, "not a readable checkpoint"),
        "empty": (empty, "not a readable checkpoint"),
        "foreign": (foreign, "not an mnistctl checkpoint"),
        "future": (future, "format version 99"),
        "wrong_arch": (wrong_arch, "do not fit the architecture"),
        "directory": (tmp_path, "is not a file"),
    }


def test_bad_checkpoints_give_one_clear_line(tmp_path, fake_data_dir):
    result = _fit(tmp_path / "run", fake_data_dir, epochs=1)
    for kind, (path, message) in _bad_checkpoints(tmp_path, result.best_path).items():
        out = runner.invoke(app, ["evaluate", "--checkpoint", str(path), "--data-dir", str(fake_data_dir)])
        assert out.exit_code == 1, kind
        assert message in out.stderr, (kind, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output, kind


# --- the commands --------------------------------------------------------------------------

def test_original_command_line_still_works(tmp_path, fake_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--lr", "0.01", "--batch-size", "64", "--nf", "32", "--epochs", "30",
                                 "--save-model", "--data-dir", str(fake_data_dir), "--name", "orig"])
    assert result.exit_code == 0, result.output
    saved = checkpoint.load(tmp_path / "mnist_cnn.pt")
    assert saved["model_config"]["nf"] == 32 and saved["epoch"] == 30 and len(saved["history"]) == 30
    assert saved["train_config"]["lr"] == 0.01 and saved["train_config"]["batch_size"] == 64
    run = tmp_path / "runs" / "orig"
    assert {p.name for p in run.iterdir()} == {"best.pt", "last.pt", "history.json", "loss.png"}
    assert "Best epoch" in result.stdout and "30" in result.stdout


def test_plot_several_runs_and_bad_input(tmp_path, fake_data_dir):
    a = _fit(tmp_path / "a", fake_data_dir)
    b = _fit(tmp_path / "b", fake_data_dir, epochs=3)
    out = tmp_path / "both.png"
    result = runner.invoke(app, ["plot", str(a.run_dir), str(b.last_path), str(b.run_dir / "history.json"),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000 and "3 runs" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["plot", str(bad)])
    assert result.exit_code == 1 and "not a mnistctl history file" in result.stderr
    result = runner.invoke(app, ["plot", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.realdata
def test_train_evaluate_plot_on_real_mnist(tmp_path, mnist_data_dir, monkeypatch):
    """CI's end-to-end check: a short real training run, far above chance."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--nf", "8", "--epochs", "1", "--batch-size", "128",
                                 "--data-dir", str(mnist_data_dir), "--name", "ci"])
    assert result.exit_code == 0, result.output
    best = tmp_path / "runs" / "ci" / "best.pt"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(best), "--json", "--plots", str(tmp_path / "p"),
                                 "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 10000 and report["accuracy"] > 0.95  # chance is 0.10
    assert sum(map(sum, report["confusion"])) == 10000
    assert len(report["per_class"]) == 10 and all(r["support"] > 800 for r in report["per_class"])
    assert (tmp_path / "p" / "confusion.png").is_file() and (tmp_path / "p" / "mistakes.png").is_file()
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(best), "--split", "val",
                                 "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0 and "val accuracy" in result.stdout and "(" in result.stdout
    assert "Confusion matrix" in result.stdout and "Per class" in result.stdout
    result = runner.invoke(app, ["plot", str(tmp_path / "runs" / "ci"), "-o", str(tmp_path / "loss.png")])
    assert result.exit_code == 0 and (tmp_path / "loss.png").stat().st_size > 10_000


@pytest.mark.realdata
def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, mnist_data_dir):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistctl", "train", "--nf", "8", "--epochs", "2", "--run-dir", str(run_dir),
         "--data-dir", str(mnist_data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not run_dir.exists() and time.monotonic() < deadline:  # created when training starts
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert f"Resume with: mnistctl train --resume {run_dir / 'last.pt'}" in " ".join(err.split())
    saved = checkpoint.load(run_dir / "last.pt")
    assert saved["step_in_epoch"] > 0 or saved["epoch"] > 0
    result = runner.invoke(app, ["train", "--resume", str(run_dir / "last.pt"), "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.stdout and checkpoint.load(run_dir / "last.pt")["epoch"] == 2


def test_presets_fill_in_only_what_was_not_given(tmp_path, fake_data_dir):
    result = runner.invoke(app, ["train", "--preset", "fast", "--nf", "8", "--run-dir", str(tmp_path / "r"),
                                 "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(tmp_path / "r" / "last.pt")
    fast = PRESETS["fast"]
    assert ckpt["model_config"]["nf"] == 8  # given explicitly
    for key in ("epochs", "lr", "batch_size", "augment", "label_smoothing"):
        assert ckpt["train_config"][key] == fast[key], key
    result = runner.invoke(app, ["train", "--help"])
    assert "original" in result.stdout and "fast" in result.stdout


@pytest.mark.realdata
def test_fast_preset_reaches_99_percent(tmp_path, mnist_data_dir):
    """The benchmark suite checks three seeds and the time; CI checks one seed's accuracy."""
    result = runner.invoke(app, ["train", "--preset", "fast", "--run-dir", str(tmp_path / "fast"),
                                 "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0, result.output
    report, _ = engine.evaluate_checkpoint(checkpoint.load(tmp_path / "fast" / "last.pt"), "test",
                                           data_dir=mnist_data_dir)
    assert report.accuracy >= 0.99
