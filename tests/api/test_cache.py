"""HTTP routes of the cache coordinator (/api/v1/cache) on real Redis servers.

Tests on the shared Redis use a key prefix of their own and delete everything under it; the
outage test runs its own redis-server and stops it.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.api.conftest import bearer, run_with_client
from workbench.api import cache as cache_api
from workbench.api import system
from workbench.api.app import ROUTER_MODULES, create_app
from workbench.api.workers import WORKER_HEADER, WorkerInfo, assign_owners
from workbench.config import Settings
from workbench.redis_adapter import RedisAdapter
from workbench.testing import RedisServer, free_port

TOKEN = "api-token-123"
ADMIN = "admin-token-456"
H = bearer(TOKEN)
A = bearer(ADMIN)
P = "/api/v1/cache"


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    p = f"wbtest:{uuid.uuid4().hex[:12]}:"
    yield p
    RedisAdapter(redis_url, prefix=p).delete_prefixed()


def settings(url: str, prefix: str = "", **cache: Any) -> Settings:
    return Settings(
        api_token=TOKEN,
        admin_token=ADMIN,
        redis_url=url,
        redis_prefix=prefix,
        sections={"cache": cache},
    )


def app_for(s: Settings) -> web.Application:
    return create_app(s, routers=[system.router, cache_api.router])


async def call(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    url = URL(P + path, encoded=True)
    r = await client.request(method, url, json=body, headers={**H, **(headers or {})})
    return r.status, await r.json()


def test_mounted_by_default_and_served_by_every_worker() -> None:
    assert "workbench.api.cache" in ROUTER_MODULES
    assert getattr(cache_api.SERVICE, "per_worker", False)
    assert assign_owners(["a", "cache", "b"], 2, shared=["cache"]) == {"a": 0, "b": 1}


def test_set_get_delete_with_the_platforms_key_scheme(redis_url: str, prefix: str) -> None:
    async def scenario(client: TestClient) -> None:
        svc = {"X-Service-Type": "billing"}
        status, body = await call(client, "POST", "/a%2Fb%20c", {"value": {"x": 1}, "ttl": 60}, svc)
        assert status == 200 and body["data"] == {"key": "a/b c", "service": "billing", "ttl": 60}
        assert body["metadata"]["message"] == "cached"
        status, body = await call(client, "GET", "/a%2Fb%20c", headers=svc)
        assert status == 200 and body["data"]["value"] == {"x": 1}
        status, _ = await call(client, "GET", "/a%2Fb%20c")  # the default service
        assert status == 404
        status, body = await call(client, "DELETE", "/a%2Fb%20c", headers={**svc, **A})
        assert status == 200 and body["data"]["deleted"] is True
        status, body = await call(client, "GET", "/a%2Fb%20c", headers=svc)
        assert status == 404 and body["error"]["details"] == {"field": "key"}

    raw = RedisAdapter(redis_url)
    with_value: list[bool] = []

    async def check(client: TestClient) -> None:
        await call(client, "POST", "/k", {"value": [1]}, {"X-Service-Type": "svc"})
        with_value.append(raw.exists(f"{prefix}cache:svc:k"))

    run_with_client(app_for(settings(redis_url, prefix)), scenario)
    run_with_client(app_for(settings(redis_url, prefix)), check)
    assert with_value == [True]


def test_batch_warm_invalidate_stats_resilience(redis_url: str, prefix: str) -> None:
    async def scenario(client: TestClient) -> None:
        status, body = await call(
            client, "POST", "/warm", {"service": "s", "data": {"u:1": 1, "u:2": 2, "i": 3}}, A
        )
        assert status == 200 and body["data"]["count"] == 3
        status, body = await call(
            client, "POST", "/batch", {"keys": ["u:1", "i", "x"]}, {"X-Service-Type": "s"}
        )
        assert status == 200
        assert body["data"]["values"] == {"u:1": 1, "i": 3} and body["data"]["missing"] == ["x"]
        status, body = await call(
            client, "POST", "/invalidate", {"pattern": "i", "service": "s"}, A
        )
        assert status == 200 and body["data"]["deleted"] == 1
        status, body = await call(
            client, "POST", "/invalidate", {"prefix": "u:", "service": "s"}, A
        )
        assert status == 200 and body["data"]["deleted"] == 2 and body["data"]["complete"]
        status, body = await call(client, "POST", "/batch", {"keys": ["u:1", "i"], "service": "s"})
        assert body["data"]["values"] == {}
        status, body = await call(client, "GET", "/stats", headers={"X-Service-Type": "s"})
        assert status == 200 and body["data"]["service"] == "s" and body["data"]["hits"] == 2
        status, body = await call(client, "GET", "/resilience", headers={"X-Service-Type": "s"})
        assert status == 200 and body["data"]["breaker"]["state"] == "CLOSED"
        assert body["data"]["outages"] == 0
        r = await client.get(P + "/health")  # public
        health = (await r.json())["data"]
        assert r.status == 200 and health["healthy"] and health["status"] == "healthy"
        assert health["latency_ms"] >= 0 and health["mode"] == "two-tier"

    run_with_client(app_for(settings(redis_url, prefix)), scenario)


def test_destructive_routes_need_the_admin_token(redis_url: str, prefix: str) -> None:
    async def scenario(client: TestClient) -> None:
        for method, path, body in [
            ("DELETE", "/k", None),
            ("POST", "/invalidate", {"pattern": "k"}),
            ("POST", "/warm", {"data": {"k": 1}}),
        ]:
            status, _ = await call(client, method, path, body)
            assert status == 403, path
        r = await client.get(P + "/k")
        assert r.status == 401

    run_with_client(app_for(settings(redis_url, prefix)), scenario)


def test_bad_inputs_are_4xx_naming_the_field(redis_url: str, prefix: str) -> None:
    async def scenario(client: TestClient) -> list[tuple[int, Any]]:
        out = []
        for method, path, body, headers in [
            ("GET", "/k", None, {"X-Service-Type": "no spaces"}),
            ("POST", "/batch", {"keys": ["a"], "service": "x" * 65}, {}),
            ("GET", "/" + "k" * 20, None, {}),
            ("POST", "/k", {"ttl": 5}, {}),
            ("POST", "/k", {"value": 1, "ttl": 0}, {}),
            ("POST", "/k", {"value": 1, "ttl": "5"}, {}),
            ("POST", "/k", {"value": "x" * 3000}, {}),
            ("POST", "/batch", {"keys": [str(i) for i in range(6)]}, {}),
            ("POST", "/warm", {"data": {str(i): i for i in range(6)}}, A),
            ("POST", "/invalidate", {"service": "s"}, A),
        ]:
            status, got = await call(client, method, path, body, headers)
            details = got["error"]["details"]
            out.append((status, details if isinstance(details, dict) else details[0]["field"]))
        return out

    s = settings(
        redis_url,
        prefix,
        max_key_length=16,
        max_value_bytes=2048,
        max_batch_keys=5,
        max_warm_items=5,
    )
    got = run_with_client(app_for(s), scenario)
    fields = [d["field"] if isinstance(d, dict) else d for _, d in got]
    assert all(status == 400 for status, _ in got), got
    assert fields == [
        "X-Service-Type",
        "service",
        "key",
        "value",
        "ttl",
        "ttl",
        "value",
        "keys",
        "data",
        "body",
    ]


def test_a_stopped_redis_still_answers_200_and_health_says_degraded() -> None:
    """The throwaway server is stopped: writes and reads answer 200 from the worker's memory
    tier, health (still 200) says degraded with mode fallback; once it is back, the write made
    during the outage is in Redis and health is healthy again."""
    with RedisServer() as server:
        s = settings(server.url, timeout_s=0.2, open_s=0.2)

        async def scenario(client: TestClient) -> None:
            status, _ = await call(client, "POST", "/before", {"value": 1})
            assert status == 200
            server.stop()
            status, body = await call(client, "POST", "/during", {"value": {"v": 2}})
            assert status == 200, body
            status, body = await call(client, "GET", "/during")
            assert status == 200 and body["data"]["value"] == {"v": 2}
            status, body = await call(client, "POST", "/batch", {"keys": ["during"]})
            assert status == 200 and body["data"]["values"] == {"during": {"v": 2}}
            r = await client.get(P + "/health")
            health = (await r.json())["data"]
            assert r.status == 200 and health["degraded"] and health["mode"] == "fallback"
            assert health["status"] == "degraded" and not health["healthy"]
            status, body = await call(client, "GET", "/resilience")
            assert status == 200 and body["data"]["outages"] == 1
            assert body["data"]["journal"]["keys"] >= 1

            server.start()
            deadline = asyncio.get_running_loop().time() + 5
            while True:  # recovery is attempted by the first call after open_s
                r = await client.get(P + "/health")
                if (await r.json())["data"]["healthy"]:
                    break
                assert asyncio.get_running_loop().time() < deadline, "Redis not used again"
                await asyncio.sleep(0.05)
            status, body = await call(client, "GET", "/during")
            assert status == 200 and body["data"]["value"] == {"v": 2}

        run_with_client(app_for(s), scenario)
        assert RedisAdapter(server.url).exists("cache:default:during")  # replayed


def test_two_workers_each_serve_the_cache_from_one_redis(redis_url: str, prefix: str) -> None:
    """No owner: each worker answers the cache routes itself, and a write through one is read
    through the other (the contents are in Redis)."""

    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            runners, ports = [], []
            for i in range(2):
                app = create_app(
                    settings(redis_url, prefix),
                    routers=[system.router, cache_api.router],
                    worker=WorkerInfo(i, 2, Path(tmp)),
                )
                runner = web.AppRunner(app)
                await runner.setup()
                port = free_port()
                await web.TCPSite(runner, "127.0.0.1", port).start()
                await web.UnixSite(runner, str(Path(tmp) / f"worker-{i}.sock")).start()
                runners.append(runner)
                ports.append(port)
            try:
                from aiohttp import ClientSession

                async with ClientSession() as http:
                    base = [f"http://127.0.0.1:{p}{P}" for p in ports]
                    async with http.post(base[0] + "/shared", json={"value": 7}, headers=H) as r:
                        assert r.status == 200 and r.headers[WORKER_HEADER] == "0"
                    async with http.get(base[1] + "/shared", headers=H) as r:
                        assert r.status == 200 and r.headers[WORKER_HEADER] == "1"
                        assert (await r.json())["data"]["value"] == 7
            finally:
                for runner in runners:
                    await runner.cleanup()

    asyncio.run(scenario())


def test_route_names_are_reserved_keys_reachable_through_batch(redis_url: str, prefix: str) -> None:
    async def scenario(client: TestClient) -> None:
        r = await client.post(P + "/stats", json={"value": 1}, headers=H)
        assert r.status == 405 and r.headers["Allow"] == "GET"
        r = await client.options(P + "/warm", headers=H)
        assert r.status == 405 and r.headers["Allow"] == "POST"
        status, _ = await call(client, "POST", "/warm", {"data": {"stats": 1, "batch": 2}}, A)
        assert status == 200
        status, body = await call(client, "POST", "/batch", {"keys": ["stats", "batch"]})
        assert body["data"]["values"] == {"stats": 1, "batch": 2}
        status, body = await call(client, "GET", "/stats%2Fx")  # only the exact name is taken
        assert status == 404 and "stats/x" in body["error"]["message"]

    run_with_client(app_for(settings(redis_url, prefix)), scenario)


def test_invalidate_by_tag_removes_what_cached_stored_under_it(redis_url: str, prefix: str) -> None:
    from workbench.api.cache import SERVICE
    from workbench.cache import cached

    async def scenario(client: TestClient) -> None:
        ns = SERVICE.of(client).namespace("s")  # the worker's cache of service "s"

        @cached(ns, ttl=60, tags=lambda user: (f"user:{user}",))
        async def profile(user: str) -> dict[str, str]:
            return {"user": user}

        await profile("ann")
        await profile("bob")
        assert len(await ns.keys()) >= 2
        status, body = await call(
            client, "POST", "/invalidate", {"tags": ["user:ann"], "service": "s"}, A
        )
        assert status == 200 and body["data"]["deleted"] == 1, body
        assert body["data"]["tags"] == ["user:ann"] and body["data"]["complete"]
        status, body = await call(
            client, "POST", "/invalidate", {"tags": ["user:bob"], "service": "s"}, A
        )
        assert status == 200 and body["data"]["deleted"] == 1
        status, body = await call(client, "POST", "/invalidate", {"tags": [], "service": "s"}, A)
        assert status == 400

    run_with_client(app_for(settings(redis_url, prefix)), scenario)
