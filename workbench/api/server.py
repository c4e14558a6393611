"""Run the HTTP service: ``workbench serve --host H --port P [--workers K]``.

With several workers, each process binds the same port with ``SO_REUSEPORT`` so the kernel
spreads connections evenly across them (a shared accept socket lets one busy process take most
connections). Each worker has its own metrics; scrape each or run one worker per container.
uvloop is used when installed (it roughly doubles aiohttp's request rate here).
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import signal
import socket
from typing import Any

from workbench.config import Settings
from workbench.errors import ConfigError

__all__ = ["check_bind_allowed", "serve"]

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


def _run_worker(settings: Settings, port: int, reuse_port: bool, ready: Any = None) -> None:
    from aiohttp import web

    from workbench.api.app import create_app
    from workbench.logging import configure_logging

    configure_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = create_app(settings)
    web.run_app(
        app,
        host=settings.host,
        port=port,
        reuse_port=reuse_port,
        access_log=None,
        print=None,
        handle_signals=True,
    )


def _pick_port(settings: Settings) -> int:
    if settings.port:
        return settings.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((settings.host, 0))
        return int(s.getsockname()[1])


def serve(settings: Settings, *, insecure: bool = False) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop every worker)."""
    check_bind_allowed(settings, insecure=insecure)
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
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_run_worker, args=(settings, port, True), daemon=False)
        for _ in range(settings.workers)
    ]
    for p in procs:
        p.start()

    def stop(signum: int, frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()
