"""Settings: one place for every default, validation in domain words, the CLI's wording."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from mnistctl.cli.commands import OPTION_OF, app
from mnistctl.config import DataConfig, ModelConfig, TrainConfig, default
from mnistctl.errors import ConfigError
from mnistctl.recipes import PRESETS

runner = CliRunner()


@pytest.mark.parametrize("make, setting, words", [
    (lambda: ModelConfig(nf=0), "nf", "nf must be a whole number from 1 to 512"),
    (lambda: ModelConfig(dropout=1.0), "dropout", "dropout must be in [0, 1)"),
    (lambda: TrainConfig(lr=0), "lr", "lr must be a positive number"),
    (lambda: TrainConfig(lr=float("inf")), "lr", "lr must be a positive number"),
    (lambda: TrainConfig(batch_size=0), "batch_size", "batch size must be at least 1"),
    (lambda: TrainConfig(epochs=0), "epochs", "epochs must be at least 1"),
    (lambda: TrainConfig(epoch_fraction=0), "epoch_fraction", "epoch fraction must be in (0, 1]"),
    (lambda: TrainConfig(epoch_fraction=1.5), "epoch_fraction", "epoch fraction must be in (0, 1]"),
    (lambda: TrainConfig(optimizer="adagrad"), "optimizer", "optimizer must be one of adam, adamw, sgd"),
    (lambda: TrainConfig(label_smoothing=1), "label_smoothing", "label smoothing must be in [0, 1)"),
    (lambda: DataConfig(val_fraction=1.5), "val_fraction", "val fraction must be between 0 and 1"),
])
def test_invalid_settings_are_named_in_domain_words(make, setting, words):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.setting == setting and str(err.value).startswith(words)
    assert "--" not in str(err.value)  # option names are the CLI's business


@pytest.mark.parametrize("args, option", [
    (["--lr", "0"], "--lr"), (["--nf", "0"], "--nf"), (["--batch-size", "0"], "--batch-size"),
    (["--val-split", "1"], "--val-split"), (["--epochs", "0"], "--epochs"), (["--dropout", "2"], "--dropout"),
    (["--label-smoothing", "1"], "--label-smoothing"), (["--weight-decay", "-1"], "--weight-decay"),
    (["--epoch-fraction", "0"], "--epoch-fraction"),
])
def test_cli_rejects_bad_options_before_any_work(tmp_path, args, option):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", *args, "--run-dir", str(run_dir), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {option} ") and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run_dir.exists()  # nothing was started


def test_every_setting_has_an_option():
    for cls in (TrainConfig, DataConfig):
        for name in cls.__dataclass_fields__:
            if name not in ("eval_batch_size", "split_seed"):
                assert name in OPTION_OF, name
    for name in ("nf", "dropout"):
        assert name in OPTION_OF


def test_help_shows_the_defaults_of_the_config_dataclasses():
    out = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).stdout.split())
    for cls, name, option in [(TrainConfig, "epochs", "--epochs"), (TrainConfig, "lr", "--lr"),
                              (TrainConfig, "batch_size", "--batch-size"), (ModelConfig, "nf", "--nf"),
                              (TrainConfig, "seed", "--seed"), (TrainConfig, "optimizer", "--optimizer")]:
        value = default(cls, name)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert re.search(rf"{option}\b.*?\[default: {re.escape(shown)}\]", out), (option, shown)
    for preset in PRESETS:
        assert preset in out


def test_presets_only_name_real_settings():
    settings = set(TrainConfig.__dataclass_fields__) | {"nf", "dropout", "batchnorm"}
    for name, recipe in PRESETS.items():
        assert set(recipe) <= settings, name
        TrainConfig(**{k: v for k, v in recipe.items() if k in TrainConfig.__dataclass_fields__})
