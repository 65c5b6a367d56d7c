"""Training runs (fit, resume, interrupt, plan) and the train/evaluate/plot commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnistctl import checkpoint
from mnistctl import devices as accel
from mnistctl.cli.commands import app
from mnistctl.config import DataConfig, ModelConfig, TrainConfig
from mnistctl.errors import ConfigError, RunExistsError, TrainingInterrupted
from mnistctl.inference.evaluation import evaluate_checkpoint
from mnistctl.recipes import PRESETS
from mnistctl.training import loop as engine
from mnistctl.training import run as runs

runner = CliRunner()
CPU = torch.device("cpu")


# --- devices ------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_refused_in_domain_words():
    with pytest.raises(ConfigError, match="device cuda is not available") as err:
        accel.resolve_device("cuda")
    assert err.value.setting == "device" and "--" not in str(err.value)
    assert accel.resolve_device("auto").type in ("cpu", "mps")




# --- training ----------------------------------------------------------------------------

SMALL = dict(model=ModelConfig(nf=4), data=DataConfig(val_fraction=0.2))


def _fit(run_dir, data_dir, epochs=2, seed=5, ema=0.0, **kw):
    cfg = TrainConfig(epochs=epochs, batch_size=64, seed=seed, ema=ema)
    plan = runs.RunPlan(SMALL["model"], SMALL["data"], cfg, run_dir, resume=kw.pop("resume", None))
    return runs.fit(plan, CPU, data_dir, **kw)


def _weights(path):
    return checkpoint.load(path).weights


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_timing(history):
    return [replace(r, seconds=0.0, images_per_s=0.0) for r in history]


def test_same_seed_gives_identical_runs(tmp_path, fake_data_dir):
    a = _fit(tmp_path / "a", fake_data_dir)
    b = _fit(tmp_path / "b", fake_data_dir)
    assert _strip_timing(a.history) == _strip_timing(b.history)
    assert _same(_weights(a.last_path), _weights(b.last_path))
    c = _fit(tmp_path / "c", fake_data_dir, seed=6)
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


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, fake_data_dir, ema):
    whole = _fit(tmp_path / "whole", fake_data_dir, epochs=3, ema=ema)
    with pytest.raises(TrainingInterrupted) as err:
        _fit(tmp_path / "cut", fake_data_dir, epochs=3, ema=ema, callbacks=_CtrlCAt(epoch=2, step=3))
    saved = checkpoint.load(err.value.checkpoint)
    assert saved.resumable and (saved.epoch, saved.training.step_in_epoch) == (1, 4)
    assert len(saved.history) == 1 and saved.training.partial_epoch["seen"] == 4 * 64
    assert (saved.training.raw_weights is not None) == (ema > 0)
    resumed = _fit(tmp_path / "cut", fake_data_dir, epochs=3, ema=ema, resume=saved)
    assert _same(_weights(whole.last_path), _weights(resumed.last_path))
    if ema:  # the weights being trained, kept beside the average, carried on exactly too
        assert _same(checkpoint.load(whole.last_path).training.raw_weights,
                     checkpoint.load(resumed.last_path).training.raw_weights)
        assert not _same(checkpoint.load(whole.last_path).training.raw_weights, _weights(whole.last_path))
    assert _strip_timing(whole.history) == _strip_timing(resumed.history)
    assert checkpoint.load(resumed.last_path).training.optimizer["state"].keys() == \
        checkpoint.load(whole.last_path).training.optimizer["state"].keys()


def test_checkpoint_is_self_describing(tmp_path, fake_data_dir):
    result = _fit(tmp_path / "run", fake_data_dir)
    ckpt = checkpoint.load(result.best_path)
    assert ckpt.model_config == SMALL["model"] and ckpt.data_config == SMALL["data"]
    assert ckpt.train_config.seed == 5 and ckpt.classes == [str(i) for i in range(10)] and ckpt.dataset == "mnist"
    assert ckpt.model_config.mean == 0.1307 and ckpt.resumable and ckpt.best.epoch == result.best.epoch
    # the model rebuilt from the file alone predicts like the trained one
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    again = checkpoint.load(result.best_path).build_model()
    assert torch.equal(engine.predict_logits(ckpt.build_model(), x), engine.predict_logits(again, x))
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2] and history == [r.to_dict() for r in result.history]


def test_a_new_run_never_overwrites_an_old_one(tmp_path, fake_data_dir):
    _fit(tmp_path / "run", fake_data_dir)
    with pytest.raises(RunExistsError, match="resume that run"):
        runs.check_run_dir(tmp_path / "run")
    result = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "run"), "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 1 and f"--resume {tmp_path / 'run' / 'last.pt'}" in " ".join(result.stderr.split())
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "file"), "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 1 and "--run-dir" in result.stderr and "not a directory" in result.stderr


def test_plan_fills_a_preset_with_the_given_settings_only(tmp_path):
    plan = runs.plan_run("fast", {"nf": 8, "lr": None, "dataset": "kmnist"}, runs_root=tmp_path)
    assert plan.model_config.nf == 8 and plan.train_config.lr == PRESETS["fast"]["lr"]
    assert plan.train_config.epochs == 1 and plan.train_config.optimizer == TrainConfig().optimizer
    assert plan.data_config.dataset == "kmnist" and plan.model_config.mean != ModelConfig().mean
    assert plan.run_dir.parent == tmp_path and plan.run_dir.name.startswith("kmnist-nf8-")
    assert runs.plan_run("original", {}, runs_root=tmp_path).train_config == TrainConfig()
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        runs.plan_run("original", {"colour": "red"})


def test_resume_warns_about_every_option_it_ignores(tmp_path, fake_data_dir):
    with pytest.raises(TrainingInterrupted) as err:
        _fit(tmp_path / "cut", fake_data_dir, epochs=2, callbacks=_CtrlCAt(epoch=1, step=2))
    plan = runs.plan_run("fast", {"lr": 0.5, "nf": 4, "epochs": 7, "seed": 5}, resume=err.value.checkpoint)
    assert plan.train_config.lr == 0.01 and plan.train_config.epochs == 2 and plan.resume is not None
    assert len(plan.warnings) == 3  # lr, epochs and the preset; nf and seed were given with the run's own values
    assert any(w.startswith("lr 0.5 is ignored") for w in plan.warnings)
    assert any(w.startswith("preset 'fast' is ignored") for w in plan.warnings)
    result = runner.invoke(app, ["train", "--resume", str(err.value.checkpoint), "--lr", "0.5",
                                 "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 0, result.output
    assert "Warning: lr 0.5 is ignored: a resumed run keeps its own (0.01)" in " ".join(result.stderr.split())


# --- the commands --------------------------------------------------------------------------

@pytest.mark.slow
def test_original_command_line_still_works(tmp_path, fake_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--lr", "0.01", "--batch-size", "64", "--nf", "32", "--epochs", "30",
                                 "--save-model", "--data-dir", str(fake_data_dir), "--name", "orig"])
    assert result.exit_code == 0, result.output
    saved = checkpoint.load(tmp_path / "mnist_cnn.pt")
    assert saved.model_config.nf == 32 and saved.epoch == 30 and len(saved.history) == 30
    assert saved.train_config.lr == 0.01 and saved.train_config.batch_size == 64
    run = tmp_path / "runs" / "orig"
    assert {p.name for p in run.iterdir()} == {"config.json", "best.pt", "last.pt", "history.json", "metrics.csv",
                                               "loss.png"}
    assert "Best epoch" in result.stdout and "30" in result.stdout


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert saved.training.step_in_epoch > 0 or saved.epoch > 0
    result = runner.invoke(app, ["train", "--resume", str(run_dir / "last.pt"), "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0, result.output
    assert "Resuming" in result.stdout and checkpoint.load(run_dir / "last.pt").epoch == 2


def test_presets_fill_in_only_what_was_not_given(tmp_path, fake_data_dir):
    result = runner.invoke(app, ["train", "--preset", "fast", "--nf", "8", "--run-dir", str(tmp_path / "r"),
                                 "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(tmp_path / "r" / "last.pt")
    fast = PRESETS["fast"]
    assert ckpt.model_config.nf == 8  # given explicitly
    for key in ("epochs", "epoch_fraction", "lr", "batch_size", "augment", "label_smoothing"):
        assert getattr(ckpt.train_config, key) == fast[key], key
    result = runner.invoke(app, ["train", "--help"])
    assert "original" in result.stdout and "fast" in result.stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_fast_preset_reaches_99_percent(tmp_path, mnist_data_dir):
    """The benchmark suite checks five seeds and the time; CI checks one seed's accuracy."""
    result = runner.invoke(app, ["train", "--preset", "fast", "--run-dir", str(tmp_path / "fast"),
                                 "--data-dir", str(mnist_data_dir)])
    assert result.exit_code == 0, result.output
    report = evaluate_checkpoint(checkpoint.load(tmp_path / "fast" / "last.pt"), "test",
                                 data_dir=mnist_data_dir).report
    assert report.accuracy >= 0.99


def _learnable_dataset(n_train: int, n_test: int) -> dict[str, bytes]:
    """Made-up images a network can learn: class k is a bright 6x6 square at its own place on noise."""
    import numpy as np

    from tests.conftest import idx_bytes

    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 60, (len(labels), 28, 28))
        for i, k in enumerate(labels):
            r, c = 3 + (k // 5) * 13, 1 + (k % 5) * 5
            x[i, r:r + 6, c:c + 6] = 255
        return x

    train_y, test_y = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    return {"train-images-idx3-ubyte": idx_bytes(images(train_y)), "train-labels-idx1-ubyte": idx_bytes(train_y),
            "t10k-images-idx3-ubyte": idx_bytes(images(test_y)), "t10k-labels-idx1-ubyte": idx_bytes(test_y)}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["fashion-mnist", "kmnist"])
def test_best_preset_trains_on_the_other_data_sets(tmp_path, dataset):
    """The preset's whole recipe (nf=40, SGD, EMA, dropout, label smoothing) learns made-up data in the
    other data sets' place, in 3 of its 20 epochs: what it reaches on the real ones is in the README."""
    directory = tmp_path / "data" / dataset
    directory.mkdir(parents=True)
    for name, data in _learnable_dataset(1500, 200).items():
        (directory / name).write_bytes(data)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "--preset", "best", "--epochs", "3", "--dataset", dataset,
                                 "--data-dir", str(tmp_path / "data"), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "EMA 0.999" in result.stdout and "dropout 0.25" in result.stdout
    assert "sgd lr 0.2 (onecycle), weight decay 0.0005, augment on (15% at low resolution), " in result.stdout
    ckpt = checkpoint.load(run_dir / "last.pt")
    best = PRESETS["best"]
    assert ckpt.dataset == dataset and ckpt.model_config.nf == best["nf"] == 40
    assert (ckpt.train_config.ema, ckpt.model_config.dropout) == (best["ema"], best["dropout"])
    assert (ckpt.train_config.optimizer, ckpt.train_config.lr, ckpt.train_config.weight_decay) == (
        best["optimizer"], best["lr"], best["weight_decay"]) == ("sgd", 0.2, 0.0005)
    assert not _same(ckpt.weights, ckpt.training.raw_weights)  # the average is what is saved
    assert ckpt.history[-1].val_acc >= 0.9
    report = evaluate_checkpoint(ckpt, "test", data_dir=tmp_path / "data").report
    assert report.accuracy >= 0.9


# --- extra pictures to train on ---------------------------------------------------------------

def _write_digits(root, count):
    """``count`` PNG pictures of digit-like marks (a stroke down, one across at a height of the class's
    and a tick of the picture's) in class folders, dark on white paper as people write; (path, label) in
    the order they are read."""
    from PIL import Image

    made = []
    for i in range(count):
        label = i % 10
        canvas = np.full((96, 80), 250, np.uint8)
        canvas[16:80, 36:44] = 20
        canvas[18 + 6 * label:24 + 6 * label, 14:66] = 20
        canvas[70:76, 44:50 + i % 13] = 20
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        path = root / str(label) / f"d{i:03d}.png"
        Image.fromarray(canvas).save(path)
        made.append((path, label))
    return sorted(made, key=lambda item: (item[1], str(item[0])))


def test_extra_images_join_the_training_split_at_the_share_asked_for(tmp_path):
    from mnistctl.images.prepare import prepare

    made = _write_digits(tmp_path / "mine", 7)
    images = torch.zeros(100, 28, 28, dtype=torch.uint8)
    labels = torch.zeros(100, dtype=torch.int64)
    seen = []
    cfg = DataConfig(extra_images=str(tmp_path / "mine"), extra_share=0.2)
    x, y, added, found = runs.with_extra_images(cfg, images, labels, lambda done, total: seen.append((done, total)))
    assert added == 25 and found == 7 and x.shape == (125, 28, 28) and y.shape == (125,)  # 25 of 125: 0.2
    assert torch.equal(x[:100], images) and seen[0] == (0, 7) and seen[-1] == (7, 7)
    prepared = torch.stack([torch.from_numpy(prepare(p).image) for p, _ in made])
    # every picture three times (21), then 4 of them once more, each with its own label
    matches = [[i for i in range(7) if torch.equal(x[100 + k], prepared[i])] for k in range(25)]
    assert all(len(m) == 1 for m in matches)
    counts = np.bincount([m[0] for m in matches], minlength=7)
    assert sorted(counts) == [3, 3, 3, 4, 4, 4, 4]
    assert [int(y[100 + k]) for k in range(25)] == [made[m[0]][1] for m in matches]
    # without a share, each picture once
    x, y, added, found = runs.with_extra_images(DataConfig(extra_images=str(tmp_path / "mine")), images, labels)
    assert added == found == 7 and sorted(y[100:].tolist()) == sorted(label for _, label in made)


def test_extra_images_are_prepared_by_several_processes_as_by_one(tmp_path, monkeypatch):
    """From PARALLEL_FROM pictures on, a pool of processes prepares them: the same inputs, labels and
    progress as this process alone; unreadable pictures are named, the first one and how many more."""
    from mnistctl.images import labelled, preparers
    from mnistctl.images.prepare import decode

    made = _write_digits(tmp_path / "mine", preparers.PARALLEL_FROM + 6)
    here: list[object] = []  # pictures decoded in this process
    monkeypatch.setattr(preparers, "decode", lambda *a: here.append(a) or decode(*a))
    seen: dict[int, list[tuple[int, int]]] = {1: [], 2: []}
    alone, pooled = (labelled.prepare_labelled(tmp_path / "mine", tuple("0123456789"),
                                               progress=lambda d, t, j=jobs: seen[j].append((d, t)), jobs=jobs)
                     for jobs in (1, 2))
    assert len(here) == len(made)  # the first call's; none from the pool's processes
    assert np.array_equal(alone[0], pooled[0]) and np.array_equal(alone[1], pooled[1]) and len(alone[0]) == len(made)
    n = len(made)
    assert alone[1].tolist() == [label for _, label in made] and seen[1] == seen[2] == [(0, n), (n, n)]
    for name in ("bad.png", "worse.png"):
        (tmp_path / "mine" / "3" / name).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ConfigError, match=r"3/bad.png: .*\(1 more pictures cannot be read either\)"):
        labelled.prepare_labelled(tmp_path / "mine", tuple("0123456789"), jobs=2)


def test_train_with_extra_images_says_so_and_records_them(tmp_path, fake_data_dir, monkeypatch):
    _write_digits(tmp_path / "mine", 20)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--nf", "4", "--epochs", "1", "--extra-images", "mine", "--extra-share",
                                 "0.5", "--run-dir", str(tmp_path / "run"), "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Preparing 20 pictures of --extra-images" in out
    assert f"1,100 training (550 of them from {tmp_path / 'mine'}: its 20 pictures, repeated)" in out  # + 550 MNIST
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data["extra_images"] == str(tmp_path / "mine") and data["extra_share"] == 0.5
    assert checkpoint.load(tmp_path / "run" / "best.pt").data_config.extra_images == str(tmp_path / "mine")


def test_the_header_says_which_extra_pictures_a_run_trains_on():
    from mnistctl.cli.train_view import _drawn

    def info(extra, pictures):
        return runs.RunInfo(61_111, 5_000, 477, 1, "cpu", 0, 0, [], extra_images=extra, extra_pictures=pictures)

    assert _drawn(info(6_111, 57_500)) == ": a random 6,111 of its 57,500 pictures, the same every epoch"
    assert _drawn(info(550, 20)) == ": its 20 pictures, repeated"
    assert _drawn(info(20, 20)) == ""  # each once


def test_the_header_says_what_augmentation_adds():
    from mnistctl.cli.train_view import _augment

    assert _augment(TrainConfig()) == "on" and _augment(TrainConfig(augment=False, scans=0.1)) == "off"
    assert _augment(TrainConfig(writer_style=0.5, low_res=0.15, scans=0.1)) == \
        "on (writer style 0.5, 15% at low resolution, 10% as 8x8 scans)"
    assert _augment(TrainConfig(scans=0.25)) == "on (25% as 8x8 scans)"


@pytest.mark.parametrize("args, words", [
    (["--extra-share", "0.1"], "--extra-share is 0.1, a share of extra images, but none are given"),
    (["--extra-images", "nowhere"], "nowhere is neither a folder of pictures nor a CSV file"),
    (["--extra-images", "mine", "--extra-share", "1"], "--extra-share must be in [0, 1)"),
    (["--extra-images", "broken"], "cannot use"),
])
def test_bad_extra_images_get_one_clear_line_and_no_run(tmp_path, fake_data_dir, monkeypatch, args, words):
    _write_digits(tmp_path / "mine", 10)
    _write_digits(tmp_path / "broken", 3)
    (tmp_path / "broken" / "1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--nf", "4", "--epochs", "1", *args, "--run-dir", str(tmp_path / "run"),
                                 "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert words in message and "Traceback" not in result.output, message
    if args[-1] == "broken":
        assert "bad.png" in message and "--extra-images" in message
    assert not (tmp_path / "run" / "best.pt").exists()


def test_a_stop_asked_after_trainings_last_step_is_passed_on_not_lost():
    """Ctrl-C or SIGTERM while training asks it to stop after the current step; one that comes after
    its last step (the run complete) was dropped when the handlers were put back, and ``tune`` went
    on to its next trial. It is passed on to what handled it before: the process stops. Acted on
    (an exception leaving the block), it is not passed on again."""
    import os

    from mnistctl.errors import Terminated
    from mnistctl.training.interrupts import deferred_interrupt

    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    # Python's own Ctrl-C handler: what a test worker has there may be another (CI saw one ignore it)
    before_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with deferred_interrupt() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested and not seen  # held while training: it stops after the current step
        assert seen == [signal.SIGTERM]  # the block over (training done): passed on
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupt():
                signal.raise_signal(signal.SIGINT)
        seen.clear()
        with pytest.raises(TrainingInterrupted):
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGTERM)
                raise TrainingInterrupted("last.pt", 2, 0, signal.SIGTERM)  # training stopped for it
        assert not seen
        with pytest.raises(Terminated):  # asked twice: at once
            with deferred_interrupt() as stop:
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, before_int)
