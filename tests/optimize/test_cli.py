"""``workbench optimize run`` and ``show``."""

from __future__ import annotations

import json
import math

from scipy.stats import qmc

from workbench.cli import main
from workbench.optimize import Categorical, Optimizer, Real


def test_run_and_show(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "study.json"
    argv = [
        "optimize",
        "run",
        "branin",
        "--budget",
        "7",
        "--strategy",
        "sobol",
        "--save",
        str(path),
    ]
    assert main(argv) == 0
    assert "regret" in capsys.readouterr().out
    assert main(["optimize", "show", str(path)]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["optimize", "show", "branin-sobol-0"]) == 0
    assert "'completed': 7" in capsys.readouterr().out
    assert main(["optimize", "show", "missing-study"]) == 2
    assert main(["optimize", "run", "nope"]) == 2


def _small_study(path, objectives) -> Optimizer:
    """A mixed-space study told directly (no strategy runs), one trial failed, saved."""
    opt = Optimizer(
        {"x0": Real(0, 1), "x1": Real(1, 100, log=True), "m": Categorical(["a", "b"])},
        objectives,
        name="small",
    )
    for i, row in enumerate(qmc.Sobol(opt.space.dim, seed=0).random(16)):
        params = opt.space.decode(row)
        if i == 3:
            opt.tell(params, failed=True)
            continue
        loss = (params["x0"] - 0.3) ** 2 + math.log10(params["x1"]) + (params["m"] == "b")
        outcomes = {"loss": loss, "cost": params["x1"] / 10}
        opt.tell(params, {k: outcomes[k] for k in objectives})
    opt.save(path)
    return opt


def test_show_plot_writes_every_figure_with_its_data(tmp_path, capsys) -> None:
    study, html_path = tmp_path / "study.json", tmp_path / "out" / "study.html"
    opt = _small_study(study, {"loss": "minimize"})
    assert main(["optimize", "show", str(study), "--plot", str(html_path)]) == 0
    assert "figures written to" in capsys.readouterr().err
    html = html_path.read_text()
    for title in (
        "Optimisation history of loss",
        "Parameter importance for loss: fANOVA (Sobol' indices) of the GP posterior mean",
        "GP posterior mean of loss over",
        "Slices: loss against each parameter",
        "failed (drawn at the worst value)",
    ):
        assert title in html, title
    assert "Pareto front" not in html
    # The page holds the trials' values themselves, not just the figures' frames.
    for t in opt.completed:
        assert json.dumps(t.outcomes["loss"]) in html
        assert json.dumps(t.params["x1"]) in html
    assert json.dumps(opt.best().value) in html


def test_show_plot_of_two_objectives_has_the_pareto_front(tmp_path, capsys) -> None:
    study, html_path = tmp_path / "mo.json", tmp_path / "mo.html"
    opt = _small_study(study, {"loss": "minimize", "cost": "minimize"})
    assert main(["optimize", "show", str(study), "--json", "--plot", str(html_path)]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "small"
    html = html_path.read_text()
    front = opt.pareto_front()
    assert f"Pareto front: {len(front)} of {len(opt.completed)} feasible trials" in html
    assert "Optimisation history of cost" in html
    for t in front:
        assert json.dumps(t.outcomes["cost"]) in html


def test_show_plot_of_a_study_too_small_for_a_model_says_why(tmp_path, capsys) -> None:
    study, html_path = tmp_path / "tiny.json", tmp_path / "tiny.html"
    opt = Optimizer({"x": Real(0, 1), "y": Real(0, 1)}, {"loss": "minimize"}, name="tiny")
    opt.tell({"x": 0.2, "y": 0.4}, {"loss": 1.5})
    opt.save(study)
    assert main(["optimize", "show", str(study), "--plot", str(html_path)]) == 0
    html = html_path.read_text()
    assert "Model-based figures skipped" in html and "at least 3" in html
    assert "Optimisation history of loss" in html and json.dumps(1.5) in html
