"""Whole training runs: fit a plan and write its files.

``plan_run`` (from ``mnistctl.training.plan``, and importable from here) turns what a user asked for into
typed configs and a run directory (warning about options a resumed run ignores); ``fit`` trains
and writes ``best.pt``, ``last.pt`` and ``history.json``, saving a resumable checkpoint on Ctrl-C;
``train`` does both and draws ``loss.png``. Front ends call ``plan_run`` then ``train``.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mnistctl import __version__
from mnistctl import devices as accel
from mnistctl.checkpoint import Checkpoint, TrainingState
from mnistctl.config import DataConfig, ModelConfig, TrainConfig
from mnistctl.data.splits import load_split
from mnistctl.errors import (
    CheckpointError,
    ConfigError,
    DistributedError,
    TrainingInterrupted,
    WriteError,
)
from mnistctl.fsutil import atomic_path, remove_stale_parts, write_csv, write_json
from mnistctl.model import Net, num_parameters
from mnistctl.runfiles import METRICS_COLUMNS, METRICS_FILE, Best, EpochRecord, StepRecord, metrics_rows
from mnistctl.training import cudagraph
from mnistctl.training import loop as engine
from mnistctl.training.distributed import Group, weights_digest
from mnistctl.training.interrupts import REPEAT_GRACE_S, deferred_interrupt
from mnistctl.training.plan import (  # noqa: F401  (the planning API, as front ends call it)
    BUILTIN,
    CONFIG_FILE,
    DATA_SETTINGS,
    MODEL_SETTINGS,
    RUNS_ROOT,
    TRAIN_SETTINGS,
    RunPlan,
    check_run_dir,
    new_run_name,
    plan_run,
    read_config,
)
from mnistctl.training.runlog import StepLog, TensorBoard, kept_steps

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
    and the validation (see ``mnistctl.training.distributed``), and only process 0 writes files. A run keeps
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
