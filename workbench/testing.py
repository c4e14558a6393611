"""Helpers for tests and notebooks that users may reuse in their own suites.

- :func:`throwaway_redis`: start a private ``redis-server`` on a free loopback port.
- :func:`redis_answers` / :func:`postgres_answers`: whether a server answers at a URL.
- :func:`nvml_available`: whether NVML (a real NVIDIA driver) is usable here.
- :func:`kill_then_bounded`: run a teardown after killing the process it waits on, bounded in
  time (the notebook suite wraps nbval's kernel stop with it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

__all__ = [
    "free_port",
    "kill_then_bounded",
    "nvml_available",
    "postgres_answers",
    "redis_answers",
    "throwaway_redis",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def postgres_answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether PostgreSQL accepts a connection at ``url`` and answers ``SELECT 1``."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s))) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except (psycopg.Error, OSError):
        return False


def nvml_available() -> bool:
    """Whether ``pynvml`` imports and ``nvmlInit`` succeeds (a real NVIDIA driver)."""
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError subclasses and missing shared library
        return False
    with contextlib.suppress(Exception):
        pynvml.nvmlShutdown()
    return True


@contextlib.contextmanager
def throwaway_redis(
    executable: str = "redis-server", *, startup_timeout_s: float = 10.0
) -> Iterator[str]:
    """Run a private, non-persistent ``redis-server`` for the duration of the block.

    Yields:
        Its URL, ``redis://127.0.0.1:<port>/0``.

    Raises:
        FileNotFoundError: ``executable`` is not on PATH.
        RuntimeError: the server did not answer within ``startup_timeout_s``.
    """
    path = shutil.which(executable)
    if path is None:
        raise FileNotFoundError(f"{executable} is not on PATH")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="wb-redis-")
    proc = subprocess.Popen(
        [
            path,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not redis_answers(url, timeout_s=0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"throwaway redis-server on port {port} did not start")
            time.sleep(0.05)  # polling a child process's readiness, not papering over a race
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def kill_then_bounded(pid: int | None, teardown: Callable[[], object], timeout_s: float) -> bool:
    """SIGKILL the process ``pid`` (its own process group if it leads one), then run ``teardown``.

    ``teardown`` runs on a daemon thread and is given ``timeout_s``; the call never blocks
    longer. Killing first means a teardown that waits on the process (a shutdown handshake, a
    heartbeat thread) has nothing left to wait for. Our own process group is never signalled.

    Returns:
        True when ``teardown`` returned in time (its exceptions are re-raised), False when it
        was still running at the deadline and was left on its daemon thread.
    """
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group == pid and group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            teardown()
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="bounded-teardown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False
    if failure:
        raise failure[0]
    return True
