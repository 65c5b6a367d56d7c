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
import math
import socket
import time
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
from mnistctl.errors import ConfigError, DownloadError, WriteError
from mnistctl.fsutil import atomic_path, remove_stale_parts, write_json

CHUNK = 1 << 16
DEADLINE = 600.0  # seconds a file may take from one mirror before the next is tried
MIN_RATE = 4096  # bytes/s: a mirror slower than this on average (after GRACE seconds) is abandoned
GRACE = 15.0
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


def _idx_length(header: bytes) -> int | None:
    """The length an IDX file must have, from its first bytes (None until the whole header is
    there); _Failed when what arrives is not an IDX file of bytes (an HTML page, say)."""
    if header[:2] != b"\0\0" or header[2] != 0x08 or not 1 <= header[3] <= 4:
        raise _Failed(f"not an IDX file (it starts with {header[:4]!r}; an error page?)")
    ndim = header[3]
    if len(header) < 4 + 4 * ndim:
        return None
    dims = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return 4 + 4 * ndim + math.prod(dims)


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


@dataclass(frozen=True)
class Pace:
    """How long a mirror may take: ``timeout`` per read, ``deadline`` per file, and at least
    ``min_rate`` bytes/s on average once ``grace`` seconds have passed."""

    timeout: float = 30.0
    deadline: float = DEADLINE
    min_rate: float = MIN_RATE
    grace: float = GRACE

    def check(self, started: float, received: int) -> None:
        elapsed = time.monotonic() - started
        if elapsed > self.deadline:
            raise _Failed(f"too slow: not finished within the {self.deadline:g} s deadline "
                          f"({received:,} bytes received)")
        if elapsed > self.grace and received / elapsed < self.min_rate:
            raise _Failed(f"too slow: {received / elapsed:,.0f} bytes/s over {elapsed:.0f} s, under the "
                          f"minimum of {self.min_rate:,.0f}")


class _Sink:
    """The temporary file: a failed write (disk full, ...) is a WriteError, not a mirror's fault."""

    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path

    def write(self, data: bytes) -> None:
        try:
            self.f.write(data)
        except OSError as exc:
            raise WriteError(self.path, exc) from None


def _copy_verified(stream: BinaryIO, tmp: Path, spec: IdxFile, progress: DownloadProgress,
                   pace: Pace = Pace(), dest: Path | None = None, total: int | None = None) -> str:
    """Copy ``stream`` into ``tmp``, gunzipping if needed; return the MD5 of what was written.

    Raises _Failed on a read error, a mirror too slow for ``pace``, corrupt gzip data or a
    checksum mismatch; WriteError when the file cannot be written.
    """
    raw_md5, out_md5 = hashlib.md5(), hashlib.md5()
    inflater = None
    head: bytes | None = b""  # the first bytes, until there are enough to tell gzip from raw
    written, expected, prefix = 0, None, b""  # the IDX header (prefix) says how long the file must be
    started, received = time.monotonic(), 0
    read = getattr(stream, "read1", stream.read)  # what has arrived, not a full chunk: a drip cannot stall us

    def emit(data: bytes) -> None:
        nonlocal written, expected, prefix
        out_md5.update(data)
        out.write(data)
        written += len(data)
        if expected is None:
            prefix += data[:20]
            if len(prefix) >= 4:
                expected = _idx_length(prefix)
        if expected is not None and written > expected:
            raise _Failed(f"too long: more than the {expected:,} bytes its IDX header announces")
        if spec.size is not None and written > spec.size:  # a header may announce billions of images
            raise _Failed(f"too long: more than the {spec.size:,} bytes {spec.name} has")

    try:
        with open(tmp, "wb") as f:
            out = _Sink(f, dest or tmp)
            while chunk := read(CHUNK):
                received += len(chunk)
                pace.check(started, received)
                progress.advance(len(chunk))
                raw_md5.update(chunk)
                if head is not None:
                    head += chunk
                    if len(head) < 2:
                        continue
                    if head[:2] == _GZIP_MAGIC:
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    chunk, head = head, None
                emit(inflater.decompress(chunk) if inflater else chunk)
            if head:
                emit(head)
            if total is not None and received != total:
                raise _Failed(f"connection broke off after {received:,} of {total:,} bytes")
            if inflater is not None:
                emit(inflater.flush())
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
           pace: Pace) -> tuple[str, str]:
    """Fetch one file into ``dest``; return (source, md5). Raises DownloadError."""
    failures: list[tuple[str, _Failed]] = []
    for mirror in mirrors:
        reason: _Failed | None = None
        for candidate in (spec.name + ".gz", spec.name):
            try:
                with _open(mirror, candidate, pace.timeout) as (stream, total, where):
                    progress.start(spec.name, where, total)
                    ok = False
                    try:
                        with atomic_path(dest) as tmp:
                            md5 = _copy_verified(stream, tmp, spec, progress, pace, dest, total)
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
        message += (" | no network connection? Give a mirror (MNISTCTL_MIRROR): a directory or URL that "
                    "holds the files")
    raise DownloadError(message, setting="mirror" if remote and all(r.network for r in remote) else None)


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


def check_mirror(mirror: str) -> None:
    """A mirror is a directory, a file:// URL, or an http(s) URL with a host: anything else is a
    ConfigError naming it (before anything is fetched)."""
    if not _is_remote(mirror):
        return
    try:
        parts = urllib.parse.urlsplit(mirror)
        parts.port  # noqa: B018  (parses it: a port that is not a number raises)
    except ValueError as exc:
        raise ConfigError.invalid("mirror", f"{mirror!r} is not a valid URL ({exc})", "the mirror") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError.invalid("mirror", f"{mirror!r} is not an http(s) URL with a host, nor a directory",
                                  "the mirror")


def download(info: DatasetInfo, directory: Path, mirrors: list[str], *, force: bool = False,
             progress: DownloadProgress | None = None, pace: Pace = Pace()) -> list[FileResult]:
    """Make sure the four files of ``info`` are in ``directory``, verified.

    Files already present and valid are kept unless ``force``. Raises DownloadError when a
    file cannot be had from any mirror; files fetched before that stay in place. ``pace`` says
    when a slow mirror is abandoned for the next. Temporary files that killed downloads left are
    removed.
    """
    if not mirrors:
        raise DownloadError("no mirror to download from: give one (MNISTCTL_MIRROR)", setting="mirror")
    for mirror in mirrors:
        check_mirror(mirror)
    progress = progress or DownloadProgress()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(directory, exc) from None
    remove_stale_parts(directory, older_than=max(120.0, 4 * pace.timeout))
    verified = _read_verified(directory)
    results = []
    for spec in info.files:
        dest = directory / spec.name
        if not force and is_valid(spec, dest, verified):
            results.append(FileResult(spec.name, dest, dest.stat().st_size, "cache", "present"))
            continue
        source, md5 = _fetch(spec, dest, mirrors, progress, pace)
        verified[spec.name] = md5
        write_json(directory / VERIFIED_FILE, verified)
        results.append(FileResult(spec.name, dest, dest.stat().st_size, source, "downloaded"))
    return results
