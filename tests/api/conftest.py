"""Helpers to drive the aiohttp app in-process (no pytest-asyncio needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

T = TypeVar("T")


def run_with_client(app: web.Application, scenario: Callable[[TestClient], Awaitable[T]]) -> T:
    """Start ``app`` on a loopback port, run ``scenario(client)``, shut everything down."""

    async def main() -> T:
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            return await scenario(client)
        finally:
            await client.close()

    return asyncio.run(main())


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
