"""Training steps on CUDA as a replayed CUDA graph.

The network is small, so on a GPU a step waits on Python and on about a hundred kernel launches,
not on the GPU: a few milliseconds a step whatever the batch size. ``StepGraph`` records a step's
forward and backward pass (the batch's gather, augmentation, the loss, the gradients and the
epoch's running sums) once as a CUDA graph, then replays it with the next batch's indices: one
launch instead of a hundred. The optimizer's step, the schedule and the weight average stay
ordinary eager code, so their settings change between steps as usual and checkpoints are the same
as without graphs.

Used for whole batches of a single process on CUDA (``usable``); the first ``WARMUP_STEPS``
steps run eagerly on a side stream, as recording asks (CUDA's libraries start, their workspaces
are made), and a step of another size (an epoch's last, which takes the remainder) runs eagerly too. Random draws
(augmentation, dropout) come from the default generator, which the replay reads afresh, so the
per-step seeds work as they do eagerly. ``MNISTCTL_CUDA_GRAPHS=0`` turns graphs off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mnistctl.errors import ConfigError

GRAPHS_ENV = "MNISTCTL_CUDA_GRAPHS"
WARMUP_STEPS = 3
_ON, _OFF = ("1", "on", "yes", "true"), ("0", "off", "no", "false")


def wanted() -> bool:
    """What ``MNISTCTL_CUDA_GRAPHS`` asks for: on unless it says off."""
    value = os.environ.get(GRAPHS_ENV, "").strip().lower()
    if value and value not in _ON + _OFF:
        raise ConfigError(f"the environment variable {GRAPHS_ENV} must be 1 or 0 (on or off), got {value!r}")
    return value not in _OFF


def usable(device: torch.device, processes: int) -> bool:
    """Whether training steps on ``device`` run as a CUDA graph: on CUDA, in a single process (a
    group's gradients are averaged by DistributedDataParallel's hooks, which stay eager), unless
    ``MNISTCTL_CUDA_GRAPHS`` turns them off."""
    return wanted() and device.type == "cuda" and processes == 1


class StepGraph:
    """A step's forward and backward pass, captured on the ``WARMUP_STEPS + 1``-th whole batch and
    replayed after that. One per run: a replay reads the very tensors the captured step read (the
    model's, the data's, ``window``), so the caller says which they are with ``bind`` first."""

    def __init__(self, model: nn.Module, window: torch.Tensor):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.window = window  # the running sums the step adds to; the graph adds to this very tensor
        self.batch: int | None = None  # the batch size captured
        self.failure: str | None = None  # why capturing failed (then every step runs eagerly)
        self._warm = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._idx: torch.Tensor | None = None  # the batch's indices, read by the graph
        self._grads: list[torch.Tensor | None] = []  # the gradients the graph writes
        self._key: tuple = ()  # what the recorded step read (see bind)

    def bind(self, *reads: object) -> None:
        """Say what the step reads (its model, data tensors, settings): a graph recorded while it
        read other things is dropped, and the next steps warm up and capture afresh."""
        key = tuple(x.data_ptr() if isinstance(x, torch.Tensor)
                    else tuple(p.data_ptr() for p in x.parameters()) if isinstance(x, nn.Module) else x
                    for x in reads)
        if key != self._key:
            self._key = key
            self._graph, self._idx, self._grads, self._warm, self.batch = None, None, [], 0, None

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def fits(self, size: int) -> bool:
        """Whether a step of ``size`` images can go through ``run``."""
        return self.failure is None and (self.batch is None or size == self.batch)

    def run(self, forward_backward: Callable[[torch.Tensor], None], idx: torch.Tensor) -> None:
        """Do ``forward_backward(idx)`` (leaving each parameter's ``.grad`` set), eagerly while
        warming up, then by capturing it once and replaying it with ``idx`` copied in."""
        if self._graph is None:
            if self._warm < WARMUP_STEPS:
                self._warm_step(forward_backward, idx)
                return
            try:
                self._capture(forward_backward, idx)
            except RuntimeError as exc:  # nothing ran while capturing: the step is done eagerly instead
                self.failure = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                self._graph, self._idx = None, None
                self._eager(forward_backward, idx)
                return
        assert self._idx is not None  # captured above
        self._idx.copy_(idx)
        self._replay()
        if self.params and self.params[0].grad is not self._grads[0]:  # an eager step since replaced them
            for p, g in zip(self.params, self._grads):
                p.grad = g

    def _replay(self) -> None:
        assert self._graph is not None
        self._graph.replay()

    def _side_stream(self, device: torch.device) -> Any:
        """A context that runs on a side stream (``torch.cuda.stream``); it waits for the current
        stream's work on entering, and the current stream waits for it on leaving."""
        return _SideStream(device)

    def _eager(self, forward_backward: Callable[[torch.Tensor], None], idx: torch.Tensor) -> None:
        for p in self.params:
            p.grad = None
        forward_backward(idx)

    def _warm_step(self, forward_backward: Callable[[torch.Tensor], None], idx: torch.Tensor) -> None:
        # on a side stream, as torch.cuda.graph's documentation asks of the iterations before capture
        self.batch = len(idx)
        with self._side_stream(idx.device):
            self._eager(forward_backward, idx)
        self._warm += 1

    def _capture(self, forward_backward: Callable[[torch.Tensor], None], idx: torch.Tensor) -> None:
        for p in self.params:
            p.grad = None  # the graph's backward then writes fresh gradients, which replays overwrite
        self._idx = idx.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            forward_backward(self._idx)
        self._grads = [p.grad for p in self.params]
        self._graph = graph


class _SideStream:
    def __init__(self, device: torch.device):
        self.main = torch.cuda.current_stream(device)
        self.side = torch.cuda.Stream(device=device)
        self._context = torch.cuda.stream(self.side)

    def __enter__(self) -> None:
        self.side.wait_stream(self.main)
        self._context.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)
        self.main.wait_stream(self.side)
