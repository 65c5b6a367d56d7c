"""The fault suite: every command against bad inputs and bad outputs, fuzzed readers, mirrors that
misbehave, disks that fill up, and processes killed or signalled at random moments.

The guarantee under test: a user error gives a non-zero exit, one line on stderr and no traceback,
and nothing already saved is lost. A new command joins the matrix by being listed once in
``READERS`` (a file it reads) and ``WRITERS`` (a file or directory it writes).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import http.server
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO, make_checkpoint, make_fake_dataset
from mnistctl import checkpoint, fsutil
from mnistctl.cli.commands import app
from mnistctl.data.download import Pace, download, md5_of_file
from mnistctl.data.idx import read_idx
from mnistctl.errors import DataError, DownloadError, WriteError
from mnistctl.images.prepare import ImageError, prepare
from mnistctl.runfiles import read_steps

runner = CliRunner()
PNG = REPO / "assets" / "digit-4-paint.png"


class Hung(BaseException):
    """Not an Exception: no handler in mnistctl can mistake it for an error of its own."""


@pytest.fixture(autouse=True)
def _bounded():
    """A FIFO that is opened for reading blocks forever: fail the test instead of hanging CI."""
    def hung(signum, frame):  # noqa: ARG001
        raise Hung("the command blocked (opened a FIFO? waited on the network?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _one_clear_line(result, *words: str) -> None:
    """Exit code 1 (or 2 for a usage error), one line on stderr and no traceback."""
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 or result.exit_code == 2, result.stderr
    text = " ".join(result.output.split())  # the words may be in the output (predict's table) or the error
    for word in words:
        assert word in text, (word, result.stderr)


# --- every command x every bad input file ---------------------------------------------------------

@pytest.fixture
def good_files(tmp_path, fake_data_dir) -> dict[str, Path]:
    ckpt = make_checkpoint().save(tmp_path / "good.pt")
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"run": "r", "history": [h.to_dict() for h in checkpoint.load(ckpt).history]}))
    return {"checkpoint": ckpt, "image": PNG, "history": history, "data": fake_data_dir,
            "onnx": REPO / "mnistctl" / "pretrained" / "mnist-best.onnx"}


# command -> (its arguments with {path} for the file it reads, the kind of file that is)
READERS = {
    "evaluate": (["evaluate", "--checkpoint", "{path}", "--data-dir", "{data}"], "checkpoint"),
    "predict": (["predict", "{path}"], "image"),
    "predict --checkpoint": (["predict", "--checkpoint", "{path}", str(PNG)], "checkpoint"),
    "predict --checkpoint model.onnx": (["predict", "--checkpoint", "{path}", str(PNG)], "onnx"),
    "export": (["export", "{path}", "-o", "{tmp}/model.onnx", "--data-dir", "{data}"], "checkpoint"),
    "plot": (["plot", "{path}", "-o", "{tmp}/plot.png"], "history"),
    "train --resume": (["train", "--resume", "{path}", "--data-dir", "{data}"], "checkpoint"),
    "serve": (["serve", "--checkpoint", "{path}", "--port", "0"], "checkpoint"),
}
BAD_INPUTS = ("missing", "directory", "fifo", "empty", "random bytes", "truncated")


def _bad_input(kind: str, good: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"bad{good.suffix}"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(3000))
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_every_command_refuses_every_bad_input_in_one_line(command, kind, tmp_path, good_files):
    args, what = READERS[command]
    (tmp_path / "in").mkdir()
    bad = _bad_input(kind, good_files[what], tmp_path / "in")
    argv = [a.format(path=bad, data=good_files["data"], tmp=tmp_path) for a in args]
    result = runner.invoke(app, argv)
    _one_clear_line(result, str(bad.name))
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "plot.png").exists()


# every command that loads a checkpoint x every crafted checkpoint (test_checkpoint's set: huge sizes,
# wrong types, mismatched shapes, extra and missing keys, future versions, a malicious pickle...)
CHECKPOINT_READERS = [name for name, (_, what) in READERS.items() if what == "checkpoint"]


@pytest.mark.parametrize("command", CHECKPOINT_READERS)
def test_every_command_refuses_every_crafted_checkpoint(command, tmp_path, good_files):
    from test_checkpoint import _bad_checkpoints, _Payload

    args, _ = READERS[command]
    crafted = _bad_checkpoints(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"format": "mnistctl-checkpoint", "payload": _Payload(marker)}, tmp_path / "evil.pt")
    crafted["malicious pickle"] = (tmp_path / "evil.pt", "refused")
    for kind, (path, message) in crafted.items():
        result = runner.invoke(app, [a.format(path=path, data=good_files["data"], tmp=tmp_path) for a in args])
        try:
            _one_clear_line(result, message)
        except AssertionError as exc:
            raise AssertionError(f"{command}, {kind}: {exc}") from None
    assert not marker.exists()


def test_an_onnx_model_that_reads_other_files_is_refused(tmp_path):
    import onnx

    model = onnx.load(str(REPO / "mnistctl" / "pretrained" / "mnist-best.onnx"))
    onnx.save_model(model, str(tmp_path / "model.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    result = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "model.onnx"), str(PNG)])
    _one_clear_line(result, "keeps tensors in other files")
    from mnistctl.inference.onnx_format import check_self_contained, pretrained_onnx_path

    check_self_contained(pretrained_onnx_path(), "built-in")  # why load_classifier may skip the check for it


def test_evaluate_stays_readable_in_a_20_column_terminal(tmp_path, good_files):
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(good_files["checkpoint"]), "--data-dir",
                                 str(good_files["data"])], env={"COLUMNS": "20"})
    assert result.exit_code == 0, result.output
    tables = result.stdout.split("\n", 1)[1]  # after the summary line, which wraps as prose does
    assert "…" not in tables and all(len(line) <= 20 for line in tables.splitlines())
    assert "Per class" in tables and ("Most confused" in tables or "No confusions" in tables)


# --- every command x every bad output -------------------------------------------------------------

# command -> (its arguments with {out}, what {out} is: a file name (its extension) or "" for a directory,
# whether it is an image)
WRITERS = {
    "samples": (["samples", "-o", "{out}", "--data-dir", "{data}"], ".png", True),
    "plot": (["plot", "{history}", "-o", "{out}"], ".png", True),
    "export": (["export", "{checkpoint}", "-o", "{out}", "--data-dir", "{data}"], ".onnx", False),
    "evaluate --plots": (["evaluate", "--checkpoint", "{checkpoint}", "--plots", "{out}", "--data-dir", "{data}"],
                         "", False),
    "predict --save-inputs": (["predict", str(PNG), "--save-inputs", "{out}"], "", False),
    "train --run-dir": (["train", "--run-dir", "{out}", "--data-dir", "{data}", "--epochs", "1", "--nf", "4"],
                        "", False),
    "download --data-dir": (["download", "--data-dir", "{out}", "--mirror", "{mirror}"], "", False),
}


@pytest.fixture
def full_disk(tmp_path, monkeypatch) -> Iterator[Path]:
    """A directory on a full file system: a 64 kB tmpfs when we may mount one (root), else a
    directory where every atomic write fails with ENOSPC."""
    mount = tmp_path / "full"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    if mounted:
        (mount / "filler").write_bytes(b"\0" * (64 * 1024 - 4096))  # leave one page: the first write fails
        with contextlib.suppress(OSError):
            (mount / "filler2").write_bytes(b"\0" * 8192)
    else:
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            if str(dst).startswith(str(mount)):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_replace(src, dst, *a, **kw)

        monkeypatch.setattr(fsutil.os, "replace", replace)
    try:
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)


def _bad_output(kind: str, suffix: str, tmp_path: Path, full: Path) -> tuple[Path, str]:
    """(the output path, a word the error must contain)."""
    blocker = tmp_path / "afile"
    blocker.write_text("I am a file")
    name = f"out{suffix}" if suffix else "outdir"
    return {
        "file in the way": (blocker / name, "is a file, not a directory"),
        "full disk": (full / name, "no space left on device"),
        "directory given for a file": (tmp_path, "directory"),
        "unknown image type": (tmp_path / "out.xyz", ".png"),
    }[kind]


def _applies(command: str, kind: str) -> bool:
    _, suffix, image = WRITERS[command]
    return not (kind == "directory given for a file" and not suffix or kind == "unknown image type" and not image)


@pytest.mark.parametrize("command,kind", [
    (command, kind) for command in sorted(WRITERS)
    for kind in ("file in the way", "full disk", "directory given for a file", "unknown image type")
    if _applies(command, kind)])
@pytest.mark.slow
def test_every_command_refuses_every_bad_output_in_one_line(command, kind, tmp_path, good_files, full_disk,
                                                            fake_files):
    args, suffix, image = WRITERS[command]
    out, word = _bad_output(kind, suffix, tmp_path, full_disk)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in fake_files.items():
        (mirror / name).write_bytes(data)
    argv = [a.format(out=out, mirror=mirror, **{k: v for k, v in good_files.items()}) for a in args]
    if command == "download --data-dir":
        import mnistctl.datasets as datasets

        with pytest.MonkeyPatch.context() as mp:  # the made-up files' checksums
            from conftest import fake_info

            mp.setitem(datasets.REGISTRY, "mnist", fake_info(fake_files, name="mnist"))
            result = runner.invoke(app, argv)
    else:
        result = runner.invoke(app, argv)
    _one_clear_line(result, word)
    if kind == "full disk":
        assert not [p for p in full_disk.rglob("*") if p.name.endswith(".part")]  # no temporary file left


# --- training on a disk that fills up: what was saved stays, and the message says so --------------

def test_disk_full_during_training_keeps_the_last_good_checkpoint(tmp_path, fake_data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    saves = {"n": 0}
    real_replace = os.replace

    def replace(src, dst, *a, **kw):  # the third checkpoint write (epoch 2's last.pt) finds the disk full
        if str(dst).endswith(".pt"):
            saves["n"] += 1
            if saves["n"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(fsutil.os, "replace", replace)
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--data-dir", str(fake_data_dir),
                                 "--epochs", "3", "--nf", "4"])
    _one_clear_line(result, "no space left on device while writing", "last.pt still holds epoch 1")
    assert checkpoint.load(run_dir / "last.pt").epoch == 1 and checkpoint.load(run_dir / "best.pt").epoch == 1
    assert not list(run_dir.glob(".*.part"))
    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir / "last.pt"), "--data-dir", str(fake_data_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint.load(run_dir / "last.pt").epoch == 3


def test_a_real_full_file_system_gives_the_os_reason(tmp_path, full_disk):
    with pytest.raises(WriteError, match="no space left on device while writing"):
        make_checkpoint(nf=16).save(full_disk / "x.pt")
    assert not [p for p in full_disk.iterdir() if p.name.startswith(".x.pt")]


def test_a_checkpoint_whose_training_state_does_not_fit_cannot_be_resumed(tmp_path, fake_data_dir):
    good = make_checkpoint().save(tmp_path / "good.pt")
    payload = torch.load(good, weights_only=True)
    payload["training"]["optimizer"]["param_groups"][0]["params"] = [0]  # one parameter instead of all
    torch.save(payload, tmp_path / "bad.pt")
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "bad.pt"), "--data-dir", str(fake_data_dir)])
    _one_clear_line(result, "cannot be resumed")


def test_a_bug_keeps_its_traceback_and_asks_to_be_reported(tmp_path):
    script = ("import mnistctl.cli.commands as c, mnistctl.plotting as p\n"
              "def boom(*a, **k): raise ZeroDivisionError('a bug')\n"
              "p.plot_runs = boom\n"
              "import sys; sys.argv = ['mnistctl', 'plot', 'x', '-o', 'y.png']; c.main()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 70
    assert "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "This is a bug in mnistctl" in done.stderr and "report it" in done.stderr


# --- fuzzing the two readers of outside data ------------------------------------------------------

def _idx(array: np.ndarray) -> bytes:
    from conftest import idx_bytes

    return idx_bytes(array)


GOOD_IDX = _idx(np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda cut: GOOD_IDX[:cut], st.integers(0, len(GOOD_IDX))),
    st.builds(lambda pos, value: GOOD_IDX[:pos] + bytes([value]) + GOOD_IDX[pos + 1:],
              st.integers(0, 19), st.integers(0, 255)),
    st.builds(lambda extra: GOOD_IDX + extra, st.binary(min_size=1, max_size=50)),
))
def test_idx_reader_never_crashes_and_never_accepts_a_malformed_file(tmp_path_factory, data):
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    path = tmp_path_factory.mktemp("idx") / "file"
    path.write_bytes(data)
    try:
        array = read_idx(path, 3)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    # accepted: the header describes exactly these bytes, and torchvision reads the same
    header = 16
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
    assert data[:4] == b"\0\0\x08\x03" and dims[1:] == (28, 28) and len(data) == header + np.prod(dims)
    assert array.shape == dims and array.tobytes() == data[header:]
    theirs = read_sn3_pascalvincent_tensor(str(path), strict=False)
    assert np.array_equal(theirs.numpy(), array)


def _image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.open(PNG).convert("L").save(out, format=fmt)
    return out.getvalue()


SAMPLES = [_image_bytes(f) for f in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda i, cut: SAMPLES[i][:cut], st.integers(0, len(SAMPLES) - 1), st.integers(0, 4000)),
    st.builds(lambda i, pos, junk: SAMPLES[i][:pos] + junk + SAMPLES[i][pos + len(junk):],
              st.integers(0, len(SAMPLES) - 1), st.integers(0, 3000), st.binary(min_size=1, max_size=16)),
))
@example(data=SAMPLES[4][:118] + b"\x01" + SAMPLES[4][119:])  # a TIFF tag mangled: Pillow raised TypeError
def test_image_reader_never_crashes(data):
    try:
        prepared = prepare(data)
    except ImageError as exc:
        assert str(exc)
        return
    assert prepared.image.shape == (28, 28) and prepared.image.dtype == np.uint8


# --- mirrors that misbehave: each abandoned in bounded time for the next one ----------------------

class _Faulty(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def log_message(self, *args) -> None:
        pass

    def _send(self, body: bytes, length: int | None = None, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        fault, name = self.path.strip("/").split("/", 1)
        data = gzip.compress(self.files[name.removesuffix(".gz")], mtime=0) if name.endswith(".gz") else None
        if data is None:
            self.send_error(404)
            return
        try:
            if fault == "404":
                self.send_error(404)
            elif fault == "500":
                self.send_error(500)
            elif fault == "redirect-loop":
                self.send_response(302)
                self.send_header("Location", self.path)
                self.end_headers()
            elif fault == "html":
                self._send(b"<html><body>Sorry, this mirror has moved</body></html>")
            elif fault == "truncated":
                self._send(data[: len(data) // 2], length=len(data))
            elif fault == "wrong-length":
                self._send(data, length=len(data) + 100)
            elif fault == "corrupt":
                mid = len(data) // 2
                self._send(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])
            elif fault == "stall":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:10])
                self.wfile.flush()
                time.sleep(6)
            elif fault == "drip":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for b in data[:60]:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif fault == "endless":
                self.send_response(200)
                self.end_headers()  # no length: the body goes on until we hang up
                raw = self.files[name.removesuffix(".gz")]
                self.wfile.write(raw)
                while True:
                    self.wfile.write(b"\0" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass


FAULTS = ["404", "500", "redirect-loop", "html", "truncated", "wrong-length", "corrupt", "stall", "drip", "endless"]


@pytest.fixture(scope="module")
def faulty_server():
    files = make_fake_dataset()
    handler = type("Handler", (_Faulty,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_mirror_is_abandoned_for_the_next_in_bounded_time(fault, faulty_server, tmp_path):
    from conftest import fake_info, write_mirror

    url, files = faulty_server
    info = fake_info(files)
    good = write_mirror(tmp_path / "good", files)
    started = time.monotonic()
    results = download(info, tmp_path / "data", [f"{url}/{fault}/", str(good)],
                       pace=Pace(timeout=1, deadline=4, min_rate=2000, grace=1))
    assert time.monotonic() - started < 20
    assert {r.source for r in results} == {str(good)}
    for spec in info.files:
        assert md5_of_file(tmp_path / "data" / spec.name) == spec.md5
    assert not list((tmp_path / "data").glob(".*.part"))


def test_the_reason_a_slow_mirror_was_left_is_reported(faulty_server, tmp_path):
    from conftest import fake_info

    url, files = faulty_server
    with pytest.raises(DownloadError, match="too slow"):
        download(fake_info(files), tmp_path, [f"{url}/drip/"],
                 pace=Pace(timeout=2, deadline=30, min_rate=2000, grace=1))


def test_stale_temporary_files_of_killed_runs_are_removed(tmp_path, fake_files):
    from conftest import fake_info, write_mirror

    data = tmp_path / "data"
    data.mkdir()
    stale, fresh = data / ".train-images-idx3-ubyte.abc.part", data / ".t10k-images-idx3-ubyte.def.part"
    for p in (stale, fresh):
        p.write_bytes(b"half a download")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    download(fake_info(fake_files), data, [str(write_mirror(tmp_path / "m", fake_files))])
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a download running now


# --- processes killed or signalled at random moments ---------------------------------------------

def _train_cmd(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mnistctl", "train", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--nf", "4", "--batch-size", "32", *extra]


@pytest.fixture(scope="module")
def bigger_fake_data(tmp_path_factory) -> Path:
    """6,000 made-up training images: epochs long enough to be interrupted in."""
    root = tmp_path_factory.mktemp("data")
    (root / "mnist").mkdir()
    for name, data in make_fake_dataset(n_train=6000, n_test=100).items():
        (root / "mnist" / name).write_bytes(data)
    return root


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_an_unloadable_file(bigger_fake_data, tmp_path):
    rng = random.Random(7)
    for n in range(3):
        run_dir = tmp_path / f"run{n}"
        process = subprocess.Popen(_train_cmd(bigger_fake_data, run_dir, "--epochs", "30"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(run_dir / "last.pt", process)  # started training: now kill it anywhere
        time.sleep(rng.uniform(0.0, 1.5))
        process.kill()
        process.wait()
        for path in run_dir.iterdir():
            if path.name.startswith("."):
                continue  # a temporary file: never under a final name, removed by the next run
            if path.suffix == ".pt":
                assert checkpoint.load(path).epoch >= 1
            elif path.name == "history.json":
                assert json.loads(path.read_text())["history"]
            elif path.name == "config.json":
                assert json.loads(path.read_text())["train"]["epochs"] == 30
            elif path.name == "metrics.csv":
                assert read_steps(path.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_resumable_state_and_the_resumed_run_ends_as_an_uninterrupted_one(
        signum, bigger_fake_data, tmp_path):
    straight = subprocess.run(_train_cmd(bigger_fake_data, tmp_path / "straight", "--epochs", "3"),
                              capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "stopped"
    process = subprocess.Popen(_train_cmd(bigger_fake_data, run_dir, "--epochs", "3"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run_dir / "last.pt", process)  # epoch 1 is saved: signal during epoch 2
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert "Resume with: mnistctl train --resume" in err and "Traceback" not in err
    stopped = checkpoint.load(run_dir / "last.pt")
    assert stopped.resumable and stopped.epoch < 3
    resumed = subprocess.run(_train_cmd(bigger_fake_data, run_dir, "--resume", str(run_dir / "last.pt")),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = checkpoint.load(tmp_path / "straight" / "last.pt"), checkpoint.load(run_dir / "last.pt")
    assert a.epoch == b.epoch == 3
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_sigterm_outside_training_unwinds_like_ctrl_c(tmp_path):
    """download waiting on a mirror that never answers gets SIGTERM: exit 143, no temporary file."""
    import socket

    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        process = subprocess.Popen([sys.executable, "-m", "mnistctl", "download", "--data-dir", str(tmp_path / "d"),
                                    "--mirror", f"http://127.0.0.1:{silent.getsockname()[1]}/", "--timeout", "60"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(tmp_path / "d" / "mnist", process)  # it has started: the data directory exists
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "Terminated" in err
    assert not list((tmp_path / "d").rglob(".*.part"))
