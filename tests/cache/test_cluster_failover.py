"""A Redis Cluster master killed under load: callers see no exception (the memory tier serves
during the failover), and the cluster path serves again once the replica is promoted.

Its own throwaway cluster (3 masters + 3 replicas, ``cluster-node-timeout 2000``): killing a
master would break the module-scoped cluster of the contract suite.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from workbench.cache import Cache
from workbench.testing import throwaway_redis_cluster

pytestmark = pytest.mark.timeout(120)


def test_a_killed_master_is_ridden_through_and_the_cluster_serves_again_within_10s() -> None:
    with throwaway_redis_cluster(masters=3, replicas=1, node_timeout_ms=2000) as cluster:
        cache = Cache(cluster.url, cluster=True, namespace="failover", timeout_s=0.5, open_s=0.5)
        keys = [f"k{i}" for i in range(300)]
        cache.set_many({k: 0 for k in keys})
        cluster.wait_replicated()
        errors: list[BaseException] = []
        modes: list[str] = []
        stop = threading.Event()

        def load(seed: int) -> None:
            rng = random.Random(seed)
            try:
                while not stop.is_set():
                    key = rng.choice(keys)
                    if rng.random() < 0.5:
                        cache.set(key, rng.randrange(10**6))
                    else:
                        cache.get(key)
            except BaseException as exc:  # asserted below
                errors.append(exc)

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(3)]
        for t in threads:
            t.start()
        try:
            victim = cluster.master_for_slot(cache.adapter.hash_slot(cache.core.key(keys[0])))
            cluster.kill(victim)
            killed_at = time.monotonic()
            deadline = killed_at + 30
            # the cache notices (fallback) and later serves from the cluster again
            while cache.current_mode() != "fallback" and time.monotonic() < deadline:
                modes.append(cache.current_mode())
                time.sleep(0.01)  # polling the cache's mode
            saw_fallback = cache.current_mode() == "fallback"
            cluster.wait_ok(timeout_s=30)
            promoted_at = time.monotonic()
            while cache.current_mode() != "redis" and time.monotonic() < deadline:
                cache.exists("probe")  # a call after open_s attempts the recovery
                time.sleep(0.02)  # pacing the probes
            back_at = time.monotonic()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        assert not errors, errors[:3]
        assert saw_fallback, modes[-5:]
        assert cache.current_mode() == "redis"
        assert back_at - promoted_at <= 10.0, (back_at - promoted_at, promoted_at - killed_at)
        # and the values written during the failover reached the cluster
        fresh = Cache(cluster.url, cluster=True, namespace="failover", strict=True)
        values = fresh.get_many(keys)
        assert len(values) == len(keys)
        assert values == cache.get_many(keys)
