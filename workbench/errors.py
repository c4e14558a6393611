"""The exception and warning family of workbench.

Every error raised on purpose by workbench derives from :class:`WorkbenchError`, so callers can
catch one type. Narrow subclasses say what went wrong; messages name the field, the value and
the fix. Third-party exceptions (redis-py, psycopg, pynvml, torch) are translated into these at
the one adapter module of each library, never further in.

The HTTP layer maps each class to a status code and an error ``code`` of the platform's error
envelope through :attr:`WorkbenchError.http_status` and :attr:`WorkbenchError.code`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailable",
    "CapacityError",
    "ConfigError",
    "ConflictError",
    "InputError",
    "NotFoundError",
    "PermissionDenied",
    "RateLimited",
    "StorageFormatError",
    "UnsupportedMediaType",
    "WaitTimeout",
    "WorkbenchError",
    "WorkbenchWarning",
]


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose.

    Args:
        message: What went wrong, naming the field and value, and how to fix it.
        details: Optional machine-readable context (JSON-serialisable), shown in the
            ``details`` member of the HTTP error envelope.
        retry_after_s: When retrying may succeed, seconds from now (the HTTP layer sends it
            as ``Retry-After``); ``None`` when there is nothing to wait for.
    """

    code: str = "INTERNAL_ERROR"
    http_status: int = 500

    def __init__(
        self, message: str, *, details: Any = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after_s = None if retry_after_s is None else float(retry_after_s)


class ConfigError(WorkbenchError, ValueError):
    """A configuration value (environment variable, ``workbench.toml`` key, constructor
    argument of a config object) is invalid."""

    code = "CONFIG_ERROR"
    http_status = 500


class InputError(WorkbenchError, ValueError):
    """A caller passed an invalid argument or request field."""

    code = "VALIDATION_ERROR"
    http_status = 400


class NotFoundError(WorkbenchError, KeyError):
    """A named object (study, tree, reservation, job) does not exist."""

    code = "NOT_FOUND"
    http_status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ConflictError(WorkbenchError):
    """The request conflicts with the current state (duplicate id, released twice)."""

    code = "CONFLICT"
    http_status = 409


class PermissionDenied(WorkbenchError):
    """The caller lacks the token a route or action needs."""

    code = "FORBIDDEN"
    http_status = 403


class BackendUnavailable(WorkbenchError, ConnectionError):
    """A backing service (Redis, PostgreSQL, NVML, an upstream) cannot be reached."""

    code = "BACKEND_UNAVAILABLE"
    http_status = 503


class CapacityError(WorkbenchError):
    """A request can never fit (larger than a budget), a bounded queue is full, or capacity
    did not free up within the time the caller allowed (with ``retry_after_s``)."""

    code = "CAPACITY_EXCEEDED"
    http_status = 409


class WaitTimeout(WorkbenchError, TimeoutError):
    """A bounded wait (for capacity, a lock, an upstream) ran out of time."""

    code = "TIMEOUT"
    http_status = 504


class RateLimited(WorkbenchError):
    """A client sent more requests than its rate allows; ``retry_after_s`` says when to retry.

    Args:
        message: What was limited and how to stay under it.
        retry_after_s: Seconds until the next request would be admitted (the HTTP layer sends
            it as ``Retry-After``).
    """

    code = "RATE_LIMITED"
    http_status = 429
    retry_after_s: float

    def __init__(self, message: str, *, retry_after_s: float, details: Any = None) -> None:
        super().__init__(message, details=details, retry_after_s=retry_after_s)


class UnsupportedMediaType(WorkbenchError):
    """A request body is not in a media type the route accepts (JSON routes take
    ``application/json``)."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class StorageFormatError(WorkbenchError):
    """Saved data has an unknown version or is corrupt; nothing was loaded."""

    code = "STORAGE_FORMAT_ERROR"
    http_status = 500


class WorkbenchWarning(UserWarning):
    """Base class of the warnings workbench emits."""
