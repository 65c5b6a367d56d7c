"""`mnistctl tune`: a study of ordinary runs on Optuna, pruned after an epoch, resumable, shared by
several processes; every artefact written; bad search spaces refused in one line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import missing
from mnistctl.cli.commands import app

pytestmark = pytest.mark.realdata
runner = CliRunner()
TINY = ["--set", "nf=4", "--set", "epoch_fraction=0.02", "--set", "epochs=3", "--set", "eval_batch_size=1000"]


@pytest.fixture(autouse=True)
def _optuna():
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        missing("optuna is not installed: pip install -e '.[tune]'")


def _rows(directory: Path) -> list[dict[str, str]]:
    with (directory / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def _tune(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistctl", "tune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def test_a_study_finishes_prunes_and_writes_every_artefact(tmp_path, mnist_data_dir, monkeypatch):
    """Six trials of a space with one hopeless learning rate: the hopeless ones are pruned after an
    epoch (their run directories kept and marked), the others finish; trials.csv, best-config.json
    (which train --config takes) and the three pictures are written, matplotlib's settings left as
    they were; --json says the same."""
    monkeypatch.setenv("MNISTCTL_DATA_DIR", str(mnist_data_dir))
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.00001, 0.05]\nlabel_smoothing: {float: [0.0, 0.1]}\n")
    study = tmp_path / "study"
    import matplotlib

    def look() -> dict:  # (the backend is Agg for good: files only)
        return {k: v for k, v in matplotlib.rcParams.items() if not k.startswith("backend")}

    before = look()
    result = runner.invoke(app, ["tune", "--space", str(space), "--trials", "6", "--dir", str(study), "--json",
                                 *TINY])
    assert result.exit_code == 0, result.output
    # Optuna's plots switch pyplot to its ggplot style: the process's settings come back after them
    assert look() == before
    doc = json.loads(result.stdout)
    rows = _rows(study)
    assert len(rows) == 6 == len(doc["trials"]) and [int(r["trial"]) for r in rows] == list(range(6))
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned and all(int(r["epochs"]) < 3 for r in pruned), rows  # stopped after the pruner's epoch
    assert any(float(r["lr"]) == 0.00001 for r in pruned), rows
    assert doc["counts"]["pruned"] == len(pruned) and doc["counts"]["complete"] == 6 - len(pruned)
    marked = json.loads((Path(pruned[0]["run_dir"]) / "trial.json").read_text())
    assert marked["state"] == "pruned" and marked["epochs"] == int(pruned[0]["epochs"])
    history = json.loads((Path(pruned[0]["run_dir"]) / "history.json").read_text())["history"]
    assert len(history) == marked["epochs"]
    best = doc["best"]
    assert best["params"]["lr"] == 0.05 and best["value"] == max(float(r["val_acc"]) for r in rows if r["val_acc"])
    for name in ("trials.csv", "best-config.json", "history.png", "slice.png", "importances.png", "tune.json",
                 "study.log"):
        assert (study / name).is_file(), name
    printed = runner.invoke(app, ["train", "--config", str(study / "best-config.json"), "--print-config"])
    assert printed.exit_code == 0, printed.output
    config = json.loads(printed.stdout)
    assert config["train"]["lr"] == 0.05 and config["model"]["nf"] == 4 and config["preset"] == "fast"


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path, mnist_data_dir):
    """A second `tune --resume` on the study's directory works on the same study at the same time:
    every trial number once, trials from both processes, and the study stops at its count."""
    env = {"MNISTCTL_DATA_DIR": str(mnist_data_dir), "OMP_NUM_THREADS": "1"}
    study = tmp_path / "study"
    first = _tune("--trials", "16", "--dir", str(study), "--pruner", "none", *TINY, env=env)
    deadline = time.monotonic() + 60
    while not (study / "tune.json").is_file():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = _tune("--resume", str(study), env=env)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    rows = _rows(study)
    numbers = [int(r["trial"]) for r in rows]
    assert len(numbers) == len(set(numbers)) and sum(r["state"] == "complete" for r in rows) >= 16
    assert len({r["worker"] for r in rows}) == 2, rows  # both processes ran trials


@pytest.mark.slow
def test_sigterm_then_resume_loses_no_trial_and_runs_none_twice(tmp_path, mnist_data_dir):
    """SIGTERM in the middle of a trial: the process stops with the command to resume; resuming runs
    that trial's settings again (as a new trial) and the study ends with its six finished trials."""
    env = {"MNISTCTL_DATA_DIR": str(mnist_data_dir)}
    study = tmp_path / "study"
    slow = ["--set", "nf=8", "--set", "epoch_fraction=0.15", "--set", "epochs=2"]
    proc = _tune("--trials", "6", "--dir", str(study), "--pruner", "none", *slow, env=env)
    deadline = time.monotonic() + 120
    while not list(study.glob("trials/*/trial.json")):  # the first trial finished: the second is under way
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and f"mnistctl tune --resume {study}" in err and "Traceback" not in err, err
    before = _rows(study)
    interrupted = [r for r in before if r["state"] == "failed"]  # the trial in progress (none between trials)
    assert len(interrupted) <= 1 and sum(r["state"] == "complete" for r in before) >= 1, before
    resumed = _tune("--resume", str(study), *slow, env=env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    rows = _rows(study)
    finished = [r for r in rows if r["state"] == "complete"]
    assert len(finished) == 6 and len({r["trial"] for r in rows}) == len(rows) == 6 + len(interrupted)
    settings = {(r["lr"], r["batch_size"], r["label_smoothing"]) for r in finished}
    assert len(settings) == 6  # none run twice
    for failed in interrupted:  # run again, once
        assert (failed["lr"], failed["batch_size"], failed["label_smoothing"]) in settings


@pytest.mark.parametrize("text, suffix, words", [
    ("lr: {log: [0, 0.1]}\n", ".yaml", "log range needs a low bound above 0"),
    ("{\"lr\": {\"log\": [0.1, 0.01]}}", ".json", "low below high"),
    ("{\"learning_rate\": [0.1]}", ".json", "'learning_rate' is not a setting of train"),
    ("{\"batch_size\": [64, 0]}", ".json", "batch_size"),
    ("{\"optimizer\": [\"adam\", \"lion\"]}", ".json", "lion"),
    ("lr: [", ".yaml", "not readable YAML"),
    ("[1, 2]", ".json", "not a mapping of train settings"),
])
def test_a_bad_search_space_is_one_clear_line(tmp_path, text, suffix, words):
    space = tmp_path / f"space{suffix}"
    space.write_text(text)
    result = runner.invoke(app, ["tune", "--space", str(space), "--dir", str(tmp_path / "study")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert words in result.output and "--space" in result.output, result.output
    assert not (tmp_path / "study").exists()  # nothing started


def test_a_database_url_holds_the_study(tmp_path, mnist_data_dir, monkeypatch):
    """--storage: the study lives in a database (SQLite here; PostgreSQL is the same for Optuna),
    and resuming it from its directory finds it there."""
    monkeypatch.setenv("MNISTCTL_DATA_DIR", str(mnist_data_dir))
    study, db = tmp_path / "study", tmp_path / "studies.db"
    result = runner.invoke(app, ["tune", "--trials", "2", "--dir", str(study), "--storage", f"sqlite:///{db}",
                                 "--pruner", "none", *TINY])
    assert result.exit_code == 0, result.output
    assert db.is_file() and not (study / "study.log").exists() and len(_rows(study)) == 2
    again = runner.invoke(app, ["tune", "--resume", str(study), "--json"])
    assert again.exit_code == 0 and len(json.loads(again.stdout)["trials"]) == 2  # already has its trials


def test_settings_that_cannot_train_fail_their_trial_and_the_search_goes_on(tmp_path, mnist_data_dir, monkeypatch):
    """A batch larger than the part of an epoch trained is refused by train: that trial is recorded as
    failed, with the reason, and is not run again on resuming; the other trials go on."""
    monkeypatch.setenv("MNISTCTL_DATA_DIR", str(mnist_data_dir))
    space = tmp_path / "space.json"
    space.write_text('{"batch_size": [64, 100000], "lr": {"log": [0.01, 0.05]}}')
    study = tmp_path / "study"
    result = runner.invoke(app, ["tune", "--space", str(space), "--trials", "3", "--dir", str(study),
                                 "--pruner", "none", "--sampler", "random", *TINY])
    assert result.exit_code == 0, result.output
    rows = _rows(study)
    failed = [r for r in rows if r["state"] == "failed"]
    assert failed and all(r["batch_size"] == "100000" and "batch" in r["error"] for r in failed), rows
    assert sum(r["state"] == "complete" for r in rows) == 3
    again = runner.invoke(app, ["tune", "--resume", str(study)])
    assert again.exit_code == 0 and len(_rows(study)) == len(rows)  # nothing retried, nothing more to do
