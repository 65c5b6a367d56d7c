"""The project's exceptions.

Core modules raise these; the CLI turns them into one line on stderr and exit code 1.
Each message names what is wrong and, where there is one, what to do about it.
"""


class MnistctlError(Exception):
    """Base class for every error a user can cause or fix."""


class DataError(MnistctlError):
    """Data is missing, corrupt or of the wrong shape."""


class DownloadError(MnistctlError):
    """No mirror could deliver a verified file."""


class CheckpointError(MnistctlError):
    """A checkpoint cannot be read or does not fit."""


class ConfigError(MnistctlError):
    """An option or setting has an invalid value."""


class TrainingInterrupted(MnistctlError):
    """Training stopped on Ctrl-C after saving a resumable checkpoint."""

    def __init__(self, checkpoint: object, epoch: int, step: int):
        super().__init__(f"training interrupted in epoch {epoch}, step {step}; "
                         f"resumable checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
