"""Prometheus metrics shared by every subsystem.

All metrics live in one :class:`prometheus_client.CollectorRegistry` (:data:`REGISTRY`) that
``/metrics`` renders. Names say subsystem and unit: ``workbench_<subsystem>_<what>_<unit>``
(``workbench_cache_requests_total``, ``workbench_router_upstream_latency_seconds``). The
constructors are idempotent, so a module imported twice (notebooks, tests) gets the same
metric back instead of a duplicate-registration error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from workbench.errors import ConfigError

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "REGISTRY",
    "counter",
    "gauge",
    "histogram",
    "render",
]

REGISTRY = CollectorRegistry(auto_describe=True)
_NAME = re.compile(r"^workbench_[a-z0-9]+_[a-z0-9_]+$")
_lock = threading.Lock()
_made: dict[str, Any] = {}
M = TypeVar("M", Counter, Gauge, Histogram)

#: Latency buckets (seconds) from 50 microseconds to 30 seconds.
LATENCY_BUCKETS = (
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
    2.5e-2,
    5e-2,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def _make(cls: type[M], name: str, doc: str, labels: Sequence[str], **kw: Any) -> M:
    if not _NAME.match(name):
        raise ConfigError(
            f"metric name {name!r} must look like workbench_<subsystem>_<what>_<unit>"
        )
    with _lock:
        existing = _made.get(name)
        if existing is not None:
            if not isinstance(existing, cls) or tuple(existing._labelnames) != tuple(labels):
                raise ConfigError(f"metric {name!r} already exists with another type or labels")
            return existing
        metric = cls(name, doc, labelnames=tuple(labels), registry=REGISTRY, **kw)
        _made[name] = metric
        return metric


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """A counter (name ends in ``_total``)."""
    if not name.endswith("_total"):
        raise ConfigError(f"counter {name!r} must end in _total")
    # prometheus_client appends _total itself.
    return _make(Counter, name[: -len("_total")], doc, labels)


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    """A gauge."""
    return _make(Gauge, name, doc, labels)


def histogram(
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    """A histogram; the default buckets suit latencies in seconds."""
    return _make(Histogram, name, doc, labels, buckets=tuple(buckets))


def render() -> bytes:
    """The Prometheus text exposition of every workbench metric."""
    return generate_latest(REGISTRY)
