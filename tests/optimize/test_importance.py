"""Parameter importance (functional ANOVA of the GP mean) and response surfaces.

The estimator is checked against closed-form Sobol' indices. Each index's tolerance is
``t * SE``: ``SE`` is the standard error the estimate reports (the spread of its
``replicates`` independent scramblings over ``sqrt(replicates)``) and ``t`` the Student-t
quantile with ``replicates - 1`` degrees of freedom at ``FALSE_FAILURE / (2 k)`` (Bonferroni
over the ``k`` indices checked), so a correct estimator fails a check with probability below
``FALSE_FAILURE = 1e-5`` (replicate errors are close to normal at these sample sizes: over 40
seeds the measured spread of each index matched its reported SE within 30%).

Power: each check also asserts that every tolerance is at most ``max_tol``, and ``t >= 5.8``
for the settings used. An estimator whose expected index is off by ``2 * max_tol`` or more
passes only if its Monte Carlo error exceeds ``max_tol >= t * SE >= 5.8 SE``, which has
probability below 1e-6. Measured on 60 other seeds of each check: the largest error was
3.7 SE and the largest tolerance 0.6 of ``max_tol``. The end-to-end checks through a fitted
GP are deterministic (fixed designs); their margins, measured on five designs each, are
stated in each test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

from workbench.errors import InputError
from workbench.optimize import Categorical, Fixed, Int, Optimizer, Real
from workbench.optimize.importance import (
    ParameterImportance,
    fit_surrogate,
    main_effect_importance,
    parameter_importance,
    response_surface,
)
from workbench.optimize.space import SearchSpace

FALSE_FAILURE = 1e-5


def _assert_indices(
    imp: ParameterImportance, first: list[float], total: list[float], max_tol: float
) -> None:
    """Every first- and total-order index within ``t * SE`` of the truth and every
    tolerance at most ``max_tol`` (see the module docstring for the error rates)."""
    est = np.r_[imp.first_order, imp.total_order]
    se = np.r_[imp.first_order_se, imp.total_order_se]
    truth = np.r_[first, total]
    crit = stats.t.isf(FALSE_FAILURE / (2 * len(est)), df=imp.replicates - 1)
    assert crit >= 5.8
    tol = crit * se
    assert np.all(tol <= max_tol), f"tolerances {tol} exceed {max_tol}: the check lacks power"
    assert np.all(np.abs(est - truth) <= tol), (est, truth, tol)


def _study(space: dict, f, n: int, seed: int = 0) -> Optimizer:
    """A study of ``n`` scrambled-Sobol configurations (uniform in the encoding), told
    directly: no strategy runs."""
    opt = Optimizer(space, {"y": "minimize"}, seed=seed, name="synthetic")
    for row in qmc.Sobol(opt.space.dim, seed=seed).random(n):
        params = opt.space.decode(row)
        opt.tell(params, {"y": f(params)})
    return opt


def test_linear_function_matches_closed_form_shares() -> None:
    """f = a x0 + b x1 on the unit square: S_0 = ST_0 = a^2 / (a^2 + b^2)."""
    space = SearchSpace({"x0": Real(0, 1), "x1": Real(0, 1)})
    a, b = 2.0, 1.0
    imp = main_effect_importance(space, lambda x: a * x[:, 0] + b * x[:, 1], replicates=16)
    share = a**2 / (a**2 + b**2)
    _assert_indices(imp, [share, 1 - share], [share, 1 - share], max_tol=0.015)
    assert imp.ranked() == ["x0", "x1"]
    assert imp.variance == pytest.approx((a**2 + b**2) / 12, rel=0.02)


def test_ishigami_first_and_total_order_match_closed_form() -> None:
    """Ishigami (a=7, b=0.1) on [-pi, pi]^3: x3 has no main effect but interacts with x1."""
    space = SearchSpace({f"x{i}": Real(-math.pi, math.pi) for i in (1, 2, 3)})
    a, b = 7.0, 0.1

    def ishigami(x: np.ndarray) -> np.ndarray:
        z = -math.pi + 2 * math.pi * x
        return np.sin(z[:, 0]) + a * np.sin(z[:, 1]) ** 2 + b * z[:, 2] ** 4 * np.sin(z[:, 0])

    var = a**2 / 8 + b * math.pi**4 / 5 + b**2 * math.pi**8 / 18 + 0.5
    v1, v2, vt3 = 0.5 * (1 + b * math.pi**4 / 5) ** 2, a**2 / 8, 8 * b**2 * math.pi**8 / 225
    imp = main_effect_importance(space, ishigami, n_samples=1024, replicates=32, seed=1)
    _assert_indices(
        imp, [v1 / var, v2 / var, 0.0], [(v1 + vt3) / var, v2 / var, vt3 / var], max_tol=0.04
    )


def test_categorical_is_one_factor_and_conditional_counts_where_active() -> None:
    """f = 4 z [c == "a"], z active only when c == "a" (C ~ Bernoulli(1/2), Z ~ U(0, 1)):
    Var f = 5/3, Var E[f|c] = 1, Var E[f|z] = 1/3, so S_c = 0.6, S_z = 0.2, ST_c = 0.8,
    ST_z = 0.4; the Fixed parameter is not a factor."""
    space = SearchSpace(
        {
            "c": Categorical(["a", "b"]),
            "z": Real(0, 1, active_if={"c": ["a"]}),
            "k": Fixed(3),
        }
    )
    z_col = space.encode({"c": "a", "z": 1.0, "k": 3})
    assert list(z_col) == [1.0, 0.0, 1.0]

    def f(x: np.ndarray) -> np.ndarray:
        # An inactive z is encoded 0.5, so this reads the configuration, not the raw draw.
        return 4 * x[:, 2] * x[:, 0]

    imp = main_effect_importance(space, f, replicates=16, seed=2)
    assert imp.names == ("c", "z")
    _assert_indices(imp, [0.6, 0.2], [0.8, 0.4], max_tol=0.05)


def test_integers_are_rounded_like_the_space() -> None:
    """An Int on [1, 4] rounds the encoded uniform like SearchSpace.decode: values 1..4
    with probabilities 1/6, 1/3, 1/3, 1/6, so f = n alone has Var = 0.9167 (not the 1.25
    of a uniform choice)."""
    space = SearchSpace({"n": Int(1, 4), "x": Real(0, 1)})

    def f(x: np.ndarray) -> np.ndarray:
        return np.array([space.decode(r)["n"] for r in x], dtype=float)

    imp = main_effect_importance(space, f, n_samples=512, seed=3)
    p = np.array([1, 2, 2, 1]) / 6
    v = np.arange(1, 5)
    assert imp.variance == pytest.approx(p @ v**2 - (p @ v) ** 2, rel=0.03)
    assert imp.ranked()[0] == "n" and imp["x"] == pytest.approx(0.0, abs=0.01)


def test_same_seed_same_numbers_and_json() -> None:
    space = SearchSpace({"x0": Real(0, 1), "x1": Real(0, 1, log=False)})
    f = lambda x: np.sin(6 * x[:, 0]) + x[:, 1] ** 2  # noqa: E731
    one, two = main_effect_importance(space, f, seed=5), main_effect_importance(space, f, seed=5)
    assert one == two
    assert json.loads(json.dumps(one.to_dict()))["names"] == ["x0", "x1"]
    assert main_effect_importance(space, f, seed=6) != one


def test_refuses_bad_arguments_and_flat_models() -> None:
    space = SearchSpace({"x0": Real(0, 1), "x1": Real(0, 1)})
    with pytest.raises(InputError, match="power of 2"):
        main_effect_importance(space, lambda x: x[:, 0], n_samples=100)
    with pytest.raises(InputError, match="replicates"):
        main_effect_importance(space, lambda x: x[:, 0], replicates=1)
    with pytest.raises(InputError, match="flat"):
        main_effect_importance(space, lambda x: np.full(len(x), 3.0))


def test_gp_importance_ranks_the_two_parameters_that_matter_first() -> None:
    """Six parameters, only x0 and x1 enter f; 32 Sobol trials. Measured on five designs:
    x0 and x1 had main-effect shares 0.33-0.60, the other four at most 0.007."""
    space = {f"x{i}": Real(0, 1) for i in range(6)}
    opt = _study(space, lambda p: 2 * math.sin(3 * p["x0"]) + 4 * (p["x1"] - 0.3) ** 2, 32)
    imp = parameter_importance(opt)
    assert imp.n_trials == 32 and imp.objective == "y"
    for order in (imp.first_order, imp.total_order):
        share = dict(zip(imp.names, order, strict=True))
        assert min(share["x0"], share["x1"]) > max(share[f"x{i}"] for i in range(2, 6))
    assert set(imp.ranked()[:2]) == {"x0", "x1"}
    assert "GP posterior mean" in imp.method


def test_gp_importance_of_a_linear_function_is_within_0_03_of_the_closed_form() -> None:
    """f = 2 x0 + x1 from 16 Sobol trials: S_0 = 0.8 (closed form). Measured error of the
    GP-based estimate over five designs: at most 0.003; the tolerance is 0.03."""
    opt = _study({"x0": Real(0, 1), "x1": Real(0, 1)}, lambda p: 2 * p["x0"] + p["x1"], 16)
    imp = parameter_importance(opt)
    assert imp["x0"] == pytest.approx(0.8, abs=0.03)
    assert imp["x1"] == pytest.approx(0.2, abs=0.03)


def test_response_surface_follows_the_function_and_holds_the_rest_at_the_best() -> None:
    space = {"x0": Real(0, 1), "x1": Real(1, 100, log=True), "x2": Real(0, 1)}
    opt = _study(space, lambda p: 2 * p["x0"] + math.log10(p["x1"]) + 0.1 * p["x2"], 32)
    surrogate = fit_surrogate(opt)
    best = opt.best()
    assert surrogate.best_params == best.params and surrogate.direction == "minimize"
    surf = response_surface(surrogate, "x0", "x1", n_grid=11)
    assert surf.mean.shape == (11, 11) and surf.std.shape == (11, 11)
    assert surf.x_values[0] == 0.0 and surf.x_values[-1] == 1.0
    assert surf.y_values[5] == pytest.approx(10.0)  # geometric spacing on a log scale
    assert surf.base == {"x2": best.params["x2"]}
    xs, ys = np.meshgrid(surf.x_values, np.log10(surf.y_values))
    truth = 2 * xs + ys + 0.1 * best.params["x2"]
    assert np.max(np.abs(surf.mean - truth)) < 0.1
    assert json.loads(json.dumps(surf.to_dict()))["x_name"] == "x0"


def test_surrogate_needs_trials_and_a_known_objective() -> None:
    opt = Optimizer({"x": Real(0, 1), "y": Real(0, 1)}, {"loss": "minimize"})
    opt.tell({"x": 0.1, "y": 0.2}, {"loss": 1.0})
    with pytest.raises(InputError, match="at least 3"):
        fit_surrogate(opt)
    with pytest.raises(InputError, match="not one of"):
        fit_surrogate(opt, "nope")
    opt.tell({"x": 0.5, "y": 0.2}, {"loss": 2.0})
    opt.tell({"x": 0.9, "y": 0.7}, {"loss": 0.5})
    surrogate = fit_surrogate(opt)
    with pytest.raises(InputError, match="searched parameter"):
        response_surface(surrogate, "x", "z")
    with pytest.raises(InputError, match="different"):
        response_surface(surrogate, "x", "x")
