"""The pure parts of ``workbench bench optimize``: the shared initial design, resumable run
files, the non-inferiority test and the Holm correction. The statistical checks run on fixed
synthetic data (seeded), so they cannot fail by chance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.errors import InputError, StorageFormatError
from workbench.optimize.problems import get_problem
from workbench.reports.bench import BenchContext
from workbench.reports.benchmarks import optimize as bench

DESIGN_TOOLS = ["workbench", "optuna-gp", "optuna-tpe", "ax", "random"]


def test_suite_covers_the_standard_problems_in_2_to_10_dimensions() -> None:
    keys = [sp.key for sp in bench.SUITE]
    for stem in ("branin", "hartmann6", "levy", "ackley", "rosenbrock", "styblinskitang", "llm"):
        assert any(k.startswith(stem) for k in keys), stem
    assert "styblinskitang_mixed" in keys
    for sp in bench.SUITE:
        p = get_problem(sp.key)
        assert 2 <= len(p.space.params) <= 10
        assert bench.stuck_threshold(sp, p) > 0
    llm = next(sp for sp in bench.SUITE if sp.key == "llm")
    assert (
        bench.stuck_threshold(llm, get_problem("llm")) == get_problem("llm").extra["stuck_regret"]
    )
    assert sum(sp.ax for sp in bench.SUITE) == 3
    # reporting seeds never overlap the seeds the defaults were tuned on
    full = bench._report_seeds(BenchContext())
    assert len(full) >= 20 and not set(full) & set(bench.PROTOCOL["tuning"]["seeds"])
    assert bench._report_seeds(BenchContext(quick=True)) == full[:3]


def test_initial_design_is_seeded_in_bounds_and_mixed() -> None:
    p = get_problem("styblinskitang_mixed")
    a = bench.initial_design(p.space, bench.N_INIT, 100)
    assert a == bench.initial_design(p.space, bench.N_INIT, 100)
    assert a != bench.initial_design(p.space, bench.N_INIT, 101)
    assert len(a) == bench.N_INIT
    for cfg in a:
        assert p.space.validate(cfg) == cfg
        assert isinstance(cfg["n0"], int) and cfg["scale"] in ("a", "b", "c")
    # a space-filling design covers every category of a 3-way choice in 10 points
    assert {c["scale"] for c in a} == {"a", "b", "c"}
    with pytest.raises(InputError, match="n="):
        bench.initial_design(p.space, 0, 1)


@pytest.mark.parametrize("tool", DESIGN_TOOLS)
def test_every_tool_starts_from_the_same_design(tool: str, tmp_path: Path) -> None:
    p = get_problem("branin")
    design = bench.initial_design(p.space, bench.N_INIT, 104)
    # Ax's model fit would take most of this file's time: it gets the design only (its first
    # suggestion after the design is checked by the suite's fallback count).
    extra = 0 if tool == "ax" else 1
    rec = bench.ensure_run(tmp_path, "branin", tool, 104, bench.N_INIT + extra)
    assert rec.design_digest == bench.design_digest(design)
    assert len(rec.evaluated) == bench.N_INIT + extra
    for got, want in zip(rec.evaluated[: bench.N_INIT], design, strict=True):
        assert got == pytest.approx(want, rel=1e-12)
    assert rec.outcomes[0]["y"] == pytest.approx(p(design[0])["y"])
    # the suggestion after the design is the tool's own, and timed
    assert len(rec.ask_seconds) == extra
    if extra:
        assert rec.evaluated[-1] not in design
    if tool == "workbench":
        assert rec.fallbacks == 0, rec.fallback_reasons


def test_a_finished_run_is_loaded_not_redone(tmp_path: Path) -> None:
    calls: list[int] = []

    def counting(problem: Any, design: list, budget: int, seed: int) -> dict:
        calls.append(seed)
        return bench.RUNNERS["random"](problem, design, budget, seed)

    first = bench.ensure_run(tmp_path, "branin", "random", 7, 12, runner=counting)
    path = bench.run_path(tmp_path, "branin", "random", 7)
    assert path.exists() and not path.with_suffix(".tmp").exists()
    again = bench.ensure_run(tmp_path, "branin", "random", 7, 12, runner=counting)
    assert calls == [7]
    assert again == first
    bench.ensure_run(tmp_path, "branin", "random", 8, 12, runner=counting)
    assert calls == [7, 8]
    # a file from another protocol is refused, never silently mixed in
    with pytest.raises(StorageFormatError, match="budget"):
        bench.ensure_run(tmp_path, "branin", "random", 7, 13, runner=counting)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(StorageFormatError):
        bench.ensure_run(tmp_path, "branin", "random", 7, 12, runner=counting)
    assert calls == [7, 8]


def test_run_folder_is_shared_by_quick_and_full_runs() -> None:
    assert bench.run_id(50) == f"v{bench.PROTOCOL_VERSION}-b50"


def _paired(shift: float, noise: float = 0.1, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    theirs = rng.normal(-3.0, 1.0, n)
    return theirs + shift + rng.normal(0.0, noise, n), theirs


def test_noninferiority_rejects_when_clearly_better() -> None:
    ours, theirs = _paired(-1.0)
    assert bench.noninferiority_pvalue(ours, theirs) < 1e-3


def test_noninferiority_rejects_when_equal_within_the_margin() -> None:
    ours, theirs = _paired(0.0, noise=0.05)
    assert bench.noninferiority_pvalue(ours, theirs, margin=0.2) < 1e-3


def test_noninferiority_does_not_reject_half_a_decade_worse() -> None:
    ours, theirs = _paired(0.5)
    assert bench.noninferiority_pvalue(ours, theirs) > 0.5
    # nor at exactly the margin: H0 includes it
    ours, theirs = _paired(0.2, noise=0.3)
    assert bench.noninferiority_pvalue(ours, theirs) > 0.05


def test_noninferiority_degenerate_inputs() -> None:
    assert bench.noninferiority_pvalue([], []) == 1.0
    assert bench.noninferiority_pvalue([0.2, 0.2], [0.0, 0.0], margin=0.2) == 1.0
    # every run at the regret floor for both tools: equal, so within the margin
    floor = bench.log_regret(0.0)
    assert floor == -8.0
    assert bench.noninferiority_pvalue([floor] * 20, [floor] * 20) < 1e-5


def test_holm_by_hand() -> None:
    # sorted: 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    got = bench.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bench.holm([0.5, 0.6]) == [1.0, 1.0]
    assert bench.holm([]) == []
    assert bench.holm([0.2]) == [0.2]


def test_holm_controls_the_family_and_keeps_order() -> None:
    p = np.random.default_rng(5).uniform(0, 0.2, 11)
    adj = np.array(bench.holm(p))
    assert np.all(adj >= p) and np.all(adj <= 1.0)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    # any p below alpha / m survives, as Bonferroni would
    assert bench.holm([0.04 / 11] + [0.9] * 10)[0] <= 0.05


def _record(problem: str, tool: str, seed: int, value: float, **kw: Any) -> bench.RunRecord:
    return bench.RunRecord(
        problem=problem,
        tool=tool,
        seed=seed,
        budget=bench.BUDGET,
        design_digest="x",
        evaluated=[{}],
        outcomes=[{"y": value}],
        ask_seconds=[0.1] * (bench.BUDGET - bench.N_INIT),
        **kw,
    )


def test_summaries_carry_targets_and_say_by_how_much_they_miss() -> None:
    opt = get_problem("branin").optimum
    assert opt is not None
    seeds = list(range(100, 120))
    records = {
        # workbench 1.0 decade worse than optuna-gp on every seed, stuck on none
        ("branin", "workbench"): [
            _record("branin", "workbench", s, opt + 1e-3, fallbacks=0) for s in seeds
        ],
        ("branin", "optuna-gp"): [_record("branin", "optuna-gp", s, opt + 1e-4) for s in seeds],
    }
    out = bench._summaries(records, seeds, seeds[:10])
    by = {(m.name, m.tool): m for m in out}
    test = by[("branin non-inferior to optuna-gp (Holm p)", "workbench")]
    assert test.target == bench.ALPHA and test.meets_target is False
    assert test.params["median_log10_diff"] == pytest.approx(1.0)
    assert test.params["missed_by"]["median_log10_diff"] == pytest.approx(1.0)
    assert test.params["reporting_seeds"] == "100-119"
    assert "0-9" in test.params["tuning_seeds"]
    stuck = by[("stuck runs over the suite", "workbench")]
    assert stuck.value == 0 and stuck.target == -1 and stuck.meets_target is False
    ratio = by[("ask p50 ratio workbench / optuna-gp (whole run, suite)", "workbench")]
    assert ratio.value == pytest.approx(1.0) and ratio.meets_target is True
    assert "missed_by" not in ratio.params
    assert by[("branin runs with a model-fit fallback", "workbench")].value == 0
    assert by[("branin regret median", "optuna-gp")].value == pytest.approx(1e-4)


def test_unknown_part_is_refused() -> None:
    with pytest.raises(InputError, match="single"):
        bench.run(BenchContext(quick=True, parts=("nope",)))
