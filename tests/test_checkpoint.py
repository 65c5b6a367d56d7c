"""Checkpoints: the typed format, round trips, format 1 files, and every kind of bad file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_checkpoint
from mnistctl import checkpoint
from mnistctl.checkpoint import Checkpoint
from mnistctl.cli.commands import app
from mnistctl.config import DataConfig, ModelConfig, TrainConfig
from mnistctl.errors import CheckpointError, TrainingInterrupted, WriteError
from mnistctl.training import loop as engine
from mnistctl.training import run as runs

runner = CliRunner()


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def as_version_1(ckpt: Checkpoint) -> dict:
    """The payload mnistctl 0.1.0 (checkpoint format 1) wrote for ``ckpt``."""
    m = ckpt.model_config
    payload = {
        "format": "mnistctl-checkpoint", "format_version": 1, "mnistctl_version": "0.1.0",
        "model_config": {"nf": m.nf, "num_classes": m.num_classes, "batchnorm": m.batchnorm, "dropout": m.dropout},
        "data_config": ckpt.data_config.to_dict(), "train_config": ckpt.train_config.to_dict(),
        "dataset": ckpt.dataset, "classes": ckpt.classes, "normalization": {"mean": m.mean, "std": m.std},
        "model": ckpt.weights, "epoch": ckpt.epoch, "history": [r.to_dict() for r in ckpt.history],
        "best": ckpt.best.to_dict(),
    }
    if ckpt.training:
        payload.update(optimizer=ckpt.training.optimizer, scheduler=ckpt.training.scheduler,
                       step_in_epoch=ckpt.training.step_in_epoch, partial_epoch=ckpt.training.partial_epoch)
    else:
        payload.update(exported=True, test_accuracy=0.99)
    return payload


def test_round_trip_keeps_everything(tmp_path):
    ckpt = make_checkpoint()
    loaded = checkpoint.load(ckpt.save(tmp_path / "a.pt"))
    assert loaded.source == str(tmp_path / "a.pt") and loaded.resumable
    for name in ("model_config", "data_config", "train_config", "classes", "dataset", "epoch", "history", "best"):
        assert getattr(loaded, name) == getattr(ckpt, name), name
    assert _same_weights(loaded.weights, ckpt.weights)
    assert loaded.training.step_in_epoch == 3 and loaded.training.partial_epoch["seen"] == 12
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw["format_version"] == checkpoint.FORMAT_VERSION == 2 and raw["model_config"]["mean"] == 0.1307
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(loaded.build_model()(x), ckpt.build_model()(x))


def test_inference_only_copy_cannot_be_resumed(tmp_path):
    ckpt = make_checkpoint()
    small = ckpt.inference_only(test_accuracy=0.97)
    small.save(tmp_path / "small.pt")
    ckpt.save(tmp_path / "full.pt")
    loaded = checkpoint.load(tmp_path / "small.pt")
    assert not loaded.resumable and loaded.test_accuracy == 0.97
    assert (tmp_path / "small.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "small.pt")])
    assert result.exit_code == 1 and "inference-only" in result.stderr


@pytest.mark.parametrize("resumable", [True, False])
def test_format_1_files_still_load_and_predict_the_same(tmp_path, resumable):
    ckpt = make_checkpoint(resumable=resumable)
    torch.save(as_version_1(ckpt), tmp_path / "v1.pt")
    old = checkpoint.load(tmp_path / "v1.pt")
    assert old.model_config == ckpt.model_config  # the normalisation moved into the model config
    assert old.resumable == resumable and old.history == ckpt.history and old.best == ckpt.best
    assert _same_weights(old.weights, ckpt.weights)
    if resumable:
        assert old.training.step_in_epoch == 3
    else:
        assert old.test_accuracy == 0.99
    x = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    assert torch.equal(engine.predict_logits(old.build_model(), x), engine.predict_logits(ckpt.build_model(), x))


class _StopIn(engine.TrainCallbacks):
    """Ctrl-C in the second epoch."""

    def on_epoch_start(self, epoch, epochs, steps, start_step):
        self.epoch = epoch

    def on_batch(self, step, loss, images):
        if self.epoch == 2 and step == 1:
            raise KeyboardInterrupt


def test_a_format_1_run_resumes_to_the_same_weights(tmp_path, fake_data_dir):
    """A run interrupted under mnistctl 0.1.0 goes on under this version, as if never stopped."""
    cfgs = ModelConfig(nf=4), DataConfig(val_fraction=0.2), TrainConfig(epochs=2, batch_size=64, seed=5)
    cpu = torch.device("cpu")
    whole = runs.fit(runs.RunPlan(*cfgs, tmp_path / "whole"), cpu, fake_data_dir)
    with pytest.raises(TrainingInterrupted) as err:
        runs.fit(runs.RunPlan(*cfgs, tmp_path / "cut"), cpu, fake_data_dir, callbacks=_StopIn())
    torch.save(as_version_1(checkpoint.load(err.value.checkpoint)), tmp_path / "cut" / "old.pt")
    plan = runs.plan_run(resume=tmp_path / "cut" / "old.pt")
    result = runs.fit(plan, cpu, fake_data_dir)
    assert [r.epoch for r in result.history] == [1, 2]
    assert _same_weights(checkpoint.load(result.last_path).weights, checkpoint.load(whole.last_path).weights)


def test_crash_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = make_checkpoint().save(tmp_path / "best.pt")
    before = path.read_bytes()

    def disk_fills_up(self, data):  # half the checkpoint is written, then the disk is full
        with open(self, "wb") as f:
            f.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_fills_up)
    with pytest.raises(WriteError, match=f"no space left on device while writing {path}"):
        make_checkpoint(seed=1).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


# --- bad files ----------------------------------------------------------------------------

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


def _crafted(tmp_path: Path, good: dict, name: str, change) -> Path:
    payload = {**good, "model_config": dict(good["model_config"]), "weights": dict(good["weights"])}
    change(payload)
    torch.save(payload, tmp_path / f"{name}.pt")
    return tmp_path / f"{name}.pt"


def _bad_checkpoints(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good_path = make_checkpoint().save(tmp_path / "good.pt")
    good = torch.load(good_path, weights_only=True)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good_path.read_bytes()[: good_path.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    craft = lambda name, change: _crafted(tmp_path, good, name, change)  # noqa: E731

    def set_weight(key, value):
        return lambda p: p["weights"].__setitem__(key, value)

    return {
        "missing": (tmp_path / "nope.pt", "does not exist"),
        "truncated": (truncated, "not a readable checkpoint"),
        "garbage": (garbage, "not a readable checkpoint"),
        "empty": (empty, "not a readable checkpoint"),
        "foreign": (foreign, "not an mnistctl checkpoint"),
        "directory": (tmp_path, "is not a file"),
        "future": (craft("future", lambda p: p.update(format_version=99)), "format version 99"),
        "huge nf": (craft("huge", lambda p: p["model_config"].update(nf=1_000_000)),
                    "nf must be a whole number from 1 to 512"),
        "nf as text": (craft("nftext", lambda p: p["model_config"].update(nf="32")), "nf must be a whole number"),
        "wrong nf": (craft("wrongnf", lambda p: p["model_config"].update(nf=8)), "do not fit the architecture"),
        "wrong shape": (craft("shape", set_weight("classifier.6.bias", torch.zeros(11))),
                        "classifier.6.bias has shape [11], expected [10]"),
        "huge tensor": (craft("hugetensor", set_weight("features.0.0.weight", torch.zeros(4000, 1, 3, 3))),
                        "features.0.0.weight has shape"),
        "not a tensor": (craft("notensor", set_weight("classifier.6.bias", [0.0] * 10)), "is not a tensor"),
        "extra weight": (craft("extra", set_weight("backdoor", torch.zeros(1))), "unexpected backdoor"),
        "missing weight": (craft("missingw", lambda p: p["weights"].pop("classifier.6.bias")),
                           "missing classifier.6.bias"),
        "missing key": (craft("nokey", lambda p: p.pop("classes")), "is missing classes"),
        "class count": (craft("classes", lambda p: p.update(classes=["a", "b"])), "names 2 classes"),
        "unknown setting": (craft("setting", lambda p: p["model_config"].update(colour="red")),
                            "settings this mnistctl does not know: colour"),
        "bad history": (craft("history", lambda p: p.update(history="lots")), "not a list of per-epoch records"),
        "bad training": (craft("training", lambda p: p.update(training={"optimizer": 1})), "training state"),
    }


def test_bad_checkpoints_give_one_clear_line(tmp_path, fake_data_dir):
    for kind, (path, message) in _bad_checkpoints(tmp_path).items():
        out = runner.invoke(app, ["evaluate", "--checkpoint", str(path), "--data-dir", str(fake_data_dir)])
        assert out.exit_code == 1, kind
        assert message in " ".join(out.stderr.split()), (kind, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output, kind


@pytest.mark.slow
def test_a_damaged_file_gets_our_line_only_not_torchs_warning(tmp_path):
    """A file that starts like a pickle of an unknown protocol made torch.load print a UserWarning
    beside mnistctl's error; a user sees one line (run in a real process: pytest would catch it)."""
    import subprocess
    import sys

    odd = tmp_path / "odd.pt"
    odd.write_bytes(b"\x80\x61" + bytes(range(200)))  # PROTO 97, then junk
    done = subprocess.run([sys.executable, "-m", "mnistctl", "evaluate", str(odd)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"Error: {odd} is not a readable checkpoint (truncated, corrupt or "
                                                "another format); use a best.pt or last.pt written by `mnistctl "
                                                "train`"], done.stderr
