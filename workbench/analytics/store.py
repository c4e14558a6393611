"""The analytics store: idempotent ingestion of execution records and their aggregates.

``AnalyticsStore(url)`` picks a backend by URL:

- ``None``: the ``[analytics] store`` setting when set, else the embedded default,
  DuckDB at ``<data dir>/analytics.duckdb``;
- ``duckdb:///path.duckdb`` and ``sqlite:///path.db`` (three slashes then the path, so
  ``sqlite:////tmp/a.db`` is absolute; ``:memory:`` works for both);
- ``postgresql://...``: PostgreSQL through :mod:`workbench.postgres_adapter`, in the schema
  given by the ``schema`` option (default ``analytics``).

Why DuckDB is the embedded default (measured on the 2-core development machine, shared with
other jobs, load average 7-9, so every figure is noisy by a factor of about 2; 17 columns,
20 task types, 200 parameter sets, 10 % of each batch already stored; tmpfs and disk alike):

=====================================================  ==============  ==============
operation                                              SQLite (WAL)    DuckDB
=====================================================  ==============  ==============
ingest 100k rows into 1M, one transaction              1.4-7.9 s       0.33-0.63 s
  (SQLite ``executemany`` INSERT OR IGNORE,            (13k-72k/s)     (160k-300k/s)
  synchronous=NORMAL; DuckDB Arrow
  ``INSERT OR IGNORE ... SELECT``)
replay of the same 100k (all duplicates)               1.4-1.7 s       0.3-0.6 s
DuckDB anti-join instead of the primary key            -               0.55-0.88 s
ingest 100k rows into 10M                              -               2.1 s
effectiveness without percentiles, 1M rows             8.2-11.1 s      -
effectiveness with exact p50/p95/p99, 1M rows          21-27 s         0.7-1.2 s
  (SQLite: window functions; DuckDB: quantile_cont)
same, pandas reading the rows out of SQLite            5.9-6.2 s       -
effectiveness without percentiles, 10M rows            43 s            -
effectiveness with exact percentiles, 10M rows         (minutes)       7.3-14.5 s
file size, 1M rows                                     328 MB          85 MB
=====================================================  ==============  ==============

DuckDB meets the ingest target (200,000 records/s from columnar input) where SQLite misses it
by 3-15x, and its aggregation *is* the reference the "within 2x of DuckDB" target names, while
SQLite is 20-30x slower (it has no percentile aggregate; exact quantiles need a sort per group
through window functions). Both were measured on the same generated data in the same runs,
with the same 17-column table and primary key; SQLite also carried its two secondary indexes
(without them its 100k ingest into 1M took 1.4 s, still 72k/s). Validation comes on top:
1,000,000 rows from a DataFrame take about 1.3 s of CPU, 100,000 dicts about 0.35 s.

The multi-process consequence: DuckDB admits one process with the file open for writing (it
holds a file lock). A second process opening the same file gets a
:class:`~workbench.errors.ConfigError` naming the fix, ``[analytics] store =
"postgresql://..."`` (or ``WORKBENCH_ANALYTICS__STORE``); the HTTP service therefore runs
analytics in one owner worker (``workbench/api/workers.py``). SQLite (WAL, busy timeout) takes
several writing processes, each write a ``BEGIN IMMEDIATE`` transaction, at its lower speed;
PostgreSQL takes any number.

Every backend: one transaction per :meth:`AnalyticsStore.ingest` call, returning only after
the commit (SQLite ``synchronous=NORMAL`` in WAL mode survives a process crash, not a power
cut; DuckDB and PostgreSQL flush their logs at commit). Idempotency is the primary key on
``execution_id`` (``INSERT OR IGNORE`` / ``ON CONFLICT (execution_id) DO NOTHING``);
PostgreSQL loads each batch with binary ``COPY`` into a temporary staging table, then inserts
from it in execution-id order (so concurrent writers of overlapping batches take row locks in
the same order and do not deadlock). Values always travel as bound parameters or COPY/Arrow
data, never inside SQL text.

Percentiles are exact and use one definition everywhere: linear interpolation between the
order statistics at ``(n - 1) q`` (numpy's default, DuckDB's ``quantile_cont``, PostgreSQL's
``percentile_cont``; SQLite computes the same from window functions).

Cardinality bounds (per item, with a reason): a record that would make more than
``max_task_types`` distinct task types, ``max_models`` models or ``max_parameter_sets``
parameter sets is refused. Across processes the check reads the committed state, so
concurrent writers may overshoot a bound by the new values of one batch each. Prometheus labels
use only the first ``max_label_values`` task types this process has seen; the rest read
``"other"``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.analytics.records import COLUMNS, Rejection, validate
from workbench.config import load_settings
from workbench.errors import ConfigError, InputError, NotFoundError

__all__ = ["AnalyticsStore", "Filters", "IngestReport", "StoreOptions"]

logger = logging.getLogger(__name__)

#: The stored columns (the record's, without ``parameters``, kept once per set).
STORED_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c != "parameters")
GROUP_COLUMNS = (
    "task_type",
    "parameter_hash",
    "model",
    "provider",
    "complexity",
    "user_id",
    "session_id",
    "error_class",
)
COUNT_COLUMNS = (*GROUP_COLUMNS, "success")
_INT_COLUMNS = ("timestamp", "prompt_tokens", "completion_tokens")
_FLOAT_COLUMNS = ("latency_ms", "cost", "quality", "user_satisfaction")
_QUANTILES = (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99))
_MAX_IN = 500  # values per IN (...) list

_INGESTED = metrics.counter(
    "workbench_analytics_records_total",
    "Execution records offered to the store, by task type and outcome (accepted, duplicate).",
    ("task_type", "outcome"),
)
_REJECTED = metrics.counter(
    "workbench_analytics_rejected_records_total",
    "Execution records refused by validation or a cardinality bound, by field.",
    ("field",),
)
_INGEST_SECONDS = metrics.histogram(
    "workbench_analytics_ingest_seconds",
    "Wall time of one AnalyticsStore.ingest call (validation and commit), seconds.",
    ("backend",),
)


@dataclass(frozen=True)
class StoreOptions:
    """Knobs of an :class:`AnalyticsStore` (keyword arguments after the URL).

    Attributes:
        max_task_types: Most distinct task types the store admits.
        max_models: Most distinct models.
        max_parameter_sets: Most distinct parameter sets.
        max_label_values: Task types that get their own Prometheus label value.
        schema: PostgreSQL schema of the tables (created when missing).
        busy_timeout_s: SQLite: how long a writer waits for another's lock, seconds.
        pool_timeout_s: PostgreSQL: how long a call waits for a connection, seconds (while
            the server is down, how long each attempt takes to fail).
        clock: The present as epoch seconds (validation's "not in the future" bound).
    """

    max_task_types: int = 1000
    max_models: int = 1000
    max_parameter_sets: int = 1_000_000
    max_label_values: int = 100
    schema: str = "analytics"
    busy_timeout_s: float = 30.0
    pool_timeout_s: float = 5.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        for name in ("max_task_types", "max_models", "max_parameter_sets", "max_label_values"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"analytics store {name}={value!r} must be an integer >= 1")
        if not isinstance(self.schema, str) or not self.schema:
            raise ConfigError(f"analytics store schema={self.schema!r} must be a non-empty name")
        if not self.pool_timeout_s > 0:
            raise ConfigError(
                f"analytics store pool_timeout_s={self.pool_timeout_s!r} must be positive"
            )
        if not self.busy_timeout_s > 0:
            raise ConfigError(
                f"analytics store busy_timeout_s={self.busy_timeout_s!r} must be positive"
            )


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise InputError(f"filter {name}={value!r} must be a list of strings") from None
    if not all(isinstance(v, str) for v in items):
        raise InputError(f"filter {name}={value!r} must be a list of strings")
    return items


@dataclass(frozen=True)
class Filters:
    """Which records an aggregate or a frame covers (every given condition must hold).

    Attributes:
        task_types: Keep these task types (empty: all).
        models: Keep these models.
        providers: Keep these providers.
        complexity: Keep these complexities (``simple``, ``medium``, ``complex``, ``""``).
        start: Keep records at or after this instant (timezone-aware).
        end: Keep records before this instant (timezone-aware).
        min_executions: :meth:`AnalyticsStore.effectiveness` keeps groups of at least this
            many executions (frames ignore it).
        min_confidence: Keep groups whose confidence ``min(0.95, n / 100)`` (the platform's)
            is at least this, 0..1 (frames ignore it).
    """

    task_types: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    complexity: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    min_executions: int = 0
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        for name in ("task_types", "models", "providers", "complexity"):
            object.__setattr__(self, name, _strings(name, getattr(self, name)))
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InputError(
                    f"filter {name}={value!r} must be a timezone-aware datetime "
                    "(datetime(..., tzinfo=UTC))"
                )
        if self.start is not None and self.end is not None and self.end < self.start:
            raise InputError(f"filter end={self.end} lies before start={self.start}")
        m = self.min_executions
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise InputError(f"filter min_executions={m!r} must be an integer >= 0")
        c = self.min_confidence
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c <= 1:
            raise InputError(f"filter min_confidence={c!r} must be a number in 0..1")


@dataclass(frozen=True)
class IngestReport:
    """What one :meth:`AnalyticsStore.ingest` call did; every count is committed.

    Attributes:
        accepted: Records newly written.
        duplicates: Valid records whose execution id the store already held (not written
            again; a replay is never counted twice).
        rejected: The refused records with index, field and reason.
        seconds: Wall time of the call (validation included), seconds.
    """

    accepted: int
    duplicates: int
    rejected: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.to_dict() for r in self.rejected],
            "seconds": self.seconds,
        }


class Backend(Protocol):
    """What a storage backend provides (:mod:`._embedded`, :mod:`._postgres`)."""

    name: str
    placeholder: str

    def insert(
        self, frame: pd.DataFrame, parameter_sets: dict[str, str], dims: list[tuple[str, str]]
    ) -> int:
        """Write ``frame`` (the stored columns), the new parameter sets and dimension values
        in one transaction, skipping execution ids already stored; return rows written."""

    def query(self, sql: str, params: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
        """Rows of ``sql`` as a DataFrame with ``columns``."""

    def percentiles_sql(self) -> list[str] | None:
        """Aggregate expressions for :data:`_QUANTILES`, or None to use window functions."""

    def update_feedback(
        self, execution_id: str, satisfaction: float | None, quality: float | None
    ) -> bool:
        """Set the feedback columns of one row; False when the id is unknown."""

    def close(self) -> None:
        """Release connections."""


class _LabelLimiter:
    """The first ``limit`` distinct values get their own label; later ones read "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return "other"


def _parse_url(url: str) -> tuple[str, str]:
    for scheme in ("duckdb", "sqlite"):
        prefix = f"{scheme}:///"
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if not path:
                break
            return scheme, path
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    raise ConfigError(
        f"analytics store url {url!r} is not one of duckdb:///path.duckdb, sqlite:///path.db "
        "or postgresql://user@host:port/dbname"
    )


class AnalyticsStore:
    """Execution records in DuckDB, SQLite or PostgreSQL behind one interface.

    Args:
        url: Where the records live (see the module docstring); None: the configured or
            embedded default.
        **options: :class:`StoreOptions` fields.

    Raises:
        ConfigError: An unknown URL or option; a DuckDB file another process has open.
        BackendUnavailable: PostgreSQL does not answer.
    """

    def __init__(self, url: str | None = None, **options: Any) -> None:
        known = {f.name for f in fields(StoreOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown analytics store options {unknown}; known: {', '.join(sorted(known))}"
            )
        self.options = StoreOptions(**options)
        if url is None:
            settings = load_settings()
            configured = settings.section("analytics").get("store")
            if configured:
                url = str(configured)
            else:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                url = f"duckdb:///{Path(settings.data_dir) / 'analytics.duckdb'}"
        self.url = url
        kind, target = _parse_url(url)
        self._backend: Backend
        if kind == "postgresql":
            from workbench.analytics._postgres import PostgresBackend

            self._backend = PostgresBackend(target, self.options)
        else:
            from workbench.analytics._embedded import DuckDBBackend, SQLiteBackend

            cls = DuckDBBackend if kind == "duckdb" else SQLiteBackend
            self._backend = cls(target, self.options)
        self.backend = self._backend.name
        self._labels = _LabelLimiter(self.options.max_label_values)
        self._known: dict[str, set[str]] = {"task_type": set(), "model": set()}
        self._known_sets: set[str] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"AnalyticsStore(backend={self.backend!r})"

    def __enter__(self) -> AnalyticsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the backend's connections (idempotent)."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    # -- writing -----------------------------------------------------------------------

    def ingest(self, records: Any) -> IngestReport:
        """Validate ``records`` and store the good ones idempotently, in one transaction.

        Args:
            records: A sequence of mappings, a DataFrame or a pyarrow Table
                (:func:`workbench.analytics.records.validate`).

        Returns:
            An :class:`IngestReport`; when it returns, the accepted rows are committed.

        Raises:
            InputError: ``records`` is not a batch at all (nothing is written).
            BackendUnavailable: The database cannot be reached (nothing is written).
        """
        start = time.perf_counter()
        checked = validate(records, now=self.options.clock())
        frame, refused, dims = self._bound_cardinality(checked.frame)
        rejected = sorted([*checked.rejected, *refused], key=lambda r: r.index)
        written = 0
        if len(frame):
            sets = {h: checked.parameter_sets[h] for h in pd.unique(frame["parameter_hash"])}
            written = self._backend.insert(frame[list(STORED_COLUMNS)], sets, dims)
            self._known_sets.update(sets)
            for dimension, value in dims:
                self._known[dimension].add(value)
        seconds = time.perf_counter() - start
        report = IngestReport(written, len(frame) - written, rejected, seconds)
        self._count_metrics(frame, report)
        _INGEST_SECONDS.labels(self.backend).observe(seconds)
        return report

    def _count_metrics(self, frame: pd.DataFrame, report: IngestReport) -> None:
        if len(frame):
            counts = frame["task_type"].value_counts()
            share = report.accepted / len(frame)
            for task_type, n in counts.items():
                label = self._labels(str(task_type))
                accepted = round(int(n) * share)
                _INGESTED.labels(label, "accepted").inc(accepted)
                _INGESTED.labels(label, "duplicate").inc(int(n) - accepted)
        for rejection in report.rejected:
            _REJECTED.labels(rejection.field).inc()

    def _bound_cardinality(
        self, frame: pd.DataFrame
    ) -> tuple[pd.DataFrame, list[Rejection], list[tuple[str, str]]]:
        refused_rows = np.zeros(len(frame), dtype=bool)
        refused: list[Rejection] = []
        dims: list[tuple[str, str]] = []
        positions = frame.index.to_numpy()
        limits = {"task_type": self.options.max_task_types, "model": self.options.max_models}
        for dimension, limit in limits.items():
            known = self._known[dimension]
            values = [v for v in pd.unique(frame[dimension]) if v not in known]
            if values:
                known |= self._stored_dimension(dimension)
                values = [v for v in values if v not in known]
            room = max(0, limit - len(known))
            dims += [(dimension, v) for v in values[:room]]
            over = values[room:]
            if over:
                mask = frame[dimension].isin(over).to_numpy() & ~refused_rows
                refused_rows |= mask
                for i in np.flatnonzero(mask):
                    refused.append(
                        Rejection(
                            int(positions[i]),
                            dimension,
                            f"would make more than max_{dimension}s={limit} distinct values; "
                            "reuse an existing one or raise the bound",
                        )
                    )
        hashes = [h for h in pd.unique(frame["parameter_hash"]) if h not in self._known_sets]
        if hashes:
            stored = self._stored_parameter_sets(hashes)
            self._known_sets |= stored
            if len(self._known_sets) > 100_000:  # a bounded cache, refilled on demand
                self._known_sets = set(stored)
            new = [h for h in hashes if h not in stored]
            if new:
                count = self._count_parameter_sets()
                room = max(0, self.options.max_parameter_sets - count)
                over = new[room:]
                if over:
                    mask = frame["parameter_hash"].isin(over).to_numpy() & ~refused_rows
                    refused_rows |= mask
                    for i in np.flatnonzero(mask):
                        refused.append(
                            Rejection(
                                int(positions[i]),
                                "parameters",
                                "would make more than max_parameter_sets="
                                f"{self.options.max_parameter_sets} distinct parameter sets",
                            )
                        )
        if refused_rows.any():
            frame = frame[~refused_rows]
        return frame, refused, dims

    def _stored_dimension(self, dimension: str) -> set[str]:
        ph = self._backend.placeholder
        rows = self._backend.query(
            f"SELECT value FROM dimension_values WHERE dimension = {ph}", [dimension], ["value"]
        )
        return set(rows["value"].tolist())

    def _stored_parameter_sets(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(hashes, _MAX_IN):
            marks = ", ".join([self._backend.placeholder] * len(chunk))
            rows = self._backend.query(
                f"SELECT parameter_hash FROM parameter_sets WHERE parameter_hash IN ({marks})",
                chunk,
                ["parameter_hash"],
            )
            found.update(rows["parameter_hash"].tolist())
        return found

    def _count_parameter_sets(self) -> int:
        rows = self._backend.query("SELECT count(*) FROM parameter_sets", [], ["n"])
        return int(rows["n"].iloc[0])

    def record_feedback(
        self,
        execution_id: str,
        *,
        satisfaction: float | None = None,
        quality: float | None = None,
    ) -> bool:
        """Set a record's user satisfaction (0..5) and/or quality (0..1).

        A second feedback for the same id replaces the first value; it never adds an
        execution or changes any count.

        Returns:
            True when the record exists (and was updated), False for an unknown id.

        Raises:
            InputError: Neither value given, or one out of range.
        """
        if not isinstance(execution_id, str) or not execution_id:
            raise InputError(f"execution_id={execution_id!r} must be a non-empty string")
        if satisfaction is None and quality is None:
            raise InputError("record_feedback needs satisfaction (0..5) or quality (0..1)")
        for name, value, hi in (("satisfaction", satisfaction, 5.0), ("quality", quality, 1.0)):
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 <= value <= hi
            ):
                raise InputError(f"feedback {name}={value!r} must be a number in 0..{hi:g}")
        return self._backend.update_feedback(
            execution_id,
            None if satisfaction is None else float(satisfaction),
            None if quality is None else float(quality),
        )

    # -- reading -----------------------------------------------------------------------

    def count(self) -> int:
        """Number of stored records."""
        rows = self._backend.query("SELECT count(*) FROM executions", [], ["n"])
        return int(rows["n"].iloc[0])

    def count_by(self, column: str) -> dict[Any, int]:
        """Stored records per distinct value of ``column`` (a text column or ``success``)."""
        if column not in COUNT_COLUMNS:
            raise InputError(f"count_by column {column!r} is not one of {', '.join(COUNT_COLUMNS)}")
        rows = self._backend.query(
            f"SELECT {column}, count(*) FROM executions GROUP BY {column}", [], [column, "n"]
        )
        keys = rows[column].astype(bool) if column == "success" else rows[column]
        return {k: int(n) for k, n in zip(keys.tolist(), rows["n"].tolist(), strict=True)}

    def parameters_of(self, parameter_hash: str) -> dict[str, Any]:
        """The parameter set stored under ``parameter_hash``.

        Raises:
            NotFoundError: No record used it.
        """
        rows = self._backend.query(
            f"SELECT parameters FROM parameter_sets WHERE parameter_hash = "
            f"{self._backend.placeholder}",
            [parameter_hash],
            ["parameters"],
        )
        if rows.empty:
            raise NotFoundError(
                f"no parameter set with hash {parameter_hash!r} is stored; hashes come from "
                "parameter_hash(params) or the parameter_hash column"
            )
        return dict(json.loads(rows["parameters"].iloc[0]))

    def _where(self, filters: Filters | None) -> tuple[str, list[Any]]:
        if filters is None:
            return "", []
        ph = self._backend.placeholder
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("task_type", filters.task_types),
            ("model", filters.models),
            ("provider", filters.providers),
            ("complexity", filters.complexity),
        ):
            if values:
                clauses.append(f"{column} IN ({', '.join([ph] * len(values))})")
                params.extend(values)
        if filters.start is not None:
            clauses.append(f'"timestamp" >= {ph}')
            params.append(_micros(filters.start))
        if filters.end is not None:
            clauses.append(f'"timestamp" < {ph}')
            params.append(_micros(filters.end))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def frame(
        self, filters: Filters | None = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The stored records (all columns of the record, ``parameters`` as dicts).

        Args:
            filters: Row conditions (``min_executions``/``min_confidence`` do not apply).
            columns: A subset of the record's columns, in the order wanted.

        Returns:
            One row per record, ordered by timestamp then execution id, dtypes as
            :attr:`workbench.analytics.records.Validated.frame`.
        """
        wanted = list(COLUMNS if columns is None else columns)
        unknown = [c for c in wanted if c not in COLUMNS]
        if unknown:
            raise InputError(f"frame columns {unknown} are not record columns {list(COLUMNS)}")
        read = [c for c in STORED_COLUMNS if c in wanted]
        if "parameters" in wanted and "parameter_hash" not in read:
            read.append("parameter_hash")
        if not read:
            read = ["execution_id"]
        where, params = self._where(filters)
        select = ", ".join('"timestamp"' if c == "timestamp" else c for c in read)
        rows = self._backend.query(
            f'SELECT {select} FROM executions{where} ORDER BY "timestamp", execution_id',
            params,
            read,
        )
        rows = _fix_dtypes(rows)
        if "parameters" in wanted:
            rows["parameters"] = self._parameter_dicts(rows["parameter_hash"])
        return rows[wanted].reset_index(drop=True)

    def _parameter_dicts(self, hashes: pd.Series) -> pd.Series:
        distinct = [h for h in pd.unique(hashes) if h is not None]
        texts: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(distinct, _MAX_IN):
            marks = ", ".join([self._backend.placeholder] * len(chunk))
            got = self._backend.query(
                "SELECT parameter_hash, parameters FROM parameter_sets "
                f"WHERE parameter_hash IN ({marks})",
                chunk,
                ["parameter_hash", "parameters"],
            )
            for h, text in zip(got["parameter_hash"], got["parameters"], strict=True):
                texts[h] = json.loads(text)
        return hashes.map(texts).astype(object)

    def effectiveness(
        self, by: Sequence[str] = ("task_type", "parameter_hash"), filters: Filters | None = None
    ) -> pd.DataFrame:
        """Aggregates per group of ``by``, computed in the store's SQL.

        Columns: the ``by`` columns, ``executions``, ``successes``, ``success_rate``,
        ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms`` (exact, linear
        interpolation), ``latency_mean_ms``, ``quality_mean`` and ``satisfaction_mean``
        (over known values; NaN when none), ``prompt_tokens_total``,
        ``completion_tokens_total``, ``cost_total``, ``first_timestamp`` and
        ``last_timestamp`` (UTC), ``confidence`` = ``min(0.95, n / 100)``, ``score``, and
        ``parameters`` (dicts) when ``by`` holds ``parameter_hash``. Rows are sorted by the
        ``by`` columns.

        ``score`` is the platform's weighted score with the time term clamped at 0:
        ``0.4 success_rate + 0.2 max(0, 1 - latency_mean_ms / 10000) + 0.2 quality_mean +
        0.2 satisfaction_mean / 5``; where quality or satisfaction is unknown for a whole
        group, its term is dropped and the weights of the present terms are renormalised to
        sum to 1 (so a group is not penalised for feedback nobody gave).
        """
        by = list(by)
        if not by or any(c not in GROUP_COLUMNS for c in by) or len(set(by)) != len(by):
            raise InputError(
                f"effectiveness by={by!r} must be distinct columns of {', '.join(GROUP_COLUMNS)}"
            )
        where, params = self._where(filters)
        keys = ", ".join(by)
        percentiles = self._backend.percentiles_sql()
        names = [
            "executions",
            "successes",
            "latency_mean_ms",
            "quality_mean",
            "satisfaction_mean",
            "prompt_tokens_total",
            "completion_tokens_total",
            "cost_total",
            "first_us",
            "last_us",
        ]
        select = (
            f"{keys}, count(*), sum(CASE WHEN success THEN 1 ELSE 0 END), avg(latency_ms), "
            "avg(quality), avg(user_satisfaction), sum(prompt_tokens), sum(completion_tokens), "
            'sum(cost), min("timestamp"), max("timestamp")'
        )
        if percentiles is not None:
            select += ", " + ", ".join(percentiles)
            names += [name for name, _ in _QUANTILES]
        out = self._backend.query(
            f"SELECT {select} FROM executions{where} GROUP BY {keys}", params, [*by, *names]
        )
        if percentiles is None:
            out = out.merge(self._window_percentiles(by, where, params), on=by, how="left")
        return _finish_effectiveness(out, by, filters, self._parameter_dicts)

    def _window_percentiles(self, by: list[str], where: str, params: list[Any]) -> pd.DataFrame:
        """Exact quantiles through window functions (for SQL without a percentile aggregate)."""
        keys = ", ".join(by)
        picks = []
        names = []
        for name, q in _QUANTILES:
            picks.append(f"max(CASE WHEN k = CAST((n - 1) * {q!r} AS INTEGER) THEN x END)")
            picks.append(f"max(CASE WHEN k = CAST((n - 1) * {q!r} AS INTEGER) + 1 THEN x END)")
            names += [f"{name}_lo", f"{name}_hi"]
        sql = (
            f"WITH r AS (SELECT {keys}, latency_ms AS x, "
            f"row_number() OVER (PARTITION BY {keys} ORDER BY latency_ms) - 1 AS k, "
            f"count(*) OVER (PARTITION BY {keys}) AS n FROM executions{where}) "
            f"SELECT {keys}, max(n), {', '.join(picks)} FROM r GROUP BY {keys}"
        )
        raw = self._backend.query(sql, params, [*by, "n", *names])
        n = raw["n"].to_numpy(dtype=np.float64)
        out = raw[by].copy()
        for name, q in _QUANTILES:
            pos = (n - 1) * q
            frac = pos - np.floor(pos)
            lo = raw[f"{name}_lo"].to_numpy(dtype=np.float64)
            hi = raw[f"{name}_hi"].to_numpy(dtype=np.float64)
            hi = np.where(np.isnan(hi), lo, hi)
            out[name] = lo + (hi - lo) * frac
        return out


def _finish_effectiveness(
    out: pd.DataFrame,
    by: list[str],
    filters: Filters | None,
    parameter_dicts: Callable[[pd.Series], pd.Series],
) -> pd.DataFrame:
    out = out.copy()
    for c in by:
        out[c] = out[c].astype(object)
    n = out["executions"].to_numpy(dtype=np.int64)
    out["executions"] = n
    out["successes"] = out["successes"].to_numpy(dtype=np.int64)
    for c in ("prompt_tokens_total", "completion_tokens_total"):
        out[c] = out[c].to_numpy(dtype=np.int64)
    floats = ["latency_mean_ms", "quality_mean", "satisfaction_mean", "cost_total"]
    floats += [name for name, _ in _QUANTILES]
    for c in floats:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(np.float64)
    out["success_rate"] = out["successes"] / np.maximum(n, 1)
    out["confidence"] = np.minimum(0.95, n / 100.0)
    for c, src in (("first_timestamp", "first_us"), ("last_timestamp", "last_us")):
        out[c] = pd.to_datetime(out[src].to_numpy(dtype=np.int64), unit="us", utc=True)
    speed = np.maximum(0.0, 1.0 - out["latency_mean_ms"].to_numpy() / 10_000.0)
    quality = out["quality_mean"].to_numpy()
    satisfaction = out["satisfaction_mean"].to_numpy() / 5.0
    total = 0.4 * out["success_rate"].to_numpy() + 0.2 * speed
    weight = np.full(len(out), 0.6)
    for term in (quality, satisfaction):
        known = ~np.isnan(term)
        total = total + np.where(known, 0.2 * np.nan_to_num(term), 0.0)
        weight = weight + np.where(known, 0.2, 0.0)
    out["score"] = total / weight
    if filters is not None:
        keep = n >= filters.min_executions
        if filters.min_confidence > 0:
            keep &= out["confidence"].to_numpy() >= filters.min_confidence - 1e-12
        out = out[keep]
    order = [
        *by,
        "executions",
        "successes",
        "success_rate",
        *[name for name, _ in _QUANTILES],
        "latency_mean_ms",
        "quality_mean",
        "satisfaction_mean",
        "prompt_tokens_total",
        "completion_tokens_total",
        "cost_total",
        "first_timestamp",
        "last_timestamp",
        "confidence",
        "score",
    ]
    out = out[order].sort_values(by, kind="stable").reset_index(drop=True)
    if "parameter_hash" in by:
        out["parameters"] = parameter_dicts(out["parameter_hash"])
    return out


def _fix_dtypes(rows: pd.DataFrame) -> pd.DataFrame:
    """Stored rows with the record's dtypes, whatever the driver returned."""
    rows = rows.copy()
    for c in rows.columns:
        if c in _INT_COLUMNS:
            rows[c] = rows[c].to_numpy(dtype=np.int64)
        elif c in _FLOAT_COLUMNS:
            rows[c] = pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=np.float64)
        elif c == "success":
            rows[c] = rows[c].to_numpy(dtype=bool)
        else:
            rows[c] = rows[c].to_numpy(dtype=object)
    return rows


def _micros(moment: datetime) -> int:
    return int(pd.Timestamp(moment).tz_convert("UTC").value // 1000)


def _chunks(items: Sequence[Any] | Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
