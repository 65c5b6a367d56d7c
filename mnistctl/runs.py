"""Whole training runs: plan one (preset + overrides, or resume), fit it, write its files.

``plan_run`` turns what a user asked for into typed configs and a run directory (warning about
options a resumed run ignores); ``fit`` trains and writes ``best.pt``, ``last.pt`` and
``history.json``, saving a resumable checkpoint on Ctrl-C; ``train`` does both and draws
``loss.png``. Front ends call ``plan_run`` then ``train``.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from mnistctl import __version__, accel, cudagraph, engine
from mnistctl.checkpoint import Checkpoint, TrainingState
from mnistctl.checkpoint import load as load_checkpoint
from mnistctl.config import DataConfig, ModelConfig, TrainConfig
from mnistctl.data import load_split
from mnistctl.distributed import Group, weights_digest
from mnistctl.errors import (
    CheckpointError,
    ConfigError,
    DistributedError,
    RunExistsError,
    TrainingInterrupted,
    WriteError,
)
from mnistctl.fsutil import atomic_path, remove_stale_parts, write_csv, write_json
from mnistctl.history import METRICS_COLUMNS, METRICS_FILE, Best, EpochRecord, StepRecord, metrics_rows
from mnistctl.interrupts import REPEAT_GRACE_S, deferred_interrupt
from mnistctl.model import Net, num_parameters
from mnistctl.recipes import PRESETS
from mnistctl.runlog import StepLog, TensorBoard, kept_steps

RUNS_ROOT = Path("runs")
CONFIG_FILE = "config.json"
# which config each user-settable name belongs to (num_classes, mean and std follow the data set)
MODEL_SETTINGS = ("nf", "batchnorm", "dropout")
DATA_SETTINGS = ("dataset", "val_fraction")
TRAIN_SETTINGS = tuple(f.name for f in fields(TrainConfig))


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
    if preset not in PRESETS:
        raise ConfigError.invalid("preset", f"must be one of {', '.join(PRESETS)}, got {preset!r}")
    recipe = {**PRESETS[preset], **given}
    pick = lambda keys: {k: recipe[k] for k in keys if k in recipe}  # noqa: E731
    data_cfg = DataConfig(**pick(DATA_SETTINGS))
    model_cfg = ModelConfig.for_dataset(data_cfg.dataset, **pick(MODEL_SETTINGS))
    train_cfg = TrainConfig(**pick(TRAIN_SETTINGS))
    if run_dir is None:
        run_dir = runs_root / (name or new_run_name(model_cfg, data_cfg, runs_root))
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    return RunPlan(model_cfg, data_cfg, train_cfg, run_dir, preset=preset, init=start)


BUILTIN = "builtin"  # init from the built-in model


def read_config(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """(preset, settings) from a config file: a run's config.json (sections model, data, train,
    preset) or a flat JSON object of settings (``{"nf": 32, "epochs": 3}``). Settings a run
    derives (the data set's classes and normalisation, the fixed split seed) are skipped."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not readable JSON ({str(exc)[:100]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} is not a JSON object of settings")
    preset = data.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"config file {path}: preset must be a name, got {preset!r}")
    derived = {"num_classes", "mean", "std", "split_seed"}
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
    taken = [p.name for p in (run_dir / "best.pt", run_dir / "last.pt") if p.exists()]
    if taken:
        raise RunExistsError(run_dir, taken)


# --- fitting ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunInfo:
    """What a run is about to do, given to ``on_ready`` once data and model are in place."""

    train_images: int
    val_images: int
    steps: int  # per epoch
    parameters: int
    device: str
    start_epoch: int  # epochs already done (resumed runs)
    start_step: int  # steps already done in the first epoch (runs resumed after Ctrl-C)
    history: list[EpochRecord]  # the epochs already done
    threads: int = 1  # PyTorch's CPU threads (per process)
    processes: int = 1  # training together (torchrun)
    global_batch: int = 0  # images per step, over all processes
    backend: str = ""  # how the processes talk: gloo or nccl


@dataclass
class FitResult:
    run_dir: Path
    history: list[EpochRecord]
    best: Best
    best_path: Path
    last_path: Path
    seconds: float
    files: list[Path] = field(default_factory=list)
    stopped_early: bool = False  # by patience: no better validation accuracy for that many epochs
    steps: list[StepRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # how the run went other than planned

    @property
    def best_record(self) -> EpochRecord:
        return self.history[self.best.epoch - 1]


def fit(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig, run_dir: Path,
        device: torch.device, data_dir: str | Path | None = None, resume: Checkpoint | None = None,
        callbacks: engine.TrainCallbacks | None = None,
        on_ready: Callable[[RunInfo], None] | None = None, init: Checkpoint | None = None,
        tensorboard: bool = False, config: dict[str, Any] | None = None, group: Group | None = None) -> FitResult:
    """Train (or resume training) and write best.pt, last.pt, history.json and metrics.csv (and
    ``config`` as config.json) into ``run_dir``.

    On Ctrl-C or SIGTERM, saves a resumable last.pt after the current step and raises
    TrainingInterrupted. ``init`` starts from its weights (fine-tuning). A resumed run that had
    finished and is given more epochs goes on with a new schedule over the added epochs (the
    optimizer's state carries over). With ``train_cfg.patience``, training stops after that many
    epochs without a better validation accuracy.

    In a ``group`` of several processes (torchrun), every process calls this; they share each step
    and the validation (see ``mnistctl.distributed``), and only process 0 writes files. A run keeps
    its global batch (``batch_size`` x the processes it started with) when resumed with another
    number of processes, so its steps and schedule do not change.
    """
    group = group or Group(device=device)
    callbacks = callbacks or engine.TrainCallbacks()
    accel.setup(device)
    train_x, train_y = load_split(data_cfg, "train", data_dir)
    val_x, val_y = load_split(data_cfg, "val", data_dir)
    # the whole split lives on the training device: batches are gathered there, never copied
    train_x, train_y, val_x = train_x.to(device), train_y.to(device), val_x.to(device)

    torch.manual_seed(train_cfg.seed)
    model = accel.prepare_model(Net(model_cfg), device)
    optimizer = engine.make_optimizer(model, train_cfg)
    processes = resume.training.processes if resume is not None and resume.training is not None else group.world
    global_batch = train_cfg.batch_size * processes
    steps = engine.steps_per_epoch(len(train_y), global_batch, train_cfg.epoch_fraction)
    scheduler = engine.make_scheduler(optimizer, train_cfg, steps)
    history: list[EpochRecord] = []
    best = Best()
    start_epoch, start_step, partial = 0, 0, None
    if init is not None:
        try:
            model.load_state_dict(init.weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{init.source}'s weights do not fit this network "
                                  f"({str(exc).splitlines()[0][:120]})") from None
    if resume is not None:
        if not resume.resumable:
            raise ConfigError(f"{resume.source} is inference-only: it cannot be resumed")
        extending = resume.epoch >= resume.train_config.epochs
        if extending:  # the added epochs get a schedule of their own
            scheduler = engine.make_scheduler(optimizer, replace(train_cfg, epochs=train_cfg.epochs - resume.epoch),
                                              steps)
        try:
            model.load_state_dict(resume.training.raw_weights or resume.weights)
            optimizer.load_state_dict(resume.training.optimizer)
            if extending:
                for param_group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
                    param_group["lr"] = lr  # the new schedule's starting rate, not the old run's final one
            else:
                scheduler.load_state_dict(resume.training.scheduler)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{resume.source} cannot be resumed: its saved training state does not fit "
                                  f"its network ({str(exc).splitlines()[0][:120]})") from None
        history, best = list(resume.history), resume.best
        start_epoch, start_step = resume.epoch, resume.training.step_in_epoch
        partial = engine.EpochStats.from_dict(resume.training.partial_epoch) if resume.training.partial_epoch else None
        if start_epoch >= train_cfg.epochs:
            raise ConfigError(f"that run already finished its {train_cfg.epochs} epochs: nothing to resume")
    # with an average of the weights (EMA), the average is what is validated and saved as the model
    average = engine.WeightAverage(model, train_cfg.ema) if train_cfg.ema else None
    if average is not None and resume is not None and resume.training.raw_weights is not None:
        average.module.load_state_dict(resume.weights)
        average.updates = resume.training.ema_updates
    scored = average.module if average is not None else model
    trainee = group.wrap(model)  # DistributedDataParallel in a group; `model` is what checkpoints hold
    graph = cudagraph.StepGraph(model, engine.new_window(device)) if cudagraph.usable(device, group.world) else None

    best_path, last_path, history_path = run_dir / "best.pt", run_dir / "last.pt", run_dir / "history.json"
    files = [best_path, last_path, history_path, run_dir / METRICS_FILE]
    board = None
    if group.main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(run_dir, exc) from None
        remove_stale_parts(run_dir)  # temporary files of a run that was killed
        if config is not None:  # every setting, readable without mnistctl (and by train --config)
            write_json(run_dir / CONFIG_FILE, config)
            files.insert(0, run_dir / CONFIG_FILE)
        board = TensorBoard(run_dir) if tensorboard else None
    saved_epoch = start_epoch if resume is not None else None  # what last.pt holds
    step_log = StepLog(callbacks, optimizer, steps,
                       kept_steps(run_dir, start_epoch, start_step, steps) if resume is not None else [], board)
    if on_ready:
        on_ready(RunInfo(len(train_y), len(val_y), steps, num_parameters(model), str(device),
                         start_epoch, start_step, list(history), torch.get_num_threads(), group.world, global_batch,
                         group.backend))

    def write_metrics() -> None:
        write_csv(run_dir / METRICS_FILE, METRICS_COLUMNS, metrics_rows(step_log.records, history))

    def snapshot(epoch: int, step: int = 0, stats: engine.EpochStats | None = None) -> Checkpoint:
        return Checkpoint(
            model_config=model_cfg, data_config=data_cfg, train_config=train_cfg,
            weights=scored.state_dict(),  # saved at once: to_payload copies them to the CPU
            classes=list(data_cfg.info.classes), dataset=data_cfg.dataset, epoch=epoch, history=list(history),
            best=best, training=TrainingState(optimizer.state_dict(), scheduler.state_dict(), step,
                                              stats.to_dict() if stats is not None else None, processes,
                                              model.state_dict() if average is not None else None,
                                              average.updates if average is not None else 0))

    started = time.perf_counter()
    stopped_early = False
    grace = REPEAT_GRACE_S if group.active else 0.0
    with deferred_interrupt(grace) as stop, contextlib.closing(board) if board else contextlib.nullcontext(), \
            _lost_contact(group, last_path, lambda: saved_epoch):
        for epoch in range(start_epoch, train_cfg.epochs):
            stats = partial or engine.EpochStats()
            step_log.on_epoch_start(epoch + 1, train_cfg.epochs, steps, start_step)
            try:
                engine.train_one_epoch(trainee, optimizer, scheduler, train_x, train_y, train_cfg, epoch,
                                       stats, start_step, step_log, stop, group, global_batch, average, graph)
            except engine.Interrupted as exc:
                if group.main:
                    try:
                        snapshot(epoch, exc.step, stats).save(last_path)
                        write_metrics()
                    except WriteError as error:
                        raise error.add_context(_on_disk(last_path, saved_epoch)) from None
                if exc.together:
                    group.barrier()  # no process exits (and makes the launcher stop the rest) before it is saved
                raise TrainingInterrupted(last_path, epoch + 1, exc.step, stop.signum) from None
            start_step, partial = 0, None

            group.average_buffers(model)  # BatchNorm statistics: each process gathered its own
            if average is not None:
                group.average_buffers(average.module)
            val_loss, val_acc, _ = engine.evaluate_shared(scored, val_x, val_y, train_cfg.eval_batch_size, group)
            if group.tracing:
                group.record("epoch", epoch=epoch + 1, weights=weights_digest(model),
                             averaged=weights_digest(scored) if average is not None else None, val_loss=val_loss,
                             val_acc=val_acc, train_loss=stats.loss, seen=stats.seen)
            record = EpochRecord(epoch=epoch + 1, train_loss=stats.loss, train_acc=stats.accuracy,
                                 val_loss=val_loss, val_acc=val_acc, lr=optimizer.param_groups[0]["lr"],
                                 seconds=stats.seconds, images_per_s=stats.seen / max(stats.seconds, 1e-9),
                                 train_objective=stats.objective if train_cfg.label_smoothing > 0 else math.nan)
            history.append(record)
            improved = val_acc > best.val_acc
            if improved:
                best = Best(epoch + 1, val_acc, val_loss)
            if group.main:
                state = snapshot(epoch + 1)
                try:
                    state.save(last_path)
                    saved_epoch = epoch + 1
                    if improved:
                        state.save(best_path)
                    write_json(history_path, {"run": run_dir.name, "dataset": data_cfg.dataset,
                                              "history": [r.to_dict() for r in history]})
                    write_metrics()
                except WriteError as error:
                    raise error.add_context(_on_disk(last_path, saved_epoch)) from None
            step_log.on_epoch_end(record)
            if train_cfg.patience and epoch + 1 - best.epoch >= train_cfg.patience and epoch + 1 < train_cfg.epochs:
                stopped_early = True
                break
            if group.any(stop.requested) and epoch + 1 < train_cfg.epochs:
                group.barrier()
                raise TrainingInterrupted(last_path, epoch + 2, 0, stop.signum)

    return FitResult(run_dir=run_dir, history=history, best=best, best_path=best_path, last_path=last_path,
                     seconds=time.perf_counter() - started,
                     files=files if group.main else [],
                     stopped_early=stopped_early, steps=step_log.records,
                     warnings=[f"training steps ran without CUDA graphs (slower): capturing one failed: "
                               f"{graph.failure}"] if graph is not None and graph.failure else [])


@contextmanager
def _lost_contact(group: Group, last_path: Path, saved_epoch: Callable[[], int | None]) -> Iterator[None]:
    """A process that loses the others stops with a DistributedError saying what is saved."""
    try:
        with group.talking("training"):
            yield
    except DistributedError as exc:
        epoch = saved_epoch()
        if group.main and epoch is not None:
            raise DistributedError(f"{exc}; {last_path} holds epoch {epoch}: resume from it") from None
        raise


def _on_disk(last_path: Path, saved_epoch: int | None) -> str:
    """What a failed save leaves the user with."""
    if saved_epoch is None:
        return "training stopped; no checkpoint of this run was saved"
    return (f"training stopped; {last_path} still holds epoch {saved_epoch} (intact): make room, then "
            f"resume from it")


def train(plan: RunPlan, device: torch.device, data_dir: str | Path | None = None, *,
          callbacks: engine.TrainCallbacks | None = None, on_ready: Callable[[RunInfo], None] | None = None,
          save_model: Path | None = None, tensorboard: bool = False, group: Group | None = None) -> FitResult:
    """Fit ``plan``, then draw ``loss.png`` into its run directory and, when asked, copy the final
    checkpoint to ``save_model`` (the original script's ``mnist_cnn.pt``).

    In a ``group`` of processes every one calls this with its own plan; process 0's run directory
    is the run's, and only process 0 writes. They return together, once process 0 has written."""
    from mnistctl.plotting import history_figure, save_figure

    group = group or Group(device=device)
    plan.run_dir = Path(group.broadcast(str(plan.run_dir)))  # a new run's name has a timestamp: one for all
    config = {**plan.config(), "mnistctl_version": __version__, "torch_version": torch.__version__,
              "device": str(device), "threads": torch.get_num_threads(), "processes": group.world}
    result = fit(plan.model_config, plan.data_config, plan.train_config, plan.run_dir, device, data_dir,
                 resume=plan.resume, callbacks=callbacks, on_ready=on_ready, init=plan.init, tensorboard=tensorboard,
                 config=config, group=group)
    if group.main:
        result.files.append(save_figure(history_figure([(plan.run_dir.name, result.history, result.steps)]),
                                        plan.run_dir / "loss.png"))
        if save_model is not None:
            with atomic_path(save_model) as tmp:
                shutil.copyfile(result.last_path, tmp)
            result.files.append(save_model)
    group.barrier()  # process 0 has written its files: no process leaves the group (and ends) before
    return result
