"""The docs: the CLI reference is generated from the Typer app and must not drift from it."""

from __future__ import annotations

import subprocess
import sys

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
