"""RedisAdapter(cluster=True) against a throwaway three-master Redis Cluster with replicas.

The cluster is started once for the module (about 2 s). The failover test kills a master;
the other tests choose their keys from the cluster's current slot map, so they pass in any
order, before or after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from workbench.errors import BackendUnavailable, InputError
from workbench.redis_adapter import RedisAdapter
from workbench.testing import ThrowawayRedisCluster, throwaway_redis_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayRedisCluster]:
    with throwaway_redis_cluster(masters=3, replicas=1, node_timeout_ms=1000) as c:
        yield c


@pytest.fixture
def adapter(cluster: ThrowawayRedisCluster) -> RedisAdapter:
    return RedisAdapter(cluster.url, prefix=f"wbtest:{uuid.uuid4().hex[:8]}:", cluster=True)


def keys_per_master(
    adapter: RedisAdapter, cluster: ThrowawayRedisCluster, per_master: int
) -> dict[int, list[str]]:
    """``per_master`` keys of distinct slots owned by each current master, by master port."""
    found: dict[int, list[str]] = {port: [] for port in cluster.masters()}
    slots: set[int] = set()
    i = 0
    while any(len(v) < per_master for v in found.values()):
        key = adapter.key("k", i)
        slot = adapter.hash_slot(key)
        owner = cluster.master_for_slot(slot)
        if slot not in slots and len(found[owner]) < per_master:
            found[owner].append(key)
            slots.add(slot)
        i += 1
    return found


def test_cluster_formed_with_masters_and_replicas(cluster: ThrowawayRedisCluster) -> None:
    assert len(cluster.ports) == 6
    assert len(cluster.masters()) == 3
    assert cluster.url.endswith(f":{min(cluster.masters(), key=cluster.ports.index)}/0")
    assert cluster.problem() is None


def test_get_set_delete_ttl_on_every_master(
    adapter: RedisAdapter, cluster: ThrowawayRedisCluster
) -> None:
    assert type(adapter.client).__module__ == "redis.cluster"
    assert adapter.ping() > 0
    by_master = keys_per_master(adapter, cluster, 2)
    keys = [k for ks in by_master.values() for k in ks]
    assert len({adapter.hash_slot(k) for k in keys}) == 6
    for i, key in enumerate(keys):
        adapter.set(key, f"v{i}".encode(), ttl_s=60 if i % 2 else None)
    for i, key in enumerate(keys):
        assert adapter.get(key) == f"v{i}".encode()
        assert adapter.exists(key)
        ttl = adapter.ttl(key)
        if i % 2:
            assert ttl is not None and 0 < ttl <= 60
        else:
            assert ttl is None
    # one DEL over keys of three masters: redis-py splits it by slot
    assert adapter.delete(*keys) == len(keys)
    assert all(adapter.get(k) is None for k in keys)
    assert adapter.delete(*keys) == 0


def test_pipeline_of_200_commands_across_slots(
    adapter: RedisAdapter, cluster: ThrowawayRedisCluster
) -> None:
    keys = [adapter.key("p", i) for i in range(100)]
    assert len({cluster.master_for_slot(adapter.hash_slot(k)) for k in keys}) == 3
    pipe = adapter.pipeline()
    for i, key in enumerate(keys):
        pipe.set(key, f"{i}".encode())
    for key in reversed(keys):
        pipe.get(key)
    with adapter.errors():
        replies = pipe.execute()
    assert replies[:100] == [True] * 100
    # replies come back in the order of the commands, not grouped by node
    assert replies[100:] == [f"{i}".encode() for i in reversed(range(100))]
    assert adapter.get(keys[42]) == b"42"
    adapter.delete(*keys)


def test_scan_finds_keys_of_every_master(
    adapter: RedisAdapter, cluster: ThrowawayRedisCluster
) -> None:
    by_master = keys_per_master(adapter, cluster, 5)
    written = sorted(k for ks in by_master.values() for k in ks)
    for key in written:
        adapter.set(key, b"x")
    other = RedisAdapter(cluster.url, prefix=f"wbtest:{uuid.uuid4().hex[:8]}:", cluster=True)
    other.set(other.key("k", 0), b"not ours")
    # a small COUNT forces several SCAN rounds per master
    assert sorted(adapter.scan("k:*", count=2)) == written
    assert adapter.delete_prefixed() == len(written)
    assert list(adapter.scan()) == []
    assert other.delete_prefixed() == 1


def test_scripts_on_one_key_and_hash_tags(
    adapter: RedisAdapter, cluster: ThrowawayRedisCluster
) -> None:
    incr = adapter.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    by_master = keys_per_master(adapter, cluster, 1)
    for key in (ks[0] for ks in by_master.values()):
        assert incr([key], [5]) == 5
        assert incr([key], [2]) == 7
    # the versioned compare-and-set and the token bucket are single-key scripts too
    vkey = adapter.key("versioned")
    assert adapter.set_if_version(vkey, b"a", 0) == 1
    assert adapter.set_if_version(vkey, b"b", 0) is None
    assert adapter.get_versioned(vkey) == (b"a", 1)
    assert adapter.take_token(adapter.key("bucket"), 1.0, 2.0, now=0.0) == (True, 0.0)

    tagged = [adapter.key("{study-7}", part) for part in ("trials", "best", "lock")]
    assert len({adapter.hash_slot(k) for k in tagged}) == 1
    assert adapter.hash_slot(tagged[0]) == adapter.hash_slot("{study-7}")
    assert adapter.hash_slot("{}a") != adapter.hash_slot("{}b")  # an empty tag is no tag
    untagged = [adapter.key("study-7", part) for part in ("trials", "best", "lock")]
    assert len({adapter.hash_slot(k) for k in untagged}) > 1

    both = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"
    assert adapter.eval_script(both, tagged[:2], [b"t"]) == 1
    assert adapter.get(tagged[0]) == b"t"
    with pytest.raises(InputError, match="hash tag"):
        adapter.eval_script(both, untagged[:2], [b"t"])
    adapter.delete_prefixed()


def test_async_client_is_a_cluster_client(adapter: RedisAdapter) -> None:
    key = adapter.key("async")

    async def roundtrip() -> bytes | None:
        client = adapter.async_client()
        try:
            with adapter.errors():
                await client.set(key, b"from asyncio")
                value: bytes | None = await client.get(key)
                await client.delete(key)
                return value
        finally:
            await client.aclose()

    assert type(adapter.async_client()).__module__ == "redis.asyncio.cluster"
    assert asyncio.run(roundtrip()) == b"from asyncio"


def test_unreachable_cluster_is_backend_unavailable(cluster: ThrowawayRedisCluster) -> None:
    dead = cluster.url.rsplit(":", 1)[0] + ":1/0"
    with pytest.raises(BackendUnavailable, match="Redis Cluster"):
        RedisAdapter(dead, timeout_s=0.2, cluster=True)


def test_killed_master_is_backend_unavailable_until_failover(
    cluster: ThrowawayRedisCluster,
) -> None:
    adapter = RedisAdapter(
        cluster.url, prefix=f"wbtest:{uuid.uuid4().hex[:8]}:", timeout_s=0.5, cluster=True
    )
    by_master = keys_per_master(adapter, cluster, 1)
    victim = next(p for p in by_master if f":{p}/" not in cluster.url)  # keep the startup node
    key = by_master[victim][0]
    elsewhere = [ks[0] for port, ks in by_master.items() if port != victim]
    adapter.set(key, b"before")
    cluster.wait_replicated()

    cluster.kill(victim)
    killed_at = time.monotonic()
    with pytest.raises(BackendUnavailable):
        adapter.get(key)
    with pytest.raises(BackendUnavailable):
        adapter.set(key, b"during")
    # until the replica takes over, every call is our error (or, at the very end, an answer):
    # raw redis-py errors would escape this loop and fail the test
    outcomes: list[str] = []
    while cluster.problem() is not None and time.monotonic() - killed_at < 20:
        try:
            adapter.get(key)
            outcomes.append("answered")
        except BackendUnavailable:
            outcomes.append("unavailable")
    assert outcomes.count("unavailable") >= 1
    failover_s = cluster.wait_ok(timeout_s=20)
    assert victim not in cluster.masters()

    recovered_by = time.monotonic() + 10
    while True:
        try:
            value = adapter.get(key)
            break
        except BackendUnavailable:
            if time.monotonic() > recovered_by:
                raise
    assert value == b"before", f"failover took {time.monotonic() - killed_at:.1f} s"
    adapter.set(key, b"after")
    assert adapter.get(key) == b"after"
    for other in elsewhere:
        adapter.set(other, b"ok")
    pipe = adapter.pipeline()
    for k in [key, *elsewhere]:
        pipe.get(k)
    with adapter.errors():
        assert pipe.execute() == [b"after", b"ok", b"ok"]
    assert failover_s < 20
    adapter.delete_prefixed()


def test_cluster_down_answers_are_backend_unavailable() -> None:
    """A master lost without a replica leaves its slots unserved: with full coverage required
    (the default) every node then answers CLUSTERDOWN, for keys of the live masters too.

    This needs a cluster without replicas, so it starts its own small one (about 2 s).
    """
    with throwaway_redis_cluster(masters=3, replicas=0, node_timeout_ms=500) as small:
        adapter = RedisAdapter(small.url, prefix="down:", timeout_s=0.5, cluster=True)
        by_master = keys_per_master(adapter, small, 1)
        victim = next(p for p in by_master if f":{p}/" not in small.url)
        alive_key = by_master[min(small.masters(), key=small.ports.index)][0]
        adapter.set(alive_key, b"x")
        small.kill(victim)
        deadline = time.monotonic() + 15
        while True:
            try:
                adapter.get(alive_key)  # answered until the nodes agree the victim failed
            except BackendUnavailable as exc:
                if "cluster is down" in str(exc):  # redis-py's ClusterDownError
                    break
            assert time.monotonic() < deadline, "the live master never answered CLUSTERDOWN"
        with pytest.raises(BackendUnavailable, match="cluster is down"):
            adapter.set(alive_key, b"y")


def test_missing_redis_binaries_are_a_clear_error() -> None:
    with (
        pytest.raises(FileNotFoundError, match="no-such-redis-cli not on PATH"),
        throwaway_redis_cluster(cli="no-such-redis-cli"),
    ):
        pass
