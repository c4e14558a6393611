"""PostgresAdapter against a real PostgreSQL, each test in a schema of its own.

The fault test starts a throwaway server with ``initdb``/``pg_ctl``, stops it under a live
pool and starts it again; like the conftest's servers, it is skipped loudly outside CI when
those tools are missing and fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import psycopg
import pytest

from workbench.config import Settings
from workbench.errors import (
    BackendUnavailable,
    ConflictError,
    InputError,
    StorageFormatError,
    WaitTimeout,
    WorkbenchError,
)
from workbench.postgres_adapter import Connection, MigrationStep, PostgresAdapter
from workbench.testing import free_port

pytestmark = pytest.mark.postgres

_IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def pg(postgres_url: str, postgres_schema: str) -> Iterator[PostgresAdapter]:
    """An adapter bound to the test's own schema; its pool is closed afterwards."""
    adapter = PostgresAdapter(postgres_url, schema=postgres_schema, statement_timeout_s=10)
    yield adapter
    adapter.close()


def test_round_trips_live_in_the_adapter_schema(pg: PostgresAdapter, postgres_url: str) -> None:
    assert pg.ping() > 0
    assert pg.execute("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL)") == -1
    assert (
        pg.executemany(
            "INSERT INTO item (id, name) VALUES (%s, %s)", [(i, f"n{i}") for i in range(5)]
        )
        == 5
    )
    assert pg.fetchall("SELECT id, name FROM item WHERE id < %s ORDER BY id", (2,)) == [
        (0, "n0"),
        (1, "n1"),
    ]
    assert pg.fetchone("SELECT name FROM item WHERE id = %(id)s", {"id": 3}) == ("n3",)
    assert pg.fetchone("SELECT name FROM item WHERE id = 99") is None
    assert pg.execute("UPDATE item SET name = name || '!' WHERE id >= 3") == 2
    # the table went into the test's schema, not public
    other = PostgresAdapter(postgres_url)
    try:
        assert other.fetchone(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'item' "
            "AND table_schema = %s",
            (pg.schema,),
        ) == (pg.schema,)
    finally:
        other.close()


def test_transaction_commits_or_rolls_back_as_a_whole(pg: PostgresAdapter) -> None:
    pg.execute("CREATE TABLE t (x int)")
    with pg.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(RuntimeError), pg.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (3)")
        raise RuntimeError("caller gives up")
    with pytest.raises(InputError):
        pg.executemany("INSERT INTO t VALUES (%s)", [(4,), ("not a number",)])
    assert pg.fetchall("SELECT x FROM t ORDER BY x") == [(1,), (2,)]


def test_copy_of_ten_thousand_rows_and_back(pg: PostgresAdapter) -> None:
    pg.execute(
        'CREATE TABLE "Trial Log" (id int, label text, score float8, at timestamptz, note text)'
    )
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        (i, f"trial-{i}", i / 7.0, t0 + timedelta(seconds=i), None if i % 3 else "tab\there")
        for i in range(10_000)
    ]
    columns = ["id", "label", "score", "at", "note"]
    types = ["int4", "text", "float8", "timestamptz", "text"]
    assert pg.copy_rows("Trial Log", columns, rows, types=types) == 10_000
    assert pg.copy_rows((pg.schema or "", "Trial Log"), columns, rows[:10]) == 10  # text COPY
    assert pg.fetchone('SELECT count(*) FROM "Trial Log"') == (10_010,)

    query = 'SELECT id, label, score, at, note FROM "Trial Log" WHERE id >= %s ORDER BY id'
    back = list(pg.copy_out(query, (0,), types=types))
    assert len(back) == 10_010
    assert back[:20:2] == back[1:20:2] == rows[:10]  # rows 0-9 were loaded twice
    assert back[20:] == rows[10:]
    as_text = next(iter(pg.copy_out(query + " LIMIT 1", (9_999,))))
    assert as_text == ("9999", "trial-9999", str(9_999 / 7.0), as_text[3], "tab\there")
    raw = b"".join(pg.copy_out_bytes('SELECT id, note FROM "Trial Log" WHERE id < 3 AND id > 0'))
    assert raw.splitlines() == [b"1\t\\N", b"2\t\\N", b"1\t\\N", b"2\t\\N"]
    assert b"".join(pg.copy_out_bytes("SELECT 1", binary=True)).startswith(b"PGCOPY\n")
    # stopping early hands the connection back in a usable state
    with contextlib.closing(pg.copy_out(query, (0,))) as partial:
        assert next(partial)[0] == "0"
    assert pg.fetchone("SELECT 1") == (1,)


def test_copy_rejects_bad_rows_and_writes_nothing(pg: PostgresAdapter) -> None:
    pg.execute("CREATE TABLE t (id int, name text)")
    with pytest.raises(InputError, match="row 1 has 1 values for 2 columns"):
        pg.copy_rows("t", ["id", "name"], [(1, "a"), (2,)])
    with pytest.raises(InputError, match="invalid input syntax") as info:
        pg.copy_rows("t", ["id", "name"], [(1, "a"), ("two", "b")])
    assert info.value.details["sqlstate"] == "22P02"
    with pytest.raises(InputError, match="one per column"):
        pg.copy_rows("t", ["id", "name"], [], types=["int4"])
    with pytest.raises(InputError, match="schema, name"):
        pg.copy_rows(("a", "b", "c"), ["id"], [])
    assert pg.fetchone("SELECT count(*) FROM t") == (0,)


@pytest.mark.parametrize(
    ("statement", "params", "sqlstate"),
    [
        ("INSERT INTO t (n) VALUES (%s::int)", ("abc",), "22P02"),
        ("INSERT INTO t (n) VALUES (%s)", (2**40,), "22003"),
        ("INSERT INTO t (n, name) VALUES (1, NULL)", None, "23502"),
        ("INSERT INTO t (n) VALUES (-1)", None, "23514"),
        ("INSERT INTO t (n, name) VALUES (1, %s)", ("nul\x00byte",), None),
    ],
    ids=["invalid-text", "out-of-range", "not-null", "check", "nul-byte"],
)
def test_data_errors_are_input_errors_with_the_sqlstate(
    pg: PostgresAdapter, statement: str, params: tuple[Any, ...] | None, sqlstate: str | None
) -> None:
    pg.execute("CREATE TABLE t (n int CHECK (n >= 0), name text NOT NULL DEFAULT 'x')")
    with pytest.raises(InputError, match="PostgreSQL rejected a value") as info:
        pg.execute(statement, params)
    assert info.value.details["sqlstate"] == sqlstate
    assert isinstance(info.value.__cause__, psycopg.Error)


def test_unique_violation_is_a_conflict(pg: PostgresAdapter) -> None:
    pg.execute("CREATE TABLE study (name text PRIMARY KEY)")
    pg.execute("INSERT INTO study VALUES ('a')")
    with pytest.raises(ConflictError, match="duplicate") as info:
        pg.execute("INSERT INTO study VALUES ('a')")
    assert info.value.details["sqlstate"] == "23505"
    assert info.value.details["constraint"] == "study_pkey"


def test_programming_errors_are_not_disguised_as_input(pg: PostgresAdapter) -> None:
    # Our SQL is ours to get right: a syntax error or a missing table is a bug, and it
    # surfaces as psycopg's exception rather than a 4xx-mapped workbench error.
    with pytest.raises(psycopg.errors.SyntaxError) as syntax:
        pg.execute("SELEC 1")
    with pytest.raises(psycopg.errors.UndefinedTable) as missing:
        pg.fetchall("SELECT * FROM no_such_table")
    assert not isinstance(syntax.value, WorkbenchError)
    assert not isinstance(missing.value, WorkbenchError)
    assert pg.ping() > 0  # the pool is unharmed


def test_unreachable_server_is_backend_unavailable_promptly_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://workbench:hunter2-secret@127.0.0.1:{port}/test"
    adapter = PostgresAdapter(url, connect_timeout_s=2, pool_timeout_s=1)
    assert "hunter2" not in repr(adapter)
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match="WORKBENCH_POSTGRES_URL") as info:
            adapter.ping()
        assert time.monotonic() - start < adapter.connect_timeout_s + 0.5
        assert f"127.0.0.1:{port}" in info.value.message
        assert "refused" in info.value.message.lower()
        assert "hunter2" not in str(info.value) + repr(info.value.details)
    finally:
        adapter.close()


def test_statement_timeout_is_a_wait_timeout(postgres_url: str, postgres_schema: str) -> None:
    adapter = PostgresAdapter(postgres_url, schema=postgres_schema, statement_timeout_s=0.2)
    try:
        start = time.monotonic()
        with pytest.raises(WaitTimeout, match=r"statement_timeout_s=0\.2 s") as info:
            adapter.fetchone("SELECT pg_sleep(5)")
        assert time.monotonic() - start < 2.0
        assert info.value.details["sqlstate"] == "57014"
        assert adapter.fetchone("SELECT 1") == (1,)
    finally:
        adapter.close()


def test_migrations_apply_once_and_are_idempotent(pg: PostgresAdapter) -> None:
    calls: list[int] = []

    def seed(conn: Connection) -> None:
        calls.append(2)
        conn.execute("INSERT INTO study (name) VALUES ('default')")

    steps: list[MigrationStep] = [
        "CREATE TABLE study (name text PRIMARY KEY); CREATE TABLE trial (study text, n int)",
        seed,
    ]
    assert pg.schema_version("optimize") == 0
    assert pg.migrate("optimize", steps) == 2
    assert pg.migrate("optimize", steps) == 2
    assert calls == [2]
    assert pg.schema_version("optimize") == 2
    assert pg.migrate("optimize", [*steps, "ALTER TABLE trial ADD COLUMN score float8"]) == 3
    assert pg.fetchall("SELECT name FROM study") == [("default",)]
    assert pg.migrate("analytics", ["CREATE TABLE record (x int)"]) == 1  # its own version
    versions = pg.fetchall("SELECT component, version FROM workbench_schema_versions ORDER BY 1")
    assert versions == [("analytics", 1), ("optimize", 3)]


def test_a_failing_step_leaves_the_previous_version(pg: PostgresAdapter) -> None:
    steps: list[MigrationStep] = [
        "CREATE TABLE a (x int)",
        "CREATE TABLE b (x int); CREATE TABLE a (x int)",  # fails after creating b
    ]
    with pytest.raises(psycopg.errors.DuplicateTable):
        pg.migrate("broken", steps)
    assert pg.schema_version("broken") == 1
    assert pg.fetchone("SELECT to_regclass('b')") == (None,)
    assert pg.migrate("broken", steps[:1]) == 1  # the lock was released


def test_a_newer_recorded_version_is_refused(pg: PostgresAdapter) -> None:
    pg.migrate("optimize", ["CREATE TABLE a (x int)", "CREATE TABLE b (x int)"])
    with pytest.raises(StorageFormatError, match="records version 2") as info:
        pg.migrate("optimize", ["CREATE TABLE a (x int)"])
    assert info.value.details == {"component": "optimize", "recorded": 2, "known": 1}
    assert pg.schema_version("optimize") == 2


def test_migrate_creates_a_missing_schema(postgres_url: str, postgres_schema: str) -> None:
    adapter = PostgresAdapter(postgres_url, schema=postgres_schema + "_new")
    try:
        assert adapter.migrate("c", ["CREATE TABLE t (x int)"]) == 1
        assert adapter.fetchone("SELECT count(*) FROM t") == (0,)
    finally:
        adapter.execute(f'DROP SCHEMA "{postgres_schema}_new" CASCADE')
        adapter.close()


# Each step records that it ran and sleeps, so unserialised migrators would overlap.
_RACE_STEPS = [
    "INSERT INTO applied VALUES (1); SELECT pg_sleep(0.1)",
    "INSERT INTO applied VALUES (2); SELECT pg_sleep(0.1)",
    "INSERT INTO applied VALUES (3); SELECT pg_sleep(0.1)",
]


def _migrate_in_child(url: str, schema: str, start: Event, out: Queue[int | str]) -> None:
    adapter = PostgresAdapter(url, schema=schema, statement_timeout_s=10)  # the parent's pool key
    start.wait()
    try:
        out.put(adapter.migrate("race", _RACE_STEPS))
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_migrations_apply_each_step_once(pg: PostgresAdapter) -> None:
    pg.execute("CREATE TABLE applied (step int)")
    assert pg.ping() > 0  # the parent holds an open pool while it forks
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    workers = [
        ctx.Process(target=_migrate_in_child, args=(pg.url, pg.schema, start, out))
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    start.set()
    in_thread: list[int | str] = []

    def race_in_a_thread() -> None:
        try:
            in_thread.append(pg.migrate("race", _RACE_STEPS))
        except Exception as exc:
            in_thread.append(f"{type(exc).__name__}: {exc}")

    racer = threading.Thread(target=race_in_a_thread)
    racer.start()
    results = [out.get(timeout=30) for _ in workers]
    racer.join(timeout=30)
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    assert results + in_thread == [3, 3, 3, 3]
    assert pg.fetchall("SELECT step FROM applied ORDER BY step") == [(1,), (2,), (3,)]
    assert pg.ping() > 0  # the inherited pool was left alone by the children


def test_configuration_is_validated_and_settings_are_used() -> None:
    with pytest.raises(InputError, match="postgresql://"):
        PostgresAdapter("mysql://127.0.0.1/test")
    with pytest.raises(InputError, match="min_size"):
        PostgresAdapter("postgresql://127.0.0.1/test", min_size=4, max_size=2)
    with pytest.raises(InputError, match="pool_timeout_s"):
        PostgresAdapter("postgresql://127.0.0.1/test", pool_timeout_s=0)
    with pytest.raises(InputError, match="schema"):
        PostgresAdapter("postgresql://127.0.0.1/test", schema="")
    adapter = PostgresAdapter.from_settings(
        Settings(postgres_url="postgresql://u:pw@db.example:5433/wb?password=pw"), schema="s"
    )
    assert adapter.url.endswith("/wb?password=pw")
    assert repr(adapter) == (
        "PostgresAdapter('postgresql://u:***@db.example:5433/wb?password=***', schema='s')"
    )


def test_close_then_reuse_opens_a_fresh_pool(pg: PostgresAdapter) -> None:
    assert pg.ping() > 0
    pg.close()
    pg.close()  # idempotent
    assert pg.fetchone("SELECT 2") == (2,)


# -- fault test: a throwaway server stopped and started under a live pool -----------------


def _missing_tool(what: str) -> None:
    message = f"{what}; the PostgreSQL fault test cannot run"
    if _IN_CI:
        pytest.fail(message)
    pytest.skip(f"SKIPPED FOR A MISSING TOOL: {message}")


class _ThrowawayPostgres:
    """A private PostgreSQL cluster in a temporary folder, started and stopped on demand."""

    def __init__(self) -> None:
        self.initdb = shutil.which("initdb")
        self.pg_ctl = shutil.which("pg_ctl")
        if self.initdb is None or self.pg_ctl is None:
            _missing_tool("initdb/pg_ctl are not on PATH")
        self.prefix: list[str] = []
        self.root = tempfile.mkdtemp(prefix="wb-pg-")
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            runuser = shutil.which("runuser")
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = None
            if runuser is None or account is None:
                shutil.rmtree(self.root, ignore_errors=True)
                _missing_tool("running as root without runuser or a 'postgres' user")
            assert account is not None and runuser is not None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.prefix = [runuser, "-u", "postgres", "--"]
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run(self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str | None) -> None:
        subprocess.run(
            [*self.prefix, *(a for a in args if a is not None)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c shared_buffers=16MB"
        )
        log = os.path.join(self.root, "server.log")
        self._run(self.pg_ctl, "-D", self.data, "-l", log, "-o", options, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", self.data, "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[_ThrowawayPostgres]:
    server = _ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.slow
def test_server_going_away_is_backend_unavailable_and_the_pool_recovers(
    throwaway_postgres: _ThrowawayPostgres,
) -> None:
    adapter = PostgresAdapter(
        throwaway_postgres.url, max_size=2, connect_timeout_s=2, pool_timeout_s=1
    )
    try:
        adapter.migrate("fault", ["CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (7)"])
        with (
            pytest.raises(BackendUnavailable, match="WORKBENCH_POSTGRES_URL"),
            adapter.connection() as conn,
        ):
            throwaway_postgres.stop()  # under a connection in use
            conn.execute("SELECT 1")
        for _ in range(2):  # new calls fail too, each within the pool timeout
            start = time.monotonic()
            with pytest.raises(BackendUnavailable, match="unavailable"):
                adapter.fetchone("SELECT x FROM kept")
            assert time.monotonic() - start < adapter.pool_timeout_s + 1.0

        throwaway_postgres.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert adapter.fetchone("SELECT x FROM kept") == (7,)
                break
            except BackendUnavailable:
                if time.monotonic() > deadline:
                    raise
        assert adapter.schema_version("fault") == 2
    finally:
        adapter.close()
