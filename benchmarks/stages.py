"""Where one `mnistctl train` process's time goes: each stage timed inside the process.

    python benchmarks/stages.py --preset fast --run-dir /tmp/stages-run -q

Takes `mnistctl train`'s options; wraps the core functions each stage calls with a timer, runs the
command in this process and prints seconds per stage (README, Performance: "Where a fast run's
time goes"). Timings vary from run to run on a shared machine: compare runs made minutes apart.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import sys  # noqa: E402

SECONDS: dict[str, float] = {}


def _timed(label: str, fn=None):
    """Add the time of ``fn`` (each call) to ``label``; without ``fn``, a context for a block."""
    if fn is None:
        class Block:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                SECONDS[label] = SECONDS.get(label, 0.0) + time.perf_counter() - self.start
        return Block()

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SECONDS[label] = SECONDS.get(label, 0.0) + time.perf_counter() - start
    return wrapper


def main(argv: list[str]) -> None:
    with _timed("import the CLI (Typer, Rich)"):
        from mnistctl.cli import commands as cli
    with _timed("import torch"):
        import torch  # noqa: F401
    with _timed("import mnistctl's core modules"):
        from mnistctl import checkpoint
        from mnistctl.training import loop as engine
        from mnistctl.training import run as runs
    with _timed("import matplotlib (for the loss plot)"):
        from mnistctl import plotting
    saving = "checkpoints, history, metrics"
    for owner, name, label in ((runs, "load_split", "load the data"),
                               (engine, "make_optimizer", "build the optimizer"),
                               (engine, "train_one_epoch", "training steps"),
                               (engine, "evaluate_shared", "validation"),
                               (checkpoint.Checkpoint, "save", saving), (runs, "write_json", saving),
                               (runs, "write_csv", saving),
                               (plotting, "history_figure", "draw and save the loss plot"),
                               (plotting, "save_figure", "draw and save the loss plot")):
        setattr(owner, name, _timed(label, getattr(owner, name)))
    try:
        cli.app(["train", *argv])
    except SystemExit as exc:
        if exc.code:
            raise
    total = time.perf_counter() - START
    for label, seconds in SECONDS.items():
        print(f"{label:40s} {seconds:6.2f}")
    print(f"{'the rest (model build, interpreter)':40s} {total - sum(SECONDS.values()):6.2f}")
    print(f"{'total (in process)':40s} {total:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
