"""``workbench analytics``: ingest (files and a real Redis stream), summary, export."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.analytics import AnalyticsStore, generate_log, ingest_file, publish, write_log
from workbench.cli import main
from workbench.redis_adapter import RedisAdapter


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The configured store: a DuckDB file of this test (as ``workbench serve`` would use)."""
    url = f"duckdb:///{tmp_path / 'analytics.duckdb'}"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WORKBENCH_ANALYTICS__STORE", url)
    return url


def count(url: str) -> int:
    with AnalyticsStore(url) as store:
        return store.count()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_ingest_a_file_then_again_counts_nothing_twice(
    store_url: str, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = generate_log(1500, seed=4)
    path = write_log(log, tmp_path / f"log{suffix}")
    assert main(["analytics", "ingest", str(path), "--batch", "500"]) == 0
    out = capsys.readouterr().out
    assert "1500 stored" in out and "3 transactions" in out
    assert main(["analytics", "ingest", str(path)]) == 0
    assert "0 stored, 1500 already stored" in capsys.readouterr().out
    assert count(store_url) == 1500


def test_refused_records_are_listed_and_exit_1(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = generate_log(20, seed=1)
    path = write_log(log, tmp_path / "log.jsonl")
    lines = path.read_text().splitlines()
    lines[3] = "{not json"
    bad = json.loads(lines[7])
    bad["latency_ms"] = -5
    lines[7] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    assert main(["analytics", "ingest", str(path)]) == 1
    captured = capsys.readouterr()
    assert "18 stored" in captured.out and "2 refused" in captured.out
    assert "record 3 (record)" in captured.err and "record 7 (latency_ms)" in captured.err
    assert count(store_url) == 18


def test_ingest_needs_a_file_or_a_stream(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analytics", "ingest"]) == 2
    assert main(["analytics", "ingest", "x.jsonl", "--stream", "s"]) == 2
    assert "one of them" in capsys.readouterr().err


@pytest.fixture
def redis_prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    prefix = f"wbtest:{uuid.uuid4().hex[:12]}:"
    monkeypatch.setenv("WORKBENCH_REDIS_URL", redis_url)
    monkeypatch.setenv("WORKBENCH_REDIS_PREFIX", prefix)
    yield prefix
    RedisAdapter(redis_url, prefix=prefix).delete_prefixed()


def test_ingest_a_redis_stream_until_idle(
    store_url: str, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = generate_log(2000, seed=8)
    adapter = RedisAdapter(redis_url, prefix=redis_prefix)
    publish(adapter, "executions", log, per_entry=50)
    args = ["analytics", "ingest", "--stream", "executions", "--group", "g"]
    assert main([*args, "--until-idle", "--for-seconds", "60"]) == 0
    assert "2000 stored" in capsys.readouterr().out
    assert count(store_url) == 2000
    assert adapter.xpending(adapter.key("executions"), "g")["pending"] == 0
    # replayed entries are duplicates, never counted twice
    publish(adapter, "executions", log.iloc[:100], per_entry=50)
    assert main([*args, "--until-idle", "--for-seconds", "60"]) == 0
    assert "0 stored, 100 already stored" in capsys.readouterr().out
    assert count(store_url) == 2000


def test_summary_and_export_round_trip(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, truth = generate_log(4000, seed=9, n_parameter_sets=4, min_margin=0.05)
    with AnalyticsStore(store_url) as store:
        store.ingest(log)
        eff = store.effectiveness()
    assert main(["analytics", "summary", "--json", "--limit", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["records"] == 4000
    assert doc["success_rate"] == pytest.approx(log["success"].mean())
    assert doc["parameter_sets"] == len(eff)
    top = eff.sort_values("score", ascending=False).iloc[0]
    assert doc["best"][0]["parameter_hash"] == top["parameter_hash"]
    assert len(doc["best"]) == 3
    task = truth.task_types[0]
    assert main(["analytics", "summary", "--task-type", task, "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert {b["task_type"] for b in one["best"]} == {task}
    assert one["records"] == int((log["task_type"] == task).sum())
    assert main(["analytics", "summary"]) == 0  # the table
    assert "4000 records" in capsys.readouterr().out
    for fmt in ("parquet", "csv"):
        target = tmp_path / f"out.{fmt}"
        assert main(["analytics", "export", str(target), "--format", fmt]) == 0
        assert "wrote 4000 records" in capsys.readouterr().out
        other = f"sqlite:///{tmp_path / f'back-{fmt}.db'}"
        with AnalyticsStore(other) as back:
            assert ingest_file(back, target).accepted == 4000
            again = back.effectiveness()
        assert again["score"].tolist() == pytest.approx(eff["score"].tolist())
