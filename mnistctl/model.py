"""The network: the original project's small CNN, built from a ModelConfig.

It takes what a user has: pixels in the 0-255 range (uint8 or float), ``[N, 1, 28, 28]``. The
first step standardises them with the training set's mean and std (constants of the config,
so they travel with every checkpoint and are baked into an exported graph). Then three 3x3
'same' convolutions with nf, 2nf and 4nf filters, each followed by 2x2 max pooling with stride 2,
(optional) BatchNorm and ReLU: 28 -> 14 -> 7 -> 3. Then a dense part 4nf*3*3 -> 4nf -> 2nf ->
classes (576 -> 64 -> 32 -> 10 for the default nf=16).
"""

from __future__ import annotations

import torch
from torch import nn

from mnistctl.config import INFERENCE_BATCH, ModelConfig
from mnistctl.devices import as_input, autocast

__all__ = ["ModelConfig", "Net", "Normalize", "num_parameters"]


class Normalize(nn.Module):
    """0-255 pixels -> ``(x / 255 - mean) / std`` in float32. No state: the constants come
    from the config."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean = float(mean)
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(torch.float32) / 255.0 - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


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
        self.normalize = Normalize(cfg.mean, cfg.std)
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
        """Logits for pixels in the 0-255 range, ``[N, 1, 28, 28]`` (divided by the config's
        temperature where a calibrated model has one other than 1)."""
        logits = self.classifier(self.features(self.normalize(x)))
        return logits if self.cfg.temperature == 1.0 else logits / self.cfg.temperature


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the state dict of ``Net(cfg)``, read from the network built on
    PyTorch's meta device: nothing is allocated (so a checkpoint can be checked before its network
    is built), and the layout is the one ``Net`` states."""
    with torch.device("meta"):
        net = Net(cfg)
    return {name: tuple(tensor.shape) for name, tensor in net.state_dict().items()}


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = INFERENCE_BATCH,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) for 0-255 ``images`` [N, 28, 28] or [N, 1, 28, 28], in batches."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = as_input(images[start:start + batch_size], device)
        with autocast(device):
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0, int(model.cfg.num_classes))  # type: ignore[union-attr,arg-type]
