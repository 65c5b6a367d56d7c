"""Planning a training run: what a user asked for (a preset and settings, a config file, a run to
resume or extend, a checkpoint to fine-tune from) as typed configs and a run directory, with
warnings about options a resumed run ignores. ``mnistctl.training.run`` fits the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mnistctl.checkpoint import Checkpoint
from mnistctl.checkpoint import load as load_checkpoint
from mnistctl.config import DataConfig, ModelConfig, TrainConfig, derived_settings, user_settings
from mnistctl.errors import ConfigError, RunExistsError, one_of
from mnistctl.fsutil import read_bounded
from mnistctl.images.labelled import labelled_pictures
from mnistctl.recipes import BUILTIN, PRESETS
from mnistctl.runfiles import BEST_FILE, LAST_FILE

RUNS_ROOT = Path("runs")
MAX_CONFIG_BYTES = 1_000_000  # a config file of settings is a few hundred bytes
# which config each user-settable name belongs to (num_classes, mean and std follow the data set)
MODEL_SETTINGS = user_settings(ModelConfig)
DATA_SETTINGS = user_settings(DataConfig)
TRAIN_SETTINGS = user_settings(TrainConfig)


@dataclass
class RunPlan:
    model_config: ModelConfig
    data_config: DataConfig
    train_config: TrainConfig
    run_dir: Path
    resume: Checkpoint | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. options a resumed run ignores
    preset: str | None = None
    init: Checkpoint | None = None  # fine-tuning: start from these weights, with a fresh optimizer
    extends: bool = False  # resuming a finished run with more epochs

    def config(self) -> dict[str, Any]:
        """Every setting of the run, as ``config.json`` holds it and ``train --config`` reads it."""
        return {"model": self.model_config.to_dict(), "data": self.data_config.to_dict(),
                "train": self.train_config.to_dict(), "preset": self.preset,
                "init": self.init.source if self.init is not None else None}


def plan_run(preset: str | None = None, settings: dict[str, Any] | None = None, *, resume: str | Path | None = None,
             run_dir: str | Path | None = None, name: str | None = None, runs_root: Path = RUNS_ROOT,
             init: str | Path | None = None) -> RunPlan:
    """The configs and directory of a new run (``preset``, by default ``original``, filled in by the
    explicitly given ``settings``), or of a resumed one (its checkpoint's settings; a preset, name or
    other settings given are reported in ``warnings`` as ignored, except more ``epochs`` for a
    finished run, which extend it).

    ``init`` fine-tunes: the new run starts from that checkpoint's weights (``"builtin"``: the
    built-in model's), whose network and data set it keeps, with a fresh optimizer and schedule.
    """
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    unknown = sorted(set(given) - set(MODEL_SETTINGS + DATA_SETTINGS + TRAIN_SETTINGS))
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(unknown)}")
    if resume is not None:
        if init is not None:
            raise ConfigError("choose one of resume (continue a run) and init (start a new run from its weights)")
        plan = _plan_resume(Path(resume), given, run_dir)
        plan.warnings += [f"{what} {value!r} is ignored: a resumed run keeps its own settings and directory"
                          for what, value in (("preset", preset), ("name", name)) if value is not None]
        return plan
    start = None
    if init is not None:
        from mnistctl.checkpoint import load_or_pretrained

        start = load_or_pretrained(None if str(init) == BUILTIN else init)
        fixed = {**start.model_config.to_dict(), "dataset": start.data_config.dataset}
        clash = {k: v for k, v in given.items() if k in fixed and k in MODEL_SETTINGS + ("dataset",) and v != fixed[k]}
        if clash:
            setting = sorted(clash)[0]
            raise ConfigError.invalid(setting, f"cannot be changed when fine-tuning {start.source} (an "
                                               f"nf={start.model_config.nf} network for {start.data_config.dataset}, "
                                               f"whose {setting} is {fixed[setting]!r}): leave it out")
        given = {**given, "nf": start.model_config.nf, "dropout": start.model_config.dropout,
                 "batchnorm": start.model_config.batchnorm, "dataset": start.data_config.dataset}
    preset = preset or "original"
    one_of("preset", preset, PRESETS)
    recipe = {**PRESETS[preset], **given}
    pick = lambda keys: {k: recipe[k] for k in keys if k in recipe}  # noqa: E731
    data_cfg = DataConfig(**pick(DATA_SETTINGS))
    if data_cfg.extra_images:  # labelled as they must be, before anything is written or trained
        labelled_pictures(data_cfg.extra_images, data_cfg.info.classes, "extra_images")
    model_cfg = ModelConfig.for_dataset(data_cfg.dataset, **pick(MODEL_SETTINGS))
    train_cfg = TrainConfig(**pick(TRAIN_SETTINGS))
    if run_dir is None:
        run_dir = runs_root / (name or new_run_name(model_cfg, data_cfg, runs_root))
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    return RunPlan(model_cfg, data_cfg, train_cfg, run_dir, preset=preset, init=start)


def resolve_settings(preset: str | None = None, settings: dict[str, Any] | None = None,
                     config_file: str | Path | None = None) -> tuple[str | None, dict[str, Any]]:
    """The preset and settings of a run, in rising precedence: a config file's (``config_file``),
    then the ``preset`` and ``settings`` given explicitly. Settings left out come from the preset,
    and what it leaves out from the defaults (``plan_run``)."""
    given = dict(settings or {})
    if config_file is None:
        return preset, given
    from_file, file_settings = read_config(config_file)
    return preset or from_file, {**file_settings, **given}


def read_config(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """(preset, settings) from a config file: a run's config.json (sections model, data, train,
    preset) or a flat JSON object of settings (``{"nf": 32, "epochs": 3}``). Settings a run
    derives (the data set's classes and normalisation, the fixed split seed) are skipped."""
    import json

    path = Path(path)
    raw = read_bounded(path, MAX_CONFIG_BYTES, "config file", ConfigError)
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a file of settings") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not readable JSON ({str(exc)[:100]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} is not a JSON object of settings")
    preset = data.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"config file {path}: preset must be a name, got {preset!r}")
    derived = set(derived_settings())
    sections = [data[k] for k in ("model", "data", "train") if isinstance(data.get(k), dict)]
    flat = {k: v for k, v in data.items() if k not in ("model", "data", "train", "preset", "init", "mnistctl_version",
                                                        "torch_version", "device", "threads", "processes")}
    settings: dict[str, Any] = {}
    for part in [*sections, flat]:
        settings.update({k: v for k, v in part.items() if k not in derived})
    unknown = sorted(set(settings) - set(MODEL_SETTINGS + DATA_SETTINGS + TRAIN_SETTINGS))
    if unknown:
        raise ConfigError(f"config file {path} has settings mnistctl does not know: {', '.join(unknown)}")
    return preset, settings


def _plan_resume(path: Path, given: dict[str, Any], run_dir: str | Path | None) -> RunPlan:
    ckpt = load_checkpoint(path)
    if not ckpt.resumable:
        raise ConfigError(f"{path} is an exported, inference-only checkpoint without optimizer state: "
                          "resume from the run's last.pt instead")
    finished = ckpt.epoch >= ckpt.train_config.epochs
    more = given.pop("epochs", None)
    train_cfg = ckpt.train_config
    if finished:
        if more is None or more <= ckpt.epoch:
            raise ConfigError(f"{path} already finished its {ckpt.train_config.epochs} epochs: to train it "
                              f"further, resume it with more epochs (above {ckpt.epoch})", setting="epochs",
                              problem=f"must be above {ckpt.epoch} to train {path} further (it finished its "
                                      f"{ckpt.train_config.epochs} epochs)")
        train_cfg = replace(train_cfg, epochs=more)  # extended: the added epochs get a schedule of their own
    elif more is not None and more != ckpt.train_config.epochs:
        given["epochs"] = more  # an unfinished run keeps its schedule: reported as ignored below
    current = {**ckpt.model_config.to_dict(), **ckpt.data_config.to_dict(), **ckpt.train_config.to_dict()}
    warnings = [f"{k.replace('_', ' ')} {v!r} is ignored: a resumed run keeps its own ({current[k]!r})"
                + (" until it is finished; then resume it with more epochs" if k == "epochs" else "")
                for k, v in given.items() if current.get(k) != v]
    return RunPlan(ckpt.model_config, ckpt.data_config, train_cfg,
                   Path(run_dir) if run_dir is not None else path.parent, resume=ckpt, warnings=warnings,
                   extends=finished)


def new_run_name(model_cfg: ModelConfig, data_cfg: DataConfig, root: Path = RUNS_ROOT) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{data_cfg.dataset}-nf{model_cfg.nf}-{stamp}"
    name, i = base, 1
    while (root / name).exists():
        i += 1
        name = f"{base}-{i}"
    return name


def check_run_dir(run_dir: Path) -> None:
    """A new run must not overwrite the checkpoints of an earlier one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError.invalid("run_dir", f"{run_dir} is a file, not a directory: choose another",
                                  "the run directory")
    taken = [p.name for p in (run_dir / BEST_FILE, run_dir / LAST_FILE) if p.exists()]
    if taken:
        raise RunExistsError(run_dir, taken, run_dir / LAST_FILE)
