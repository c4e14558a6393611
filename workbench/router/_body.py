"""Reading a client's request body under a size limit (the proxy and the platform routes).

``StreamReader.read(n)`` returns what has arrived so far, not ``n`` bytes: a body larger than
one socket read (about 128 KiB on loopback) comes back cut, and parses as malformed JSON.
With a ``Content-Length`` the body is read exactly (one call, the common case); a chunked
body is read until its end, stopping as soon as it passes the limit.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["BodyTooLarge", "read_limited"]


class BodyTooLarge(Exception):
    """The body passed the limit; ``size`` is its length, or what was read of it."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes.

    Raises:
        BodyTooLarge: it is (or announces itself as) longer than ``limit``.
        ConnectionError, asyncio.IncompleteReadError: the client went away mid-body.
    """
    length = request.content_length
    if length is not None:
        if length > limit:
            raise BodyTooLarge(length)
        return await request.content.readexactly(length) if length else b""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)
