"""Shared fixtures: tiny made-up IDX data sets, and the real MNIST fetched through `download`.

The real data comes from the offline mirror (``$MNISTCTL_TEST_MIRROR``, else ``../shared/data/mnist``
beside the repo). Tests that need it skip when it is missing, except under CI=true, where they fail.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mnistctl.datasets import MNIST, DatasetInfo, IdxFile

REPO = Path(__file__).resolve().parent.parent

# The terminal size of whoever started pytest (pytest-xdist's workers see COLUMNS=80) would fix the width of the
# CLI's consoles when they are made, before a test's own COLUMNS could reach them.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
# Under pytest-xdist each worker (and every mnistctl it starts) keeps to one thread: two workers with two OpenMP
# threads each on two cores spin against each other and run a training test five times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000_08_<ndim>, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def make_fake_dataset(n_train: int = 120, n_test: int = 40, seed: int = 0) -> dict[str, bytes]:
    """The four IDX files of a small random MNIST-format data set, by stored file name."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes((np.arange(n_train) + seed) % 10),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes((np.arange(n_test) + seed) % 10),
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fake_info(files: dict[str, bytes], *, name: str = "fake", gz_only: bool = False,
              mirrors: tuple[str, ...] = ()) -> DatasetInfo:
    """A registry entry for ``files``: MD5s of the raw bytes, or (gz_only) of the .gz as written."""
    def spec(fname: str) -> IdxFile:
        if gz_only:
            return IdxFile(fname, gz_md5=md5(gzip.compress(files[fname], mtime=0)))
        return IdxFile(fname, md5=md5(files[fname]))

    return replace(MNIST, name=name, title=f"{name} test data", mirrors=mirrors,
                   train_images=spec("train-images-idx3-ubyte"), train_labels=spec("train-labels-idx1-ubyte"),
                   test_images=spec("t10k-images-idx3-ubyte"), test_labels=spec("t10k-labels-idx1-ubyte"))


def write_mirror(directory: Path, files: dict[str, bytes], gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        if gz:
            (directory / f"{fname}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (directory / fname).write_bytes(data)
    return directory


@pytest.fixture
def fake_files() -> dict[str, bytes]:
    return make_fake_dataset()


IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(message: str) -> None:
    """A test's requirement is not installed: skip it here, fail it under CI=true."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _real_mirror() -> Path | None:
    configured = os.environ.get("MNISTCTL_TEST_MIRROR")
    path = Path(configured) if configured else REPO.parent / "shared" / "data" / "mnist"
    if all((path / f"{f.name}.gz").is_file() or (path / f.name).is_file() for f in MNIST.files):
        return path
    return None


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    """The directory of the real MNIST files (the offline mirror)."""
    path = _real_mirror()
    if path is None:
        missing("real MNIST not found: set MNISTCTL_TEST_MIRROR or put the files in ../shared/data/mnist")
    return path


@pytest.fixture(scope="session")
def mnist_data_dir(mnist_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the real MNIST, fetched by the real download code path."""
    from mnistctl.data.download import download
    from mnistctl.datasets import dataset_dir

    data_dir = tmp_path_factory.mktemp("data")
    download(MNIST, dataset_dir(MNIST, data_dir), [str(mnist_mirror)])
    return data_dir


@pytest.fixture
def fake_data_dir(tmp_path) -> Path:
    """A data directory whose "mnist" is 600 random training and 100 test images."""
    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    for name, data in make_fake_dataset(n_train=600, n_test=100).items():
        (d / name).write_bytes(data)
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny trained run (nf=4, one epoch on 600 made-up images), shared by the whole pytest run
    (each xdist worker trains it once): (the run, its data directory)."""
    import mnistctl

    root = tmp_path_factory.mktemp("tiny")
    d = root / "data" / "mnist"
    d.mkdir(parents=True)
    for name, data in make_fake_dataset(n_train=600, n_test=100).items():
        (d / name).write_bytes(data)
    run = mnistctl.train(run_dir=root / "run", data_dir=root / "data", nf=4, epochs=1, batch_size=100, seed=3,
                         augment=False)
    return run, root / "data"


def make_checkpoint(nf: int = 4, resumable: bool = True, seed: int = 0):
    """A real checkpoint of a freshly initialised network (no training needed)."""
    import torch

    from mnistctl.checkpoint import Checkpoint, TrainingState
    from mnistctl.config import DataConfig, ModelConfig, TrainConfig
    from mnistctl.model import Net
    from mnistctl.runfiles import Best, EpochRecord
    from mnistctl.training import loop as engine

    torch.manual_seed(seed)
    cfg = ModelConfig(nf=nf)
    model = Net(cfg)
    training = None
    if resumable:
        opt = engine.make_optimizer(model, TrainConfig())
        sched = engine.make_scheduler(opt, TrainConfig(), 10)
        training = TrainingState(opt.state_dict(), sched.state_dict(), 3,
                                 {"loss_sum": 1.5, "correct": 2, "seen": 12, "seconds": 0.1})
    history = [EpochRecord(1, 0.5, 0.8, 0.4, 0.85, 0.01, 2.0, 100.0)]
    return Checkpoint(cfg, DataConfig(), TrainConfig(epochs=3), model.state_dict(), [str(i) for i in range(10)],
                      "mnist", epoch=1, history=history, best=Best(1, 0.85, 0.4), training=training)


class Server:
    """``mnistctl serve`` running in a child process on a free loopback port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        import subprocess
        import sys
        import time
        import urllib.request

        for module in ("fastapi", "uvicorn", "multipart"):
            if importlib.util.find_spec(module) is None:
                missing(f"{module} is not installed: pip install -e '.[serve]'")
        import tempfile

        self.stderr = tempfile.TemporaryFile("w+")  # not a pipe: a chatty server cannot block on it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mnistctl", "serve", "--port", "0", "--no-access-log", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, env={**os.environ, **(env or {})})
        self.url = ""
        for line in self.process.stdout:  # the URL is printed once the socket listens
            if line.startswith("Serving at "):
                self.url = line.split()[2]
                break
        if not self.url:
            self.process.kill()
            raise RuntimeError(f"mnistctl serve did not start: {self.errors()}")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> tuple[int, str]:
        """Ctrl-C the server; its exit code and what it wrote on stderr."""
        import signal

        self.process.send_signal(signal.SIGINT)
        try:
            self.process.communicate(timeout=20)
        except Exception:
            self.process.kill()
            raise
        return self.process.returncode, self.errors()


@pytest.fixture(scope="session")
def server() -> Server:
    """One server with the built-in model for the whole session."""
    srv = Server()
    yield srv
    if srv.alive:
        srv.stop()
