"""Test problems reach their documented optima."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.optimize.pareto import hypervolume, pareto_mask
from workbench.optimize.problems import LLMSimulator, get_problem


@pytest.mark.parametrize("name", ["branin", "hartmann6", "llm"])
def test_optimal_params_reach_optimum(name: str) -> None:
    p = get_problem(name)
    assert p.optimal_params is not None
    value = p(p.optimal_params)[next(iter(p.objectives))]
    assert value == pytest.approx(p.optimum, abs=1e-6)
    rng = np.random.default_rng(0)
    for row in p.space.sample(200, rng):
        v = p(p.space.decode(row))[next(iter(p.objectives))]
        assert p.regret(v) >= -1e-9


def test_branincurrin_front_hypervolume_close_to_published() -> None:
    p = get_problem("branincurrin")
    grid = np.linspace(0, 1, 251)
    ys = np.array([list(p({"x1": a, "x2": b}).values()) for a in grid for b in grid])
    hv = hypervolume(-ys, -np.array([18.0, 6.0]))
    assert 0.97 * p.max_hypervolume < hv <= p.max_hypervolume + 1e-6


def test_pareto_mask() -> None:
    y = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.4, 0.4], [1, 0]])
    assert pareto_mask(y).tolist() == [True, True, True, False, True]
    assert hypervolume(y, np.array([0.0, 0.0])) == pytest.approx(0.5 + 0.25 - 0.25 + 0.0, abs=0.26)


def test_llm_simulator_best_is_unique_and_noise_optional() -> None:
    sim = LLMSimulator("reasoning", noise=0.05)
    params, best = sim.best()
    assert params["model"] == "medium" and params["prompt_template"] == "few_shot"
    rng = np.random.default_rng(0)
    noisy = [sim.evaluate(params, rng)["score"] for _ in range(200)]
    assert abs(np.mean(noisy) - best) < 0.02
    out = sim.evaluate({**params, "max_tokens": 64})
    assert out["success"] == 0.0


def test_unknown_problem() -> None:
    with pytest.raises(InputError, match="known problems"):
        get_problem("nope")
