"""``mnistctl serve``: a draw-a-digit page and a JSON prediction API over one Classifier.

Built on FastAPI (routing, JSON, multipart parsing through python-multipart) and served by
uvicorn. Every request goes through the same code as ``mnistctl predict``: ``prepare`` and
``Classifier.classify`` via ``predict.predict_image``, so a file gives the same answer on the
command line and over HTTP.

Safety: the page's three files are read from the package once, at start-up, and served from
memory; no part of a request names a file. Uploads are capped (``MAX_UPLOAD``) while they are
read, and every bad request gets a 4xx JSON error while the server carries on.
"""


import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mnistctl import __version__
from mnistctl.errors import RequestError, ServeError
from mnistctl.inference.classifier import Classifier
from mnistctl.inference.files import predict_image, prediction_json

MAX_UPLOAD = 10 * 1024 * 1024  # bytes: a larger upload is refused with 413
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/app.js": ("app.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_files() -> dict[str, tuple[bytes, str]]:
    """The page's files from the package, by URL path: (content, media type)."""
    web = resources.files("mnistctl.serve") / "web"
    return {url: (web.joinpath(name).read_bytes(), media) for url, (name, media) in PAGE_FILES.items()}


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


def create_app(classifier: Classifier, *, max_upload: int = MAX_UPLOAD) -> Any:
    """The FastAPI application: the page, ``POST /predict``, ``GET /health`` and ``GET /model``."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError as exc:
        raise ServeError(f"serving needs the serve extra ({exc.name} is missing): pip install 'mnistctl[serve]'") \
            from None

    files = page_files()
    info = model_info(classifier)
    app = FastAPI(title="mnistctl", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(f"{'.'.join(map(str, e.get('loc', ())[1:]))}: {e.get('msg')}"
                                    for e in exc.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error ({type(exc).__name__}); the server carries on")

    def page(url: str) -> Callable[[], Response]:
        content, media = files[url]

        def serve_file() -> Response:
            return Response(content, media_type=media, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})
        return serve_file

    for url in files:
        app.add_api_route(url, page(url), methods=["GET"], include_in_schema=False)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    def model() -> dict[str, Any]:
        return info

    @app.post("/predict")
    async def predict(request: Request, input: bool = False, preprocess: bool = True) -> JSONResponse:
        """The image in the body (raw, or a multipart field) -> the object ``predict --json`` gives
        for a file; ``?input=true`` adds the 28x28 input the model saw."""
        try:
            name, data = await upload_from(request, max_upload)
        except RequestError as exc:
            return error(exc.status, str(exc))
        result = await run_in_threadpool(predict_image, data, classifier, name, preprocess)
        body = prediction_json(result, classifier)
        if input and result.image is not None:
            body["input"] = result.image.tolist()
        return JSONResponse(body, status_code=200 if result.error is None else 422, headers=SECURITY_HEADERS)

    return app


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


def run(app: Any, listener: Listener, *, access_log: bool = True) -> None:
    """Serve ``app`` on ``listener`` until Ctrl-C or SIGTERM (uvicorn finishes the requests in
    flight, then returns)."""
    import logging

    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=access_log, timeout_graceful_shutdown=5)
    if access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener.socket])
    finally:
        listener.socket.close()
