"""Reading numbers: whole-number and per-digit accuracy of `predict` (numbers read by default) and
`predict --number` by style, spacing and digit count; single-digit pictures left as they were; time
per number.

    python benchmarks/reading_numbers.py           # about 3 minutes on 2 cores: benchmarks/numbers-KIND.json
    python benchmarks/reading_numbers.py --quick   # a smoke run: a few numbers

The numbers are drawn from MNIST *test* digits in the people styles (tests/people.py:
``make_number_corpus``; spacings: gaps of 2-6 px at MNIST's scale, tight 0-1, touching -1-0,
overlapping -4 to -2; half of them slanted): figures only -- every choice of the reader was made on
validation digits (docs/design-notes.md, "Reading numbers"). Needs the real MNIST through mnistctl's
mirror setting.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

from benchmarks.run import machine, machine_kind, side_benchmark  # noqa: E402


def accuracy(results: list, truths: list[tuple[str, str, str]]) -> list[dict]:
    """Whole-number and per-digit accuracy by style, spacing and digit count (a digit counts as
    right only in a number read with the right count of digits)."""
    tally: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for r, (truth, style, spacing) in zip(results, truths):
        got = (r.text or "") if r.error is None else ""
        for key in ("all", f"style: {style}", f"spacing: {spacing}", f"{len(truth)} digits"):
            t = tally[key]
            t[0] += got == truth
            t[1] += 1
            t[2] += sum(a == b for a, b in zip(got, truth)) if len(got) == len(truth) else 0
            t[3] += len(truth)
    return [{"corpus": key, "numbers": n, "whole": right / n, "digits": digits / total}
            for key, (right, n, digits, total) in sorted(tally.items(), key=lambda kv: (kv[0] != "all", kv[0]))]


def bench(args: argparse.Namespace) -> dict:
    from mnistctl.config import DataConfig
    from mnistctl.data.splits import load_split
    from mnistctl.inference.classifier import load_classifier
    from mnistctl.inference.files import predict_files
    from people import make_corpus, make_number_corpus, number_picture

    images, labels = (t.numpy() for t in load_split(DataConfig(), "test", args.data_dir))
    clf = load_classifier(None)
    count = 72 if args.quick else 720
    doc: dict = {"machine": machine(), "quick": args.quick, "model": clf.source, "digits": "MNIST test (figures only)"}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_number_corpus(images, labels, Path(tmp) / "numbers", count, seed=37)
        paths = [str(p) for p, *_ in corpus]
        truths = [(t, style, spacing) for _, t, style, spacing in corpus]
        for mode, name in (("auto", "predict"), ("always", "predict --number")):
            start = time.perf_counter()
            results = predict_files(paths, clf, numbers=mode, jobs=1)
            seconds = time.perf_counter() - start
            doc[name] = {"rows": accuracy(results, truths), "ms_per_number": 1000 * seconds / len(paths)}
        # single digits in the people styles: the answer predict gives by default against --single's
        per_style = 5 if args.quick else 50
        pick = np.random.default_rng(37).permutation(len(labels))[:per_style]
        singles = make_corpus(images[pick], labels[pick], Path(tmp) / "singles", per_style, seed=37)
        files = [str(p) for items in singles.values() for p, _ in items]
        one = predict_files(files, clf, numbers="never", jobs=1)
        auto = predict_files(files, clf, jobs=1)
        doc["single digits"] = {"pictures": len(files), "read as numbers": sum(r.number is not None for r in auto),
                                "answers changed": sum(a.text != b.text for a, b in zip(one, auto))}
    # the pictures of the tests: MNIST digits three times larger side by side (tests/test_numbers.py)
    rng = np.random.default_rng(38)
    pairs = 30 if args.quick else 300
    for name, gaps, size in (("touching pairs", (-3, 1), 2), ("separated, 4 digits", (8, 30), 4)):
        right = 0
        for _ in range(pairs):
            pick = rng.integers(0, len(labels), size)
            truth = "".join(str(int(labels[i])) for i in pick)
            picture = number_picture(images[pick], int(rng.integers(*gaps)), rng)
            right += (clf.read_number(picture).number or "") == truth
        doc[name] = {"numbers": pairs, "whole": right / pairs}
    six = number_picture(images[:6], 14, np.random.default_rng(39))
    clf.read_number(six)
    samples = []
    for _ in range(5 if args.quick else 30):
        start = time.perf_counter()
        clf.read_number(six)
        samples.append(1000 * (time.perf_counter() - start))
    doc["6-digit number, ms"] = statistics.median(samples)
    doc["kind"] = machine_kind(doc["machine"])
    return doc


def render(doc: dict) -> None:
    for name in ("predict", "predict --number"):
        print(f"{name}: {doc[name]['ms_per_number']:.1f} ms a picture")
        for r in doc[name]["rows"]:
            print(f"  {r['corpus']:22s} {r['numbers']:4d} numbers  whole {100 * r['whole']:5.1f}%  "
                  f"digits {100 * r['digits']:5.1f}%")
    print("single digits:", json.dumps(doc["single digits"]))
    for name in ("touching pairs", "separated, 4 digits"):
        print(f"{name}: {100 * doc[name]['whole']:.1f}% whole ({doc[name]['numbers']})")
    print(f"a 6-digit number: {doc['6-digit number, ms']:.1f} ms")


def main(argv: list[str] | None = None) -> None:
    side_benchmark(__doc__, "numbers", "a smoke run: a few numbers", bench, argv, data_dir=True, show=render)


if __name__ == "__main__":
    main()
