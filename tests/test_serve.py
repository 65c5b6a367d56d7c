"""``mnistctl serve`` over real HTTP: a server in a child process on a loopback port (``server``
fixture, conftest), the same answers as ``mnistctl predict``, every bad input refused with a 4xx
JSON error while the server stays up, and a concurrent load with zero failures."""

from __future__ import annotations

import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, Server
from mnistctl.data.idx import load_file_pair
from people import make_corpus

PHOTO = REPO / "assets" / "digit-7-photo.jpg"
PAINT_4 = REPO / "assets" / "digit-4-paint.png"


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict[str, str] | None = None, conn: http.client.HTTPConnection | None = None):
    """(status, JSON body or text, headers) of one request."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(data) if kind.startswith("application/json") else data.decode(), response
    finally:
        if own:
            conn.close()


def multipart(data: bytes, name: str = "digit.png", field: str = "file") -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(array: np.ndarray, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", **save)
    return out.getvalue()


def test_health_model_and_page(server):
    assert request(server.url, path="/health")[:2] == (200, {"status": "ok"})
    status, info, _ = request(server.url, path="/model")
    assert status == 200
    assert info["classes"] == [str(d) for d in range(10)] and info["dataset"] == "mnist"
    assert info["test_accuracy"] > 0.99 and info["version"]
    status, page, response = request(server.url, path="/")
    assert status == 200 and "<canvas" in page and 'src="/app.js"' in page
    assert "default-src 'self'" in response.getheader("content-security-policy")
    for asset in ("/app.js", "/style.css"):
        status, text, _ = request(server.url, path=asset)
        assert status == 200 and len(text) > 500
    assert "http" not in page.replace("http-equiv", "")  # nothing from a CDN: the page works offline


def test_raw_body_and_multipart_give_the_cli_answer(server):
    data = PHOTO.read_bytes()
    cli = json.loads(subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(PHOTO), "--json"],
                                    capture_output=True, text=True, check=True).stdout)[0]
    status, raw, _ = request(server.url, "POST", "/predict", data)
    body, headers = multipart(data, "seven.jpg")
    status2, form, _ = request(server.url, "POST", "/predict?input=true", body, headers)
    assert status == status2 == 200
    assert raw["path"] == "upload" and form["path"] == "seven.jpg"
    for key in ("prediction", "confidence", "unsure", "reasons", "top3", "probabilities", "error", "model"):
        assert raw[key] == cli[key] == form[key], key
    assert raw["prediction"] == "7" and set(raw) == set(cli)
    seen = np.array(form["input"], dtype=np.uint8)
    assert seen.shape == (28, 28) and seen.max() > 200 and seen[0].max() == 0  # a centred light digit on black


def test_a_number_reads_as_on_the_command_line_with_its_digits_boxes(server, tmp_path):
    """POST /predict answers a picture of several digits with the number and each digit's box,
    as predict --json does; numbers=never reads it as one digit (doubted), digits=N guides the split."""
    four = np.asarray(Image.open(PAINT_4).convert("L").resize((250, 250)))
    pair = np.full((300, 600), 255, np.uint8)
    pair[25:275, 20:270] = four
    pair[25:275, 320:570] = four
    (tmp_path / "44.png").write_bytes(png(pair))
    cli = json.loads(subprocess.run([sys.executable, "-m", "mnistctl", "predict", str(tmp_path / "44.png"), "--json"],
                                    capture_output=True, text=True, check=True).stdout)[0]
    status, got, _ = request(server.url, "POST", "/predict?input=true", png(pair))
    assert status == 200 and got["number"] == cli["number"] == "44" and got["prediction"] is None
    assert [d["box"] for d in got["digits"]] == [d["box"] for d in cli["digits"]]
    (a, b) = [d["box"] for d in got["digits"]]
    assert 20 <= a[0] < a[2] <= 270 and 320 <= b[0] < b[2] <= 570  # in the picture's own pixels
    assert len(got["inputs"]) == 2 and np.array(got["inputs"][1]).shape == (28, 28)
    status, one, _ = request(server.url, "POST", "/predict?numbers=never", png(pair))
    assert status == 200 and one["number"] == one["prediction"] and one["unsure"]
    status, bad, _ = request(server.url, "POST", "/predict?digits=0", png(pair))
    assert status == 422 and "digits" in bad["error"]


@pytest.mark.slow
@pytest.mark.realdata
def test_the_people_style_corpus_reads_the_same_over_http_and_on_the_command_line(server, mnist_data_dir, tmp_path):
    images, labels = load_file_pair("mnist", "test", mnist_data_dir)
    corpus = make_corpus(images[:2000:97], labels[:2000:97], tmp_path, per_style=3, seed=1)
    files = [path for items in corpus.values() for path, _ in items]
    cli = json.loads(subprocess.run([sys.executable, "-m", "mnistctl", "predict", *map(str, files), "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    assert len(cli) == len(files) >= 14 * 3
    for n, (path, expected) in enumerate(zip(files, cli)):
        data = Path(path).read_bytes()
        status, got, _ = (request(server.url, "POST", "/predict", data) if n % 2 else
                          request(server.url, "POST", "/predict", *multipart(data, Path(path).name)))
        assert status == 200, (path, got)
        assert (got["prediction"], got["unsure"], got["reasons"]) == \
            (expected["prediction"], expected["unsure"], expected["reasons"]), path
        assert got["confidence"] == pytest.approx(expected["confidence"], abs=1e-6), path


def _bomb() -> bytes:
    return png(np.zeros((8000, 8000), dtype=bool))  # 64 million pixels in a few kB


def _animated() -> bytes:
    frames = [Image.fromarray(np.full((28, 28), v, np.uint8)) for v in (0, 255)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


BAD = {
    "not an image": (b"%PDF-1.4 definitely not a picture", 422, "not an image"),
    "truncated": (PAINT_4.read_bytes()[:400], 422, "truncated"),
    "decompression bomb": (_bomb(), 422, "too large"),
    "animated": (_animated(), 422, "animated"),
    "blank": (png(np.full((64, 64), 255, np.uint8)), 422, "no ink"),
    "empty body": (b"", 400, "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_uploads_get_a_json_error_and_the_server_stays_up(server, case):
    data, status, words = BAD[case]
    for body, headers in ((data, {"Content-Type": "application/octet-stream"}), multipart(data)):
        got_status, got, _ = request(server.url, "POST", "/predict", body, headers)
        expected = 400 if case == "empty body" else status  # multipart names the empty file
        assert got_status == expected, (case, got)
        assert words in got["error"] or "empty" in got["error"], (case, got)
    assert server.alive and request(server.url, path="/health")[0] == 200


def test_too_large_uploads_get_413_declared_or_streamed(server):
    big = bytes(10 * 1024 * 1024 + 1)
    status, got, _ = request(server.url, "POST", "/predict", big)
    assert status == 413 and "too large" in got["error"]
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(server.url).netloc, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for _ in range(12):  # 12 MB in 1 MB chunks, no Content-Length
            conn.send(b"%x\r\n%s\r\n" % (1024 * 1024, bytes(1024 * 1024)))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close the connection as soon as it has refused the upload
    response = conn.getresponse()
    assert response.status == 413 and "too large" in json.loads(response.read())["error"]
    conn.close()
    assert request(server.url, path="/health")[0] == 200


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/../../etc/passwd", 404), ("GET", "/%2e%2e/%2e%2e/etc/passwd", 404), ("GET", "/web/index.html", 404),
    ("GET", "/mnistctl/pretrained/mnist-best.pt", 404), ("GET", "/predict", 405), ("DELETE", "/model", 405),
    ("POST", "/predict?input=perhaps", 422),
])
def test_no_request_reaches_the_file_system_and_errors_are_json(server, method, path, status):
    got_status, got, _ = request(server.url, method, path, PAINT_4.read_bytes() if method == "POST" else None)
    assert got_status == status and isinstance(got, dict) and got["error"], got
    assert "root:" not in json.dumps(got)


def test_multipart_without_a_file_or_malformed(server):
    body, headers = multipart(b"hello")
    status, got, _ = request(server.url, "POST", "/predict", body.replace(b'; filename="digit.png"', b""), headers)
    assert status == 400 and "no file" in got["error"]
    status, got, _ = request(server.url, "POST", "/predict", b"garbage",
                             {"Content-Type": "multipart/form-data; boundary=xyz"})
    assert status == 400 and "multipart" in got["error"]


@pytest.mark.slow
def test_concurrent_load_500_requests_16_clients_no_failures(server):
    strokes = [png(np.roll(np.pad(np.eye(12, dtype=np.uint8) * 255, 8), k, 1)) for k in range(-3, 4)]
    uploads = [PHOTO.read_bytes(), PAINT_4.read_bytes(), *strokes]
    clients, per_client = 16, 32  # 512 requests
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(server.url).netloc, timeout=60)
        for i in range(per_client):
            data = uploads[(n + i) % len(uploads)]
            start = time.perf_counter()
            try:
                status, got, _ = request(server.url, "POST", "/predict", data, conn=conn)
                ok = status == 200 and got["prediction"] is not None
            except Exception as exc:  # a failure is counted, not raised in a thread
                ok, got = False, repr(exc)
                conn.close()
                conn = http.client.HTTPConnection(urllib.parse.urlsplit(server.url).netloc, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - start)
                if not ok:
                    failures.append(str(got)[:200])
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert not failures, failures[:3]
    assert len(latencies) == clients * per_client >= 500
    ms = sorted(1000 * x for x in latencies)
    p50, p99 = statistics.median(ms), ms[int(0.99 * len(ms)) - 1]
    line = (f"serve load: {len(ms)} requests, {clients} clients, {len(ms) / wall:.0f} req/s, "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(line)
    if os.environ.get("MNISTCTL_SERVE_REPORT"):
        Path(os.environ["MNISTCTL_SERVE_REPORT"]).write_text(line + "\n")
    assert server.alive


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_port_in_use_is_one_clear_line():
    srv = Server()
    port = urllib.parse.urlsplit(srv.url).port
    taken = subprocess.run([sys.executable, "-m", "mnistctl", "serve", "--port", str(port)],
                           capture_output=True, text=True, timeout=60)
    assert taken.returncode == 1 and "Traceback" not in taken.stderr
    assert f"port {port}" in taken.stderr and "--port" in taken.stderr and len(taken.stderr.strip().splitlines()) == 1
    code, err = srv.stop()
    assert code == 0 and "Traceback" not in err, err


def test_a_host_that_does_not_resolve_is_one_clear_line():
    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    result = CliRunner().invoke(app, ["serve", "--host", "no-such-host.invalid", "--port", "0"])
    assert result.exit_code == 1
    assert "cannot use host 'no-such-host.invalid'" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_serves_a_trained_checkpoint_on_pytorch(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from conftest import make_checkpoint

    path = tmp_path / "best.pt"
    make_checkpoint(nf=4).save(path)
    srv = Server("--checkpoint", str(path))
    try:
        status, info, _ = request(srv.url, path="/model")
        assert status == 200 and info["backend"] == "pytorch" and info["nf"] == 4 and info["source"] == str(path)
        with ThreadPoolExecutor(8) as pool:  # concurrent requests on one PyTorch model
            answers = list(pool.map(lambda _: request(srv.url, "POST", "/predict", PAINT_4.read_bytes()), range(32)))
        assert {a[0] for a in answers} == {200}
        assert len({json.dumps(a[1], sort_keys=True) for a in answers}) == 1  # the same answer every time
    finally:
        srv.stop()


def _metric(text: str, name: str) -> float:
    """The value of one sample (``name`` with its labels, as written) in Prometheus's text format."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, (name, text[:2000])
    return values[0]


def _access_lines(srv: Server) -> list[dict]:
    return [json.loads(line) for line in srv.errors().splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_two_workers_count_together_and_log_each_request_as_json():
    """With --workers 2, /metrics adds up both processes' figures: requests by route and status,
    predictions by class, unreadable uploads, latency; /ready names the model; every request is one
    JSON line in the access log, naming its worker, its status and what was read."""
    srv = Server("--workers", "2", "--access-log", "--log-format", "json")
    try:
        assert request(srv.url, path="/ready")[:2] == (200, {"status": "ready",
                                                           "model": "built-in model (mnist-best.onnx)"})
        for _ in range(6):  # a new connection each: the two workers take turns accepting them
            assert request(srv.url, "POST", "/predict", PHOTO.read_bytes())[0] == 200
        assert request(srv.url, "POST", "/predict", b"not a picture")[0] == 422
        status, text, response = request(srv.url, path="/metrics")
        assert status == 200 and response.getheader("content-type").startswith("text/plain")
        assert _metric(text, 'mnistctl_http_requests_total{method="POST",route="/predict",status="200"}') == 6
        assert _metric(text, 'mnistctl_http_requests_total{method="POST",route="/predict",status="422"}') == 1
        assert _metric(text, 'mnistctl_predictions_total{label="7"}') == 6
        assert _metric(text, "mnistctl_unreadable_pictures_total") == 1
        assert _metric(text, 'mnistctl_http_request_duration_seconds_count{route="/predict"}') == 7
        assert 'mnistctl_model_info{backend="onnxruntime",source="built-in model (mnist-best.onnx)"' in text
        request(srv.url, path="/no/such/page")
        assert 'route="other"' in request(srv.url, path="/metrics")[1]  # unknown paths: one label, not one each
    finally:
        code, err = srv.stop()
    assert code == 0 and "Traceback" not in err
    lines = _access_lines(srv)
    predicted = [r for r in lines if r["path"] == "/predict"]
    assert len(predicted) == 7 and [r["status"] for r in predicted] == [200] * 6 + [422]
    assert all(r["prediction"] == "7" and r["unsure"] is False and r["ms"] > 0 for r in predicted[:6])
    assert predicted[6]["prediction"] is None and {r["method"] for r in predicted} == {"POST"}
    assert all(r["worker"] != srv.process.pid for r in lines)  # answered by the workers, not the supervisor


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_the_server_stays_up():
    """SIGKILL one of two workers: requests keep being answered (by the other), a new worker takes
    its place, and Ctrl-C still stops everything."""
    import signal

    srv = Server("--workers", "2", "--access-log", "--log-format", "json")
    try:
        assert request(srv.url, "POST", "/predict", PAINT_4.read_bytes())[0] == 200
        victim = _access_lines(srv)[-1]["worker"]
        os.kill(victim, signal.SIGKILL)
        deadline, workers = time.monotonic() + 60, set()
        while time.monotonic() < deadline and not (workers - {victim} and len(workers - {victim}) == 2):
            status, got, _ = request(srv.url, "POST", "/predict", PAINT_4.read_bytes())
            assert status == 200 and got["prediction"] == "4"
            workers = {r["worker"] for r in _access_lines(srv)}
        assert len(workers - {victim}) == 2, workers  # the one left, and its new companion
    finally:
        code, err = srv.stop()
    assert code == 0 and "Traceback" not in err, err
    assert srv.process.poll() is not None


def test_the_text_access_log_escapes_what_a_client_sends():
    """The text log is one line per request; a path holding a terminal's escape codes is written
    escaped, never raw (a log viewer would obey them)."""
    import logging

    from mnistctl.serve.app import access_logger

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    log = access_logger("text")
    logging.getLogger("mnistctl.access").addHandler(handler)
    try:
        log({"client": "127.0.0.1:5000", "method": "GET", "path": "/\x1b[31mred\n", "query": "", "status": 404,
             "ms": 1.25, "bytes": 20, "worker": 1})
        log({"client": "127.0.0.1:5000", "method": "POST", "path": "/predict", "query": "input=true", "status": 200,
             "ms": 3.0, "bytes": 99, "worker": 1, "prediction": "7", "unsure": True})
    finally:
        logging.getLogger("mnistctl.access").removeHandler(handler)
    assert records == ['127.0.0.1:5000 - "GET /\\x1b[31mred\\n" 404 1.2 ms',
                       '127.0.0.1:5000 - "POST /predict?input=true" 200 3.0 ms -> 7?']
