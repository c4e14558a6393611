"""The analytics service as the HTTP service uses it: one store, one buffered writer.

:class:`AnalyticsService` is built once, at app start-up, from a frozen, validated
:class:`AnalyticsConfig` (the ``[analytics]`` section, ``WORKBENCH_ANALYTICS__<KEY>``). It owns
an :class:`~workbench.analytics.store.AnalyticsStore` and a
:class:`~workbench.analytics.ingest.BufferedWriter` in front of it:

- **Durable ingestion** (:meth:`AnalyticsService.ingest`): one ``store.ingest`` call, one
  transaction; it returns after the commit, so the HTTP 200 that follows means durable.
- **Buffered ingestion** (:meth:`AnalyticsService.submit`): the records are validated and
  handed to the writer, which commits them within ``flush_interval_s`` (the HTTP 202). When
  the writer's bound (``buffer_records``) is reached, a caller waits at most ``submit_wait_s``
  for room, then gets a :class:`~workbench.errors.BackendUnavailable` (503) with
  ``retry_after_s``: memory never grows past the bound.
- **Bounded work.** Every store call runs on a pool of ``threads`` threads
  (:meth:`AnalyticsService.call`), so the event loop never blocks on the database; at most
  ``max_pending`` calls wait for a thread, further ones are refused at once with 503 and a
  ``Retry-After`` rather than queued without bound.
- **Feedback** (:meth:`AnalyticsService.feedback`) replaces a record's satisfaction or quality
  (counted once, never an extra execution); an id that is not stored yet but may sit in the
  writer's buffer is looked up again after the buffer is flushed, so feedback on a record
  just sent in ``async`` mode is not lost (the platform could not give feedback on buffered
  records).
- **Performance test** (:meth:`AnalyticsService.performance_test`): a real measurement.
  ``operations`` synthetic records (:func:`~workbench.analytics.synthetic.generate_log`) are
  validated and ingested, 100 per transaction, into a scratch in-memory DuckDB store, and
  (``complex``) aggregated after every batch (effectiveness with exact percentiles, then
  insights); the answer holds the measured throughput and latency percentiles of those
  calls, and stops at ``perf_time_limit_s`` (``truncated`` then says so). One test runs at a
  time; the store of the service is never touched.

The embedded default store is DuckDB, which admits one writing process, so the HTTP service
runs this service in one owner worker (:mod:`workbench.api.workers`); with ``store =
"postgresql://..."`` nothing changes for the caller. The store is opened (and the writer
started) by the first call that needs them, so a server whose clients never use analytics
never holds the DuckDB file; a store that cannot be opened (the file held by another
process, PostgreSQL away) answers :class:`~workbench.errors.BackendUnavailable` (503), and
``health`` says why.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from workbench import __version__
from workbench.analytics.ingest import BufferedWriter, JsonlDeadLetter, Submitted
from workbench.analytics.records import COLUMNS
from workbench.analytics.stats import Dashboard, Insight, Recommendation, dashboard, insights
from workbench.analytics.stats import recommend as recommend_parameters
from workbench.analytics.store import AnalyticsStore, Filters, IngestReport
from workbench.config import Settings, from_section
from workbench.errors import BackendUnavailable, CapacityError, ConfigError, InputError

__all__ = [
    "MAX_BATCH",
    "MAX_PERF_OPERATIONS",
    "AnalyticsConfig",
    "AnalyticsService",
    "PerformanceReport",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Most records of one batch request (the platform's 100); ``max_batch`` may lower it.
MAX_BATCH = 100
#: Most operations of one performance test (the platform's 10,000).
MAX_PERF_OPERATIONS = 10_000
#: Records per transaction in the performance test (one HTTP batch).
PERF_BATCH = 100
_STORE_SCHEMES = ("duckdb:///", "sqlite:///", "postgresql://", "postgres://")
_DASHBOARD_COLUMNS = [c for c in COLUMNS if c not in ("parameters", "user_id", "session_id")]


def default_store_url(data_dir: Path) -> str:
    """The embedded default: DuckDB at ``<data dir>/analytics.duckdb``."""
    return f"duckdb:///{Path(data_dir) / 'analytics.duckdb'}"


@dataclass(frozen=True)
class AnalyticsConfig:
    """Knobs of the analytics service (``[analytics]`` in workbench.toml).

    Attributes:
        store: Store URL (``duckdb:///path``, ``sqlite:///path``, ``postgresql://...``);
            empty: the embedded default under the data dir (filled in by
            :meth:`from_settings`).
        max_batch: Most records of one batch request, 1..100.
        buffer_records: Bound of the writer's buffer, records (at least ``max_batch``).
        flush_records: Records per write of the writer (lowered to ``buffer_records``).
        flush_interval_s: Longest a buffered record waits before its write starts, seconds.
        max_retries: Retries of a failed buffered write before its records are dead-lettered.
        submit_wait_s: How long a buffered request waits for room in a full buffer before
            the 503, seconds (0: not at all).
        threads: Threads that run store calls.
        max_pending: Most store calls waiting for a thread; more are refused (503).
        dead_letter: JSON Lines file of the records the writer could not store; empty: next
            to an embedded store's file, else under the data dir.
        stream: Default Redis stream of ``workbench analytics ingest --stream``.
        group: Default consumer group of the stream consumer.
        requests_per_min: Requests a minute per client on each analytics route (the
            platform's 200); 0 turns the limit off.
        perf_test_per_min: Performance tests a minute per client (the platform's 10); 0: off.
        perf_max_operations: Most operations a performance test may ask for, 1..10000.
        perf_time_limit_s: Longest a performance test runs, seconds.
        max_effectiveness_rows: Most rows one effectiveness answer lists.
        max_task_types, max_models, max_parameter_sets: The store's cardinality bounds.
    """

    store: str = ""
    max_batch: int = MAX_BATCH
    buffer_records: int = 50_000
    flush_records: int = 5_000
    flush_interval_s: float = 1.0
    max_retries: int = 8
    submit_wait_s: float = 0.0
    threads: int = 4
    max_pending: int = 256
    dead_letter: str = ""
    stream: str = "analytics:executions"
    group: str = "analytics"
    requests_per_min: float = 200.0
    perf_test_per_min: float = 10.0
    perf_max_operations: int = MAX_PERF_OPERATIONS
    perf_time_limit_s: float = 5.0
    max_effectiveness_rows: int = 1000
    max_task_types: int = 1000
    max_models: int = 1000
    max_parameter_sets: int = 1_000_000

    def __post_init__(self) -> None:
        def bad(key: str, fix: str) -> ConfigError:
            return ConfigError(
                f"invalid setting [analytics] {key}={getattr(self, key)!r}: use {fix}",
                details={"key": f"analytics.{key}"},
            )

        if not isinstance(self.store, str) or (
            self.store and not self.store.startswith(_STORE_SCHEMES)
        ):
            raise bad("store", "duckdb:///path, sqlite:///path, postgresql://... or empty")
        for key in ("stream", "group"):
            value = getattr(self, key)
            if not isinstance(value, str) or not 1 <= len(value) <= 200:
                raise bad(key, "a name of 1-200 characters")
        if not isinstance(self.dead_letter, str):
            raise bad("dead_letter", "a file path or empty")
        ranges: list[tuple[str, float, float, bool]] = [
            ("max_batch", 1, MAX_BATCH, True),
            ("buffer_records", 1, 10_000_000, True),
            ("flush_records", 1, 1_000_000, True),
            ("flush_interval_s", 0.001, 3600.0, False),
            ("max_retries", 0, 1000, True),
            ("submit_wait_s", 0.0, 60.0, False),
            ("threads", 1, 64, True),
            ("max_pending", 1, 100_000, True),
            ("requests_per_min", 0.0, 1e9, False),
            ("perf_test_per_min", 0.0, 1e9, False),
            ("perf_max_operations", 1, MAX_PERF_OPERATIONS, True),
            ("perf_time_limit_s", 0.1, 60.0, False),
            ("max_effectiveness_rows", 1, 100_000, True),
            ("max_task_types", 1, 10_000_000, True),
            ("max_models", 1, 10_000_000, True),
            ("max_parameter_sets", 1, 1_000_000_000, True),
        ]
        for key, lo, hi, integer in ranges:
            value = getattr(self, key)
            ok_type = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, ok_type):
                raise bad(key, "an integer" if integer else "a number")
            if not (math.isfinite(value) and lo <= value <= hi):
                raise bad(key, f"a value in [{lo:g}, {hi:g}]")
        if self.buffer_records < self.max_batch:
            raise bad("buffer_records", f"at least max_batch={self.max_batch}")
        if self.flush_records > self.buffer_records:  # a smaller buffer flushes sooner
            object.__setattr__(self, "flush_records", self.buffer_records)

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AnalyticsConfig:
        """Build from the ``[analytics]`` settings section, refusing unknown keys."""
        return from_section(cls, section, "analytics")

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalyticsConfig:
        """Build from the settings' ``[analytics]`` section; an empty ``store`` becomes the
        embedded default under ``settings.data_dir``."""
        config = cls.from_section(settings.section("analytics"))
        if not config.store:
            config = replace(config, store=default_store_url(settings.data_dir))
        return config


@dataclass(frozen=True)
class PerformanceReport:
    """What one performance test measured (every figure is measured, none is assumed).

    Attributes:
        test_type: ``simple`` (validate and ingest) or ``complex`` (also aggregate after
            each batch).
        task_type: Task type of the generated records.
        operations_requested: Records asked for.
        operations_completed: Records ingested before the time limit.
        batches: Ingest transactions made (``batch_size`` records each, the last fewer).
        batch_size: Records per transaction.
        truncated: The time limit stopped the test early.
        seconds: Wall time of the measured calls, seconds.
        throughput_per_s: ``operations_completed / seconds``.
        ingest_latency_ms: ``{mean, p50, p95, p99, max}`` of one batch's ingest, ms.
        aggregate_latency_ms: The same for one aggregation (``complex`` only, else None).
        backend: The scratch store measured.
    """

    test_type: str
    task_type: str
    operations_requested: int
    operations_completed: int
    batches: int
    batch_size: int
    truncated: bool
    seconds: float
    throughput_per_s: float
    ingest_latency_ms: Mapping[str, float]
    aggregate_latency_ms: Mapping[str, float] | None
    backend: str

    def to_dict(self) -> dict[str, Any]:
        """Field by field (JSON-ready)."""
        return asdict(self)


def _latency_summary(samples: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return dict.fromkeys(("mean", "p50", "p95", "p99", "max"), math.nan)
    p50, p95, p99 = np.quantile(ms, [0.5, 0.95, 0.99])
    return {
        "mean": float(ms.mean()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(ms.max()),
    }


@dataclass
class _Counters:
    durable_requests: int = 0
    async_requests: int = 0
    records_accepted: int = 0
    records_duplicate: int = 0
    records_rejected: int = 0
    records_buffered: int = 0
    feedback: int = 0
    refused_busy: int = 0
    perf_tests: int = 0


class AnalyticsService:
    """The store, the buffered writer and the bounded pool that runs their calls.

    Args:
        config: The validated knobs (``store`` must be set: :meth:`AnalyticsConfig.from_settings`
            fills it).
        store: A ready store to use instead of opening ``config.store`` (tests).
        clock: Wall clock, epoch seconds: the present of validation and of the dashboard.
    """

    def __init__(
        self,
        config: AnalyticsConfig,
        *,
        store: AnalyticsStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if store is None and not config.store:
            raise ConfigError(
                "AnalyticsService needs [analytics] store; build the config with "
                "AnalyticsConfig.from_settings(settings)"
            )
        self.config = config
        self._clock = clock
        self._store: AnalyticsStore | None = store
        self._writer: BufferedWriter | None = None
        self._owns_store = store is None
        self._open_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(config.threads, thread_name_prefix="analytics")
        self._pending = 0
        self._started = time.monotonic()
        self._started_at = clock()
        self._counts = _Counters()
        self._lock = threading.Lock()
        self._perf_lock = threading.Lock()
        self._closed = False

    @property
    def store(self) -> AnalyticsStore:
        """The store (opened on first use)."""
        return self._opened()[0]

    @property
    def writer(self) -> BufferedWriter:
        """The buffered writer in front of the store (started on first use)."""
        return self._opened()[1]

    def _opened(self) -> tuple[AnalyticsStore, BufferedWriter]:
        """Open the store and start the writer once.

        Opening waits for the first call that needs them, so a server whose clients never
        use analytics never holds the embedded store's file (which admits one process).

        Raises:
            BackendUnavailable: The store cannot be opened (another process holds the
                DuckDB file, PostgreSQL does not answer), or the service is closed.
        """
        store, writer = self._store, self._writer
        if store is not None and writer is not None:
            return store, writer
        with self._open_lock:
            if self._closed:
                raise BackendUnavailable("the analytics service is closed")
            if self._store is None:
                try:
                    self._store = AnalyticsStore(
                        self.config.store,
                        clock=self._clock,
                        max_task_types=self.config.max_task_types,
                        max_models=self.config.max_models,
                        max_parameter_sets=self.config.max_parameter_sets,
                    )
                except ConfigError as exc:  # e.g. the DuckDB file is another process's
                    raise BackendUnavailable(exc.message, retry_after_s=5.0) from None
            if self._writer is None:
                dead = self.config.dead_letter
                self._writer = BufferedWriter(
                    self._store,
                    max_records=self.config.buffer_records,
                    flush_records=self.config.flush_records,
                    flush_interval_s=self.config.flush_interval_s,
                    max_retries=self.config.max_retries,
                    name="http",
                    dead_letter=JsonlDeadLetter(dead) if dead else None,
                )
            return self._store, self._writer

    def __repr__(self) -> str:
        return f"AnalyticsService(store={self.config.store!r})"

    # -- running store calls ------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the service's threads.

        Raises:
            BackendUnavailable: ``max_pending`` calls already wait for a thread (retry after
                ``retry_after_s``).
        """
        if self._pending >= self.config.max_pending:
            with self._lock:
                self._counts.refused_busy += 1
            raise BackendUnavailable(
                f"the analytics service has {self._pending} calls waiting (max_pending="
                f"{self.config.max_pending}); retry shortly, or raise [analytics] max_pending",
                retry_after_s=1.0,
            )
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )
        finally:
            self._pending -= 1

    # -- writing ------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The service's present (UTC)."""
        return datetime.fromtimestamp(self._clock(), UTC)

    def ingest(self, records: Sequence[Mapping[str, Any]]) -> IngestReport:
        """Store ``records`` in one transaction; returns after the commit (durable)."""
        self._check_batch(records)
        report = self.store.ingest(list(records))
        with self._lock:
            c = self._counts
            c.durable_requests += 1
            c.records_accepted += report.accepted
            c.records_duplicate += report.duplicates
            c.records_rejected += len(report.rejected)
        return report

    def submit(self, records: Sequence[Mapping[str, Any]]) -> Submitted:
        """Validate ``records`` and buffer the valid ones (committed within
        ``flush_interval_s``).

        Raises:
            BackendUnavailable: The buffer stayed full for ``submit_wait_s`` (nothing of the
                batch was buffered; ``retry_after_s`` says when to retry).
        """
        self._check_batch(records)
        try:
            done = self.writer.submit(list(records), timeout_s=self.config.submit_wait_s)
        except CapacityError as exc:
            with self._lock:
                self._counts.refused_busy += 1
            raise BackendUnavailable(
                f"{exc.message} (buffer_records={self.config.buffer_records})",
                details=exc.details,
                retry_after_s=exc.retry_after_s or self.config.flush_interval_s,
            ) from None
        with self._lock:
            c = self._counts
            c.async_requests += 1
            c.records_buffered += done.accepted
            c.records_rejected += len(done.rejected)
        return done

    def _check_batch(self, records: Sequence[Any]) -> None:
        if len(records) > self.config.max_batch:
            raise InputError(
                f"a batch holds at most [analytics] max_batch={self.config.max_batch} records, "
                f"got {len(records)}; split it",
                details=[{"field": "executions", "message": f"at most {self.config.max_batch}"}],
            )

    def feedback(
        self,
        execution_id: str,
        *,
        satisfaction: float | None = None,
        quality: float | None = None,
        flush_timeout_s: float = 5.0,
    ) -> bool:
        """Set a record's user satisfaction (0..5) and/or quality (0..1), once.

        A record still in the writer's buffer is flushed first, so its feedback lands.

        Returns:
            False when no record has this id (stored or buffered).
        """
        found = self.store.record_feedback(execution_id, satisfaction=satisfaction, quality=quality)
        if not found and self.writer.buffered:
            try:
                self.writer.flush(flush_timeout_s)
            except Exception as exc:  # the store is slow or away: answer from what is stored
                logger.warning("flushing before feedback on %r failed: %s", execution_id, exc)
            found = self.store.record_feedback(
                execution_id, satisfaction=satisfaction, quality=quality
            )
        if found:
            with self._lock:
                self._counts.feedback += 1
        return found

    # -- reading ------------------------------------------------------------------------------

    def effectiveness(
        self, filters: Filters | None = None, *, limit: int | None = None
    ) -> tuple[pd.DataFrame, int]:
        """Effectiveness per ``(task_type, parameter_hash)``, best score first.

        Returns:
            ``(rows, total)``: at most ``limit`` (default and ceiling
            ``max_effectiveness_rows``) rows, and how many groups matched.
        """
        ceiling = self.config.max_effectiveness_rows
        limit = ceiling if limit is None else min(int(limit), ceiling)
        eff = self.store.effectiveness(("task_type", "parameter_hash"), filters)
        total = len(eff)
        eff = eff.sort_values(
            ["score", "executions", "task_type", "parameter_hash"],
            ascending=[False, False, True, True],
            kind="stable",
            na_position="last",
        )
        return eff.head(limit).reset_index(drop=True), total

    def insights(
        self, task_type: str, *, complexity: str | None = None
    ) -> tuple[list[Insight], Recommendation]:
        """The task type's insights (platform thresholds) and its recommended parameters
        (:func:`~workbench.analytics.stats.recommend`, filtered by ``complexity``)."""
        eff = self.store.effectiveness(
            ("task_type", "parameter_hash"), Filters(task_types=(task_type,))
        )
        return insights(eff, task_type), recommend_parameters(eff, task_type, complexity)

    def dashboard(self, window: timedelta = timedelta(hours=24)) -> Dashboard:
        """The platform's dashboard over the last ``window`` (24 hours)."""
        now = self.now()
        frame = self.store.frame(
            Filters(start=now - window, end=now + timedelta(microseconds=1)),
            columns=_DASHBOARD_COLUMNS,
        )
        return dashboard(frame, now, window=window)

    def snapshot(self, *, top: int = 20) -> dict[str, Any]:
        """Totals of the store: records, success rate, the ``top`` task types and models by
        records (with how many distinct there are), and the writer's counters."""
        total = self.store.count()
        outcomes = self.store.count_by("success")
        successes = int(outcomes.get(True, 0))
        out: dict[str, Any] = {
            "total_executions": total,
            "successes": successes,
            "success_rate": successes / total if total else None,
        }
        for column in ("task_type", "model", "provider"):
            counts = self.store.count_by(column)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            out[f"{column}s"] = {
                "distinct": len(counts),
                "top": [{"name": k, "executions": v} for k, v in ranked[:top]],
            }
        out["writer"] = self.writer.stats().to_dict()
        out["as_of"] = self.now().isoformat()
        return out

    def stats(self) -> dict[str, Any]:
        """The service's own counters since it started (not the process's)."""
        with self._lock:
            counts = asdict(self._counts)
        return {
            "uptime_s": time.monotonic() - self._started,
            "started_at": datetime.fromtimestamp(self._started_at, UTC).isoformat(),
            "store_backend": self.store.backend,
            "pending_calls": self._pending,
            **counts,
            "writer": self.writer.stats().to_dict(),
        }

    def health(self) -> dict[str, Any]:
        """Whether the store answers (a real query, timed) and the writer keeps up.

        ``healthy`` is False when the store query fails; ``status`` is ``degraded`` when the
        buffer is over 90 % full or records were dead-lettered.
        """
        start = time.perf_counter()
        error = None
        backend = None
        buffered = dead_lettered = 0
        try:
            store, writer = self._opened()
            backend = store.backend
            count: int | None = store.count()
            stats = writer.stats()
            buffered, dead_lettered = stats.buffered, stats.dead_lettered
        except Exception as exc:  # any failure of the store is what health reports
            count, error = None, str(exc)[:1000]
        latency_ms = (time.perf_counter() - start) * 1000.0
        healthy = error is None
        degraded = buffered > 0.9 * self.config.buffer_records or dead_lettered > 0
        return {
            "healthy": healthy,
            "status": "unhealthy" if not healthy else "degraded" if degraded else "healthy",
            "store_backend": backend,
            "store_connected": healthy,
            "store_latency_ms": latency_ms,
            "records": count,
            "buffered": buffered,
            "buffer_records": self.config.buffer_records,
            "dead_lettered": dead_lettered,
            "error": error,
            "version": __version__,
            "uptime_s": time.monotonic() - self._started,
        }

    def version(self) -> dict[str, Any]:
        """The package version and the store in use."""
        return {
            "version": __version__,
            "service": "parameter-analytics",
            "store_backend": self.store.backend,
        }

    # -- the performance test -----------------------------------------------------------------

    def performance_test(
        self, test_type: str, operations: int, task_type: str, *, seed: int = 0
    ) -> PerformanceReport:
        """Measure ingestion (and, for ``complex``, aggregation) on a scratch store.

        Raises:
            InputError: An unknown test type, or operations outside 1..perf_max_operations.
            BackendUnavailable: Another performance test is running (retry after a while).
        """
        from workbench.analytics.synthetic import generate_log

        if test_type not in ("simple", "complex"):
            raise InputError(
                f"testType={test_type!r} must be 'simple' or 'complex'",
                details=[{"field": "testType"}],
            )
        limit = self.config.perf_max_operations
        if isinstance(operations, bool) or not isinstance(operations, int):
            raise InputError(f"operations={operations!r} must be an integer")
        if not 1 <= operations <= limit:
            raise InputError(
                f"operations={operations} must lie in 1..{limit}",
                details=[{"field": "operations", "message": f"1..{limit}"}],
            )
        if not self._perf_lock.acquire(blocking=False):
            raise BackendUnavailable(
                "another performance test is running; retry when it is done",
                retry_after_s=self.config.perf_time_limit_s,
            )
        try:
            start_time = self.now() - timedelta(days=1)
            log, _ = generate_log(
                operations,
                seed=seed,
                task_types=(task_type,),
                start=start_time,
                duration=timedelta(hours=23),
            )
            records = log
            ingest_s: list[float] = []
            aggregate_s: list[float] = []
            completed = 0
            begin = time.perf_counter()
            deadline = begin + self.config.perf_time_limit_s
            truncated = False
            scratch = AnalyticsStore("duckdb:///:memory:", clock=self._clock)
            try:
                for lo in range(0, operations, PERF_BATCH):
                    if time.perf_counter() >= deadline:
                        truncated = True
                        break
                    chunk = records.iloc[lo : lo + PERF_BATCH]
                    t0 = time.perf_counter()
                    report = scratch.ingest(chunk)
                    ingest_s.append(time.perf_counter() - t0)
                    completed += report.accepted + report.duplicates
                    if test_type == "complex":
                        t0 = time.perf_counter()
                        eff = scratch.effectiveness(("task_type", "parameter_hash"))
                        insights(eff, task_type)
                        aggregate_s.append(time.perf_counter() - t0)
                seconds = time.perf_counter() - begin
            finally:
                scratch.close()
        finally:
            self._perf_lock.release()
        with self._lock:
            self._counts.perf_tests += 1
        return PerformanceReport(
            test_type=test_type,
            task_type=task_type,
            operations_requested=operations,
            operations_completed=completed,
            batches=len(ingest_s),
            batch_size=PERF_BATCH,
            truncated=truncated,
            seconds=seconds,
            throughput_per_s=completed / seconds if seconds > 0 else math.nan,
            ingest_latency_ms=_latency_summary(ingest_s),
            aggregate_latency_ms=_latency_summary(aggregate_s) if test_type == "complex" else None,
            backend="duckdb (in-memory scratch store)",
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered (or dead-letter it after ``timeout_s``), stop the threads,
        close the store (idempotent)."""
        with self._open_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._writer is not None:
                self._writer.close(timeout_s)
        finally:
            self._executor.shutdown(wait=True)
            if self._owns_store and self._store is not None:
                self._store.close()
