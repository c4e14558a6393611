"""Backend health: active probes and passive outlier ejection.

- :class:`HealthProber`: an async loop that asks every backend whether it is up, every
  ``interval_s`` seconds: ``GET <url>/models`` for the OpenAI-compatible kinds (their ``url``
  ends in ``/v1``), ``GET <base>/api/tags`` for Ollama. A backend is marked unhealthy after
  ``unhealthy_after`` failed probes in a row (a status other than 2xx, a timeout, a refused
  connection) and healthy again after ``healthy_after`` good ones. The HTTP getter is injected
  (aiohttp by default, through :func:`aiohttp_getter`), and so are the clock and the sleep.
- :class:`OutlierDetector`: passive ejection from live traffic (Envoy's consecutive-5xx
  detector): ``consecutive`` 5xx or transport errors in a row eject a backend for
  ``base_s * 2**(n - 1)`` seconds (``n`` the number of ejections in a row), at most ``max_s``.
  A backend is never ejected when that would leave one of its models with no backend that
  is not ejected: the last one standing keeps its traffic (its breaker still protects it).
  The ejection count falls back to zero once a backend has served ``max_s`` seconds
  since its last ejection ended without being ejected again.

Neither ever leaves a backend out after its time: an ejection is a deadline that
:meth:`BackendState.available <workbench.router.balancer.BackendState.available>` compares
with the clock, so it ends by itself; a failed probe is retried every interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workbench import metrics
from workbench._optional import require
from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.router.balancer import BackendState

__all__ = ["HealthProber", "OutlierDetector", "aiohttp_getter", "probe_url"]

log = logging.getLogger(__name__)

_EJECTIONS = metrics.counter(
    "workbench_router_ejections_total", "Backends ejected as outliers", ["backend"]
)
_PROBES = metrics.counter(
    "workbench_router_probes_total", "Active health probes by result", ["backend", "result"]
)

#: ``getter(url, headers, timeout_s) -> HTTP status``; raises on a transport error.
Getter = Callable[[str, Mapping[str, str], float], Awaitable[int]]


def probe_url(url: str, kind: str) -> str:
    """The URL a health probe reads for a backend of ``kind`` at base ``url``."""
    base = url.rstrip("/")
    if kind == "ollama":
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + "/api/tags"
    return base + "/models"


def aiohttp_getter(session: Any | None = None) -> Getter:
    """A getter on aiohttp; with no ``session`` each probe opens and closes its own."""
    aiohttp = require("aiohttp", purpose="router health probes")

    async def get(url: str, headers: Mapping[str, str], timeout_s: float) -> int:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        if session is not None:
            async with session.get(url, headers=dict(headers), timeout=timeout) as resp:
                await resp.read()
                return int(resp.status)
        async with (
            aiohttp.ClientSession(timeout=timeout) as own,
            own.get(url, headers=dict(headers)) as resp,
        ):
            await resp.read()
            return int(resp.status)

    return get


class HealthProber:
    """Active health probes of a set of backends (module doc).

    Args:
        backends: The backend states to probe and mark (``healthy``).
        getter: HTTP getter (``aiohttp_getter()`` when None).
        interval_s: Seconds between rounds.
        timeout_s: Limit of one probe (defaults to each backend's ``connect_timeout_s`` + 1).
        unhealthy_after: Failed probes in a row that mark a backend unhealthy.
        healthy_after: Good probes in a row that mark it healthy again.
        headers: ``headers(backend_config) -> dict`` of request headers (an API key).
        sleep: Async sleep (injected by tests).
    """

    def __init__(
        self,
        backends: Sequence[BackendState],
        *,
        getter: Getter | None = None,
        interval_s: float = 10.0,
        timeout_s: float | None = None,
        unhealthy_after: int = 2,
        healthy_after: int = 1,
        headers: Callable[[Any], Mapping[str, str]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not interval_s > 0:
            raise ConfigError(f"interval_s={interval_s!r}: must be > 0")
        if unhealthy_after < 1 or healthy_after < 1:
            raise ConfigError("unhealthy_after and healthy_after: must be >= 1")
        self.backends = list(backends)
        self._getter = getter
        self.interval_s = float(interval_s)
        self.timeout_s = timeout_s
        self.unhealthy_after = int(unhealthy_after)
        self.healthy_after = int(healthy_after)
        self._headers = headers
        self._sleep = sleep
        self._fails: dict[str, int] = {}
        self._goods: dict[str, int] = {}
        self.rounds = 0
        self.last: dict[str, dict[str, Any]] = {}

    def _get(self) -> Getter:
        if self._getter is None:
            self._getter = aiohttp_getter()
        return self._getter

    async def probe(self, backend: BackendState) -> bool:
        """Probe one backend and update its ``healthy`` flag; True when the probe was good."""
        cfg = backend.config
        url = probe_url(cfg.url, cfg.kind)
        timeout = self.timeout_s if self.timeout_s is not None else cfg.connect_timeout_s + 1.0
        headers = self._headers(cfg) if self._headers is not None else {}
        start = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            status = await self._get()(url, headers, timeout)
            good = 200 <= status < 300
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any transport failure is a failed probe
            good, error = False, f"{type(exc).__name__}: {exc}"
        name = cfg.name
        if good:
            self._fails[name] = 0
            self._goods[name] = self._goods.get(name, 0) + 1
            if not backend.healthy and self._goods[name] >= self.healthy_after:
                log.info("router backend %s is healthy again", name)
                backend.healthy = True
        else:
            self._goods[name] = 0
            self._fails[name] = self._fails.get(name, 0) + 1
            if backend.healthy and self._fails[name] >= self.unhealthy_after:
                log.warning(
                    "router backend %s failed %d probes: %s",
                    name,
                    self._fails[name],
                    error or f"HTTP {status}",
                )
                backend.healthy = False
        _PROBES.labels(name, "ok" if good else "fail").inc()
        self.last[name] = {
            "url": url,
            "status": status,
            "error": error,
            "ok": good,
            "duration_s": time.perf_counter() - start,
            "healthy": backend.healthy,
        }
        return good

    async def probe_all(self) -> dict[str, bool]:
        """One round: every backend probed concurrently."""
        results = await asyncio.gather(*(self.probe(b) for b in self.backends))
        self.rounds += 1
        return {b.config.name: r for b, r in zip(self.backends, results, strict=True)}

    async def run(self, rounds: int | None = None) -> None:
        """Probe every ``interval_s`` until cancelled (or for ``rounds`` rounds)."""
        done = 0
        while rounds is None or done < rounds:
            await self.probe_all()
            done += 1
            if rounds is not None and done >= rounds:
                break
            await self._sleep(self.interval_s)


class OutlierDetector:
    """Passive outlier ejection on consecutive 5xx and transport errors (module doc).

    Args:
        consecutive: Errors in a row that eject a backend.
        base_s: First ejection's length (seconds).
        max_s: Longest ejection; also the quiet time after which the count resets.
    """

    def __init__(self, *, consecutive: int = 5, base_s: float = 10.0, max_s: float = 300.0):
        if consecutive < 1:
            raise ConfigError(f"consecutive={consecutive!r}: must be >= 1")
        if not 0 < base_s <= max_s:
            raise ConfigError(f"base_s={base_s!r}, max_s={max_s!r}: need 0 < base_s <= max_s")
        self.consecutive = int(consecutive)
        self.base_s = float(base_s)
        self.max_s = float(max_s)

    @staticmethod
    def is_outlier_error(status: int | None, success: bool) -> bool:
        """A 5xx or a transport error (no status) counts; 429 and other 4xx do not."""
        return not success and (status is None or status >= 500)

    def record(
        self,
        backend: BackendState,
        *,
        success: bool,
        status: int | None,
        now: float,
        peers: Callable[[BackendState], Sequence[Sequence[BackendState]]],
    ) -> bool:
        """Count one outcome; True when it ejected the backend.

        ``peers(backend)`` gives, for each model the backend serves, the backends serving it
        (the backend included): ejection is refused when, in one of them, every other backend
        is ejected already.
        """
        if not self.is_outlier_error(status, success):
            if success or (status is not None and status < 500):
                backend.consecutive_errors = 0
            return False
        backend.consecutive_errors += 1
        if backend.consecutive_errors < self.consecutive or backend.ejected_until > now:
            return False
        for group in peers(backend):
            if not any(b is not backend and b.ejected_until <= now for b in group):
                return False  # the last one standing keeps its traffic
        if now - backend.ejected_until >= self.max_s:  # quiet since the last one ended
            backend.ejections = 0
        backend.ejections += 1
        length = min(self.max_s, self.base_s * 2.0 ** (backend.ejections - 1))
        backend.ejected_until = now + length
        backend.last_ejected_at = now
        backend.consecutive_errors = 0
        _EJECTIONS.labels(backend.config.name).inc()
        log.warning(
            "router backend %s ejected for %.1f s (ejection %d in a row)",
            backend.config.name,
            length,
            backend.ejections,
        )
        return True
