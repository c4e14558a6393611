"""The simulated vision workload used by the notebook and the demo keeps its invariants."""

from __future__ import annotations

from workbench.gpu.workload import WORKLOAD_MODELS, run_vision_workload


def test_workload_invariants() -> None:
    result = run_vision_workload(40, seed=1)
    s = result.summary()
    assert s["completed"] == s["jobs"] == 40
    assert s["overcommits"] == 0 and s["ledger_checks"] > 100
    assert s["peak_reserved_gib"] <= s["budget_gib"] == 20.0
    assert s["leftover_reserved_bytes"] == 0 and s["leftover_used_bytes"] == 0
    assert s["loads"] == s["unloads"] > 0
    assert all(j["wait_s"] is not None and j["run_s"] is not None for j in result.jobs)
    assert result.timeline and result.events == sorted(result.events, key=lambda e: e["time"])


def test_the_workload_table_extends_the_platform_table() -> None:
    assert {"yolo-v8n", "clip-vit-b32", "sd3b", "sdxl-refiner"} < set(WORKLOAD_MODELS)
    big = sorted(m.size_bytes for m in WORKLOAD_MODELS.values())[-3:]
    assert sum(big) > 20 * 1024**3  # the largest three cannot be resident together
