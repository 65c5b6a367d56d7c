"""Run ``mnistctl serve``'s app: in this process, or in several worker processes that share its
listening socket, each with its own model (``ServeOptions.workers``).

Several workers are uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``): it starts
them fresh (spawn), checks they answer, starts a new one in place of one that dies, and passes
Ctrl-C or SIGTERM on to them, each finishing its requests in flight. A worker builds its app from
the options this process leaves in ``MNISTCTL_SERVE_OPTIONS`` (``worker_app``); the workers add up
their metrics through files in a temporary directory (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mnistctl.inference.classifier import Classifier, load_classifier
from mnistctl.serve.app import (
    KEEP_ALIVE,
    MAX_CONNECTIONS,
    MAX_UPLOAD,
    SHUTDOWN_GRACE,
    Listener,
    allowed_hosts,
    create_app,
)

OPTIONS_VARIABLE = "MNISTCTL_SERVE_OPTIONS"
DEFAULT_WORKERS_AT_MOST = 8  # one worker per core by default, up to this: each holds a model and its threads


@dataclass
class ServeOptions:
    """How to serve: the model files (None: the built-in model), where it runs, the limits, the log
    and the processes. JSON-able: workers read it from the environment."""

    model: list[str] | None = None
    device: str = "cpu"
    max_upload: int = MAX_UPLOAD
    hosts: list[str] = field(default_factory=lambda: allowed_hosts("127.0.0.1"))
    access_log: str | None = "text"  # "text", "json" or None
    workers: int = 1
    threads: int | None = None  # the model's CPU threads in each process (None: the runtime's choice)

    def app(self, classifier: Classifier) -> Any:
        return create_app(classifier, max_upload=self.max_upload, hosts=self.hosts, access_log=self.access_log)


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory): its own model, from the options the
    serving process left in the environment."""
    import cv2

    options = ServeOptions(**json.loads(os.environ[OPTIONS_VARIABLE]))
    cv2.setNumThreads(1)  # the workers share the cores
    return options.app(load_classifier(options.model, options.device, threads=options.threads))


def run(options: ServeOptions, listener: Listener, classifier: Classifier) -> None:
    """Serve until Ctrl-C or SIGTERM: ``classifier`` in this process, or ``options.workers``
    processes, each loading the model again (requests in flight get ``SHUTDOWN_GRACE`` seconds to
    finish, then the server returns)."""
    import uvicorn

    from mnistctl.serve.protocol import GuardedH11, Quiet

    _more_files()
    logging.getLogger("asyncio").addFilter(Quiet.filter)
    common: dict[str, Any] = {"log_level": "warning", "access_log": False, "timeout_keep_alive": KEEP_ALIVE,
                              "timeout_graceful_shutdown": SHUTDOWN_GRACE, "limit_concurrency": MAX_CONNECTIONS}
    try:
        if options.workers <= 1:
            config = uvicorn.Config(options.app(classifier), http=GuardedH11, **common)
            uvicorn.Server(config).run(sockets=[listener.socket])
            return
        from uvicorn.supervisors import Multiprocess

        with _worker_environment(options):
            config = uvicorn.Config(f"{__name__}:worker_app", factory=True, workers=options.workers,
                                    http="mnistctl.serve.protocol:GuardedH11", **common)
            Multiprocess(config, sockets=[listener.socket]).run()
    finally:
        listener.socket.close()


@contextmanager
def _worker_environment(options: ServeOptions) -> Iterator[None]:
    """The options, and a fresh directory for the workers' metrics, in the environment the workers
    start with; both gone afterwards."""
    saved = {k: os.environ.get(k) for k in (OPTIONS_VARIABLE, "PROMETHEUS_MULTIPROC_DIR")}
    with tempfile.TemporaryDirectory(prefix="mnistctl-metrics-") as metrics_dir:
        os.environ[OPTIONS_VARIABLE] = json.dumps(dataclasses.asdict(options))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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
