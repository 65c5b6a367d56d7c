"""The network, the training loop and inference, on made-up tensors (no data set needed)."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from mnistctl import recipes
from mnistctl.cli.commands import Optimizer, Schedule
from mnistctl.config import ModelConfig, TrainConfig
from mnistctl.errors import ConfigError
from mnistctl.model import Net, expected_shapes
from mnistctl.training import loop as engine

CPU = torch.device("cpu")


def test_network_shape_follows_the_original():
    model = Net(ModelConfig(nf=16))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1))]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 64, 3, 3)  # 28 -> 14 -> 7 -> 3
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert (dense[0].in_features, dense[0].out_features) == (576, 64)
    assert dense[-1].out_features == 10
    wide = [m for m in Net(ModelConfig(nf=32)).modules() if isinstance(m, torch.nn.Linear)]
    assert (wide[0].in_features, wide[0].out_features) == (1152, 128)


@pytest.mark.parametrize("cfg", [ModelConfig(nf=4), ModelConfig(nf=16, batchnorm=False),
                                 ModelConfig(nf=8, num_classes=26)])
def test_expected_shapes_match_the_real_network(cfg):
    real = {k: tuple(v.shape) for k, v in Net(cfg).state_dict().items()}
    assert expected_shapes(cfg) == real


def test_the_network_normalises_its_0_255_input_itself():
    torch.manual_seed(0)
    model = Net(ModelConfig(nf=4)).eval()
    pixels = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    by_hand = (pixels.float() / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        assert torch.equal(model(pixels), model.classifier(model.features(by_hand)))
        assert torch.equal(model(pixels), model(pixels.float()))  # uint8 or float, the same
    other = Net(ModelConfig(nf=4, mean=0.5, std=0.5)).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.equal(model(pixels), other(pixels))


def test_registries_match_the_choices_the_cli_offers():
    assert tuple(engine.OPTIMIZER_REGISTRY) == recipes.OPTIMIZERS == get_args(Optimizer)
    assert tuple(engine.SCHEDULE_REGISTRY) == recipes.SCHEDULES == get_args(Schedule)
    model = Net(ModelConfig(nf=4))
    for name in recipes.OPTIMIZERS:
        opt = engine.make_optimizer(model, TrainConfig(optimizer=name, lr=0.1))
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
        for schedule in recipes.SCHEDULES:
            engine.make_scheduler(opt, TrainConfig(schedule=schedule, epochs=2), 5)


def test_the_one_cycle_schedule_works_for_runs_of_a_few_steps():
    """5 steps in all made torch's OneCycleLR divide by zero (its warm-up ended on the first step):
    ``train --preset best --epochs 1 --epoch-fraction 0.01`` crashed. Short runs start at the peak."""
    model = Net(ModelConfig(nf=4))
    for total in range(1, 13):
        opt = engine.make_optimizer(model, TrainConfig(lr=0.1))
        sched = engine.make_scheduler(opt, TrainConfig(lr=0.1, epochs=1), total)
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(total):
            opt.step()
            sched.step() if len(lrs) < total else None
            lrs.append(opt.param_groups[0]["lr"])
        assert 0.07 <= max(lrs) <= 0.1 + 1e-12, (total, lrs)  # every run gets near the peak
        assert total == 1 or lrs[total - 1] < 0.07, (total, lrs)  # and anneals from it
    opt = engine.make_optimizer(model, TrainConfig(lr=0.1))
    sched = engine.make_scheduler(opt, TrainConfig(lr=0.1, epochs=1), 100)  # longer runs: a fifth to warm up
    lrs = [opt.param_groups[0]["lr"]] + [(opt.step(), sched.step(), opt.param_groups[0]["lr"])[2] for _ in range(99)]
    assert lrs.index(max(lrs)) == 19 and lrs[0] == pytest.approx(0.1 / 20)


@pytest.mark.parametrize("name, cls, settings", [("adam", torch.optim.Adam, {}), ("adamw", torch.optim.AdamW, {}),
                                                 ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True})])
@pytest.mark.slow
def test_optimizers_without_compile_guards_update_exactly_as_torch_optim(name, cls, settings):
    """The eager copies of torch.optim's classes (what make_optimizer gives in a process that has
    not loaded torch.compile): the same updates, state_dict and schedules."""
    images, labels = _toy_data(96)
    cfg = TrainConfig(optimizer=name, lr=0.05, weight_decay=0.01)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(Net(ModelConfig(nf=4, num_classes=2)))
    assert isinstance(engine.make_optimizer(models[0], cfg), cls)
    eager = engine._eager_class(cls)(models[0].parameters(), lr=0.05, weight_decay=0.01, **settings)
    plain = cls(models[1].parameters(), lr=0.05, weight_decay=0.01, **settings)  # torch.optim's own
    optimizers = [eager, plain]
    assert isinstance(eager, cls) and type(eager) is not cls and type(plain) is cls
    schedules = [engine.make_scheduler(opt, cfg, 3) for opt in optimizers]
    for step in range(3):
        for model, opt, sched in zip(models, optimizers, schedules):
            loss = torch.nn.functional.cross_entropy(model(images[32 * step:32 * step + 32].unsqueeze(1)),
                                                     labels[32 * step:32 * step + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)
    assert str(eager.state_dict()) == str(plain.state_dict())
    plain.load_state_dict(eager.state_dict())  # a checkpoint's optimizer state goes either way
    eager.load_state_dict(plain.state_dict())
    assert torch.is_grad_enabled()


@pytest.mark.slow
def test_a_training_run_does_not_import_the_compiler(tmp_path, fake_data_dir):
    """torch.optim's compile guards import torch._dynamo (as long as `import torch` again) on first
    use; a plain `mnistctl train` does without them."""
    code = ("import sys\nfrom mnistctl.cli.commands import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('COMPILER', 'torch._dynamo' in sys.modules)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, "train", "--epochs", "1", "--nf", "4", "--data-dir",
                          str(fake_data_dir), "--run-dir", str(tmp_path / "run"), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "COMPILER False" in out.stdout
    assert (tmp_path / "run" / "best.pt").exists()


def test_an_unknown_optimizer_or_schedule_is_an_error_not_a_fallback():
    model = Net(ModelConfig(nf=4))
    cfg = TrainConfig()
    object.__setattr__(cfg, "optimizer", "adagrad")  # as a config built around validation would be
    with pytest.raises(ConfigError, match="optimizer must be one of adam, adamw, sgd, got 'adagrad'"):
        engine.make_optimizer(model, cfg)
    cfg = TrainConfig()
    object.__setattr__(cfg, "schedule", "step")
    with pytest.raises(ConfigError, match="schedule must be one of"):
        engine.make_scheduler(engine.make_optimizer(model, TrainConfig()), cfg, 10)


@pytest.mark.parametrize("n, batch, steps", [(600, 64, 9), (64, 64, 1), (10, 64, 1), (129, 64, 2)])
def test_steps_per_epoch_uses_whole_batches(n, batch, steps):
    assert engine.steps_per_epoch(n, batch) == steps


@pytest.mark.parametrize("n, batch, fraction, steps", [
    (600, 64, 0.5, 5), (55000, 128, 0.6, 258), (640, 64, 0.3, 3), (640, 64, 0.01, 1), (64, 64, 0.5, 1),
    (600, 64, 1.0, 9)])
def test_a_fraction_of_an_epoch_is_that_share_of_its_steps_rounded_up(n, batch, fraction, steps):
    assert engine.steps_per_epoch(n, batch, fraction) == steps


def test_derived_seeds_are_stable_and_distinct():
    assert engine.derive_seed(1, 2) == engine.derive_seed(1, 2)
    seeds = {engine.derive_seed(s, e, k) for s in range(3) for e in range(3) for k in range(3)}
    assert len(seeds) == 27 and all(0 <= x < 2 ** 63 for x in seeds)


def _toy_data(n: int = 512):
    """Two classes anyone can tell apart: ink in the top half or in the bottom half."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(0, 30, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels.tolist()):
        rows = slice(2, 12) if y == 0 else slice(16, 26)
        images[i, rows, 8:20] = 255
    return images, labels


def test_one_epoch_learns_a_made_up_task_and_counts_every_image():
    images, labels = _toy_data()
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, augment=False)
    torch.manual_seed(0)
    model = Net(ModelConfig(nf=4, num_classes=2))
    opt = engine.make_optimizer(model, cfg)
    sched = engine.make_scheduler(opt, cfg, engine.steps_per_epoch(len(labels), cfg.batch_size))
    seen = []

    class Count(engine.TrainCallbacks):
        def on_batch(self, step, loss, n):
            seen.append(n)

    stats = engine.train_one_epoch(engine.Learner(model, opt, sched), images, labels, cfg, 0, engine.EpochStats(),
                                   engine.EpochControl(callbacks=Count()))
    assert stats.seen == sum(seen) == 512 and len(seen) == 16
    logits = engine.predict_logits(model, images, batch_size=100)
    loss, acc = engine.loss_and_accuracy(logits, labels)
    assert acc > 0.95 and loss < 0.5  # chance: 50%, ln 2 = 0.69


def test_a_fraction_of_an_epoch_trains_on_a_new_random_part_of_the_images_each_epoch(tmp_path):
    import json

    from mnistctl.training.distributed import Group

    images, labels = _toy_data()
    cfg = TrainConfig(epochs=2, batch_size=32, augment=False, epoch_fraction=0.5)
    model = Net(ModelConfig(nf=4, num_classes=2))
    opt = engine.make_optimizer(model, cfg)
    sched = engine.make_scheduler(opt, cfg, 8)
    group = Group(trace_dir=tmp_path)  # records the images of every step
    for epoch in range(2):
        stats = engine.train_one_epoch(engine.Learner(model, opt, sched), images, labels, cfg, epoch,
                                       engine.EpochStats(), engine.EpochControl(group=group))
        assert stats.seen == 256
    steps = [json.loads(line) for line in (tmp_path / "rank0.jsonl").read_text().splitlines()]
    assert [(s["epoch"], s["step"]) for s in steps] == [(e, k) for e in range(2) for k in range(8)]
    parts = [{i for s in steps if s["epoch"] == e for i in s["images"]} for e in range(2)]
    assert len(parts[0]) == len(parts[1]) == 256  # each image once at most, half of them
    assert parts[0] != parts[1]
    assert sched.last_epoch == 16  # the schedule counts the steps taken


def test_predict_logits_does_not_depend_on_the_batch_size():
    images, _ = _toy_data(250)
    torch.manual_seed(0)
    model = Net(ModelConfig(nf=4)).eval()
    one = engine.predict_logits(model, images, batch_size=1000)
    assert one.shape == (250, 10) and one.dtype == torch.float32
    assert torch.allclose(one, engine.predict_logits(model, images, batch_size=7), atol=1e-5)
    assert engine.predict_logits(model, images[:0]).shape == (0, 10)


def test_stop_request_interrupts_after_a_whole_step():
    images, labels = _toy_data(256)
    cfg = TrainConfig(epochs=1, batch_size=32, augment=True)
    model = Net(ModelConfig(nf=4, num_classes=2))
    opt = engine.make_optimizer(model, cfg)
    sched = engine.make_scheduler(opt, cfg, 8)
    stats = engine.EpochStats()
    calls = iter(range(100))
    with pytest.raises(engine.Interrupted) as err:
        engine.train_one_epoch(engine.Learner(model, opt, sched), images, labels, cfg, 0, stats,
                               engine.EpochControl(should_stop=lambda: next(calls) == 2))
    assert err.value.step == 3 and stats.seen == 96


def test_weight_average_follows_the_ema_formula_with_its_warm_up():
    torch.manual_seed(0)
    model = Net(ModelConfig(nf=4))
    average = engine.WeightAverage(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(1, 31):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.features[0][2].running_mean.add_(1.0)
            model.features[0][2].num_batches_tracked.add_(1)
        average.update()
        d = min(0.9, (1 + t) / (10 + t))
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    got = average.module.state_dict()
    assert all(torch.allclose(got[k].float(), expected[k].float(), atol=1e-5) for k in expected)
    assert got["features.0.2.num_batches_tracked"] == 30
    assert not average.module.training and not any(p.requires_grad for p in average.module.parameters())
    assert not torch.allclose(got["features.0.0.weight"], model.state_dict()["features.0.0.weight"])


def test_ema_setting_is_checked():
    assert TrainConfig(ema=0.999).ema == 0.999
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="ema"):
            TrainConfig(ema=bad)
