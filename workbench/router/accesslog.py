"""The router's access log: one JSON object a line per ``/v1`` request.

Off by default. ``[router] access_log = true`` logs each line at INFO on the
``workbench.router.access`` logger, through whatever logging set-up the program has
(``workbench router serve`` sends it to stderr); ``access_log = "/var/log/router.jsonl"``
appends the lines to that file instead. The file is written by a background thread, in
batches, through a bounded queue, so a slow disk never stalls a request: lines beyond the
queue are dropped and counted in ``workbench_router_access_log_dropped_total``. The file is
reopened when log rotation moves it; several ``--workers`` may share one file (each batch is
one append of whole lines).

A line holds::

    {"ts": 1764611000.123, "request_id": "…", "key": "3f2a9c1b7d04", "key_name": "TEAM_A_KEY",
     "route": "chat", "model": "m", "backend": "vllm-a", "status": 200, "attempts": 1,
     "upstream_ms": 41.7, "total_ms": 43.2, "tokens": 57, "cache": null}

``key`` is the first 12 hex digits of the SHA-256 of the client key and ``key_name`` the
environment variable it was read from; neither the key nor any request or answer body is
ever written. ``backend`` and ``upstream_ms`` are the last attempt's (``null`` when none was
made), ``tokens`` the usage the backend reported (0 when it reported none), ``cache``
``"hit"`` or ``"miss"`` when the response cache was asked (:mod:`workbench.router.response_cache`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from typing import IO, Any

import orjson

from workbench import metrics
from workbench.errors import ConfigError

__all__ = ["LOGGER_NAME", "AccessLog", "Exchange"]

#: The logger the lines go to.
LOGGER_NAME = "workbench.router.access"
#: Lines waiting for the file writer at most.
MAX_QUEUED_LINES = 10_000
#: Lines written by one ``write`` call at most.
MAX_BATCH_LINES = 1000

_DROPPED = metrics.counter(
    "workbench_router_access_log_dropped_total",
    "Access log lines dropped because the file writer fell behind",
)


class Exchange:
    """What one request did, filled in as it goes (the access log and the token charge read
    it).

    Attributes:
        t0: When the request arrived (the service's monotonic clock).
        request_id: Its ``x-request-id``.
        client: The :class:`~workbench.router.limits.ClientKey` it authenticated as.
        model: The model it asked for.
        backend: The backend of the last attempt.
        attempts: Attempts made on backends.
        upstream_s: Seconds of the last attempt.
        tokens: Usage the backend reported (``total_tokens``).
        decision: The rate limit :class:`~workbench.router.limits.Decision`, when limited.
        cache: ``"hit"`` or ``"miss"`` when the response cache was asked.
    """

    __slots__ = (
        "attempts",
        "backend",
        "cache",
        "client",
        "decision",
        "model",
        "request_id",
        "t0",
        "tokens",
        "upstream_s",
    )

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.request_id: str | None = None
        self.client: Any = None
        self.model: str | None = None
        self.backend: str | None = None
        self.attempts = 0
        self.upstream_s: float | None = None
        self.tokens = 0
        self.decision: Any = None
        self.cache: str | None = None


_STOP = b""


class _LineWriter:
    """Appends lines to a file from a thread of its own, a batch per write."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lines: queue.Queue[bytes] = queue.Queue(MAX_QUEUED_LINES)
        self._file = self._open()
        self._thread = threading.Thread(target=self._run, name="router-access-log", daemon=True)
        self._thread.start()

    def _open(self) -> IO[bytes]:
        return open(self.path, "ab")

    def put(self, line: bytes) -> None:
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            _DROPPED.inc()

    def _moved(self) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        then = os.fstat(self._file.fileno())
        return (now.st_dev, now.st_ino) != (then.st_dev, then.st_ino)

    def _run(self) -> None:
        while True:
            batch = [self._lines.get()]
            while len(batch) < MAX_BATCH_LINES:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            try:
                if self._moved():  # logrotate renamed it: start a new file at the path
                    self._file.close()
                    self._file = self._open()
                self._file.write(b"".join(batch))
                self._file.flush()
            except OSError as exc:
                logging.getLogger(__name__).warning("access log %s: %s", self.path, exc)
            if stop:
                self._file.close()
                return

    def close(self) -> None:
        with contextlib.suppress(queue.Full):
            self._lines.put(_STOP, timeout=2.0)
        self._thread.join(2.0)


class AccessLog:
    """Writes the access log lines of one router (see the module docstring).

    Args:
        target: ``True`` (the ``workbench.router.access`` logger, as configured) or a file
            path (appended to).
    """

    def __init__(self, target: bool | str) -> None:
        self.target = target
        self.logger = logging.getLogger(LOGGER_NAME)
        # A file of its own: its lines skip the logging machinery and the program's log.
        self._writer: _LineWriter | None = None
        if isinstance(target, str):
            try:
                self._writer = _LineWriter(target)
            except OSError as exc:
                raise ConfigError(
                    f"router config: access_log = {target!r} cannot be opened for appending "
                    f"({exc.strerror}); give a writable file path or true",
                    details={"field": "router.access_log"},
                ) from exc

    def write(self, route: str, status: int, ex: Exchange, now: float) -> None:
        """Log one request that ended at ``now`` (the clock of ``ex.t0``) with ``status``."""
        writer = self._writer
        if writer is None and not self.logger.isEnabledFor(logging.INFO):
            return
        client = ex.client
        line = {
            "ts": round(time.time(), 3),
            "request_id": ex.request_id,
            "key": client.id[:12] if client is not None else None,
            "key_name": client.name if client is not None else None,
            "route": route,
            "model": ex.model,
            "backend": ex.backend,
            "status": status,
            "attempts": ex.attempts,
            "upstream_ms": None if ex.upstream_s is None else round(ex.upstream_s * 1000, 3),
            "total_ms": round((now - ex.t0) * 1000, 3),
            "tokens": ex.tokens,
            "cache": ex.cache,
        }
        if writer is not None:
            writer.put(orjson.dumps(line) + b"\n")
        else:
            self.logger.info(orjson.dumps(line).decode())

    def close(self) -> None:
        """Write what is queued (waiting 2 s at most) and close the file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
