"""Training in several processes: ``torchrun ... -m mnistctl train`` with DistributedDataParallel.

A ``Group`` is the set of processes training one model together, as torchrun describes it in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). A run
outside torchrun is a group of one, and every method here is then a no-op, so the training loop
has a single code path.

How the work is shared (``mnistctl.training.loop.train_one_epoch``): each epoch's seeded shuffle is cut
into global batches of ``batch_size x processes`` images (the last one takes the remainder, so
every image is seen exactly once per epoch); each process takes a contiguous part of every global
batch, and its loss is weighted by its share, so the averaged gradient is the gradient of the whole
global batch's mean loss. The learning rate is not scaled. Validation is shared the same way and
its sums are added up, so every process reports the same numbers. BatchNorm statistics, which
each process gathers on its own images, are averaged at the end of every epoch.

Only process 0 writes files and shows progress. A process that loses contact with the others
(one died, hung or was stopped) gets a ``DistributedError`` within ``MNISTCTL_DIST_TIMEOUT``
seconds instead of waiting forever.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistctl import devices as accel
from mnistctl.errors import ConfigError, DistributedError

TIMEOUT_ENV = "MNISTCTL_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300  # longer than any step, validation or checkpoint save of a sane run
TRACE_ENV = "MNISTCTL_DIST_TRACE"  # a directory: each process writes what it did there (used by tests)


def launched() -> bool:
    """Whether this process is one of several started by torchrun (or another launcher)."""
    return _env_int("WORLD_SIZE", 1) > 1


def local_processes() -> int:
    """How many processes of the group run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 alone)."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", 1))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name} must be a whole number, got {value!r}") from None


def timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds above 0, got {value!r}")
    return seconds


@dataclass
class Group:
    """The processes training together; ``Group()`` is a single process on the CPU."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    trace_dir: Path | None = None

    @property
    def main(self) -> bool:
        """Process 0: the one that writes files and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def seed_parts(self) -> tuple[int, ...]:
        """Added to a step's seed so that each process draws its own augmentation and dropout."""
        return (self.rank,) if self.active else ()

    def part(self, lo: int, hi: int) -> tuple[int, int]:
        """This process's contiguous share of positions ``lo:hi``, sizes differing by one at most."""
        base, extra = divmod(hi - lo, self.world)
        start = lo + self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train with: DistributedDataParallel around ``model`` (whose weights it
        makes identical on every process), or ``model`` itself for a single process."""
        if not self.active:
            return model
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # the weights and BatchNorm statistics are copied from process 0 once; after that each process
        # keeps its own statistics (averaged every epoch) instead of receiving process 0's every step
        options = inspect.signature(DistributedDataParallel).parameters
        no_sync: dict[str, Any] = ({"forward_sync_buffers": False} if "forward_sync_buffers" in options
                                   else {"broadcast_buffers": False})
        with self.talking("starting DistributedDataParallel"):
            return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                           else None, **no_sync)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes, in place."""
        if self.active:
            import torch.distributed as dist

            with self.talking("adding up numbers"):
                dist.all_reduce(tensor)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on one."""
        if not self.active:
            return flag
        return bool(self.all_sum(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def broadcast(self, obj: Any) -> Any:
        """Process 0's ``obj`` (picklable), on every process."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        with self.talking("receiving the run's settings from process 0"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            with self.talking("waiting for the others"):
                dist.barrier()

    def average_buffers(self, model: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm's running statistics) over the processes."""
        if not self.active:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                self.all_sum(buffer)
                buffer /= self.world

    @contextmanager
    def talking(self, doing: str) -> Iterator[None]:
        """Turn the backend's errors (a peer's closed connection, a timeout) into a DistributedError."""
        try:
            yield
        except RuntimeError as exc:
            if not self.active or not is_comm_failure(exc):
                raise
            raise self.lost(exc, doing) from None

    def lost(self, exc: BaseException, doing: str = "training") -> DistributedError:
        reason = _first_line(exc)
        if len(reason) > 160:
            reason = reason[:157] + "..."
        return DistributedError(
            f"process {self.rank} of {self.world} lost contact with the others while {doing} ({reason}): another "
            "process stopped, died or hung (its own messages say why); the run was stopped")

    def record(self, kind: str, **data: Any) -> None:
        """Append one JSON line to this process's trace (only when ``MNISTCTL_DIST_TRACE`` is set)."""
        if self.trace_dir is None:
            return
        with open(self.trace_dir / f"rank{self.rank}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": kind, **data}) + "\n")

    @property
    def tracing(self) -> bool:
        return self.trace_dir is not None

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    """The first line of a backend's (often many-line) error message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_comm_failure(exc: BaseException) -> bool:
    """Whether a RuntimeError came from the process group (gloo, NCCL) rather than from a bug."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket",
                                         "broken pipe", "process group"))


def weights_digest(model: nn.Module) -> str:
    """A hash of every parameter and buffer, for checking that processes hold the same model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def join(device_name: str = "auto") -> Group:
    """The group this process belongs to, joined: under torchrun, one process of several (gloo on
    the CPU, NCCL on CUDA with one GPU per process, chosen by ``LOCAL_RANK``); otherwise a group of
    one on the chosen device."""
    trace = os.environ.get(TRACE_ENV)
    trace_dir = Path(trace) if trace else None
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
    if not launched():
        return Group(device=accel.resolve_device(device_name), trace_dir=trace_dir)
    world, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is not a process of a group of {world} (WORLD_SIZE): start mnistctl with "
                          "torchrun")
    device = accel.resolve_device(device_name)
    if device.type == "mps":
        raise ConfigError.invalid("device", "mps cannot train in several processes (PyTorch has no distributed "
                                            "backend for it): choose cpu, or run one process")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(f"process {local_rank} on this machine has no GPU of its own ({count} found): start "
                              f"at most {count} per machine (torchrun --nproc-per-node {count}), or train with "
                              "--device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    group = Group(rank, world, local_rank, backend, device, trace_dir)
    import torch.distributed as dist

    if not dist.is_initialized():
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise ConfigError(f"WORLD_SIZE is {world} but {' and '.join(missing)} is not set: start mnistctl with "
                              "torchrun (torchrun --nproc-per-node N -m mnistctl train ...)")
        options: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()), **options)
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(
                f"process {rank} of {world} could not join the others ({backend} at "
                f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): "
                f"{_first_line(exc)[:160]}") from None
    return group
