"""What a run records per epoch, as typed records (torch-free: plots and reports read them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from mnistctl.errors import MnistctlError


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: training figures (running means over the epoch) and validation ones."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float = math.nan  # the learning rate at the end of the epoch
    seconds: float = 0.0  # training time of the epoch (validation not included)
    images_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EpochRecord:
        """A record from a history.json row or a checkpoint; MnistctlError when it is not one."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or not all(k in data for k in names[:5]):
            raise MnistctlError(f"not a per-epoch record (needs {', '.join(names[:5])})")
        try:
            values = {k: (int if k == "epoch" else float)(data[k]) for k in names if k in data}
        except (TypeError, ValueError):
            raise MnistctlError("a per-epoch record holds a value that is not a number") from None
        return cls(**values)


@dataclass(frozen=True)
class Best:
    """The epoch with the best validation accuracy so far (epoch 0: none yet)."""

    epoch: int = 0
    val_acc: float = -1.0
    val_loss: float = math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Best:
        if not isinstance(data, dict):
            return cls()
        try:
            return cls(int(data.get("epoch", 0)), float(data.get("val_acc", -1.0)),
                       float(data.get("val_loss", math.inf)))
        except (TypeError, ValueError):
            raise MnistctlError("the best-epoch record holds a value that is not a number") from None


def parse_history(rows: Any) -> list[EpochRecord]:
    if not isinstance(rows, list):
        raise MnistctlError("the history is not a list of per-epoch records")
    return [EpochRecord.from_dict(r) for r in rows]
