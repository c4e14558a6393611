"""The router's HTTP client side: one pooled keep-alive connection pool per backend.

This module is the router's adapter for aiohttp's client: the only place its exceptions are
caught and translated, into :class:`UpstreamError` (the backend could not be reached, closed
the connection, or sent a malformed answer: HTTP 502 to the client) and
:class:`UpstreamTimeout` (the attempt ran out of its time: 504). Their messages name the
backend and what happened, never its URL's credentials nor its API key.

Each :class:`Upstream` owns an :class:`aiohttp.ClientSession` over a
:class:`aiohttp.TCPConnector` whose size is the backend's ``max_concurrency``, so connections
are reused across requests (keep-alive) and one slow backend cannot take another's sockets.
A request's time limit is the smaller of the backend's ``timeout_s`` and what remains of the
client's deadline; it covers the whole answer, streamed bodies included, so the backend's work
ends when the client's deadline does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping

import aiohttp
from yarl import URL

from workbench.errors import BackendUnavailable, WaitTimeout
from workbench.router.config import BackendConfig

__all__ = ["Transport", "Upstream", "UpstreamError", "UpstreamResponse", "UpstreamTimeout"]

#: Sent to Anthropic's Messages API (the version whose shapes :mod:`translate` speaks).
ANTHROPIC_VERSION = "2023-06-01"


class UpstreamError(BackendUnavailable):
    """A backend could not be reached, dropped the connection or answered malformed data."""

    code = "UPSTREAM_ERROR"
    http_status = 502


class UpstreamTimeout(WaitTimeout):
    """A backend did not answer within the attempt's time limit."""

    code = "UPSTREAM_TIMEOUT"
    http_status = 504


def _translate(backend: str, exc: BaseException, timeout_s: float) -> Exception:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"backend {backend!r} did not answer within {timeout_s:.3g} s")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"backend {backend!r} refused or dropped the connection")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamError(f"backend {backend!r} closed the connection mid-answer")
    return UpstreamError(f"backend {backend!r} failed: {type(exc).__name__}")


class UpstreamResponse:
    """A backend's answer, open until :meth:`read` or the streaming loop ends (or ``close``)."""

    __slots__ = ("_backend", "_resp", "_timeout_s")

    def __init__(self, backend: str, resp: aiohttp.ClientResponse, timeout_s: float) -> None:
        self._backend = backend
        self._resp = resp
        self._timeout_s = timeout_s

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    @property
    def content_type(self) -> str:
        return self._resp.content_type

    def retry_after_s(self) -> float | None:
        """``Retry-After`` in seconds (the delay form), or None when absent or unreadable."""
        raw = self._resp.headers.get("Retry-After")
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if 0.0 <= value < 86400.0 else None

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool."""
        try:
            data = await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._resp.close()
            raise _translate(self._backend, exc, self._timeout_s) from None
        except BaseException:  # cancelled: the client went away, so must the backend's work
            self._resp.close()
            raise
        self._resp.release()
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (no buffering beyond what the socket delivered)."""
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._resp.close()
            raise _translate(self._backend, exc, self._timeout_s) from None
        except BaseException:
            self._resp.close()
            raise

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been handed out (the stream has ended)."""
        return self._resp.content.at_eof()

    def release(self) -> None:
        """Return the connection to the pool (the body was read to its end)."""
        self._resp.release()

    def close(self) -> None:
        """Drop the connection (the body was not read to its end)."""
        self._resp.close()


class Upstream:
    """One backend's connection pool and request headers.

    Args:
        config: The backend.
    """

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        url = config.url
        # Ollama's native routes hang off the server root, whatever the configured base.
        self.base = url.removesuffix("/v1") if config.kind == "ollama" else url
        self._headers = {"Content-Type": "application/json"}
        if config.api_key:
            if config.kind == "anthropic":
                self._headers["x-api-key"] = config.api_key
            else:
                self._headers["Authorization"] = f"Bearer {config.api_key}"
        if config.kind == "anthropic":
            self._headers["anthropic-version"] = ANTHROPIC_VERSION
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}  # by path: parsed once, not on every request

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_concurrency, keepalive_timeout=30.0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self._session

    def scrub(self, data: bytes) -> bytes:
        """``data`` with the backend's API key blanked out (for bodies passed to clients)."""
        key = self.config.api_key
        if key and key.encode() in data:
            return data.replace(key.encode(), b"[redacted]")
        return data

    async def post(
        self,
        path: str,
        body: bytes,
        *,
        timeout_s: float,
        request_id: str | None = None,
    ) -> UpstreamResponse:
        """Send ``body`` (JSON) to ``base + path``; returns once the status line arrived.

        Raises:
            UpstreamError: the connection failed or broke.
            UpstreamTimeout: no answer within ``timeout_s``.
        """
        headers = self._headers
        if request_id is not None:
            headers = {**headers, "x-request-id": request_id}
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(self.config.connect_timeout_s, timeout_s)
        )
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base + path)
        try:
            resp = await self._client().post(url, data=body, headers=headers, timeout=timeout)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(self.name, exc, timeout_s) from None
        return UpstreamResponse(self.name, resp, timeout_s)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Transport:
    """The upstreams of every backend, by name."""

    def __init__(self, backends: Iterable[BackendConfig]) -> None:
        self.upstreams = {b.name: Upstream(b) for b in backends}

    def __getitem__(self, name: str) -> Upstream:
        return self.upstreams[name]

    async def close(self) -> None:
        """Close every pool (at application shutdown)."""
        await asyncio.gather(*(u.close() for u in self.upstreams.values()))
