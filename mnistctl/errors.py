"""The project's exceptions.

Core modules raise these; the CLI turns them into one line on stderr and exit code 1.
Each message names what is wrong in the words of the domain ("the number of epochs", "the
device"), and, where there is one, what to do about it. A front end that knows which of its
options set a value may word the message with its own names: ``ConfigError.setting`` says
which setting was wrong and ``ConfigError.problem`` what is wrong with it.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class MnistctlError(Exception):
    """Base class for every error a user can cause or fix. ``setting``, where given, is the setting
    whose change the message advises (a front end may name its option for it)."""

    def __init__(self, *args: Any, setting: str | None = None):
        super().__init__(*args)
        self.setting = setting


class DataError(MnistctlError):
    """Data is missing, corrupt or of the wrong shape."""


class DownloadError(MnistctlError):
    """No mirror could deliver a verified file."""


class CheckpointError(MnistctlError):
    """A checkpoint cannot be read or does not fit."""


class ImageError(MnistctlError):
    """One image could not be read or holds no digit."""


class ServeError(MnistctlError):
    """The server cannot start (port taken, address not available, extra not installed)."""


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the JSON body (the server
    answers it; it never reaches a command line)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ConfigError(MnistctlError):
    """A setting has an invalid value.

    ``ConfigError("...")`` is a plain message; ``ConfigError.invalid("epochs", "must be at least
    1, got 0")`` also records which setting it is about, so that a front end can say
    ``--epochs must be at least 1, got 0``.
    """

    def __init__(self, message: str, *, setting: str | None = None, problem: str | None = None):
        super().__init__(message, setting=setting)
        self.problem = problem

    @classmethod
    def invalid(cls, setting: str, problem: str, label: str | None = None) -> ConfigError:
        """``label`` is how the message names the setting (default: its name with spaces)."""
        return cls(f"{label or setting.replace('_', ' ')} {problem}", setting=setting, problem=problem)


def one_of(setting: str, value: Any, choices: Iterable[str]) -> Any:
    """``value`` if it is one of ``choices``; otherwise a ConfigError listing them (the one check
    of a named choice: optimizer, schedule, device, split, format, preset, ...)."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError.invalid(setting, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


class RunExistsError(ConfigError):
    """A new run would overwrite the checkpoints of an earlier one."""

    def __init__(self, run_dir: Path, taken: list[str], last: Path):
        self.run_dir = run_dir
        self.taken = taken
        self.last = last  # the run's resumable checkpoint
        super().__init__(f"run directory {run_dir} already holds {' and '.join(taken)}: choose another "
                         f"run directory or name, or resume that run from {self.last}", setting="run_dir")


class TrainingInterrupted(MnistctlError):
    """Training stopped on Ctrl-C (SIGINT) or SIGTERM after saving a resumable checkpoint."""

    def __init__(self, checkpoint: object, epoch: int, step: int, signum: int = signal.SIGINT):
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        super().__init__(f"training interrupted{by} in epoch {epoch}, step {step}; "
                         f"resumable checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + int(self.signum)


class DistributedError(MnistctlError):
    """The processes of a distributed run cannot work together: one could not join, or one lost
    contact with the others (another process died, hung or was stopped)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived outside training: unwind as Ctrl-C does (temporary files removed), exit 143."""


def _file_in_the_way(path: Path) -> Path | None:
    """The first of ``path``'s parents that is a file (so nothing can be written under it)."""
    return next((p for p in reversed(path.parents) if p.is_file()), None)


# the OS errors a user can fix: a full disk, a path that is not writable or not what it should be
FIXABLE_ERRNOS = {
    errno.ENOSPC: "free some space, or write somewhere else",
    getattr(errno, "EDQUOT", errno.ENOSPC): "free some space, or write somewhere else",
    errno.EFBIG: "write somewhere else",
    errno.EACCES: "check the permissions, or write somewhere else",
    errno.EPERM: "check the permissions, or write somewhere else",
    errno.EROFS: "write somewhere else",
    errno.EISDIR: "give a file name, not a directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EEXIST: "a file is in the way of a directory: choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.ELOOP: "check the path (a symbolic link loops)",
    errno.EMFILE: "close other programs, or raise the open-file limit (ulimit -n)",
}


class WriteError(MnistctlError):
    """A file could not be written: the disk is full, the place is not writable, the path is wrong."""

    def __init__(self, path: object, exc: OSError, context: str = ""):
        self.path, self.errno, self.reason = path, exc.errno, (exc.strerror or str(exc)).rstrip(".")
        hint = FIXABLE_ERRNOS.get(exc.errno or 0, "")
        message = f"{self.reason.lower() if exc.errno == errno.ENOSPC else self.reason} while writing {path}"
        blocker = _file_in_the_way(Path(str(path))) if exc.errno in (errno.EEXIST, errno.ENOTDIR) else None
        if blocker is not None:
            message, hint = f"cannot write {path}: {blocker} is a file, not a directory", "choose another path"
        super().__init__(message + (f": {hint}" if hint else "") + (f"; {context}" if context else ""))

    def add_context(self, context: str) -> WriteError:
        """The same error, saying what this failure means for the user's work."""
        return WriteError(self.path, OSError(self.errno, self.reason), context)
