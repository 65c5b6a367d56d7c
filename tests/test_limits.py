"""Reliability round 3: no picture, file or client takes the CPU, memory or a program hostage, and
nothing leaves the machine (issue #33). Each case is one a hostile or careless user tried."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, missing
from mnistctl.errors import ImageError
from mnistctl.images.prepare import prepare
from mnistctl.images.read import read_image

PHOTO = REPO / "assets" / "digit-7-photo.jpg"


def _bar_png(size: int, width: int, height: int) -> bytes:
    """A white picture holding one solid black bar: a thick marker stroke."""
    a = np.full((size, size), 255, np.uint8)
    y0, x0 = (size - height) // 2, (size - width) // 2
    a[y0:y0 + height, x0:x0 + width] = 0
    out = io.BytesIO()
    Image.fromarray(a).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("size, width, height", [(600, 60, 300), (600, 300, 60), (600, 120, 400), (2000, 300, 1500)])
def test_a_thick_bar_is_prepared_in_bounded_time(size, width, height):
    """A 1.6 kB picture of one solid bar made preparation try erosion windows up to 645 px (113 s of
    CPU); a larger window is now one more 3x3 step and never wider than the picture. The bound
    here is a guard against that search coming back (10x the 2 s the issue allows), not a target."""
    data = _bar_png(size, width, height)
    start = time.process_time()
    prepared = prepare(data)
    assert time.process_time() - start < 20
    assert prepared.image.shape == (28, 28) and prepared.image.max() == 255


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 4 4 moveto 24 24 lineto stroke showpage\n"


def test_postscript_is_never_handed_to_ghostscript(tmp_path):
    """Pillow opens EPS by running Ghostscript; mnistctl lets Pillow try only its picture formats. A
    stand-in `gs` on PATH records any call: there must be none, and the file gets one clear line."""
    marker = tmp_path / "gs-was-run"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    gs.chmod(0o755)
    upload = tmp_path / "digit.png"  # named as a PNG
    upload.write_bytes(EPS)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(upload)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1 and not marker.exists()
    [line] = proc.stderr.strip().splitlines()
    assert "PostScript/EPS" in line and "Traceback" not in proc.stderr
    with pytest.raises(ImageError, match="PostScript/EPS"):
        read_image(EPS)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["PPM", "PCX", "TGA", "ICO", "SGI", "DDS"])
def test_formats_outside_the_allow_list_are_refused(fmt):
    out = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).convert("RGB").save(out, fmt)
    with pytest.raises(ImageError, match="PNG, JPEG, GIF, BMP, TIFF, WebP or HEIC"):
        read_image(out.getvalue())
    out.seek(0)
    with Image.open(out) as opened, pytest.raises(ImageError, match=f"a {fmt} picture"):
        read_image(opened)  # an already opened picture of another format too


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_the_allowed_formats_are_read(fmt):
    out = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).convert("RGB").save(out, fmt)
    assert read_image(out.getvalue()).grey.shape == (32, 32)


def test_onnx_backed_commands_write_nothing_under_home(tmp_path):
    """ONNX Runtime's telemetry wrote a device id and an event database under ~/.cache/Microsoft."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    proc = subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(PHOTO), "--json"], capture_output=True,
                          text=True, env={**env, "HOME": str(home)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"prediction": "7"' in proc.stdout
    assert [p for p in home.rglob("*")] == []


SERVE_A_WHILE = """
import subprocess, sys, time, urllib.request
srv = subprocess.Popen([sys.executable, "-m", "mnistctl", "serve", "--port", "8765", "--no-access-log"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        urllib.request.urlopen("http://127.0.0.1:8765/health", timeout=1).read()
        break
    except OSError:
        time.sleep(0.2)
photo = open(sys.argv[1], "rb").read()
for _ in range(5):
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8765/predict", data=photo, method="POST")).read()
time.sleep(8)  # ONNX Runtime's telemetry asked for its host within seconds of a session (2 queries in 13 s)
srv.send_signal(2)
srv.wait(30)
"""


@pytest.mark.slow
def test_serve_and_predict_contact_nothing(tmp_path):
    """In a network namespace whose DNS server logs every query, `serve` (answering requests for a
    while) and `predict` ask for no host at all, and write nothing under HOME."""
    if os.geteuid() != 0:
        missing("needs root: a network namespace (unshare) with a logging DNS server")
    log, home = tmp_path / "dns.log", tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    for command in ([sys.executable, "-c", SERVE_A_WHILE, str(PHOTO)],
                    [sys.executable, "-m", "mnistctl", "predict", str(PHOTO)]):
        proc = subprocess.run([sys.executable, str(Path(__file__).parent / "netns_dns.py"), str(log), "--",
                               "env", f"HOME={home}", *command], capture_output=True, text=True,
                              env={**env, "HOME": str(home)}, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
    queries = log.read_text().split()
    assert "control.query.invalid" in queries  # the logger works
    assert [q for q in queries if q != "control.query.invalid"] == []
    assert [p for p in home.rglob("*")] == []


# --- serve: who is answered, and how -------------------------------------------------------------

def _http(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
          headers: dict[str, str] | None = None):
    import http.client
    import urllib.parse

    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


SECURITY = ("content-security-policy", "x-content-type-options", "referrer-policy")


def test_only_this_machines_host_names_are_answered(server):
    """A DNS-rebinding page makes a browser send the attacker's Host to 127.0.0.1: refused."""
    port = server.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "192.168.1.20"):
        status, body, response = _http(server.url, path="/model", headers={"Host": host})
        assert status == 421 and b"Host" in body, host
        assert all(response.getheader(h) for h in SECURITY)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        assert _http(server.url, path="/model", headers={"Host": host})[0] == 200, host


def test_get_routes_answer_head_and_405s_say_what_is_allowed(server):
    for path in ("/", "/health", "/model", "/app.js"):
        status, body, response = _http(server.url, "HEAD", path)
        assert status == 200 and body == b"", path
    status, _, response = _http(server.url, "DELETE", "/predict")
    assert status == 405 and "POST" in response.getheader("allow", "")
    status, _, response = _http(server.url, "POST", "/health")
    assert status == 405 and "GET" in response.getheader("allow", "")


def test_every_response_carries_the_security_headers(server):
    for method, path in (("GET", "/health"), ("GET", "/model"), ("GET", "/"), ("GET", "/nowhere"),
                         ("POST", "/predict"), ("DELETE", "/model")):
        status, _, response = _http(server.url, method, path, body=b"" if method == "POST" else None)
        assert all(response.getheader(h) for h in SECURITY), (method, path, status)


def test_a_model_whose_outputs_are_not_numbers_gets_one_clear_error(tmp_path):
    import dataclasses
    import json

    import torch

    from conftest import Server, make_checkpoint

    ckpt = make_checkpoint(nf=4, resumable=False)
    broken = dataclasses.replace(ckpt, weights={k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                                for k, v in ckpt.weights.items()})
    path = broken.save(tmp_path / "nan.pt")
    proc = subprocess.run([sys.executable, "-m", "mnistctl", "predict", "--json", "-c", str(path), str(PHOTO)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "NaN" not in proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert "not numbers" in line
    srv = Server("--checkpoint", str(path))
    try:
        status, body, _ = _http(srv.url, "POST", "/predict", PHOTO.read_bytes())
        assert status == 500 and "not numbers" in json.loads(body)["error"]
        assert _http(srv.url, path="/health")[0] == 200  # and the server carries on
    finally:
        srv.stop()
    assert "Traceback" not in srv.errors()


@pytest.mark.parametrize("value", ["inf", "nan", "0", "1e9"])
def test_an_upload_limit_out_of_bounds_is_refused(value):
    proc = subprocess.run([sys.executable, "-m", "mnistctl", "serve", "--max-upload-mb", value], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--max-upload-mb" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_client_that_sends_no_request_is_disconnected_and_a_flood_is_turned_away(tmp_path):
    """Slowloris: connections that never send (or drip) their headers are closed after the header
    timeout; beyond the connection cap requests get a clean 503, and the server recovers."""
    import socket
    import urllib.parse

    from conftest import Server
    from mnistctl.serve.app import HEADER_TIMEOUT, MAX_CONNECTIONS

    srv = Server("--workers", "1")  # the cap is a process's: several workers share out the connections
    try:
        host, port = urllib.parse.urlsplit(srv.url).hostname, urllib.parse.urlsplit(srv.url).port
        idle = [socket.create_connection((host, port)) for _ in range(MAX_CONNECTIONS + 20)]
        drip = socket.create_connection((host, port))
        drip.sendall(b"GET /health HTTP/1.1\r\n")
        status, _, _ = _http(srv.url, path="/health")
        assert status == 503  # over the cap: a clean refusal, not a hang
        start = time.monotonic()
        for s in [*idle[:3], drip]:
            s.settimeout(HEADER_TIMEOUT + 10)
            assert s.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < HEADER_TIMEOUT + 8
        for s in [*idle, drip]:
            s.close()
        deadline = time.monotonic() + 10
        while _http(srv.url, path="/health")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        srv.stop()
    assert "Traceback" not in srv.errors()


# --- files, options and readers with limits ------------------------------------------------------

def _one_line(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    [line] = result.stderr.strip().splitlines()
    return line


def test_config_files_that_block_exhaust_or_nest_are_refused_up_front(tmp_path):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    runner = CliRunner()
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)  # opening it for reading would block forever
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    big = tmp_path / "big.json"
    big.write_text('{"nf": 4, "pad": "' + "x" * 2_000_000 + '"}')
    cases = {fifo: "not a regular file", Path("/dev/zero"): "not a regular file", nested: "nests too deeply",
             big: "too large", tmp_path / "missing.json": "does not exist"}
    for path, words in cases.items():
        line = _one_line(runner.invoke(app, ["train", "--config", str(path), "--print-config"]))
        assert words in line, (path, line)


def test_standard_input_is_read_to_a_limit():
    proc = subprocess.run(f"head -c 150000000 /dev/zero | {sys.executable} -m mnistctl predict -", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "more than 100,000,000 bytes" in proc.stderr


@pytest.mark.parametrize("threads, ok", [(10_000, False), (0, False), (1, True)])
def test_threads_are_bounded_by_the_machine(threads, ok):
    from mnistctl import devices
    from mnistctl.errors import ConfigError

    if ok:
        assert devices.set_threads(threads) is None
        return
    with pytest.raises(ConfigError) as err:
        devices.set_threads(threads)
    assert err.value.setting == "threads" and "per core" in str(err.value)


def test_the_cli_names_the_threads_option():
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    line = _one_line(CliRunner().invoke(app, ["train", "--threads", "10000", "--print-config"]))
    assert line.startswith("Error: --threads must be from 1 to")


def test_more_threads_than_cores_is_a_warning():
    from mnistctl import devices

    cores = os.cpu_count() or 1
    before = __import__("torch").get_num_threads()
    try:
        assert "slower" in devices.set_threads(cores + 1)
    finally:
        devices.set_threads(before)


def test_an_epoch_fraction_smaller_than_one_batch_is_refused(tmp_path, fake_data_dir):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    result = CliRunner().invoke(app, ["train", "--batch-size", "100000", "--epoch-fraction", "0.05", "--run-dir",
                                      str(tmp_path / "run"), "--data-dir", str(fake_data_dir)])
    line = _one_line(result)
    assert line.startswith("Error: --epoch-fraction 0.05 of") and "fewer than one batch" in line
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("value", ["0", "-5", "1000000"])
def test_evaluate_and_predict_batch_sizes_are_bounded(value, tmp_path):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    runner = CliRunner()
    for args in (["evaluate", "--batch-size", value, "--data-dir", str(tmp_path)],
                 ["predict", str(PHOTO), "--batch-size", value]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and "Traceback" not in result.output, (args, result.output)
        assert "--batch-size" in result.output


# --- models checked before use, runs that cannot collide ----------------------------------------

def _shipped_onnx():
    import onnx

    from mnistctl.inference.onnx_format import pretrained_onnx_path

    return onnx.load(str(pretrained_onnx_path()))


def test_an_onnx_model_taking_floats_is_refused_in_one_line(tmp_path):
    import onnx

    model = _shipped_onnx()
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    path = tmp_path / "floats.onnx"
    onnx.save(model, str(path))
    proc = subprocess.run([sys.executable, "-m", "mnistctl", "predict", "-c", str(path), str(PHOTO)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "uint8 pixels" in line


def test_an_onnx_model_whose_outputs_disagree_with_its_classes_is_refused(tmp_path):
    """A model giving 5 numbers per image whose metadata names 10 classes (predict read 5
    probabilities silently)."""
    import dataclasses
    import json

    import onnx

    import mnistctl
    from conftest import make_checkpoint
    from mnistctl.config import ModelConfig
    from mnistctl.errors import CheckpointError
    from mnistctl.inference.classifier import OnnxClassifier
    from mnistctl.model import Net

    ckpt = make_checkpoint(nf=4, resumable=False)
    five = ModelConfig(nf=4, num_classes=5)
    small = dataclasses.replace(ckpt, model_config=five, weights=Net(five).state_dict(), classes=list("abcde"))
    path = mnistctl.export(small.save(tmp_path / "five.pt"), tmp_path / "five.onnx", data_dir=tmp_path).path
    model = onnx.load(str(path))
    props = {p.key: p for p in model.metadata_props}
    props["classes"].value = json.dumps([str(i) for i in range(10)])
    props["model_config"].value = json.dumps({**json.loads(props["model_config"].value), "num_classes": 10})
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match="5 outputs per image, but its metadata names 10 classes"):
        OnnxClassifier(path)


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path, fake_data_dir):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app
    from mnistctl.fsutil import exclusive

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with exclusive(run_dir, "a test"):  # as a first run does while it trains
        result = CliRunner().invoke(app, ["train", "--nf", "4", "--epochs", "1", "--run-dir", str(run_dir),
                                          "--data-dir", str(fake_data_dir)])
    line = _one_line(result)
    assert "in use by another training run" in line and line.startswith("Error: --run-dir ")
    assert not (run_dir / "last.pt").exists()


def test_a_killed_saves_temporary_file_is_removed_by_the_next_run(tmp_path, fake_data_dir):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    part = run_dir / ".last.pt.k1ll3d.part"  # as a SIGKILL during a save leaves it, moments ago
    part.write_bytes(b"half a checkpoint")
    result = CliRunner().invoke(app, ["train", "--nf", "4", "--epochs", "1", "--run-dir", str(run_dir),
                                      "--data-dir", str(fake_data_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    assert not part.exists() and (run_dir / "last.pt").exists()


def test_resuming_with_another_networks_optimizer_state_is_one_line(tmp_path, fake_data_dir):
    import dataclasses

    import torch

    from conftest import make_checkpoint
    from mnistctl.checkpoint import TrainingState

    mine, other = make_checkpoint(nf=4), make_checkpoint(nf=6)
    params = [p for p in mine.build_model().parameters()]
    state = {i: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(7), "exp_avg_sq": torch.zeros(7)}
             for i in range(len(params))}  # moments for weights of another shape
    optimizer = {**other.training.optimizer, "state": state,
                 "param_groups": [{**mine.training.optimizer["param_groups"][0], "params": list(range(len(params)))}]}
    training: TrainingState = dataclasses.replace(mine.training, optimizer=optimizer)
    path = dataclasses.replace(mine, training=training).save(tmp_path / "last.pt")
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    line = _one_line(CliRunner().invoke(app, ["train", "--resume", str(path), "--data-dir", str(fake_data_dir)]))
    assert "cannot be resumed" in line and "shape [7]" in line


# --- downloads bounded, names shown safely, directories and globs that cannot trap a walk ----------

def test_a_file_longer_than_the_data_set_has_is_cut_off_and_the_next_mirror_used(tmp_path, fake_files):
    """A mirror whose gzip announces 2^31 images (and streams zeros) filled the disk in 1.5 s; each
    file's size is now known, so it is cut off there and the good mirror is used."""
    import dataclasses
    import gzip
    import struct

    from conftest import fake_info, write_mirror
    from mnistctl.data.download import download

    info = fake_info(fake_files)
    info = dataclasses.replace(info, **{
        field: dataclasses.replace(spec, size=len(fake_files[spec.name]))
        for field, spec in zip(("train_images", "train_labels", "test_images", "test_labels"), info.files)})
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    for name, data in fake_files.items():
        header = data[:4] + struct.pack(">I", 2**31 - 1) + data[8:16 if "images" in name else 8]
        (bombs / f"{name}.gz").write_bytes(gzip.compress(header + bytes(20 * len(data)), mtime=0))
    good = write_mirror(tmp_path / "good", fake_files)
    results = download(info, tmp_path / "data", [str(bombs), str(good)])
    assert all(r.source.startswith(str(good)) for r in results)
    assert all(r.size == len(fake_files[r.name]) for r in results)


@pytest.mark.parametrize("mirror", ["http://[::1", "http://", "https://host:port/"])
def test_a_malformed_mirror_url_is_one_line(tmp_path, mirror):
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    line = _one_line(CliRunner().invoke(app, ["download", "--data-dir", str(tmp_path), "--mirror", mirror]))
    assert line.startswith("Error: --mirror ") and "URL" in line


def test_file_names_cannot_drive_the_terminal_and_csv_keeps_them_exact(tmp_path):
    evil = tmp_path / "seven\x1b[2J\x1b]0;owned\x07.jpg"
    evil.write_bytes(PHOTO.read_bytes())
    table = subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(evil)], capture_output=True,
                           timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert table.returncode == 0 and b"\x1b" not in table.stdout and b"\\x1b[2J" in table.stdout
    csv = subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(evil), "--csv"], capture_output=True,
                         timeout=120)
    assert str(evil).encode() in csv.stdout  # the exact name, for a program that opens it
    missing_one = subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(tmp_path / "gone\x1b[31m.png")],
                                 capture_output=True, timeout=120)
    assert missing_one.returncode == 1 and b"\x1b" not in missing_one.stderr


def test_a_symlink_loop_is_that_entrys_error_and_a_recursive_glob_does_not_follow_links(tmp_path):
    from mnistctl.inference.files import expand_inputs

    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("one.png", "a/two.png", "a/b/three.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path)  # a link back to the top: a walk that follows it never ends
    (tmp_path / "self.png").symlink_to(tmp_path / "self.png")
    entries = dict(expand_inputs([str(tmp_path)]))
    assert entries[str(tmp_path / "one.png")] is None
    assert "symbolic links" in entries[str(tmp_path / "self.png")]
    found = dict(expand_inputs([str(tmp_path / "**" / "*.png")]))
    assert sorted(found) == sorted(str(tmp_path / n) for n in ("one.png", "a/two.png", "a/b/three.png"))
    assert dict(expand_inputs([str(tmp_path / "a" / "*.png")])) == {str(tmp_path / "a" / "two.png"): None}


@pytest.mark.parametrize("kind", ["sparse", "meta"])
def test_a_checkpoint_with_sparse_or_meta_weights_is_one_line(tmp_path, kind):
    import torch

    from conftest import make_checkpoint

    ckpt = make_checkpoint(nf=4, resumable=False)
    key = "classifier.1.weight"
    odd = ckpt.weights[key].to_sparse() if kind == "sparse" else ckpt.weights[key].to("meta")
    path = tmp_path / "odd.pt"
    payload = torch.load(ckpt.save(tmp_path / "ok.pt"), weights_only=True)
    payload["weights"] = {**payload["weights"], key: odd}
    torch.save(payload, path)
    for args in (["predict", "-c", str(path), str(PHOTO)], ["export", str(path), "-o", str(tmp_path / "m.onnx")]):
        proc = subprocess.run([sys.executable, "-m", "mnistctl", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert "not a dense tensor" in line


def test_export_refuses_a_read_only_output_and_nan_weights(tmp_path):
    import dataclasses

    import torch

    from conftest import make_checkpoint

    good = make_checkpoint(nf=4, resumable=False).save(tmp_path / "good.pt")
    locked = tmp_path / "model.pt"
    locked.write_bytes(b"someone else's model")
    locked.chmod(0o444)
    ckpt = make_checkpoint(nf=4, resumable=False)
    nan = dataclasses.replace(ckpt, weights={**ckpt.weights, "classifier.6.bias": torch.full((10,), float("nan"))})
    bad = nan.save(tmp_path / "nan.pt")
    cases = [([str(good), "-o", str(locked)], "read-only"),
             ([str(bad), "-o", str(tmp_path / "nan.onnx")], "not numbers")]
    for args, words in cases:
        proc = subprocess.run([sys.executable, "-m", "mnistctl", "export", *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert words in line, line
    assert locked.read_bytes() == b"someone else's model"
    assert not (tmp_path / "nan.onnx").exists()


SLOW_PICTURES = """
import time
import mnistctl.inference.files as files
real = files.predict_image
def slow(*args, **kwargs):
    time.sleep(float(__import__("os").environ["SLOW_PICTURE_S"]))
    return real(*args, **kwargs)
files.predict_image = slow
import mnistctl.serve.app as app
app.predict_image = slow
app.REQUEST_BUDGET = float(__import__("os").environ.get("BUDGET_S", app.REQUEST_BUDGET))
"""


@pytest.mark.slow
def test_a_picture_over_the_time_budget_gets_503_and_sigterm_ends_the_server_in_flight(tmp_path):
    """A request holds a worker while its picture is read: beyond the budget the client gets 503;
    SIGTERM with a request in flight printed "Stopped." and left the process running 25 s more."""
    import signal
    import threading

    from conftest import Server

    (tmp_path / "sitecustomize.py").write_text(SLOW_PICTURES)  # every picture takes 30 s (a stand-in)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "SLOW_PICTURE_S": "30",
           "BUDGET_S": "2"}
    srv = Server(env=env)
    try:
        start = time.monotonic()
        status, body, _ = _http(srv.url, "POST", "/predict", PHOTO.read_bytes())
        assert status == 503 and b"longer than 2 s" in body and time.monotonic() - start < 10
        threading.Thread(target=_http, args=(srv.url, "POST", "/predict", PHOTO.read_bytes()), daemon=True).start()
        time.sleep(1)  # a picture now in flight, for 30 s
        start = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        srv.process.wait(timeout=25)
        assert time.monotonic() - start < 15
    finally:
        if srv.process.poll() is None:
            srv.process.kill()
    assert "Traceback" not in srv.errors()


@pytest.mark.slow
def test_processes_that_cannot_meet_say_so_without_cpp_stack_frames(tmp_path, fake_data_dir):
    """Two processes of one run given different MASTER_PORTs never meet: each stops within the
    group timeout with one clear line, and c10d's retries and C++ stack frames stay off stderr."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    procs = [subprocess.Popen([sys.executable, "-m", "mnistctl", "train", "--nf", "4", "--epochs", "1", "--device",
                               "cpu", "--data-dir", str(fake_data_dir), "--run-dir", str(tmp_path / f"run{rank}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(ports[rank]),
                                   "MNISTCTL_DIST_TIMEOUT": "5"})
             for rank in (0, 1)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert "frame #" not in stderr and "Traceback" not in stderr, stderr[-3000:]
        assert len(stderr.strip().splitlines()) <= 2, stderr[-3000:]
