"""Contract tests of AnalyticsStore, run against DuckDB, SQLite and PostgreSQL alike."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.analytics.conftest import random_log
from workbench.analytics import AnalyticsStore, Filters, parameter_hash
from workbench.analytics.records import COLUMNS
from workbench.errors import ConfigError, InputError, NotFoundError

pytestmark = pytest.mark.postgres


def test_replaying_a_batch_never_double_counts(store: AnalyticsStore) -> None:
    log = random_log(1000, seed=1)
    first = store.ingest(log)
    assert (first.accepted, first.duplicates, first.rejected) == (1000, 0, [])
    again = store.ingest(log.to_dict("records"))
    assert (again.accepted, again.duplicates, again.rejected) == (0, 1000, [])
    assert store.count() == 1000
    partly = store.ingest(pd.concat([log.iloc[:10], random_log(5, seed=2)]))
    assert (partly.accepted, partly.duplicates) == (5, 10)
    assert store.count() == 1005
    assert sum(store.count_by("task_type").values()) == 1005


def test_feedback_is_counted_once_and_replaces(store: AnalyticsStore) -> None:
    store.ingest(random_log(200, seed=3))
    before = store.effectiveness(by=("task_type",))
    assert store.record_feedback("ex-3-7", satisfaction=2.0) is True
    assert store.record_feedback("ex-3-7", satisfaction=4.5, quality=0.25) is True
    assert store.record_feedback("no-such-id", satisfaction=1) is False
    row = store.frame().set_index("execution_id").loc["ex-3-7"]
    assert (row["user_satisfaction"], row["quality"]) == (4.5, 0.25)
    after = store.effectiveness(by=("task_type",))
    assert after["executions"].tolist() == before["executions"].tolist()
    assert store.count() == 200
    with pytest.raises(InputError, match="satisfaction"):
        store.record_feedback("ex-3-7", satisfaction=6)
    with pytest.raises(InputError, match="needs"):
        store.record_feedback("ex-3-7")


def _reference(log: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Effectiveness computed independently with pandas and numpy."""
    rows = []
    for key, g in log.groupby(by, sort=True):
        lat = g["latency_ms"].to_numpy()
        q = g["quality"].to_numpy()
        s = g["user_satisfaction"].to_numpy()
        sr = g["success"].mean()
        terms = [(0.4, sr), (0.2, max(0.0, 1 - lat.mean() / 10_000))]
        if not np.isnan(q).all():
            terms.append((0.2, np.nanmean(q)))
        if not np.isnan(s).all():
            terms.append((0.2, np.nanmean(s) / 5))
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "executions": len(g),
                "successes": int(g["success"].sum()),
                "latency_p50_ms": np.percentile(lat, 50),
                "latency_p95_ms": np.percentile(lat, 95),
                "latency_p99_ms": np.percentile(lat, 99),
                "latency_mean_ms": lat.mean(),
                "quality_mean": np.nan if np.isnan(q).all() else np.nanmean(q),
                "prompt_tokens_total": int(g["prompt_tokens"].sum()),
                "cost_total": g["cost"].sum(),
                "score": sum(w * v for w, v in terms) / sum(w for w, _ in terms),
            }
        )
    return pd.DataFrame(rows)


def test_effectiveness_equals_a_numpy_reference(store: AnalyticsStore) -> None:
    log = random_log(3000, seed=4)
    log.loc[log["task_type"] == "summarize", "user_satisfaction"] = np.nan  # renormalised score
    store.ingest(log)
    log["parameter_hash"] = [parameter_hash(p) for p in log["parameters"]]
    for by in (["task_type", "parameter_hash"], ["model"]):
        got = store.effectiveness(by=by)
        want = _reference(log, by)
        assert got[by].to_numpy().tolist() == want[by].to_numpy().tolist()
        for column in want.columns.drop(by):
            np.testing.assert_allclose(
                got[column].to_numpy(dtype=float),
                want[column].to_numpy(dtype=float),
                rtol=1e-9,
                err_msg=column,
            )
        assert (got["confidence"] == np.minimum(0.95, got["executions"] / 100)).all()
    eff = store.effectiveness()
    assert eff["parameters"].iloc[0] == store.parameters_of(eff["parameter_hash"].iloc[0])
    assert eff["first_timestamp"].dt.tz is not None


def test_filters_select_the_same_rows_as_pandas(store: AnalyticsStore) -> None:
    log = random_log(2000, seed=5)
    store.ingest(log)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime(2024, 9, 1, tzinfo=UTC)
    filters = Filters(
        task_types=["code", "chat"], models=["gpt-4o"], providers=("openai",), start=start, end=end
    )
    mask = (
        log["task_type"].isin(["code", "chat"])
        & (log["model"] == "gpt-4o")
        & (log["provider"] == "openai")
        & (log["timestamp"] >= start.timestamp())
        & (log["timestamp"] < end.timestamp())
    )
    frame = store.frame(filters)
    assert sorted(frame["execution_id"]) == sorted(log.loc[mask, "execution_id"])
    assert list(frame.columns) == list(COLUMNS)
    eff = store.effectiveness(by=("task_type",), filters=filters)
    assert eff["executions"].sum() == mask.sum()
    counts = log.loc[log["complexity"] == "simple"].groupby("task_type").size()
    few = Filters(complexity=["simple"], min_executions=int(counts.median()) + 1)
    kept = store.effectiveness(by=("task_type",), filters=few)
    assert sorted(kept["task_type"]) == sorted(counts[counts > counts.median()].index)
    sure = store.effectiveness(
        by=("task_type", "model", "parameter_hash"), filters=Filters(min_confidence=0.9)
    )
    assert (sure["executions"] >= 90).all()
    only = store.frame(Filters(task_types=["code"]), columns=["task_type", "parameters"])
    assert list(only.columns) == ["task_type", "parameters"]
    assert set(only["task_type"]) == {"code"}


def test_migrations_start_from_empty_and_rerun_as_a_no_op(
    store_factory: Callable[..., AnalyticsStore],
) -> None:
    first = store_factory()
    first.ingest(random_log(20, seed=6))
    first.close()
    second = store_factory()  # migrates again: nothing to do, nothing lost
    assert second.count() == 20
    backend = second._backend
    if second.backend == "postgresql":
        assert backend.adapter.schema_version("analytics") == 2  # type: ignore[attr-defined]
    else:
        version = backend.query("SELECT version FROM schema_version", [], ["v"])
        assert version["v"].tolist() == [2]


def test_cardinality_bounds_refuse_per_item(store_factory: Callable[..., AnalyticsStore]) -> None:
    store = store_factory(max_task_types=2, max_parameter_sets=2)
    log = random_log(60, seed=7)
    report = store.ingest(log)
    refused = {r.field for r in report.rejected}
    assert refused <= {"task_type", "parameters"} and refused
    kept = store.frame()
    assert kept["task_type"].nunique() <= 2 and kept["parameter_hash"].nunique() <= 2
    assert report.accepted + len(report.rejected) == 60
    assert report.accepted == store.count()


def test_bad_calls_are_input_errors(store: AnalyticsStore) -> None:
    with pytest.raises(NotFoundError):
        store.parameters_of("0" * 64)
    with pytest.raises(InputError, match="count_by"):
        store.count_by("latency_ms")
    with pytest.raises(InputError, match="effectiveness"):
        store.effectiveness(by=("cost",))
    with pytest.raises(InputError, match="timezone"):
        Filters(start=datetime(2024, 1, 1))
    with pytest.raises(InputError):
        store.ingest("not a batch")
    with pytest.raises(ConfigError, match="unknown analytics store options"):
        AnalyticsStore("sqlite:///:memory:", max_rows=3)
    with pytest.raises(ConfigError, match="duckdb:///"):
        AnalyticsStore("mysql://localhost/x")


def test_a_second_process_on_a_duckdb_file_is_told_to_use_postgresql(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'one.duckdb'}"
    with AnalyticsStore(url) as owner:
        owner.ingest(random_log(5, seed=8))
        code = (
            "from workbench.analytics import AnalyticsStore\n"
            "from workbench.errors import ConfigError\n"
            "try:\n"
            f"    AnalyticsStore({url!r})\n"
            "except ConfigError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    assert '[analytics] store = "postgresql://' in out.stdout, out.stdout + out.stderr
    assert "another process" in out.stdout


def _ingest_in_child(url: str, schema: str, seeds: list[int], out: multiprocessing.Queue) -> None:
    try:
        with AnalyticsStore(url, schema=schema) as store:
            total = 0
            for seed in seeds:
                total += store.ingest(random_log(500, seed=seed)).accepted
        out.put(total)
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put(f"{type(exc).__name__}: {exc}")


def test_four_processes_into_one_postgresql_lose_and_duplicate_nothing(
    postgres_url: str, postgres_schema: str
) -> None:
    AnalyticsStore(postgres_url, schema=postgres_schema).close()  # migrate once, up front
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    # overlapping: every seed is ingested by two processes, in a different order
    plans = [[0, 1, 2, 3], [3, 2, 1, 0], [4, 5, 0, 2], [5, 4, 3, 1]]
    workers = [
        ctx.Process(target=_ingest_in_child, args=(postgres_url, postgres_schema, p, out))
        for p in plans
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 6 * 500  # each record written exactly once, by someone
    with AnalyticsStore(postgres_url, schema=postgres_schema) as store:
        assert store.count() == 3000
        ids = store.frame(columns=["execution_id"])["execution_id"]
        assert ids.is_unique and len(ids) == 3000
