"""mnistctl's benchmark suite: every speed and memory figure, each beside a baseline measured
in the same run, as the median of several repetitions, printed as a table and written as JSON.

    python benchmarks/run.py                  # the full suite (about 12 minutes on 2 CPU cores);
                                              # writes benchmarks/results-KIND.json (e.g. amd-epyc-2cpu)
    python benchmarks/run.py --quick          # a smoke run: one repetition, small sizes
    python benchmarks/run.py --accuracy       # test accuracy per preset over 3 seeds, time, model size
                                              # (about 45 minutes: --presets fast --seeds 5 for a part)

Needs the real MNIST: run `mnistctl download` first (``--data-dir``/``MNISTCTL_DATA_DIR`` honoured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks import baseline  # noqa: E402
from mnistctl import __version__, checkpoint  # noqa: E402
from mnistctl import devices as accel  # noqa: E402
from mnistctl.config import DataConfig, ModelConfig  # noqa: E402
from mnistctl.data.splits import load_split  # noqa: E402
from mnistctl.fsutil import write_json  # noqa: E402
from mnistctl.inference.evaluation import evaluate_checkpoint  # noqa: E402
from mnistctl.model import Net, num_parameters  # noqa: E402
from mnistctl.training import cudagraph  # noqa: E402
from mnistctl.training import loop as engine  # noqa: E402

CPU = torch.device("cpu")
MNISTCTL = [sys.executable, "-m", "mnistctl"]


def _run(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of a whole child process."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        shown = proc.stderr if len(proc.stderr) <= 6000 else f"{proc.stderr[:3000]}\n[...]\n{proc.stderr[-3000:]}"
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{shown}")
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: bench() measures the memory
    # figures first, smallest first, so the value belongs to the command just run
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def median_of(reps: int, fn):
    values = [fn() for _ in range(reps)]
    return statistics.median(values), values


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "mnistctl": __version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def machine_kind(m: dict) -> str:
    """A file-name slug for the kind of machine: ``amd-epyc-2cpu``, ``intel-xeon-2cpu``, ``...-cuda``."""
    import re

    cpu = m["cpu"].lower()
    family = next((f for f in ("amd epyc", "amd ryzen", "intel xeon", "intel core", "apple") if f in cpu), None)
    if family is None:
        family = " ".join(re.sub(r"\(.*?\)", " ", cpu).split()[:2]) or "unknown-cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", family).strip("-")
    return f"{slug}-{m['cores']}cpu" + ("-cuda" if m.get("cuda") else "")


def row(name: str, value: float, unit: str, baseline_name: str, baseline_value: float, *,
        higher_is_better: bool, target: str, samples: list | None = None, note: str = "",
        threads: int | None = None) -> dict:
    ratio = value / baseline_value if higher_is_better else baseline_value / value
    return {"figure": name, "value": value, "unit": unit, "baseline": baseline_name,
            "baseline_value": baseline_value, "ratio": ratio, "target": target, "samples": samples or [],
            "note": note, "threads": threads if threads is not None else torch.get_num_threads()}


def bench(args) -> dict:
    data_dir = args.data_dir
    reps = 1 if args.quick else args.reps
    rows: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="mnistctl-bench-"))
    env = {"MNISTCTL_DATA_DIR": str(data_dir)} if data_dir else {}
    load_split(DataConfig(), "test", data_dir)  # fails early, with advice, when data is missing

    # 1. start-up: `mnistctl --help` against a bare interpreter
    bare, _ = median_of(max(reps, 3), lambda: _run([sys.executable, "-c", "pass"])[0])
    helpt, helps = median_of(max(reps, 3), lambda: _run([*MNISTCTL, "--help"])[0])
    rows.append(row("mnistctl --help", helpt, "s", "python -c pass", bare, higher_is_better=False,
                    target="<= 0.5 s", samples=helps, note="ratio < 1: slower than a bare interpreter"))

    # 2. memory: peak RSS of training (one epoch, nf=32) against importing torch
    torch_mem = _run([sys.executable, "-c", "import torch"])[1]
    train_mem = _run([*MNISTCTL, "train", "--device", "cpu", "--nf", "32", "--epochs", "1",
                      "--run-dir", str(scratch / "mem")]
                     + (["--batch-size", "256", "--val-split", "0.9"] if args.quick else []), env)[1]
    rows.append(row("peak memory of train (nf=32)", train_mem / 2**30, "GiB", "python -c 'import torch'",
                    torch_mem / 2**30, higher_is_better=False, target="<= 1.5 GiB",
                    note="ratio < 1: uses more than importing torch"))

    # 3. predict one image, whole process, against importing torch
    one = REPO / "assets" / "digit-7-photo.jpg"
    imp, _ = median_of(reps, lambda: _run([sys.executable, "-c", "import torch"])[0])
    pred1, pred1s = median_of(reps, lambda: _run([*MNISTCTL, "predict", str(one)])[0])
    rows.append(row("mnistctl predict one.png", pred1, "s", "python -c 'import torch'", imp,
                    higher_is_better=False, target="<= 0.5 s (ONNX Runtime, the default with mnistctl[onnx])",
                    samples=pred1s, note="the built-in model on ONNX Runtime: torch is never imported"))
    shipped_pt = str(checkpoint.pretrained_path())
    pred1t, pred1ts = median_of(reps, lambda: _run([*MNISTCTL, "predict", "-c", shipped_pt, str(one)])[0])
    rows.append(row("mnistctl predict one.png (PyTorch)", pred1t, "s", "python -c 'import torch'", imp,
                    higher_is_better=False, target="<= 3 s", samples=pred1ts,
                    note="the same model as a checkpoint (-c mnist-best.pt), on PyTorch"))

    # 4. the fast preset: whole process and test accuracy per seed, against importing torch timed
    #    beside each seed's runs (these machines' speed drifts within minutes)
    seeds = [1] if args.quick else [1, 2, 3, 4, 5]
    shipped = checkpoint.load_or_pretrained(None)
    for seed in seeds:
        imp_here, imp_samples = median_of(reps, lambda: _run([sys.executable, "-c", "import torch"])[0])
        # a smoke run trains a quarter of the preset's epoch: the path, not the figure (97-98%)
        seconds, samples, trained, accuracy = fast_preset(scratch, env, data_dir, seed, reps, "cpu",
                                                          extra=("--epoch-fraction", "0.25") if args.quick else ())
        rows.append(row(f"train --preset fast --seed {seed}", seconds, "s", "python -c 'import torch'", imp_here,
                        higher_is_better=False, target="<= 3.5x import torch, test >= 99.0%", samples=samples,
                        note=f"{seconds / imp_here:.1f}x import torch; test accuracy {100 * accuracy:.2f}%; "
                             f"training {statistics.median(trained):.1f} s; "
                             f"import torch samples {[round(v, 2) for v in imp_samples]}"))
        rows[-1]["test_accuracy"] = accuracy
        rows[-1]["times_import_torch"] = seconds / imp_here

    # 5. training throughput, nf=32 batch 64 default settings, against the DataLoader loop
    steps = 30 if args.quick else 300
    train_x, train_y = load_split(DataConfig(), "train", data_dir)
    n = (steps + 10) * 64
    sub_x, sub_y = train_x[:n], train_y[:n]
    accel.tune_allocator()

    root = baseline.torchvision_root(data_dir, scratch)

    def theirs(workers: int) -> float:
        torch.manual_seed(0)
        return baseline.train_throughput(baseline.bare(Net(ModelConfig(nf=32))), root, steps, 64, workers)

    ours_v, ours_s = median_of(reps, lambda: loop_rate(sub_x, sub_y, CPU))
    base0, base0_s = median_of(reps, lambda: theirs(0))
    base1, base1_s = median_of(reps, lambda: theirs(1))
    best_base, workers = max((base0, 0), (base1, 1))
    rows.append(row("train throughput (nf=32, batch 64)", ours_v, "img/s",
                    f"DataLoader loop, per-item ToTensor/Normalize (num_workers={workers}, the faster)",
                    best_base, higher_is_better=True, target="ratio >= 1.5", samples=ours_s,
                    note=f"baseline samples: workers=0 {[round(v) for v in base0_s]}, "
                         f"workers=1 {[round(v) for v in base1_s]}; ours includes augmentation"))

    # 6. evaluation of the 10,000 test images with the built-in model, against the DataLoader loop
    test_x, test_y = load_split(DataConfig(), "test", data_dir)
    model_ours = accel.prepare_model(shipped.build_model(), CPU)
    model_base = baseline.bare(shipped.build_model())  # fed normalised inputs by the per-item transform

    def eval_ours() -> float:
        start = time.perf_counter()
        engine.loss_and_accuracy(engine.predict_logits(model_ours, test_x, 1000, CPU), test_y)
        return time.perf_counter() - start

    eval_ours(), baseline.evaluate(model_base, root)  # warm-up
    ev, ev_s = median_of(max(reps, 3), eval_ours)
    bv, bv_s = median_of(max(reps, 3), lambda: baseline.evaluate(model_base, root)[0])
    rows.append(row("evaluate 10,000 test images", ev, "s", "DataLoader loop (batch 1000, no_grad)", bv,
                    higher_is_better=False, target="ratio >= 1.5", samples=ev_s,
                    note=f"baseline samples {[round(v, 2) for v in bv_s]}"))

    # 7. predict a directory of PNG digits, after start-up, against one-image-at-a-time
    from PIL import Image

    from mnistctl.inference.classifier import TorchClassifier
    from mnistctl.inference.files import predict_files

    count = 1000 if args.quick else 10000
    png_dir = scratch / "png"
    png_dir.mkdir()
    for i in range(count):
        Image.fromarray(test_x[i].numpy()).save(png_dir / f"{i:05d}.png")

    classifier = TorchClassifier(shipped)

    def dir_ours() -> float:
        start = time.perf_counter()
        predict_files([str(png_dir)], classifier)
        return count / (time.perf_counter() - start)

    def dir_naive() -> float:  # how most scripts do it: open, ToTensor, Normalize, one forward each
        files = sorted(png_dir.iterdir())[: count // 5]
        start = time.perf_counter()
        with torch.no_grad():
            for f in files:
                with Image.open(f) as img:
                    model_base(baseline.TRANSFORM(img.convert("L")).unsqueeze(0)).argmax(1)
        return len(files) / (time.perf_counter() - start)

    dv, dv_s = median_of(reps, dir_ours)
    nv, _ = median_of(reps, dir_naive)
    rows.append(row(f"predict a directory of {count:,} PNGs", dv, "img/s", "one image at a time (PIL, ToTensor)",
                    nv, higher_is_better=True, target=">= 2,000 img/s", samples=dv_s))

    # 8. two processes (torchrun, gloo) x 1 thread against one process x 2 threads: the same recipe
    # and global batch of 128, one epoch each, images/s of the epoch as history.json records it
    cores = os.cpu_count() or 2
    subset = ["--val-split", "0.9"] if args.quick else []  # a smoke run trains on 6,000 images
    ddp_runs = iter(range(2 * reps))

    def epoch_rate(cmd: list[str], threads: int) -> float:
        run_dir = scratch / f"ddp-{next(ddp_runs)}"
        _run([*cmd, "train", "--device", "cpu", "--epochs", "1", "--batch-size", str(128 * threads // cores), *subset,
              "--run-dir", str(run_dir)], {**env, "OMP_NUM_THREADS": str(threads)})
        history = json.loads((run_dir / "history.json").read_text())["history"]
        return history[-1]["images_per_s"]

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(cores),
                "-m", "mnistctl"]
    one, one_s = median_of(reps, lambda: epoch_rate(MNISTCTL, cores))
    many, many_s = median_of(reps, lambda: epoch_rate(torchrun, 1))
    rows.append(row(f"train, {cores} processes x 1 thread (torchrun)", many, "img/s",
                    f"1 process x {cores} threads", one, higher_is_better=True, target="reported, not a target",
                    threads=1,
                    samples=many_s, note=f"nf=16, augmentation on, 128 images per step in both; baseline samples "
                                         f"{[round(v) for v in one_s]}"))
    fast_dir = scratch / "fast-ddp"
    fast_s, _ = _run([*torchrun, "train", "--device", "cpu", "--preset", "fast", "--batch-size", str(128 // cores),
                      *subset, "--run-dir", str(fast_dir)], env)
    report = evaluate_checkpoint(checkpoint.load(fast_dir / "last.pt"), "test", data_dir=data_dir).report
    fast_one = next(r for r in rows if r["figure"] == "train --preset fast --seed 1")
    rows.append(row(f"train --preset fast, {cores} processes", fast_s, "s", "the same in 1 process",
                    fast_one["value"], higher_is_better=False, target="reported: test accuracy as in 1 process",
                    note=f"batch {128 // cores} per process (the preset's 128 per step); test accuracy "
                         f"{100 * report.accuracy:.2f}% (1 process: {100 * fast_one['test_accuracy']:.2f}%)"))
    rows[-1]["test_accuracy"] = report.accuracy
    if torch.cuda.is_available():
        rows += cuda_rows(scratch, env, data_dir, imp, ours_v, reps, seeds, sub_x, sub_y)
    about = machine()
    for r in rows:  # every figure says where it was measured
        r["cpu"] = about["cpu"]
    return {"machine": about, "kind": machine_kind(about), "quick": args.quick, "repetitions": reps, "results": rows}


def fast_preset(scratch: Path, env: dict, data_dir, seed: int, reps: int, device: str, tag: str = "",
                extra: tuple[str, ...] = ()) -> tuple[float, list[float], list[float], float]:
    """`mnistctl train --preset fast --seed SEED --device DEVICE`, ``reps`` times: (the median
    whole-process seconds, its samples, each run's training seconds from history.json, the first
    run's test accuracy; the same seed gives the same weights on one CPU)."""
    runs = iter(range(reps))
    train_seconds: list[float] = []

    def once() -> float:
        run_dir = scratch / f"fast-{device}{tag}-{seed}-{next(runs)}"
        seconds = _run([*MNISTCTL, "train", "--device", device, "--preset", "fast", "--seed", str(seed), *extra,
                        "--run-dir", str(run_dir)], env)[0]
        history = json.loads((run_dir / "history.json").read_text())["history"]
        train_seconds.append(sum(r["seconds"] for r in history))
        return seconds

    seconds, samples = median_of(reps, once)
    report = evaluate_checkpoint(checkpoint.load(scratch / f"fast-{device}{tag}-{seed}-0" / "last.pt"), "test",
                                 data_dir=data_dir).report
    return seconds, samples, train_seconds, report.accuracy


def loop_rate(x: torch.Tensor, y: torch.Tensor, device: torch.device, nf: int = 32, batch: int = 64,
              graphs: bool = False) -> float:
    """Images per second of mnistctl's training loop (the original preset's settings, augmentation
    on) on ``device``, after a warm-up epoch over 10 batches; with ``graphs``, steps replayed as a
    CUDA graph (captured in the warm-up epoch), as ``mnistctl train`` does on CUDA."""
    torch.manual_seed(0)
    cfg = engine.TrainConfig(batch_size=batch)
    model = accel.prepare_model(Net(ModelConfig(nf=nf)), device)
    opt = engine.make_optimizer(model, cfg)
    steps = engine.steps_per_epoch(len(y), batch)
    sched = engine.make_scheduler(opt, cfg, 2 * steps)
    graph = cudagraph.StepGraph(model, engine.new_window(device)) if graphs else None
    warm = engine.TrainConfig(batch_size=batch, epoch_fraction=min(1.0, 10 / steps))
    engine.train_one_epoch(engine.Learner(model, opt, sched, graph=graph), x, y, warm, 0, engine.EpochStats())
    stats = engine.EpochStats()  # its seconds end after the epoch's last read of the device's sums
    engine.train_one_epoch(engine.Learner(model, opt, sched, graph=graph), x, y, cfg, 1, stats)
    if graph is not None and not graph.captured:
        raise SystemExit(f"benchmark: the CUDA graph was not captured: {graph.failure}")
    return stats.seen / stats.seconds


def cuda_rows(scratch: Path, env: dict, data_dir, imp: float, cpu_rate: float, reps: int, seeds: list[int],
              sub_x: torch.Tensor, sub_y: torch.Tensor) -> list[dict]:
    """The GPU's figures: the fast preset's whole process and training time per seed (against
    importing torch), and training throughput (against the same loop on the CPU)."""
    rows = []
    runs = [(seed, "") for seed in seeds + ([4, 5] if len(seeds) > 1 else [])] + [(seeds[0], "-eager")]
    for seed, tag in runs:
        run_env = {**env, cudagraph.GRAPHS_ENV: "0" if tag else "1"}
        seconds, samples, train_seconds, accuracy = fast_preset(scratch, run_env, data_dir, seed, reps, "cuda", tag)
        training = statistics.median(train_seconds)
        how = " (without CUDA graphs)" if tag else ""
        rows.append(row(f"train --preset fast --device cuda --seed {seed}{how}", seconds, "s",
                        "python -c 'import torch'", imp, higher_is_better=False,
                        target="training <= 1 s, test >= 99.0%", samples=samples,
                        note=f"training {training:.2f} s (the epoch); test accuracy {100 * accuracy:.2f}%"))
        rows[-1].update(test_accuracy=accuracy, train_seconds=training, train_samples=train_seconds)

    cuda = torch.device("cuda")
    x, y = sub_x.to(cuda), sub_y.to(cuda)
    for batch, graphs in ((64, True), (512, True), (64, False)):
        value, samples = median_of(reps, lambda batch=batch, graphs=graphs: loop_rate(x, y, cuda, batch=batch,
                                                                                       graphs=graphs))
        how = "CUDA graphs" if graphs else "without CUDA graphs"
        rows.append(row(f"train throughput on {torch.cuda.get_device_name()} (nf=32, batch {batch}, {how})",
                        value, "img/s", "the same loop on the CPU (nf=32, batch 64)", cpu_rate,
                        higher_is_better=True, target="reported", samples=samples,
                        note="augmentation on, bf16 autocast"))
    return rows


def accuracy(args) -> dict:
    """Per preset: test accuracy over seeds (mean, spread, and the ensemble of all of them), the
    whole process's time, the training time and the model's size. Slow (``best`` is about 13
    minutes a seed on 2 CPU cores): run on its own with ``--accuracy``."""
    from mnistctl.inference.classifier import load_classifier
    from mnistctl.inference.evaluation import evaluate as evaluate_classifier

    scratch = Path(tempfile.mkdtemp(prefix="mnistctl-acc-"))
    env = {"MNISTCTL_DATA_DIR": str(args.data_dir)} if args.data_dir else {}
    load_split(DataConfig(), "test", args.data_dir)  # fails early, with advice, when data is missing
    presets = []
    for preset in args.presets.split(","):
        runs = []
        for seed in range(1, args.seeds + 1):
            run_dir = scratch / f"{preset}-{seed}"
            seconds, _ = _run([*MNISTCTL, "train", "--preset", preset, "--seed", str(seed), "--quiet",
                               "--device", args.device, "--run-dir", str(run_dir), *args.train_options.split()], env)
            ckpt = checkpoint.load(run_dir / "last.pt")
            model_file = ckpt.inference_only().save(scratch / f"{preset}-{seed}.pt")
            report = evaluate_checkpoint(ckpt, "test", data_dir=args.data_dir).report
            runs.append({"seed": seed, "test_accuracy": report.accuracy, "val_accuracy": ckpt.history[-1].val_acc,
                         "seconds": seconds, "train_seconds": sum(r.seconds for r in ckpt.history),
                         "model_bytes": model_file.stat().st_size,
                         "parameters": num_parameters(ckpt.build_model())})
        accs = [r["test_accuracy"] for r in runs]
        ensemble = None
        if len(runs) > 1:
            clf = load_classifier([scratch / f"{preset}-{r['seed']}.pt" for r in runs], "cpu")
            ensemble = evaluate_classifier(clf, "test", args.data_dir).report.accuracy
        presets.append({"preset": preset, "seeds": len(runs), "mean": statistics.mean(accs), "min": min(accs),
                        "max": max(accs), "std": statistics.pstdev(accs), "ensemble": ensemble,
                        "seconds": statistics.median(r["seconds"] for r in runs),
                        "model_bytes": runs[0]["model_bytes"], "parameters": runs[0]["parameters"], "runs": runs})
    about = machine()
    return {"machine": about, "kind": machine_kind(about), "device": args.device,
            "train_options": args.train_options, "presets": presets}


def render_accuracy(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = doc["machine"]
    table = Table(title=f"mnistctl {m['mnistctl']} accuracy per preset: {m['cpu']}, {m['cores']} cores, "
                        f"device {doc['device']}")
    for col in ("preset", "seeds", "test accuracy: mean (min-max)", "ensemble of all", "time per run",
                "model size"):
        table.add_column(col)
    for p in doc["presets"]:
        table.add_row(p["preset"], str(p["seeds"]),
                      f"{100 * p['mean']:.2f}% ({100 * p['min']:.2f}-{100 * p['max']:.2f}%)",
                      f"{100 * p['ensemble']:.2f}%" if p["ensemble"] is not None else "-",
                      f"{p['seconds']:.0f} s", f"{p['model_bytes'] / 1e6:.2f} MB ({p['parameters']:,} parameters)")
    Console(width=160).print(table)


def render(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = doc["machine"]
    table = Table(title=f"mnistctl {m['mnistctl']} benchmarks: {m['cpu']}, {m['cores']} cores, torch {m['torch']}"
                        + (" (quick smoke run)" if doc["quick"] else ""))
    for col in ("figure", "mnistctl", "baseline", "ratio", "target", "note"):
        table.add_column(col, overflow="fold")
    for r in doc["results"]:
        fmt = (lambda v: f"{v:,.0f}") if r["unit"] == "img/s" else (lambda v: f"{v:.2f}")
        table.add_row(r["figure"], f"{fmt(r['value'])} {r['unit']}",
                      f"{fmt(r['baseline_value'])} {r['unit']}: {r['baseline']}", f"{r['ratio']:.2f}x",
                      r["target"], r["note"])
    Console(width=160).print(table)


def side_benchmark(description: str, stem: str, quick_help: str, bench_fn, argv: list[str] | None,
                   data_dir: bool = False, show=None) -> dict:
    """The command line of a benchmark beside the suite (pictures, serve_load, tune, reading_numbers):
    ``--quick`` and ``--output`` (and ``--data-dir``), the run (a MnistctlError as one line), its
    table (``show(doc)``; by default the suite's), and its JSON in benchmarks/STEM-KIND.json (a quick
    run: STEM-results.json here). Returns the document."""
    from mnistctl.errors import MnistctlError

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output", type=Path, default=None,
                        help=f"JSON file to write (default: benchmarks/{stem}-KIND.json; --quick: {stem}-results.json "
                             "here)")
    if data_dir:
        parser.add_argument("--data-dir", default=os.environ.get("MNISTCTL_DATA_DIR"),
                            help="mnistctl's data directory")
    args = parser.parse_args(argv)
    try:
        doc = bench_fn(args)
    except MnistctlError as exc:
        raise SystemExit(f"Error: {exc}") from None
    if show is not None:
        show(doc)
    else:
        render(doc | {"repetitions": 1})
    output = args.output or (Path(f"{stem}-results.json") if args.quick
                             else REPO / "benchmarks" / f"{stem}-{doc['kind']}.json")
    write_json(output, doc)
    print(f"Wrote {output}")
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repetition, small sizes: a smoke run")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (median reported)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file to write (default: benchmarks/results-KIND.json, one per kind of machine, "
                             "such as amd-epyc-2cpu; a --quick run: benchmark-results.json here)")
    parser.add_argument("--data-dir", default=os.environ.get("MNISTCTL_DATA_DIR"), help="mnistctl's data directory")
    parser.add_argument("--accuracy", action="store_true",
                        help="run the accuracy section instead: each preset trained with several seeds (slow)")
    parser.add_argument("--presets", default="fast,original,best", help="with --accuracy: which presets")
    parser.add_argument("--seeds", type=int, default=3, help="with --accuracy: seeds 1..N per preset")
    parser.add_argument("--device", default="auto", help="with --accuracy: where to train (auto, cpu, cuda)")
    parser.add_argument("--train-options", default="", help="with --accuracy: more `mnistctl train` options "
                                                            "for every run (a smoke test shrinks the runs)")
    args = parser.parse_args(argv)
    from mnistctl.errors import MnistctlError

    if args.accuracy:
        try:
            doc = accuracy(args)
        except MnistctlError as exc:
            raise SystemExit(f"Error: {exc}") from None
        render_accuracy(doc)
        output = args.output or REPO / "benchmarks" / f"accuracy-{doc['kind']}.json"
        write_json(output, doc)
        print(f"Wrote {output}")
        return
    try:
        doc = bench(args)
    except MnistctlError as exc:
        raise SystemExit(f"Error: {exc}") from None
    render(doc)
    output = args.output or (Path("benchmark-results.json") if args.quick
                             else REPO / "benchmarks" / f"results-{doc['kind']}.json")
    write_json(output, doc)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
