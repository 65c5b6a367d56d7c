"""The docs: the CLI reference is generated from the Typer app and must not drift from it; the
reference pages name every key, route and metric; the blocks marked runnable run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

REFERENCE = REPO / "docs" / "reference" / "cli.md"
# how docs/reference/cli.md is made (and remade after a command or option changes)
GENERATE = [sys.executable, "-m", "typer", "mnistctl.cli.commands", "utils", "docs", "--name", "mnistctl",
            "--title", "Commands and options"]


def test_the_cli_reference_is_what_the_typer_app_says(tmp_path):
    out = tmp_path / "cli.md"
    proc = subprocess.run([*GENERATE, "--output", str(out)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == REFERENCE.read_text(), (
        "docs/reference/cli.md is out of date: regenerate it with "
        "`python -m typer mnistctl.cli.commands utils docs --name mnistctl --title 'Commands and options' "
        "--output docs/reference/cli.md`")


def test_the_reference_names_every_option_of_every_command():
    from typer.main import get_command

    from mnistctl.cli.commands import app

    text = REFERENCE.read_text()
    group = get_command(app)
    for name, command in group.commands.items():
        assert f"## `mnistctl {name}`" in text, name
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("--"):
                    assert f"{flag}" in text, (name, flag)


def test_readme_is_a_front_page_and_help_points_to_the_docs():
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for marker in ("<!-- ci: setup -->", "<!-- ci: test -->", "<!-- ci: system -->", "## Quickstart"):
        assert marker in readme
    for link in ("docs/tutorial.md", "docs/reference/cli.md", "docs/training.md", "docs/serve.md"):
        assert f"]({link})" in readme and (REPO / link).is_file()
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "Docs: docs/index.md" in help_text


def _documented(page: str) -> set[str]:
    """The names a docs page writes as code (each word between backticks: `GET /health` names both)."""
    import re

    text = re.sub(r"```.*?```", "", (REPO / "docs" / page).read_text(), flags=re.S)  # not the code blocks
    return {word for span in re.findall(r"`([^`]+)`", text) for word in span.split()}


def test_every_key_of_a_runs_files_is_in_the_files_reference(tiny_run):
    """docs/reference/files.md names every file of a run directory, every key of config.json,
    history.json and a checkpoint, every column of metrics.csv and every key of the ONNX model's
    metadata, as mnistctl writes them today: a key added without its line fails here."""
    import csv
    import json

    import onnxruntime as ort
    import torch

    from mnistctl.inference.onnx_format import pretrained_onnx_path

    run, _ = tiny_run
    names = _documented("reference/files.md")
    assert {p.name for p in run.run_dir.iterdir()} <= names
    config = json.loads((run.run_dir / "config.json").read_text())
    keys = set(config) | {k for part in ("model", "data", "train") for k in config[part]}
    history = json.loads((run.run_dir / "history.json").read_text())
    keys |= set(history) | {k for record in history["history"] for k in record} | {"train_objective"}
    with (run.run_dir / "metrics.csv").open() as f:
        keys |= set(next(csv.reader(f)))
    payload = torch.load(run.run_dir / "last.pt", weights_only=True)
    keys |= set(payload) | set(payload["training"]) | set(payload["best"])
    meta = ort.InferenceSession(str(pretrained_onnx_path())).get_modelmeta().custom_metadata_map
    keys |= set(meta) | {"pixels", "logits", "probabilities"}
    assert keys - names == set(), sorted(keys - names)


def test_every_route_and_metric_of_serve_is_in_the_http_reference():
    """docs/reference/http.md names every route of the app and every metric it exports."""
    from mnistctl.inference.classifier import load_classifier
    from mnistctl.serve.app import create_app

    guard = create_app(load_classifier(None))
    names = _documented("reference/http.md")
    routes = {r.path for r in guard.app.routes}
    assert routes - names == set(), sorted(routes - names)
    exported = {m.name + ("_total" if m.type == "counter" else "") for m in guard.metrics.registry.collect()}
    assert exported - names == set(), sorted(exported - names)


RUN_MARKER = "<!-- run -->"  # a docs page's shell block after this line is run by the test below


def runnable(page: Path) -> list[str]:
    """The command lines of ``page``'s blocks marked runnable (the marker alone on the line above), in order."""
    lines = []
    for part in ("\n" + page.read_text(encoding="utf-8")).split(f"\n{RUN_MARKER}\n")[1:]:
        assert part.startswith("```bash\n"), f"{page.name}: {RUN_MARKER} must stand right above a ```bash block"
        block = part.split("```bash\n", 1)[1].split("```", 1)[0]
        lines += [line.split(" #", 1)[0].strip() for line in block.strip().splitlines()]
    return lines


PAGES_WITH_RUNS = sorted(p for p in (REPO / "docs").rglob("*.md") if runnable(p))


def test_the_tutorial_is_runnable():
    assert REPO / "docs" / "tutorial.md" in PAGES_WITH_RUNS and len(runnable(REPO / "docs" / "tutorial.md")) >= 5


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("page", PAGES_WITH_RUNS, ids=lambda p: p.name)
def test_runnable_blocks_work_as_written(page, tmp_path, mnist_data_dir, monkeypatch):
    """Every command of a block marked runnable, run as written in a scratch directory on the real
    MNIST (``my-digit.jpg`` is the shipped photo; ``runs/<run>`` the run the page trained)."""
    import re
    import shlex
    import shutil

    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTCTL_DATA_DIR", str(mnist_data_dir))
    (tmp_path / "assets").symlink_to(REPO / "assets")
    shutil.copy(REPO / "assets" / "digit-7-photo.jpg", tmp_path / "my-digit.jpg")
    run = None
    for line in runnable(page):
        words = shlex.split(line)
        assert words[0] == "mnistctl", line
        args = [w.replace("runs/<run>", f"runs/{run}") for w in words[1:]]
        assert not any("<" in a for a in args), f"a placeholder before any run exists: {line}"
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "Traceback" not in result.output, (line, result.output)
        found = re.search(r"runs/([\w.-]+)/best\.pt", result.stdout)
        if args[:1] == ["train"] and found:
            run = found.group(1)


def test_the_results_page_is_what_the_benchmark_files_say():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "report.py"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.realdata
def test_the_preparation_strip_is_made_by_its_script(tmp_path, mnist_data_dir):
    """docs/assets/preparation-strip.png comes from docs/scripts/preparation_strip.py: it runs, and
    draws a picture of the committed one's size (pictures above, prepared inputs below)."""
    from PIL import Image

    out = tmp_path / "strip.png"
    proc = subprocess.run([sys.executable, str(REPO / "docs" / "scripts" / "preparation_strip.py"), "--data-dir",
                           str(mnist_data_dir), "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made, shipped = Image.open(out), Image.open(REPO / "docs" / "assets" / "preparation-strip.png")
    assert made.size == shipped.size
    bottom = made.convert("L").crop((0, made.height // 2, made.width, made.height - 20))
    assert 0 < sum(bottom.histogram()[128:]) < bottom.width * bottom.height / 3  # light digits on black


@pytest.mark.slow
@pytest.mark.realdata
def test_the_preset_curves_are_drawn_by_their_script(tmp_path, mnist_data_dir):
    """docs/assets/preset-curves.png comes from docs/scripts/preset_curves.py (here with one epoch of
    the original preset): it trains, plots the three presets and writes a PNG."""
    import os

    out = tmp_path / "curves.png"
    proc = subprocess.run([sys.executable, str(REPO / "docs" / "scripts" / "preset_curves.py"), "--epochs", "1",
                           "--output", str(out)], capture_output=True, text=True,
                          env={**os.environ, "MNISTCTL_DATA_DIR": str(mnist_data_dir)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fast, original, best (the built-in model)" in proc.stdout and out.stat().st_size > 20_000
