from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import pytest

from workbench.errors import BackendUnavailable, ConflictError, InputError
from workbench.redis_adapter import RedisAdapter
from workbench.testing import RedisServer, throwaway_redis


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


def test_scan_yields_each_key_once_when_the_table_is_rebuilt_mid_scan() -> None:
    """SCAN may return a key twice when the keyspace's hash table shrinks between two
    rounds (Redis documents this); ``scan`` must still yield every key once.

    Made deterministic: 2,000 keys fill a 2,048-bucket table, and SCAN's reverse-binary
    cursor visits the buckets whose low three bits are 000 first, so the first 200 keys all
    come from those. All but four of them are deleted and ``DEBUG RELOAD`` rebuilds the
    table at four buckets: the cursor's next bucket is bucket 0, which now holds the four
    keys already returned, and SCAN returns them again.
    """
    with RedisServer(extra_args=["--enable-debug-command", "yes"]) as server:
        adapter = RedisAdapter(server.url, prefix="wbscan:")
        written = {adapter.key("k", i) for i in range(2000)}
        adapter.client.mset(dict.fromkeys(written, b"x"))
        keys = adapter.scan("k:*", count=10)
        seen = [next(keys) for _ in range(200)]
        adapter.delete(*(written - set(seen[:4])))
        adapter.client.execute_command("DEBUG", "RELOAD")
        rest = list(keys)  # may hold a few deleted keys the last round fetched before
        assert len(seen + rest) == len(set(seen + rest))


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


def test_registered_script_runs_by_sha_is_cached_and_survives_a_flush(
    redis_adapter: RedisAdapter,
) -> None:
    source = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    run = redis_adapter.script(source)
    key = redis_adapter.key("counter")
    assert run([key], [2]) == 2
    assert redis_adapter.script(source) is run  # registered once per adapter
    redis_adapter.client.script_flush()
    assert run([key], [3]) == 5  # NOSCRIPT is answered by loading it again
    assert redis_adapter.eval_script(source, [key], [1]) == 6


def test_script_errors_translate(redis_adapter: RedisAdapter) -> None:
    with pytest.raises(BackendUnavailable, match="refused a command"):
        redis_adapter.eval_script("return redis.call('NO_SUCH_COMMAND')")
    with pytest.raises(BackendUnavailable, match="out of stock"):
        redis_adapter.eval_script("return redis.error_reply('out of stock')")
    with pytest.raises(InputError, match="Lua source"):
        redis_adapter.script("  ")


def test_cas_under_contention_loses_no_update(redis_adapter: RedisAdapter) -> None:
    key = redis_adapter.key("cas")
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def increment(current: bytes | None) -> bytes:
        return str(int(current or b"0") + 1).encode()

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(50):
                redis_adapter.cas(key, increment)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    assert redis_adapter.get(key) == b"400"


def test_cas_keeps_or_sets_expiry_deletes_on_none_and_gives_up_with_a_conflict(
    redis_adapter: RedisAdapter,
) -> None:
    key = redis_adapter.key("cas")
    assert redis_adapter.cas(key, lambda cur: b"a" if cur is None else cur + b"!", ttl_s=30) == b"a"
    assert redis_adapter.cas(key, lambda cur: (cur or b"") + b"b") == b"ab"
    ttl = redis_adapter.ttl(key)
    assert ttl is not None and 25 < ttl <= 30  # kept through the second write
    assert redis_adapter.cas(key, lambda cur: None) is None
    assert not redis_adapter.exists(key)

    attempts = 0

    def interfering(current: bytes | None) -> bytes:
        nonlocal attempts
        attempts += 1
        redis_adapter.set(key, str(attempts).encode())  # another writer, every time
        return b"mine"

    with pytest.raises(ConflictError, match="4 compare-and-swap attempts") as info:
        redis_adapter.cas(key, interfering, retries=3)
    assert attempts == 4
    assert info.value.details == {"key": key, "attempts": 4}
    assert redis_adapter.get(key) == b"4"
    with pytest.raises(InputError, match="bytes or None"):
        redis_adapter.cas(key, lambda cur: "text")  # type: ignore[arg-type,return-value]


def test_set_if_version_refuses_a_stale_version(redis_adapter: RedisAdapter) -> None:
    key = redis_adapter.key("study")
    assert redis_adapter.get_versioned(key) == (None, 0)
    assert redis_adapter.set_if_version(key, b"v1", 0) == 1
    assert redis_adapter.set_if_version(key, b"again", 0) is None  # created already
    assert redis_adapter.set_if_version(key, b"v2", 1, ttl_s=60) == 2
    assert redis_adapter.set_if_version(key, b"stale", 1) is None
    assert redis_adapter.get_versioned(key) == (b"v2", 2)
    ttl = redis_adapter.ttl(key)
    assert ttl is not None and 55 < ttl <= 60
    with pytest.raises(InputError, match="expected_version"):
        redis_adapter.set_if_version(key, b"x", -1)
    with pytest.raises(InputError, match="bytes"):
        redis_adapter.set_if_version(key, "x", 2)  # type: ignore[arg-type]


def test_set_versioned_overwrites_and_refuses_writers_of_the_old_version(
    redis_adapter: RedisAdapter,
) -> None:
    key = redis_adapter.key("owned")
    assert redis_adapter.set_versioned(key, b"first") == 1  # a new key
    assert redis_adapter.ttl(key) is None
    assert redis_adapter.set_if_version(key, b"cas", 1) == 2
    assert redis_adapter.set_versioned(key, b"forced", ttl_s=60) == 3
    assert redis_adapter.set_if_version(key, b"stale", 2) is None  # read before the overwrite
    assert redis_adapter.get_versioned(key) == (b"forced", 3)
    ttl = redis_adapter.ttl(key)
    assert ttl is not None and 55 < ttl <= 60
    assert redis_adapter.set_versioned(key, b"kept") == 4
    ttl = redis_adapter.ttl(key)
    assert ttl is not None and 55 < ttl <= 60  # None keeps the expiry
    with pytest.raises(InputError, match="bytes"):
        redis_adapter.set_versioned(key, "x")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ttl_s"):
        redis_adapter.set_versioned(key, b"x", ttl_s=0)


def test_token_bucket_on_a_driven_clock(redis_adapter: RedisAdapter) -> None:
    key = redis_adapter.key("rate", "client-a")
    now = 1_000.0
    results = [redis_adapter.take_token(key, 2.0, 5, now=now) for _ in range(5)]
    assert results == [(True, 0.0)] * 5
    allowed, retry_after = redis_adapter.take_token(key, 2.0, 5, now=now)
    assert not allowed and retry_after == pytest.approx(0.5)
    allowed, retry_after = redis_adapter.take_token(key, 2.0, 5, now=now + 0.25)
    assert not allowed and retry_after == pytest.approx(0.25)
    assert redis_adapter.take_token(key, 2.0, 5, now=now + 0.5) == (True, 0.0)
    # the key lives exactly until the bucket would be full again (5 tokens at 2/s)
    ttl = redis_adapter.ttl(key)
    assert ttl is not None and 2.0 < ttl <= 2.5
    # a clock that steps back refills nothing
    assert redis_adapter.take_token(key, 2.0, 5, now=now)[0] is False
    with pytest.raises(InputError, match="burst"):
        redis_adapter.take_token(key, 1.0, 0.5)
    with pytest.raises(InputError, match="rate_per_s"):
        redis_adapter.take_token(key, 0.0, 5)


def test_token_bucket_on_the_server_clock(redis_adapter: RedisAdapter) -> None:
    key = redis_adapter.key("rate", "client-b")
    assert all(redis_adapter.take_token(key, 10.0, 3)[0] for _ in range(3))
    allowed, retry_after = redis_adapter.take_token(key, 10.0, 3)
    assert not allowed and 0.0 < retry_after <= 0.1
    time.sleep(retry_after + 0.02)  # real time: the server's clock is the one under test
    assert redis_adapter.take_token(key, 10.0, 3)[0] is True


def _take_tokens(
    url: str, prefix: str, key: str, attempts: int, start: Event, out: Queue[int]
) -> None:
    adapter = RedisAdapter(url, prefix=prefix)
    start.wait()
    out.put(sum(adapter.take_token(key, 0.01, 20)[0] for _ in range(attempts)))


def test_token_bucket_is_one_limit_across_processes(redis_adapter: RedisAdapter) -> None:
    ctx = multiprocessing.get_context("fork")
    key = redis_adapter.key("rate", "shared")
    start = ctx.Event()
    out = ctx.Queue()
    args = (redis_adapter.url, redis_adapter.prefix, key, 30, start, out)
    workers = [ctx.Process(target=_take_tokens, args=args) for _ in range(2)]
    for w in workers:
        w.start()
    start.set()
    taken = [out.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    # 60 attempts against a burst of 20 refilling at 0.01/s: exactly 20 pass, shared
    assert sum(taken) == 20
    assert redis_adapter.take_token(key, 0.01, 20)[0] is False
