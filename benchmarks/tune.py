"""`mnistctl tune` on this machine: trials per minute with tiny settings, what pruning saves against the
same study without it, two processes on one study against one, and a study on a CPU-sized space
(the fast preset's) with its best trial scored on the test set.

    python benchmarks/tune.py           # about 8 minutes on 2 CPU cores; writes benchmarks/tune-KIND.json
    python benchmarks/tune.py --quick   # a smoke run: few trials

Needs the real MNIST (`mnistctl download`) and the tune extra.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.run import machine, machine_kind, row, side_benchmark  # noqa: E402

TINY = ["--set", "nf=4", "--set", "epoch_fraction=0.02", "--set", "epochs=3"]
MNISTCTL = [sys.executable, "-m", "mnistctl"]


def study(directory: Path, trials: int, *extra: str, workers: int = 1) -> tuple[float, list[dict[str, str]]]:
    """(wall seconds, trials.csv rows) of a study run by ``workers`` processes."""
    start = time.perf_counter()
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if workers > 1 else {})}
    first = subprocess.Popen([*MNISTCTL, "tune", "--trials", str(trials), "--dir", str(directory), *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    others = []
    if workers > 1:
        while not (directory / "tune.json").is_file() and first.poll() is None:
            time.sleep(0.05)
        others = [subprocess.Popen([*MNISTCTL, "tune", "--resume", str(directory)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, env=env) for _ in range(workers - 1)]
    for proc in [first, *others]:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"tune failed:\n{err[-2000:]}")
    seconds = time.perf_counter() - start
    with (directory / "trials.csv").open() as f:
        return seconds, list(csv.DictReader(f))


def _test_accuracy(checkpoint: Path) -> float:
    scored = subprocess.run([*MNISTCTL, "evaluate", "--json", "--checkpoint", str(checkpoint)], capture_output=True,
                            text=True, check=True)
    return float(json.loads(scored.stdout)["accuracy"])


def bench(args: argparse.Namespace) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="mnistctl-tune-"))
    n = 6 if args.quick else 24
    rows = []
    pruned_s, pruned_rows = study(scratch / "pruned", n, *TINY)
    plain_s, _ = study(scratch / "plain", n, *TINY, "--pruner", "none")
    share = sum(r["state"] == "pruned" for r in pruned_rows) / len(pruned_rows)
    rows.append(row(f"tune, {n} tiny trials (nf=4, 3 epochs of 2%), median pruner", 60 * n / pruned_s,
                    "trials/min", "the same study without pruning", 60 * n / plain_s, higher_is_better=True,
                    target="reported", note=f"{100 * share:.0f}% of trials pruned; {pruned_s:.1f} s against "
                                            f"{plain_s:.1f} s, the whole command"))
    two_s, two_rows = study(scratch / "two", n, *TINY, "--pruner", "none", workers=2)
    rows.append(row(f"tune, {n} tiny trials, 2 processes x 1 thread on one study", two_s, "s",
                    "1 process x 2 threads", plain_s, higher_is_better=False, target="reported",
                    note=f"{len({r['worker'] for r in two_rows})} workers ran trials; "
                         f"{sum(r['state'] == 'complete' for r in two_rows)} complete"))
    m = n if args.quick else 12
    shorter = (["--set", "epoch_fraction=0.1"], ["--epoch-fraction", "0.1"]) if args.quick else ([], [])
    fast_s, fast_rows = study(scratch / "fast", m, "--preset", "fast", *shorter[0])
    best = json.loads((scratch / "fast" / "best-config.json").read_text())
    top = max((r for r in fast_rows if r["val_acc"]), key=lambda r: float(r["val_acc"]))
    test = _test_accuracy(Path(top["run_dir"]) / "best.pt")
    subprocess.run([*MNISTCTL, "train", "--preset", "fast", "--run-dir", str(scratch / "default"), "-q",
                    *shorter[1]], capture_output=True, text=True, check=True)
    base = max(r["val_acc"] for r in json.loads((scratch / "default" / "history.json").read_text())["history"])
    base_test = _test_accuracy(scratch / "default" / "best.pt")
    rows.append(row(f"tune --preset fast, {m} trials: the best trial's validation accuracy", float(top["val_acc"]),
                    "", "the fast preset as it is", base, higher_is_better=True, target="reported",
                    note=f"test accuracy {100 * test:.2f}% (the preset's {100 * base_test:.2f}%); "
                         f"{fast_s / 60:.1f} min; best settings: lr {best['train']['lr']:.4g}, batch "
                         f"{best['train']['batch_size']}, label smoothing {best['train']['label_smoothing']:.3g}"))
    mach = machine()
    return {"machine": mach, "kind": machine_kind(mach), "quick": args.quick, "results": rows}


def main(argv: list[str] | None = None) -> None:
    side_benchmark(__doc__, "tune", "a smoke run: few trials", bench, argv)


if __name__ == "__main__":
    main()
