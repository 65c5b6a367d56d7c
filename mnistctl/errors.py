"""The project's exceptions.

Core modules raise these; the CLI turns them into one line on stderr and exit code 1.
Each message names what is wrong in the words of the domain ("the number of epochs", "the
device"), and, where there is one, what to do about it. A front end that knows which of its
options set a value may word the message with its own names: ``ConfigError.setting`` says
which setting was wrong and ``ConfigError.problem`` what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path


class MnistctlError(Exception):
    """Base class for every error a user can cause or fix."""


class DataError(MnistctlError):
    """Data is missing, corrupt or of the wrong shape."""


class DownloadError(MnistctlError):
    """No mirror could deliver a verified file."""


class CheckpointError(MnistctlError):
    """A checkpoint cannot be read or does not fit."""


class ConfigError(MnistctlError):
    """A setting has an invalid value.

    ``ConfigError("...")`` is a plain message; ``ConfigError.invalid("epochs", "must be at least
    1, got 0")`` also records which setting it is about, so that a front end can say
    ``--epochs must be at least 1, got 0``.
    """

    def __init__(self, message: str, *, setting: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.setting = setting
        self.problem = problem

    @classmethod
    def invalid(cls, setting: str, problem: str, label: str | None = None) -> ConfigError:
        """``label`` is how the message names the setting (default: its name with spaces)."""
        return cls(f"{label or setting.replace('_', ' ')} {problem}", setting=setting, problem=problem)


class RunExistsError(ConfigError):
    """A new run would overwrite the checkpoints of an earlier one."""

    def __init__(self, run_dir: Path, taken: list[str]):
        self.run_dir = run_dir
        self.taken = taken
        self.last = run_dir / "last.pt"
        super().__init__(f"run directory {run_dir} already holds {' and '.join(taken)}: choose another "
                         f"run directory or name, or resume that run from {self.last}", setting="run_dir")


class TrainingInterrupted(MnistctlError):
    """Training stopped on Ctrl-C after saving a resumable checkpoint."""

    def __init__(self, checkpoint: object, epoch: int, step: int):
        super().__init__(f"training interrupted in epoch {epoch}, step {step}; "
                         f"resumable checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
