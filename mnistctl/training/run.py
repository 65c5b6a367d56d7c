"""Whole training runs: fit a plan and write its files.

``plan_run`` (from ``mnistctl.training.plan``, and importable from here) turns what a user asked for into
typed configs and a run directory (warning about options a resumed run ignores); ``fit`` trains
and writes ``best.pt``, ``last.pt`` and ``history.json``, saving a resumable checkpoint on Ctrl-C;
``train`` does both and draws ``loss.png``. ``train_settings`` is all that ``mnistctl train`` does
(threads, torchrun, a config file, a preset and settings, then the run), with hooks for a front end;
``mnistctl.train`` calls it too.
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
from mnistctl.data.splits import load_split
from mnistctl.errors import (
    CheckpointError,
    ConfigError,
    DistributedError,
    TrainingInterrupted,
    WriteError,
)
from mnistctl.fsutil import atomic_path, exclusive, remove_stale_parts, write_csv, write_json
from mnistctl.images.preparers import usable_cores
from mnistctl.model import Net, num_parameters
from mnistctl.runfiles import (
    BEST_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    LAST_FILE,
    METRICS_COLUMNS,
    METRICS_FILE,
    PLOT_FILE,
    Best,
    EpochRecord,
    RunHooks,
    StepRecord,
    TrainCallbacks,
    metrics_rows,
)
from mnistctl.training import cudagraph
from mnistctl.training import loop as engine
from mnistctl.training.distributed import Group, local_processes, weights_digest
from mnistctl.training.extra_images import with_extra_images
from mnistctl.training.interrupts import REPEAT_GRACE_S, deferred_interrupt
from mnistctl.training.plan import (  # noqa: F401  (the planning API, as front ends call it)
    BUILTIN,
    DATA_SETTINGS,
    MODEL_SETTINGS,
    RUNS_ROOT,
    TRAIN_SETTINGS,
    RunPlan,
    check_run_dir,
    new_run_name,
    plan_run,
    read_config,
    resolve_settings,
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
    extra_images: int = 0  # of the training images, those from --extra-images (repeats counted)
    extra_pictures: int = 0  # the pictures of --extra-images they were drawn from


@dataclass
class Run:
    """A trained run: where it is, its epochs, the best one, and the files written."""

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


def fit(plan: RunPlan, device: torch.device, data_dir: str | Path | None = None, *,
        callbacks: TrainCallbacks | None = None, on_ready: Callable[[RunInfo], None] | None = None,
        tensorboard: bool = False, config: dict[str, Any] | None = None, group: Group | None = None) -> Run:
    """Train (or resume training: ``plan.resume``) and write best.pt, last.pt, history.json and
    metrics.csv (and ``config`` as config.json) into ``plan.run_dir``.

    On Ctrl-C or SIGTERM, saves a resumable last.pt after the current step and raises
    TrainingInterrupted. ``plan.init`` starts from its weights (fine-tuning). A resumed run that had
    finished and is given more epochs goes on with a new schedule over the added epochs (the
    optimizer's state carries over). With ``train_cfg.patience``, training stops after that many
    epochs without a better validation accuracy.

    In a ``group`` of several processes (torchrun), every process calls this; they share each step
    and the validation (see ``mnistctl.training.distributed``), and only process 0 writes files. A run keeps
    its global batch (``batch_size`` x the processes it started with) when resumed with another
    number of processes, so its steps and schedule do not change.
    """
    data_cfg, train_cfg, run_dir = plan.data_config, plan.train_config, plan.run_dir
    resume, init = plan.resume, plan.init
    group = group or Group(device=device)
    accel.setup(device)
    callbacks = callbacks or engine.TrainCallbacks()
    train_x, train_y = load_split(data_cfg, "train", data_dir)
    extra = pictures = 0
    if data_cfg.extra_images:
        jobs = max(1, usable_cores() // local_processes())  # each process of a group prepares them all
        train_x, train_y, extra, pictures = with_extra_images(data_cfg, train_x, train_y, callbacks.on_extra_images,
                                                              jobs)
    val_x, val_y = load_split(data_cfg, "val", data_dir)
    # the whole split lives on the training device: batches are gathered there, never copied
    train_x, train_y, val_x = train_x.to(device), train_y.to(device), val_x.to(device)
    run = _Fit(plan, device, group, callbacks, len(train_y))
    if init is not None:
        run.start_from(init)
    if resume is not None:
        run.restore(resume)
    run.wrap(resume)
    with run.lock:  # the run directory's, taken by open_run_dir on process 0
        run.open_run_dir(config, tensorboard)
        if on_ready:
            on_ready(RunInfo(len(train_y), len(val_y), run.steps, num_parameters(run.model), str(device),
                             run.start_epoch, run.start_step, list(run.history), torch.get_num_threads(), group.world,
                             run.global_batch, group.backend, extra, pictures))
        started = time.perf_counter()
        stopped_early = False
        grace = REPEAT_GRACE_S if group.active else 0.0
        with deferred_interrupt(grace) as stop, _lost_contact(group, run.last_path, lambda: run.saved_epoch):
            for epoch in range(run.start_epoch, train_cfg.epochs):
                run.train_epoch(epoch, train_x, train_y, stop)
                run.end_epoch(epoch, val_x, val_y)
                done, patience = epoch + 1, train_cfg.patience
                if patience and done - run.best.epoch >= patience and done < train_cfg.epochs:
                    stopped_early = True
                    break
                if group.any(stop.requested) and done < train_cfg.epochs:
                    group.barrier()
                    raise TrainingInterrupted(run.last_path, epoch + 2, 0, stop.signum)
        graph = run.graph
    return Run(run_dir=run_dir, history=run.history, best=run.best, best_path=run.best_path,
               last_path=run.last_path, seconds=time.perf_counter() - started, files=run.files if group.main else [],
               stopped_early=stopped_early, steps=run.step_log.records,
               warnings=[f"training steps ran without CUDA graphs (slower): capturing one failed: "
                         f"{graph.failure}"] if graph is not None and graph.failure else [])


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Each parameter's saved optimizer state (Adam's moments, SGD's momentum) has its shape: a state
    saved for another network would load, then fail at the first step."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"the optimizer's {name} has shape {list(value.shape)} for a weight of "
                                     f"shape {list(param.shape)}")


class _Fit:
    """A run being fitted: its model, optimizer and schedule, where it stands (epochs, history,
    best), and how it saves itself (only process 0 of a group writes)."""

    def __init__(self, plan: RunPlan, device: torch.device, group: Group, callbacks: TrainCallbacks,
                 train_images: int) -> None:
        model_cfg, train_cfg, run_dir, resume = plan.model_config, plan.train_config, plan.run_dir, plan.resume
        self.model_cfg, self.data_cfg, self.train_cfg, self.run_dir = model_cfg, plan.data_config, train_cfg, run_dir
        self.group, self.callbacks = group, callbacks
        torch.manual_seed(train_cfg.seed)
        self.model = accel.prepare_model(Net(model_cfg), device)
        self.optimizer = engine.make_optimizer(self.model, train_cfg)
        resumed = resume.training if resume is not None else None
        self.processes = resumed.processes if resumed is not None else group.world
        self.global_batch = train_cfg.batch_size * self.processes
        self.steps = engine.steps_per_epoch(train_images, self.global_batch, train_cfg.epoch_fraction)
        self.scheduler = engine.make_scheduler(self.optimizer, train_cfg, self.steps)
        self.history: list[EpochRecord] = []
        self.best = Best()
        self.start_epoch, self.start_step = 0, 0
        self.partial: engine.EpochStats | None = None
        self.saved_epoch: int | None = None  # what last.pt holds
        self.device = device
        self.average: engine.WeightAverage | None = None
        self.scored, self.trainee = self.model, self.model
        self.graph: cudagraph.StepGraph | None = None
        self.best_path, self.last_path = run_dir / BEST_FILE, run_dir / LAST_FILE
        self.history_path = run_dir / HISTORY_FILE
        self.files = [self.best_path, self.last_path, self.history_path, run_dir / METRICS_FILE]
        self.board: TensorBoard | None = None
        self.lock = contextlib.ExitStack()  # the run directory's, held by process 0 while it trains
        self.step_log = StepLog(callbacks, self.optimizer, self.steps, [], None)

    def start_from(self, init: Checkpoint) -> None:
        """Fine-tuning: the weights of ``init``."""
        try:
            self.model.load_state_dict(init.weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{init.source}'s weights do not fit this network "
                                  f"({str(exc).splitlines()[0][:120]})") from None

    def restore(self, resume: Checkpoint) -> None:
        """Where ``resume`` stopped: weights, optimizer and schedule, history, and the step it was at;
        a finished run given more epochs gets a schedule of its own over the added ones."""
        state = resume.training
        if not resume.resumable or state is None:
            raise ConfigError(f"{resume.source} is inference-only: it cannot be resumed")
        train_cfg = self.train_cfg
        extending = resume.epoch >= resume.train_config.epochs
        if extending:  # the added epochs get a schedule of their own
            self.scheduler = engine.make_scheduler(
                self.optimizer, replace(train_cfg, epochs=train_cfg.epochs - resume.epoch), self.steps)
        try:
            self.model.load_state_dict(state.raw_weights or resume.weights)
            self.optimizer.load_state_dict(state.optimizer)
            _check_optimizer_state(self.optimizer)
            if extending:
                for param_group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                    param_group["lr"] = lr  # the new schedule's starting rate, not the old run's final one
            else:
                self.scheduler.load_state_dict(state.scheduler)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{resume.source} cannot be resumed: its saved training state does not fit "
                                  f"its network ({str(exc).splitlines()[0][:120]})") from None
        self.history, self.best = list(resume.history), resume.best
        self.start_epoch, self.start_step = resume.epoch, state.step_in_epoch
        self.partial = engine.EpochStats.from_dict(state.partial_epoch) if state.partial_epoch else None
        if self.start_epoch >= train_cfg.epochs:
            raise ConfigError(f"that run already finished its {train_cfg.epochs} epochs: nothing to resume")
        self.saved_epoch = self.start_epoch

    def wrap(self, resume: Checkpoint | None) -> None:
        """Once the weights are in place: the average of the weights (EMA: the average is what is
        validated and saved as the model), DistributedDataParallel in a group (which sends process
        0's weights to the others; ``model`` stays what checkpoints hold) and a CUDA graph."""
        train_cfg, model, group = self.train_cfg, self.model, self.group
        if train_cfg.ema:
            self.average = engine.WeightAverage(model, train_cfg.ema)
            if resume is not None and resume.training is not None and resume.training.raw_weights is not None:
                self.average.module.load_state_dict(resume.weights)
                self.average.updates = resume.training.ema_updates
        self.scored = self.average.module if self.average is not None else model
        self.trainee = group.wrap(model)
        self.graph = (cudagraph.StepGraph(model, engine.new_window(self.device))
                      if cudagraph.usable(self.device, group.world) else None)

    def open_run_dir(self, config: dict[str, Any] | None, tensorboard: bool) -> None:
        """Process 0 makes the run directory and writes ``config`` (as config.json); every process
        then logs its steps (continuing a resumed run's metrics)."""
        run_dir = self.run_dir
        if self.group.main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WriteError(run_dir, exc) from None
            self.lock.enter_context(exclusive(run_dir, "another training run"))
            remove_stale_parts(run_dir, older_than=0)  # under the lock, every temporary file is a killed run's
            if config is not None:  # every setting, readable without mnistctl (and by train --config)
                write_json(run_dir / CONFIG_FILE, config)
                self.files.insert(0, run_dir / CONFIG_FILE)
            if tensorboard:  # closed with the lock, when the run ends
                self.board = self.lock.enter_context(contextlib.closing(TensorBoard(run_dir)))
        resumed = self.saved_epoch is not None
        kept = kept_steps(run_dir, self.start_epoch, self.start_step, self.steps) if resumed else []
        self.step_log = StepLog(self.callbacks, self.optimizer, self.steps, kept, self.board)

    def snapshot(self, epoch: int, step: int = 0, stats: engine.EpochStats | None = None) -> Checkpoint:
        average = self.average
        return Checkpoint(
            model_config=self.model_cfg, data_config=self.data_cfg, train_config=self.train_cfg,
            weights=self.scored.state_dict(),  # saved at once: to_payload copies them to the CPU
            classes=list(self.data_cfg.info.classes), dataset=self.data_cfg.dataset, epoch=epoch,
            history=list(self.history), best=self.best,
            training=TrainingState(self.optimizer.state_dict(), self.scheduler.state_dict(), step,
                                   stats.to_dict() if stats is not None else None, self.processes,
                                   self.model.state_dict() if average is not None else None,
                                   average.updates if average is not None else 0))

    def write_metrics(self) -> None:
        write_csv(self.run_dir / METRICS_FILE, METRICS_COLUMNS, metrics_rows(self.step_log.records, self.history))

    def train_epoch(self, epoch: int, train_x: torch.Tensor, train_y: torch.Tensor, stop: Any) -> None:
        """Epoch ``epoch``'s steps; on Ctrl-C or SIGTERM, a resumable last.pt at the step reached, then
        TrainingInterrupted."""
        stats = self.partial or engine.EpochStats()
        self.step_log.on_epoch_start(epoch + 1, self.train_cfg.epochs, self.steps, self.start_step)
        try:
            engine.train_one_epoch(engine.Learner(self.trainee, self.optimizer, self.scheduler, self.average,
                                                  self.graph), train_x, train_y, self.train_cfg, epoch, stats,
                                   engine.EpochControl(self.start_step, self.step_log, stop, self.group,
                                                       self.global_batch))
        except engine.Interrupted as exc:
            if self.group.main:
                try:
                    self.snapshot(epoch, exc.step, stats).save(self.last_path)
                    self.write_metrics()
                except WriteError as error:
                    raise error.add_context(_on_disk(self.last_path, self.saved_epoch)) from None
            if exc.together:
                self.group.barrier()  # no process exits (and makes the launcher stop the rest) before it is saved
            raise TrainingInterrupted(self.last_path, epoch + 1, exc.step, stop.signum) from None
        self.start_step, self.partial = 0, None
        self.stats = stats

    def end_epoch(self, epoch: int, val_x: torch.Tensor, val_y: torch.Tensor) -> None:
        """Validate, record the epoch, and save last.pt (and best.pt when it improved), history and metrics."""
        group, model, average, stats = self.group, self.model, self.average, self.stats
        group.average_buffers(model)  # BatchNorm statistics: each process gathered its own
        if average is not None:
            group.average_buffers(average.module)
        val_loss, val_acc, _ = engine.evaluate_shared(self.scored, val_x, val_y, self.train_cfg.eval_batch_size, group)
        if group.tracing:
            group.record("epoch", epoch=epoch + 1, weights=weights_digest(model),
                         averaged=weights_digest(self.scored) if average is not None else None, val_loss=val_loss,
                         val_acc=val_acc, train_loss=stats.loss, seen=stats.seen)
        record = EpochRecord(epoch=epoch + 1, train_loss=stats.loss, train_acc=stats.accuracy,
                             val_loss=val_loss, val_acc=val_acc, lr=self.optimizer.param_groups[0]["lr"],
                             seconds=stats.seconds, images_per_s=stats.seen / max(stats.seconds, 1e-9),
                             train_objective=stats.objective if self.train_cfg.label_smoothing > 0 else math.nan)
        self.history.append(record)
        improved = val_acc > self.best.val_acc
        if improved:
            self.best = Best(epoch + 1, val_acc, val_loss)
        if group.main:
            state = self.snapshot(epoch + 1)
            try:
                state.save(self.last_path)
                self.saved_epoch = epoch + 1
                if improved:
                    state.save(self.best_path)
                write_json(self.history_path, {"run": self.run_dir.name, "dataset": self.data_cfg.dataset,
                                               "history": [r.to_dict() for r in self.history]})
                self.write_metrics()
            except WriteError as error:
                raise error.add_context(_on_disk(self.last_path, self.saved_epoch)) from None
        self.step_log.on_epoch_end(record)


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
          callbacks: TrainCallbacks | None = None, on_ready: Callable[[RunInfo], None] | None = None,
          save_model: Path | None = None, tensorboard: bool = False, group: Group | None = None) -> Run:
    """Fit ``plan``, then draw ``loss.png`` into its run directory and, when asked, copy the final
    checkpoint to ``save_model`` (the original script's ``mnist_cnn.pt``).

    In a ``group`` of processes every one calls this with its own plan; process 0's run directory
    is the run's, and only process 0 writes. They return together, once process 0 has written."""
    from mnistctl.plotting import history_figure, save_figure

    group = group or Group(device=device)
    plan.run_dir = Path(group.broadcast(str(plan.run_dir)))  # a new run's name has a timestamp: one for all
    config = {**plan.config(), "mnistctl_version": __version__, "torch_version": torch.__version__,
              "device": str(device), "threads": torch.get_num_threads(), "processes": group.world}
    result = fit(plan, device, data_dir, callbacks=callbacks, on_ready=on_ready, tensorboard=tensorboard,
                 config=config, group=group)
    if group.main:
        result.files.append(save_figure(history_figure([(plan.run_dir.name, result.history, result.steps)]),
                                        plan.run_dir / PLOT_FILE))
        if save_model is not None:
            with atomic_path(save_model) as tmp:
                shutil.copyfile(result.last_path, tmp)
            result.files.append(save_model)
    group.barrier()  # process 0 has written its files: no process leaves the group (and ends) before
    return result


def train_settings(preset: str | None = None, settings: dict[str, Any] | None = None, *,
                   config_file: str | Path | None = None, resume: str | Path | None = None,
                   init: str | Path | None = None, run_dir: str | Path | None = None, name: str | None = None,
                   data_dir: str | Path | None = None, device: str = "auto", threads: int | None = None,
                   tensorboard: bool = False, save_model: str | Path | None = None,
                   hooks: RunHooks | None = None) -> Run | None:
    """Train a run from what a user gives, exactly as ``mnistctl train`` does: PyTorch's CPU
    ``threads``, this process's group (one process, or one of several under torchrun), the
    settings (``config_file``'s, then ``preset``'s, then the explicit ``settings``; see
    ``resolve_settings`` and ``plan_run``), then the run itself (``train``). None when
    ``hooks.on_plan`` stopped it before training."""
    from mnistctl.training import distributed

    hooks = hooks or RunHooks()
    warning = accel.set_threads(threads) if threads is not None else None
    group = distributed.join(device)
    try:
        hooks.on_join(group)
        chosen, given = resolve_settings(preset, settings, config_file)
        plan = plan_run(chosen, given, resume=resume, run_dir=run_dir, name=name, init=init)
        plan.warnings += [warning] if warning else []
        if not hooks.on_plan(plan, group):
            return None
        return train(plan, group.device, data_dir, callbacks=hooks, on_ready=hooks.on_ready,
                     save_model=Path(save_model) if save_model is not None else None, tensorboard=tensorboard,
                     group=group)
    finally:
        group.close()
