import shutil

import pytest

from workbench.errors import BackendUnavailable, InputError
from workbench.redis_adapter import RedisAdapter
from workbench.testing import throwaway_redis


def test_roundtrip_ttl_scan_and_prefix_cleanup(redis_adapter: RedisAdapter) -> None:
    key = redis_adapter.key("tree", 7)
    assert key == redis_adapter.prefix + "tree:7"
    assert redis_adapter.get(key) is None
    redis_adapter.set(key, b"\x00payload", ttl_s=30)
    assert redis_adapter.get(key) == b"\x00payload"
    ttl = redis_adapter.ttl(key)
    assert ttl is not None and 0 < ttl <= 30
    redis_adapter.set(redis_adapter.key("other"), b"x")
    assert redis_adapter.ttl(redis_adapter.key("other")) is None
    assert sorted(redis_adapter.scan("tree:*")) == [key]
    assert redis_adapter.exists(key)
    assert redis_adapter.delete_prefixed() == 2
    assert not redis_adapter.exists(key)


def test_values_must_be_bytes(redis_adapter: RedisAdapter) -> None:
    with pytest.raises(InputError, match="bytes"):
        redis_adapter.set(redis_adapter.key("k"), "text")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ttl_s"):
        redis_adapter.set(redis_adapter.key("k"), b"x", ttl_s=0)


def test_refuses_to_wipe_an_unprefixed_server(redis_url: str) -> None:
    with pytest.raises(InputError, match="without a prefix"):
        RedisAdapter(redis_url).delete_prefixed()


def test_bad_url_is_an_input_error() -> None:
    with pytest.raises(InputError, match="redis://"):
        RedisAdapter("http://127.0.0.1:6379")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_server_going_away_becomes_backend_unavailable_and_recovers_on_restart() -> None:
    with throwaway_redis() as url:
        adapter = RedisAdapter(url, prefix="fault:", timeout_s=0.5)
        adapter.set(adapter.key("a"), b"1")
        assert adapter.get(adapter.key("a")) == b"1"
    # the server is stopped now: the same adapter fails with our error, naming the fix
    with pytest.raises(BackendUnavailable, match="WORKBENCH_REDIS_URL"):
        adapter.get(adapter.key("a"))
    with throwaway_redis() as url2:
        fresh = RedisAdapter(url2, prefix="fault:", timeout_s=0.5)
        assert fresh.ping() > 0


def test_postgres_schema_fixture_isolates_and_cleans_up(postgres_url: str) -> None:
    import psycopg

    # drive the fixture's generator by hand to observe the cleanup
    from tests.conftest import postgres_schema

    gen = postgres_schema.__wrapped__(postgres_url)  # type: ignore[attr-defined]
    name = next(gen)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{name}".t (x int)')
        assert conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (name,)
        ).fetchone() == (1,)
    gen.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (name,)
        ).fetchone() == (0,)


def test_async_client_uses_the_same_server_and_error_translation(
    redis_adapter: RedisAdapter,
) -> None:
    import asyncio

    key = redis_adapter.key("async")

    async def scenario() -> bytes | None:
        client = redis_adapter.async_client()
        try:
            with redis_adapter.errors():
                await client.set(key, b"v")
                return await client.get(key)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == b"v"
    assert redis_adapter.get(key) == b"v"

    down = RedisAdapter("redis://127.0.0.1:1/0", timeout_s=0.3)

    async def failing() -> None:
        client = down.async_client()
        try:
            with down.errors():
                await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(BackendUnavailable):
        asyncio.run(failing())
