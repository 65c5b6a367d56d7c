"""Hyperparameter search over ``train``'s own settings, on Optuna (``mnistctl[tune]``).

A study lives in a directory: ``tune.json`` (what is searched and how), the study's storage
(``study.log``, Optuna's journal file, unless a database URL is given), one ordinary run directory
per trial under ``trials/`` (each with a ``trial.json`` saying how it ended), and, once trials have
finished, ``best-config.json`` (what ``train --config`` takes), ``trials.csv`` and three pictures.

Each trial is a normal training run scored on the validation split (never the test set). After
every epoch the score is reported to the pruner; a trial it calls unpromising stops there, its run
directory kept and marked pruned. Several processes -- on one machine through the journal file,
on several through a database URL -- work on one study by resuming it. A trial stopped by Ctrl-C
or SIGTERM is run again, as a new trial with the same settings, when the study is resumed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mnistctl.config import SETTINGS
from mnistctl.errors import ConfigError, MnistctlError, one_of
from mnistctl.fsutil import read_bounded, write_json, write_text
from mnistctl.recipes import PRESETS, TUNE_OBJECTIVES, TUNE_PRUNERS, TUNE_SAMPLERS, TUNE_SPACES
from mnistctl.runfiles import CONFIG_FILE, EpochRecord, RunHooks
from mnistctl.training.space import MAX_SPACE_BYTES, Dimension, check_value, parse_space

OPTIONS_FILE = "tune.json"
JOURNAL_FILE = "study.log"
BEST_CONFIG = "best-config.json"
TRIAL_FILE = "trial.json"
@dataclass
class TuneOptions:
    """What a study searches and how; written to ``tune.json`` and read back by ``--resume``."""

    preset: str = "fast"
    space: dict[str, Any] = field(default_factory=dict)  # as a space file writes it
    settings: dict[str, Any] = field(default_factory=dict)  # train settings every trial shares
    objective: str = "val_acc"
    trials: int | None = 20  # finished trials (complete or pruned) the study stops at
    timeout: float | None = None  # seconds this process searches, at most
    sampler_seed: int = 0  # the sampler's (a trial's training seed is the setting seed)
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None  # a database URL; None: the journal file in the study directory
    data_dir: str | None = None
    device: str = "auto"

    def check(self) -> None:
        one_of("preset", self.preset, PRESETS)
        one_of("objective", self.objective, TUNE_OBJECTIVES)
        one_of("sampler", self.sampler, TUNE_SAMPLERS)
        one_of("pruner", self.pruner, TUNE_PRUNERS)
        if self.trials is not None and self.trials < 1:
            raise ConfigError.invalid("trials", f"must be at least 1, got {self.trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError.invalid("timeout", f"must be a positive number of seconds, got {self.timeout}")
        overlap = sorted(set(self.space) & set(self.settings))
        if overlap:
            raise ConfigError(f"{', '.join(overlap)} is both searched and fixed: drop it from one of them")
        for name, value in self.settings.items():
            check_value(name, value, "the settings every trial shares")

    def dimensions(self) -> list[Dimension]:
        return parse_space(self.space, OPTIONS_FILE)


def default_space(preset: str) -> dict[str, Any]:
    """The built-in search space around ``preset``'s recipe."""
    return dict(TUNE_SPACES[one_of("preset", preset, PRESETS)])


@dataclass
class TrialRecord:
    """One trial as the study holds it."""

    number: int
    state: str  # running, complete, pruned, failed, waiting
    params: dict[str, Any]
    value: float | None
    epochs: int  # epochs it reported
    seconds: float | None
    run_dir: str
    worker: str = ""  # host:pid of the process that ran it
    error: str | None = None  # why its settings could not train (a failed trial)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TuneResult:
    """A study after this process's part of the search."""

    directory: Path
    name: str
    objective: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    files: list[Path]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        return {"study": self.name, "directory": str(self.directory), "objective": self.objective,
                "trials": [t.to_dict() for t in self.trials], "counts": counts,
                "best": self.best.to_dict() if self.best else None, "files": [str(f) for f in self.files],
                "seconds": self.seconds}


class TuneHooks:
    """What a front end sees of a search: the study's directory, then each trial as it starts and
    as it ends."""

    directory: Path | None = None

    def on_study(self, directory: Path, options: TuneOptions) -> None:
        self.directory = directory

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None: ...

    def on_trial_end(self, record: TrialRecord) -> None: ...

    def stop(self) -> None:
        """The search ended (a live display is taken down)."""


class _TrialHooks(RunHooks):
    """A trial's run: each epoch's score reported to Optuna; a pruned trial stops after the epoch
    (its files, saved at the epoch's end, are kept)."""

    def __init__(self, trial: Any, objective: str) -> None:
        self.trial, self.objective, self.epochs = trial, objective, 0

    def on_epoch_end(self, record: EpochRecord) -> None:
        import optuna

        self.epochs = record.epoch
        self.trial.report(getattr(record, self.objective), record.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record.epoch}")


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MnistctlError("tune needs Optuna: pip install 'mnistctl[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the front end says what happens (a failed trial too)
    return optuna


def _storage(optuna: Any, options: TuneOptions, directory: Path) -> Any:
    if options.storage:
        return options.storage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(directory / JOURNAL_FILE)))


def _sampler(optuna: Any, options: TuneOptions, first: bool) -> Any:
    # the process that started the study samples with its seed; a process joining or resuming it
    # with another, or two workers would propose the same settings at the same time
    seed = options.sampler_seed if first else options.sampler_seed + os.getpid()
    if options.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, (options.trials or 20) // 4)))


def _pruner(optuna: Any, options: TuneOptions, epochs: int) -> Any:
    if options.pruner == "none":
        return optuna.pruners.NopPruner()
    if options.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def new_study(options: TuneOptions, directory: str | Path | None = None) -> Path:
    """Create a study directory with its ``tune.json`` (the options checked first); its path."""
    options.check()
    options.dimensions()
    if directory is None:
        directory = Path("tunes") / f"{options.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    directory = Path(directory)
    if (directory / OPTIONS_FILE).exists():
        raise ConfigError(f"{directory} already holds a study: resume it (mnistctl tune --resume {directory}) "
                          "or choose another directory", setting="study_dir")
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / OPTIONS_FILE, asdict(options))
    return directory


def load_options(directory: str | Path) -> TuneOptions:
    """The options of the study in ``directory`` (``tune --resume``)."""
    path = Path(directory) / OPTIONS_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} holds no study ({OPTIONS_FILE} is missing): start one with mnistctl tune",
                          setting="resume")
    try:
        data = json.loads(read_bounded(path, MAX_SPACE_BYTES, "the study's options", ConfigError))
        options = TuneOptions(**data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged ({str(exc)[:100]})", setting="resume") from None
    options.check()
    return options


def run_study(directory: str | Path, hooks: TuneHooks | None = None, *, timeout: float | None = None,
              trials: int | None = None, first: bool = False) -> TuneResult:
    """Search: run trials of the study in ``directory`` until it has its number of finished trials
    (or ``timeout`` seconds pass), then write the best configuration, ``trials.csv`` and the
    pictures. Another process resuming the same study works on it at the same time. ``first``: this
    process started the study (it samples with the study's seed)."""
    optuna = _import_optuna()
    from mnistctl.errors import TrainingInterrupted
    from mnistctl.training.run import train_settings

    directory = Path(directory)
    options = load_options(directory)
    if trials is not None:
        options.trials = trials
    hooks = hooks or TuneHooks()
    hooks.on_study(directory, options)
    dims = options.dimensions()
    epochs = int(options.settings.get("epochs", PRESETS[options.preset].get("epochs", SETTINGS["epochs"][1].default)))
    study = optuna.create_study(storage=_storage(optuna, options, directory), sampler=_sampler(optuna, options, first),
                                pruner=_pruner(optuna, options, epochs), study_name=directory.resolve().name,
                                direction="maximize" if options.objective == "val_acc" else "minimize",
                                load_if_exists=True)
    _retry_interrupted(study)
    worker = f"{os.uname().nodename if hasattr(os, 'uname') else 'host'}:{os.getpid()}"

    def objective(trial: Any) -> float:
        params = {d.name: d.suggest(trial) for d in dims}
        trial.set_user_attr("worker", worker)
        run_dir = directory / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        hooks.on_trial_start(trial.number, params)
        watch = _TrialHooks(trial, options.objective)
        start = time.perf_counter()
        try:
            run = train_settings(options.preset, {**options.settings, **params}, run_dir=run_dir,
                                 data_dir=options.data_dir, device=options.device, hooks=watch)
        except optuna.TrialPruned:
            _write_trial(run_dir, trial.number, "pruned", params, None, watch.epochs, time.perf_counter() - start)
            raise
        except TrainingInterrupted:
            raise  # Ctrl-C or SIGTERM: the search stops, and the trial runs again on resuming
        except MnistctlError as exc:  # these settings cannot train (a batch larger than the data, ...)
            trial.set_user_attr("error", str(exc))
            _write_trial(run_dir, trial.number, "failed", params, None, watch.epochs, time.perf_counter() - start,
                         error=str(exc))
            raise _TrialFailed(str(exc)) from None
        assert run is not None  # no on_plan stops it
        value = run.best.val_acc if options.objective == "val_acc" else min(r.val_loss for r in run.history)
        _write_trial(run_dir, trial.number, "complete", params, value, watch.epochs, time.perf_counter() - start)
        return float(value)

    def ended(study: Any, frozen: Any) -> None:
        hooks.on_trial_end(_record(frozen))

    callbacks: list[Callable[[Any, Any], None]] = [ended]
    if options.trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(
            options.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
    start = time.perf_counter()
    if options.trials is None or _finished(study) < options.trials:
        try:
            study.optimize(objective, timeout=timeout or options.timeout, callbacks=callbacks, catch=(_TrialFailed,))
        except BaseException:  # Ctrl-C, SIGTERM, an error: trials.csv still says where the study stands
            _write_csv(directory, [_record(t) for t in study.get_trials(deepcopy=False)], options)
            raise
    records = [_record(t) for t in study.get_trials(deepcopy=False)]
    files = write_results(study, directory, records, options)
    best = _best(records, options.objective)
    return TuneResult(directory, directory.resolve().name, options.objective, records, best, files,
                      time.perf_counter() - start)


class _TrialFailed(Exception):
    """A trial whose settings could not train: recorded as failed (with its error), the search goes on."""


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def _retry_interrupted(study: Any) -> None:
    """Queue again, with the same settings, each trial that a stopped process left failed or
    running (and that no trial retries yet), so that resuming loses no trial and runs none twice."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state == TrialState.RUNNING and _orphaned(t):  # its process is gone: it will not end by itself
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        elif t.state != TrialState.FAIL:
            continue
        if t.number not in retried and t.params and "error" not in t.user_attrs:  # not settings that cannot train
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


def _orphaned(trial: Any) -> bool:
    """A running trial whose process is gone (on this machine); one of another machine is left alone."""
    worker = str(trial.user_attrs.get("worker", ""))
    host, _, pid = worker.rpartition(":")
    if not pid.isdigit() or host != (os.uname().nodename if hasattr(os, "uname") else "host"):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _record(t: Any) -> TrialRecord:
    state = t.state.name.lower().replace("fail", "failed")
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
        else None
    return TrialRecord(t.number, state, dict(t.params), t.value if t.state.name == "COMPLETE" else None,
                       len(t.intermediate_values), seconds, str(t.user_attrs.get("run_dir", "")),
                       str(t.user_attrs.get("worker", "")), t.user_attrs.get("error"))


def _best(records: list[TrialRecord], objective: str) -> TrialRecord | None:
    done = [r for r in records if r.state == "complete" and r.value is not None]
    if not done:
        return None
    sign = 1.0 if objective == "val_acc" else -1.0  # higher accuracy, lower loss
    return max(done, key=lambda r: sign * float(r.value or 0.0))


def _write_trial(run_dir: Path, number: int, state: str, params: dict[str, Any], value: float | None, epochs: int,
                 seconds: float, error: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / TRIAL_FILE, {"trial": number, "state": state, "params": params, "value": value,
                                      "epochs": epochs, "seconds": seconds, "error": error})


def write_results(study: Any, directory: Path, records: list[TrialRecord], options: TuneOptions) -> list[Path]:
    """``trials.csv``, ``best-config.json`` (the best trial's config.json) and, with two finished
    trials or more, the optimisation history, the parameters' importances and a slice plot."""
    files = [_write_csv(directory, records, options)]
    best = _best(records, options.objective)
    if best is not None and (Path(best.run_dir) / CONFIG_FILE).is_file():
        write_text(directory / BEST_CONFIG, (Path(best.run_dir) / CONFIG_FILE).read_text())
        files.append(directory / BEST_CONFIG)
    files += _pictures(study, directory, options)
    return files


def _write_csv(directory: Path, records: list[TrialRecord], options: TuneOptions) -> Path:
    """``trials.csv``: a row per trial, its settings in columns."""
    out = io.StringIO()
    names = [d.name for d in options.dimensions()]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "state", options.objective, "epochs", "seconds", *names, "worker", "run_dir", "error"])
    for r in records:
        writer.writerow([r.number, r.state, "" if r.value is None else f"{r.value:.6g}", r.epochs,
                         "" if r.seconds is None else f"{r.seconds:.1f}", *(r.params.get(n, "") for n in names),
                         r.worker, r.run_dir, r.error or ""])
    write_text(directory / "trials.csv", out.getvalue())
    return directory / "trials.csv"


def _pictures(study: Any, directory: Path, options: TuneOptions) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: Optuna's plots go through pyplot, which must not open windows
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    from mnistctl.plotting import save_figure

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return []
    written = []
    # Optuna's plots switch pyplot to its ggplot style for good: the settings come back after them (a
    # notebook's later figures, `mnistctl plot` in the same process, kept their look)
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        for name, draw in (("history", plots.plot_optimization_history), ("slice", plots.plot_slice),
                           ("importances", plots.plot_param_importances)):
            try:
                draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):  # too few distinct values to say anything
                plt.close("all")
                continue
            figure = plt.gcf()
            written.append(save_figure(figure, directory / f"{name}.png"))
            plt.close(figure)
    return written
