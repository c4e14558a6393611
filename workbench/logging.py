"""Logging set-up for the command line and the service.

Library code only calls ``logging.getLogger(__name__)``; this module configures handlers for
programs (the CLI and ``workbench serve``) and never runs on import.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str | int = "INFO", *, json_lines: bool = False) -> None:
    """Send workbench's log records to stderr.

    Args:
        level: A level name (``"DEBUG"``) or number.
        json_lines: Emit one JSON object a line (for log shippers) instead of text.
    """
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("workbench")
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    root.propagate = False
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in server.filters):
        server.addFilter(_MalformedRequestFilter())


class _MalformedRequestFilter(logging.Filter):
    """aiohttp answers a request it cannot parse (a NUL byte in a header, a bad request line)
    with 400 itself, then logs the parser's traceback at ERROR. That is the client's fault,
    not the server's: keep one line, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc, HttpProcessingError):
            record.msg = f"malformed request answered 400: {exc!s}".replace("\n", " ")[:300]
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        payload = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)
