"""The analytics benchmark suite's plumbing on tiny sizes: every tool measured, targets on
the right rows, results checked against ours, the PostgreSQL schema dropped, and the HTTP load
generator's bookkeeping against a real local server. No timing is asserted: benchmarks
measure, tests check behaviour."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator

import orjson
import pandas as pd
import psycopg
import pytest
from aiohttp import web

from workbench.errors import InputError
from workbench.reports.bench import BenchContext
from workbench.reports.benchmarks.analytics import (
    AGG_TOOLS,
    ROUTE,
    Sizes,
    closed_loop,
    compare_effectiveness,
    open_loop,
    routes_missing,
    run,
)
from workbench.testing import free_port

TINY = Sizes(base=2000, batch=500, aggregate=4000, http_s=0.2, repeats=1)


def test_unknown_parts_are_refused() -> None:
    with pytest.raises(InputError, match="ingest"):
        run(BenchContext(quick=True, show_progress=False, parts=("nope",)), TINY)


def test_ingest_and_aggregate_measure_every_tool_and_leave_no_schema(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_POSTGRES_URL", postgres_url)
    ctx = BenchContext(quick=True, show_progress=False, parts=("ingest", "aggregate"))
    rows = run(ctx, TINY)
    assert {m.params["part"] for m in rows} == {"ingest", "aggregate"}
    assert all(m.params["sizes"]["aggregate"] == 4000 for m in rows)
    # a value is missing only where a check failed (records not written, results that differ)
    missing = [(m.name, m.tool, m.note) for m in rows if math.isnan(m.value)]
    assert not missing
    ingest = [m for m in rows if m.params["part"] == "ingest"]
    assert {m.tool for m in ingest} == {"workbench", "duckdb", "sqlite"}
    targets = {m.name.split(" into ")[0]: m.target for m in ingest if m.metric == "records_per_s"}
    assert targets["ingest DataFrame"] == 200_000 and targets["ingest list of dicts"] == 100_000
    assert targets["ingest DataFrame, PostgreSQL"] == 100_000
    assert targets["ingest Arrow, no validation"] is None
    agg = [m for m in rows if m.params["part"] == "aggregate"]
    assert {m.tool for m in agg if m.metric == "seconds"} == set(AGG_TOOLS)
    (ratio,) = [m for m in agg if m.name.endswith("ours / duckdb")]
    assert ratio.target == 2.0 and ratio.better == "lower"
    assert all(m.value > 0 for m in agg if m.metric == "peak_rss_mb")
    assert all(m.params["groups"] > 1 for m in agg)
    schema = ingest[0].params["postgres_schema_dropped"]
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found is None


def _effectiveness() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task_type": ["a", "b"],
            "parameter_hash": ["h1", "h2"],
            "executions": [10, 20],
            "successes": [7, 20],
            "latency_p50_ms": [100.0, 200.0],
            "latency_p95_ms": [150.0, 250.0],
            "latency_p99_ms": [190.0, 290.0],
            "latency_mean_ms": [110.0, 210.0],
            "quality_mean": [0.5, float("nan")],
        }
    )


def test_result_comparison_catches_a_count_a_percentile_and_a_group() -> None:
    ours = _effectiveness()
    assert compare_effectiveness(ours, ours.iloc[::-1].copy()) == ""  # order does not matter
    near = ours.copy()
    near["latency_p95_ms"] *= 1 + 1e-12
    assert compare_effectiveness(ours, near) == ""
    off = ours.copy()
    off.loc[1, "latency_p99_ms"] *= 1 + 1e-7
    assert "latency_p99_ms" in compare_effectiveness(ours, off)
    count = ours.copy()
    count.loc[0, "successes"] = 6
    assert "successes" in compare_effectiveness(ours, count)
    group = ours.copy()
    group.loc[0, "parameter_hash"] = "h9"
    assert "groups" in compare_effectiveness(ours, group)


class _Server:
    """A real aiohttp server in a thread that records the execution ids it is sent."""

    def __init__(self, with_route: bool) -> None:
        self.port = free_port()
        self.ids: list[str] = []
        self.with_route = with_route
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _batch(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.ids.extend(r["executionId"] for r in body["executions"])
        if request.headers.get("Authorization") != "Bearer t0k3n-abc":
            return web.Response(status=401)
        return web.json_response({"successfulProcessed": len(body["executions"])})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    def _serve(self) -> None:
        app = web.Application()
        app.router.add_post(f"{ROUTE}/batch-execution", self._batch)
        if self.with_route:
            app.router.add_get(f"{ROUTE}/health", self._health)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> _Server:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server(with_route=True) as s:
        yield s


def _body(k: int) -> bytes:
    return orjson.dumps({"executions": [{"executionId": f"{k}-{j}"} for j in range(3)]})


def test_closed_and_open_loop_count_every_request_with_fresh_ids(server: _Server) -> None:
    url = f"http://127.0.0.1:{server.port}{ROUTE}/batch-execution"
    auth = {"Authorization": "Bearer t0k3n-abc"}
    closed = asyncio.run(closed_loop(url, _body, connections=3, duration_s=0.3, headers=auth))
    assert closed.sent >= 3 and closed.ok == closed.sent and closed.errors == 0
    assert len(closed.latencies_ms) == closed.ok and closed.percentile(95) > 0
    opened = asyncio.run(open_loop(url, _body, rate=100.0, duration_s=0.3, headers=auth))
    assert opened.sent == 30 and opened.ok == 30 and opened.errors == 0
    assert len(server.ids) == 3 * (closed.sent + opened.sent)
    # each request's body is the k-th (k = 0, 1, ...): closed loop's ids then open loop's
    assert len(set(server.ids[: 3 * closed.sent])) == 3 * closed.sent
    refused = asyncio.run(open_loop(url, _body, rate=50.0, duration_s=0.1))
    assert refused.ok == 0 and refused.errors == refused.sent == 5
    assert refused.reasons == ("HTTP 401",) and math.isnan(refused.percentile(50))


def test_routes_missing_tells_a_mounted_route_from_an_absent_one(server: _Server) -> None:
    assert routes_missing(f"http://127.0.0.1:{server.port}", "t0k3n-abc") == ""
    with _Server(with_route=False) as bare:
        why = routes_missing(f"http://127.0.0.1:{bare.port}", timeout_s=5)
    assert "not mounted" in why and "404" in why
