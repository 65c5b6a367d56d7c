"""The results page of the docs (docs/results.md), written from the benchmark files in
benchmarks/ -- never copied by hand:

    python benchmarks/report.py            # rewrite docs/results.md
    python benchmarks/report.py --check    # exit 1 when docs/results.md is not what the files say (a test runs it)

One table per file: speed and memory (results-*, pictures-*, serve-*, tune-*), reading numbers
(numbers-*), other writers' digits (writers-*), accuracy per preset (accuracy-KIND.json) and the
recipe sweeps (accuracy-sweep*.json), each with its machine and date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "results.md"
KINDS = (("results-", "The benchmark suite (`benchmarks/run.py`)"),
         ("pictures-", "People's pictures (`benchmarks/pictures.py`)"),
         ("serve-", "`serve` under load (`benchmarks/serve_load.py`)"),
         ("tune-", "`tune` (`benchmarks/tune.py`)"))


def _number(value: float, unit: str) -> str:
    if unit in ("img/s", "req/s"):
        return f"{value:,.0f} {unit}"
    return f"{value:,.3g} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _machine(doc: dict) -> str:
    m = doc.get("machine", {})
    parts = [f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"]
    if m.get("cuda"):
        parts.append(str(m["cuda"]))
    parts += [f"torch {m.get('torch', '?')}", f"mnistctl {m.get('mnistctl', '?')}", str(m.get("date", "?"))]
    return "; ".join(parts) + (" (a quick smoke run)" if doc.get("quick") else "")


def speed_table(name: str, doc: dict) -> list[str]:
    lines = [f"#### `{name}`", "", _machine(doc), "",
             "| figure | mnistctl | baseline (same run) | ratio | target | note |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in doc["results"]:
        unit = r["unit"]
        lines.append(f"| {_cell(r['figure'])} | {_number(r['value'], unit)} | "
                     f"{_number(r['baseline_value'], unit)}: {_cell(r['baseline'])} | {r['ratio']:.2f}x | "
                     f"{_cell(r.get('target', ''))} | {_cell(r.get('note', ''))} |")
    return lines + [""]


def accuracy_table(name: str, doc: dict) -> list[str]:
    lines = [f"### `{name}`", "", _machine(doc) + f"; trained on {doc.get('device', '?')}", "",
             "| preset | seeds | test accuracy: mean (min-max) | ensemble of the seeds | seconds a run | model |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in doc["presets"]:
        lines.append(f"| {p['preset']} | {p['seeds']} | {100 * p['mean']:.2f}% ({100 * p['min']:.2f}-"
                     f"{100 * p['max']:.2f}%) | {100 * p['ensemble']:.2f}% | {p['seconds']:.0f} | "
                     f"{p['model_bytes'] / 1000:,.0f} kB, {p['parameters']:,} parameters |")
    return lines + [""]


def sweep_table(name: str, doc: dict) -> list[str]:
    lines = [f"### `{name}`", "", _cell(doc.get("what", "")), "", f"Chosen: {_cell(doc.get('chosen', ''))}.", "",
             "| recipe | settings | seeds | validation, mean | test, mean (min-max) | ensemble of 5, test |",
             "| --- | --- | --- | --- | --- | --- |"]
    for recipe, c in doc["configs"].items():
        ensemble = c.get("ens5_test", c.get("test_ensemble"))
        lines.append(f"| {_cell(recipe)} | `{_cell(c.get('settings', ''))}` | {len(c.get('seeds', []))} | "
                     f"{100 * c['val_mean']:.2f}% | {100 * c['test_mean']:.2f}% ({100 * c['test_min']:.2f}-"
                     f"{100 * c['test_max']:.2f}%) | "
                     + (f"{100 * ensemble:.2f}% |" if ensemble is not None else "|"))
    return lines + [""]


def numbers_table(name: str, doc: dict) -> list[str]:
    """``benchmarks/reading_numbers.py``: whole-number and per-digit accuracy, by corpus."""
    lines = [f"### `{name}`", "", _machine(doc) + f"; {doc['model']}; digits from {doc['digits']}", ""]
    single = doc["single digits"]
    lines += [f"Single digits in the people styles: {single['read as numbers']} of {single['pictures']} read as "
              f"numbers, {single['answers changed']} answers changed from `--single`'s. Touching pairs (the "
              f"tests' pictures): {100 * doc['touching pairs']['whole']:.1f}% whole; separated 4-digit numbers: "
              f"{100 * doc['separated, 4 digits']['whole']:.1f}% whole. A 6-digit number read in "
              f"{doc['6-digit number, ms']:.1f} ms.", "",
              "| corpus | numbers | `predict`: whole | digits | `predict --number`: whole | digits |",
              "| --- | --- | --- | --- | --- | --- |"]
    auto, forced = doc["predict"]["rows"], {r["corpus"]: r for r in doc["predict --number"]["rows"]}
    for r in auto:
        f = forced[r["corpus"]]
        lines.append(f"| {_cell(r['corpus'])} | {r['numbers']} | {100 * r['whole']:.1f}% | {100 * r['digits']:.1f}% | "
                     f"{100 * f['whole']:.1f}% | {100 * f['digits']:.1f}% |")
    return lines + [""]


def writers_table(name: str, doc: dict) -> list[str]:
    """``benchmarks/writers.py``: each model on the writer-shift check and on MNIST's own digits."""
    lines = [f"### `{name}`", "", _machine(doc), "",
             "| model | pictures | accuracy | unsure | mistakes marked unsure |", "| --- | --- | --- | --- | --- |"]
    for model, rows in doc["models"].items():
        for corpus, r in rows.items():
            lines.append(f"| {_cell(model)}: {_cell(corpus)} | {r['pictures']:,} | {100 * r['accuracy']:.2f}% | "
                         f"{100 * r['unsure']:.1f}% | {r['mistakes marked unsure']} of {r['mistakes']} |")
    return lines + [""]


def page() -> str:
    files = sorted((REPO / "benchmarks").glob("*.json"))
    out = ["# Results", "",
           "Every figure mnistctl's benchmarks have recorded, one table per file in `benchmarks/`, each with its",
           "machine and date. This page is written by `python benchmarks/report.py` from those files (a test",
           "checks it is up to date); [Performance](performance.md) and [Accuracy](accuracy.md) explain them.", ""]
    out += ["## Speed and memory", ""]
    for prefix, title in KINDS:
        chosen = [f for f in files if f.name.startswith(prefix)]
        if chosen:
            out += [f"### {title}", ""]
            for f in chosen:
                out += speed_table(f.name, json.loads(f.read_text()))
    out += ["## Reading numbers (`benchmarks/reading_numbers.py`)", ""]
    for f in files:
        if f.name.startswith("numbers-"):
            out += numbers_table(f.name, json.loads(f.read_text()))
    out += ["## Other writers' digits (`benchmarks/writers.py`)", ""]
    for f in files:
        if f.name.startswith("writers-"):
            out += writers_table(f.name, json.loads(f.read_text()))
    out += ["## Accuracy per preset", ""]
    for f in files:
        if f.name.startswith("accuracy-") and not f.name.startswith("accuracy-sweep"):
            out += accuracy_table(f.name, json.loads(f.read_text()))
    out += ["## Recipe sweeps", ""]
    for f in files:
        if f.name.startswith("accuracy-sweep"):
            out += sweep_table(f.name, json.loads(f.read_text()))
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != text:
            sys.exit(f"{PAGE.relative_to(REPO)} is out of date: run python benchmarks/report.py")
        return
    PAGE.write_text(text)
    print(f"Wrote {PAGE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
