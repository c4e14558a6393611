"""HTTP routes of parameter analytics (/api/v1/parameter-analytics-rust) on real stores.

Each test runs the app in-process with a DuckDB store in its temporary folder (the embedded
default) and an injected clock, so the dashboard's 24 hours are the test's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.api.conftest import bearer, run_with_client
from workbench.analytics import Filters, generate_log
from workbench.analytics.service import AnalyticsConfig, AnalyticsService
from workbench.api import analytics as analytics_api
from workbench.api import system
from workbench.api.app import ROUTER_MODULES, create_app
from workbench.config import Settings

TOKEN = "api-token-123"
H = bearer(TOKEN)
P = "/api/v1/parameter-analytics-rust"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def record(i: int, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "executionId": f"ex-{i}",
        "timestamp": (NOW - timedelta(minutes=i)).isoformat(),
        "taskType": "code_generation",
        "model": "gpt-4o",
        "provider": "openai",
        "parameters": {"temperature": 0.2, "maxTokens": 512},
        "tokenUsage": {"promptTokens": 10, "completionTokens": 20, "totalTokens": 30},
        "executionTime": 250.0 + i,
        "success": True,
        "responseQuality": 0.8,
        "complexity": "simple",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def make_service(tmp_path: Path, **knobs: Any) -> AnalyticsService:
    config = AnalyticsConfig(store=f"duckdb:///{tmp_path / 'analytics.duckdb'}", **knobs)
    return AnalyticsService(config, clock=NOW.timestamp)


def app_for(tmp_path: Path, service: AnalyticsService, **knobs: Any) -> web.Application:
    settings = Settings(api_token=TOKEN, data_dir=tmp_path, sections={"analytics": knobs})
    return create_app(
        settings,
        routers=[system.router, analytics_api.router],
        services={"analytics": service},
    )


def run(
    tmp_path: Path,
    scenario: Callable[[TestClient, AnalyticsService], Any],
    **knobs: Any,
) -> Any:
    service = make_service(tmp_path, **knobs)
    app = app_for(tmp_path, service, **knobs)
    return run_with_client(app, lambda client: scenario(client, service))


async def call(
    client: TestClient, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    headers = kw.pop("headers", H)
    r = await client.request(method, P + path, json=body, headers=headers, **kw)
    return r.status, await r.json()


def test_mounted_in_one_owner_worker() -> None:
    assert "workbench.api.analytics" in ROUTER_MODULES
    assert analytics_api.SERVICE.per_worker is False  # DuckDB admits one writing process


def test_one_record_is_durable_and_a_replay_is_a_duplicate(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        status, body = await call(client, "POST", "/execution", record(1))
        assert status == 200, body
        assert body["success"] is True
        assert body["result"] == {
            "processed": True,
            "executionId": "ex-1",
            "duplicate": False,
            "durable": True,
            "mode": "durable",
        }
        assert body["processingTimeMs"] >= 0
        # committed when answered: the store holds it, with the platform's names mapped
        frame = svc.store.frame()
        assert len(frame) == 1
        row = frame.iloc[0]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (10, 20)
        assert row["latency_ms"] == 251.0 and row["quality"] == 0.8
        assert row["parameters"] == {"temperature": 0.2, "maxTokens": 512}
        status, body = await call(client, "POST", "/execution", record(1))
        assert status == 200 and body["result"]["duplicate"] is True
        # snake_case spellings are accepted too; no timestamp means "when received"
        snake = {
            "execution_id": "ex-2",
            "task_type": "chat",
            "model": "llama3",
            "parameters": {},
            "latency_ms": 10.0,
            "success": False,
            "error_type": "timeout",
        }
        status, body = await call(client, "POST", "/execution", snake)
        assert status == 200, body
        assert svc.store.count() == 2
        got = svc.store.frame(Filters(task_types=("chat",))).iloc[0]
        assert got["timestamp"] == int(NOW.timestamp() * 1_000_000)
        assert got["error_class"] == "timeout" and got["provider"] == "unknown"

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"taskType": "no spaces allowed"}, "taskType"),
        ({"executionTime": None}, "body"),  # neither latencyMs nor executionTime
        ({"latencyMs": 5.0}, "latencyMs"),  # disagrees with executionTime
        ({"timestamp": "1990-01-01T00:00:00Z"}, "timestamp"),  # before 2000
        ({"parameters": {"a": {"b": {"c": {"d": {"e": 1}}}}}}, "parameters"),  # depth 5
        ({"success": "yes"}, "success"),
        ({"executionId": "tab\tinside"}, "executionId"),
    ],
)
def test_a_bad_record_is_a_400_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        body = record(1)
        body.update(changes)
        body = {k: v for k, v in body.items() if v is not None}
        status, answer = await call(client, "POST", "/execution", body)
        assert status == 400, answer
        assert answer["error"]["code"] == "VALIDATION_ERROR"
        named = [d["field"] for d in answer["error"]["details"]]
        assert any(n == field or n.startswith(field) for n in named), answer
        assert svc.store.count() == 0

    run(tmp_path, scenario)


def test_a_batch_stores_the_good_records_and_reports_the_bad_by_index(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        executions = [
            record(0),
            record(1, success=None),  # missing success: the wire schema refuses it
            record(2),
            record(3, timestamp="1999-12-31T23:59:59Z"),  # the store's bounds refuse it
            record(0, executionTime=999.0),  # the same id twice in one batch
        ]
        status, body = await call(client, "POST", "/batch-execution", {"executions": executions})
        assert status == 200, body
        assert [e["index"] for e in body["errors"]] == [1, 3, 4]
        fields = [e["field"] for e in body["errors"]]
        assert fields[0] == "success" and fields[1] == "timestamp"
        assert "duplicate" in body["errors"][2]["error"]
        assert [r["index"] for r in body["results"]] == [0, 2]
        assert body["totalProcessed"] == 5
        assert body["successfulProcessed"] == 2
        assert body["successRate"] == pytest.approx(0.4)
        assert (body["accepted"], body["duplicates"], body["durable"]) == (2, 0, True)
        assert svc.store.count() == 2
        # the same batch again: nothing new is counted
        status, body = await call(client, "POST", "/batch-execution", {"executions": executions})
        assert (body["accepted"], body["duplicates"]) == (0, 2)
        assert svc.store.count() == 2

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"executions": []}, "executions"),
        ({"executions": [record(i) for i in range(101)]}, "executions"),
        ({"executions": [record(0), "not an object"]}, "executions.1"),
        ({}, "executions"),
    ],
)
def test_a_malformed_batch_is_a_400(tmp_path: Path, body: dict[str, Any], field: str) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        status, answer = await call(client, "POST", "/batch-execution", body)
        assert status == 400, answer
        assert answer["error"]["details"][0]["field"] == field
        assert svc.store.count() == 0

    run(tmp_path, scenario)


def test_async_mode_answers_202_and_feedback_reaches_a_buffered_record(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        status, body = await call(client, "POST", "/execution?mode=async", record(1))
        assert status == 202, body
        assert body["result"]["durable"] is False
        executions = [record(i) for i in range(2, 12)]
        status, body = await call(
            client, "POST", "/batch-execution?mode=async", {"executions": executions}
        )
        assert status == 202 and body["durable"] is False and body["accepted"] == 10
        assert svc.store.count() == 0  # buffered: the flush interval is a minute
        status, body = await call(
            client, "POST", "/feedback", {"executionId": "ex-5", "satisfaction": 4.5}
        )
        assert status == 200, body
        assert svc.store.count() == 11
        frame = svc.store.frame()
        assert frame.loc[frame["execution_id"] == "ex-5", "user_satisfaction"].item() == 4.5
        status, body = await call(client, "POST", "/execution?mode=later", record(20))
        assert status == 400 and body["error"]["details"][0]["field"] == "mode"

    run(tmp_path, scenario, flush_interval_s=60.0)


def test_a_full_buffer_is_a_503_with_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        # Hold the store's connection, as a long query would: the writer's flush waits.
        lock = svc.store._backend._lock  # type: ignore[attr-defined]
        lock.acquire()
        try:
            first = [record(i) for i in range(100)]
            status, body = await call(
                client, "POST", "/batch-execution?mode=async", {"executions": first}
            )
            assert status == 202, body
            second = {"executions": [record(i) for i in range(100, 110)]}
            r = await client.post(P + "/batch-execution?mode=async", json=second, headers=H)
            assert r.status == 503, await r.text()
            assert int(r.headers["Retry-After"]) >= 1
            r = await client.post(P + "/execution?mode=async", json=record(500), headers=H)
            assert r.status == 503
            assert svc.writer.buffered == 100
            assert svc.writer.stats().peak_buffered == 100  # never past the bound
        finally:
            lock.release()
        await asyncio.to_thread(svc.writer.flush, 30.0)
        assert svc.store.count() == 100
        assert svc.writer.stats().dead_lettered == 0

    run(tmp_path, scenario, buffer_records=100, flush_records=100, flush_interval_s=60.0)


def _load_log(svc: AnalyticsService, n: int = 3000, seed: int = 7) -> Any:
    log, truth = generate_log(
        n,
        seed=seed,
        start=NOW - timedelta(days=2),
        duration=timedelta(days=2),
        task_types=("code_generation", "summarization"),
        n_parameter_sets=4,
    )
    report = svc.store.ingest(log)
    assert report.accepted == n
    return log, truth


def test_effectiveness_answers_the_stores_aggregates_best_first(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        _load_log(svc)
        start = (NOW - timedelta(days=1)).replace(tzinfo=None).isoformat()  # naive: UTC
        body = {
            "taskTypes": ["code_generation"],
            "timeRange": {"start": start},
            "minExecutions": 20,
            "limit": 3,
        }
        status, answer = await call(client, "POST", "/effectiveness", body)
        assert status == 200, answer
        rows = answer["result"]["effectiveness"]
        expect = svc.store.effectiveness(
            ("task_type", "parameter_hash"),
            Filters(
                task_types=("code_generation",),
                start=NOW - timedelta(days=1),
                min_executions=20,
            ),
        ).sort_values("score", ascending=False)
        assert answer["result"]["total"] == len(expect) >= 3
        assert len(rows) == 3
        assert [r["parameterSet"] for r in rows] == expect["parameter_hash"].tolist()[:3]
        top, ref = rows[0], expect.iloc[0]
        assert top["totalExecutions"] == ref["executions"]
        assert top["successRate"] == pytest.approx(ref["success_rate"])
        assert top["latencyP95Ms"] == pytest.approx(ref["latency_p95_ms"])
        assert top["score"] == pytest.approx(ref["score"])
        assert top["parameters"] == ref["parameters"]
        assert top["confidenceScore"] == pytest.approx(min(0.95, ref["executions"] / 100))
        # an end before the start names the time range
        bad = {"timeRange": {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}}
        status, answer = await call(client, "POST", "/effectiveness", bad)
        assert status == 400 and answer["error"]["details"][0]["field"] == "timeRange"
        # dates far outside the records' range are no error
        wide = {"timeRange": {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z"}}
        status, answer = await call(client, "POST", "/effectiveness", wide)
        assert status == 200 and answer["result"]["total"] == 8

    run(tmp_path, scenario)


def test_insights_and_the_dashboard_follow_the_store(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        log, _ = _load_log(svc, n=4000)
        status, answer = await call(client, "POST", "/insights", {"taskType": "code_generation"})
        assert status == 200, answer
        result = answer["result"]
        eff = svc.store.effectiveness(
            ("task_type", "parameter_hash"), Filters(task_types=("code_generation",))
        )
        best = eff.sort_values("score", ascending=False).iloc[0]
        assert result["recommendation"]["parameterSet"] == best["parameter_hash"]
        assert result["insights"], "4 sets with a true best: the improvement exceeds 10 %"
        for insight in result["insights"]:
            assert insight["bestParameterSet"] == best["parameter_hash"]
            pct = insight["supportingData"]["improvementPercent"]
            assert pct >= 10
            assert insight["impact"] == ("high" if pct > 50 else "medium" if pct > 25 else "low")
        status, answer = await call(client, "GET", "/dashboard")
        assert status == 200, answer
        ts = log["timestamp"]
        in_window = int(((ts > NOW - timedelta(hours=24)) & (ts <= NOW)).sum())
        dash = answer["result"]
        assert dash["totalExecutions"] == in_window > 0
        recent = log.loc[(ts > NOW - timedelta(hours=24)) & (ts <= NOW)]
        assert dash["successRate"] == pytest.approx(recent["success"].mean())
        assert dash["avgResponseTime"] == pytest.approx(recent["latency_ms"].mean())
        assert len(dash["topPerformingTasks"]) == 2

    run(tmp_path, scenario)


def test_feedback_is_counted_once_and_an_unknown_id_is_404(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        await call(client, "POST", "/execution", record(1))
        for value in (2.0, 5.0):
            status, body = await call(
                client, "POST", "/feedback", {"executionId": "ex-1", "satisfaction": value}
            )
            assert status == 200, body
        eff = svc.store.effectiveness(("task_type",))
        assert eff["executions"].tolist() == [1]
        assert eff["satisfaction_mean"].tolist() == [5.0]  # replaced, not averaged
        status, body = await call(
            client, "POST", "/feedback", {"executionId": "nope", "quality": 1}
        )
        assert status == 404 and body["error"]["code"] == "NOT_FOUND"
        status, body = await call(client, "POST", "/feedback", {"executionId": "ex-1"})
        assert status == 400

    run(tmp_path, scenario)


def test_the_performance_test_measures_on_a_scratch_store(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        body = {"testType": "complex", "operations": 300, "taskType": "perf_probe"}
        status, answer = await call(client, "POST", "/performance-test", body)
        assert status == 200, answer
        r = answer["result"]
        assert r["operationsCompleted"] == 300 and r["batches"] == 3 and not r["truncated"]
        assert r["throughputPerS"] == pytest.approx(r["operationsCompleted"] / r["seconds"])
        lat = r["ingestLatencyMs"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert r["aggregateLatencyMs"]["p50"] > 0
        assert svc.store.count() == 0  # the service's store is never touched
        status, answer = await call(
            client, "POST", "/performance-test", {"testType": "weird", "operations": 5}
        )
        assert status == 400

    run(tmp_path, scenario)


def test_the_performance_test_stops_at_its_time_limit(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        # a budget far too short for 10,000 operations (about 2 s here at best) stops early
        t0 = time.perf_counter()
        big = {"testType": "complex", "operations": 10_000, "taskType": "perf_probe"}
        status, answer = await call(client, "POST", "/performance-test", big)
        assert status == 200, answer
        assert answer["result"]["truncated"] is True
        assert answer["result"]["operationsCompleted"] < 10_000
        assert time.perf_counter() - t0 < 10

    run(tmp_path, scenario, perf_time_limit_s=0.3)


def test_snapshot_stats_version_and_health(tmp_path: Path) -> None:
    async def scenario(client: TestClient, svc: AnalyticsService) -> None:
        executions = [record(i, success=bool(i % 2)) for i in range(10)]
        await call(client, "POST", "/batch-execution", {"executions": executions})
        status, body = await call(client, "GET", "/analytics")
        assert status == 200
        snap = body["result"]
        assert snap["totalExecutions"] == 10 and snap["successRate"] == pytest.approx(0.5)
        assert snap["taskTypes"]["top"] == [{"name": "code_generation", "executions": 10}]
        status, body = await call(client, "GET", "/stats")
        assert body["result"]["recordsAccepted"] == 10
        assert 0 <= body["result"]["uptimeS"] < 600
        status, body = await call(client, "GET", "/version")
        assert body["result"]["storeBackend"] == "duckdb"
        # health needs no token; the others do
        status, body = await call(client, "GET", "/health", headers={})
        assert status == 200 and body["result"]["healthy"] is True
        assert body["result"]["records"] == 10
        status, body = await call(client, "GET", "/analytics", headers={})
        assert status == 401
        # a store that does not answer makes health a 503
        svc.store.close()
        status, body = await call(client, "GET", "/health", headers={})
        assert status == 503 and body["success"] is False
        assert body["result"]["storeConnected"] is False

    run(tmp_path, scenario)


def test_the_config_is_validated_when_the_app_is_made(tmp_path: Path) -> None:
    from workbench.errors import ConfigError

    for bad in ({"max_batch": 101}, {"store": "mysql://x"}, {"buffer_records": 10}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            AnalyticsConfig.from_settings(Settings(data_dir=tmp_path, sections={"analytics": bad}))
    config = AnalyticsConfig.from_settings(Settings(data_dir=tmp_path))
    assert config.store == f"duckdb:///{tmp_path / 'analytics.duckdb'}"
    assert (config.max_batch, config.requests_per_min) == (100, 200.0)  # the platform's
