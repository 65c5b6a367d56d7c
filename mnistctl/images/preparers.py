"""Many pictures prepared at once: by a pool of processes when there are enough of them to pay
for starting it, in this process otherwise. ``predict`` on a folder, ``evaluate --images`` and
``train --extra-images`` prepare their pictures here.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import Literal

from mnistctl.errors import ImageError
from mnistctl.images.numbers import find_digits
from mnistctl.images.prepare import ImageSource, Prepared, decode, prepared_from

# when a picture is read as a number: "auto" when its ink may be several digits (``Prepared.several``),
# "always", or "never" (each picture is one digit)
Numbers = Literal["auto", "always", "never"]

PARALLEL_FROM = 64  # pictures: fewer are prepared in this process (a process costs more to start)
CHUNKSIZE = 16  # pictures a preparing process is handed at a time


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def prepared_files(files: Sequence[str], preprocess: bool = True, jobs: int | None = None,
                   numbers: Numbers = "never") -> Iterator[Iterator[Prepared | str]]:
    """Each of ``files`` prepared (``prepare_or_error``), or why it cannot be, in order, as they are
    consumed. ``jobs``: processes that prepare them (None: one per core; 1: this process alone);
    under ``PARALLEL_FROM`` files, this process prepares them. Leaving the ``with`` (Ctrl-C
    included) drops what the pool has not started."""
    jobs = usable_cores() if jobs is None else jobs
    if jobs <= 1 or len(files) < PARALLEL_FROM:
        yield (prepare_or_error(path, preprocess, numbers) for path in files)
        return
    pool = _preparers(jobs)
    try:
        yield _prepared_by(pool, files, preprocess, numbers)
    finally:
        pool.shutdown(cancel_futures=True)


def prepare_or_error(source: ImageSource, preprocess: bool = True, numbers: Numbers = "never") -> Prepared | str:
    """``source`` prepared (``prepare``), or why it cannot be (an ImageError's message). A preprocessed
    picture to be read as a number (``numbers``) also has its digits found (``Prepared.layout``), from
    the same decoded picture: the reader then only classifies them."""
    try:
        decoded = decode(source, preprocess)
        prepared = prepared_from(decoded, preprocess)
    except ImageError as exc:
        return str(exc)
    if preprocess and (numbers == "always" or numbers == "auto" and prepared.several):
        try:
            prepared.layout = find_digits(decoded)
        except ImageError as exc:
            prepared.layout = str(exc)
    return prepared


def _preparers(jobs: int) -> ProcessPoolExecutor:
    """Processes that prepare pictures, started fresh (a fork server where there is one): they
    import numpy, Pillow and OpenCV, never torch, and leave Ctrl-C to this process."""
    context: BaseContext = multiprocessing.get_context("spawn")
    if "forkserver" in multiprocessing.get_all_start_methods():
        server = multiprocessing.get_context("forkserver")
        server.set_forkserver_preload(["mnistctl.images.preparers"])  # each process starts with it imported
        context = server
    return ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_preparer)


def _prepared_by(pool: ProcessPoolExecutor, files: Sequence[str], preprocess: bool,
                 numbers: Numbers) -> Iterator[Prepared | str]:
    """``files`` prepared by ``pool``'s processes, in order; should one of them die (killed for
    memory, say), the rest are prepared in this process."""
    done = 0
    try:
        for outcome in pool.map(prepare_or_error, files, itertools.repeat(preprocess), itertools.repeat(numbers),
                                chunksize=CHUNKSIZE):
            yield outcome
            done += 1
    except BrokenProcessPool:
        for path in files[done:]:
            yield prepare_or_error(path, preprocess, numbers)


def _start_preparer() -> None:
    """A preparing process: Ctrl-C is its parent's to handle, and OpenCV runs on one thread (the
    processes share the cores)."""
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
