"""Counters of a cache, and their Prometheus export.

A memory-tier read takes well under a microsecond; a ``prometheus_client`` counter increment
takes about a third of one (it holds a lock). So a cache counts in plain integer attributes
(:class:`CacheCounters`) and one registered collector reads them at scrape time, summed per
namespace over every live cache of the process. Redis round trips (tens of microseconds) are
timed into a real histogram.

Exported (all labelled by ``namespace``; namespaces are validated names, and the HTTP service
bounds how many it creates):

- ``workbench_cache_hits_total``, ``workbench_cache_misses_total``
- ``workbench_cache_errors_total`` (failed Redis calls, served from the memory tier or raised)
- ``workbench_cache_fallback_total`` (calls served by the memory tier during an outage)
- ``workbench_cache_fallback_active`` (1 while a cache of the namespace is in fallback)
- ``workbench_cache_memory_bytes`` (bytes held by memory tiers)
- ``workbench_cache_redis_latency_seconds`` (histogram of Redis round trips, by operation)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from workbench import metrics

__all__ = ["REDIS_LATENCY", "CacheCounters", "track"]

REDIS_LATENCY = metrics.histogram(
    "workbench_cache_redis_latency_seconds",
    "Round-trip time of the cache's Redis calls",
    ["namespace", "op"],
)


@dataclass
class CacheCounters:
    """What one cache has counted since it was made (plain ints; see the module docstring)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    fallback: int = 0
    sets: int = 0
    deletes: int = 0
    replayed: int = 0
    recoveries: int = 0
    outages: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Tracked(Protocol):
    namespace: str
    counters: CacheCounters

    def memory_bytes(self) -> int: ...
    def in_fallback(self) -> bool: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def track(cache: _Tracked) -> None:
    """Export ``cache``'s counters until it is garbage-collected."""
    with _lock:
        _live.add(cache)


class _Collector:
    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        with _lock:
            caches = list(_live)
        fams = {
            "hits": CounterMetricFamily("workbench_cache_hits", "Cache hits", labels=["namespace"]),
            "misses": CounterMetricFamily(
                "workbench_cache_misses", "Cache misses", labels=["namespace"]
            ),
            "errors": CounterMetricFamily(
                "workbench_cache_errors", "Failed Redis calls of the cache", labels=["namespace"]
            ),
            "fallback": CounterMetricFamily(
                "workbench_cache_fallback",
                "Cache calls served by the memory tier while Redis was out",
                labels=["namespace"],
            ),
        }
        totals: dict[str, dict[str, float]] = {name: {} for name in fams}
        active: dict[str, float] = {}
        held: dict[str, float] = {}
        for c in caches:
            ns = c.namespace
            for name in fams:
                totals[name][ns] = totals[name].get(ns, 0) + getattr(c.counters, name)
            active[ns] = max(active.get(ns, 0.0), 1.0 if c.in_fallback() else 0.0)
            held[ns] = held.get(ns, 0) + c.memory_bytes()
        for name, fam in fams.items():
            for ns, value in sorted(totals[name].items()):
                fam.add_metric([ns], value)
            yield fam
        g = GaugeMetricFamily(
            "workbench_cache_fallback_active",
            "1 while a cache of the namespace serves from memory because Redis is out",
            labels=["namespace"],
        )
        for ns, value in sorted(active.items()):
            g.add_metric([ns], value)
        yield g
        b = GaugeMetricFamily(
            "workbench_cache_memory_bytes", "Bytes held by memory tiers", labels=["namespace"]
        )
        for ns, value in sorted(held.items()):
            b.add_metric([ns], value)
        yield b


_registered = False
with _lock:
    if not _registered:
        metrics.REGISTRY.register(_Collector())
        _registered = True
