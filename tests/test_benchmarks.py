"""A smoke run of the benchmark entry point (the suite itself is not a test: too slow, too noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def _quick(script: str, tmp_path, data_dir=None) -> tuple[dict, subprocess.CompletedProcess]:
    """A benchmark script's --quick run in a scratch directory: its JSON document and the process."""
    out = tmp_path / f"{script}.json"
    env = {**os.environ, **({"MNISTCTL_DATA_DIR": str(data_dir)} if data_dir else {})}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--quick", "--output", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return json.loads(out.read_text()), proc


@pytest.mark.slow
@pytest.mark.realdata
def test_benchmark_quick_smoke(tmp_path, mnist_data_dir):
    doc, proc = _quick("run", tmp_path, mnist_data_dir)
    assert doc["quick"] and doc["machine"]["cores"] >= 1 and doc["machine"]["torch"]
    figures = {r["figure"] for r in doc["results"]}
    for expected in ("mnistctl --help", "peak memory of train (nf=32)", "mnistctl predict one.png",
                     "mnistctl predict one.png (PyTorch)",
                     "train --preset fast --seed 1", "train throughput (nf=32, batch 64)",
                     "evaluate 10,000 test images", "train, 2 processes x 1 thread (torchrun)",
                     "train --preset fast, 2 processes"):
        assert expected in figures
    assert doc["kind"].endswith(f"-{doc['machine']['cores']}cpu") or doc["kind"].endswith("cpu-cuda")
    for r in doc["results"]:
        assert r["value"] > 0 and r["baseline_value"] > 0 and r["ratio"] > 0
        assert r["cpu"] == doc["machine"]["cpu"] and r["threads"] >= 1
    fast = next(r for r in doc["results"] if r["figure"].startswith("train --preset fast"))
    assert fast["test_accuracy"] > 0.95  # the smoke run checks the path, the suite checks 99%
    assert "mnistctl" in proc.stdout and "Wrote" in proc.stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_reading_numbers_benchmark_quick(tmp_path, mnist_data_dir):
    doc, proc = _quick("reading_numbers", tmp_path, mnist_data_dir)
    rows = {r["corpus"]: r for r in doc["predict"]["rows"]}
    assert rows["all"]["numbers"] == 72 and 0 <= rows["all"]["whole"] <= 1 and "spacing: touching" in rows
    assert doc["single digits"]["pictures"] == 100 and doc["6-digit number, ms"] > 0
    assert "touching pairs" in proc.stdout and "Wrote" in proc.stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_benchmark_accuracy_section(tmp_path, mnist_data_dir):
    """The accuracy section's path, with runs shrunk to seconds (the real one takes 45 minutes)."""
    out = tmp_path / "acc.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--accuracy", "--presets",
                           "best", "--seeds", "2", "--device", "cpu", "--output", str(out), "--train-options",
                           "--nf 8 --epochs 1 --val-split 0.9"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "MNISTCTL_DATA_DIR": str(mnist_data_dir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [p["preset"] for p in doc["presets"]] == ["best"] and doc["device"] == "cpu"
    for p in doc["presets"]:
        accs = [r["test_accuracy"] for r in p["runs"]]
        assert [r["seed"] for r in p["runs"]] == [1, 2] and len(set(accs)) == 2  # two seeds, two models
        assert p["min"] <= p["mean"] <= p["max"] and p["min"] > 0.8 and 0 < p["ensemble"] <= 1
        assert p["parameters"] > 0 and p["model_bytes"] > 4 * p["parameters"] and p["seconds"] > 0
    assert "accuracy per preset" in proc.stdout and "Wrote" in proc.stdout


@pytest.mark.slow
def test_benchmark_without_data_says_what_to_do(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick",
                           "--output", str(tmp_path / "x.json"), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "mnistctl download" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_stage_timings_name_every_stage_of_a_training_run(tmp_path, fake_data_dir):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "stages.py"), "--nf", "4", "--epochs", "1",
                           "--data-dir", str(fake_data_dir), "--run-dir", str(tmp_path / "run"), "-q"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds = {line[:40].strip(): float(line[40:]) for line in proc.stdout.splitlines()[-12:]}
    assert sorted(seconds) == sorted([
        "import the CLI (Typer, Rich)", "import torch", "import mnistctl's core modules",
        "import matplotlib (for the loss plot)", "load the data", "build the optimizer", "training steps",
        "validation", "checkpoints, history, metrics", "draw and save the loss plot",
        "the rest (model build, interpreter)", "total (in process)"])
    assert all(v >= 0 for v in seconds.values()) and seconds["training steps"] > 0
    assert sum(seconds.values()) == pytest.approx(2 * seconds["total (in process)"], abs=0.05)
    assert (tmp_path / "run" / "loss.png").exists()



@pytest.mark.slow
@pytest.mark.realdata
def test_pictures_benchmark_quick_smoke(tmp_path, mnist_data_dir):
    """The pictures benchmark's path: preparation per kind against the naive pipeline, a directory
    of people-style pictures with and without the pool, the same as labelled pictures (train
    --extra-images) with and without it, one picture against importing torch."""
    doc, _ = _quick("pictures", tmp_path, mnist_data_dir)
    figures = [r["figure"] for r in doc["results"]]
    assert len(figures) == 7 and any("12-megapixel" in f for f in figures) and any("directory" in f for f in figures)
    assert any("labelled" in f for f in figures)
    for r in doc["results"]:
        assert r["value"] > 0 and r["baseline_value"] > 0 and r["ratio"] > 0


@pytest.mark.slow
def test_serve_load_benchmark_quick_smoke(tmp_path):
    """The load benchmark's path: `mnistctl serve` and the naive endpoint driven by `hey` with 1 and
    16 clients, two payloads; no request may fail (speed is the benchmark's business, not a test's)."""
    import shutil

    from conftest import missing

    if shutil.which("hey") is None:
        missing("the load generator hey is not installed: apt-get install hey")
    doc, _ = _quick("serve_load", tmp_path)
    assert doc["failures"] == 0 and len(doc["results"]) == 4
    for r in doc["results"]:
        assert r["failed"] == 0 and r["value"] > 0 and r["baseline_value"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0


@pytest.mark.slow
@pytest.mark.realdata
def test_tune_benchmark_quick_smoke(tmp_path, mnist_data_dir):
    """The tune benchmark's path: tiny studies with and without pruning, two processes on one study,
    the fast preset's space with its best trial scored."""
    import importlib.util

    from conftest import missing

    if importlib.util.find_spec("optuna") is None:
        missing("optuna is not installed: pip install -e '.[tune]'")
    doc, _ = _quick("tune", tmp_path, mnist_data_dir)
    assert len(doc["results"]) == 3 and all(r["value"] > 0 and r["baseline_value"] > 0 for r in doc["results"])
