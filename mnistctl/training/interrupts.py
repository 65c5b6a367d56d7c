"""Ctrl-C and SIGTERM during training: asked once, training stops after the current step (so what
is saved is consistent); asked again, it stops at once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mnistctl.errors import Terminated


class StopFlag:
    """Set by Ctrl-C or SIGTERM while training, checked between steps so the state saved is consistent."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT
        self.at = 0.0  # when it was requested (time.monotonic)

    def __call__(self) -> bool:
        return self.requested


# Under torchrun a Ctrl-C reaches each process twice: from the terminal and forwarded by the launcher
REPEAT_GRACE_S = 3.0


@contextmanager
def deferred_interrupt(grace: float = 0.0) -> Iterator[StopFlag]:
    """The first Ctrl-C or SIGTERM (what schedulers, containers and CI runners send before they kill)
    asks training to stop after the current step; a second one (``grace`` seconds or more later)
    stops at once. One that came too late for training to act on it (after its last step: the run
    is complete) is passed on when the block ends, to what handled it before: the process stops
    rather than going on (``tune`` to its next trial: a SIGTERM between two steps of a trial's end
    was lost, and the study ran to its end)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        if flag.requested:
            if time.monotonic() - flag.at < grace:
                return
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        flag.requested, flag.signum, flag.at = True, signum, time.monotonic()

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    if flag.requested:  # (not reached when training stopped for it: TrainingInterrupted passes through)
        signal.raise_signal(flag.signum)
