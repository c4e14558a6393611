"""The cache coordinator's domain service (:mod:`workbench.cache.service`) on real Redis.

Each test uses its own key prefix on the shared Redis and deletes everything under it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from workbench.cache.service import CacheService, CacheServiceConfig
from workbench.config import Settings
from workbench.errors import BackendUnavailable, CapacityError, ConfigError, InputError
from workbench.redis_adapter import RedisAdapter

T = TypeVar("T")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    p = f"wbtest:{uuid.uuid4().hex[:12]}:"
    yield p
    RedisAdapter(redis_url, prefix=p).delete_prefixed()


def run(
    config: CacheServiceConfig, url: str, prefix: str, scenario: Callable[[CacheService], Any]
) -> Any:
    """Run ``scenario(service)`` on a fresh service in a fresh event loop, then close it."""

    async def main() -> Any:
        service = CacheService(config, redis_url=url, redis_prefix=prefix)
        try:
            return await scenario(service)
        finally:
            await service.aclose()

    return asyncio.run(main())


def test_defaults_are_the_platforms() -> None:
    c = CacheServiceConfig()
    assert c.default_ttl_s == 3600 and c.local_ttl_s == 300 and c.two_tier
    assert c.serializer == "json" and not c.strict
    assert c.namespace_memory_bytes == c.memory_bytes // c.max_services


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"serializer": "pickle"}, "cache.serializer"),
        ({"max_services": 0}, "cache.max_services"),
        ({"max_key_length": 5000}, "cache.max_key_length"),
        ({"default_ttl_s": 100, "max_ttl_s": 10}, "cache.default_ttl_s"),
        ({"memory_bytes": 2**20}, "cache.memory_bytes"),
        ({"url": "http://x"}, "cache.url"),
        ({"outage_writes": "keep"}, "cache.outage_writes"),
        ({"bogus": 1}, "cache.bogus"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        CacheServiceConfig.from_settings(Settings(sections={"cache": section}))
    assert info.value.details == {"key": key}


def test_settings_pick_the_redis_url_and_prefix() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_prefix="p:")
    service = CacheService.from_settings(CacheServiceConfig(), settings)
    assert service.url == "redis://127.0.0.1:1/0" and service.key_prefix == "p:cache:"
    own = CacheServiceConfig.from_section({"url": "memory://", "two_tier": "false"})
    assert CacheService.from_settings(own, settings).url is None and not own.two_tier


def test_keys_live_at_cache_service_key(redis_url: str, prefix: str) -> None:
    config = CacheServiceConfig(two_tier=False)

    async def scenario(svc: CacheService) -> None:
        ttl = await svc.set("billing", "a/b c", {"x": [1, 2]}, 60)
        assert ttl == 60.0
        assert await svc.get("billing", "a/b c") == (True, {"x": [1, 2]})
        assert await svc.get("other", "a/b c") == (False, None)
        assert await svc.set("billing", "plain", None) == 3600.0  # the default TTL

    run(config, redis_url, prefix, scenario)
    raw = RedisAdapter(redis_url, prefix=prefix)
    data = raw.get(f"{prefix}cache:billing:a/b c")
    assert data is not None and data[2:] == b'{"x":[1,2]}'  # tagged JSON, never pickle
    ttl = raw.ttl(f"{prefix}cache:billing:a/b c")
    assert ttl is not None and 50 < ttl <= 60
    ttl = raw.ttl(f"{prefix}cache:billing:plain")
    assert ttl is not None and 3500 < ttl <= 3600


def test_batch_invalidate_warm_and_flush(redis_url: str, prefix: str) -> None:
    async def scenario(svc: CacheService) -> None:
        warmed = await svc.warm("s", {"user:1": 1, "user:2": 2, "item:1": "x"}, ttl=60)
        assert warmed.count == 3 and warmed.ttl_s == 60.0
        got = await svc.get_many("s", ["user:1", "user:2", "nope", "user:1"])
        assert got == {"user:1": 1, "user:2": 2}
        done = await svc.invalidate("s", keys=["item:1", "nope"])
        assert done.deleted == 1 and done.complete
        done = await svc.invalidate("s", prefix="user:")
        assert done.deleted == 2 and done.complete
        assert await svc.get_many("s", ["user:1", "user:2", "item:1"]) == {}
        await svc.warm("s", {"k": 1})
        assert await svc.flush("s") == 1

    run(CacheServiceConfig(), redis_url, prefix, scenario)


def test_every_input_is_bounded_with_the_field_named(redis_url: str, prefix: str) -> None:
    config = CacheServiceConfig(max_key_length=8, max_batch_keys=3, max_warm_items=2)

    async def scenario(svc: CacheService) -> list[str]:
        fields = []
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: svc.get("s", "k" * 9),
            lambda: svc.get("s", ""),
            lambda: svc.set("s", "k", 1, ttl=0),
            lambda: svc.set("s", "k", 1, ttl=31 * 86400),
            lambda: svc.set("s", "k", "x" * (2**20)),
            lambda: svc.set("s", "k", 2**70),
            lambda: svc.get_many("s", ["a", "b", "c", "d"]),
            lambda: svc.get_many("s", ["a", "k" * 9]),
            lambda: svc.warm("s", {"a": 1, "b": 2, "c": 3}),
            lambda: svc.warm("s", {"a": 1, "b": "x" * (2**20)}),
            lambda: svc.invalidate("s"),
            lambda: svc.get("bad name", "k"),
            lambda: svc.get_many("", ["a"], field="service"),
        ]
        for attempt in attempts:
            with pytest.raises(InputError) as info:
                await attempt()
            fields.append(info.value.details["field"])
        # all or nothing: the valid first item of the refused warm was not written
        assert await svc.get("s", "a") == (False, None)
        return fields

    fields = run(config, redis_url, prefix, scenario)
    assert fields == [
        "key",
        "key",
        "ttl",
        "ttl",
        "value",
        "value",
        "keys",
        "keys.1",
        "data",
        "data.b",
        "pattern",
        "X-Service-Type",
        "service",
    ]


def test_namespaces_are_bounded(redis_url: str, prefix: str) -> None:
    config = CacheServiceConfig(max_services=3)

    async def scenario(svc: CacheService) -> None:
        await svc.set("a", "k", 1)
        await svc.set("b", "k", 1)  # "default" is the third, made at start
        with pytest.raises(CapacityError) as info:
            await svc.set("c", "k", 1)
        assert info.value.details["field"] == "X-Service-Type"
        assert svc.services() == ["default", "a", "b"]
        assert await svc.get("a", "k") == (True, 1)  # existing ones still serve

    run(config, redis_url, prefix, scenario)


def test_an_outage_is_served_from_memory_and_reported() -> None:
    """Redis gone: writes and reads answer from the memory tier, health says degraded, and a
    prefix invalidation says it reached only local keys. Strict mode raises instead."""
    from workbench.testing import RedisServer

    config = CacheServiceConfig(timeout_s=0.2, open_s=0.2)
    with RedisServer() as server:

        async def scenario(svc: CacheService) -> None:
            await svc.set("s", "before", 1)
            assert (await svc.health())["healthy"]
            server.stop()
            await svc.set("s", "during", {"v": 2})
            assert await svc.get("s", "during") == (True, {"v": 2})
            health = await svc.health()
            assert health["degraded"] and health["status"] == "degraded"
            assert health["mode"] == "fallback" and health["fallback_active"]
            assert "s" in health["fallback_services"] or "default" in health["fallback_services"]
            done = await svc.invalidate("s", prefix="dur")
            assert not done.complete and done.mode == "fallback"
            res = svc.resilience("s")
            assert res["outages"] == 1 and res["fallback_active"]
            assert res["breaker"]["state"] in ("OPEN", "HALF_OPEN")

        run(config, server.url, "", scenario)

        strict = CacheServiceConfig(timeout_s=0.2, strict=True)

        async def refused(svc: CacheService) -> None:
            with pytest.raises(BackendUnavailable):
                await svc.set("s", "k", 1)

        run(strict, server.url, "", refused)


def test_the_memory_backend_needs_no_redis() -> None:
    async def scenario(svc: CacheService) -> dict[str, Any]:
        await svc.set("s", "k", [1])
        assert await svc.get("s", "k") == (True, [1])
        assert (await svc.health())["mode"] == "memory"
        return dict(await svc.overview())

    out = run(CacheServiceConfig(url="memory://"), "redis://unused:1/0", "", scenario)
    assert out["backend"] == "memory" and out["namespaces"] == {"default": 0, "s": 1}


def test_a_warm_file_is_loaded_at_start(redis_url: str, tmp_path: Path) -> None:
    import json as _json

    from workbench.api.cache import SERVICE

    prefix = f"wbtest:{uuid.uuid4().hex[:12]}:"
    manifest = tmp_path / "warm.jsonl"
    manifest.write_text(
        "\n".join(_json.dumps({"key": f"k{i}", "value": {"n": i}}) for i in range(5)) + "\n"
    )
    settings = Settings(
        redis_url=redis_url,
        redis_prefix=prefix,
        sections={"cache": {"warm_file": str(manifest), "warm_service": "pre"}},
    )
    try:
        service = SERVICE.build(SERVICE.config(settings), settings)
        raw = RedisAdapter(redis_url, prefix=prefix)
        assert sorted(raw.scan("cache:pre:*")) == sorted(
            f"{prefix}cache:pre:k{i}" for i in range(5)
        )
        asyncio.run(service.aclose())
    finally:
        RedisAdapter(redis_url, prefix=prefix).delete_prefixed()
    bad = Settings(redis_url=redis_url, sections={"cache": {"warm_file": str(tmp_path / "no")}})
    with pytest.raises(ConfigError, match="warm_file"):
        SERVICE.build(SERVICE.config(bad), bad)
