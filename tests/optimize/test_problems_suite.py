"""The benchmark suite's problems: each documented optimum is the function's value at the
documented minimiser, matches the published value, and no sampled or perturbed point
beats it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.optimize.problems import (
    PROBLEMS,
    ST_MIN_PER_DIM,
    ST_X_OPT,
    ackley,
    get_problem,
    levy,
    rosenbrock,
    styblinski_tang,
)
from workbench.optimize.space import Categorical, Int, Real

# Published minima (Surjanovic & Bingham's Virtual Library of Simulation Experiments).
PUBLISHED = {
    "branin": 0.397887,
    "hartmann6": -3.32237,
    "levy4": 0.0,
    "ackley5": 0.0,
    "rosenbrock4": 0.0,
    "styblinskitang8": -39.16599 * 8,
    "styblinskitang_mixed": 3 * -39.16617 + 1.5 * 2 * -39.0 + 20.0,
}
SINGLE = [*PUBLISHED, "llm"]


def _value(name: str, params: dict) -> float:
    p = get_problem(name)
    return p(params)[next(iter(p.objectives))]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_optimum_matches_published_value(name: str) -> None:
    p = get_problem(name)
    assert p.optimum == pytest.approx(PUBLISHED[name], abs=2e-3 * max(1.0, abs(PUBLISHED[name])))


@pytest.mark.parametrize("name", SINGLE)
def test_optimal_params_give_the_optimum(name: str) -> None:
    p = get_problem(name)
    assert p.optimal_params is not None and p.optimum is not None
    assert _value(name, dict(p.optimal_params)) == pytest.approx(p.optimum, abs=1e-9)
    assert p.regret(p.optimum) == 0.0


@pytest.mark.parametrize("name", SINGLE)
def test_nothing_sampled_beats_the_optimum(name: str) -> None:
    p = get_problem(name)
    rng = np.random.default_rng(7)
    for row in p.space.sample(300, rng):
        assert p.regret(_value(name, p.space.decode(row))) >= -1e-9


@pytest.mark.parametrize("name", [n for n in PUBLISHED if n != "branin"])
def test_optimum_is_a_local_minimum(name: str) -> None:
    """Small moves of each real coordinate and unit moves of each integer make it worse."""
    p = get_problem(name)
    assert p.optimal_params is not None
    best = dict(p.optimal_params)
    for n, param in p.space.params.items():
        if isinstance(param, Real):
            moves = [best[n] - 1e-3, best[n] + 1e-3]
        elif isinstance(param, Int):
            moves = [best[n] - 1, best[n] + 1]
        else:
            assert isinstance(param, Categorical)
            moves = [c for c in param.choices if c != best[n]]
        for v in moves:
            if isinstance(param, (Real, Int)) and not param.low <= v <= param.high:
                continue
            assert p.regret(_value(name, {**best, n: v})) > 0


def test_known_values_off_the_optimum() -> None:
    # Levy at the origin: w = 3/4 everywhere.
    w = 0.75
    body = 3 * (w - 1) ** 2 * (1 + 10 * math.sin(math.pi * w + 1) ** 2)
    tail = (w - 1) ** 2 * (1 + math.sin(2 * math.pi * w) ** 2)
    levy_origin = math.sin(math.pi * w) ** 2 + body + tail
    assert _value("levy4", dict.fromkeys(["x0", "x1", "x2", "x3"], 0.0)) == pytest.approx(
        levy_origin
    )
    # Ackley at one unit coordinate: 20 (1 - exp(-0.2 sqrt(1/5))).
    one = {f"x{i}": float(i == 0) for i in range(5)}
    assert _value("ackley5", one) == pytest.approx(20 * (1 - math.exp(-0.2 * math.sqrt(0.2))))
    assert _value("rosenbrock4", dict.fromkeys(["x0", "x1", "x2", "x3"], 0.0)) == 3.0
    # One Styblinski-Tang coordinate in the other basin costs 14.14.
    st = styblinski_tang(2)
    wrong = st({"x0": ST_X_OPT, "x1": 2.7468027523437297})["y"]
    assert st.regret(wrong) == pytest.approx(14.1367, abs=1e-3)
    mixed = get_problem("styblinskitang_mixed")
    assert mixed.optimal_params is not None
    for scale, gap in (("a", 29.0), ("b", 58.0)):
        params = {**mixed.optimal_params, "scale": scale}
        assert mixed.regret(mixed(params)["y"]) == pytest.approx(gap)


@pytest.mark.parametrize("make", [levy, ackley, rosenbrock, styblinski_tang])
@pytest.mark.parametrize("dim", [2, 10])
def test_any_dimension(make, dim: int) -> None:
    p = make(dim)
    assert p.name.endswith(str(dim)) and len(p.space.params) == dim
    assert p.optimal_params is not None
    assert p(dict(p.optimal_params))["y"] == pytest.approx(p.optimum, abs=1e-9)


def test_dimension_checked() -> None:
    with pytest.raises(InputError, match="dim"):
        rosenbrock(1)
    with pytest.raises(InputError, match="dim"):
        levy(0)
    assert styblinski_tang(3).optimum == ST_MIN_PER_DIM * 3


def test_registry_names_are_problem_names() -> None:
    for key, make in PROBLEMS.items():
        assert make().name == key
