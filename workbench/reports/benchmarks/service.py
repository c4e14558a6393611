"""The HTTP service suite: requests per second of the frame against a bare aiohttp app.

Load comes from ``wrk`` (32 connections, 2 threads) on the same machine, so the generator and
the server share the cores, as they would in the LLM router's target measurement. Both servers
run as subprocesses on loopback: ``workbench serve`` answering ``GET /health`` through the whole
frame (middleware, auth, envelope, metrics) and a bare aiohttp handler returning a fixed JSON
body, which bounds what any aiohttp service can do here. Without ``wrk`` on PATH the
measurements are reported as missing (``apt-get install wrk``).

The cost of sharing state across workers is measured too: with ``--workers 2`` a request for
a stateful route (``GET /api/v1/vision/reservations``) is answered by its owner, directly when
the connection landed there and through one Unix-socket hop otherwise. Each of 16 keep-alive
connections is classified by the worker that answers its ``/health`` (always local), and the
p50 latencies of sequential requests on the direct and the forwarded connections are compared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

from workbench.reports.bench import BenchContext, Measurement
from workbench.testing import ServeProcess

__all__ = ["run"]

_TOKEN = "bench-token-0123456789"
_BARE_APP = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    BODY = b'{"success":true,"data":{"status":"healthy"}}'
    async def health(request):
        return web.Response(body=BODY, content_type="application/json")
    app = web.Application()
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
    """
)


def _wrk(url: str, seconds: int, headers: dict[str, str] | None = None) -> float:
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if not match or "Non-2xx" in out.stdout:
        raise RuntimeError(f"wrk failed: {out.stdout[-400:]} {out.stderr[-400:]}")
    return float(match.group(1))


def run(ctx: BenchContext) -> list[Measurement]:
    seconds = 2 if ctx.quick else 8
    params = {"connections": 32, "wrk_threads": 2, "seconds": seconds, "cores": os.cpu_count()}
    cases = [("aiohttp-bare", 1), ("workbench", 1), ("workbench", 2)]
    if shutil.which("wrk") is None:
        return [
            Measurement(
                f"GET /health, {w} worker(s)",
                tool,
                "requests_per_s",
                float("nan"),
                "req/s",
                params=params,
                note="wrk not on PATH: apt-get install wrk",
            )
            for tool, w in cases
        ]
    out = []
    env = dict(os.environ, WORKBENCH_API_TOKEN=_TOKEN, WORKBENCH_LOG_LEVEL="WARNING")
    for tool, workers in ctx.progress(cases, desc="service"):
        args = [sys.executable, "-c", _BARE_APP, "{port}"] if tool == "aiohttp-bare" else None
        with ServeProcess(workers=workers, env=env, args=args, stop_timeout_s=10) as server:
            server.wait_ready(("/health",), timeout_s=20, every_worker=False)
            url = server.url("/health")
            _wrk(url, 1)  # warm up
            rate = _wrk(url, seconds, {"Authorization": f"Bearer {_TOKEN}"})
        out.append(
            Measurement(
                f"GET /health, {workers} worker(s)",
                tool,
                "requests_per_s",
                rate,
                "req/s",
                params=dict(params, workers=workers),
                note="full frame: request id, size limit, auth, envelope, metrics"
                if tool == "workbench"
                else "fixed body, no middleware",
            )
        )
    out.extend(_forwarding(ctx, env))
    return out


def _forwarding(ctx: BenchContext, env: dict[str, str]) -> list[Measurement]:
    """p50 latency of a stateful route on connections that reach its owner directly and on
    those whose worker forwards to it."""
    import asyncio

    import aiohttp

    per_connection = 50 if ctx.quick else 400
    headers = {"Authorization": f"Bearer {_TOKEN}"}
    route = "/api/v1/vision/reservations"

    async def measure() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {"direct": [], "forwarded": []}
        for _ in range(16):
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
                base = server.url()
                async with http.get(f"{base}/health") as r:
                    edge = r.headers["X-Workbench-Worker"]
                async with http.get(f"{base}{route}") as r:
                    owner = r.headers["X-Workbench-Worker"]
                kind = "direct" if edge == owner else "forwarded"
                for _ in range(per_connection):
                    t0 = time.perf_counter()
                    async with http.get(f"{base}{route}") as r:
                        await r.read()
                    samples[kind].append(time.perf_counter() - t0)
        return samples

    server_env = dict(env, WORKBENCH_GPU__BACKEND="simulated")
    with ServeProcess(workers=2, env=server_env, stop_timeout_s=10) as server:
        server.wait_ready(("/health",), timeout_s=20, every_worker=False)
        samples = asyncio.run(measure())
    params = {"workers": 2, "route": route, "requests_per_connection": per_connection}
    out = []
    for kind, values in samples.items():
        values.sort()
        p50 = values[len(values) // 2] * 1e6 if values else float("nan")
        out.append(
            Measurement(
                f"stateful route, {kind}",
                "workbench",
                "p50_latency_us",
                p50,
                "us",
                better="lower",
                params=dict(params, requests=len(values)),
                note="sequential requests on keep-alive connections; forwarded ones take one "
                "Unix-socket hop to the owner worker",
            )
        )
    return out
