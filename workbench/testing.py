"""Helpers for tests and notebooks that users may reuse in their own suites.

- :func:`throwaway_redis`: start a private ``redis-server`` on a free loopback port.
- :func:`redis_answers` / :func:`postgres_answers`: whether a server answers at a URL.
- :func:`nvml_available`: whether NVML (a real NVIDIA driver) is usable here.
- :func:`kill_then_bounded`: run a teardown after killing the process it waits on, bounded in
  time (the notebook suite wraps nbval's kernel stop with it).
- :class:`ServeProcess`: ``workbench serve`` (or any HTTP server command) as a child process,
  waited for until every worker's owned routes answer, and stopped within a bound.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

__all__ = [
    "ServeProcess",
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


class ServeProcess:
    """An HTTP server as a child process: ``workbench serve`` by default.

    ``ServeProcess(workers=2, env=...)`` starts ``python -m workbench.cli serve --port P
    --workers 2`` on a free loopback port, its output to ``log`` (a file, kept for the
    assertion messages) or discarded. :meth:`wait_ready` polls until the given paths answer
    200 from every worker (the ``X-Workbench-Worker`` header names the worker, and a forwarded
    route answers only once its owning worker is up), failing at once if the process exits.
    Leaving the ``with`` block terminates it, then kills it after ``stop_timeout_s``.

    Args:
        workers: ``--workers``.
        env: The child's environment (``os.environ`` when None).
        log: Where the child's stdout and stderr go (None: discarded).
        args: A whole command instead of ``workbench serve`` (``{port}`` is filled in).
        stop_timeout_s: How long :meth:`stop` waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        args: Iterable[str] | None = None,
        stop_timeout_s: float = 20.0,
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.log = log
        self.stop_timeout_s = stop_timeout_s
        if args is None:
            cmd = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(self.port)]
            cmd += ["--workers", str(workers)]
        else:
            cmd = [a.replace("{port}", str(self.port)) for a in args]
        self._log_file = log.open("wb") if log is not None else None
        self.proc = subprocess.Popen(
            cmd,
            env=dict(os.environ if env is None else env),
            stdout=self._log_file if self._log_file is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def url(self, path: str = "") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        """What the child wrote so far (empty without a log)."""
        if self.log is None:
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def wait_ready(
        self,
        paths: Iterable[str] = ("/health",),
        *,
        token: str | None = None,
        timeout_s: float = 90.0,
        every_worker: bool = True,
    ) -> None:
        """Poll ``paths`` until each answered 200 and, with ``every_worker``, every worker
        answered one of them (a route owned by one worker always answers from its owner, so
        list a route of each owner).

        Raises:
            AssertionError: the process exited first, or ``timeout_s`` passed; the message
                holds the end of its output.
        """
        paths = tuple(paths)
        want = {str(i) for i in range(self.workers)} if every_worker else set()
        seen: dict[str, set[str]] = {p: set() for p in paths}
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before answering:\n"
                    + self.output()[-3000:]
                )
            for path in paths:
                worker = self._probe(path, token)
                if worker is not None:
                    seen[path].add(worker)
            if all(seen.values()) and want <= set().union(*seen.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{paths} did not answer from workers {sorted(want)} within {timeout_s} s "
                    f"(seen: {seen}):\n" + self.output()[-3000:]
                )
            time.sleep(0.05)  # polling a child process's readiness, not papering over a race

    def _probe(self, path: str, token: str | None) -> str | None:
        req = urllib.request.Request(self.url(path))
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return str(r.headers.get("X-Workbench-Worker", "0"))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None  # still starting
        return None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after ``stop_timeout_s``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return int(self.proc.returncode)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
