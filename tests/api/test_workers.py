"""Owner routing between workers, in one process: two apps, each with a TCP and a Unix site.

The subprocess tests of ``workbench serve --workers 2`` (tests/api/test_serve_workers.py) prove
the same over the real server; these drive the pieces directly and fast.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from workbench.api import system
from workbench.api.app import WORKER_KEY, create_app
from workbench.api.routing import ApiRequest, ApiRouter
from workbench.api.services import ServiceSpec
from workbench.api.workers import WORKER_HEADER, WorkerInfo, assign_owners, merge_metrics
from workbench.config import Settings
from workbench.testing import free_port

TOKEN = "workers-test-token"
H = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class NoConfig:
    pass


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self.closed = False
        self.saw_disconnect = False

    def close(self) -> None:
        self.closed = True


COUNTER = ServiceSpec(
    "counter", config=lambda s: NoConfig(), build=lambda c, s: Counter(), close=Counter.close
)
OTHER = ServiceSpec("other", config=lambda s: NoConfig(), build=lambda c, s: Counter())
counter_router = ApiRouter("/counter", tag="test", service=COUNTER)
other_router = ApiRouter("/other", tag="test", service=OTHER)
stateless_router = ApiRouter("/stateless", tag="test")


@stateless_router.get("/ping", summary="Served by every worker", rate_limit=6)
async def ping(req: ApiRequest) -> Any:
    return {"pong": True}


@counter_router.post("/incr", summary="Add one", rate_limit=5)
async def incr(req: ApiRequest) -> Any:
    svc = COUNTER.of(req)
    svc.value += 1
    return {"value": svc.value}


@counter_router.get("/wait", summary="Wait until the client goes away (at most 5 s)")
async def wait(req: ApiRequest) -> Any:
    svc = COUNTER.of(req)
    for _ in range(50):
        transport = req.request.transport
        if transport is None or transport.is_closing():
            svc.saw_disconnect = True
            break
        await asyncio.sleep(0.1)
    return {"waited": True}


@counter_router.get("/stream", summary="A streamed answer")
async def stream(req: ApiRequest) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(req.request)
    for i in range(3):
        await response.write(f"data: {i}\n\n".encode())
    await response.write_eof()
    return response


@other_router.post("/incr", summary="Add one")
async def other_incr(req: ApiRequest) -> Any:
    svc = OTHER.of(req)
    svc.value += 1
    return {"value": svc.value}


def test_owners_are_spread_over_the_workers() -> None:
    assert assign_owners(["a", "b", "c"], 2) == {"a": 0, "b": 1, "c": 0}
    assert assign_owners(["a", "b", "a"], 3) == {"a": 0, "b": 1}
    assert assign_owners(["a", "b"], 1) == {"a": 0, "b": 0}


@asynccontextmanager
async def two_workers() -> AsyncIterator[tuple[list[int], list[web.Application]]]:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        settings = Settings(api_token=TOKEN)
        runners, ports, apps = [], [], []
        for i in range(2):
            app = create_app(
                settings,
                routers=[system.router, counter_router, other_router, stateless_router],
                worker=WorkerInfo(i, 2, run_dir),
            )
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await web.UnixSite(runner, str(run_dir / f"worker-{i}.sock")).start()
            runners.append(runner)
            ports.append(port)
            apps.append(app)
        try:
            yield ports, apps
        finally:
            for runner in runners:
                await runner.cleanup()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_requests_reach_the_owner_and_state_is_one() -> None:
    async def scenario() -> None:
        async with two_workers() as (ports, apps), aiohttp.ClientSession() as http:
            assert COUNTER.key in apps[0] and COUNTER.key not in apps[1]
            assert OTHER.key in apps[1] and OTHER.key not in apps[0]
            values = []
            for i in range(4):
                port = ports[i % 2]
                async with http.post(f"http://127.0.0.1:{port}/counter/incr", headers=H) as r:
                    assert r.status == 200, await r.text()
                    assert r.headers[WORKER_HEADER] == "0"
                    values.append((await r.json())["data"]["value"])
                async with http.post(f"http://127.0.0.1:{port}/other/incr", headers=H) as r:
                    assert r.headers[WORKER_HEADER] == "1"
            assert values == [1, 2, 3, 4]
            assert apps[0][OTHER.config_key] == NoConfig()
            # Stateless routes are answered where they land.
            for i in range(2):
                async with http.get(f"http://127.0.0.1:{ports[i]}/health") as r:
                    assert r.headers[WORKER_HEADER] == str(i)
            # A request without the token is refused where it lands, before any hop ...
            async with http.post(f"http://127.0.0.1:{ports[1]}/counter/incr") as r:
                assert r.status == 401 and r.headers[WORKER_HEADER] == "1"
            # ... and the owner checks it too on its socket.
            sock = str(apps[0][WORKER_KEY].socket_path(0))
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as local,
                local.post("http://w/counter/incr", headers={"X-Workbench-Client": "x"}) as r,
            ):
                assert r.status == 401
            # Streams are relayed chunk by chunk.
            async with http.get(f"http://127.0.0.1:{ports[1]}/counter/stream", headers=H) as r:
                assert r.status == 200
                assert await r.text() == "data: 0\n\ndata: 1\n\ndata: 2\n\n"

    run(scenario)


def test_a_rate_limit_holds_in_total_across_workers() -> None:
    async def scenario() -> None:
        async with two_workers() as (ports, _), aiohttp.ClientSession() as http:
            statuses = []
            for i in range(12):
                async with http.post(
                    f"http://127.0.0.1:{ports[i % 2]}/counter/incr", headers=H
                ) as r:
                    statuses.append(r.status)
            # 5 a minute for this client, wherever its requests land.
            assert statuses.count(200) == 5 and statuses.count(429) == 7
            # A route every worker serves: each enforces its share, 6 / 2 workers.
            statuses = []
            for i in range(12):
                async with http.get(
                    f"http://127.0.0.1:{ports[i % 2]}/stateless/ping", headers=H
                ) as r:
                    statuses.append((r.status, r.headers[WORKER_HEADER]))
            assert [w for st, w in statuses if st == 200] == ["0", "1"] * 3

    run(scenario)


def test_metrics_cover_every_worker() -> None:
    async def scenario() -> None:
        async with two_workers() as (ports, _), aiohttp.ClientSession() as http:
            for i in range(6):
                async with http.post(f"http://127.0.0.1:{ports[i % 2]}/other/incr", headers=H) as r:
                    assert r.status == 200
            for port in ports:
                async with http.get(f"http://127.0.0.1:{port}/metrics", headers=H) as r:
                    text = await r.text()
                line = next(
                    ln
                    for ln in text.splitlines()
                    if ln.startswith("workbench_api_requests_total{")
                    and 'route="/other/incr"' in ln
                    and 'status="200"' in ln
                )
                # Counters are process-wide in this test (both apps share one registry), so
                # the merged figure is twice the process's own; in `serve` each worker is a
                # process of its own (tests/api/test_serve_workers.py).
                assert float(line.rsplit(" ", 1)[1]) >= 12

    run(scenario)


def test_an_owner_that_does_not_answer_is_a_503_naming_it() -> None:
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            app = create_app(
                Settings(api_token=TOKEN),
                routers=[system.router, counter_router],
                worker=WorkerInfo(1, 2, Path(tmp)),
            )
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(f"http://127.0.0.1:{port}/counter/incr", headers=H) as r,
                ):
                    body = await r.json()
                    assert r.status == 503, body
                    assert body["error"]["code"] == "BACKEND_UNAVAILABLE"
                    assert "worker 0" in body["error"]["message"]
                    assert "counter" in body["error"]["message"]
            finally:
                await runner.cleanup()

    run(scenario)


def test_services_are_built_at_startup_and_closed_at_cleanup() -> None:
    async def scenario() -> None:
        app = create_app(Settings(), routers=[system.router, counter_router])
        runner = web.AppRunner(app)
        await runner.setup()
        svc = app[COUNTER.key]
        assert isinstance(svc, Counter) and not svc.closed
        await runner.cleanup()
        assert svc.closed

    run(scenario)


def test_injected_services_must_be_mounted() -> None:
    with pytest.raises(ValueError, match="not mounted"):
        create_app(Settings(), routers=[counter_router], services={"nope": object()})


def test_merge_sums_counters_and_labels_gauges() -> None:
    a = (
        "# HELP workbench_x_requests_total n\n# TYPE workbench_x_requests_total counter\n"
        'workbench_x_requests_total{route="/a"} 3.0\n'
        "# HELP workbench_x_depth d\n# TYPE workbench_x_depth gauge\nworkbench_x_depth 2.0\n"
        "# HELP workbench_x_seconds s\n# TYPE workbench_x_seconds histogram\n"
        'workbench_x_seconds_bucket{le="1.0"} 1.0\nworkbench_x_seconds_bucket{le="+Inf"} 2.0\n'
        "workbench_x_seconds_count 2.0\nworkbench_x_seconds_sum 1.5\n"
    )
    b = a.replace("} 3.0", "} 4.0").replace("depth 2.0", "depth 5.0")
    text = merge_metrics([(0, a), (1, b)]).decode()
    assert 'workbench_x_requests_total{route="/a"} 7.0' in text
    assert 'workbench_x_depth{worker="0"} 2.0' in text
    assert 'workbench_x_depth{worker="1"} 5.0' in text
    assert 'workbench_x_seconds_bucket{le="+Inf"} 4.0' in text
    assert "workbench_x_seconds_sum 3.0" in text


def test_redis_rate_limits_hold_across_separate_servers(redis_url: str) -> None:
    """Two independent servers (two apps, no forwarding) sharing one Redis share one budget."""
    import uuid

    async def scenario() -> None:
        settings = Settings(
            api_token=TOKEN,
            redis_url=redis_url,
            redis_prefix=f"wbtest:{uuid.uuid4().hex[:8]}:",
            sections={"api": {"rate_limits": "redis"}},
        )
        runners, ports = [], []
        for _ in range(2):
            app = create_app(settings, routers=[system.router, stateless_router])
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
            ports.append(port)
        try:
            async with aiohttp.ClientSession(headers=H) as http:
                statuses = []
                for i in range(12):
                    async with http.get(f"http://127.0.0.1:{ports[i % 2]}/stateless/ping") as r:
                        statuses.append(r.status)
                        if r.status == 429:
                            assert int(r.headers["Retry-After"]) >= 1
            assert statuses.count(200) == 6 and statuses.count(429) == 6, statuses
        finally:
            for runner in runners:
                await runner.cleanup()
        from workbench.redis_adapter import RedisAdapter

        RedisAdapter(redis_url, prefix=settings.redis_prefix).delete_prefixed()

    run(scenario)


def test_a_redis_limiter_falls_back_to_local_buckets_when_redis_is_down() -> None:
    from workbench.api.ratelimit import RateLimiter, SharedRateLimiter
    from workbench.errors import RateLimited
    from workbench.redis_adapter import RedisAdapter

    dead = RedisAdapter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    limiter = SharedRateLimiter(dead, 60, fallback=RateLimiter(2, name="x"), name="x")
    limiter.check("c")
    limiter.check("c")
    with pytest.raises(RateLimited):
        limiter.check("c")


def test_an_unknown_rate_limit_store_is_refused() -> None:
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[api\] rate_limits"):
        create_app(Settings(sections={"api": {"rate_limits": "memcached"}}), routers=[])


def test_a_client_that_goes_away_is_seen_by_the_owner() -> None:
    async def scenario() -> None:
        async with two_workers() as (ports, apps):
            _reader, writer = await asyncio.open_connection("127.0.0.1", ports[1])
            writer.write(
                f"GET /counter/wait HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
            )
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            svc = apps[0][COUNTER.key]
            for _ in range(30):
                if svc.saw_disconnect:
                    break
                await asyncio.sleep(0.1)
            assert svc.saw_disconnect, "the owner kept serving a request nobody waits for"

    run(scenario)
