"""The command line as a user meets it: help, version, errors, download and samples."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import write_mirror
from mnistctl import __version__
from mnistctl.cli.commands import app

runner = CliRunner()


def test_help_lists_commands_without_importing_torch_or_matplotlib():
    code = ("import sys\nfrom mnistctl.cli.commands import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "download" in out and "samples" in out
    assert "HEAVY []" in out


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "mnistctl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"mnistctl {__version__}"


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    result = runner.invoke(app, ["download", "--dataset", "cifar", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "mnist" in result.output and "fashion-mnist" in result.output and "kmnist" in result.output


def test_download_from_unreachable_mirror_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MNISTCTL_MIRROR", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "mnistctl", "download", "--data-dir", str(tmp_path), "--mirror",
         "http://127.0.0.1:9/", "--timeout", "5"], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: could not download")
    assert "http://127.0.0.1:9/ -> connection refused" in lines[0] and "--mirror" in lines[0]
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "mnist").glob("*-ubyte"))


def test_download_then_samples_with_made_up_data(tmp_path, monkeypatch, fake_files):
    """The whole path with a local mirror, for a data set whose checksums we control."""
    from conftest import fake_info
    from mnistctl import datasets

    monkeypatch.setitem(datasets.REGISTRY, "mnist", fake_info(fake_files, name="mnist"))
    mirror = write_mirror(tmp_path / "mirror", fake_files)
    monkeypatch.setenv("MNISTCTL_MIRROR", str(mirror))
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["download", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "downloaded" in result.stdout and "train-images-idx3-ubyte" in result.stdout
    again = runner.invoke(app, ["download", "--data-dir", str(data_dir)])
    assert again.stdout.count("present") == 4

    png = tmp_path / "out" / "grid.png"
    result = runner.invoke(app, ["samples", "-n", "7", "--split", "test", "-o", str(png), "--terminal",
                                 "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 200
    # not a terminal: the digits drawn in characters of increasing density, not colour half blocks
    assert "\u2580" not in result.stdout and "@" in result.stdout
    assert f"Saved 7 test digits to {png}" in " ".join(result.stdout.split())


def test_samples_without_data_says_to_download(tmp_path):
    result = runner.invoke(app, ["samples", "--data-dir", str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert "mnistctl download" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_data_dir_env_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTCTL_DATA_DIR", str(tmp_path / "envdir"))
    result = runner.invoke(app, ["samples", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and str(tmp_path / "envdir") in " ".join(result.stderr.split())


@pytest.mark.realdata
def test_samples_on_real_mnist(mnist_data_dir, tmp_path):
    png = tmp_path / "grid.png"
    result = runner.invoke(app, ["samples", "-o", str(png), "--data-dir", str(mnist_data_dir), "--seed", "1"])
    assert result.exit_code == 0, result.output
    with Image.open(png) as img:
        assert img.size[0] > 300 and img.size[1] > 300
