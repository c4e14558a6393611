from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.errors import InputError, StorageFormatError
from workbench.reports.bench import (
    SUITES,
    BenchContext,
    Measurement,
    load_run,
    run_suites,
)
from workbench.reports.figures import bench_figures


def test_measurement_targets() -> None:
    fast = Measurement("x", "workbench", "ops_per_s", 120.0, "ops/s", target=100.0)
    slow = Measurement("x", "workbench", "latency_ms", 120.0, "ms", better="lower", target=100.0)
    assert fast.meets_target is True and slow.meets_target is False
    assert Measurement("x", "w", "m", float("nan"), "s", target=1.0).to_dict()["value"] is None
    with pytest.raises(InputError, match="better"):
        Measurement("x", "w", "m", 1.0, "s", better="bigger")  # type: ignore[arg-type]


def test_env_suite_saves_versioned_json_with_the_machine(tmp_path: Path, redis_url: str) -> None:
    (run,) = run_suites(
        ["env"], ctx=BenchContext(quick=True, show_progress=False), out_dir=tmp_path
    )
    assert run.suite == "env" and run.quick
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert "env-quick-latest.json" in saved and len(saved) == 2
    data = load_run(tmp_path / "env-quick-latest.json")
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"].startswith("3.")
    assert {m["metric"] for m in data["measurements"]} >= {"call_overhead_us", "ops_per_s"}
    assert all(m["value"] is not None and m["value"] > 0 for m in data["measurements"])
    assert len(bench_figures(data)) == len({m["metric"] for m in data["measurements"]})


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "workbench-bench", "version": 99}))
    with pytest.raises(StorageFormatError):
        load_run(p)


def test_every_registered_suite_has_a_run_function() -> None:
    import importlib

    for name, module in SUITES.items():
        assert callable(importlib.import_module(module).run), name


def test_a_run_of_some_parts_never_replaces_the_latest_whole_run(tmp_path: Path) -> None:
    from workbench.reports.bench import BenchRun, load_run, save_run

    def run(parts: tuple[str, ...], quick: bool = False) -> BenchRun:
        m = Measurement("a", "workbench", "ops", float(len(parts)), "ops/s")
        return BenchRun("s", [m], {}, "2026-01-01T00:00:00+00:00", 1.0, quick, parts)

    save_run(run(()), tmp_path)
    assert save_run(run(("ttfb",)), tmp_path).name == "s-ttfb-20260101T000000Z.json"
    save_run(run(("ttfb", "decision"), quick=True), tmp_path)
    assert load_run(tmp_path / "s-full-latest.json")["measurements"][0]["value"] == 0.0
    assert load_run(tmp_path / "s-ttfb-latest.json")["parts"] == ["ttfb"]
    assert (tmp_path / "s-quick-ttfb+decision-latest.json").exists()
    assert not (tmp_path / "s-quick-latest.json").exists()


def test_markdown_table_lists_every_measurement_and_the_machine() -> None:
    from workbench.reports.bench import BenchRun, format_value, markdown_table

    run = BenchRun(
        suite="s",
        measurements=[
            Measurement("a", "workbench", "ops", 12345.6, "ops/s", target=10000.0),
            Measurement("b", "rival", "ops", float("nan"), "ops/s"),
        ],
        machine={"cpu": "CPU X", "cores": 2, "python": "3.11.7", "git_commit": "abc"},
        started_at="2026-01-01T00:00:00+00:00",
        seconds=1.0,
        quick=False,
    )
    text = markdown_table([run.to_dict()])
    assert "| s | a | workbench | ops | 12,346 ops/s | 10000 | yes |" in text
    assert "| s | b | rival | ops | n/a |" in text
    assert "CPU X, 2 cores" in text
    assert format_value(0.01234, "s") == "0.0123 s"
