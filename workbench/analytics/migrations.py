"""Versioned schema migrations of the analytics stores, one list of steps per SQL dialect.

Step ``i`` (0-based) takes a database from version ``i`` to ``i + 1``; released steps are
never edited or reordered, new ones are appended. PostgreSQL records the version through
:meth:`workbench.postgres_adapter.PostgresAdapter.migrate` (component ``"analytics"``, under
its advisory lock); the embedded stores keep it in a ``schema_version`` table of their own,
each step in one transaction with its version row (:func:`migrate_embedded`).

Tables (version 2):

- ``executions``: one row per record, the columns of :data:`workbench.analytics.records.COLUMNS`
  but ``parameters`` (kept once per set, below); ``execution_id`` is the primary key, so a
  replayed record is never stored twice. ``timestamp`` is microseconds since the epoch (UTC),
  ``quality`` and ``user_satisfaction`` are NULL when unknown.
- ``parameter_sets``: ``parameter_hash`` (primary key) -> the canonical JSON text, verbatim.
- ``dimension_values``: the distinct task types and models seen, so the cardinality bounds
  are checked without scanning ``executions``.
- Indexes (SQLite and PostgreSQL; DuckDB's zone maps serve its scans and a secondary ART index
  would slow every insert): ``(task_type, parameter_hash)`` and ``(timestamp)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from workbench.errors import InputError, StorageFormatError

__all__ = ["COMPONENT", "DIALECTS", "EMBEDDED_VERSION_TABLE", "migrate_embedded", "steps"]

COMPONENT = "analytics"
DIALECTS = ("duckdb", "sqlite", "postgresql")
EMBEDDED_VERSION_TABLE = "schema_version"

_TYPES = {
    "duckdb": {"bigint": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN"},
    "sqlite": {"bigint": "INTEGER", "double": "REAL", "bool": "INTEGER"},
    "postgresql": {"bigint": "bigint", "double": "double precision", "bool": "boolean"},
}


def steps(dialect: str) -> list[list[str]]:
    """The migration steps of ``dialect``, each a list of single SQL statements."""
    if dialect not in _TYPES:
        raise InputError(f"unknown SQL dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    t = _TYPES[dialect]
    v1 = [
        "CREATE TABLE executions ("
        "execution_id TEXT NOT NULL PRIMARY KEY, "
        f'"timestamp" {t["bigint"]} NOT NULL, '
        "task_type TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL, "
        "user_id TEXT NOT NULL, session_id TEXT NOT NULL, parameter_hash TEXT NOT NULL, "
        f"prompt_tokens {t['bigint']} NOT NULL, completion_tokens {t['bigint']} NOT NULL, "
        f"latency_ms {t['double']} NOT NULL, cost {t['double']} NOT NULL, "
        f"success {t['bool']} NOT NULL, error_class TEXT NOT NULL, "
        f"quality {t['double']}, user_satisfaction {t['double']}, complexity TEXT NOT NULL)",
        "CREATE TABLE parameter_sets (parameter_hash TEXT NOT NULL PRIMARY KEY, "
        "parameters TEXT NOT NULL)",
        "CREATE TABLE dimension_values (dimension TEXT NOT NULL, value TEXT NOT NULL, "
        "PRIMARY KEY (dimension, value))",
    ]
    # DuckDB: the step exists in every dialect so the versions line up, but adds no index.
    v2 = (
        ["SELECT 1"]
        if dialect == "duckdb"
        else [
            "CREATE INDEX executions_task_parameters ON executions (task_type, parameter_hash)",
            'CREATE INDEX executions_timestamp ON executions ("timestamp")',
        ]
    )
    return [v1, v2]


def migrate_embedded(
    execute: Callable[[str], Any],
    fetch_version: Callable[[], int | None],
    dialect: str,
    *,
    begin: str = "BEGIN",
) -> int:
    """Bring an embedded database to the latest version, one transaction per step.

    Args:
        execute: Runs one SQL statement on the store's connection.
        fetch_version: Reads the recorded version (None when no row exists).
        dialect: ``"duckdb"`` or ``"sqlite"``.
        begin: The statement that opens a write transaction (SQLite: ``BEGIN IMMEDIATE``,
            so a second process waits instead of migrating at the same time).

    Returns:
        The version now recorded.

    Raises:
        StorageFormatError: The file records a newer version than this code knows.
    """
    all_steps: Sequence[list[str]] = steps(dialect)
    execute(
        f"CREATE TABLE IF NOT EXISTS {EMBEDDED_VERSION_TABLE} "
        "(component TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL)"
    )
    target = len(all_steps)
    while True:
        execute(begin)
        try:
            current = fetch_version() or 0
            if current > target:
                raise StorageFormatError(
                    f"the analytics store records schema version {current} but this workbench "
                    f"knows {target}; upgrade workbench or use the store it was made for",
                    details={"recorded": current, "known": target},
                )
            if current == target:
                execute("COMMIT")
                return target
            for statement in all_steps[current]:
                execute(statement)
            execute(
                f"INSERT OR REPLACE INTO {EMBEDDED_VERSION_TABLE} (component, version) "
                f"VALUES ('{COMPONENT}', {current + 1})"
            )
            execute("COMMIT")
        except BaseException:
            execute("ROLLBACK")
            raise
