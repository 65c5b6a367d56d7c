"""``import mnistctl``: the Python API is what the CLI does, from Python."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mnistctl
from mnistctl.cli.commands import app
from mnistctl.errors import ConfigError

runner = CliRunner()
SETTINGS = {"nf": 4, "epochs": 2, "batch_size": 100, "lr": 0.02, "seed": 3, "augment": False}


def test_import_mnistctl_offers_the_api_without_importing_torch():
    code = ("import sys, mnistctl; names = [getattr(mnistctl, n) for n in ('train', 'load', 'evaluate', 'export')]; "
            "print(all(callable(f) for f in names), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
    assert sorted(mnistctl.__all__) == sorted(["__version__", *mnistctl._LAZY])
    for name in mnistctl.__all__:
        assert getattr(mnistctl, name) is not None
    with pytest.raises(AttributeError):
        mnistctl.no_such_thing  # noqa: B018


def test_train_from_python_writes_what_the_cli_writes(tmp_path, fake_data_dir):
    """The same settings give the same config.json and the same weights from mnistctl.train and
    from `mnistctl train`: the CLI asks the core, which decides."""
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    args = ["train", "--preset", "fast", "--nf", "4", "--epochs", "2", "--batch-size", "100", "--lr", "0.02",
            "--seed", "3", "--no-augment", "--quiet", "--run-dir", str(cli_dir), "--data-dir", str(fake_data_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = mnistctl.train("fast", run_dir=api_dir, data_dir=fake_data_dir, **SETTINGS)
    assert isinstance(run, mnistctl.Run) and run.best_path == api_dir / "best.pt"
    assert [r.epoch for r in run.history] == [1, 2]
    assert json.loads((cli_dir / "config.json").read_text()) == json.loads((api_dir / "config.json").read_text())
    cli_weights = torch.load(cli_dir / "last.pt", weights_only=True)["weights"]
    api_weights = torch.load(api_dir / "last.pt", weights_only=True)["weights"]
    assert cli_weights.keys() == api_weights.keys()
    assert all(torch.equal(cli_weights[k], api_weights[k]) for k in cli_weights)


def test_train_from_python_reads_a_config_file_under_the_explicit_settings(tmp_path, fake_data_dir):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"nf": 6, "epochs": 1, "lr": 0.5, "epoch_fraction": 0.5}))
    run = mnistctl.train(config=config, lr=0.03, run_dir=tmp_path / "run", data_dir=fake_data_dir)
    written = json.loads((run.run_dir / "config.json").read_text())
    assert written["model"]["nf"] == 6 and written["train"]["lr"] == 0.03 and written["train"]["epochs"] == 1


@pytest.mark.parametrize("settings, setting", [({"nf": 0}, "nf"), ({"optimizer": "lbfgs"}, "optimizer")])
def test_bad_settings_from_python_are_config_errors_naming_the_setting(tmp_path, settings, setting):
    with pytest.raises(ConfigError) as err:
        mnistctl.train(run_dir=tmp_path / "run", **settings)
    assert err.value.setting == setting and "--" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_unknown_settings_from_python_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        mnistctl.train(run_dir=tmp_path / "run", colour="blue")


def test_load_and_predict_pictures_and_arrays():
    clf = mnistctl.load()
    assert isinstance(clf, mnistctl.Classifier)
    photo, junk = clf.predict(["assets/digit-7-photo.jpg", b"not a picture"])
    assert photo.path == "assets/digit-7-photo.jpg" and photo.prediction.label == "7" and photo.error is None
    assert junk.prediction is None and "not an image" in junk.error
    [one] = clf.predict(photo.image)  # the prepared 28x28 input, read as it is
    assert one.prediction.label == "7"
    batch = np.stack([photo.image, np.zeros((28, 28), np.uint8)])
    readings = clf.predict(batch)
    assert [r.prediction.probabilities for r in readings] == [p.probabilities for p in clf.classify(batch)]


@pytest.mark.slow
def test_evaluate_from_python_is_evaluate_json(tmp_path, tiny_run):
    run, fake_data_dir = tiny_run
    evaluation = mnistctl.evaluate(run.best_path, data_dir=fake_data_dir, device="cpu")
    result = runner.invoke(app, ["evaluate", str(run.best_path), "--json", "--device", "cpu", "--data-dir",
                                 str(fake_data_dir)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = json.loads(json.dumps(evaluation.to_dict([run.best_path])))
    assert shown.pop("seconds") > 0 and expected.pop("seconds") > 0  # the time it took differs
    assert shown == expected
    assert shown["accuracy"] == evaluation.report.accuracy
    same = mnistctl.evaluate(mnistctl.load(run.best_path), data_dir=fake_data_dir)  # a Classifier is taken too
    assert same.report.accuracy == evaluation.report.accuracy

    exported = mnistctl.export(run.best_path, tmp_path / "model.onnx", data_dir=fake_data_dir)
    assert exported.path.is_file() and exported.format == "onnx"
    assert exported.test_accuracy == pytest.approx(evaluation.report.accuracy)
