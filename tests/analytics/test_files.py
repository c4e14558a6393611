"""Bulk files: JSON Lines, CSV and Parquet into the store in chunks, and exports back."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.analytics.conftest import NOW, random_log
from workbench.analytics import AnalyticsStore, Filters
from workbench.analytics.files import export, ingest_file
from workbench.errors import InputError


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[AnalyticsStore]]:
    made: list[AnalyticsStore] = []

    def build() -> AnalyticsStore:
        store = AnalyticsStore(f"duckdb:///{tmp_path / f's{len(made)}.duckdb'}", clock=lambda: NOW)
        made.append(store)
        return store

    yield build  # type: ignore[misc]
    for store in made:
        store.close()


def _record(i: int, **changes: object) -> dict[str, object]:
    base = {
        "execution_id": f"r-{i}",
        "timestamp": "2024-05-01T12:00:00Z",
        "task_type": "code",
        "model": "gpt-4o",
        "parameters": {"temperature": 0.5, "stop": ["\n", ","]},
        "latency_ms": 120.5,
        "success": True,
        "quality": 0.75,
    }
    return {**base, **changes}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_export_then_ingest_gives_the_same_records(
    stores: object, tmp_path: Path, suffix: str
) -> None:
    source, target = stores(), stores()  # type: ignore[operator]
    log = random_log(1000, seed=1)
    assert source.ingest(log).accepted == 1000
    path = tmp_path / f"out{suffix}"
    assert export(source, path) == 1000
    seen: list[int] = []
    report = ingest_file(target, path, batch=300, progress=seen.append)
    assert (report.accepted, report.duplicates, report.rejected) == (1000, 0, [])
    assert (report.rows, report.chunks) == (1000, 4)
    assert seen == [300, 600, 900, 1000]  # one transaction per chunk of at most `batch`
    pd.testing.assert_frame_equal(target.frame(), source.frame())
    again = ingest_file(target, path)
    assert (again.accepted, again.duplicates) == (0, 1000)  # a replay never double-counts


def test_export_honours_filters_and_columns(stores: object, tmp_path: Path) -> None:
    store = stores()  # type: ignore[operator]
    log = random_log(300, seed=2)
    store.ingest(log)
    path = tmp_path / "code.csv"
    written = export(store, path, Filters(task_types=("code",)), columns=["execution_id"])
    assert written == int((log["task_type"] == "code").sum())
    back = pd.read_csv(path, dtype=str)
    assert list(back.columns) == ["execution_id"]
    assert set(back["execution_id"]) == set(log.loc[log["task_type"] == "code", "execution_id"])


def test_jsonl_rejections_carry_line_numbers_across_chunks(stores: object, tmp_path: Path) -> None:
    store = stores()  # type: ignore[operator]
    lines = [
        json.dumps(_record(0)),
        "",  # blank lines are skipped but counted
        json.dumps(_record(1, latency_ms=-1)),
        "{not json",
        json.dumps(_record(2)),
        json.dumps([1, 2]),
        json.dumps(_record(3, parameters={"a": {"b": {"c": {"d": {"e": 1}}}}})),
        json.dumps(_record(4, execution_id="quote' \"; DROP TABLE executions; --")),
        json.dumps(_record(0)),  # a replay of line 1 in a later chunk
    ]
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest_file(store, path, batch=3)
    assert (report.accepted, report.duplicates, report.rows) == (3, 1, 8)
    assert [(r.index, r.field) for r in report.rejected] == [
        (2, "latency_ms"),
        (3, "record"),
        (5, "record"),
        (6, "parameters"),
    ]
    assert "line 4 is not valid JSON" in report.rejected[1].reason
    assert set(store.frame(columns=["execution_id"])["execution_id"]) == {
        "r-0",
        "r-2",
        "quote' \"; DROP TABLE executions; --",
    }


def test_csv_keeps_text_verbatim_and_reports_data_rows(stores: object, tmp_path: Path) -> None:
    store = stores()  # type: ignore[operator]
    rows = [
        _record(0, execution_id="007", user_id="NA"),
        _record(1, execution_id="null", latency_ms="slow"),
        _record(2, execution_id="n/a", success="false", quality=None),
        _record(3, timestamp=1_714_564_800),
        _record(4, timestamp="yesterday"),
    ]
    frame = pd.DataFrame(rows)
    frame["parameters"] = [json.dumps(p) for p in frame["parameters"]]
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    report = ingest_file(store, path, batch=2)
    assert [(r.index, r.field) for r in report.rejected] == [(1, "latency_ms"), (4, "timestamp")]
    stored = store.frame().set_index("execution_id")
    assert set(stored.index) == {"007", "n/a", "r-3"}
    assert stored.loc["007", "user_id"] == "NA"
    assert bool(stored.loc["n/a", "success"]) is False and math.isnan(stored.loc["n/a", "quality"])
    assert stored.loc["r-3", "timestamp"] == 1_714_564_800 * 1_000_000


def test_rejections_kept_are_bounded_but_all_counted(stores: object, tmp_path: Path) -> None:
    store = stores()  # type: ignore[operator]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(_record(i, success="maybe")) + "\n" for i in range(50)))
    report = ingest_file(store, path, batch=7, max_rejections=10)
    assert (report.accepted, report.rejected_total, len(report.rejected)) == (0, 50, 10)
    assert [r.index for r in report.rejected] == list(range(10))
    assert report.to_dict()["rejected_total"] == 50


def test_progress_bar_and_argument_errors(
    stores: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = stores()  # type: ignore[operator]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(_record(i)) + "\n" for i in range(20)))
    assert ingest_file(store, path, batch=5, progress=True).accepted == 20
    assert "100%" in capsys.readouterr().err
    with pytest.raises(InputError, match="suffix"):
        ingest_file(store, tmp_path / "log.txt")
    with pytest.raises(InputError, match="format="):
        ingest_file(store, path, format="xml")
    with pytest.raises(FileNotFoundError):
        ingest_file(store, tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="batch"):
        ingest_file(store, path, batch=0)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="header"):
        ingest_file(store, tmp_path / "empty.csv")
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a Parquet file"):
        ingest_file(store, tmp_path / "fake.parquet")
    assert ingest_file(store, path, format="jsonl").duplicates == 20
