"""README's Quickstart commands, run as written (in a scratch directory, on the real MNIST), so the
README cannot drift from what the code does."""

from __future__ import annotations

import os
import re
import shlex

import pytest
from typer.testing import CliRunner

from conftest import REPO
from mnistctl.cli.commands import app

runner = CliRunner()
# commands that cannot run here, and where they are checked instead
ELSEWHERE = {
    "download --dataset fashion-mnist": "needs the internet: the offline mirror holds MNIST only (test_download "
                                        "checks the registry)",
    "train --nf 32 --epochs 10": "1.5 minutes: benchmarks/ time it and test_train runs the same recipe shorter",
    "serve": "runs until Ctrl-C: test_serve and test_browser start it",
}


def quickstart() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.strip().splitlines():
        words = shlex.split(line.split("#", 1)[0])
        assert words[0] == "mnistctl", line
        commands.append(words[1:])
    return commands


@pytest.mark.slow
@pytest.mark.realdata
def test_every_quickstart_command_works_as_written(tmp_path, mnist_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTCTL_DATA_DIR", str(mnist_data_dir))
    (tmp_path / "assets").symlink_to(REPO / "assets")
    commands = quickstart()
    assert len(commands) >= 10
    run = None
    for args in commands:
        line = " ".join(args)
        if any(line == skip or line.startswith(skip + " ") for skip in ELSEWHERE):
            continue
        if run is not None:
            args = [a.replace("runs/<run>", f"runs/{run}").replace("runs/<other-run>", f"runs/{run}") for a in args]
        assert not any("<" in a for a in args), f"a placeholder before any run exists: {line}"
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (line, result.output)
        assert "Traceback" not in result.output
        if args[:1] == ["train"]:
            run = re.search(r"runs/([\w.-]+)/best\.pt", result.stdout).group(1)
    assert run is not None and (tmp_path / "runs" / run / "metrics.csv").is_file()
    for made in ("grid.png", "test.png", "compare.png", "figures/confusion.png"):
        assert (tmp_path / made).stat().st_size > 1000, made
    assert set(os.listdir(tmp_path / "figures")) >= {"confusion.png", "mistakes.png"}


def test_skipped_commands_are_in_the_quickstart():
    lines = [" ".join(args) for args in quickstart()]
    for skip in ELSEWHERE:
        assert any(line == skip or line.startswith(skip + " ") for line in lines), skip
