"""The baselines mnistctl is measured against: the original script's style of loop, a
torchvision MNIST dataset with per-item ToTensor/Normalize through a DataLoader, same model."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mnistctl.datasets import MNIST, dataset_dir


def torchvision_root(data_dir: str | Path | None, scratch: Path) -> Path:
    """A torchvision-style root (``MNIST/raw``) over mnistctl's decompressed files: no copy."""
    raw = scratch / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for spec in MNIST.files:
        link = raw / spec.name
        if not link.exists():
            link.symlink_to(dataset_dir(MNIST, data_dir) / spec.name)
    return scratch / "tv"


# the original script's per-item transform
TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST.mean,), (MNIST.std,))])


def bare(model: torch.nn.Module) -> torch.nn.Module:
    """The network without its built-in normalisation: the baseline normalises per item instead."""
    model.normalize = torch.nn.Identity()
    return model


def _dataset(root: Path, train: bool):
    return datasets.MNIST(str(root), train=train, download=False, transform=TRANSFORM)


def train_throughput(model: torch.nn.Module, root: Path, steps: int, batch_size: int = 64,
                     num_workers: int = 0, warmup: int = 10) -> float:
    """Images per second of the original loop: DataLoader batches, Adam at 0.01, cross-entropy."""
    loader = DataLoader(_dataset(root, True), batch_size=batch_size, shuffle=True, num_workers=num_workers)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    seen, start = 0, None
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            start, seen = time.perf_counter(), 0
        optimizer.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), dim=1), y)
        loss.backward()
        optimizer.step()
        loss.item()
        seen += len(y)
        if i + 1 == warmup + steps:
            break
    return seen / (time.perf_counter() - start)


@torch.no_grad()
def evaluate(model: torch.nn.Module, root: Path, batch_size: int = 1000) -> tuple[float, float, float]:
    """(seconds, mean loss, accuracy) of the original evaluation loop on the 10,000 test images."""
    loader = DataLoader(_dataset(root, False), batch_size=batch_size)
    model.eval()
    start = time.perf_counter()
    loss, correct, n = 0.0, 0, 0
    for x, y in loader:
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    return time.perf_counter() - start, loss / n, correct / n
