"""``mnistctl serve``: a draw-a-digit page and a JSON prediction API over one Classifier.

Built on FastAPI (routing, JSON, multipart parsing through python-multipart) and served by
uvicorn. Every request goes through the same code as ``mnistctl predict``: ``prepare`` and
``Classifier.classify`` via ``inference.files.predict_image``, so a file gives the same answer on the
command line and over HTTP.

Safety: the page's three files are read from the package once, at start-up, and served from
memory; no part of a request names a file. Uploads are capped (``MAX_UPLOAD``) while they are
read, and every bad request gets a 4xx JSON error while the server carries on. Only requests
naming an allowed ``Host`` are answered (this machine's names and the bound address, so that a
DNS-rebinding page cannot read the API from a browser); every response carries the security
headers; a connection that does not send its request headers within ``HEADER_TIMEOUT`` is closed,
and beyond ``MAX_CONNECTIONS`` new ones are turned away (``mnistctl.serve.protocol``).

Operations: pictures are read on a few threads of their own (``PREPARE_THREADS``), off the event
loop; ``GET /metrics`` (Prometheus), ``GET /ready``, and one access-log line per request, as text or
JSON. ``mnistctl.serve.server`` runs the app in one process or in several workers.
"""


import asyncio
import errno
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Annotated, Any

from mnistctl import __version__
from mnistctl.errors import MnistctlError, RequestError, ServeError
from mnistctl.inference.classifier import Classifier
from mnistctl.inference.files import Numbers, predict_image, prediction_json
from mnistctl.recipes import UPLOAD_MB

MAX_UPLOAD = int(UPLOAD_MB * 1024 * 1024)  # bytes: a larger upload is refused with 413
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # names of this machine a browser may use
HEADER_TIMEOUT = 10.0  # seconds a new connection has to send its request headers
PREPARE_THREADS = 2  # threads (a process) reading pictures: one prepares while the other's model runs
REQUEST_BUDGET = 20.0  # seconds a picture may take to read; beyond, the client gets 503 (the work runs out)
SHUTDOWN_GRACE = 5  # seconds requests in flight get to finish when the server is stopped
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
MAX_CONNECTIONS = 256  # open connections at once (a process): beyond, requests get 503 (beyond 4x, closed)
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/app.js": ("app.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8"),
              "/docs": ("docs.html", "text/html; charset=utf-8"),
              "/docs/init.js": ("docs.js", "text/javascript; charset=utf-8")}
# Swagger UI for /docs, from the fastapi-offline package (the serve extra): no CDN, works offline
SWAGGER_FILES = {"/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
                 "/docs/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8")}
# Swagger UI sets inline styles on its elements: /docs allows those, and nothing else more than the page
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def allowed_hosts(host: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``Host`` names answered: this machine's, the address listened on (unless it is every
    interface, whose requests must then name a host given in ``extra``), and ``extra``."""
    bound = [] if host in ("0.0.0.0", "::", "") else [host.strip("[]")]
    return list(dict.fromkeys([*LOCAL_HOSTS, *bound, *extra]))


class _Guard:
    """ASGI middleware: refuse a request whose Host is not allowed (421), add the security headers
    to every response (the one place they are added: pages, errors, /health alike), and count and
    log every request (``metrics``; ``log``: an access-log line per request)."""

    def __init__(self, app: Any, hosts: list[str], metrics: Any = None,
                 log: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.app, self.hosts, self.metrics, self.log = app, {h.lower() for h in hosts}, metrics, log
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    def host_ok(self, scope: dict[str, Any]) -> bool:
        value = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        name = value.rsplit("]", 1)[0].lstrip("[") if value.startswith("[") else value.rsplit(":", 1)[0]
        return "*" in self.hosts or name.lower() in self.hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, seen = time.perf_counter(), {"status": 500, "bytes": 0, "counted": False}

        def count() -> None:
            """The request in the metrics and the access log, once: before the last of the answer is
            sent, so that a client that asks /metrics next (of any worker) finds it counted."""
            if seen["counted"]:
                return
            seen["counted"] = True
            seconds = time.perf_counter() - start
            if self.metrics is not None:
                self.metrics.request(scope.get("path", ""), scope.get("method", ""), seen["status"], seconds)
            if self.log is not None:
                self.log(_access_record(scope, seen["status"], seen["bytes"], seconds))

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in present)]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    count()
            await send(message)

        try:
            if not self.host_ok(scope):
                body = (b'{"error":"this server does not answer for that Host: open it as localhost or with '
                        b'--allow-host"}')
                await send_secured({"type": "http.response.start", "status": 421,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                await send_secured({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_secured)
        finally:
            count()  # (an answer cut short)


def _access_record(scope: dict[str, Any], status: int, size: int, seconds: float) -> dict[str, Any]:
    """What the access log says of one request."""
    client = scope.get("client") or ("", 0)
    record: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "client": f"{client[0]}:{client[1]}", "method": scope.get("method", ""), "path": scope.get("path", ""),
        "query": scope.get("query_string", b"").decode("latin-1"), "status": status,
        "ms": round(1000 * seconds, 2), "bytes": size, "worker": os.getpid()}
    reading = scope.get(READING_KEY)
    if reading is not None:
        record["prediction"], record["unsure"] = reading
    return record


PICTURE = {"type": "string", "format": "binary"}
FORM = {"type": "object", "required": ["file"], "properties": {"file": PICTURE}}
# /predict reads its body itself (raw or multipart, with limits as it streams in): the schema says what it takes
PREDICT_BODY = {"requestBody": {
    "required": True, "description": "The picture's file: raw, or a form field named file",
    "content": {"image/*": {"schema": PICTURE}, "application/octet-stream": {"schema": PICTURE},
                "multipart/form-data": {"schema": FORM}}}}
READING_KEY = "mnistctl.reading"  # the ASGI scope's key for (prediction, unsure) of a /predict request


def access_logger(log_format: str) -> Callable[[dict[str, Any]], None]:
    """Write each request's record as one line on stderr: ``text`` (uvicorn's kind of line, every
    odd character escaped) or ``json`` (an object per line, for log collectors)."""
    logger = logging.getLogger("mnistctl.access")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    def text(record: dict[str, Any]) -> None:
        target = record["path"] + (f"?{record['query']}" if record["query"] else "")
        reading = f" -> {record['prediction']}{'?' if record['unsure'] else ''}" if "prediction" in record else ""
        logger.info("%s - \"%s %s\" %d %.1f ms%s", record["client"], record["method"],
                    target.encode("unicode_escape").decode("ascii"), record["status"], record["ms"], reading)

    def as_json(record: dict[str, Any]) -> None:
        logger.info("%s", json.dumps(record, ensure_ascii=True))

    return as_json if log_format == "json" else text


class PicturePool:
    """Daemon threads that read pictures for requests, off the event loop: a bounded number (more
    would only take turns for the interpreter), and a picture still being read never keeps the
    process from ending once the server has stopped."""

    def __init__(self, threads: int = PREPARE_THREADS) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for i in range(threads):
            threading.Thread(target=self._work, name=f"mnistctl-picture-{i}", daemon=True).start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` on one of the threads; a future of this event loop for its result."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            loop, future, fn, args = self.jobs.get()
            if future.cancelled():  # its client is gone, or its time ran out, before it began
                continue
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the request, which raises it there
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: the server stopped
                return


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def page_files() -> dict[str, tuple[bytes, str]]:
    """The page's files (and the API docs' page and Swagger UI) from the packages, by URL path:
    (content, media type). Without Swagger UI's files /docs is left out."""
    web = resources.files("mnistctl.serve") / "web"
    files = {url: (web.joinpath(name).read_bytes(), media) for url, (name, media) in PAGE_FILES.items()}
    try:
        swagger = resources.files("fastapi_offline") / "static"
        files.update({url: (swagger.joinpath(name).read_bytes(), media)
                      for url, (name, media) in SWAGGER_FILES.items()})
    except (ModuleNotFoundError, FileNotFoundError):
        for url in ("/docs", "/docs/init.js"):
            del files[url]
    return files


def model_info(classifier: Classifier) -> dict[str, Any]:
    """What ``GET /model`` says about the model being served."""
    return {"source": classifier.source, "backend": classifier.backend, "dataset": classifier.dataset,
            "classes": list(classifier.classes), "nf": classifier.nf, "epoch": classifier.epoch,
            "test_accuracy": classifier.test_accuracy, "version": __version__}


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes (from
    its Content-Length, or while a chunked body streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise RequestError(413, f"upload too large ({int(declared):,} bytes; the limit is {limit:,})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"upload too large (over the {limit:,} byte limit)")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload_from(request: Any, limit: int) -> tuple[str, bytes]:
    """(name, image bytes) from a raw body or from the first file of a multipart form."""
    from starlette.requests import Request

    body = await read_body(request, limit)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        if not body:
            raise RequestError(400, "empty request: send the image file as the body, or as a multipart field "
                                    "named file")
        return "upload", body

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10, max_part_size=limit)
    except Exception as exc:  # starlette's MultiPartException and the parser's errors
        raise RequestError(400, f"malformed multipart form ({str(getattr(exc, 'detail', exc))[:100]})") from None
    files: list[Any] = [v for v in form.values() if hasattr(v, "filename") and hasattr(v, "read")]
    if not files:
        raise RequestError(400, "the multipart form holds no file: send the image as a field named file")
    named: Any = form.get("file")
    upload = named if hasattr(named, "read") else files[0]
    data = await upload.read()
    await form.close()  # the spooled temporary file
    if not data:
        raise RequestError(400, "the uploaded file is empty (0 bytes)")
    name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:200] or "upload"
    return name, data


def create_app(classifier: Classifier, *, max_upload: int = MAX_UPLOAD, hosts: list[str] | None = None,
               access_log: str | None = None, metrics: bool = True) -> Any:
    """The FastAPI application: the page, ``POST /predict``, ``GET /health`` (alive), ``GET /ready``
    (the model loaded), ``GET /model`` and ``GET /metrics`` (GET routes answer HEAD too), answering
    requests whose Host is one of ``hosts`` (by default ``allowed_hosts(DEFAULT_HOST)``; ``"*"``:
    any). ``access_log``: one line per request on stderr, ``"text"`` or ``"json"`` (None: none)."""
    try:
        from fastapi import FastAPI, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from starlette.exceptions import HTTPException

        from mnistctl.serve.metrics import CONTENT_TYPE, Metrics
    except ImportError as exc:
        raise ServeError(f"serving needs the serve extra ({exc.name} is missing): pip install 'mnistctl[serve]'") \
            from None

    files = page_files()
    info = model_info(classifier)
    pool = PicturePool()
    counts = Metrics([*files, "/predict", "/health", "/ready", "/model", "/metrics"], classifier.source,
                     classifier.backend) if metrics else None
    app = FastAPI(title="mnistctl", version=__version__, docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="Read handwritten digits: POST a picture to /predict. The page at / draws them.")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        response = error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # a 405's Allow
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(f"{'.'.join(map(str, e.get('loc', ())[1:]))}: {e.get('msg')}"
                                    for e in exc.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error ({type(exc).__name__}); the server carries on")

    def page(url: str) -> Callable[[], Response]:
        content, media = files[url]
        headers = {"Cache-Control": "no-cache", **({"Content-Security-Policy": DOCS_CSP} if url == "/docs" else {})}

        def serve_file() -> Response:
            return Response(content, media_type=media, headers=headers)
        return serve_file

    for url in files:
        app.add_api_route(url, page(url), methods=["GET", "HEAD"], include_in_schema=False)

    def get(path: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A GET route that answers HEAD too (HEAD left out of the API docs)."""
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            app.add_api_route(path, fn, methods=["GET"], summary=summary)
            app.add_api_route(path, fn, methods=["HEAD"], include_in_schema=False)
            return fn
        return register

    @get("/health", "The process is alive")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", "The model is loaded and requests are answered")
    def ready() -> dict[str, str]:
        return {"status": "ready", "model": classifier.source}  # the app exists once its model is loaded

    @get("/model", "The model served: classes, data set, test accuracy, mnistctl's version")
    def model() -> dict[str, Any]:
        return info

    @get("/metrics", "Prometheus metrics, added up over the worker processes")
    def metrics_text() -> Response:
        if counts is None:
            return error(404, "metrics are off")
        return Response(counts.exposition(), media_type=CONTENT_TYPE)

    @app.post("/predict", openapi_extra=PREDICT_BODY, summary="Read the digit, or the number, in a picture")
    async def predict(request: Request, input: bool = False, preprocess: bool = True,
                      numbers: Numbers = "auto",
                      digits: Annotated[int | None, Query(ge=1, le=64)] = None) -> JSONResponse:
        """The image in the body (raw, or a multipart field) -> the object ``predict --json`` gives
        for a file: a picture of several digits answers with ``number`` and each digit's box
        (``numbers=always``: every picture is a number; ``never``: one digit, as ``--single``;
        ``digits``: how many, when known). ``?input=true`` adds the 28x28 input the model saw
        (``input``) and one per digit (``inputs``)."""
        try:
            name, data = await upload_from(request, max_upload)
        except RequestError as exc:
            return error(exc.status, str(exc))
        if not preprocess and (numbers == "always" or digits is not None):
            return error(400, "numbers=always and digits need the picture prepared: leave out preprocess=false")
        try:
            result = await asyncio.wait_for(pool.run(predict_image, data, classifier, name, preprocess, numbers,
                                                     digits), REQUEST_BUDGET)
        except MnistctlError as exc:  # the model itself failed (outputs that are not numbers, ...)
            return error(500, f"the model could not read the picture: {exc}")
        except asyncio.TimeoutError:
            return error(503, f"reading this picture took longer than {REQUEST_BUDGET:g} s: try a smaller one")
        request.scope[READING_KEY] = (result.text, result.unsure)
        if counts is not None:
            for digit in result.digits() or [{"prediction": None, "unsure": False}]:
                counts.prediction(digit["prediction"], digit["unsure"])
        body = prediction_json(result, classifier)
        if input and result.image is not None:
            body["input"] = result.image.tolist()
            body["inputs"] = [d.image.tolist() for d in result.number.digits] if result.number is not None \
                else [body["input"]]
        return JSONResponse(body, status_code=200 if result.error is None else 422)

    return _Guard(app, hosts if hosts is not None else allowed_hosts(DEFAULT_HOST), counts,
                  access_logger(access_log) if access_log else None)


@dataclass
class Listener:
    socket: socket.socket
    url: str


def listen(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Listener:
    """A listening socket on ``host:port`` (port 0: any free port), with the URL to print."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot use host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is already in use: choose another port", setting="port") from None
        if exc.errno == errno.EACCES:
            raise ServeError(f"no permission to listen on port {port}: use a port above 1023") from None
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    bound_host, bound_port = sock.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound_host, bound_host)  # all interfaces: show this machine
    shown = f"[{shown}]" if ":" in shown else shown
    return Listener(sock, f"http://{shown}:{bound_port}")
