"""A smoke run of the benchmark entry point (the suite itself is not a test: too slow, too noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.realdata
def test_benchmark_quick_smoke(tmp_path, mnist_data_dir):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--output", str(out)],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "MNISTCTL_DATA_DIR": str(mnist_data_dir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
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


def test_benchmark_without_data_says_what_to_do(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick",
                           "--output", str(tmp_path / "x.json"), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "mnistctl download" in proc.stderr and "Traceback" not in proc.stderr
