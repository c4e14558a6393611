"""AnalyticsService: its config, its bounded call pool, draining on close, every store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.analytics.conftest import NOW, make_url
from workbench.analytics import AnalyticsStore, generate_log
from workbench.analytics.service import AnalyticsConfig, AnalyticsService, default_store_url
from workbench.config import Settings, load_settings
from workbench.errors import BackendUnavailable, ConfigError, InputError


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "execution_id": f"r{i}",
            "timestamp": NOW - 3600 + i,
            "task_type": "code",
            "model": "gpt-4o",
            "parameters": {"temperature": 0.1 * (i % 3)},
            "latency_ms": 100.0 + i,
            "success": i % 4 != 0,
            "quality": 0.7,
        }
        for i in range(start, start + n)
    ]


def test_config_comes_from_the_environment_and_refuses_unknown_keys(tmp_path: Path) -> None:
    env = {
        "WORKBENCH_DATA_DIR": str(tmp_path),
        "WORKBENCH_ANALYTICS__BUFFER_RECORDS": "2000",
        "WORKBENCH_ANALYTICS__STREAM": "exec:log",
    }
    config = AnalyticsConfig.from_settings(load_settings(env=env))
    assert (config.buffer_records, config.stream) == (2000, "exec:log")
    assert config.store == default_store_url(tmp_path)
    with pytest.raises(ConfigError, match="unknown"):
        AnalyticsConfig.from_settings(Settings(sections={"analytics": {"bufer": 1}}))
    assert config.flush_records == 2000  # lowered to the buffer's bound
    with pytest.raises(ConfigError, match="store"):
        AnalyticsService(AnalyticsConfig())


@pytest.mark.parametrize("backend", ["duckdb", "sqlite", "postgresql"])
def test_durable_buffered_and_feedback_on_every_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, options = make_url(backend, tmp_path, request)
    store = AnalyticsStore(url, clock=lambda: NOW, **options)
    svc = AnalyticsService(
        AnalyticsConfig(store=url, flush_interval_s=60.0), store=store, clock=lambda: NOW
    )
    try:
        report = svc.ingest(records(50))
        assert (report.accepted, report.duplicates) == (50, 0)
        assert svc.ingest(records(50)).duplicates == 50
        done = svc.submit(records(50, start=50))
        assert done.accepted == 50 and store.count() == 50  # buffered, not yet written
        assert svc.feedback("r70", satisfaction=3.0)  # flushes the buffer first
        assert store.count() == 100
        assert not svc.feedback("missing", quality=0.5)
        snap = svc.snapshot()
        assert snap["total_executions"] == 100
        assert snap["success_rate"] == pytest.approx(0.75)
        rows, total = svc.effectiveness(limit=2)
        assert total == 3 and len(rows) == 2
        assert rows["score"].is_monotonic_decreasing
        with pytest.raises(InputError, match="max_batch"):
            svc.ingest(records(101))
    finally:
        svc.close()
        store.close()


def test_close_writes_what_is_buffered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    svc = AnalyticsService(AnalyticsConfig(store=url, flush_interval_s=3600.0), clock=lambda: NOW)
    for start in range(0, 300, 100):
        svc.submit(records(100, start))
    svc.close()
    svc.close()  # idempotent
    with AnalyticsStore(url, clock=lambda: NOW) as store:
        assert store.count() == 300


def test_calls_past_max_pending_are_refused_not_queued(tmp_path: Path) -> None:
    svc = AnalyticsService(
        AnalyticsConfig(store=f"duckdb:///{tmp_path / 'a.duckdb'}", threads=1, max_pending=2),
        clock=lambda: NOW,
    )
    release = threading.Event()

    async def main() -> None:
        held = [asyncio.ensure_future(svc.call(release.wait, 30)) for _ in range(2)]
        await asyncio.sleep(0)  # both are now pending (one runs, one waits for the thread)
        with pytest.raises(BackendUnavailable) as refused:
            await svc.call(svc.store.count)
        assert refused.value.retry_after_s == 1.0
        release.set()
        assert await asyncio.gather(*held) == [True, True]
        assert await svc.call(svc.store.count) == 0  # room again

    try:
        asyncio.run(main())
        assert svc.stats()["refused_busy"] == 1
    finally:
        svc.close()


def test_one_performance_test_at_a_time(tmp_path: Path) -> None:
    svc = AnalyticsService(
        AnalyticsConfig(store=f"duckdb:///{tmp_path / 'a.duckdb'}", perf_max_operations=500),
        clock=lambda: NOW,
    )
    try:
        with pytest.raises(InputError, match=r"1\.\.500"):
            svc.performance_test("simple", 501, "t")
        busy = pytest.raises(BackendUnavailable, match="another performance test")
        with svc._perf_lock, busy:  # a test in progress
            svc.performance_test("simple", 10, "t")
        assert svc.performance_test("simple", 10, "t").operations_completed == 10
    finally:
        svc.close()


def test_dashboard_covers_the_last_24_hours_of_the_injected_clock(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2025, 1, 5, tzinfo=UTC)
    svc = AnalyticsService(
        AnalyticsConfig(store=f"duckdb:///{tmp_path / 'a.duckdb'}"), clock=now.timestamp
    )
    try:
        log, _ = generate_log(
            2000, seed=3, start=now - timedelta(days=4), duration=timedelta(days=4)
        )
        svc.store.ingest(log)
        dash = svc.dashboard()
        ts = log["timestamp"]
        assert dash.total_executions == int(((ts > now - timedelta(days=1)) & (ts <= now)).sum())
        assert dash.window_end == now
    finally:
        svc.close()


def test_the_store_opens_on_first_use_and_a_held_file_is_a_503(tmp_path: Path) -> None:
    path = tmp_path / "a.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    svc = AnalyticsService(AnalyticsConfig(store=f"duckdb:///{path}"), clock=lambda: NOW)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        # another process holds the file: the service was built, the calls are 503s
        with pytest.raises(BackendUnavailable, match="postgresql://"):
            svc.ingest(records(1))
        health = svc.health()
        assert health["healthy"] is False and "postgresql://" in health["error"]
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(30) == 0
        assert svc.ingest(records(3)).accepted == 3  # released: the next call opens it
        assert svc.health()["healthy"] is True
    finally:
        holder.kill()
        svc.close()
