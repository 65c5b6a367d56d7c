"""The accelerator details, in one place: which device, memory layout, mixed precision, allocator.

Nothing here knows about training or data; the loop and inference ask these helpers what to do
on the device they run on.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

import torch
from torch import nn

from mnistctl.errors import ConfigError, one_of
from mnistctl.recipes import DEVICES


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit choice must be available."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    one_of("device", name, DEVICES)
    if name == "cuda" and not cuda:
        raise ConfigError.invalid("device", "cuda is not available here (no CUDA GPU found): choose cpu or auto")
    if name == "mps" and not mps:
        raise ConfigError.invalid("device", "mps is not available here (no Apple GPU found): choose cpu or auto")
    return torch.device(name)


def channels_last(device: torch.device) -> bool:
    """Where the channels_last layout makes the convolutions faster (models and inputs alike)."""
    return device.type in ("cpu", "cuda")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to ``device``, in channels_last layout where that is faster."""
    model = model.to(device)
    if channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    return model


def as_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 or float pixels ``[N, 28, 28]`` or ``[N, 1, 28, 28]`` on ``device`` -> the network's
    input ``[N, 1, 28, 28]`` in the layout its convolutions like (values unchanged: the network
    normalises them itself)."""
    x = images.to(device, non_blocking=True)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 mixed precision on CUDA (where it is faster); full precision elsewhere. Without
    autocast's cache of cast weights (each weight is used once a pass anyway), as a step recorded
    as a CUDA graph needs (``mnistctl.training.cudagraph``)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda", cache_enabled=False)


def setup(device: torch.device) -> None:
    """Per-process settings for training on ``device``. (cuDNN's autotuner, ``cudnn.benchmark``,
    stays off: timing the convolutions' algorithms cost 0.6-1 s per process, and again for each
    new batch shape, on an H100 and an H200, about as long as the fast preset's whole training
    takes without it; the steps of these small convolutions were no faster for it.)"""
    if device.type == "cpu":
        tune_allocator()


_allocator_tuned = False


def set_threads(n: int) -> str | None:
    """Use ``n`` CPU threads for PyTorch's operations (and ``n`` for its inter-op pool, at most 4).
    More than 4 per core is refused (thousands crash PyTorch; hundreds make training hundreds of
    times slower); more than the cores is allowed, with a warning, which is returned."""
    import os

    cores = os.cpu_count() or 1
    if type(n) is not int or not 1 <= n <= 4 * cores:
        raise ConfigError.invalid("threads", f"must be from 1 to {4 * cores} (4 per core; this machine has {cores}), "
                                             f"got {n!r}")
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(min(n, 4))
    except RuntimeError:  # already fixed once parallel work has started: the intra-op count is what matters
        pass
    if n > cores:
        return f"{n} threads on {cores} cores: they take turns, and training is slower than with {cores}"
    return None


def tune_allocator() -> None:
    """Keep freed tensor memory in the process (glibc): without this every step's large buffers
    go back to the OS and fault in again, about a second per epoch of page faults on a laptop CPU.
    Peak memory does not change. A no-op elsewhere."""
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
