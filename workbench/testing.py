"""Helpers for tests and notebooks that users may reuse in their own suites.

- :func:`throwaway_redis`: start a private ``redis-server`` on a free loopback port.
- :class:`RedisServer`: the same, as an object that fault tests stop, start again on its port
  (its data kept with ``persistent=True``, as a production Redis keeps it), freeze and thaw.
- :func:`throwaway_redis_cluster`: start a private Redis Cluster (masters and replicas) whose
  nodes tests may kill to watch a failover (:class:`ThrowawayRedisCluster`).
- :func:`throwaway_postgres`: start a private PostgreSQL cluster (``initdb``/``pg_ctl``) on a
  free port, which fault tests may stop and start again (:class:`ThrowawayPostgres`).
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
from typing import Any

__all__ = [
    "RedisServer",
    "ServeProcess",
    "ThrowawayPostgres",
    "ThrowawayRedisCluster",
    "free_port",
    "junit_results",
    "kill_then_bounded",
    "nvml_available",
    "postgres_answers",
    "redis_answers",
    "throwaway_postgres",
    "throwaway_redis",
    "throwaway_redis_cluster",
]


def junit_results(path: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """``(test cases, failures)`` of a JUnit XML report (what schemathesis' ``--report
    junit`` writes): each failure or error as ``"name: message"`` (400 characters at most)."""
    import xml.etree.ElementTree as ET

    suites = ET.parse(path).getroot()
    failures = [
        f"{case.get('name')}: {(problem.get('message') or problem.text or '')[:400]}"
        for case in suites.iter("testcase")
        for problem in [*case.findall("failure"), *case.findall("error")]
    ]
    return sum(1 for _ in suites.iter("testcase")), failures


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


class RedisServer:
    """A private, non-persistent ``redis-server`` that a fault test can stop, start again on
    the same port, and freeze (SIGSTOP, so connections hang) and thaw.

    Use it as a context manager (it starts on entry and is killed on exit, even when the test
    failed); :func:`throwaway_redis` is the simpler form for tests that never stop it. With
    ``persistent=True`` it keeps an append-only file synced on every write, so a restart
    comes back with the data it had (what a stale-read test needs). ``extra_args`` go on
    its command line after the defaults (``["--enable-debug-command", "yes"]``, say).

    Attributes:
        port: Its port, the same across restarts.
        url: ``redis://127.0.0.1:<port>/0``.
    """

    def __init__(
        self,
        executable: str = "redis-server",
        *,
        persistent: bool = False,
        startup_timeout_s: float = 10.0,
        extra_args: Iterable[str] = (),
    ) -> None:
        path = shutil.which(executable)
        if path is None:
            raise FileNotFoundError(f"{executable} is not on PATH")
        self._path = path
        self.persistent = persistent
        self.extra_args = list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = tempfile.mkdtemp(prefix="wb-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again) on its port and wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.persistent:  # every write on disk before it is acknowledged
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += ["--dir", self._workdir, *self.extra_args]
        self.proc = subprocess.Popen(
            [self._path, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while not redis_answers(self.url, timeout_s=0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"throwaway redis-server on port {self.port} did not start")
            time.sleep(0.05)  # polling a child process's readiness, not papering over a race

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s); its data is gone unless persistent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing."""
        assert self.proc is not None, "not running"
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        assert self.proc is not None, "not running"
        os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


_CLUSTER_SLOTS = 16384
_CLUSTER_BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000


def _free_cluster_port(taken: set[int]) -> int:
    """A free loopback port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        bus = port + _CLUSTER_BUS_OFFSET
        if port in taken or bus in taken or bus > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", bus))
            except OSError:
                continue
        return port
    raise RuntimeError("found no free port pair (port, port + 10000) for a Redis Cluster node")


class ThrowawayRedisCluster:
    """A running throwaway Redis Cluster, as yielded by :func:`throwaway_redis_cluster`.

    Attributes:
        url: ``redis://127.0.0.1:<port>/0`` of the first master, a startup node for clients.
        ports: The client ports of every node started, masters and replicas, killed or not.
        node_timeout_ms: The nodes' ``cluster-node-timeout``; a killed master is replaced by
            its replica a few of these later.
    """

    def __init__(
        self, ports: list[int], procs: dict[int, subprocess.Popen[bytes]], workdir: str
    ) -> None:
        self.ports: tuple[int, ...] = tuple(ports)
        self.node_timeout_ms = 0
        self.url = ""
        self._procs = procs
        self._workdir = workdir
        self._killed: set[int] = set()

    def alive(self) -> list[int]:
        """Ports of the nodes not killed (and still running)."""
        return [p for p in self.ports if p not in self._killed and self._procs[p].poll() is None]

    def _client(self, port: int) -> Any:
        import redis

        return redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0
        )

    def _query(self, port: int, *args: str) -> Any:
        client = self._client(port)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def _nodes(self, port: int) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as seen by the node at ``port``: one dict per known node."""
        raw = self._query(port, "CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        nodes = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            address = fields[1].split("@", 1)[0]
            slots: list[tuple[int, int]] = []
            for spec in fields[8:]:
                if spec.startswith("["):  # a slot being migrated, not owned
                    continue
                first, _, last = spec.partition("-")
                slots.append((int(first), int(last or first)))
            nodes.append(
                {
                    "port": int(address.rsplit(":", 1)[1]),
                    "flags": set(fields[2].split(",")),
                    "slots": slots,
                }
            )
        return nodes

    def masters(self) -> list[int]:
        """Ports of the live masters that own slots, as the first live node sees them."""
        for port in self.alive():
            with contextlib.suppress(Exception):
                return sorted(
                    n["port"]
                    for n in self._nodes(port)
                    if "master" in n["flags"]
                    and not n["flags"] & {"fail", "fail?"}
                    and n["slots"]
                    and n["port"] not in self._killed
                )
        raise RuntimeError(f"no node of the cluster answers (ports {self.ports})")

    def master_for_slot(self, slot: int) -> int:
        """The port of the master that owns hash ``slot``, as the first live node sees it."""
        for node in self._nodes(self.alive()[0]):
            if "master" in node["flags"] and any(a <= slot <= b for a, b in node["slots"]):
                return int(node["port"])
        raise RuntimeError(f"no master owns slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL the node at ``port`` (a crash: no shutdown, no failover handshake)."""
        if port not in self._procs:
            raise ValueError(f"port {port} is not a node of this cluster (ports {self.ports})")
        proc = self._procs[port]
        self._killed.add(port)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def problem(self) -> str | None:
        """Why the cluster is not ok yet, or None when it is (see :meth:`wait_ok`)."""
        alive = self.alive()
        if not alive:
            return "no node is running"
        owners_seen: list[dict[int, int]] = []
        for port in alive:
            try:
                info = self._query(port, "CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
                if fields.get("cluster_state") != "ok":
                    return f"node {port}: cluster_state {fields.get('cluster_state')}"
                if int(fields.get("cluster_slots_ok", 0)) != _CLUSTER_SLOTS:
                    return f"node {port}: cluster_slots_ok {fields.get('cluster_slots_ok')}"
                owners: dict[int, int] = {}
                for node in self._nodes(port):
                    if "master" not in node["flags"]:
                        continue
                    for first, last in node["slots"]:
                        for slot in range(first, last + 1):
                            owners[slot] = node["port"]
                if len(owners) != _CLUSTER_SLOTS:
                    return f"node {port}: {len(owners)} slots have an owner"
                dead = set(owners.values()) & self._killed
                if dead:
                    return f"node {port}: slots still owned by killed nodes {sorted(dead)}"
                owners_seen.append(owners)
                replication = self._client(port)
                try:
                    role: Any = replication.info("replication")
                finally:
                    replication.close()
                if role.get("role") == "slave" and role.get("master_link_status") != "up":
                    return f"replica {port}: link to its master is {role.get('master_link_status')}"
            except Exception as exc:  # a node still starting or electing answers errors
                return f"node {port}: {exc}"
        if any(o != owners_seen[0] for o in owners_seen[1:]):
            return "the nodes disagree on which master owns which slot"
        return None

    def wait_replicated(self, timeout_s: float = 10.0) -> None:
        """Wait until every live replica has acknowledged every write its master took so far.

        Call it between writing and :meth:`kill`, so the writes survive the failover.

        Raises:
            RuntimeError: some replica still lags after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            lagging = []
            for port in self.alive():
                client = self._client(port)
                try:
                    info: Any = client.info("replication")
                finally:
                    client.close()
                if info.get("role") != "master":
                    continue
                offset = int(info.get("master_repl_offset", 0))
                for i in range(int(info.get("connected_slaves", 0))):
                    replica = info.get(f"slave{i}", {})
                    if int(replica.get("offset", -1)) != offset:
                        lagging.append(f"{replica.get('port')} behind {port}")
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas still lag after {timeout_s} s: {lagging}")
            time.sleep(0.02)  # polling replication offsets, not papering over a race

    def wait_ok(self, timeout_s: float = 30.0) -> float:
        """Wait until the cluster serves every slot again.

        Every live node must report ``cluster_state:ok`` with all 16384 slots ok, owned by
        live masters, the same owners on every node, and every live replica linked to its
        master.

        Returns:
            The seconds waited.

        Raises:
            RuntimeError: not ok within ``timeout_s``; the message says what was missing.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            problem = self.problem()
            if problem is None:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Redis Cluster on ports {self.ports} not ok within {timeout_s} s: {problem}"
                    f"; node logs are in {self._workdir}"
                )
            time.sleep(0.05)  # polling the cluster's state, not papering over a race


@contextlib.contextmanager
def throwaway_redis_cluster(
    masters: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = 2000,
    *,
    executable: str = "redis-server",
    cli: str = "redis-cli",
    startup_timeout_s: float = 30.0,
) -> Iterator[ThrowawayRedisCluster]:
    """Run a private, non-persistent Redis Cluster for the duration of the block.

    Starts ``masters * (1 + replicas)`` ``redis-server`` processes in cluster mode on free
    loopback ports, in a temporary directory, joins them with ``redis-cli --cluster create``
    and waits until every node serves every slot. Leaving the block kills every process and
    removes the directory, whatever happened inside it.

    Args:
        masters: Masters sharing the 16384 slots (``redis-cli`` needs at least 3).
        replicas: Replicas per master; with at least one, killing a master fails over.
        node_timeout_ms: ``cluster-node-timeout``: how long a silent node takes to be
            considered failed, so about how long a failover takes.
        executable: The ``redis-server`` to run.
        cli: The ``redis-cli`` that creates the cluster.
        startup_timeout_s: How long the nodes and the cluster may take to be ready.

    Yields:
        A :class:`ThrowawayRedisCluster`.

    Raises:
        FileNotFoundError: ``executable`` or ``cli`` is not on PATH.
        ValueError: ``masters``, ``replicas`` or ``node_timeout_ms`` are out of range.
        RuntimeError: the cluster did not form within ``startup_timeout_s``.
    """
    server_path, cli_path = shutil.which(executable), shutil.which(cli)
    missing = [name for name, path in ((executable, server_path), (cli, cli_path)) if not path]
    if missing or server_path is None or cli_path is None:
        raise FileNotFoundError(
            f"{' and '.join(missing)} not on PATH: a Redis Cluster needs both redis-server and "
            "redis-cli (install Redis, e.g. the redis-server and redis-tools packages)"
        )
    if masters < 3:
        raise ValueError(f"masters={masters!r}: a Redis Cluster needs at least 3 masters")
    if replicas < 0:
        raise ValueError(f"replicas={replicas!r} must be >= 0")
    if node_timeout_ms < 100:
        raise ValueError(f"node_timeout_ms={node_timeout_ms!r} must be at least 100")
    workdir = tempfile.mkdtemp(prefix="wb-redis-cluster-")
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        taken: set[int] = set()
        ports: list[int] = []
        for _ in range(masters * (1 + replicas)):
            port = _free_cluster_port(taken)
            taken |= {port, port + _CLUSTER_BUS_OFFSET}
            ports.append(port)
            procs[port] = subprocess.Popen(
                [
                    server_path,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    # replicas sync at once instead of after the default 5 s batching delay
                    "--repl-diskless-sync-delay",
                    "0",
                    "--dir",
                    workdir,
                    "--logfile",
                    f"{workdir}/redis-{port}.log",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cluster = ThrowawayRedisCluster(ports, procs, workdir)
        cluster.node_timeout_ms = node_timeout_ms
        deadline = time.monotonic() + startup_timeout_s
        for port in ports:
            while not redis_answers(f"redis://127.0.0.1:{port}/0", timeout_s=0.2):
                if procs[port].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"cluster node redis-server on port {port} did not start; see "
                        f"{workdir}/redis-{port}.log"
                    )
                time.sleep(0.05)  # polling a child process's readiness
        created = subprocess.run(
            [cli_path, "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in ports]
            + ["--cluster-replicas", str(replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({created.returncode}):\n"
                + (created.stdout + created.stderr).decode(errors="replace")[-3000:]
            )
        cluster.wait_ok(max(0.0, deadline - time.monotonic()))
        cluster.url = f"redis://127.0.0.1:{min(cluster.masters(), key=ports.index)}/0"
        yield cluster
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in procs.values():
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


class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temporary folder, started and stopped on demand.

    ``initdb`` refuses to run as root, so under root the cluster belongs to the ``postgres``
    account and every command runs through ``runuser -u postgres --``. The server listens on
    127.0.0.1 at :attr:`port` (the same across restarts), trusts local connections, and runs
    with ``fsync=off`` (a test server, never a store of record).

    Attributes:
        port: Its port.
        url: ``postgresql://postgres@127.0.0.1:<port>/postgres``.

    Raises:
        FileNotFoundError: ``initdb``/``pg_ctl`` are not on PATH, or running as root without
            ``runuser`` or a ``postgres`` account.
    """

    def __init__(self) -> None:
        import pwd

        initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise FileNotFoundError("initdb/pg_ctl are not on PATH (install PostgreSQL)")
        self._pg_ctl = pg_ctl
        self._prefix: list[str] = []
        self.root = tempfile.mkdtemp(prefix="wb-pg-")
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = None
            if runuser is None or account is None:
                shutil.rmtree(self.root, ignore_errors=True)
                raise FileNotFoundError(
                    "running as root needs runuser and a 'postgres' account for initdb"
                )
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._prefix = [runuser, "-u", "postgres", "--"]
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run(initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._prefix, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c shared_buffers=16MB"
        )
        log = os.path.join(self.root, "server.log")
        self._run(
            self._pg_ctl, "-D", self.data, "-l", log, "-o", options, "-w", "-t", "30", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``smart``, ``fast`` or ``immediate``), waiting for it."""
        self._run(self._pg_ctl, "-D", self.data, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop it if running and delete its folder."""
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """Run a private PostgreSQL (:class:`ThrowawayPostgres`) for the duration of the block;
    it is removed afterwards, whatever happened inside."""
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()
