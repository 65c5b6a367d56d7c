"""The Python API: what ``import mnistctl`` offers, and what the CLI's commands call.

    import mnistctl
    run = mnistctl.train("fast", seed=2)            # a preset and settings, as `mnistctl train` takes them
    clf = mnistctl.load(run.best_path)              # or mnistctl.load() for the built-in model
    [r] = clf.predict("assets/digit-7-photo.jpg")   # pictures (paths, bytes, PIL images) or 28x28 arrays
    print(r.prediction.label, r.unsure, r.reasons)
    print(mnistctl.evaluate(clf).report.accuracy)
    mnistctl.export(run.best_path, "model.onnx")

Each function is one call of the core, with the same settings, defaults and errors (a
``mnistctl.errors.MnistctlError`` naming the problem) as the command of the same name. Importing
this module, or ``mnistctl``, does not import torch: the functions import what they need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistctl.config import INFERENCE_BATCH
from mnistctl.recipes import BUILTIN

if TYPE_CHECKING:
    from mnistctl.inference.classifier import Classifier
    from mnistctl.inference.evaluation import Evaluation
    from mnistctl.inference.export import Exported
    from mnistctl.inference.pictures import PictureEvaluation
    from mnistctl.runfiles import RunHooks
    from mnistctl.training.run import Run
    from mnistctl.training.tune import TuneHooks, TuneResult

__all__ = ["BUILTIN", "evaluate", "evaluate_pictures", "export", "load", "train", "tune"]

ModelSource = str | Path | Sequence[str | Path]  # a model file, several (an ensemble), or "builtin"


def train(preset: str | None = None, *, config: str | Path | None = None, resume: str | Path | None = None,
          init: str | Path | None = None, run_dir: str | Path | None = None, name: str | None = None,
          data_dir: str | Path | None = None, device: str = "auto", threads: int | None = None,
          tensorboard: bool = False, hooks: RunHooks | None = None, **settings: Any) -> Run:
    """Train a run as ``mnistctl train`` does, and return it (``run.best_path``, ``run.history``...).

    ``settings`` are the run's settings by name (``nf=32, epochs=3, lr=0.02``; the names of
    ``TrainConfig``, ``ModelConfig`` and ``DataConfig``, as in a config.json); they override
    ``config`` (a config file) and the ``preset`` (``original``, ``fast`` or ``best``), which
    override the defaults. ``resume`` continues a run from its last.pt; ``init`` fine-tunes from a
    checkpoint (``"builtin"``: the built-in model). The run directory gets config.json, best.pt,
    last.pt, history.json, metrics.csv and loss.png. ``hooks`` (a ``mnistctl.runfiles.RunHooks``)
    sees its progress. Under torchrun, every process calls this.
    """
    from mnistctl.training.run import train_settings

    run = train_settings(preset, settings, config_file=config, resume=resume, init=init, run_dir=run_dir, name=name,
                         data_dir=data_dir, device=device, threads=threads, tensorboard=tensorboard, hooks=hooks)
    assert run is not None  # only a hook's on_plan stops a run before training
    return run


def load(model: ModelSource | None = BUILTIN, *, device: str = "cpu", batch_size: int = INFERENCE_BATCH,
         threads: int | None = None) -> Classifier:
    """A ``Classifier`` for ``model``: a checkpoint (best.pt, on PyTorch), an exported model.onnx (on
    ONNX Runtime, without torch), several of them (their ensemble), or ``"builtin"`` (the model
    shipped with mnistctl, on ONNX Runtime where it is installed and ``device`` is cpu).
    ``threads``: the CPU threads the model runs on (None: the runtime's choice)."""
    from mnistctl.inference.classifier import load_classifier

    return load_classifier(_model_files(model), device, batch_size, threads)


def evaluate(model: Classifier | ModelSource | None = BUILTIN, split: str = "test", *,
             data_dir: str | Path | None = None, device: str = "auto",
             batch_size: int = INFERENCE_BATCH) -> Evaluation:
    """Score a model (a ``Classifier``, or what ``load`` takes) on ``split`` (``test``, or ``val``:
    the validation part of the training file) of the data set it was trained on: accuracy, loss,
    per-class figures and the confusion matrix (``.report``, whose ``to_dict()`` is
    ``evaluate --json``'s)."""
    from mnistctl.inference.classifier import Classifier
    from mnistctl.inference.evaluation import evaluate as evaluate_classifier

    clf = model if isinstance(model, Classifier) else load(model, device=device, batch_size=batch_size)
    return evaluate_classifier(clf, split, data_dir)


def evaluate_pictures(model: Classifier | ModelSource | None = BUILTIN, pictures: str | Path = ".", *,
                      device: str = "cpu", jobs: int | None = None) -> PictureEvaluation:
    """Score a model on labelled pictures of people's handwriting, read as ``predict`` reads them:
    ``pictures`` is a folder with one sub-folder per class (``7/`` holds sevens) or a CSV file of
    ``path,label`` rows. Accuracy, per-class figures and the confusion matrix (``.report``), how
    right the sure and the unsure answers are, and the pictures that could not be read
    (``to_dict()`` is ``evaluate --images --json``'s). ``jobs``: processes preparing pictures."""
    from mnistctl.inference.classifier import Classifier
    from mnistctl.inference.pictures import evaluate_pictures as score

    clf = model if isinstance(model, Classifier) else load(model, device=device)
    return score(clf, pictures, jobs)


def tune(preset: str = "fast", *, space: str | Path | dict[str, Any] | None = None, trials: int = 20,
         directory: str | Path | None = None, resume: str | Path | None = None, objective: str = "val_acc",
         sampler: str = "tpe", pruner: str = "median", sampler_seed: int = 0, timeout: float | None = None,
         storage: str | None = None, data_dir: str | Path | None = None, device: str = "auto",
         hooks: TuneHooks | None = None, **settings: Any) -> TuneResult:
    """Search ``train``'s settings with Optuna, as ``mnistctl tune`` does: ``space`` (a JSON or YAML
    file, or the same as a dict; default: ``preset``'s own space) is searched, ``settings`` are
    shared by every trial; ``resume`` goes on with (or joins) the study in that directory; ``hooks``
    (a ``TuneHooks``) sees each trial start and end. Needs the ``tune`` extra. The result names every
    trial, the best one and the files written."""
    from mnistctl.training import tune as search
    from mnistctl.training.space import read_space

    if resume is not None:
        return search.run_study(resume, hooks, timeout=timeout)
    if isinstance(space, (str, Path)):
        space = {d.name: d.to_json() for d in read_space(space)}
    options = search.TuneOptions(preset=preset, space=dict(space) if space is not None else
                                 search.default_space(preset), settings=settings, objective=objective,
                                 trials=trials, timeout=timeout, sampler_seed=sampler_seed, sampler=sampler,
                                 pruner=pruner, storage=storage, data_dir=str(data_dir) if data_dir else None,
                                 device=device)
    return search.run_study(search.new_study(options, directory), hooks, timeout=timeout, first=True)


def export(model: ModelSource, output: str | Path, *, format: str | None = None,  # noqa: A002 (the CLI's --format)
           data_dir: str | Path | None = None, calibrate: bool = False) -> Exported:
    """Write ``model`` (a checkpoint, or several as one ONNX ensemble) to ``output``, as ONNX
    (``model.onnx``) or as an inference-only checkpoint (``model.pt``), by ``format`` or the
    extension; ``calibrate`` first fits a temperature on the validation split."""
    from mnistctl.inference.export import export_model

    return export_model(_model_files(model) or [], output, format, data_dir, calibrate)


def _model_files(model: ModelSource | None) -> list[str | Path] | None:
    """The files named, or None for the built-in model."""
    if model is None or (isinstance(model, str) and model == BUILTIN):
        return None
    return [model] if isinstance(model, (str, Path)) else list(model)
