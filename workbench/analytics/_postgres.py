"""The PostgreSQL backend of :class:`~workbench.analytics.store.AnalyticsStore`.

Everything goes through :class:`workbench.postgres_adapter.PostgresAdapter` (pooling, error
translation, migrations under its advisory lock); the tables live in the store's schema.

An ingest is one transaction: a temporary staging table (dropped at commit) is filled by
binary ``COPY``, then ``INSERT INTO executions SELECT ... ORDER BY execution_id ON CONFLICT
(execution_id) DO NOTHING`` moves the new rows; its row count is the number written. Sorting
makes concurrent writers of overlapping batches lock rows in one order, so they wait for each
other instead of deadlocking; a deadlock or serialization failure that still happens
(:class:`~workbench.errors.ConflictError`) is retried, since the transaction left nothing.
Percentiles are ``percentile_cont`` (linear interpolation, as numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from workbench.analytics.migrations import COMPONENT, steps
from workbench.analytics.store import _QUANTILES, STORED_COLUMNS, StoreOptions
from workbench.errors import ConflictError
from workbench.postgres_adapter import Connection, MigrationStep, PostgresAdapter

__all__ = ["PostgresBackend"]

_TYPES = {
    "timestamp": "int8",
    "prompt_tokens": "int8",
    "completion_tokens": "int8",
    "latency_ms": "float8",
    "cost": "float8",
    "quality": "float8",
    "user_satisfaction": "float8",
    "success": "bool",
}
_NULLABLE = ("quality", "user_satisfaction")
_ATTEMPTS = 3


def _step(statements: list[str]) -> MigrationStep:
    return ";\n".join(statements)


def _quoted(column: str) -> str:
    return '"timestamp"' if column == "timestamp" else column


class PostgresBackend:
    """Records in PostgreSQL (any number of writing processes)."""

    name = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.adapter = PostgresAdapter(
            url,
            schema=options.schema,
            statement_timeout_s=120,
            pool_timeout_s=options.pool_timeout_s,
        )
        self.adapter.migrate(COMPONENT, [_step(s) for s in steps("postgresql")])
        cols = ", ".join(_quoted(c) for c in STORED_COLUMNS)
        self._copy_sql = f"COPY wb_staging ({cols}) FROM STDIN (FORMAT BINARY)"
        self._move_sql = (
            f"INSERT INTO executions ({cols}) SELECT {cols} FROM wb_staging "
            "ORDER BY execution_id ON CONFLICT (execution_id) DO NOTHING"
        )
        self._types = [_TYPES.get(c, "text") for c in STORED_COLUMNS]

    def insert(
        self, frame: pd.DataFrame, parameter_sets: dict[str, str], dims: list[tuple[str, str]]
    ) -> int:
        columns = []
        for c in STORED_COLUMNS:
            values = frame[c].tolist()
            if c in _NULLABLE:
                values = [None if math.isnan(v) else v for v in values]
            columns.append(values)
        rows = list(zip(*columns, strict=True))
        hashes = sorted(parameter_sets)
        for attempt in range(_ATTEMPTS):
            try:
                with self.adapter.transaction() as conn:
                    return self._insert(conn, rows, hashes, parameter_sets, sorted(dims))
            except ConflictError:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _insert(
        self,
        conn: Connection,
        rows: list[tuple[Any, ...]],
        hashes: list[str],
        parameter_sets: dict[str, str],
        dims: list[tuple[str, str]],
    ) -> int:
        conn.execute(
            "CREATE TEMP TABLE wb_staging (LIKE executions INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with conn.cursor() as cur, cur.copy(self._copy_sql) as copy:
            copy.set_types(self._types)
            for row in rows:
                copy.write_row(row)
        conn.execute(
            "INSERT INTO parameter_sets (parameter_hash, parameters) "
            "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
            (hashes, [parameter_sets[h] for h in hashes]),
        )
        if dims:
            conn.execute(
                "INSERT INTO dimension_values (dimension, value) "
                "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                ([d for d, _ in dims], [v for _, v in dims]),
            )
        return int(conn.execute(self._move_sql).rowcount)

    def query(self, sql: str, params: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
        got = self.adapter.fetchall(sql, list(params))
        if not got:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
        return pd.DataFrame.from_records(got, columns=list(columns), coerce_float=False)

    def percentiles_sql(self) -> list[str] | None:
        return [f"percentile_cont({q!r}) WITHIN GROUP (ORDER BY latency_ms)" for _, q in _QUANTILES]

    def update_feedback(
        self, execution_id: str, satisfaction: float | None, quality: float | None
    ) -> bool:
        changed = self.adapter.execute(
            "UPDATE executions SET user_satisfaction = coalesce(%s::float8, user_satisfaction), "
            "quality = coalesce(%s::float8, quality) WHERE execution_id = %s",
            (satisfaction, quality, execution_id),
        )
        return changed > 0

    def close(self) -> None:
        """Close the adapter's pool (a store built later on the same URL opens a new one)."""
        self.adapter.close()
