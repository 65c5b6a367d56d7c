"""The search space of ``mnistctl tune``: which of ``train``'s settings a study varies, and how
(a range on a log or a linear scale, whole numbers, a list of choices, or a fixed value), read
from a mapping, a JSON file or a YAML file and checked as ``train`` checks each setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistctl.config import SETTINGS, is_number, user_settings
from mnistctl.errors import ConfigError
from mnistctl.fsutil import read_bounded

MAX_SPACE_BYTES = 1_000_000  # a space file (or a study's options) larger than this is refused
KINDS = ("log", "float", "int")  # a range: {"log": [low, high]} (sampled on a log scale), "float", "int"


@dataclass(frozen=True)
class Dimension:
    """One setting of the search: a range (``log``, ``float``, ``int``, with an optional ``step``),
    a list of ``choices``, or a ``fixed`` value."""

    name: str
    kind: str  # log, float, int, choice or fixed
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "log":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.choices[0]

    def to_json(self) -> Any:
        """The dimension as a space file writes it."""
        if self.kind == "fixed":
            return self.choices[0]
        if self.kind == "choice":
            return list(self.choices)
        return {self.kind: [self.low, self.high], **({"step": self.step} if self.step is not None else {})}


def parse_space(data: Any, source: str) -> list[Dimension]:
    """The dimensions of a search space given as a mapping of setting names to ranges, choices or
    values; every setting, bound and choice checked as ``train`` checks it (a ConfigError naming it)."""
    if not isinstance(data, dict) or not data:
        raise _bad(f"{source} is not a mapping of train settings to ranges (such as lr: {{log: [0.001, 0.1]}})")
    known = user_settings()
    dims = []
    for name, value in data.items():
        if name not in known:
            raise _bad(f"{source}: {name!r} is not a setting of train ({', '.join(known)})")
        dims.append(_dimension(str(name), value, source))
    return dims


def _dimension(name: str, value: Any, source: str) -> Dimension:
    where = f"{source}: {name}"
    if isinstance(value, dict):
        kinds = [k for k in KINDS if k in value]
        extra = set(value) - {*KINDS, "step"}
        if len(kinds) != 1 or extra:
            raise _bad(f"{where} must be one of {{log: [low, high]}}, {{float: [low, high]}}, {{int: [low, high]}} "
                       "(with an optional step), a list of choices or a value")
        kind, bounds, step = kinds[0], value[kinds[0]], value.get("step")
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(is_number(b) for b in bounds)
                and bounds[0] < bounds[1]):
            raise _bad(f"{where}: {kind} needs [low, high] with low below high, got {bounds!r}")
        if kind == "log" and bounds[0] <= 0:
            raise _bad(f"{where}: a log range needs a low bound above 0, got {bounds[0]!r}")
        if kind == "int" and not all(isinstance(b, int) for b in bounds):
            raise _bad(f"{where}: an int range needs whole bounds, got {bounds!r}")
        if step is not None and (kind == "log" or not is_number(step) or step <= 0):
            raise _bad(f"{where}: step must be a positive number (and a log range takes none), got {step!r}")
        for bound in bounds:
            check_value(name, int(bound) if kind == "int" else float(bound), where)
        return Dimension(name, kind, bounds[0], bounds[1], step)
    if isinstance(value, list):
        if not value or len({json.dumps(v) for v in value}) != len(value):
            raise _bad(f"{where}: a list of choices needs at least one value, each once")
        for choice in value:
            check_value(name, choice, where)
        return Dimension(name, "choice", choices=tuple(value))
    check_value(name, value, where)
    return Dimension(name, "fixed", choices=(value,))


def check_value(name: str, value: Any, where: str) -> None:
    """``value`` checked as ``train`` checks setting ``name`` (a ConfigError saying ``where``)."""
    try:
        SETTINGS[name][2].check(name, value)
    except ConfigError as exc:
        raise _bad(f"{where}: {exc.problem or exc}") from None


def _bad(problem: str) -> ConfigError:
    return ConfigError(problem, setting="space", problem=problem)


def read_space(path: str | Path) -> list[Dimension]:
    """A search space from a JSON or YAML file (by its extension; YAML through PyYAML, which Optuna
    brings)."""
    path = Path(path)
    text = read_bounded(path, MAX_SPACE_BYTES, "the search space file", ConfigError).decode("utf-8", "replace")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"{path} is not readable {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'} "
                   f"({str(exc).splitlines()[0][:100]})") from None
    except Exception as exc:  # PyYAML's own errors
        raise _bad(f"{path} is not readable YAML ({str(exc).splitlines()[0][:100]})") from None
    return parse_space(data, str(path))
