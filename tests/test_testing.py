"""workbench.testing: the bounded kill-then-teardown used for notebook kernels."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from workbench.testing import RedisServer, kill_then_bounded, redis_answers


def _sleeper(new_session: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=new_session
    )


@pytest.mark.parametrize("new_session", [True, False])
def test_kills_the_process_before_the_teardown_runs(new_session: bool) -> None:
    proc = _sleeper(new_session)
    seen: list[int | None] = []

    def teardown() -> None:
        seen.append(proc.wait(timeout=10))  # returns only because the process is dead

    assert kill_then_bounded(proc.pid, teardown, timeout_s=20) is True
    assert seen == [-9]


def test_a_hung_teardown_is_abandoned_at_the_deadline() -> None:
    release = threading.Event()
    start = time.monotonic()
    assert kill_then_bounded(None, release.wait, timeout_s=0.3) is False
    elapsed = time.monotonic() - start
    release.set()
    assert 0.3 <= elapsed < 5


def test_teardown_errors_reach_the_caller() -> None:
    def teardown() -> None:
        raise ValueError("channel close failed")

    with pytest.raises(ValueError, match="channel close failed"):
        kill_then_bounded(None, teardown, timeout_s=5)


@pytest.mark.parametrize("persistent", [True, False])
def test_redis_server_restarts_on_its_port_keeping_data_only_when_persistent(
    persistent: bool,
) -> None:
    import redis

    with RedisServer(persistent=persistent) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=0.3)
        client.set("k", "v")
        server.stop()
        assert not redis_answers(server.url, timeout_s=0.2)
        server.start()
        assert (client.get("k") == b"v") is persistent
        client.close()


def test_a_frozen_redis_server_hangs_until_thawed() -> None:
    with RedisServer() as server:
        server.freeze()
        assert not redis_answers(server.url, timeout_s=0.2)
        server.thaw()
        assert redis_answers(server.url, timeout_s=1.0)
