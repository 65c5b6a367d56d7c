"""The recipe sweep behind ``--preset best``: recipes x seeds as concurrent `mnistctl train`
processes on one GPU (12 at a time fill an H100 with these small networks), each run scored on the
validation split and the test set; the recipe is then picked by mean validation accuracy.

    python benchmarks/sweep.py SECONDS OUTDIR

Stops at the deadline (runs still going are killed) and scores what finished: OUTDIR/sweep.json,
sweep-log.txt, and the final models as one ckpt-RECIPE.tar per recipe. SWEEP_CONFIGS (JSON: name
-> options) and SWEEP_JOBS ("A1 B2 ...") replace the recipes and jobs below, SWEEP_DEVICE (cuda)
and SWEEP_WORKERS (10) the device and the number of runs at a time, SWEEP_EXTRA adds options to
every run. Options that begin with ``aug:NAME`` train with one of benchmarks/sweep_train.py's
augmentations instead of mnistctl's. The results of the runs on an H100 are in
benchmarks/accuracy-sweep-h100.json, those on an H200 in benchmarks/accuracy-sweep-h200.json.
"""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

budget, out = float(sys.argv[1]), Path(sys.argv[2])
deadline = time.time() + budget
DEVICE = os.environ.get("SWEEP_DEVICE", "cuda")
root = Path("/tmp/sweep")
root.mkdir(exist_ok=True)
CONFIGS = json.loads(os.environ["SWEEP_CONFIGS"]) if "SWEEP_CONFIGS" in os.environ else {
    "A": "--nf 32 --batch-size 64 --lr 0.01 --epochs 24 --ema 0.999",
    "B": "--nf 32 --batch-size 128 --lr 0.01 --epochs 30 --ema 0.999",
    "C": "--nf 40 --batch-size 128 --lr 0.01 --epochs 20 --ema 0.999",
    "D": "--nf 48 --batch-size 128 --lr 0.01 --epochs 15 --ema 0.999",
    "E": "--nf 32 --batch-size 64 --lr 0.01 --epochs 24",
}
jobs = ([(c, s) for s in (1, 2, 3) for c in "CDBA"] + [(c, s) for s in (4, 5) for c in "CDBA"]
        + [(c, s) for s in (1, 2, 3) for c in "E"])
if "SWEEP_JOBS" in os.environ:
    jobs = [(j[0], int(j[1:])) for j in os.environ["SWEEP_JOBS"].split()]
HERE = Path(__file__).resolve().parent
env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
log = open(out / "sweep-log.txt", "a")


def run(job):
    c, s = job
    left = deadline - time.time()
    if left < 30:
        return job, "skipped", 0.0
    options = CONFIGS[c].split()
    # "aug:NAME ...": trained with one of benchmarks/sweep_train.py's augmentations
    program = ["-m", "mnistctl"] if not options[0].startswith("aug:") else [str(HERE / "sweep_train.py"),
                                                                          options.pop(0)[4:]]
    cmd = [sys.executable, *program, "train", "--device", DEVICE, "--quiet", "--seed", str(s),
           "--run-dir", str(root / f"{c}{s}"), *options, *os.environ.get("SWEEP_EXTRA", "").split()]
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env)
        status = "ok" if p.returncode == 0 else f"rc {p.returncode}: {p.stderr[-500:]}"
    except subprocess.TimeoutExpired:
        status = "timeout"
    dt = time.time() - t
    print(f"{c}{s} {status} {dt:.0f}s", file=log, flush=True)
    return job, status, dt


with cf.ThreadPoolExecutor(int(os.environ.get("SWEEP_WORKERS", "10"))) as pool:
    done = list(pool.map(run, jobs))

import torch  # noqa: E402

from mnistctl import checkpoint  # noqa: E402
from mnistctl.inference.evaluation import evaluate_checkpoint  # noqa: E402

keep = Path("/tmp/keep")
keep.mkdir(exist_ok=True)
summary = []
for (c, s), status, dt in done:
    d = root / f"{c}{s}"
    item = {"config": c, "settings": CONFIGS[c], "seed": s, "status": status, "wall_s": dt}
    if (d / "history.json").exists():
        h = json.loads((d / "history.json").read_text())["history"]
        item["epochs_done"] = len(h)
        item["val_acc_per_epoch"] = [r["val_acc"] for r in h]
        item["train_seconds"] = sum(r["seconds"] for r in h)
    if status == "ok":
        ck = checkpoint.load(d / "last.pt")
        for split in ("val", "test"):
            item[f"last_{split}"] = evaluate_checkpoint(ck, split, device=DEVICE).report.accuracy
        ck.inference_only().save(keep / f"{c}{s}.pt")
    summary.append(item)
    print(json.dumps({k: v for k, v in item.items() if k != "val_acc_per_epoch"}), file=log, flush=True)
(out / "sweep.json").write_text(json.dumps(summary, indent=1))
for c in sorted({c for c, _ in jobs}):
    files = sorted(keep.glob(f"{c}*.pt"))
    if files:
        with tarfile.open(out / f"ckpt-{c}.tar", "w") as tar:
            for f in files:
                tar.add(f, arcname=f.name)
print("sweep done", torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE)
