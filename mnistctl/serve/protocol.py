"""The HTTP side of ``mnistctl serve`` that uvicorn runs: its HTTP/1.1 protocol with a deadline for
a new connection's request headers and a cap on open connections, and one log line (at most every
10 s) for what a flood of connections makes happen many times a second.

Module-level, so that uvicorn can name it (``mnistctl.serve.protocol:GuardedH11``) in the worker
processes of ``serve --workers``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from mnistctl.serve.app import HEADER_TIMEOUT, MAX_CONNECTIONS


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol: a client that connects and sends nothing, or a byte at a time, is
    closed after HEADER_TIMEOUT; beyond 4 x MAX_CONNECTIONS a new connection is closed at once
    (between 1x and 4x uvicorn's ``limit_concurrency`` answers 503)."""

    deadline: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > 4 * MAX_CONNECTIONS:  # past the 503s of limit_concurrency: refuse outright
            Quiet.note("too many connections: a new one was closed")
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


class Quiet:
    """One log line, at most every 10 s, for what a flood of connections makes happen many times a
    second (accept() out of file descriptors, connections turned away), instead of a traceback each."""

    last: dict[str, float] = {}

    @classmethod
    def note(cls, what: str) -> None:
        now = time.monotonic()
        if now - cls.last.get(what, -1e9) >= 10:
            cls.last[what] = now
            logging.getLogger("mnistctl.serve").warning("mnistctl serve: %s (said at most every 10 s)", what)

    @classmethod
    def filter(cls, record: logging.LogRecord) -> bool:
        """A logging filter for asyncio's logger: its accept errors become a note."""
        text = record.getMessage()
        if "socket.accept() out of system resource" in text or "Too many open files" in text:
            cls.note("out of file descriptors: new connections wait")
            return False
        return True
