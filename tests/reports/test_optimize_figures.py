"""Figures of an optimizer study (workbench.reports.optimize_figures)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import qmc

from workbench.errors import InputError
from workbench.optimize import (
    Categorical,
    Fixed,
    Optimizer,
    Real,
    fit_surrogate,
    parameter_importance,
    response_surface,
)
from workbench.reports import optimize_figures as of


def _told(opt: Optimizer, n: int, f, *, fail: tuple[int, ...] = ()) -> Optimizer:
    """Tell ``n`` scrambled-Sobol configurations directly (no strategy runs)."""
    for i, row in enumerate(qmc.Sobol(opt.space.dim, seed=0).random(n)):
        params = opt.space.decode(row)
        if i in fail:
            opt.tell(params, failed=True)
        else:
            opt.tell(params, f(params))
    return opt


def _mixed(n: int = 16) -> Optimizer:
    opt = Optimizer(
        {
            "x0": Real(0, 1),
            "lr": Real(1e-4, 1e-1, log=True),
            "model": Categorical(["small", "large"]),
            "depth": Real(0, 1, active_if={"model": ["large"]}),
            "seed": Fixed(7),
        },
        {"loss": "minimize"},
        outcome_constraints={"latency": ("<=", 0.8)},
        name="mixed",
    )

    def f(p):
        loss = (p["x0"] - 0.3) ** 2 + (math.log10(p["lr"]) + 2.5) ** 2 / 4
        loss += 0.3 * (p["model"] == "small") + 0.2 * p.get("depth", 0.0)
        return {"loss": loss, "latency": p["x0"]}

    return _told(opt, n, f, fail=(2,))


def test_importing_the_figures_does_not_load_plotly() -> None:
    code = (
        "import sys, workbench.optimize, workbench.reports.optimize_figures; "
        "print(sorted({'plotly', 'scipy', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_best_so_far_counts_feasible_trials_in_each_direction() -> None:
    opt = _mixed()
    trace = of.best_so_far(opt)
    feasible = [t for t in opt.completed if t.outcomes is not None and t.outcomes["latency"] <= 0.8]
    assert [i for i, _ in trace] == [t.id for t in feasible]
    expected = np.minimum.accumulate([t.outcomes["loss"] for t in feasible])
    assert [v for _, v in trace] == list(expected)
    assert trace[-1][1] == opt.best().value
    up = Optimizer({"x": Real(0, 1)}, {"gain": "maximize"})
    for x, g in [(0.1, 1.0), (0.2, 3.0), (0.3, 2.0)]:
        up.tell({"x": x}, {"gain": g})
    assert of.best_so_far(up) == [(0, 1.0), (1, 3.0), (2, 3.0)]
    with pytest.raises(InputError, match="not one of"):
        of.best_so_far(up, "nope")


def test_history_marks_failed_and_infeasible_trials() -> None:
    opt = _mixed()
    fig = of.history_figure(opt)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {
        "trial",
        "infeasible (outcome constraint)",
        "best so far",
        "failed (drawn at the worst value)",
    }
    n_infeasible = sum(1 for t in opt.completed if t.outcomes["latency"] > 0.8)
    assert len(traces["infeasible (outcome constraint)"].x) == n_infeasible > 0
    assert list(traces["failed (drawn at the worst value)"].x) == [2]
    worst = max(t.outcomes["loss"] for t in opt.completed)
    assert list(traces["failed (drawn at the worst value)"].y) == [worst]
    assert list(traces["best so far"].y) == [v for _, v in of.best_so_far(opt)]
    assert "history of loss (minimize)" in fig.layout.title.text


def test_importance_figure_names_its_method_and_puts_the_most_important_on_top() -> None:
    opt = _mixed()
    imp = parameter_importance(opt)
    fig = of.importance_figure(imp)
    assert "fANOVA (Sobol' indices) of the GP posterior mean" in fig.layout.title.text
    main, total = fig.data
    assert list(main.y)[::-1] == imp.ranked()
    assert list(main.x) == [imp[n] for n in main.y]
    assert set(main.y) == {"x0", "lr", "model", "depth"}  # Fixed is not searched
    assert list(total.x) == [imp.total_order[imp.names.index(n)] for n in total.y]


def test_slices_have_one_panel_per_parameter_with_its_axis_kind() -> None:
    opt = _mixed()
    fig = of.slice_figure(opt)
    assert [a.text for a in fig.layout.annotations] == ["x0", "lr", "model", "depth"]
    assert fig.layout.xaxis2.type == "log" and fig.layout.xaxis3.type == "category"
    depth = fig.data[3]
    active = [t for t in opt.completed if "depth" in t.params]
    assert len(depth.x) == len(active) < len(opt.completed)  # inactive trials left out
    assert list(depth.y) == [t.outcomes["loss"] for t in active]


def test_contour_shows_the_response_surface_of_the_two_most_important() -> None:
    opt = _mixed()
    surrogate = fit_surrogate(opt)
    imp = parameter_importance(surrogate)
    fig = of.contour_figure(opt, surrogate=surrogate, importance=imp, n_grid=12)
    top = [n for n in imp.ranked() if n in surrogate.best_params][:2]
    assert fig.layout.xaxis.title.text == top[0] and fig.layout.yaxis.title.text == top[1]
    surf = response_surface(surrogate, top[0], top[1], n_grid=12)
    assert np.allclose(np.array(fig.data[0].z), surf.mean)
    heat = of.contour_figure(opt, params=["model", "x0"], surrogate=surrogate, n_grid=12)
    assert heat.data[0].type == "heatmap" and list(heat.data[0].x) == ["small", "large"]
    assert heat.data[-1].name == "best trial"
    assert heat.data[-1].x[0] == opt.best().params["model"]


def test_pareto_front_two_and_three_objectives() -> None:
    two = Optimizer({"x": Real(0, 1), "y": Real(0, 1)}, {"a": "minimize", "b": "minimize"})
    _told(two, 16, lambda p: {"a": p["x"], "b": (1 - p["x"]) ** 2 + p["y"]})
    fig = of.pareto_figure(two)
    front = {t.name: t for t in fig.data}["Pareto front"]
    expected = sorted(two.pareto_front(), key=lambda t: t.outcomes["a"])
    assert list(front.x) == [t.outcomes["a"] for t in expected]
    assert len({t.name: t for t in fig.data}["dominated"].x) == 16 - len(expected)
    three = Optimizer(
        {"x": Real(0, 1), "y": Real(0, 1)}, {"a": "minimize", "b": "maximize", "c": "minimize"}
    )
    _told(three, 16, lambda p: {"a": p["x"], "b": p["y"], "c": p["x"] * p["y"]})
    par = of.pareto_figure(three).data[0]
    assert par.type == "parcoords" and [d.label for d in par.dimensions][1] == "b (max)"
    assert sum(par.line.color) == len(three.pareto_front())
    with pytest.raises(InputError, match="two objectives"):
        of.pareto_figure(_mixed(8))


def test_study_sections_cover_every_objective(tmp_path) -> None:
    opt = Optimizer({"x": Real(0, 1), "y": Real(0, 1)}, {"a": "minimize", "b": "maximize"})
    _told(opt, 16, lambda p: {"a": p["x"] + p["y"], "b": p["x"] - p["y"] ** 2})
    sections = of.study_sections(opt)
    assert [s[0] for s in sections] == ["Study", "Objective a", "Objective b", "Pareto front"]
    assert [len(s[2]) for s in sections] == [0, 4, 4, 1]
    path = of.write_study_report(opt, tmp_path / "r.html")
    assert path.read_text().count("Plotly.newPlot") == 9
