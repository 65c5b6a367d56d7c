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
and beyond ``MAX_CONNECTIONS`` new ones are turned away (``run``).
"""


import asyncio
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mnistctl import __version__
from mnistctl.errors import MnistctlError, RequestError, ServeError
from mnistctl.inference.classifier import Classifier
from mnistctl.inference.files import predict_image, prediction_json
from mnistctl.recipes import UPLOAD_MB

MAX_UPLOAD = int(UPLOAD_MB * 1024 * 1024)  # bytes: a larger upload is refused with 413
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # names of this machine a browser may use
HEADER_TIMEOUT = 10.0  # seconds a new connection has to send its request headers
REQUEST_BUDGET = 20.0  # seconds a picture may take to read; beyond, the client gets 503 (the work runs out)
SHUTDOWN_GRACE = 5  # seconds requests in flight get to finish when the server is stopped
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
MAX_CONNECTIONS = 256  # open connections at once: beyond, requests get 503 (and beyond 4x, connections are closed)
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/app.js": ("app.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8")}
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
    """ASGI middleware: refuse a request whose Host is not allowed (421), and add the security
    headers to every response (the one place they are added: pages, errors, /health alike)."""

    def __init__(self, app: Any, hosts: list[str]) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    def host_ok(self, scope: dict[str, Any]) -> bool:
        value = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        name = value.rsplit("]", 1)[0].lstrip("[") if value.startswith("[") else value.rsplit(":", 1)[0]
        return "*" in self.hosts or name.lower() in self.hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in present)]
            await send(message)

        if not self.host_ok(scope):
            body = b'{"error":"this server does not answer for that Host: open it as localhost or with --allow-host"}'
            await send_secured({"type": "http.response.start", "status": 421,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secured)


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


def create_app(classifier: Classifier, *, max_upload: int = MAX_UPLOAD, hosts: list[str] | None = None) -> Any:
    """The FastAPI application: the page, ``POST /predict``, ``GET /health`` and ``GET /model``
    (GET routes answer HEAD too), answering requests whose Host is one of ``hosts`` (by default
    ``allowed_hosts(DEFAULT_HOST)``; ``"*"``: any)."""
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

        def serve_file() -> Response:
            return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})
        return serve_file

    for url in files:
        app.add_api_route(url, page(url), methods=["GET", "HEAD"], include_in_schema=False)

    @app.api_route("/health", methods=["GET", "HEAD"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/model", methods=["GET", "HEAD"])
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
        try:
            result = await asyncio.wait_for(run_in_threadpool(predict_image, data, classifier, name, preprocess),
                                            REQUEST_BUDGET)
        except MnistctlError as exc:  # the model itself failed (outputs that are not numbers, ...)
            return error(500, f"the model could not read the picture: {exc}")
        except asyncio.TimeoutError:
            return error(503, f"reading this picture took longer than {REQUEST_BUDGET:g} s: try a smaller one")
        body = prediction_json(result, classifier)
        if input and result.image is not None:
            body["input"] = result.image.tolist()
        return JSONResponse(body, status_code=200 if result.error is None else 422)

    return _Guard(app, hosts if hosts is not None else allowed_hosts(DEFAULT_HOST))


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


def _guarded_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol with a deadline for a new connection's request headers (a client
    that connects and sends nothing, or a byte at a time, is closed after HEADER_TIMEOUT) and a cap
    on open connections (beyond MAX_CONNECTIONS a new one is closed at once)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        deadline: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > 4 * MAX_CONNECTIONS:  # past the 503s of limit_concurrency: refuse outright
                _Quiet.note("too many connections: a new one was closed")
                transport.close()
                return
            self.deadline = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

        def handle_events(self) -> None:
            super().handle_events()
            if self.deadline is not None and self.cycle is not None:  # the headers of a request came
                self.deadline.cancel()
                self.deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
            super().connection_lost(exc)

        def _too_slow(self) -> None:
            self.deadline = None
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    return Guarded


class _Quiet:
    """One log line, at most every 10 s, for what a flood of connections makes happen many times a
    second (accept() out of file descriptors, connections turned away), instead of a traceback each."""

    last: dict[str, float] = {}

    @classmethod
    def note(cls, what: str) -> None:
        import logging
        import time

        now = time.monotonic()
        if now - cls.last.get(what, -1e9) >= 10:
            cls.last[what] = now
            logging.getLogger("mnistctl.serve").warning("mnistctl serve: %s (said at most every 10 s)", what)

    @classmethod
    def filter(cls, record: Any) -> bool:
        """A logging filter for asyncio's logger: its accept errors become a note."""
        text = record.getMessage()
        if "socket.accept() out of system resource" in text or "Too many open files" in text:
            cls.note("out of file descriptors: new connections wait")
            return False
        return True


def _more_files() -> None:
    """Let the server hold as many connections as the system allows this process (the soft limit of
    open files up to the hard one)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):
        pass


def run(app: Any, listener: Listener, *, access_log: bool = True) -> None:
    """Serve ``app`` on ``listener`` until Ctrl-C or SIGTERM (uvicorn finishes the requests in
    flight, for at most 5 s, then returns)."""
    import logging

    import uvicorn

    _more_files()
    logging.getLogger("asyncio").addFilter(_Quiet.filter)
    config = uvicorn.Config(app, log_level="warning", access_log=access_log, timeout_graceful_shutdown=SHUTDOWN_GRACE,
                            http=_guarded_protocol(), timeout_keep_alive=KEEP_ALIVE,
                            limit_concurrency=MAX_CONNECTIONS)
    if access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener.socket])
    finally:
        listener.socket.close()


def still_working(grace: float = SHUTDOWN_GRACE) -> bool:
    """After ``run``: wait up to ``grace`` seconds for pictures still being read in worker threads;
    whether some are still at it (a front end then ends the process without waiting for them)."""
    import threading
    import time

    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    return any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread())
