"""``GET /metrics`` of ``mnistctl serve``, in Prometheus's text format (prometheus-client).

Requests by route, method and status; their latency; predictions by class; unsure answers; the
model being served. Several worker processes (``serve --workers``) write their figures into the
directory named by ``PROMETHEUS_MULTIPROC_DIR``, which ``serve`` sets for them, and each answer to
``/metrics`` adds up all the workers' (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

from mnistctl import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)


class Metrics:
    """The server's figures, each kept by this process (and added up over the workers when there
    are several). ``routes``: the paths counted by name; any other path counts as ``other``."""

    def __init__(self, routes: list[str], source: str, backend: str) -> None:
        self.routes = set(routes)
        self.shared = MULTIPROC_DIR in os.environ
        own = CollectorRegistry()  # never the global one: a process may make several apps (tests)
        self.requests = Counter("mnistctl_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=own)
        self.latency = Histogram("mnistctl_http_request_duration_seconds", "Time to answer a request, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=own)
        self.predictions = Counter("mnistctl_predictions", "Digits read, by the class predicted", ["label"],
                                   registry=own)
        self.unsure = Counter("mnistctl_unsure_predictions", "Digits read with an unsure mark", registry=own)
        self.errors = Counter("mnistctl_unreadable_pictures", "Uploads that could not be read as a picture",
                              registry=own)
        info = Gauge("mnistctl_model_info", "The model served (always 1)", ["source", "backend", "version"],
                     registry=own, multiprocess_mode="max")
        info.labels(source, backend, __version__).set(1)
        self.registry = own

    def route(self, path: str) -> str:
        return path if path in self.routes else "other"

    def request(self, path: str, method: str, status: int, seconds: float) -> None:
        route = self.route(path)
        self.requests.labels(route, method if method in ("GET", "HEAD", "POST") else "other", str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def prediction(self, label: str | None, unsure: bool) -> None:
        if label is None:
            self.errors.inc()
            return
        self.predictions.labels(label).inc()
        if unsure:
            self.unsure.inc()

    def exposition(self) -> bytes:
        """The text ``GET /metrics`` answers: every worker's figures added up, or this process's."""
        if not self.shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
