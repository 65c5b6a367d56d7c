"""``mnistctl predict``: read the digit, or the number, in each picture (a thin skin over
``mnistctl.inference.files.predict_files``), shown as a table, JSON or CSV."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mnistctl.cli.common import (
    CheckpointOpt,
    DeviceOpt,
    console,
    err_console,
    error_line,
    say,
    user_errors,
)
from mnistctl.cli.terminal import printable
from mnistctl.config import INFERENCE_BATCH
from mnistctl.errors import ConfigError


def predict(
    paths: Annotated[list[str], typer.Argument(
        metavar="IMAGE",
        help="Image files, directories (their images, sorted), glob patterns (PNG, JPEG, BMP, GIF, TIFF, WebP), "
             "or - for one image on standard input.")],
    checkpoint_path: CheckpointOpt = None,
    preprocess: Annotated[bool, typer.Option(
        "--preprocess/--no-preprocess",
        help="Make each image look like an MNIST digit first (polarity, cleanup, 20 px box, centre of "
             "mass); --no-preprocess only resizes it to 28x28.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per image.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV: one row per image, for spreadsheets.")] = False,
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 input the model saw in the terminal.")] = False,
    save_inputs: Annotated[Path | None, typer.Option(
        show_default=False, help="Write the 28x28 inputs the model saw as PNGs into this directory.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = INFERENCE_BATCH,
    device: DeviceOpt = "cpu",
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, max=256, show_default=False,
        help="Processes preparing pictures [default: one per core; 1: none besides this one]. "
             "Used from 64 files on.")] = None,
    single: Annotated[bool, typer.Option(
        "--single", help="Read each picture as one digit, even when it seems to hold several.")] = False,
    number: Annotated[bool, typer.Option(
        "--number", help="Every picture holds a number: touching digits are split more readily.")] = False,
    digits: Annotated[int | None, typer.Option(
        min=1, max=64, show_default=False,
        help="How many digits each picture holds, when known (the boxes of a form): guides the split of "
             "touching digits.")] = None,
) -> None:
    """Read the digit, or the number, in each image: a table of predictions with confidence and top 3.

    A picture whose ink is wider than a digit or in separate places is read as a number: every
    digit found, left to right on one line (the table's number column; "number" and "digits" in
    JSON and CSV). A prediction is marked unsure (? in the table, "unsure" in JSON and CSV) when the
    model gives a digit less than 80%, the split of touching digits was doubtful, or the picture
    does not look like what was read. Exit code 1 when any image could not be read (the others are
    still predicted).
    """
    with user_errors():
        from mnistctl import api
        from mnistctl.cli.render import PredictProgress, input_panels, model_line, predictions_table
        from mnistctl.inference import files as core

        if as_json and as_csv:
            raise ConfigError("choose one of --json and --csv")
        if single and (number or digits is not None):
            raise ConfigError("--single reads one digit per picture: leave out --number and --digits")
        if not preprocess and (number or digits is not None):
            raise ConfigError("--number and --digits need the pictures prepared: leave out --no-preprocess")
        from mnistctl.errors import ImageError
        from mnistctl.fsutil import read_stream
        from mnistctl.images.read import MAX_BYTES

        stdin = (read_stream(sys.stdin.buffer, MAX_BYTES, "standard input", ImageError)
                 if core.STDIN in paths and not sys.stdin.isatty() else None)
        clf = api.load(checkpoint_path, device=device, batch_size=batch_size)
        numbers: core.Numbers = "never" if single else "always" if number else "auto"  # --digits: always
        with PredictProgress(err_console) as progress:
            results = core.predict_files(paths, clf, preprocess, stdin=stdin, progress=progress.update,
                                         jobs=jobs, numbers=numbers, digits=digits)
        saved = core.save_inputs(results, save_inputs) if save_inputs is not None else []
    failed = sum(r.error is not None for r in results)
    if as_json:
        typer.echo(json.dumps([core.prediction_json(r, clf) for r in results], indent=2))
    elif as_csv:
        table = core.to_csv(results, clf.classes)  # the exact names; escaped only where a terminal would obey them
        sys.stdout.write(printable(table, keep="\r\n") if sys.stdout.isatty() else table)
    else:
        say(model_line(clf))
        console.print(predictions_table(results, clf.dataset))
        from mnistctl.cli.terminal import colourless

        for panel in input_panels(results, colourless(console)) if show else []:
            console.print(panel)
        if save_inputs is not None:
            say(f"Saved {len(saved)} input{'s' if len(saved) != 1 else ''} the model saw to {save_inputs}")
    if failed:
        first = next(r for r in results if r.error is not None)
        many = f"{failed} of {len(results)} images could not be read; the first, " if failed > 1 else "could not read "
        error_line(f"{many}{printable(first.path)}: {first.error}")
        raise typer.Exit(1)
