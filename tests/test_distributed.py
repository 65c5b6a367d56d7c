"""Training in two processes (torchrun, DistributedDataParallel on gloo over loopback).

Each process writes what it did to a trace (``MNISTCTL_DIST_TRACE``): the training images of
every step, the validation images, and a hash of its weights after every epoch. The tests read
those traces and the run's files. Most runs use a small made-up data set of 549 training and 51
validation images, so that steps and validation split unevenly; one uses the real MNIST.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistctl import checkpoint
from mnistctl.cli.commands import app
from mnistctl.config import DataConfig, ModelConfig, TrainConfig
from mnistctl.training import loop as engine
from mnistctl.training import run as runs
from mnistctl.training.distributed import TIMEOUT_ENV, TRACE_ENV, Group

runner = CliRunner()
VAL_SPLIT = "0.085"  # 51 of the 600 made-up images: 549 train, both odd
SMALL = ["--nf", "4", "--val-split", VAL_SPLIT, "--batch-size", "31", "--seed", "3"]  # 62 per step of 2
N_TRAIN, N_VAL = 549, 51


def _env(data_dir: Path, trace: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", TRACE_ENV)}
    env.update({"MNISTCTL_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "NO_COLOR": "1", **extra})
    if trace is not None:
        env[TRACE_ENV] = str(trace)
    return env


def torchrun(args: list[str], env: dict[str, str], cwd: Path, nproc: int = 2,
             timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), "-m", "mnistctl", "train", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_by_hand(args: list[str], env: dict[str, str], cwds: list[Path]) -> list[subprocess.Popen]:
    """The processes of a group started without torchrun's agent (which would stop the others
    itself when one dies), each in its own working directory."""
    port = str(_free_port())
    return [subprocess.Popen([sys.executable, "-m", "mnistctl", "train", *args], cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(len(cwds)),
                                  "LOCAL_WORLD_SIZE": str(len(cwds)), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
            for r, cwd in enumerate(cwds)]


def read_trace(trace: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (trace / f"rank{rank}.jsonl").read_text().splitlines()]


def _params(path: Path) -> dict[str, torch.Tensor]:
    """The learned parameters of a checkpoint (BatchNorm's running statistics left out)."""
    return {k: v for k, v in checkpoint.load(path).weights.items() if "running" not in k and "num_batches" not in k}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- without processes ------------------------------------------------------------------------

@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("size", [0, 1, 7, 64, 115])
def test_parts_cover_a_batch_once_and_differ_by_one_at_most(world, size):
    parts = [Group(rank=r, world=world).part(10, 10 + size) for r in range(world)]
    assert [p[0] for p in parts][0] == 10 and parts[-1][1] == 10 + size
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, disjoint, in rank order
    sizes = [b - a for a, b in parts]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_sees_every_training_image_once_per_epoch(tmp_path, fake_data_dir):
    trace = tmp_path / "trace"
    trace.mkdir()
    cfg = TrainConfig(epochs=2, batch_size=64, seed=2)  # 549 images: 8 steps, the last with 101
    plan = runs.RunPlan(ModelConfig(nf=4), DataConfig(val_fraction=float(VAL_SPLIT)), cfg, tmp_path / "run")
    runs.fit(plan, torch.device("cpu"), fake_data_dir, group=Group(trace_dir=trace))
    events = read_trace(trace, 0)
    for epoch in (0, 1):
        steps = [e for e in events if e["kind"] == "batch" and e["epoch"] == epoch]
        assert len(steps) == engine.steps_per_epoch(N_TRAIN, 64) == 8
        assert sorted(i for e in steps for i in e["images"]) == list(range(N_TRAIN))
        assert [len(e["images"]) for e in steps] == [64] * 7 + [N_TRAIN - 7 * 64]
    assert [e["seen"] for e in events if e["kind"] == "epoch"] == [N_TRAIN, N_TRAIN]


def test_world_size_without_a_launcher_is_one_clear_line(tmp_path, fake_data_dir):
    result = runner.invoke(app, ["train", *SMALL, "--epochs", "1", "--run-dir", str(tmp_path / "r"),
                                 "--data-dir", str(fake_data_dir)],
                           env={"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "", "MASTER_PORT": ""})
    assert result.exit_code == 1
    assert "MASTER_ADDR and MASTER_PORT is not set: start mnistctl with torchrun" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


# --- two processes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 2-epoch run of two processes on made-up data, traced, with an average of the weights
    (EMA); and a second, identical one."""
    from tests.conftest import make_fake_dataset

    root = tmp_path_factory.mktemp("ddp")
    data = root / "data" / "mnist"
    data.mkdir(parents=True)
    for name, blob in make_fake_dataset(n_train=600, n_test=100).items():
        (data / name).write_bytes(blob)
    results = []
    for i in range(2):
        trace = root / f"trace{i}"
        done = torchrun([*SMALL, "--epochs", "2", "--ema", "0.9", "--run-dir", f"run{i}"], _env(root / "data", trace),
                        root)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append((root / f"run{i}", trace, done))
    return root, results


@pytest.mark.slow
def test_each_epoch_is_split_into_disjoint_shards_seen_once(ddp_run):
    _, [(run_dir, trace, _), _] = ddp_run
    ranks = [read_trace(trace, r) for r in (0, 1)]
    for epoch in (0, 1):
        steps = [[e for e in events if e["kind"] == "batch" and e["epoch"] == epoch] for events in ranks]
        assert len(steps[0]) == len(steps[1]) == engine.steps_per_epoch(N_TRAIN, 62) == 8
        for mine, theirs in zip(*steps):
            assert not set(mine["images"]) & set(theirs["images"])  # disjoint within each step
            assert abs(len(mine["images"]) - len(theirs["images"])) <= 1
        seen = Counter(i for rank in steps for e in rank for i in e["images"])
        assert sorted(seen) == list(range(N_TRAIN)) and set(seen.values()) == {1}  # once each, no padding
        assert [len(a["images"]) + len(b["images"]) for a, b in zip(*steps)] == [62] * 7 + [N_TRAIN - 7 * 62]
    # the epoch's sums are the whole group's: both processes count all 549 images
    assert [e["seen"] for r in ranks for e in r if e["kind"] == "epoch"] == [N_TRAIN] * 4


@pytest.mark.slow
def test_weights_and_validation_agree_on_every_process(ddp_run):
    _, [(run_dir, trace, _), _] = ddp_run
    epochs = [[e for e in read_trace(trace, r) if e["kind"] == "epoch"] for r in (0, 1)]
    assert len(epochs[0]) == len(epochs[1]) == 2
    for mine, theirs in zip(*epochs):
        assert mine["weights"] == theirs["weights"]  # parameters and averaged BatchNorm statistics
        assert mine["averaged"] == theirs["averaged"] != mine["weights"]  # the EMA, saved as the model
        assert (mine["val_loss"], mine["val_acc"], mine["train_loss"]) == \
               (theirs["val_loss"], theirs["val_acc"], theirs["train_loss"])
    for epoch in (1, 2):  # validation: each image scored once, by one process
        vals = [[e for e in read_trace(trace, r) if e["kind"] == "val"][epoch - 1]["images"] for r in (0, 1)]
        assert sorted(vals[0] + vals[1]) == list(range(N_VAL)) and not set(vals[0]) & set(vals[1])
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert [h["val_acc"] for h in history] == [e["val_acc"] for e in epochs[0]]


@pytest.mark.slow
def test_output_comes_from_process_zero_once(ddp_run):
    _, [(run_dir, _, done), _] = ddp_run
    out = done.stdout
    assert out.count("Training nf=4 CNN") == 1
    assert "batch 31 per process, 62 per step (2 processes, gloo)" in " ".join(out.split())
    assert out.count("epoch 1/2:") == 1 and out.count("epoch 2/2:") == 1 and out.count("Done in") == 1
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "config.json", "history.json", "last.pt",
                                                         "loss.png", "metrics.csv"]
    assert json.loads((run_dir / "config.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_same_seed_and_world_size_give_the_same_weights(ddp_run):
    _, [(run0, _, _), (run1, _, _)] = ddp_run
    a, b = checkpoint.load(run0 / "last.pt").weights, checkpoint.load(run1 / "last.pt").weights
    assert _same(a, b)


@pytest.mark.slow
def test_checkpoints_are_ordinary_and_load_everywhere(ddp_run, tmp_path):
    root, [(run_dir, _, _), _] = ddp_run
    ckpt = checkpoint.load(run_dir / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt.weights)
    assert ckpt.training.processes == 2 and ckpt.epoch == 2
    assert ckpt.training.ema_updates == 16 and not _same(ckpt.weights, ckpt.training.raw_weights)  # 2 x 8 steps
    env = _env(root / "data")
    cli = [sys.executable, "-m", "mnistctl"]
    evaluated = subprocess.run([*cli, "evaluate", str(run_dir / "best.pt"), "--json"], env=env, capture_output=True,
                               text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["images"] == 100
    exported = subprocess.run([*cli, "export", "--checkpoint", str(run_dir / "best.pt"),
                               "--output", str(tmp_path / "small.onnx")], env=env, capture_output=True, text=True,
                              timeout=120)
    assert exported.returncode == 0, exported.stderr
    from PIL import Image, ImageDraw

    stroke = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(stroke).line([(30, 8), (30, 52)], fill=0, width=6)  # a dark 1 on paper
    stroke.save(tmp_path / "one.png")
    predicted = subprocess.run([*cli, "predict", str(tmp_path / "one.png"), "--checkpoint",
                                str(tmp_path / "small.onnx"), "--json"], env=env, capture_output=True, text=True,
                               timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    [reading] = json.loads(predicted.stdout)
    assert reading["prediction"] in "0123456789" and reading["error"] is None
    # a single process goes on with the run's global batch: the same 8 steps per epoch
    resumed = subprocess.run([*cli, "train", "--resume", str(run_dir / "last.pt"), "--epochs", "3", "--run-dir",
                              str(tmp_path / "more")], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "batch 62 (31 x the 2 processes the run started with)" in " ".join(resumed.stdout.split())
    more = checkpoint.load(tmp_path / "more" / "last.pt")
    assert more.epoch == 3 and more.training.processes == 2 and more.training.ema_updates == 24


@pytest.mark.slow
def test_ctrl_c_in_the_launcher_stops_all_and_the_run_resumes_under_torchrun(ddp_run):
    """Interrupted inside epoch 2 and resumed, the run ends with the parameters of the
    uninterrupted one (BatchNorm statistics differ: process 1 resumes with process 0's)."""
    root, [(reference, _, _), _] = ddp_run
    trace = root / "trace-int"
    env = _env(root / "data", trace)
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                 "2", "-m", "mnistctl", "train", *SMALL, "--epochs", "2", "--batch-size", "4",
                                 "--run-dir", "run-int"], env=env, cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    # 69 steps of 8 images per epoch: stop once epoch 2 is under way
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        events = read_trace(trace, 0) if (trace / "rank0.jsonl").exists() else []
        if any(e["kind"] == "batch" and e["epoch"] == 1 and e["step"] >= 2 for e in events):
            break
        time.sleep(0.05)
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert err.count("Interrupted: training interrupted in epoch 2") == 1, err[-3000:]  # process 0 says it
    assert f"Resume with: mnistctl train --resume {Path('run-int') / 'last.pt'}" in err
    saved = checkpoint.load(root / "run-int" / "last.pt")
    assert saved.epoch == 1 and 0 < saved.training.step_in_epoch < 69 and saved.training.processes == 2
    steps = [[e["step"] for e in read_trace(trace, r) if e["kind"] == "batch" and e["epoch"] == 1] for r in (0, 1)]
    assert steps[0] == steps[1] == list(range(saved.training.step_in_epoch))  # both stopped after the same step

    resumed = torchrun(["--resume", "run-int/last.pt"], env, root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout
    uninterrupted = torchrun([*SMALL, "--epochs", "2", "--batch-size", "4", "--run-dir", "run-ref"],
                             _env(root / "data"), root)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert _same(_params(root / "run-int" / "last.pt"), _params(root / "run-ref" / "last.pt"))
    assert reference.exists()


@pytest.mark.slow
def test_only_process_zero_writes_and_a_dead_process_stops_the_other(tmp_path, fake_data_dir):
    """Each process in its own directory: process 1's stays empty. Then process 1 is killed
    mid-run: process 0 stops with one clear line (no hang), and what it saved is intact."""
    cwds = [tmp_path / "p0", tmp_path / "p1"]
    for d in cwds:
        d.mkdir()
    env = _env(fake_data_dir, **{TIMEOUT_ENV: "30"})
    procs = launch_by_hand([*SMALL, "--epochs", "1", "--run-dir", "run", "--save-model"], env, cwds)
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert (cwds[0] / "run" / "best.pt").is_file() and (cwds[0] / "mnist_cnn.pt").is_file()
    assert list(cwds[1].iterdir()) == [] and outs[1] == ("", "")  # nothing written, nothing said

    trace = tmp_path / "trace"
    procs = launch_by_hand([*SMALL, "--epochs", "30", "--batch-size", "4", "--run-dir", "long"],
                           {**env, TRACE_ENV: str(trace)}, cwds)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # killed in epoch 2, once epoch 1 is saved
        if (trace / "rank1.jsonl").exists() and any(e["kind"] == "batch" and e["epoch"] == 1
                                                    for e in read_trace(trace, 1)):
            break
        time.sleep(0.05)
    procs[1].kill()
    started = time.monotonic()
    out, err = procs[0].communicate(timeout=90)
    assert time.monotonic() - started < 45
    assert procs[0].returncode == 1, err
    assert "Error: process 0 of 2 lost contact with the others" in err and "Traceback" not in err
    assert "long/last.pt holds epoch 1: resume from it" in " ".join(err.split())
    assert checkpoint.load(cwds[0] / "long" / "last.pt").epoch == 1
    procs[1].communicate()


@pytest.mark.slow
@pytest.mark.realdata
def test_fast_preset_in_two_processes_on_real_mnist(tmp_path, mnist_data_dir):
    """The fast recipe's global batch of 128, shared by two processes (64 each)."""
    done = torchrun(["--preset", "fast", "--batch-size", "64", "--run-dir", "fast2"], _env(mnist_data_dir), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    from mnistctl.inference.evaluation import evaluate_checkpoint

    report = evaluate_checkpoint(checkpoint.load(tmp_path / "fast2" / "last.pt"), "test",
                                 data_dir=mnist_data_dir).report
    assert report.accuracy >= 0.985
