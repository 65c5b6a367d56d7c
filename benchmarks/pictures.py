"""People's pictures: preparation per kind of picture, `predict` on a directory of them, a
labelled folder as `train --extra-images` prepares it, and `predict one.png` as a whole command,
each beside a baseline timed in the same run.

    python benchmarks/pictures.py            # about 2 minutes on 2 CPU cores; writes benchmarks/pictures-KIND.json
    python benchmarks/pictures.py --quick    # a smoke run: small corpus, few repetitions

Baselines: preparation against the naive pipeline (Pillow decode, grey, invert, resize to 28 x 28:
no cleaning, no fitting -- it misreads photos, so it is a floor for the cost, not a rival);
a directory against the same command preparing in one process (``--jobs 1``); a labelled folder
against the same preparation in this process alone (``jobs=1``); one picture against
``python -c 'import torch'``. Needs the real MNIST (through mnistctl's mirror setting) for
the people-style corpus, which is drawn from training digits.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.payloads import PHOTO, canvas_png, people_corpus, phone_photo  # noqa: E402
from benchmarks.run import machine, machine_kind, row, side_benchmark  # noqa: E402
from mnistctl.images.labelled import prepare_labelled  # noqa: E402
from mnistctl.images.prepare import prepare  # noqa: E402


def naive(data: bytes) -> np.ndarray:
    """The floor: decode, grey, invert, resize to 28 x 28."""
    with Image.open(io.BytesIO(data)) as img:
        grey = img.convert("L")
    return 255 - np.asarray(grey.resize((28, 28), Image.Resampling.BOX))


def per_call_ms(fn, data: bytes, reps: int) -> tuple[float, list[float]]:
    """The median milliseconds of ``fn(data)`` over ``reps`` calls (after one to warm up)."""
    fn(data)
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(data)
        samples.append(1000 * (time.perf_counter() - start))
    return statistics.median(samples), samples


def whole(cmd: list[str], reps: int) -> float:
    """The median wall seconds of a whole command."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(fn) -> float:
    """The wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(args: argparse.Namespace) -> dict:
    rows: list[dict] = []
    reps = 5 if args.quick else 30
    pictures = [("the page's canvas drawing (280 x 280 PNG)", canvas_png("5"), "<= 2 ms"),
                ("a 0.2-megapixel photo (505 x 423 JPEG)", PHOTO.read_bytes(), "<= 5 ms"),
                ("a 12-megapixel phone photo (4000 x 3000 JPEG)", phone_photo(), "<= 25 ms")]
    for name, data, target in pictures:
        ours, samples = per_call_ms(prepare, data, reps if "12" not in name else max(3, reps // 3))
        floor, _ = per_call_ms(naive, data, reps)
        rows.append(row(f"prepare {name}", ours, "ms", "naive: decode, grey, invert, resize", floor,
                        higher_is_better=False, target=target, samples=[round(s, 3) for s in samples],
                        note=f"{ours / floor:.1f}x the naive pipeline's time"))

    scratch = Path(tempfile.mkdtemp(prefix="mnistctl-pictures-"))
    corpus = people_corpus(scratch / "people", 10 if args.quick else 150, args.data_dir)
    count = sum(len(v) for v in corpus.values())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    mnistctl = [sys.executable, "-m", "mnistctl", "predict", str(scratch / "people"), "--json"]
    start_up = whole([sys.executable, "-m", "mnistctl", "predict", str(PHOTO), "--json"], 3)
    one = whole([*mnistctl, "--jobs", "1"], 1 if args.quick else 2) - start_up
    pool = whole(mnistctl, 1 if args.quick else 2) - start_up
    rows.append(row(f"predict a directory of {count:,} people-style pictures ({len(corpus)} styles)", count / pool,
                    "img/s", "the same with --jobs 1 (this process prepares them all)", count / one,
                    higher_is_better=True, target=">= 250 img/s", threads=cores,
                    note=f"{cores} preparing processes; the command's start-up ({start_up:.2f} s, one picture) "
                         "taken off both"))
    single = whole([*mnistctl, "--single"], 1 if args.quick else 2) - start_up
    rows.append(row(f"predict --single a directory of {count:,} people-style pictures", count / single, "img/s",
                    "the same read as numbers where they may be (the default, above)", count / pool,
                    higher_is_better=True, target="-", threads=cores,
                    note="what looking for numbers costs: a digit wider than 1.15x its height is also read as "
                         "one; start-up taken off both"))
    labels = scratch / "people" / "labels.csv"  # the same pictures as labelled ones, as --extra-images takes them
    labels.write_text("".join(f"{path.relative_to(labels.parent)},{label}\n"
                              for made in corpus.values() for path, label in made))
    alone, pooled = (min(timed(lambda j=jobs: prepare_labelled(labels, tuple("0123456789"), jobs=j))
                         for _ in range(1 if args.quick else 2)) for jobs in (1, None))
    rows.append(row(f"train --extra-images: prepare {count:,} labelled people-style pictures", count / pooled,
                    "img/s", "the same prepared by this process alone (jobs=1)", count / alone,
                    higher_is_better=True, target="-", threads=cores,
                    note=f"{cores} preparing processes, their start included ({alone / pooled:.2f}x as fast)"))
    torch_import = whole([sys.executable, "-c", "import torch"], 3 if args.quick else 5)
    one_png = whole([sys.executable, "-m", "mnistctl", "predict", str(PHOTO)], 3 if args.quick else 5)
    rows.append(row("mnistctl predict one.png (whole command, photo, OpenCV imported)", one_png, "s",
                    "python -c 'import torch'", torch_import, higher_is_better=False, target="<= 0.3x import torch",
                    note=f"{one_png / torch_import:.2f}x import torch"))
    m = machine()
    return {"machine": m, "kind": machine_kind(m), "quick": args.quick, "results": rows}


def main(argv: list[str] | None = None) -> None:
    side_benchmark(__doc__, "pictures", "a smoke run: small corpus, few repetitions", bench, argv, data_dir=True)


if __name__ == "__main__":
    main()
