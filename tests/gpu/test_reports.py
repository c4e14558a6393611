"""The GPU benchmark suite and demo part run (quick) and report what the issue asks for."""

from __future__ import annotations

from pathlib import Path

from workbench.config import Settings
from workbench.reports.bench import SUITES, BenchContext, run_suites
from workbench.reports.demo import DEMO_PARTS, DemoContext


def test_bench_suite_measures_the_targets(tmp_path: Path) -> None:
    assert "gpu" in SUITES
    (run,) = run_suites(
        ["gpu"], ctx=BenchContext(quick=True, show_progress=False), out_dir=tmp_path
    )
    by = {(m.name, m.metric): m for m in run.measurements}
    assert by[("reserve decision", "p50_latency_us")].target == 20
    assert by[("allocator decisions, 1 thread", "decisions_per_s")].target == 50_000
    assert by[("allocator decisions, 8 threads on 2 devices", "decisions_per_s")].target == 50_000
    assert by[("monitor 10 Hz, 8 devices", "cpu_percent_of_one_core")].target == 1.0
    assert all(m.value == m.value and m.value > 0 for m in run.measurements)


def test_demo_part(tmp_path: Path) -> None:
    import importlib

    assert "gpu" in DEMO_PARTS
    part = importlib.import_module(DEMO_PARTS["gpu"])
    section = part.run(DemoContext(settings=Settings(data_dir=tmp_path), smoke=True))
    assert "over-commits" in " ".join(section.lines)
    assert len(section.figures) == 2 and len(section.table) >= 4
