"""The network: the original project's small CNN, built from a config dataclass.

Three 3x3 'same' convolutions with nf, 2nf and 4nf filters, each followed by (optional)
BatchNorm, 2x2 max pooling with stride 2, and ReLU: 28 -> 14 -> 7 -> 3. Then a dense part
4nf*3*3 -> 4nf -> 2nf -> classes (576 -> 64 -> 32 -> 10 for the default nf=16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mnistctl.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    nf: int = 16
    num_classes: int = 10
    batchnorm: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.nf < 1:
            raise ConfigError(f"--nf must be at least 1, got {self.nf}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def dense(self) -> int:
        return 4 * self.nf

    @property
    def hidden(self) -> int:
        return 2 * self.nf

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(cin: int, cout: int, batchnorm: bool) -> nn.Sequential:
    # BatchNorm after the pooling: the same per-channel normalisation on a quarter of the pixels
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm), nn.MaxPool2d(2, 2)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        nf = cfg.nf
        self.features = nn.Sequential(
            _conv_block(1, nf, cfg.batchnorm),  # 28 -> 14
            _conv_block(nf, 2 * nf, cfg.batchnorm),  # 14 -> 7
            _conv_block(2 * nf, 4 * nf, cfg.batchnorm),  # 7 -> 3
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * nf * 3 * 3, cfg.dense),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dense, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
