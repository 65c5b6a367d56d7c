"""Training you can watch anywhere and reuse: plain lines outside a terminal, metrics.csv with
per-step losses, comparable losses under label smoothing, config.json and --config, extending a
finished run, fine-tuning with --init, --patience, --threads, and digits without colour."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from typer.testing import CliRunner

from mnistctl import checkpoint
from mnistctl.cli.commands import app
from mnistctl.cli.terminal import RAMP, colourless, digit_text
from mnistctl.config import ModelConfig, TrainConfig
from mnistctl.model import Net
from mnistctl.plotting import history_figure
from mnistctl.runfiles import read_steps
from mnistctl.training import loop as engine

runner = CliRunner()


def _train(tmp_path: Path, data: Path, *args: str, run: str = "run"):
    return runner.invoke(app, ["train", "--data-dir", str(data), "--run-dir", str(tmp_path / run), "--nf", "4",
                               *args])


def test_a_pipe_gets_plain_lines_and_the_run_directory_everything_to_reuse(tmp_path, fake_data_dir):
    result = _train(tmp_path, fake_data_dir, "--epochs", "2", "--label-smoothing", "0.1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = [line for line in out.splitlines() if re.match(r"epoch \d/2: train loss", line)]
    assert len(lines) == 2 and "(best)" in lines[0]
    assert "\x1b[" not in out and "━" not in out and "│" not in out  # no live display or table in a pipe
    assert "losses shown are plain cross-entropy" in out

    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["nf"] == 4 and config["train"]["epochs"] == 2 and config["train"]["label_smoothing"] == 0.1
    assert config["mnistctl_version"] and config["torch_version"] == torch.__version__
    assert config["preset"] == "original"

    history = json.loads((run / "history.json").read_text())["history"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    steps = read_steps((run / "metrics.csv").read_text())
    per_epoch = len([r for r in rows if r["kind"] == "step" and r["epoch"] == "1"])
    assert per_epoch >= 5 and len(steps) == 2 * per_epoch  # every step of these short epochs
    assert [s.progress for s in steps] == sorted(s.progress for s in steps) and steps[-1].progress == 2.0
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [float(r["val_acc"]) for r in epochs] == [round(h["val_acc"], 6) for h in history]
    # label smoothing: the reported losses are plain cross-entropy, the smoothed objective beside them
    assert all("train_objective" in h and h["train_objective"] != h["train_loss"] for h in history)


def test_quiet_prints_only_the_summary(tmp_path, fake_data_dir):
    result = _train(tmp_path, fake_data_dir, "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" not in result.stdout and "Training nf=4" not in result.stdout
    assert "Done in" in result.stdout and "Next: mnistctl evaluate" in result.stdout


def test_a_fraction_of_each_epoch_shortens_the_epochs_and_their_schedule(tmp_path, fake_data_dir):
    whole = _train(tmp_path, fake_data_dir, "--epochs", "2", run="whole")
    part = _train(tmp_path, fake_data_dir, "--epochs", "2", "--epoch-fraction", "0.5", run="part")
    assert whole.exit_code == 0 and part.exit_code == 0, part.output
    assert "2 epochs of 8 steps, batch 64" in " ".join(whole.stdout.split())
    assert "2 epochs of 4 steps (50% of the training images each), batch 64" in " ".join(part.stdout.split())
    steps = read_steps((tmp_path / "part" / "metrics.csv").read_text())
    assert len(steps) == 8 and steps[-1].progress == 2.0
    history = json.loads((tmp_path / "part" / "history.json").read_text())["history"]
    opt = engine.make_optimizer(Net(ModelConfig(nf=4)), TrainConfig())
    schedule = engine.make_scheduler(opt, TrainConfig(epochs=2), 4)
    for _ in range(8):
        opt.step()
        schedule.step()
    assert history[-1]["lr"] == pytest.approx(schedule.get_last_lr()[0])  # the one-cycle ran its course in 8 steps
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    assert config["train"]["epoch_fraction"] == 0.5


def test_reported_train_loss_is_the_plain_cross_entropy_with_label_smoothing():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    model = Net(ModelConfig(nf=4, batchnorm=False))
    cfg = TrainConfig(epochs=1, lr=1e-12, batch_size=64, augment=False, label_smoothing=0.2)
    with torch.no_grad():
        logits = model(x[:, None].float())
    optimizer = engine.make_optimizer(model, cfg)
    stats = engine.train_one_epoch(engine.Learner(model, optimizer, engine.make_scheduler(optimizer, cfg, 1)), x, y,
                                   cfg, 0, engine.EpochStats())
    order = torch.randperm(64, generator=torch.Generator().manual_seed(engine.derive_seed(cfg.seed, 0)))
    assert abs(stats.loss - F.cross_entropy(logits, y).item()) < 1e-5  # the order of a batch does not matter
    assert abs(stats.objective - F.cross_entropy(logits[order], y[order], label_smoothing=0.2).item()) < 1e-5
    assert stats.objective != stats.loss


def test_the_loss_plot_draws_the_per_step_curve_of_a_one_epoch_run(tmp_path, fake_data_dir):
    assert _train(tmp_path, fake_data_dir, "--epochs", "1").exit_code == 0
    from mnistctl.plotting import load_history

    label, history, steps = load_history(tmp_path / "run")
    fig = history_figure([(label, history, steps)])
    per_step = fig.axes[0].lines[0]
    assert len(per_step.get_xdata()) == len(steps) > 5 and "per step" in per_step.get_label()
    log = history_figure([(label, history, steps)], error_log=True)
    assert log.axes[1].get_yscale() == "log" and "Error" in log.axes[1].get_title()
    result = runner.invoke(app, ["plot", str(tmp_path / "run"), "-o", str(tmp_path / "p.png"), "--error-log"])
    assert result.exit_code == 0 and (tmp_path / "p.png").stat().st_size > 10_000


def test_config_file_round_trip_and_print_config(tmp_path, fake_data_dir):
    assert _train(tmp_path, fake_data_dir, "--epochs", "1", "--lr", "0.02", "--seed", "5").exit_code == 0
    config = tmp_path / "run" / "config.json"
    shown = runner.invoke(app, ["train", "--config", str(config), "--batch-size", "32", "--print-config",
                                "--run-dir", str(tmp_path / "never")])
    assert shown.exit_code == 0, shown.output
    resolved = json.loads(shown.stdout)
    assert resolved["train"]["lr"] == 0.02 and resolved["train"]["seed"] == 5 and resolved["train"]["batch_size"] == 32
    assert resolved["model"]["nf"] == 4 and not (tmp_path / "never").exists()  # printed, nothing trained
    again = runner.invoke(app, ["train", "--config", str(config), "--data-dir", str(fake_data_dir),
                                "--run-dir", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    first, second = (json.loads((tmp_path / r / "config.json").read_text()) for r in ("run", "again"))
    assert {k: first[k] for k in ("model", "data", "train")} == {k: second[k] for k in ("model", "data", "train")}
    a, b = (checkpoint.load(tmp_path / r / "last.pt") for r in ("run", "again"))
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)  # re-run from the file: the same run
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"nf": 6, "epochs": 3, "colour": "red"}))
    bad = runner.invoke(app, ["train", "--config", str(flat), "--print-config"])
    assert bad.exit_code == 1 and "does not know: colour" in bad.stderr


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path, fake_data_dir):
    assert _train(tmp_path, fake_data_dir, "--epochs", "1").exit_code == 0
    last = tmp_path / "run" / "last.pt"
    refused = runner.invoke(app, ["train", "--resume", str(last), "--data-dir", str(fake_data_dir)])
    assert refused.exit_code == 1 and "--epochs must be above 1" in refused.stderr
    more = runner.invoke(app, ["train", "--resume", str(last), "--epochs", "2", "--data-dir", str(fake_data_dir)])
    assert more.exit_code == 0, more.output
    assert "extended to 2 epochs" in more.stdout
    done = checkpoint.load(last)
    assert done.epoch == 2 and len(done.history) == 2 and done.train_config.epochs == 2
    steps = read_steps((tmp_path / "run" / "metrics.csv").read_text())
    assert {s.epoch for s in steps} == {1, 2}


def test_resume_of_an_unfinished_run_warns_that_epochs_is_ignored(tmp_path, fake_data_dir):
    from conftest import make_checkpoint

    path = make_checkpoint(nf=4).save(tmp_path / "run" / "last.pt")  # stopped in epoch 4 of 10
    result = runner.invoke(app, ["train", "--resume", str(path), "--epochs", "20", "--lr", "0.5", "--print-config"])
    assert result.exit_code == 0, result.output
    warnings = " ".join(result.stderr.split())
    assert "epochs 20 is ignored" in warnings and "until it is finished" in warnings and "lr 0.5 is ignored" in warnings


def test_init_fine_tunes_from_the_built_in_model(tmp_path, fake_data_dir):
    result = _train(tmp_path, fake_data_dir, "--init", "builtin", "--epochs", "1")
    assert result.exit_code == 1 and "--nf cannot be changed when fine-tuning" in result.stderr
    result = runner.invoke(app, ["train", "--data-dir", str(fake_data_dir), "--run-dir", str(tmp_path / "ft"),
                                 "--init", "builtin", "--epochs", "1", "--lr", "1e-9", "--no-augment"])
    assert result.exit_code == 0, result.output
    assert "from the weights of built-in model" in result.stdout
    builtin, tuned = checkpoint.load_or_pretrained(None), checkpoint.load(tmp_path / "ft" / "last.pt")
    assert tuned.model_config.nf == builtin.model_config.nf
    conv = "features.0.0.weight"
    assert torch.allclose(tuned.weights[conv], builtin.weights[conv], atol=1e-5)  # lr ~0: the weights it started from
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init"].startswith("built-in model")


def test_patience_stops_when_validation_accuracy_stops_improving(tmp_path, fake_data_dir):
    result = _train(tmp_path, fake_data_dir, "--epochs", "6", "--patience", "2", "--lr", "1e-9", "--no-augment",
                    "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "(1 thread)" in result.stdout
    assert "Stopped early after epoch 3: no better validation accuracy for 2 epochs" in " ".join(result.stdout.split())
    assert checkpoint.load(tmp_path / "run" / "last.pt").epoch == 3


def test_digits_without_colour_use_characters():
    digit = [[0] * 28 for _ in range(28)]
    for r in range(6, 22):
        digit[r][13] = digit[r][14] = 255
    plain, coloured = digit_text(digit, plain=True), digit_text(digit)
    assert "\u2580" not in plain.plain and RAMP[-1] in plain.plain and len(plain.plain.splitlines()) == 14
    assert "\u2580" in coloured.plain
    assert colourless(Console(no_color=True, force_terminal=True))
    assert colourless(Console(force_terminal=False, file=open("/dev/null", "w")))  # noqa: SIM115
    assert not colourless(Console(force_terminal=True, color_system="truecolor"))



def test_tensorboard_event_files_hold_the_same_scalars(tmp_path, fake_data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _train(tmp_path, fake_data_dir, "--epochs", "2", "--tensorboard")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_per_step", "train/lr", "train/loss", "val/loss", "val/accuracy"} <= tags
    steps = read_steps((tmp_path / "run" / "metrics.csv").read_text())
    assert [e.value for e in events.Scalars("train/loss_per_step")] == pytest.approx([s.train_loss for s in steps],
                                                                                     abs=1e-5)
    history = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx([h["val_acc"] for h in history], abs=1e-6)
