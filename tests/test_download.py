"""`download`: mirrors in order, checksums, atomicity, local and HTTP mirrors."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from conftest import fake_info, make_fake_dataset, md5, write_mirror
from mnistctl.data.download import DownloadProgress, Pace, download, md5_of_file
from mnistctl.datasets import MNIST, resolve_mirrors
from mnistctl.errors import DownloadError


def _files_on_disk(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_local_directory_mirror_gz(tmp_path, fake_files):
    info = fake_info(fake_files)
    mirror = write_mirror(tmp_path / "mirror", fake_files, gz=True)
    results = download(info, tmp_path / "data", [str(mirror)])
    assert [r.status for r in results] == ["downloaded"] * 4
    for name, data in fake_files.items():
        assert (tmp_path / "data" / name).read_bytes() == data  # stored decompressed
    assert _files_on_disk(tmp_path / "data") == set(fake_files) | {"verified.json"}


def test_raw_files_and_file_url(tmp_path, fake_files):
    info = fake_info(fake_files)
    mirror = write_mirror(tmp_path / "mirror", fake_files, gz=False)
    results = download(info, tmp_path / "data", [mirror.as_uri()])
    assert {r.source for r in results} == {mirror.as_uri()}
    assert all(md5_of_file(tmp_path / "data" / n) == md5(d) for n, d in fake_files.items())


def test_present_files_are_not_fetched_again_unless_forced(tmp_path, fake_files):
    info = fake_info(fake_files)
    mirror = write_mirror(tmp_path / "mirror", fake_files)
    download(info, tmp_path / "data", [str(mirror)])
    again = download(info, tmp_path / "data", [str(mirror)])
    assert [r.status for r in again] == ["present"] * 4
    forced = download(info, tmp_path / "data", [str(mirror)], force=True)
    assert [r.status for r in forced] == ["downloaded"] * 4


def test_a_corrupted_stored_file_is_fetched_again(tmp_path, fake_files):
    info = fake_info(fake_files)
    mirror = write_mirror(tmp_path / "mirror", fake_files)
    download(info, tmp_path / "data", [str(mirror)])
    victim = tmp_path / "data" / "t10k-labels-idx1-ubyte"
    victim.write_bytes(b"garbage")
    results = {r.name: r.status for r in download(info, tmp_path / "data", [str(mirror)])}
    assert results["t10k-labels-idx1-ubyte"] == "downloaded"
    assert results["train-images-idx3-ubyte"] == "present"
    assert victim.read_bytes() == fake_files["t10k-labels-idx1-ubyte"]


def test_checksum_mismatch_falls_through_to_next_mirror(tmp_path, fake_files):
    info = fake_info(fake_files)
    bad = write_mirror(tmp_path / "bad", make_fake_dataset(seed=99))
    good = write_mirror(tmp_path / "good", fake_files)
    results = download(info, tmp_path / "data", [str(bad), str(good)])
    assert {r.source for r in results} == {str(good)}


def test_all_mirrors_failing_names_each_and_leaves_nothing(tmp_path, fake_files):
    info = fake_info(fake_files)
    bad = write_mirror(tmp_path / "bad", make_fake_dataset(seed=99))
    missing = tmp_path / "nowhere"
    with pytest.raises(DownloadError) as err:
        download(info, tmp_path / "data", [str(bad), str(missing)])
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message
    assert f"{bad} -> checksum mismatch" in message
    assert f"{missing} -> no such directory" in message
    assert "\n" not in message
    assert _files_on_disk(tmp_path / "data") == set()  # no partial or unverified file


def test_truncated_gzip_is_rejected(tmp_path, fake_files):
    info = fake_info(fake_files)
    mirror = write_mirror(tmp_path / "mirror", fake_files)
    gz = mirror / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-30])
    with pytest.raises(DownloadError, match="truncated gzip|corrupt gzip"):
        download(info, tmp_path / "data", [str(mirror)])
    assert not (tmp_path / "data" / "train-labels-idx1-ubyte").exists()


def test_gz_checksum_only_datasets(tmp_path, fake_files):
    """Fashion-MNIST and KMNIST publish MD5s of the .gz files only."""
    info = fake_info(fake_files, gz_only=True)
    gz_mirror = write_mirror(tmp_path / "gz", fake_files, gz=True)
    download(info, tmp_path / "data", [str(gz_mirror)])
    assert (tmp_path / "data" / "t10k-images-idx3-ubyte").read_bytes() == fake_files["t10k-images-idx3-ubyte"]
    # the recorded MD5 makes the stored files recognisable as valid later on
    assert [r.status for r in download(info, tmp_path / "data", [str(gz_mirror)])] == ["present"] * 4
    raw_mirror = write_mirror(tmp_path / "raw", fake_files, gz=False)
    with pytest.raises(DownloadError, match="only the .gz checksum is known"):
        download(info, tmp_path / "other", [str(raw_mirror)])


def test_registry_has_fashion_and_kmnist():
    from mnistctl.datasets import REGISTRY, get_dataset
    from mnistctl.errors import ConfigError

    assert set(REGISTRY) == {"mnist", "fashion-mnist", "kmnist"}
    for info in REGISTRY.values():
        assert len(info.classes) == 10 and info.mirrors and len(info.files) == 4
        assert all(f.md5 or f.gz_md5 for f in info.files)
    with pytest.raises(ConfigError, match="mnist, fashion-mnist, kmnist"):
        get_dataset("cifar10")


def test_user_mirrors_come_first(monkeypatch):
    monkeypatch.setenv("MNISTCTL_MIRROR", "/env/one http://env/two")
    mirrors = resolve_mirrors(MNIST, ["/cli"])
    assert mirrors[:3] == ["/cli", "/env/one", "http://env/two"]
    assert mirrors[3:] == list(MNIST.mirrors)
    assert mirrors[-1].startswith("http://yann.lecun.com")


class _Interrupt(DownloadProgress):
    def __init__(self, after: int):
        self.after = after
        self.seen = 0

    def advance(self, nbytes: int) -> None:
        self.seen += nbytes
        if self.seen > self.after:
            raise KeyboardInterrupt


def test_ctrl_c_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    files = make_fake_dataset(n_train=3000)  # > one 64 KiB chunk
    info = fake_info(files)
    mirror = write_mirror(tmp_path / "mirror", files, gz=False)
    data = tmp_path / "data"
    download(info, data, [str(mirror)])
    before = (data / "train-images-idx3-ubyte").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        download(info, data, [str(mirror)], force=True, progress=_Interrupt(after=70_000))
    assert (data / "train-images-idx3-ubyte").read_bytes() == before
    assert not [p for p in data.iterdir() if p.name.endswith(".part")]


# --- HTTP mirrors, served for real on 127.0.0.1 -------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    """/missing/* answers 404, /corrupt/* serves flipped bytes, /good/* serves the files."""

    def do_GET(self) -> None:  # noqa: N802
        route, _, name = self.path.lstrip("/").partition("/")
        path = Path(self.directory) / name
        if route == "good" and path.is_file():
            body = path.read_bytes()
        elif route == "corrupt" and path.is_file():
            body = bytearray(path.read_bytes())
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_mirror(mnist_mirror) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(mnist_mirror)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.realdata
def test_http_404_and_corrupt_mirrors_fall_through_to_a_good_one(tmp_path, http_mirror):
    mirrors = [f"{http_mirror}/missing/", f"{http_mirror}/corrupt/", f"{http_mirror}/good/"]
    seen = []

    class Record(DownloadProgress):
        def start(self, name, source, total):
            seen.append((name, source, total))

    results = download(MNIST, tmp_path, mirrors, progress=Record())
    assert {r.source for r in results} == {f"{http_mirror}/good/"}
    for spec in MNIST.files:
        assert md5_of_file(tmp_path / spec.name) == spec.md5
    # each file was tried on the corrupt mirror first, then fetched from the good one
    sources = [s for _, s, _ in seen]
    assert sum("/corrupt/" in s for s in sources) == 4 and sum("/good/" in s for s in sources) == 4
    assert all(total and total > 0 for _, _, total in seen)


def test_unreachable_mirror_says_so_in_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = replace(MNIST, mirrors=())
    with pytest.raises(DownloadError) as err:
        download(info, tmp_path, [f"http://127.0.0.1:{port}/"], pace=Pace(timeout=5))
    message = str(err.value)
    assert f"http://127.0.0.1:{port}/ -> connection refused" in message
    # the core names the setting (and its environment variable); the CLI adds its option's name
    assert "no network connection?" in message and "MNISTCTL_MIRROR" in message and err.value.setting == "mirror"
    assert "--" not in message
    assert "\n" not in message


def test_the_cli_names_its_option_for_a_mirror_that_cannot_be_reached(tmp_path):
    import socket

    from typer.testing import CliRunner

    from mnistctl.cli.commands import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["download", "--data-dir", str(tmp_path), "--mirror", f"http://127.0.0.1:{port}/",
                                      "--timeout", "5"], env={"MNISTCTL_MIRROR": ""})
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "no network connection?" in line and line.endswith("(--mirror)")


@pytest.mark.realdata
def test_real_mnist_through_the_shared_mirror(mnist_data_dir):
    from mnistctl.datasets import dataset_dir

    directory = dataset_dir(MNIST, mnist_data_dir)
    sizes = {p.name: p.stat().st_size for p in directory.iterdir()}
    assert sizes["train-images-idx3-ubyte"] == 16 + 60000 * 784
    assert sizes["t10k-labels-idx1-ubyte"] == 8 + 10000
