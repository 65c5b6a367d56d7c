"""Settings: one place for every default, validation in domain words, the CLI's wording."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from conftest import REPO
from mnistctl.cli.commands import OPTION_OF, app
from mnistctl.config import SETTINGS, DataConfig, ModelConfig, TrainConfig, default, derived_settings, user_settings
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


def _pictures(root):
    """A folder of labelled pictures (one 7), for --extra-images."""
    (root / "7").mkdir(parents=True)
    shutil.copy(REPO / "assets" / "digit-7-photo.jpg", root / "7")
    return str(root)


def _another_value(name, tmp_path):
    """A valid value of setting ``name`` other than its default."""
    _, f, declared = SETTINGS[name]
    value = f.default
    if name == "extra_images":
        return _pictures(tmp_path / "pictures")
    if declared.choices:
        return next(c for c in declared.choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return 0.5 if value == 0 else value / 2


def _as_argument(name, value):
    flag = OPTION_OF[name]
    if isinstance(value, bool):
        return [flag if value else f"--no-{flag[2:]}"]
    return [flag, str(value)]


@pytest.mark.parametrize("name", user_settings())
def test_every_setting_is_one_option_one_config_key_and_one_field(tmp_path, name):
    """The CLI, a config file and the dataclass agree on each declared setting: its option sets the
    same config.json value that the key does in a config file and the field does in Python."""
    owner, f, declared = SETTINGS[name]
    section = {ModelConfig: "model", DataConfig: "data", TrainConfig: "train"}[owner]
    value = _another_value(name, tmp_path)
    # a share of extra images needs the images
    companion = {"extra_images": _pictures(tmp_path / "mine")} if name == "extra_share" else {}
    expected = owner(**{name: value, **companion}).to_dict()[name]
    assert expected == value != f.default

    arguments = [a for k, v in {name: value, **companion}.items() for a in _as_argument(k, v)]
    by_option = runner.invoke(app, ["train", *arguments, "--print-config"])
    assert by_option.exit_code == 0, by_option.output
    assert json.loads(by_option.stdout)[section][name] == expected

    config = tmp_path / "settings.json"
    config.write_text(json.dumps({name: value, **companion}))
    by_file = runner.invoke(app, ["train", "--config", str(config), "--print-config"])
    assert by_file.exit_code == 0, by_file.output
    assert json.loads(by_file.stdout) == json.loads(by_option.stdout)

    help_text = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).stdout.split())
    assert re.search(rf"{re.escape(OPTION_OF[name])}\b", help_text)
    assert " ".join(declared.help.split()) in help_text


def test_derived_settings_have_no_option():
    help_text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).stdout
    for name in derived_settings():
        assert f"--{name.replace('_', '-')}" not in help_text, name
    assert set(user_settings()) | set(derived_settings()) == set(SETTINGS)


def test_a_bad_value_of_any_setting_names_its_option(tmp_path):
    for name in user_settings():
        _, f, declared = SETTINGS[name]
        if isinstance(f.default, bool):
            continue  # a flag has no bad value on the command line
        outside_the_rule = ["-7"] if declared.rule is not None and not declared.rule(-7) else []
        for bad in ["nonsense", *outside_the_rule]:
            result = runner.invoke(app, ["train", OPTION_OF[name], bad, "--print-config"])
            assert result.exit_code != 0, (name, bad)
            assert OPTION_OF[name] in result.output, (name, bad, result.output)
            assert "Traceback" not in result.output


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
