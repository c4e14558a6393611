"""A minimal aiohttp reverse proxy: the floor that the router benchmark measures ours against.

What any asyncio proxy written on aiohttp pays for one hop, and nothing else: no routing,
auth, limits, metrics, retries or logging. ``POST /v1/chat/completions`` goes to one
upstream through one pooled keep-alive session; a streamed answer is passed on chunk by chunk
as it arrives, exactly as :mod:`workbench.router.server` does; ``GET /v1/models`` passes
through (the benchmark's readiness check). With ``--workers K`` it forks K processes that
share the port (``SO_REUSEPORT``), as ``workbench router serve --workers K`` does, so the
two are compared with the same number of processes.

Hand-written because it is a yardstick, not a product: its value is in being the least that
such a proxy can do. Run as ``python -m workbench.reports.benchmarks.aiohttp_proxy
--upstream URL --port N [--workers K]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web

__all__ = ["build_app", "main"]

_JSON = "application/json"


def build_app(upstream: str) -> web.Application:
    """The proxy's application: one client session to ``upstream`` (a base URL)."""
    app = web.Application()
    base = upstream.rstrip("/")
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[session_key] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app[session_key].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {"Content-Type": "application/json"}
        async with app[session_key].post(
            base + "/v1/chat/completions", data=raw, headers=headers
        ) as up:
            if up.content_type != "text/event-stream":
                return web.Response(
                    status=up.status, body=await up.read(), content_type=up.content_type
                )
            out: web.StreamResponse | None = None
            async for data in up.content.iter_any():
                if out is None:
                    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                    await out.prepare(request)
                await out.write(data)
            if out is None:
                return web.Response(status=502, text="empty stream")
            await out.write_eof()
            return out

    async def models(request: web.Request) -> web.Response:
        async with app[session_key].get(base + "/v1/models") as up:
            return web.Response(status=up.status, body=await up.read(), content_type=_JSON)

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def _serve(upstream: str, port: int, reuse_port: bool) -> None:
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        loop_factory = None
    web.run_app(
        build_app(upstream),
        host="127.0.0.1",
        port=port,
        reuse_port=reuse_port,
        print=None,
        access_log=None,
        handle_signals=True,
        loop=loop_factory() if loop_factory else None,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: ``--upstream URL --port N [--workers K]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the backend's base URL")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, choices=range(1, 65), metavar="K")
    args = parser.parse_args(argv)
    if args.workers == 1:
        _serve(args.upstream, args.port, reuse_port=False)
        return
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_serve, args=(args.upstream, args.port, True))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()


if __name__ == "__main__":
    main()
