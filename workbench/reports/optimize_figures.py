"""Plotly figures of an optimizer study, like ``optuna.visualization``'s.

- :func:`history_figure`: the objective per trial with the best-so-far line; infeasible trials
  (an outcome constraint violated) greyed, failed trials marked.
- :func:`importance_figure`: each parameter's share of the objective's variance, a
  functional-ANOVA (Sobol') estimate on the GP posterior mean
  (:mod:`workbench.optimize.importance` says why that and not inverse length-scales).
- :func:`slice_figure`: the objective against each parameter.
- :func:`contour_figure`: the GP posterior mean over the two most important parameters, the
  others at the best trial's values, with the trials on top.
- :func:`pareto_figure`: the Pareto front of two objectives, or a parallel-coordinates view of
  three or more.
- :func:`study_sections` and :func:`write_study_report`: all of them as one self-contained
  HTML page (what ``workbench optimize show STUDY --plot FILE.html`` writes).

Every function takes the :class:`~workbench.optimize.Optimizer` holding the study and returns
a ``plotly.graph_objects.Figure``; the numbers behind the model-based figures come from
:mod:`workbench.optimize.importance`. Plotly is imported inside the functions, so importing
this module (or the package) does not load it. Trace data are plain lists, so the page holds
the values themselves (plotly's binary array encoding would hide them from a text search).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.optimize.importance import (
    ParameterImportance,
    StudySurrogate,
    fit_surrogate,
    parameter_importance,
    response_surface,
)
from workbench.optimize.optimizer import Optimizer, Trial
from workbench.optimize.space import Categorical, Fixed, Int, Real

__all__ = [
    "best_so_far",
    "contour_figure",
    "history_figure",
    "importance_figure",
    "pareto_figure",
    "slice_figure",
    "study_sections",
    "write_study_report",
]

_TEMPLATE = "plotly_white"


def _objective(opt: Optimizer, objective: str | None) -> str:
    name = objective if objective is not None else next(iter(opt.objectives))
    if name not in opt.objectives:
        raise InputError(
            f"objective {name!r} is not one of the study's {sorted(opt.objectives)}",
            details={"field": "objective"},
        )
    return name


def _feasible(opt: Optimizer, trial: Trial) -> bool:
    assert trial.outcomes is not None
    for n, op, bound in opt.outcome_constraints:
        v = trial.outcomes[n]
        if not (v <= bound if op == "<=" else v >= bound):
            return False
    return True


def best_so_far(opt: Optimizer, objective: str | None = None) -> list[tuple[int, float]]:
    """``(trial id, best feasible value among trials up to it)`` at each feasible completed
    trial, in trial order and the objective's own direction."""
    name = _objective(opt, objective)
    better = min if opt.objectives[name] == "minimize" else max
    out: list[tuple[int, float]] = []
    best: float | None = None
    for t in opt.trials:
        if t.status != "completed" or t.outcomes is None or not _feasible(opt, t):
            continue
        v = t.outcomes[name]
        best = v if best is None else better(best, v)
        out.append((t.id, best))
    return out


def history_figure(opt: Optimizer, objective: str | None = None) -> Any:
    """The objective of every completed trial against its id, the best-so-far line (feasible
    trials only, as :meth:`Optimizer.best` ranks them), infeasible trials in grey and failed
    trials as red crosses drawn at the worst value seen (they have no value)."""
    import plotly.graph_objects as go

    name = _objective(opt, objective)
    done = [t for t in opt.trials if t.status == "completed" and t.outcomes is not None]
    feasible = [t for t in done if _feasible(opt, t)]
    infeasible = [t for t in done if not _feasible(opt, t)]
    failed = [t for t in opt.trials if t.status == "failed"]
    fig = go.Figure()
    fig.add_scatter(
        x=[t.id for t in feasible],
        y=[t.outcomes[name] for t in feasible],  # type: ignore[index]
        mode="markers",
        name="trial",
        hovertext=[str(t.params) for t in feasible],
    )
    if infeasible:
        fig.add_scatter(
            x=[t.id for t in infeasible],
            y=[t.outcomes[name] for t in infeasible],  # type: ignore[index]
            mode="markers",
            name="infeasible (outcome constraint)",
            marker={"color": "lightgrey"},
            hovertext=[str(t.params) for t in infeasible],
        )
    trace = best_so_far(opt, name)
    if trace:
        fig.add_scatter(
            x=[i for i, _ in trace],
            y=[v for _, v in trace],
            mode="lines",
            line_shape="hv",
            name="best so far",
        )
    if failed:
        values = [t.outcomes[name] for t in done]  # type: ignore[index]
        worst = (max if opt.objectives[name] == "minimize" else min)(values) if values else 0.0
        fig.add_scatter(
            x=[t.id for t in failed],
            y=[worst] * len(failed),
            mode="markers",
            name="failed (drawn at the worst value)",
            marker={"symbol": "x", "color": "crimson", "size": 9},
            hovertext=[str(t.params) for t in failed],
        )
    fig.update_layout(
        title=f"Optimisation history of {name} ({opt.objectives[name]})",
        xaxis_title="trial",
        yaxis_title=name,
        template=_TEMPLATE,
        height=420,
    )
    return fig


def importance_figure(
    study: Optimizer | StudySurrogate | ParameterImportance, objective: str | None = None
) -> Any:
    """Main-effect (first-order) and total-order variance shares per parameter, most
    important at the top, with +-2 standard-error bars of the Monte Carlo estimate."""
    import plotly.graph_objects as go

    imp = (
        study if isinstance(study, ParameterImportance) else parameter_importance(study, objective)
    )
    order = list(reversed(imp.ranked()))  # plotly draws the first bar at the bottom
    idx = [imp.names.index(n) for n in order]
    fig = go.Figure()
    fig.add_bar(
        y=order,
        x=[imp.first_order[i] for i in idx],
        error_x={"type": "data", "array": [2 * imp.first_order_se[i] for i in idx]},
        orientation="h",
        name="main effect (first order)",
    )
    fig.add_bar(
        y=order,
        x=[imp.total_order[i] for i in idx],
        error_x={"type": "data", "array": [2 * imp.total_order_se[i] for i in idx]},
        orientation="h",
        name="with interactions (total order)",
    )
    fig.update_layout(
        title=f"Parameter importance for {imp.objective}: {imp.method}, {imp.n_trials} trials",
        xaxis_title="share of the variance of the posterior mean",
        barmode="group",
        template=_TEMPLATE,
        height=max(300, 60 + 45 * len(order)),
    )
    return fig


def _axis(p: Real | Int | Categorical) -> dict[str, Any]:
    if isinstance(p, Categorical):
        return {"type": "category"}
    return {"type": "log"} if p.log else {}


def slice_figure(opt: Optimizer, objective: str | None = None) -> Any:
    """The objective of each completed trial against each searched parameter (one panel per
    parameter, trials where it is inactive left out), coloured by trial id."""
    from plotly.subplots import make_subplots

    name = _objective(opt, objective)
    params = {n: p for n, p in opt.space.params.items() if not isinstance(p, Fixed)}
    done = [t for t in opt.completed if t.outcomes is not None]
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(params), shared_yaxes=True)
    for k, (pname, p) in enumerate(params.items()):
        here = [t for t in done if pname in t.params]
        r, c = k // cols + 1, k % cols + 1
        fig.add_scatter(
            x=[t.params[pname] for t in here],
            y=[t.outcomes[name] for t in here],  # type: ignore[index]
            mode="markers",
            name=pname,
            showlegend=False,
            marker={
                "color": [t.id for t in here],
                "colorscale": "Blues",
                "showscale": k == 0,
                "colorbar": {"title": "trial"},
            },
            hovertext=[f"trial {t.id}" for t in here],
            row=r,
            col=c,
        )
        fig.update_xaxes(**_axis(p), row=r, col=c)
        if c == 1:
            fig.update_yaxes(title_text=name, row=r, col=c)
    fig.update_layout(
        title=f"Slices: {name} against each parameter",
        template=_TEMPLATE,
        height=320 * rows,
    )
    return fig


def contour_figure(
    opt: Optimizer,
    objective: str | None = None,
    *,
    params: Sequence[str] | None = None,
    surrogate: StudySurrogate | None = None,
    importance: ParameterImportance | None = None,
    n_grid: int = 40,
) -> Any:
    """The GP posterior mean over two parameters (default: the two most important ones
    active in the best trial), the others at the best trial's values; the trials are drawn
    on top and the best one starred. Numbers from
    :func:`~workbench.optimize.importance.response_surface`. A categorical axis makes it a
    heatmap.

    Args:
        opt: The study.
        objective: Objective name (default: the first).
        params: The two parameters (x axis, y axis); default: the two most important.
        surrogate: A GP of this objective from
            :func:`~workbench.optimize.importance.fit_surrogate`, to reuse (fitted otherwise).
        importance: The importance to rank by, to reuse (estimated otherwise).
        n_grid: Grid points per continuous axis.

    Raises:
        InputError: fewer than two searched parameters, or too few completed trials.
    """
    import plotly.graph_objects as go

    name = _objective(opt, objective)
    if surrogate is None or surrogate.objective != name:
        surrogate = fit_surrogate(opt, name)
    if params is None:
        imp = importance or parameter_importance(surrogate)
        ranked = [n for n in imp.ranked() if n in surrogate.best_params] or imp.ranked()
        if len(ranked) < 2:
            raise InputError("a contour needs two searched parameters", details={"field": "params"})
        params = ranked[:2]
    x_name, y_name = params[0], params[1]
    surf = response_surface(surrogate, x_name, y_name, n_grid=n_grid)
    px, py = surrogate.space.params[x_name], surrogate.space.params[y_name]
    assert not isinstance(px, Fixed) and not isinstance(py, Fixed)
    categorical = isinstance(px, Categorical) or isinstance(py, Categorical)
    common = {
        "x": list(surf.x_values),
        "y": list(surf.y_values),
        "z": surf.mean.tolist(),
        "colorbar": {"title": surrogate.objective},
        "colorscale": "Viridis" if surrogate.direction == "maximize" else "Viridis_r",
    }
    fig = go.Figure(go.Heatmap(**common) if categorical else go.Contour(**common))
    done = [t for t in opt.completed if x_name in t.params and y_name in t.params]
    fig.add_scatter(
        x=[t.params[x_name] for t in done],
        y=[t.params[y_name] for t in done],
        mode="markers",
        name="trials",
        marker={"color": "white", "line": {"color": "black", "width": 1}},
        hovertext=[f"trial {t.id}" for t in done],
    )
    best = surrogate.best_params
    if x_name in best and y_name in best:
        fig.add_scatter(
            x=[best[x_name]],
            y=[best[y_name]],
            mode="markers",
            name="best trial",
            marker={"symbol": "star", "size": 14, "color": "red"},
        )
    fig.update_xaxes(title_text=x_name, **_axis(px))
    fig.update_yaxes(title_text=y_name, **_axis(py))
    fig.update_layout(
        title=f"GP posterior mean of {surrogate.objective} over {x_name} and {y_name} "
        "(other parameters at the best trial)",
        template=_TEMPLATE,
        height=520,
    )
    return fig


def pareto_figure(opt: Optimizer) -> Any:
    """Two objectives: every feasible completed trial, the Pareto front highlighted and
    joined. Three or more: parallel coordinates over the objectives, front trials coloured.

    Raises:
        InputError: the study has one objective.
    """
    import plotly.graph_objects as go

    names = list(opt.objectives)
    if len(names) < 2:
        raise InputError(
            "a Pareto front needs at least two objectives", details={"field": "objectives"}
        )
    front = opt.pareto_front()
    on_front = {t.id for t in front}
    done = [t for t in opt.completed if t.outcomes is not None and _feasible(opt, t)]
    label = {n: f"{n} ({'min' if opt.objectives[n] == 'minimize' else 'max'})" for n in names}
    if len(names) == 2:
        a, b = names
        fig = go.Figure()
        rest = [t for t in done if t.id not in on_front]
        fig.add_scatter(
            x=[t.outcomes[a] for t in rest],  # type: ignore[index]
            y=[t.outcomes[b] for t in rest],  # type: ignore[index]
            mode="markers",
            name="dominated",
            marker={"color": "lightgrey"},
            hovertext=[f"trial {t.id}" for t in rest],
        )
        ordered = sorted(front, key=lambda t: t.outcomes[a])  # type: ignore[index]
        fig.add_scatter(
            x=[t.outcomes[a] for t in ordered],  # type: ignore[index]
            y=[t.outcomes[b] for t in ordered],  # type: ignore[index]
            mode="lines+markers",
            # The boundary of the region the front dominates.
            line_shape="hv" if opt.objectives[a] == "minimize" else "vh",
            name="Pareto front",
            hovertext=[f"trial {t.id}: {t.params}" for t in ordered],
        )
        fig.update_layout(xaxis_title=label[a], yaxis_title=label[b])
    else:
        fig = go.Figure(
            go.Parcoords(
                line={
                    "color": [1 if t.id in on_front else 0 for t in done],
                    "colorscale": [[0, "lightgrey"], [1, "crimson"]],
                },
                dimensions=[
                    {"label": label[n], "values": [t.outcomes[n] for t in done]}  # type: ignore[index]
                    for n in names
                ],
            )
        )
    fig.update_layout(
        title=f"Pareto front: {len(front)} of {len(done)} feasible trials non-dominated",
        template=_TEMPLATE,
        height=480,
    )
    return fig


def study_sections(opt: Optimizer) -> list[tuple[str, list[str], list[Any]]]:
    """Every figure of the study as ``(heading, lines, figures)`` sections for
    :func:`~workbench.reports.figures.write_html_report`: history, importance, contour and
    slices per objective, then the Pareto front when there are several objectives. A
    model-based figure that cannot be drawn (too few trials, a flat model) becomes a line
    saying why."""
    sections: list[tuple[str, list[str], list[Any]]] = []
    statuses: dict[str, int] = {}
    for t in opt.trials:
        statuses[t.status] = statuses.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())) or "no trials"
    sections.append(
        ("Study", [f"{opt!r}", f"trials: {summary}", f"space: {opt.space.to_dict()}"], [])
    )
    for name in opt.objectives:
        figures: list[Any] = [history_figure(opt, name)]
        lines: list[str] = []
        try:
            surrogate = fit_surrogate(opt, name)
            imp = parameter_importance(surrogate)
            figures.append(importance_figure(imp))
            figures.append(contour_figure(opt, name, surrogate=surrogate, importance=imp))
        except InputError as exc:
            lines.append(f"Model-based figures skipped: {exc.message}")
        figures.append(slice_figure(opt, name))
        sections.append((f"Objective {name}", lines, figures))
    if len(opt.objectives) > 1:
        sections.append(("Pareto front", [], [pareto_figure(opt)]))
    return sections


def write_study_report(opt: Optimizer, path: Path | str) -> Path:
    """Write every figure of the study (see :func:`study_sections`) to one self-contained
    HTML file; returns its path."""
    from workbench.reports.figures import write_html_report

    return write_html_report(path, f"Study {opt.name}", study_sections(opt))
