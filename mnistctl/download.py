"""Fetch a data set's IDX files from an ordered list of mirrors, verified and atomically.

A mirror is an http(s):// URL, a file:// URL or a plain local directory. For each file each
mirror is asked for ``NAME.gz`` and then ``NAME``; whatever arrives is decompressed on the fly
(gzip is recognised by its magic bytes) and written to a temporary file that replaces the
target only once its MD5 matches. The decompressed IDX bytes are what stays on disk: they load
fastest (one read, no decompression).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mnistctl import __version__
from mnistctl.datasets import DatasetInfo, IdxFile
from mnistctl.errors import DownloadError
from mnistctl.fsutil import atomic_path, write_json

CHUNK = 1 << 16
VERIFIED_FILE = "verified.json"  # MD5s of the stored (decompressed) files, as verified
_GZIP_MAGIC = b"\x1f\x8b"


class DownloadProgress:
    """Hooks the CLI implements to show progress; the defaults do nothing."""

    def start(self, name: str, source: str, total: int | None) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def stop(self, ok: bool) -> None: ...


@dataclass
class FileResult:
    name: str
    path: Path
    size: int
    source: str  # the mirror it came from, or "cache"
    status: str  # "downloaded" or "present"


class _NotThere(Exception):
    """The mirror answered but does not have this candidate name (try the next name)."""


class _Failed(Exception):
    """The mirror could not deliver the file (try the next mirror)."""

    def __init__(self, reason: str, network: bool = False):
        super().__init__(reason)
        self.network = network  # True when the failure means "could not reach it at all"


def md5_of_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _is_remote(mirror: str) -> bool:
    return mirror.startswith(("http://", "https://"))


def _local_dir(mirror: str) -> Path:
    if mirror.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(mirror).path))
    return Path(mirror).expanduser()


def _describe_url_error(exc: BaseException) -> _Failed:
    if isinstance(exc, urllib.error.HTTPError):
        return _Failed(f"HTTP {exc.code} {exc.reason}")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return _Failed("cannot resolve host", network=True)
    if isinstance(reason, ConnectionRefusedError):
        return _Failed("connection refused", network=True)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return _Failed("timed out", network=True)
    if isinstance(reason, OSError):
        return _Failed(reason.strerror or str(reason), network=True)
    return _Failed(str(reason))


@contextmanager
def _open(mirror: str, name: str, timeout: float) -> Iterator[tuple[BinaryIO, int | None, str]]:
    """Open ``name`` on ``mirror``: yields (stream, size or None, where it came from)."""
    if _is_remote(mirror):
        url = urllib.parse.urljoin(mirror if mirror.endswith("/") else mirror + "/", name)
        request = urllib.request.Request(url, headers={"User-Agent": f"mnistctl/{__version__}"})
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise _NotThere(f"HTTP 404 {exc.reason}") from None
            raise _describe_url_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _describe_url_error(exc) from None
        with response:
            length = response.headers.get("Content-Length")
            yield response, int(length) if length and length.isdigit() else None, url
        return
    path = _local_dir(mirror) / name
    if not _local_dir(mirror).is_dir():
        raise _Failed("no such directory")
    if not path.is_file():
        raise _NotThere("file not found")
    with open(path, "rb") as f:
        yield f, path.stat().st_size, str(path)


def _copy_verified(stream: BinaryIO, tmp: Path, spec: IdxFile, progress: DownloadProgress) -> str:
    """Copy ``stream`` into ``tmp``, gunzipping if needed; return the MD5 of what was written.

    Raises _Failed on a read error, corrupt gzip data or a checksum mismatch.
    """
    raw_md5, out_md5 = hashlib.md5(), hashlib.md5()
    inflater = None
    first = True
    try:
        with open(tmp, "wb") as out:
            while chunk := stream.read(CHUNK):
                progress.advance(len(chunk))
                raw_md5.update(chunk)
                if first:
                    first = False
                    if chunk[:2] == _GZIP_MAGIC:
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = inflater.decompress(chunk) if inflater else chunk
                out_md5.update(data)
                out.write(data)
            if inflater is not None:
                tail = inflater.flush()
                out_md5.update(tail)
                out.write(tail)
                if not inflater.eof:
                    raise _Failed("truncated gzip data")
    except zlib.error as exc:
        raise _Failed(f"corrupt gzip data ({exc})") from None
    except http.client.HTTPException as exc:
        raise _Failed(f"connection broke off ({type(exc).__name__})") from None
    except (OSError, urllib.error.URLError) as exc:
        raise _describe_url_error(exc) from None

    got = out_md5.hexdigest()
    if spec.md5 is not None:
        if got != spec.md5:
            raise _Failed(f"checksum mismatch (MD5 {got}, expected {spec.md5})")
    elif spec.gz_md5 is not None and inflater is not None:
        if raw_md5.hexdigest() != spec.gz_md5:
            raise _Failed(f"checksum mismatch (MD5 {raw_md5.hexdigest()} of the .gz, "
                          f"expected {spec.gz_md5})")
    else:
        raise _Failed("served uncompressed, but only the .gz checksum is known")
    return got


def _fetch(spec: IdxFile, dest: Path, mirrors: list[str], progress: DownloadProgress,
           timeout: float) -> tuple[str, str]:
    """Fetch one file into ``dest``; return (source, md5). Raises DownloadError."""
    failures: list[tuple[str, _Failed]] = []
    for mirror in mirrors:
        reason: _Failed | None = None
        for candidate in (spec.name + ".gz", spec.name):
            try:
                with _open(mirror, candidate, timeout) as (stream, total, where):
                    progress.start(spec.name, where, total)
                    ok = False
                    try:
                        with atomic_path(dest) as tmp:
                            md5 = _copy_verified(stream, tmp, spec, progress)
                        ok = True
                    finally:
                        progress.stop(ok)
                return mirror, md5
            except _NotThere as exc:
                reason = _Failed(str(exc))
                continue
            except _Failed as exc:
                reason = exc
                break
        assert reason is not None
        failures.append((mirror, reason))

    details = "; ".join(f"{m} -> {r}" for m, r in failures)
    message = f"could not download {spec.name} from any mirror: {details}"
    remote = [r for m, r in failures if _is_remote(m)]
    if remote and all(r.network for r in remote):
        message += (" | no network connection? Point --mirror (or MNISTCTL_MIRROR) at a "
                    "directory or URL that holds the files")
    raise DownloadError(message)


def _read_verified(directory: Path) -> dict[str, str]:
    try:
        data = json.loads((directory / VERIFIED_FILE).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def is_valid(spec: IdxFile, path: Path, verified: dict[str, str]) -> bool:
    """Whether ``path`` holds the verified bytes of ``spec`` (by the published or recorded MD5)."""
    expected = spec.md5 or verified.get(spec.name)
    return expected is not None and path.is_file() and md5_of_file(path) == expected


def download(info: DatasetInfo, directory: Path, mirrors: list[str], *, force: bool = False,
             progress: DownloadProgress | None = None, timeout: float = 30.0) -> list[FileResult]:
    """Make sure the four files of ``info`` are in ``directory``, verified.

    Files already present and valid are kept unless ``force``. Raises DownloadError when a
    file cannot be had from any mirror; files fetched before that stay in place.
    """
    if not mirrors:
        raise DownloadError("no mirror to download from: give one with --mirror")
    progress = progress or DownloadProgress()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create data directory {directory}: {exc.strerror}") from None
    verified = _read_verified(directory)
    results = []
    for spec in info.files:
        dest = directory / spec.name
        if not force and is_valid(spec, dest, verified):
            results.append(FileResult(spec.name, dest, dest.stat().st_size, "cache", "present"))
            continue
        source, md5 = _fetch(spec, dest, mirrors, progress, timeout)
        verified[spec.name] = md5
        write_json(directory / VERIFIED_FILE, verified)
        results.append(FileResult(spec.name, dest, dest.stat().st_size, source, "downloaded"))
    return results
