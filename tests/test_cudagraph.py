"""CUDA-graph training steps (mnistctl.training.cudagraph): the bookkeeping around capture and replay,
checked on the CPU with a stand-in graph that, like a real one, re-runs the recorded step with
the indices copied in and writes its gradients into the same tensors every time. (The real
capture runs on a GPU: benchmarks and README "CUDA".)"""

from __future__ import annotations

import contextlib

import pytest
import torch

from mnistctl.config import ModelConfig, TrainConfig
from mnistctl.errors import ConfigError
from mnistctl.model import Net
from mnistctl.training import cudagraph
from mnistctl.training import loop as engine

CPU = torch.device("cpu")


class StandInGraph(cudagraph.StepGraph):
    """Records the step on 'capture' (without running it) and re-runs it on 'replay'."""

    def __init__(self, model, window, fail: bool = False):
        super().__init__(model, window)
        self.fail = fail
        self.replays = 0
        self.eager_steps = 0

    def _side_stream(self, device):
        return contextlib.nullcontext()

    def _eager(self, forward_backward, idx):
        self.eager_steps += 1
        super()._eager(forward_backward, idx)

    def _capture(self, forward_backward, idx):
        if self.fail:
            for p in self.params:
                p.grad = torch.full_like(p, float("nan"))  # what a failed capture may leave behind
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        self._step = forward_backward
        self._idx = idx.clone()
        self._grads = [torch.full_like(p, float("nan")) for p in self.params]  # nothing has run yet
        self._graph = object()

    def _replay(self):
        self.replays += 1
        saved = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        self._step(self._idx)
        for p, g, old in zip(self.params, self._grads, saved):
            g.copy_(p.grad)  # the same memory every replay
            p.grad = old  # a replay does not touch .grad itself


def _data(n: int):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    images[torch.arange(n), labels * 9 + 1] = 255  # a row of ink that tells the class
    return images, labels


def _train(graph_kind: str | None, cfg: TrainConfig, n: int = 200, epochs: int = 2):
    images, labels = _data(n)
    torch.manual_seed(0)
    model = Net(ModelConfig(nf=4, num_classes=3, dropout=0.2))
    opt = engine.make_optimizer(model, cfg)
    steps = engine.steps_per_epoch(n, cfg.batch_size, cfg.epoch_fraction)
    sched = engine.make_scheduler(opt, cfg, steps)
    graph = None if graph_kind is None else StandInGraph(model, engine.new_window(CPU), fail=graph_kind == "fail")
    history = []
    for epoch in range(epochs):
        stats = engine.train_one_epoch(engine.Learner(model, opt, sched, graph=graph), images, labels, cfg, epoch,
                                       engine.EpochStats())
        history.append((stats.loss_sum, stats.objective_sum, stats.correct, stats.seen))
    return model, opt, history, graph


@pytest.mark.parametrize("cfg", [
    TrainConfig(epochs=2, batch_size=16, lr=0.01, augment=True, label_smoothing=0.1),  # last step: 16 + 8
    TrainConfig(epochs=2, batch_size=16, lr=0.01, augment=True, low_res=0.2, scans=0.25),
    TrainConfig(epochs=2, batch_size=16, lr=0.02, augment=False, optimizer="sgd", epoch_fraction=0.5),
])
def test_replayed_steps_train_exactly_as_eager_ones(cfg):
    eager, eager_opt, eager_history, _ = _train(None, cfg)
    graphed, graphed_opt, graphed_history, graph = _train("graph", cfg)
    steps = engine.steps_per_epoch(200, 16, cfg.epoch_fraction)
    last_is_larger = cfg.epoch_fraction == 1
    assert graph.captured and graph.batch == 16 and graph.failure is None
    assert graph.eager_steps == cudagraph.WARMUP_STEPS
    # an epoch's last step, 24 images, runs eagerly in between, and replays go on after it
    assert graph.replays == 2 * steps - cudagraph.WARMUP_STEPS - (2 if last_is_larger else 0)
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values()):
        assert torch.equal(a, b)
    assert eager_history == graphed_history and eager_history[0][3] == (200 if last_is_larger else steps * 16)
    assert str(eager_opt.state_dict()) == str(graphed_opt.state_dict())


def test_a_failed_capture_is_reported_and_the_run_goes_on_eagerly():
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.01, augment=True)
    eager, *_ = _train(None, cfg)
    fallback, _, _, graph = _train("fail", cfg)
    assert not graph.captured and "not permitted when stream is capturing" in graph.failure
    assert graph.replays == 0
    for a, b in zip(eager.state_dict().values(), fallback.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("value, wanted", [("", True), ("1", True), ("on", True), ("0", False), ("OFF", False),
                                           ("no", False)])
def test_the_environment_switch(monkeypatch, value, wanted):
    monkeypatch.setenv(cudagraph.GRAPHS_ENV, value)
    assert cudagraph.wanted() is wanted
    assert not cudagraph.usable(CPU, 1)  # never on the CPU


def test_a_bad_environment_switch_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(cudagraph.GRAPHS_ENV, "maybe")
    with pytest.raises(ConfigError, match="MNISTCTL_CUDA_GRAPHS must be 1 or 0"):
        cudagraph.usable(torch.device("cuda"), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_graph_steps_follow_eager_ones_closely(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cuda = torch.device("cuda")
    images, labels = (t.to(cuda) for t in _data(400))
    # every batched augmentation the best preset and the built-in model use, inside the graph
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, augment=True, label_smoothing=0.1, writer_style=0.5,
                      low_res=0.15, scans=0.1)
    results = []
    for use_graph in (False, True):
        torch.manual_seed(0)
        model = Net(ModelConfig(nf=8, num_classes=3)).to(cuda)
        opt = engine.make_optimizer(model, cfg)
        sched = engine.make_scheduler(opt, cfg, engine.steps_per_epoch(400, 32))
        graph = cudagraph.StepGraph(model, engine.new_window(cuda)) if use_graph else None
        stats = engine.train_one_epoch(engine.Learner(model, opt, sched, graph=graph), images, labels, cfg, 0,
                                       engine.EpochStats())
        if use_graph:
            assert graph.captured and graph.failure is None
        results.append((torch.cat([p.detach().flatten() for p in model.parameters()]), stats))
    (a, sa), (b, sb) = results
    assert sa.seen == sb.seen == 400
    print("largest difference of a weight:", (a - b).abs().max().item())
    assert torch.allclose(a, b, atol=1e-2), (a - b).abs().max()
    assert sa.loss == pytest.approx(sb.loss, rel=0.05)


def test_a_graph_recorded_on_other_data_is_not_replayed_on_new_data():
    images, labels = _data(128)
    cfg = TrainConfig(epochs=2, batch_size=16, augment=False)
    model = Net(ModelConfig(nf=4, num_classes=3))
    opt = engine.make_optimizer(model, cfg)
    sched = engine.make_scheduler(opt, cfg, 4)
    graph = StandInGraph(model, engine.new_window(CPU))
    learner = engine.Learner(model, opt, sched, graph=graph)
    engine.train_one_epoch(learner, images[:64], labels[:64], cfg, 0, engine.EpochStats())
    assert graph.captured and (graph.eager_steps, graph.replays) == (cudagraph.WARMUP_STEPS, 1)
    engine.train_one_epoch(learner, images[64:], labels[64:], cfg, 1, engine.EpochStats())
    # warmed up and captured again for the new images
    assert graph.captured and (graph.eager_steps, graph.replays) == (2 * cudagraph.WARMUP_STEPS, 2)


def test_train_says_when_it_could_not_use_cuda_graphs(tmp_path, fake_data_dir, monkeypatch):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    # the CPU stands in for a GPU whose graph capture fails: the run goes on and says so at the end
    monkeypatch.setattr(cudagraph, "usable", lambda device, processes: True)
    monkeypatch.setattr(cudagraph, "StepGraph", lambda model, window: StandInGraph(model, window, fail=True))
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--nf", "4", "--batch-size", "64", "--data-dir",
                                      str(fake_data_dir), "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert ("Warning: training steps ran without CUDA graphs (slower): capturing one failed: CUDA error: "
            "operation not permitted when stream is capturing") in said
    assert (tmp_path / "run" / "best.pt").exists()
