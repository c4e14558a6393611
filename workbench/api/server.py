"""Run the HTTP service: ``workbench serve --host H --port P [--workers K]``.

With several workers, each process binds the same port with ``SO_REUSEPORT`` so the kernel
spreads connections evenly across them (a shared accept socket lets one busy process take most
connections), and a Unix socket of its own in a private run directory, over which the workers
forward requests to the owner of each stateful subsystem and gather each other's metrics (see
:mod:`workbench.api.workers`: every worker gives the same answer). uvloop is used when
installed (it roughly doubles aiohttp's request rate here).

Every subsystem's settings are validated in the parent before any port is bound or worker
started. If a worker dies, the others are stopped and ``serve`` exits with an error, so a
supervisor restarts the whole server rather than run it with a subsystem's owner missing.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.api.workers import WorkerInfo
from workbench.config import Settings
from workbench.errors import ConfigError, WorkbenchError

__all__ = ["SHUTDOWN_GRACE_S", "STOP_TIMEOUT_S", "check_bind_allowed", "check_settings", "serve"]

#: Seconds a stopping worker gives in-flight requests before it closes their connections.
SHUTDOWN_GRACE_S = 5.0
#: Seconds from SIGTERM until workers that have not exited are killed.
STOP_TIMEOUT_S = 8.0

logger = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_allowed(settings: Settings, *, insecure: bool = False) -> None:
    """Refuse to expose an unauthenticated service beyond loopback.

    Raises:
        ConfigError: ``settings.host`` is not a loopback address, no API token is set and
            ``insecure`` is false.
    """
    if settings.api_token is None and not insecure and not _is_loopback(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host} without an API token: set "
            "WORKBENCH_API_TOKEN, bind 127.0.0.1, or pass --insecure to accept the risk"
        )


def _run_worker(
    settings: Settings, port: int, reuse_port: bool, worker: WorkerInfo | None = None
) -> None:
    from aiohttp import web

    from workbench.api.app import create_app
    from workbench.logging import configure_logging

    configure_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    worker = worker or WorkerInfo()
    app = create_app(settings, worker=worker)
    path = str(worker.socket_path(worker.index)) if worker.count > 1 else None
    web.run_app(
        app,
        host=settings.host,
        port=port,
        path=path,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
        handle_signals=True,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )


def _pick_port(settings: Settings) -> int:
    if settings.port:
        return settings.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((settings.host, 0))
        return int(s.getsockname()[1])


def check_settings(settings: Settings) -> None:
    """Validate every mounted subsystem's settings (what ``serve`` does before binding).

    Raises:
        ConfigError: naming the bad key.
    """
    from workbench.api.app import default_routers, mounted_services
    from workbench.api.services import validate_services

    validate_services(mounted_services(default_routers()), settings)


def serve(settings: Settings, *, insecure: bool = False) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop every worker).

    Raises:
        ConfigError: the bind is not allowed or a setting is invalid (before anything starts).
        WorkbenchError: a worker died (the others have been stopped).
    """
    check_bind_allowed(settings, insecure=insecure)
    check_settings(settings)
    port = _pick_port(settings)
    logger.info(
        "workbench serving on http://%s:%d with %d worker(s), auth %s",
        settings.host,
        port,
        settings.workers,
        "on" if settings.api_token else "off",
    )
    if settings.workers == 1:
        _run_worker(settings, port, reuse_port=False)
        return
    with tempfile.TemporaryDirectory(prefix="workbench-serve-") as run_dir:
        os.chmod(run_dir, 0o700)
        _serve_workers(settings, port, Path(run_dir))


def _serve_workers(settings: Settings, port: int, run_dir: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    count = settings.workers
    procs = [
        ctx.Process(
            target=_run_worker,
            args=(settings, port, True, WorkerInfo(i, count, run_dir)),
            daemon=False,
            name=f"workbench-worker-{i}",
        )
        for i in range(count)
    ]
    stop_deadline: float | None = None
    failed: Any = None

    def stop(signum: int, frame: Any) -> None:
        nonlocal stop_deadline
        if stop_deadline is None:
            stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.start()
    sentinels = {p.sentinel: p for p in procs}
    while sentinels:
        timeout = None if stop_deadline is None else max(0.0, stop_deadline - time.monotonic())
        ready = multiprocessing.connection.wait(list(sentinels), timeout)
        if not ready and stop_deadline is not None and time.monotonic() >= stop_deadline:
            for proc in sentinels.values():
                logger.error("%s did not stop within %.0f s; killing it", proc.name, STOP_TIMEOUT_S)
                proc.kill()
                proc.join()
            break
        for sentinel in ready:
            proc = sentinels.pop(sentinel)  # type: ignore[arg-type]
            proc.join()
            if stop_deadline is None:
                logger.error("%s exited with %s; stopping the others", proc.name, proc.exitcode)
                failed = proc
                stop(signal.SIGTERM, None)
    if failed is not None:
        raise WorkbenchError(
            f"{failed.name} exited with code {failed.exitcode}; the server was stopped"
        )
