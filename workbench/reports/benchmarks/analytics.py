"""The analytics suite: :class:`~workbench.analytics.AnalyticsStore` ingestion, the HTTP batch
route and the effectiveness aggregation, beside DuckDB, SQLite, pandas and polars in one run.

Parts (``workbench bench analytics --part NAME``, repeatable; all by default):

* ``ingest``: validated ingestion of one batch (100,000 records; quick: 5,000) into a store
  already holding 1,000,000 (quick: 20,000), one process, one ``ingest`` call (one
  transaction) per batch: the embedded default (DuckDB) from a DataFrame, from an Arrow table,
  from a JSON Lines file (:func:`~workbench.analytics.ingest_file`) and from a list of dicts
  (what a JSON body parses to); PostgreSQL (the configured server, a schema of this run,
  dropped after) from a DataFrame. Targets: 200,000 records/s embedded columnar, 100,000/s
  from dicts, 100,000/s PostgreSQL columnar. Baselines on the same batch, into the same
  table holding the same 1,000,000 rows, without validation: DuckDB's own ``INSERT OR IGNORE
  ... SELECT`` of the batch as Arrow, and SQLite (WAL, the store's schema and indexes)
  ``executemany``. Each embedded repeat starts from a fresh copy of the pre-filled file; the
  PostgreSQL batch is deleted (and vacuumed) after each repeat, untimed.
* ``http``: ``workbench serve --workers 2`` with the store in a temporary data folder and a
  load generator in this process, on the same cores, posting ``batch-execution`` bodies of 100
  records (each with fresh execution ids): closed loop (N connections, each sending its next
  batch when the last one answered) for batches/s and p50/p95/p99 latency, and open loop
  (batches sent at a fixed rate, latency measured from the scheduled send time so a stall is
  not hidden) at 500/s and 1,000/s for p95. Durable mode (a 200 means committed): after the
  server stops, the store must hold 100 records per acknowledged batch, else the figures are
  void. Targets: 500 batches/s at p95 <= 15 ms (stretch 1,000/s). Where the analytics routes
  are not mounted, the part reports its rows as missing with the reason, not as a failure.
* ``aggregate``: effectiveness per (task type, parameter hash): executions, successes,
  success rate, exact p50/p95/p99 latency (linear interpolation), mean latency, mean quality,
  over 10,000,000 records (quick: 200,000): ``AnalyticsStore.effectiveness`` (which also
  computes tokens, cost, satisfaction, timestamps and the score) against DuckDB running the
  same aggregate on the same table and on the Parquet file, pandas and polars (both reading
  the Parquet file first; the read is timed separately). Each tool runs in its own fresh
  subprocess per repeat, which reports its aggregation time and its peak resident memory
  (``VmHWM``, imports and loaded data included; the resident size before the aggregation
  is given beside it). Every tool's result is checked against ours (counts exactly,
  percentiles and means to 1e-9 relative); a mismatch voids that tool's figures. Target: ours
  within 2x of DuckDB on the same table.

Data: :func:`workbench.analytics.synthetic.generate_log` (seeded). The 10M-record log is drawn
in chunks of 1,000,000 with consecutive seeds (so execution ids stay distinct; each chunk has
its own parameter sets, about 40 per chunk), written once per run as Parquet in a temporary
folder and loaded into the store through ``ingest_file`` (validated).

Method: every figure is the median of several repeats (5 in a full run, 2 in a quick one;
the HTTP part 3 and 2); ``params`` hold each repeat's value and the spread. Within a part the
tools take turns repeat by repeat in a rotating order, so a load change on a shared machine
hits all of them alike; a ratio against a baseline is the median of the per-repeat ratios of
adjacent runs. The load average after each part is recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import math
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import InputError
from workbench.reports.bench import BenchContext, Measurement, repeated

__all__ = [
    "AGG_TOOLS",
    "PARTS",
    "LoadResult",
    "Sizes",
    "closed_loop",
    "compare_effectiveness",
    "open_loop",
    "routes_missing",
    "run",
]

SEED = 20_251_201
ROUTE = "/api/v1/parameter-analytics-rust"
BATCH_RECORDS = 100
_CHUNK = 1_000_000
_UNITS = {
    "records_per_s": "records/s",
    "records_per_cpu_s": "records/CPU-s",
    "batches_per_s": "batches/s",
    "latency_ms": "ms",
    "seconds": "s",
    "peak_rss_mb": "MB",
    "rss_before_mb": "MB",
    "slowdown_vs_baseline": "x",
    "fraction_of_baseline": "x",
}
_LOWER_IS_BETTER = {"latency_ms", "seconds", "peak_rss_mb", "rss_before_mb", "slowdown_vs_baseline"}
#: The aggregation's tools, each run in its own subprocess.
AGG_TOOLS = ("workbench", "duckdb", "duckdb-parquet", "pandas", "polars")
#: Columns every tool computes (ours computes more), compared against ours.
_AGG_KEYS = ("task_type", "parameter_hash")
_AGG_EXACT = ("executions", "successes")
_AGG_CLOSE = (
    "success_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    "quality_mean",
)
_QS = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Sizes:
    """How big one run is.

    Attributes:
        base: Records already in the store before an ingest repeat.
        batch: Records per timed ingest call.
        aggregate: Records the aggregation runs over.
        http_s: Seconds of each HTTP load repeat.
        repeats: Repeats of each measurement (HTTP: at most 3).
    """

    base: int
    batch: int
    aggregate: int
    http_s: float
    repeats: int

    def __post_init__(self) -> None:
        for name in ("base", "batch", "aggregate", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"Sizes.{name}={value!r} must be an integer >= 1")
        if not self.http_s > 0:
            raise InputError(f"Sizes.http_s={self.http_s!r} must be positive")


FULL = Sizes(base=1_000_000, batch=100_000, aggregate=10_000_000, http_s=8.0, repeats=5)
QUICK = Sizes(base=20_000, batch=5_000, aggregate=200_000, http_s=1.0, repeats=2)


@dataclass(frozen=True)
class _Setup:
    tmp: Path
    sizes: Sizes
    postgres_url: str
    quick: bool


def _m(
    name: str,
    tool: str,
    metric: str,
    samples: Sequence[float] | None,
    note: str = "",
    *,
    target: float | None = None,
    params: dict[str, Any] | None = None,
    invalid: str = "",
) -> Measurement:
    """:func:`~workbench.reports.bench.repeated` with this suite's units and directions."""
    return repeated(
        name,
        tool,
        metric,
        samples,
        _UNITS[metric],
        better="lower" if metric in _LOWER_IS_BETTER else "higher",
        note=note,
        target=target,
        params=params,
        invalid=invalid,
    )


def _rotations(jobs: Sequence[Callable[[], None]], repeats: int) -> None:
    """``repeats`` rounds of every job, each round's order rotated by one."""
    for r in range(repeats):
        k = r % len(jobs)
        for job in [*jobs[k:], *jobs[:k]]:
            job()


def _ratios(ours: Sequence[float], base: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(ours, base, strict=False) if b > 0 and a == a]


def _parquet_form(frame: pd.DataFrame) -> pd.DataFrame:
    """The records as Parquet and Arrow carry them: ``parameters`` as canonical JSON text."""
    from workbench.analytics.records import canonical_json

    out = frame.copy()
    texts: dict[int, str] = {}
    values = []
    for p in out["parameters"].tolist():
        key = id(p)
        if key not in texts:
            texts[key] = canonical_json(p)
        values.append(texts[key])
    out["parameters"] = values
    return out


# -- ingest ---------------------------------------------------------------------------------


def _ingest(s: _Setup) -> list[Measurement]:
    import duckdb
    import orjson
    import pyarrow as pa

    from workbench.analytics import AnalyticsStore, generate_log, ingest_file, validate, write_log
    from workbench.analytics.store import STORED_COLUMNS
    from workbench.postgres_adapter import PostgresAdapter

    z = s.sizes
    folder = s.tmp / "ingest"
    folder.mkdir(parents=True, exist_ok=True)
    base, _ = generate_log(z.base, seed=SEED)
    batch, _ = generate_log(z.batch, seed=SEED + 1)  # its own execution ids and sets
    arrow = pa.Table.from_pandas(_parquet_form(batch), preserve_index=False)
    jsonl = write_log(batch, folder / "batch.jsonl")
    dict_lines = jsonl.read_bytes().splitlines()
    stored = validate(batch).frame[list(STORED_COLUMNS)]  # for the unvalidated baselines
    stored_arrow = pa.Table.from_pandas(stored, preserve_index=False)
    rows = [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in stored.itertuples(index=False, name=None)
    ]

    duck_base = folder / "base.duckdb"
    sqlite_base = folder / "base.db"
    with AnalyticsStore(f"duckdb:///{duck_base}") as store:
        store.ingest(base)
    with AnalyticsStore(f"sqlite:///{sqlite_base}") as store:
        store.ingest(base)
    schema = f"wbbench_{uuid.uuid4().hex[:10]}"
    admin = PostgresAdapter(s.postgres_url)
    pg: Any = None
    prefix = f"exec-{SEED + 1}-"
    r: dict[str, list[float]] = {}
    problems: dict[str, str] = {}

    def add(key: str, value: float) -> None:
        r.setdefault(key, []).append(value)

    def timed(key: str, t0: float, c0: float) -> None:
        """Records per second of wall time and per second of this process's CPU time (all
        its threads: what the machine's load does not deflate)."""
        add(key, z.batch / (time.perf_counter() - t0))
        add(f"{key} cpu", z.batch / max(time.process_time() - c0, 1e-9))

    def fresh(kind: str) -> Path:
        src = duck_base if kind == "duckdb" else sqlite_base
        dst = folder / f"run{src.suffix}"
        for extra in (dst, Path(f"{dst}.wal"), Path(f"{dst}-wal"), Path(f"{dst}-shm")):
            extra.unlink(missing_ok=True)
        shutil.copyfile(src, dst)
        return dst

    def check(key: str, accepted: int) -> None:
        if accepted != z.batch:
            problems[key] = f"{accepted} of {z.batch} records were written"

    def ours(key: str, records: Callable[[], Any], via_file: bool = False) -> Callable[[], None]:
        def job() -> None:
            path = fresh("duckdb")
            with AnalyticsStore(f"duckdb:///{path}") as store:
                data = records()
                t0, c0 = time.perf_counter(), time.process_time()
                report = ingest_file(store, data, batch=z.batch) if via_file else store.ingest(data)
                timed(key, t0, c0)
                check(key, report.accepted)

        return job

    def dicts() -> list[Any]:
        return [orjson.loads(line) for line in dict_lines]  # parsing is not timed

    def duck_raw() -> None:
        path = fresh("duckdb")
        con = duckdb.connect(str(path))
        try:
            con.register("wb_batch", stored_arrow)
            t0, c0 = time.perf_counter(), time.process_time()
            con.execute("BEGIN TRANSACTION")
            got = con.execute("INSERT OR IGNORE INTO executions SELECT * FROM wb_batch").fetchone()
            con.execute("COMMIT")
            timed("duckdb", t0, c0)
            check("duckdb", 0 if got is None else int(got[0]))
        finally:
            con.close()

    def sqlite_raw() -> None:
        path = fresh("sqlite")
        con = sqlite3.connect(str(path), isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            marks = ", ".join("?" * len(STORED_COLUMNS))
            t0, c0 = time.perf_counter(), time.process_time()
            con.execute("BEGIN IMMEDIATE")
            cur = con.executemany(f"INSERT OR IGNORE INTO executions VALUES ({marks})", rows)
            con.execute("COMMIT")
            timed("sqlite", t0, c0)
            check("sqlite", cur.rowcount)
        finally:
            con.close()

    def postgres() -> None:
        t0 = time.perf_counter()
        report = pg.ingest(batch)
        add("postgresql", z.batch / (time.perf_counter() - t0))
        check("postgresql", report.accepted)
        pg_schema = PostgresAdapter(s.postgres_url, schema=schema)
        pg_schema.execute(
            "DELETE FROM executions WHERE left(execution_id, %s) = %s", (len(prefix), prefix)
        )
        pg_schema.execute("VACUUM ANALYZE executions")

    try:
        pg = AnalyticsStore(s.postgres_url, schema=schema)
        pg.ingest(base)
        jobs = [
            ours("dataframe", lambda: batch),
            ours("arrow", lambda: arrow),
            ours("jsonl", lambda: jsonl, via_file=True),
            ours("dicts", dicts),
            duck_raw,
            sqlite_raw,
            postgres,
        ]
        for job in jobs:  # warm up code paths and the page cache
            job()
        r.clear()
        _rotations(jobs, z.repeats)
    finally:
        if pg is not None:
            pg.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    p = {"store_holds": z.base, "batch_records": z.batch, "postgres_schema_dropped": schema}
    into = f"into {z.base:,} records"
    rows_out = [
        ("DataFrame", "workbench", "dataframe", 200_000.0, "embedded DuckDB store, ingest(df)"),
        ("Arrow table", "workbench", "arrow", 200_000.0, "embedded store, ingest(table)"),
        ("JSON Lines file", "workbench", "jsonl", 200_000.0, "ingest_file(store, path.jsonl)"),
        ("list of dicts", "workbench", "dicts", 100_000.0, "ingest(list of parsed JSON objects)"),
        ("DataFrame, PostgreSQL", "workbench", "postgresql", 100_000.0, "COPY into staging"),
        ("Arrow, no validation", "duckdb", "duckdb", None, "INSERT OR IGNORE ... SELECT"),
        ("rows, no validation", "sqlite", "sqlite", None, "WAL, executemany INSERT OR IGNORE"),
    ]
    out = []
    for what, tool, key, target, note in rows_out:
        out.append(
            _m(
                f"ingest {what} {into}",
                tool,
                "records_per_s",
                r.get(key),
                note,
                target=target,
                params=p,
                invalid=problems.get(key, ""),
            )
        )
        if key != "postgresql":  # the server's CPU is not this process's
            out.append(
                _m(
                    f"ingest {what} {into}",
                    tool,
                    "records_per_cpu_s",
                    r.get(f"{key} cpu"),
                    "the same runs per second of this process's CPU time (all threads); "
                    "the wall-clock figure carries the target",
                    params=p,
                    invalid=problems.get(key, ""),
                )
            )
    out.append(
        _m(
            f"ingest DataFrame {into}: ours / DuckDB INSERT without validation",
            "workbench",
            "fraction_of_baseline",
            _ratios(r.get("dataframe", []), r.get("duckdb", [])),
            "per-repeat ratio of adjacent runs: the cost of validation and bookkeeping",
            params=p,
        )
    )
    return out


# -- http -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """What one load run saw.

    Attributes:
        sent: Requests sent.
        ok: Requests answered 200.
        errors: Requests answered otherwise or failed (first few reasons in ``reasons``).
        seconds: Wall time from the first send to the last answer.
        latencies_ms: Latency of each answered-200 request, ms (open loop: from its
            scheduled send time).
        reasons: Up to five distinct error descriptions.
        dropped: Open loop: requests not sent because ``max_in_flight`` were outstanding
            (the server fell that far behind the schedule).
    """

    sent: int
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    reasons: tuple[str, ...] = ()
    dropped: int = 0

    @property
    def rate(self) -> float:
        """Answered-200 requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else float("nan")

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of the latencies, ms (NaN when none)."""
        if not self.latencies_ms:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_ms), q))


class _Tally:
    def __init__(self) -> None:
        self.sent = self.ok = self.errors = self.dropped = 0
        self.latencies: list[float] = []
        self.reasons: list[str] = []

    def fail(self, reason: str) -> None:
        self.errors += 1
        if reason not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(reason)

    def result(self, seconds: float) -> LoadResult:
        return LoadResult(
            self.sent,
            self.ok,
            self.errors,
            seconds,
            self.latencies,
            tuple(self.reasons),
            self.dropped,
        )


async def _post(
    session: Any, url: str, body: bytes, headers: dict[str, str], tally: _Tally, t0: float
) -> None:
    import aiohttp

    tally.sent += 1
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status == 200:
                tally.ok += 1
                tally.latencies.append((time.perf_counter() - t0) * 1000.0)
            else:
                tally.fail(f"HTTP {resp.status}")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        tally.fail(type(exc).__name__)


async def closed_loop(
    url: str,
    body: Callable[[int], bytes],
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """``connections`` clients, each posting its next body as soon as the last answered.

    Args:
        url: Where to POST.
        body: The body of the k-th request (k counts from 0 across all clients).
        connections: Concurrent connections (and clients).
        duration_s: How long clients keep starting requests, seconds.
        headers: Extra request headers (the content type is JSON).
    """
    import aiohttp

    hdrs = {"Content-Type": "application/json", **(headers or {})}
    tally = _Tally()
    counter = iter(range(1 << 62))
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        stop = start + duration_s

        async def client() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                await _post(session, url, body(next(counter)), hdrs, tally, t0)

        await asyncio.gather(*(client() for _ in range(connections)))
        return tally.result(time.perf_counter() - start)


async def open_loop(
    url: str,
    body: Callable[[int], bytes],
    *,
    rate: float,
    duration_s: float,
    headers: dict[str, str] | None = None,
    max_in_flight: int = 256,
) -> LoadResult:
    """Requests at a fixed ``rate`` per second for ``duration_s``, whatever the answers do.

    Latency counts from each request's scheduled time, so a server (or generator) that falls
    behind shows it in the percentiles instead of slowing the schedule (no coordinated
    omission). A request that would exceed ``max_in_flight`` is not sent and counted in
    ``dropped``.
    """
    import aiohttp

    hdrs = {"Content-Type": "application/json", **(headers or {})}
    tally = _Tally()
    n = max(1, round(rate * duration_s))
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        for k in range(n):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule itself, not a wait for a condition
            if len(tasks) >= max_in_flight:
                tally.dropped += 1
                continue
            task = asyncio.create_task(_post(session, url, body(k), hdrs, tally, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return tally.result(time.perf_counter() - start)


def _body_maker(run_id: str) -> Callable[[int], bytes]:
    """Bodies of ``BATCH_RECORDS`` camelCase records whose ids are fresh for each k."""
    import orjson

    from workbench.analytics import generate_log

    frame, _ = generate_log(BATCH_RECORDS, seed=SEED + 2)
    marker = "@" * 12
    records = []
    for j, row in enumerate(frame.itertuples(index=False)):
        quality = None if math.isnan(row.quality) else float(row.quality)
        records.append(
            {
                "executionId": f"http-{run_id}-{marker}-{j:03d}",
                "timestamp": row.timestamp.isoformat(),
                "taskType": row.task_type,
                "model": row.model,
                "provider": row.provider,
                "userId": row.user_id,
                "sessionId": row.session_id,
                "parameters": row.parameters,
                "promptTokens": int(row.prompt_tokens),
                "completionTokens": int(row.completion_tokens),
                "latencyMs": float(row.latency_ms),
                "cost": float(row.cost),
                "success": bool(row.success),
                "errorType": row.error_class,
                "quality": quality,
                "complexity": row.complexity,
            }
        )
    template = orjson.dumps({"executions": records})
    mark = marker.encode()
    return lambda k: template.replace(mark, b"%012d" % k)


async def _probe(url: str, headers: dict[str, str]) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, headers=headers) as resp,
    ):
        await resp.read()
        return int(resp.status)


def routes_missing(base_url: str, token: str | None = None, timeout_s: float = 30.0) -> str:
    """Why the analytics routes cannot be measured at ``base_url`` ('' when they answer).

    Polls ``GET {ROUTE}/health`` until it answers 200 (''), 404 (not mounted) or
    ``timeout_s`` passes.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        try:
            status = asyncio.run(_probe(f"{base_url}{ROUTE}/health", headers))
        except OSError:
            status = 0
        if status == 200:
            return ""
        if status == 404:
            return f"the analytics routes are not mounted ({ROUTE}/health answered 404)"
        time.sleep(0.2)  # polling the server's readiness, with a deadline
    return f"{ROUTE}/health did not answer 200 within {timeout_s:g} s (last status {status})"


_HTTP_LOADS = (
    ("closed loop, 4 connections", {"connections": 4}),
    ("closed loop, 16 connections", {"connections": 16}),
    ("open loop, 500 batches/s", {"rate": 500.0}),
    ("open loop, 1,000 batches/s", {"rate": 1000.0}),
)


def _http(s: _Setup) -> list[Measurement]:
    from workbench.testing import ServeProcess

    repeats = min(3, s.sizes.repeats)
    token = secrets.token_hex(16)
    data = s.tmp / "http-data"
    data.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        WORKBENCH_API_TOKEN=token,
        WORKBENCH_DATA_DIR=str(data),
        WORKBENCH_LOG_LEVEL="WARNING",
        WORKBENCH_GPU__BACKEND="simulated",
        # The platform's per-client limit (200 requests a minute) would measure the limiter:
        # one generator is one client.
        WORKBENCH_ANALYTICS__REQUESTS_PER_MIN="0",
    )
    env.pop("WORKBENCH_ANALYTICS__STORE", None)
    r: dict[str, list[float]] = {}
    reasons: list[str] = []
    acknowledged = 0
    why = ""
    if importlib.util.find_spec("workbench.api.analytics") is None:
        why = "the analytics routes are not mounted yet (workbench/api/analytics.py is absent)"
    else:
        with ServeProcess(workers=2, env=env, log=s.tmp / "serve.log") as server:
            server.wait_ready(("/health",))
            why = routes_missing(server.url(), token)
            if not why:
                url = server.url(f"{ROUTE}/batch-execution")
                headers = {"Authorization": f"Bearer {token}"}
                body = _body_maker(uuid.uuid4().hex[:8])
                offset = [0]

                def fresh(k: int) -> bytes:
                    return body(offset[0] + k)

                def load(name: str, kw: dict[str, Any], duration: float) -> LoadResult:
                    if "connections" in kw:
                        coro = closed_loop(url, fresh, duration_s=duration, headers=headers, **kw)
                    else:
                        coro = open_loop(url, fresh, duration_s=duration, headers=headers, **kw)
                    got = asyncio.run(coro)
                    offset[0] += got.sent + got.dropped  # every body index it used
                    return got

                def job(name: str, kw: dict[str, Any]) -> Callable[[], None]:
                    def run_one() -> None:
                        nonlocal acknowledged
                        got = load(name, kw, s.sizes.http_s)
                        acknowledged += got.ok
                        reasons.extend(x for x in got.reasons if x not in reasons)
                        r.setdefault(f"{name} rate", []).append(got.rate)
                        r.setdefault(f"{name} errors", []).append(float(got.errors))
                        r.setdefault(f"{name} dropped", []).append(float(got.dropped))
                        for q in (50, 95, 99):
                            r.setdefault(f"{name} p{q}", []).append(got.percentile(q))

                    return run_one

                warm = load("warm-up", {"connections": 4}, min(1.0, s.sizes.http_s))
                acknowledged += warm.ok
                _rotations([job(name, kw) for name, kw in _HTTP_LOADS], repeats)
        if not why:
            why = _check_durable(data, acknowledged)
    p = {
        "workers": 2,
        "records_per_batch": BATCH_RECORDS,
        "seconds_per_repeat": s.sizes.http_s,
        "mode": "durable",
        "generator": "aiohttp, asyncio, this process, same cores",
        "acknowledged_batches": acknowledged,
        "error_reasons": reasons,
        "rate_limit": "off (WORKBENCH_ANALYTICS__REQUESTS_PER_MIN=0)",
    }
    out = []
    for name, kw in _HTTP_LOADS:
        rate_target = 500.0 if "connections" in kw else None
        p95_target = 15.0 if kw.get("rate") == 500.0 else None
        errors = sum(r.get(f"{name} errors", []))
        dropped = sum(r.get(f"{name} dropped", []))
        note = f"{dropped:.0f} requests not sent: the server fell behind" if dropped else ""
        void = why or (
            f"{errors:.0f} requests failed ({', '.join(reasons)}): not a throughput figure"
            if errors
            else ""
        )
        pk = {**p, **kw}
        bname = f"batch-execution of {BATCH_RECORDS}, {name}"
        out.append(
            _m(
                bname,
                "workbench",
                "batches_per_s",
                r.get(f"{name} rate"),
                note,
                target=rate_target,
                params=pk,
                invalid=void,
            )
        )
        if "connections" in kw and kw["connections"] == 16:
            out.append(
                _m(
                    f"{bname} (stretch)",
                    "workbench",
                    "batches_per_s",
                    r.get(f"{name} rate"),
                    note,
                    target=1000.0,
                    params=pk,
                    invalid=void,
                )
            )
        for q in (50, 95, 99):
            target = p95_target if q == 95 else None
            if q == 95 and kw.get("rate") == 1000.0:
                target = 15.0
            out.append(
                _m(
                    f"{bname} p{q}",
                    "workbench",
                    "latency_ms",
                    r.get(f"{name} p{q}"),
                    note,
                    target=target,
                    params=pk,
                    invalid=void,
                )
            )
    return out


def _check_durable(data: Path, acknowledged: int) -> str:
    """'' when the server's store holds 100 records per acknowledged batch, else why not."""
    import duckdb

    path = data / "analytics.duckdb"
    if not path.exists():
        return f"could not check durability: no store at {path}"
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM executions").fetchone()
    finally:
        con.close()
    held = 0 if row is None else int(row[0])
    want = acknowledged * BATCH_RECORDS
    if held < want:
        return f"the store holds {held} records, fewer than the {want} acknowledged"
    return ""


# -- aggregate ------------------------------------------------------------------------------


def _build_aggregate_data(s: _Setup) -> tuple[Path, Path, dict[str, Any]]:
    """The Parquet log and a DuckDB store holding it (both in the run's folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workbench.analytics import AnalyticsStore, generate_log, ingest_file

    folder = s.tmp / "aggregate"
    folder.mkdir(parents=True, exist_ok=True)
    parquet = folder / "log.parquet"
    store_path = folder / "store.duckdb"
    n = s.sizes.aggregate
    chunk = min(_CHUNK, n)
    t0 = time.perf_counter()
    writer: Any = None
    try:
        for k, lo in enumerate(range(0, n, chunk)):
            frame, _ = generate_log(min(chunk, n - lo), seed=SEED + 100 + k)
            table = pa.Table.from_pandas(_parquet_form(frame), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(parquet, table.schema)
            writer.write_table(table)
            del frame, table
    finally:
        if writer is not None:
            writer.close()
    generated = time.perf_counter() - t0
    t0 = time.perf_counter()
    with AnalyticsStore(f"duckdb:///{store_path}") as store:
        report = ingest_file(store, parquet, batch=chunk)
        held = store.count()
    if report.accepted != n or held != n:
        raise RuntimeError(f"the aggregation store holds {held} of {n} records ({report})")
    info = {
        "records": n,
        "generate_and_write_parquet_s": round(generated, 1),
        "ingest_into_store_s": round(time.perf_counter() - t0, 1),
        "parquet_mb": round(parquet.stat().st_size / 1e6, 1),
        "store_mb": round(store_path.stat().st_size / 1e6, 1),
    }
    return parquet, store_path, info


def _warm_page_cache(*paths: Path) -> None:
    for path in paths:
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


def _duckdb_sql(source: str) -> str:
    return (
        "SELECT task_type, parameter_hash, count(*) AS executions, "
        "count_if(success) AS successes, quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q, "
        f"avg(latency_ms) AS latency_mean_ms, avg(quality) AS quality_mean FROM {source} "
        "GROUP BY task_type, parameter_hash"
    )


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["success_rate"] = frame["successes"] / frame["executions"]
    cols = [*_AGG_KEYS, *_AGG_EXACT, *_AGG_CLOSE]
    return frame[cols].sort_values(list(_AGG_KEYS)).reset_index(drop=True)


def _aggregate_child(tool: str, data: str, out: str) -> dict[str, Any]:
    """Run one tool's aggregation in this (fresh) process; write its result to ``out``."""
    load_s = 0.0
    if tool == "workbench":
        from workbench.analytics import AnalyticsStore

        store = AnalyticsStore(f"duckdb:///{data}")
        rss = _rss_mb()
        t0 = time.perf_counter()
        eff = store.effectiveness(by=_AGG_KEYS)
        seconds = time.perf_counter() - t0
        store.close()
        result = eff
    elif tool in ("duckdb", "duckdb-parquet"):
        import duckdb

        if tool == "duckdb":
            con = duckdb.connect(data, read_only=True)
            source = "executions"
        else:
            con = duckdb.connect()
            source = f"read_parquet('{data}')"
        rss = _rss_mb()
        t0 = time.perf_counter()
        got = con.execute(_duckdb_sql(source)).df()
        seconds = time.perf_counter() - t0
        con.close()
        for i, q in enumerate(_QS):
            got[f"latency_p{round(q * 100)}_ms"] = [v[i] for v in got["q"]]
        result = got
    elif tool == "pandas":
        t0 = time.perf_counter()
        df = pd.read_parquet(data, columns=[*_AGG_KEYS, "success", "latency_ms", "quality"])
        load_s = time.perf_counter() - t0
        rss = _rss_mb()
        t0 = time.perf_counter()
        g = df.groupby(list(_AGG_KEYS), sort=False, observed=True)
        result = g.agg(
            executions=("latency_ms", "size"),
            successes=("success", "sum"),
            latency_mean_ms=("latency_ms", "mean"),
            quality_mean=("quality", "mean"),
        )
        quantiles = g["latency_ms"].quantile(list(_QS)).unstack()
        for q in _QS:
            result[f"latency_p{round(q * 100)}_ms"] = quantiles[q]
        seconds = time.perf_counter() - t0
        result = result.reset_index()
    elif tool == "polars":
        import polars as pl

        t0 = time.perf_counter()
        df = pl.read_parquet(data, columns=[*_AGG_KEYS, "success", "latency_ms", "quality"])
        load_s = time.perf_counter() - t0
        rss = _rss_mb()
        t0 = time.perf_counter()
        lat = pl.col("latency_ms")
        got = df.group_by(list(_AGG_KEYS)).agg(
            pl.len().alias("executions"),
            pl.col("success").sum().alias("successes"),
            *[
                lat.quantile(q, interpolation="linear").alias(f"latency_p{round(q * 100)}_ms")
                for q in _QS
            ],
            lat.mean().alias("latency_mean_ms"),
            pl.col("quality").mean().alias("quality_mean"),
        )
        seconds = time.perf_counter() - t0
        result = got.to_pandas()
    else:
        raise InputError(f"unknown aggregation tool {tool!r}; known: {AGG_TOOLS}")
    _finish(result).to_parquet(out, index=False)
    return {
        "seconds": seconds,
        "load_seconds": load_s,
        "rss_before_mb": rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB. ``VmHWM`` is this
    process image's own high-water mark (``ru_maxrss`` would carry the parent's over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"/proc/self/status has no {field}")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def compare_effectiveness(ours: pd.DataFrame, theirs: pd.DataFrame, rtol: float = 1e-9) -> str:
    """'' when ``theirs`` equals ``ours`` (same groups, counts exactly, the rest to ``rtol``
    relative), else the first difference."""
    a, b = _finish(ours), _finish(theirs)
    if len(a) != len(b):
        return f"{len(b)} groups, ours {len(a)}"
    for c in _AGG_KEYS:
        if not (a[c].astype(str).to_numpy() == b[c].astype(str).to_numpy()).all():
            return f"different groups ({c})"
    for c in _AGG_EXACT:
        if not (a[c].to_numpy(dtype=np.int64) == b[c].to_numpy(dtype=np.int64)).all():
            return f"{c} differ"
    for c in _AGG_CLOSE:
        x, y = a[c].to_numpy(dtype=np.float64), b[c].to_numpy(dtype=np.float64)
        if not np.allclose(y, x, rtol=rtol, atol=0.0, equal_nan=True):
            worst = np.nanmax(np.abs(y - x) / np.maximum(np.abs(x), 1e-300))
            return f"{c} differ (worst relative difference {worst:.3g})"
    return ""


def _aggregate(s: _Setup) -> list[Measurement]:
    parquet, store_path, info = _build_aggregate_data(s)
    _warm_page_cache(parquet, store_path)
    results = s.tmp / "aggregate" / "results"
    results.mkdir(exist_ok=True)
    r: dict[str, list[float]] = {}
    bad: dict[str, str] = {}
    ran = dict.fromkeys(AGG_TOOLS, 0)

    def job(tool: str) -> Callable[[], None]:
        def run_one() -> None:
            data = parquet if tool in ("duckdb-parquet", "pandas", "polars") else store_path
            out = results / f"{tool}-{ran[tool]}.parquet"
            ran[tool] += 1
            cmd = [sys.executable, "-m", __name__, tool, str(data), str(out)]
            got = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
            if got.returncode != 0:
                bad[tool] = f"failed: {got.stderr.strip().splitlines()[-1:]}"
                return
            figures = json.loads(got.stdout.strip().splitlines()[-1])
            for key, value in figures.items():
                r.setdefault(f"{tool} {key}", []).append(float(value))
            reference = results / "workbench-0.parquet"
            if out != reference and reference.exists() and not bad.get(tool):
                diff = compare_effectiveness(pd.read_parquet(reference), pd.read_parquet(out))
                if diff:
                    bad[tool] = f"result differs from ours: {diff}"

        return run_one

    job("workbench")()  # the reference result (untimed) every later run is checked against
    r.clear()
    _rotations([job(t) for t in AGG_TOOLS], s.sizes.repeats)
    groups = len(pd.read_parquet(results / "workbench-0.parquet"))
    p = {**info, "groups": groups, "by": list(_AGG_KEYS), "process": "fresh subprocess per repeat"}
    notes = {
        "workbench": "AnalyticsStore.effectiveness (DuckDB store; also tokens, cost, "
        "satisfaction, timestamps, score, parameter dicts)",
        "duckdb": "the same aggregate in DuckDB SQL on the store's table (read-only)",
        "duckdb-parquet": "the same aggregate in DuckDB SQL over the Parquet file",
        "pandas": "groupby agg + quantile on the frame read from Parquet (read not included)",
        "polars": "group_by agg on the frame read from Parquet (read not included)",
    }
    name = f"effectiveness of {info['records']:,} records"
    out = []
    for tool in AGG_TOOLS:
        void = bad.get(tool, "")
        out.append(
            _m(name, tool, "seconds", r.get(f"{tool} seconds"), notes[tool], params=p, invalid=void)
        )
        out.append(
            _m(
                f"{name}: peak RSS of the process",
                tool,
                "peak_rss_mb",
                r.get(f"{tool} peak_rss_mb"),
                "VmHWM; imports and loaded data included",
                params=p,
                invalid=void,
            )
        )
        out.append(
            _m(
                f"{name}: RSS before aggregating",
                tool,
                "rss_before_mb",
                r.get(f"{tool} rss_before_mb"),
                "after imports and (pandas, polars) the read",
                params=p,
                invalid=void,
            )
        )
        if tool in ("pandas", "polars"):
            out.append(
                _m(
                    f"read {info['records']:,} records from Parquet",
                    tool,
                    "seconds",
                    r.get(f"{tool} load_seconds"),
                    "the five columns used",
                    params=p,
                    invalid=void,
                )
            )
    for base, target in (("duckdb", 2.0), ("duckdb-parquet", None), ("polars", None)):
        out.append(
            _m(
                f"{name}: ours / {base}",
                "workbench",
                "slowdown_vs_baseline",
                _ratios(r.get("workbench seconds", []), r.get(f"{base} seconds", [])),
                "per-repeat ratio of adjacent runs",
                target=target,
                params=p,
                invalid=bad.get("workbench", "") or bad.get(base, ""),
            )
        )
    return out


# -- the suite ------------------------------------------------------------------------------

#: The suite's parts, in the order they run.
PARTS: dict[str, Callable[[_Setup], list[Measurement]]] = {
    "ingest": _ingest,
    "http": _http,
    "aggregate": _aggregate,
}


def run(ctx: BenchContext, sizes: Sizes | None = None) -> list[Measurement]:
    """Run the chosen parts at ``sizes`` (default: the full or quick sizes)."""
    from workbench.config import load_settings

    unknown = set(ctx.parts) - set(PARTS)
    if unknown:
        raise InputError(
            f"--part: unknown {sorted(unknown)}; the analytics suite has {list(PARTS)}"
        )
    z = sizes or (QUICK if ctx.quick else FULL)
    out: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="wbbench-analytics-") as tmp:
        s = _Setup(Path(tmp), z, load_settings().postgres_url, ctx.quick)
        chosen = [p for p in PARTS if not ctx.parts or p in ctx.parts]
        for name in ctx.progress(chosen, desc="analytics"):
            measured = PARTS[name](s)
            load = [round(x, 2) for x in os.getloadavg()]
            out += [
                dataclasses.replace(
                    m,
                    params={
                        **m.params,
                        "part": name,
                        "sizes": dataclasses.asdict(z),
                        "loadavg_after": load,
                    },
                )
                for m in measured
            ]
    return out


if __name__ == "__main__":  # one aggregation in a fresh process (see _aggregate)
    print(json.dumps(_aggregate_child(*sys.argv[1:4])))
