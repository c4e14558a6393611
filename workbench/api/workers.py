"""One state across ``workbench serve --workers K``: each stateful subsystem has one owner.

With several worker processes the kernel spreads connections across them (``SO_REUSEPORT``),
so two requests of one client may land on different processes. Durable domain state (studies
and their trials, VRAM reservations and their ledger, orchestration results and agent models,
the auto-pilot and vision job queues) must give every worker the same answer.

**Mechanism: one owner process per stateful subsystem, the other workers forward to it.**
Each subsystem (each :class:`~workbench.api.services.ServiceSpec`) is owned by one worker:
the i-th mounted subsystem by worker ``i mod K``, so with two workers the subsystems are spread
over both. Only the owner builds the domain service; a request for one of its routes that
reaches another worker is forwarded over a Unix socket (``<run dir>/worker-<i>.sock``, in a
0700 directory made for this server) and the owner's answer is sent back unchanged. Every
response names the worker that produced it in ``X-Workbench-Worker``.

Why this and not state in Redis or PostgreSQL with atomic updates: the VRAM allocator is an
in-process structure with priority waits, leases and callbacks whose decisions take about
3 us; the optimizer's studies hold a fitted GP that costs seconds to rebuild from a store on
every request; the auto-pilot and job queues drive background loops that must run exactly
once. An owner keeps all of them exact, costs one loopback socket round trip per forwarded
request (``workbench bench service`` measures it), works with the default configuration
(file and memory stores included, with no Redis or PostgreSQL needed), and leaves the
stateless routes (``/health``, ``/openapi.json``) to every worker. A subsystem whose state
lives in a shared store (the cache contents in Redis) is instead served by every worker: its
:class:`~workbench.api.services.ServiceSpec` says ``per_worker = True``, and each worker builds
its own service (the cache's memory tier stays per worker).

What stays per worker, by design: ``/health``'s ``pid`` and uptime. What the owner holds
for everyone: performance and health estimates (breaker states, latency averages) of the
subsystems it owns, and the rate-limit budgets of their routes (a forwarded request carries
the client's address, trusted only over the Unix socket, so a client gets the route's limit
once in total, not once per worker). ``/metrics`` on any worker gathers every worker's metrics
over the same sockets: counters and histograms are summed, gauges keep one series per worker
under a ``worker`` label.

Why not ``prometheus_client``'s multiprocess mode: it must be enabled by an environment
variable before the library is first imported, and it cannot carry custom collectors, such as
the GPU monitor's readings exported by the vision owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web

from workbench.errors import BackendUnavailable

__all__ = [
    "CLIENT_HEADER",
    "WORKER_HEADER",
    "Forwarder",
    "WorkerInfo",
    "assign_owners",
    "merge_metrics",
]

logger = logging.getLogger(__name__)

#: Response header naming the worker (0-based index) that produced the answer.
WORKER_HEADER = "X-Workbench-Worker"
#: Request header carrying the original client's address on a forwarded request.
CLIENT_HEADER = "X-Workbench-Client"
#: How often a forwarding worker checks whether its client is still connected, seconds.
DISCONNECT_POLL_S = 0.1

#: Request header asking a worker for its own metrics only (used when gathering them).
LOCAL_METRICS_HEADER = "X-Workbench-Local-Metrics"

# Hop-by-hop headers (RFC 9110 section 7.6.1) and those aiohttp recomputes.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)


@dataclass(frozen=True)
class WorkerInfo:
    """Where this process stands among the server's workers.

    Attributes:
        index: This worker's index, 0-based.
        count: Number of workers.
        run_dir: Directory of the workers' Unix sockets (``None`` with one worker).
    """

    index: int = 0
    count: int = 1
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker index {self.index} outside 0..{self.count - 1}")
        if self.count > 1 and self.run_dir is None:
            raise ValueError("several workers need a run_dir for their sockets")

    def socket_path(self, index: int) -> Path:
        """The Unix socket worker ``index`` listens on."""
        assert self.run_dir is not None
        return self.run_dir / f"worker-{index}.sock"


def assign_owners(
    names: Sequence[str], count: int, *, shared: Iterable[str] = ()
) -> dict[str, int]:
    """Owner worker of each service: the i-th (in mount order) goes to worker ``i % count``.

    Services in ``shared`` keep their state in a shared store (the cache's contents in
    Redis): they get no owner, every worker builds its own and serves their routes.
    """
    everywhere = set(shared)
    owned = [name for name in dict.fromkeys(names) if name not in everywhere]
    return {name: i % count for i, name in enumerate(owned)}


def is_internal(request: web.Request) -> bool:
    """Whether ``request`` came over a worker's Unix socket (from another worker)."""
    transport = request.transport
    if transport is None:
        return False
    return isinstance(transport.get_extra_info("sockname"), str)


class ClientGone(Exception):
    """The client of a forwarded request disconnected; nobody is left to answer."""


class Forwarder:
    """Sends requests to the other workers over their Unix sockets (one pooled client each)."""

    def __init__(self, worker: WorkerInfo) -> None:
        self.worker = worker
        self._sessions: dict[int, ClientSession] = {}

    def _session(self, index: int) -> ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            connector = UnixConnector(path=str(self.worker.socket_path(index)), limit=0)
            session = ClientSession(
                connector=connector,
                auto_decompress=False,
                # No total limit: the owner bounds its own work; a dead owner fails to connect.
                timeout=ClientTimeout(total=None, sock_connect=5),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
            self._sessions[index] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def forward(
        self, request: web.Request, index: int, request_id: str, service: str
    ) -> web.StreamResponse:
        """Send ``request`` to worker ``index`` and relay its answer (streamed as it comes).

        If the client goes away first, the request to the owner is cancelled and its
        connection closed, so the owner sees the disconnect too (a VRAM wait then ends
        instead of granting memory nobody will use).

        Raises:
            BackendUnavailable: the owner does not answer.
        """
        relay = asyncio.ensure_future(self._relay(request, index, request_id, service))
        while True:
            done, _ = await asyncio.wait({relay}, timeout=DISCONNECT_POLL_S)
            if done:
                return relay.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay
                raise ClientGone(f"the client went away before worker {index} answered")

    async def _relay(
        self, request: web.Request, index: int, request_id: str, service: str
    ) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers[CLIENT_HEADER] = request.remote or ""
        headers["X-Request-Id"] = request_id
        body = await request.read() if request.body_exists else None
        try:
            async with self._session(index).request(
                request.method,
                f"http://workbench{request.rel_url}",
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
                if upstream.content_length is not None or upstream.headers.get(
                    "Content-Type", ""
                ).startswith("application/json"):
                    payload = await upstream.read()
                    return web.Response(status=upstream.status, headers=out_headers, body=payload)
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (ClientError, OSError) as exc:
            raise BackendUnavailable(
                f"worker {index}, which owns the {service} service, did not answer ({exc}); "
                "the server may be shutting down",
                details={"worker": index, "service": service},
            ) from None

    async def gather_metrics(self, authorization: str | None) -> list[tuple[int, str]]:
        """Every other worker's own metrics text, by worker index (missing workers skipped).

        ``authorization`` is the asking client's header, passed on so each worker checks it.
        """
        headers = {LOCAL_METRICS_HEADER: "1"}
        if authorization:
            headers["Authorization"] = authorization

        async def one(index: int) -> tuple[int, str] | None:
            try:
                async with self._session(index).get(
                    "http://workbench/metrics", headers=headers, timeout=ClientTimeout(total=5)
                ) as r:
                    if r.status != 200:
                        logger.warning("worker %d answered %d for its metrics", index, r.status)
                        return None
                    return index, await r.text()
            except (TimeoutError, ClientError, OSError) as exc:
                logger.warning("worker %d gave no metrics: %s", index, exc)
                return None

        others = [i for i in range(self.worker.count) if i != self.worker.index]
        results = await asyncio.gather(*(one(i) for i in others))
        return [r for r in results if r is not None]


def merge_metrics(texts: Iterable[tuple[int, str]]) -> bytes:
    """Merge workers' Prometheus text expositions into one.

    Counters, histograms and summaries are summed sample by sample (``_created`` takes the
    earliest); gauges and untyped metrics keep one series per worker, labelled ``worker``.
    """
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    families: dict[str, Any] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text):
            kept = families.setdefault(family.name, family)
            merged = values.setdefault(family.name, {})
            summed = kept.type in {"counter", "histogram", "summary", "gaugehistogram"}
            for s in family.samples:
                labels = dict(s.labels)
                if not summed:
                    labels["worker"] = str(index)
                key = (s.name, tuple(sorted(labels.items())))
                if key not in merged:
                    merged[key] = s.value
                elif s.name.endswith("_created"):
                    merged[key] = min(merged[key], s.value)
                else:
                    merged[key] += s.value

    class _Merged:
        def collect(self) -> Iterable[Any]:
            for name, family in families.items():
                family.samples = [
                    Sample(sample_name, dict(labels), value)
                    for (sample_name, labels), value in values[name].items()
                ]
                yield family

    return generate_latest(_Merged())
