"""The one module through which workbench talks to PostgreSQL.

Every subsystem that keeps rows in PostgreSQL (shared optimizer studies, the analytics stores)
goes through :class:`PostgresAdapter`, so pooling, timeouts, schema selection, migrations and
error translation are decided once.

Why psycopg 3 and psycopg_pool: psycopg 3 speaks the extended protocol with server-side
parameter binding (values never pass through string formatting), composes identifiers safely
with :mod:`psycopg.sql`, and streams ``COPY`` in both directions with per-row adaptation,
binary included. ``psycopg_pool`` is its own pool: it checks connections on checkout, replaces
broken ones in background workers with exponential backoff, and bounds the wait for a
connection, which is what a service needs to fail fast while a database is down and recover by
itself when it is back.

What is pooled: one :class:`psycopg_pool.ConnectionPool` per (URL, schema, sizes, timeouts) in
a process, shared by every adapter built with the same arguments (adapters are cheap, pools
are not). A pool opens on first use, not at construction, so importing or configuring a
subsystem never touches the network. Pooled connections are in autocommit mode, so a lone
statement costs one round trip; :meth:`PostgresAdapter.transaction` opens an explicit
transaction. Each new connection sets ``statement_timeout`` and, when a schema is given,
``search_path`` to that schema alone (``pg_catalog`` is always searched; ``public`` is not, so a
schema-bound adapter never reads another component's tables by accident). A forked child
process drops the pools it inherited, without closing them, because closing would end the
parent's sessions on the shared sockets; it opens its own on first use.

Error translation, in :meth:`PostgresAdapter.errors` (every public method runs inside it):

- no connection within ``pool_timeout_s``, connection loss, server shutdown, class 08/53/57/58
  and XX SQLSTATEs -> :class:`~workbench.errors.BackendUnavailable`, naming the URL with its
  password hidden, the last connection error, and the fix;
- ``statement_timeout`` and ``lock_timeout`` (57014, 55P03) ->
  :class:`~workbench.errors.WaitTimeout`;
- unique and exclusion violations (23505, 23P01), serialization failures and deadlocks
  (class 40, retryable) -> :class:`~workbench.errors.ConflictError`;
- other data and integrity errors (classes 22 and 23: bad text representation, out of range,
  not null, foreign key, check) -> :class:`~workbench.errors.InputError`;
- insufficient privilege (42501) -> :class:`~workbench.errors.ConfigError`;
- more waiting requests than the pool admits -> :class:`~workbench.errors.CapacityError`.

The SQLSTATE is in each error's ``details``. Syntax errors, undefined tables or columns and
other class 42 errors, and psycopg's ``ProgrammingError``/``InterfaceError``, are *not*
translated: workbench writes its SQL and binds caller values as parameters, so these are bugs
in workbench, not bad input. Turning them into ``InputError`` would answer an HTTP client 400
for our mistake, and a ``WorkbenchError`` would be swallowed by handlers meant for expected
failures; they propagate as the psycopg exception and surface as a 500 with a traceback.

Migrations: :meth:`PostgresAdapter.migrate` applies numbered steps per component, recording the
version in ``workbench_schema_versions`` (in the adapter's schema), one transaction per step,
under a PostgreSQL advisory lock so concurrent processes apply each step once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.abc import Params, QueryNoTemplate
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from workbench.config import Settings, load_settings
from workbench.errors import (
    BackendUnavailable,
    CapacityError,
    ConfigError,
    ConflictError,
    InputError,
    StorageFormatError,
    WaitTimeout,
    WorkbenchError,
)

__all__ = ["Connection", "MigrationStep", "PostgresAdapter"]

logger = logging.getLogger(__name__)

Connection: TypeAlias = psycopg.Connection[TupleRow]
MigrationStep: TypeAlias = str | Callable[[Connection], None]
"""One migration step: SQL text (several statements allowed) or a function of the connection.

A function runs inside the step's transaction and must not commit or roll back itself."""

VERSION_TABLE = "workbench_schema_versions"

# One advisory lock per schema (the version table's home), derived from its name on the server.
_LOCK_KEY = (
    "hashtextextended('workbench_schema_versions:' || coalesce(%s, current_schema(), ''), 0)"
)

# A pool that failed to reconnect for this long stops retrying in the background and retries
# on demand instead, so recovery after a long outage is as quick as the next request.
_RECONNECT_WINDOW_S = 10.0


@dataclass(frozen=True)
class _PoolKey:
    url: str
    schema: str | None
    min_size: int
    max_size: int
    connect_timeout_s: int
    statement_timeout_ms: int


@dataclass(frozen=True)
class _ConnectOutcome:
    ok: bool
    message: str


_pools: dict[_PoolKey, ConnectionPool[Any]] = {}
_pools_lock = threading.Lock()
_inherited: list[ConnectionPool[Any]] = []
_last_connect: dict[str, _ConnectOutcome] = {}


def _forget_pools_after_fork() -> None:
    # The parent's sockets are shared with us: keep its pools referenced so their finalisers
    # never send a Terminate on them, and start afresh.
    global _pools_lock
    _inherited.extend(_pools.values())
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


class _TrackedConnection(psycopg.Connection[TupleRow]):
    """A connection class that remembers how the last connection attempt per URL ended.

    The pool connects in background workers and only tells a waiting caller "no connection
    in time"; this record lets the error say why (refused, authentication, unknown database).
    """

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> _TrackedConnection:
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            _last_connect[conninfo] = _ConnectOutcome(False, _first_line(exc))
            raise
        _last_connect[conninfo] = _ConnectOutcome(True, "")
        return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _configure(schema: str | None, statement_timeout_ms: int) -> Callable[[Connection], None]:
    statement = sql.SQL("SET statement_timeout = {}").format(sql.Literal(statement_timeout_ms))
    if schema is not None:
        statement = sql.SQL("{}; SET search_path TO {}").format(statement, sql.Identifier(schema))

    def configure(conn: Connection) -> None:
        conn.execute(statement)

    return configure


def _shared_pool(key: _PoolKey) -> ConnectionPool[Any]:
    """The open pool for ``key``, created and opened (without waiting) on first use."""
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = ConnectionPool(
                key.url,
                connection_class=_TrackedConnection,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": key.connect_timeout_s,
                    "application_name": "workbench",
                },
                min_size=key.min_size,
                max_size=key.max_size,
                open=False,
                configure=_configure(key.schema, key.statement_timeout_ms),
                check=ConnectionPool.check_connection,
                reconnect_timeout=_RECONNECT_WINDOW_S,
                name=f"workbench:{_safe_url(key.url)}:{key.schema or ''}",
            )
            pool.open(wait=False)
            _pools[key] = pool
        return pool


def _safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (URL or ``key=value`` form)."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(url: str) -> str | None:
    try:
        return psycopg.conninfo.conninfo_to_dict(url).get("password") or None  # type: ignore[return-value]
    except psycopg.Error:
        return None


class PostgresAdapter:
    """A pooled PostgreSQL client bound to one schema, whose failures are workbench errors.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (``postgres://`` too).
        schema: Schema every connection's ``search_path`` is set to; ``None`` keeps the
            server's default search path.
        min_size: Connections the pool keeps open once used.
        max_size: Most connections the pool opens; more concurrent callers wait.
        connect_timeout_s: Bound on one connection attempt, seconds; libpq counts whole
            seconds, so it is rounded up and is at least 2.
        statement_timeout_s: Server-side bound on each statement, seconds (``None``: none).
        pool_timeout_s: Bound on the wait for a pooled connection, seconds; a call against
            a server that is down fails after this long.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 8,
        connect_timeout_s: float = 5.0,
        statement_timeout_s: float | None = 30.0,
        pool_timeout_s: float = 5.0,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise InputError(
                f"PostgreSQL url {_safe_url(url)!r} must start with postgresql:// or postgres://"
            )
        if schema is not None and not schema:
            raise InputError("PostgreSQL schema must be a non-empty name or None")
        if min_size < 0 or max_size < 1 or max_size < min_size:
            raise InputError(
                f"PostgreSQL pool sizes min_size={min_size!r}, max_size={max_size!r} must "
                "satisfy 0 <= min_size <= max_size and max_size >= 1"
            )
        for name, value in (
            ("connect_timeout_s", connect_timeout_s),
            ("pool_timeout_s", pool_timeout_s),
            ("statement_timeout_s", 1.0 if statement_timeout_s is None else statement_timeout_s),
        ):
            if not value > 0:
                raise InputError(f"PostgreSQL {name}={value!r} must be a positive number")
        self.url = url
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self.pool_timeout_s = pool_timeout_s
        self._password = _password(url)
        self._key = _PoolKey(
            url=url,
            schema=schema,
            min_size=min_size,
            max_size=max_size,
            connect_timeout_s=max(2, math.ceil(connect_timeout_s)),
            statement_timeout_ms=(
                0 if statement_timeout_s is None else max(1, round(statement_timeout_s * 1000))
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> PostgresAdapter:
        """An adapter for ``settings.postgres_url`` (default: :func:`load_settings`).

        Args:
            settings: Where the URL comes from.
            **options: Keyword arguments of the constructor (``schema``, sizes, timeouts).
        """
        s = settings or load_settings()
        return cls(s.postgres_url, **options)

    def __repr__(self) -> str:
        return f"PostgresAdapter({_safe_url(self.url)!r}, schema={self.schema!r})"

    def close(self) -> None:
        """Close the pool this adapter uses (shared with adapters of the same arguments).

        The next call through any of them opens a fresh pool.
        """
        with _pools_lock:
            pool = _pools.pop(self._key, None)
        if pool is not None:
            pool.close()

    # -- error translation -------------------------------------------------------------

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Translate psycopg and pool errors raised inside the block into workbench errors.

        Programming errors (SQL syntax, undefined objects, misuse of the driver) propagate
        unchanged; see the module docstring.
        """
        try:
            yield
        except psycopg.Error as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _unavailable(self, reason: str, sqlstate: str | None = None) -> BackendUnavailable:
        safe = _safe_url(self.url)
        reason = self._scrub(reason)
        return BackendUnavailable(
            f"PostgreSQL at {safe} is unavailable ({reason}); start it or set "
            "WORKBENCH_POSTGRES_URL",
            details={"url": safe, "sqlstate": sqlstate, "reason": reason},
        )

    def _pool_timeout_reason(self) -> str:
        outcome = _last_connect.get(self.url)
        if outcome is not None and not outcome.ok:
            return (
                f"no connection within {self.pool_timeout_s:g} s; last attempt: {outcome.message}"
            )
        return (
            f"no connection within pool_timeout_s={self.pool_timeout_s:g} s: the server is slow "
            f"to accept, or all max_size={self.max_size} connections stayed busy"
        )

    def _translate(self, exc: psycopg.Error) -> WorkbenchError | None:
        if isinstance(exc, PoolTimeout):
            return self._unavailable(self._pool_timeout_reason())
        if isinstance(exc, TooManyRequests):
            return CapacityError(
                f"PostgreSQL pool for {_safe_url(self.url)} has too many waiting requests "
                f"({exc}); raise max_size={self.max_size} or send fewer concurrent requests"
            )
        if isinstance(exc, PoolClosed):
            return self._unavailable(f"its pool was closed: {exc}")
        state = exc.sqlstate or ""
        diag = exc.diag
        primary = self._scrub(diag.message_primary or _first_line(exc))
        detail = self._scrub(diag.message_detail or "")
        details = {
            "sqlstate": exc.sqlstate,
            "table": diag.table_name,
            "column": diag.column_name,
            "constraint": diag.constraint_name,
        }
        said = f"{primary} ({detail})" if detail else primary
        if state in {"23505", "23P01"}:
            return ConflictError(
                f"PostgreSQL refused a duplicate: {said}; use another key or update the "
                "existing row",
                details=details,
            )
        if state.startswith("40"):
            return ConflictError(
                f"PostgreSQL aborted a transaction that conflicted with another: {said}; retry it",
                details={**details, "retryable": True},
            )
        if state.startswith(("22", "23")) or isinstance(
            exc, psycopg.DataError | psycopg.IntegrityError
        ):
            return InputError(f"PostgreSQL rejected a value: {said}", details=details)
        if state in {"57014", "55P03"}:
            limit = (
                "none" if self.statement_timeout_s is None else f"{self.statement_timeout_s:g} s"
            )
            return WaitTimeout(
                f"PostgreSQL at {_safe_url(self.url)} cancelled a statement: {primary} "
                f"(statement_timeout_s={limit}); make the query cheaper or raise the timeout",
                details=details,
            )
        if state == "42501":
            return ConfigError(
                f"PostgreSQL role of {_safe_url(self.url)} lacks a privilege: {said}; grant it "
                "or use another role in WORKBENCH_POSTGRES_URL",
                details=details,
            )
        if (
            isinstance(exc, psycopg.OperationalError)
            or state.startswith(("08", "53", "57", "58", "XX"))
            or state == "25006"
        ):
            return self._unavailable(_first_line(exc), exc.sqlstate)
        return None

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in autocommit mode, returned to the pool after the block.

        psycopg errors raised inside the block are translated as they leave it (inside, the
        block sees psycopg's own exceptions). Session settings changed in
        the block (``SET``) stay on the connection; use ``SET LOCAL`` inside
        :meth:`transaction` instead.
        """
        with self.errors():
            pool = _shared_pool(self._key)
            with pool.connection(timeout=self.pool_timeout_s) as conn:
                yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A pooled connection inside one transaction: committed after the block, rolled back
        if it raises."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def ping(self) -> float:
        """Round-trip time of one ``SELECT 1`` on a pooled connection, in seconds."""
        with self.connection() as conn:
            start = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            return time.perf_counter() - start

    def execute(self, query: QueryNoTemplate, params: Params | None = None) -> int:
        """Run one statement (autocommit); returns the number of rows it affected (-1 if none
        applies)."""
        with self.connection() as conn:
            return conn.execute(query, params).rowcount

    def fetchall(
        self, query: QueryNoTemplate, params: Params | None = None
    ) -> list[tuple[Any, ...]]:
        """All rows of ``query``, as tuples."""
        with self.connection() as conn:
            return conn.execute(query, params).fetchall()

    def fetchone(
        self, query: QueryNoTemplate, params: Params | None = None
    ) -> tuple[Any, ...] | None:
        """The first row of ``query``, or ``None`` when it returns none."""
        with self.connection() as conn:
            return conn.execute(query, params).fetchone()

    def executemany(self, query: QueryNoTemplate, params_seq: Iterable[Params]) -> int:
        """Run ``query`` once per parameter set, all in one transaction (pipelined).

        Returns:
            The total number of rows affected.
        """
        with self.transaction() as conn, conn.cursor() as cur:
            cur.executemany(query, params_seq)
            return cur.rowcount

    # -- COPY --------------------------------------------------------------------------

    def copy_rows(
        self,
        table: str | Sequence[str],
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        types: Sequence[str] | None = None,
    ) -> int:
        """Bulk-load ``rows`` into ``table`` with ``COPY ... FROM STDIN``, atomically.

        Args:
            table: A table name, or ``(schema, table)``; quoted as identifiers.
            columns: The columns each row gives values for, in order.
            rows: Rows of Python values, each as long as ``columns``.
            types: PostgreSQL type names of ``columns`` (``["int4", "text", "float8"]``).
                When given, the binary COPY format is used (faster, exact); without them,
                values travel as text and the server parses them.

        Returns:
            The number of rows written.

        Raises:
            InputError: A row has the wrong length or a value the column refuses (nothing
                is written).
        """
        if not columns:
            raise InputError("copy_rows needs at least one column")
        if types is not None and len(types) != len(columns):
            raise InputError(
                f"copy_rows got {len(types)} types for {len(columns)} columns; give one per column"
            )
        statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            _table_identifier(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL("" if types is None else " (FORMAT BINARY)"),
        )
        width = len(columns)
        written = 0
        with self.transaction() as conn, conn.cursor() as cur, cur.copy(statement) as copy:
            if types is not None:
                copy.set_types(list(types))
            for row in rows:
                if len(row) != width:
                    raise InputError(
                        f"copy_rows row {written} has {len(row)} values for {width} columns "
                        f"{list(columns)}",
                        details={"row": written},
                    )
                copy.write_row(row)
                written += 1
        return written

    def copy_out(
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        *,
        types: Sequence[str] | None = None,
    ) -> Generator[tuple[Any, ...], None, None]:
        """Stream the rows of a ``SELECT`` through ``COPY (query) TO STDOUT``.

        The pooled connection is held until the iterator is exhausted or closed; wrap it in
        :func:`contextlib.closing` when you may stop early.

        Args:
            query: A ``SELECT`` (or ``VALUES``/``TABLE``) query; parameters are bound
                client-side, as ``COPY`` takes none.
            params: Its parameters.
            types: PostgreSQL type names of the result columns. When given, rows come in
                binary and values are Python objects; without them, values are the text
                PostgreSQL prints (``None`` for NULL).

        Yields:
            One tuple per row.
        """
        statement = sql.SQL("COPY ({}) TO STDOUT{}").format(
            _as_composable(query), sql.SQL("" if types is None else " (FORMAT BINARY)")
        )
        with self.connection() as conn, conn.cursor() as cur, cur.copy(statement, params) as copy:
            if types is not None:
                copy.set_types(list(types))
            yield from copy.rows()

    def copy_out_bytes(
        self, query: QueryNoTemplate, params: Params | None = None, *, binary: bool = False
    ) -> Generator[bytes, None, None]:
        """Stream ``COPY (query) TO STDOUT`` as raw blocks, to write to a file or response.

        Args:
            query: As for :meth:`copy_out`.
            params: Its parameters.
            binary: PostgreSQL's binary COPY format instead of text (tab-separated lines).

        Yields:
            Chunks of the COPY stream, in order; their boundaries carry no meaning.
        """
        statement = sql.SQL("COPY ({}) TO STDOUT{}").format(
            _as_composable(query), sql.SQL(" (FORMAT BINARY)" if binary else "")
        )
        with self.connection() as conn, conn.cursor() as cur, cur.copy(statement, params) as copy:
            for block in copy:
                yield bytes(block)

    # -- migrations --------------------------------------------------------------------

    def schema_version(self, component: str) -> int:
        """The migration version recorded for ``component`` (0 when none is)."""
        with self.connection() as conn:
            if conn.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone() == (None,):
                return 0
            row = conn.execute(
                sql.SQL("SELECT version FROM {} WHERE component = %s").format(
                    sql.Identifier(VERSION_TABLE)
                ),
                (component,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def migrate(self, component: str, migrations: Sequence[MigrationStep]) -> int:
        """Bring ``component``'s tables to ``len(migrations)``, applying the missing steps.

        Step ``i`` (0-based) takes the component from version ``i`` to ``i + 1``. Each step
        runs in its own transaction together with the update of its version row, so a
        failed step leaves the previous version recorded and nothing of itself. The whole
        run holds a session advisory lock keyed by the schema, so processes migrating at
        once wait for each other and every step is applied exactly once. When the adapter
        has a schema that does not exist yet, it is created.

        Args:
            component: Name of the owner of the tables (``"optimize.studies"``).
            migrations: The steps, oldest first; never edit or reorder released ones.

        Returns:
            The version now recorded (``len(migrations)``).

        Raises:
            StorageFormatError: The database records a newer version than ``migrations``
                knows (code older than the database); nothing is changed.
            WaitTimeout: Another process held the lock, or a step ran, longer than
                ``statement_timeout_s``; give long steps a ``SET LOCAL statement_timeout``.
        """
        if not component:
            raise InputError("migrate needs a non-empty component name")
        target = len(migrations)
        table = sql.Identifier(VERSION_TABLE)
        with self.connection() as conn:
            conn.execute(f"SELECT pg_advisory_lock({_LOCK_KEY})", (self.schema,))
            try:
                with conn.transaction():
                    self._ensure_schema(conn)
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {} (component text PRIMARY KEY, "
                            "version integer NOT NULL CHECK (version >= 0), "
                            "applied_at timestamptz NOT NULL DEFAULT now())"
                        ).format(table)
                    )
                row = conn.execute(
                    sql.SQL("SELECT version FROM {} WHERE component = %s").format(table),
                    (component,),
                ).fetchone()
                current = 0 if row is None else int(row[0])
                if current > target:
                    raise StorageFormatError(
                        f"PostgreSQL at {_safe_url(self.url)} records version {current} of "
                        f"{component!r} (schema {self.schema or 'default'}) but this workbench "
                        f"knows {target} migrations; upgrade workbench or point "
                        "WORKBENCH_POSTGRES_URL at the database it was made for",
                        details={"component": component, "recorded": current, "known": target},
                    )
                for index in range(current, target):
                    step = migrations[index]
                    with conn.transaction():
                        if isinstance(step, str):
                            conn.execute(step)
                        else:
                            step(conn)
                        conn.execute(
                            sql.SQL(
                                "INSERT INTO {} (component, version) VALUES (%s, %s) "
                                "ON CONFLICT (component) DO UPDATE "
                                "SET version = EXCLUDED.version, applied_at = now()"
                            ).format(table),
                            (component, index + 1),
                        )
                    logger.info("migrated %s to version %d", component, index + 1)
            finally:
                if not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})", (self.schema,))
        return target

    def _ensure_schema(self, conn: Connection) -> None:
        if self.schema is None:
            return
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        # exists, so only ask for it when it is missing.
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )


def _table_identifier(table: str | Sequence[str]) -> sql.Identifier:
    parts = (table,) if isinstance(table, str) else tuple(table)
    if not parts or not all(isinstance(p, str) and p for p in parts) or len(parts) > 2:
        raise InputError(f"table {table!r} must be a name or a (schema, name) pair")
    return sql.Identifier(*parts)


def _as_composable(query: QueryNoTemplate) -> sql.Composable:
    if isinstance(query, sql.Composable):
        return query
    if isinstance(query, bytes):
        return sql.SQL(query.decode())
    return sql.SQL(query)
