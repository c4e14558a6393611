"""What a study's GP surrogate says: parameter importance and response surfaces.

Parameter importance here is a **functional-ANOVA (Sobol') estimate on the GP posterior
mean**: for each searched parameter, the share of the variance of the posterior mean (over
the whole search space) explained by its main effect ``E[m(x) | x_i]`` (the first-order
Sobol' index ``S_i``), and its total-order index ``ST_i`` (main effect plus every interaction
it takes part in). Shares are in ``[0, 1]`` and mean the same thing whatever the parameter's
kind or units.

Why not inverse GP length-scales: a length-scale lives in the encoded unit cube, so it
depends on how the parameter is scaled (a log-scaled parameter and the same one on a linear
scale get different length-scales), a categorical is several one-hot columns with one
length-scale each and no single number, and a short length-scale on a parameter with a tiny
amplitude of effect still reads as "important". The variance of the main effect answers the
question a user asks ("how much does the objective move when this parameter moves?") in the
objective's units, and it is what Optuna's and Hutter et al.'s fANOVA estimate too (there on a
random forest, here on the GP the optimizer already trusts).

How it is estimated: SciPy's :func:`scipy.stats.sobol_indices` (Saltelli 2010 estimators on
scrambled Sobol' points) with every searched parameter an independent factor, uniform in the
space's own measure: ``Real`` and ``Int`` uniform on their encoded ``[0, 1]`` column (so a
log-scaled parameter is uniform in its logarithm; an ``Int`` rounds like
:meth:`SearchSpace.decode`), a ``Categorical`` uniform over its choices (its one-hot columns
move together as one factor). A conditional parameter takes effect only where it is active
(elsewhere the encoding holds its neutral value, as the GP sees it), so its importance is its
effect averaged over the whole space, inactive region included. ``Fixed`` parameters are not
factors. Linear constraints are ignored: Sobol' indices need independent inputs, and the GP
mean is defined on the whole box. The estimate is repeated on ``replicates`` independent
scramblings; the reported index is their mean and its standard error their spread divided by
``sqrt(replicates)`` (randomised quasi-Monte Carlo), so the numbers are reproducible for a seed
and carry their own Monte Carlo error.

The GP is fitted to the completed trials of one objective (in its own units; warm-started from
the study's saved fit when that models this objective alone), with the kernel the optimizer's
strategies pick for the space (Matern-5/2 with the dimension-scaled prior on mixed spaces,
the Gamma prior otherwise; see :mod:`workbench.optimize.models`). Failed trials are left out:
the optimizer's imputation at the worst value steers the search but would put invented values
into an importance estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import InputError
from workbench.optimize.models import FitConfig, configure_torch, fit_gp
from workbench.optimize.space import Categorical, Fixed, Int, Real, SearchSpace

if TYPE_CHECKING:  # pragma: no cover
    from workbench.optimize.optimizer import Optimizer

__all__ = [
    "ParameterImportance",
    "ResponseSurface",
    "StudySurrogate",
    "fit_surrogate",
    "main_effect_importance",
    "parameter_importance",
    "response_surface",
]

#: Completed trials needed before a surrogate is fitted.
MIN_TRIALS = 3

_METHOD = "fANOVA (Sobol' indices) of the GP posterior mean"


@dataclass(frozen=True)
class ParameterImportance:
    """Variance shares of one objective explained by each searched parameter.

    Attributes:
        objective: The objective the GP models.
        names: Searched parameters (space order; ``Fixed`` ones excluded).
        first_order: Main-effect share ``S_i = Var(E[m | x_i]) / Var(m)`` per name; the
            importance. Monte Carlo error can make a null effect slightly negative.
        first_order_se: Standard error of each ``first_order`` value.
        total_order: Total-order share ``ST_i`` per name (main effect plus interactions);
            ``ST_i - S_i`` is the part of the variance the parameter explains only jointly
            with others.
        total_order_se: Standard error of each ``total_order`` value.
        variance: ``Var(m)``, the variance of the posterior mean over the space (squared
            objective units).
        n_samples: Base samples per replicate (the mean is evaluated at
            ``n_samples * (len(names) + 2) * replicates`` points).
        replicates: Independent scramblings averaged.
        n_trials: Completed trials the GP was fitted to (0 when not from a study).
        method: How the numbers were computed (shown in figure titles).
    """

    objective: str
    names: tuple[str, ...]
    first_order: tuple[float, ...]
    first_order_se: tuple[float, ...]
    total_order: tuple[float, ...]
    total_order_se: tuple[float, ...]
    variance: float
    n_samples: int
    replicates: int
    n_trials: int = 0
    method: str = _METHOD

    def ranked(self) -> list[str]:
        """Names, most important (largest main-effect share) first; ties keep space order."""
        order = sorted(range(len(self.names)), key=lambda i: -self.first_order[i])
        return [self.names[i] for i in order]

    def __getitem__(self, name: str) -> float:
        """The main-effect share of ``name``."""
        return self.first_order[self.names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "names": list(self.names),
            "first_order": list(self.first_order),
            "first_order_se": list(self.first_order_se),
            "total_order": list(self.total_order),
            "total_order_se": list(self.total_order_se),
            "variance": self.variance,
            "n_samples": self.n_samples,
            "replicates": self.replicates,
            "n_trials": self.n_trials,
            "method": self.method,
        }


@dataclass(frozen=True)
class ResponseSurface:
    """The GP posterior over a grid of two parameters, the others held at ``base``.

    Attributes:
        objective: The modelled objective.
        x_name: Parameter on the horizontal axis.
        y_name: Parameter on the vertical axis.
        x_values: Grid values of ``x_name`` (its own units; choices for a categorical).
        y_values: Grid values of ``y_name``.
        mean: Posterior mean, shape ``(len(y_values), len(x_values))`` (objective units).
        std: Posterior standard deviation of the mean function, same shape.
        base: The configuration the other parameters are held at.
    """

    objective: str
    x_name: str
    y_name: str
    x_values: tuple[Any, ...]
    y_values: tuple[Any, ...]
    mean: np.ndarray
    std: np.ndarray
    base: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "x_name": self.x_name,
            "y_name": self.y_name,
            "x_values": list(self.x_values),
            "y_values": list(self.y_values),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "base": dict(self.base),
        }


@dataclass(frozen=True)
class StudySurrogate:
    """A GP fitted to one objective of a study, in the objective's own units.

    Attributes:
        space: The study's search space.
        objective: The modelled objective.
        direction: ``"minimize"`` or ``"maximize"``.
        n_trials: Completed trials it was fitted to.
        best_params: The best feasible completed trial's configuration for this objective.
        model: The fitted BoTorch model (eval mode).
    """

    space: SearchSpace
    objective: str
    direction: str
    n_trials: int
    best_params: dict[str, Any]
    model: Any = field(repr=False)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at encoded points ``x`` (shape
        ``(n, dim)``), each of shape ``(n,)`` in objective units."""
        import torch

        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, len(x), 8192):
                # A batch of single points: the posterior's marginals without the joint
                # (n, n) covariance a plain (n, dim) input would build.
                chunk = torch.as_tensor(x[start : start + 8192]).unsqueeze(-2)
                post = self.model.posterior(chunk)
                means.append(post.mean.numpy().reshape(-1))
                stds.append(post.variance.clamp_min(0).sqrt().numpy().reshape(-1))
        if not means:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(means), np.concatenate(stds)

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Posterior mean at encoded points ``x`` (shape ``(n, dim)``), shape ``(n,)``."""
        return self.predict(x)[0]


def _objective_name(opt: Optimizer, objective: str | None) -> str:
    name = objective if objective is not None else next(iter(opt.objectives))
    if name not in opt.objectives:
        raise InputError(
            f"objective {name!r} is not one of the study's {sorted(opt.objectives)}",
            details={"field": "objective"},
        )
    return name


def _feasible(opt: Optimizer, outcomes: Mapping[str, float]) -> bool:
    for n, op, bound in opt.outcome_constraints:
        v = outcomes[n]
        if not (v <= bound if op == "<=" else v >= bound):
            return False
    return True


def fit_surrogate(opt: Optimizer, objective: str | None = None) -> StudySurrogate:
    """Fit a GP to the completed trials of ``objective`` (default: the first objective).

    Raises:
        InputError: an unknown objective, or fewer than :data:`MIN_TRIALS` completed trials.
    """
    name = _objective_name(opt, objective)
    done = [t for t in opt.completed if t.outcomes is not None]
    if len(done) < MIN_TRIALS:
        raise InputError(
            f"study {opt.name!r} has {len(done)} completed trial(s); a surrogate needs at "
            f"least {MIN_TRIALS}",
            details={"field": "trials"},
        )
    x = opt.space.encode_many([t.params for t in done])
    y = np.array([[t.outcomes[name]] for t in done if t.outcomes is not None])
    # One torch thread, as the strategies use: on a busy shared machine two threads made this
    # fit several times slower.
    configure_torch(1)
    # The rule the strategies apply to FitConfig(kernel="auto"), see workbench.optimize.models;
    # the study's own warm-start state is used when it models just this objective.
    kernel = "matern" if opt.space.is_mixed else "matern-gamma"
    model, _, _ = fit_gp(x, y, opt.model_state, FitConfig(kernel=kernel))
    direction = opt.objectives[name]
    sign = 1.0 if direction == "minimize" else -1.0
    ranked = [t for t in done if t.outcomes is not None and _feasible(opt, t.outcomes)] or done
    best = min(ranked, key=lambda t: sign * t.outcomes[name])  # type: ignore[index]
    return StudySurrogate(opt.space, name, direction, len(done), dict(best.params), model)


def _factors(space: SearchSpace) -> list[tuple[str, Real | Int | Categorical, slice]]:
    """Searched parameters with their encoded columns (the space's order fixes the encoding)."""
    out: list[tuple[str, Real | Int | Categorical, slice]] = []
    start = 0
    for name, p in space.params.items():
        if not isinstance(p, Fixed):
            out.append((name, p, slice(start, start + p.width)))
        start += p.width
    return out


def _cube_points(space: SearchSpace, u: np.ndarray) -> np.ndarray:
    """Factor values ``u`` (shape ``(n_factors, n)`` in ``[0, 1]``) -> encoded feasible-type
    points (shape ``(n, dim)``): categoricals become the one-hot column of choice
    ``floor(u * k)``, then :meth:`SearchSpace.snap` rounds integers and neutralises inactive
    parameters exactly as the optimizer's encoding does."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    rows = np.zeros((u.shape[1], space.dim))
    for j, (_, p, cols) in enumerate(_factors(space)):
        if isinstance(p, Categorical):
            k = len(p.choices)
            idx = np.minimum((u[j] * k).astype(int), k - 1)
            rows[np.arange(len(idx)), cols.start + idx] = 1.0
        else:
            rows[:, cols.start] = u[j]
    return np.asarray(space.snap(rows))


def main_effect_importance(
    space: SearchSpace,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    n_samples: int = 256,
    replicates: int = 8,
    seed: int = 0,
    objective: str = "y",
    n_trials: int = 0,
) -> ParameterImportance:
    """Sobol' main-effect and total-order shares of ``predict`` over ``space``.

    Args:
        space: The search space; its searched parameters are the factors (see the module
            docstring for their distributions).
        predict: Encoded points, shape ``(n, dim)`` -> values, shape ``(n,)``.
        n_samples: Base samples per replicate, a power of 2.
        replicates: Independent scramblings averaged (at least 2, for the standard error).
        seed: Seed of the scramblings.
        objective: Name recorded in the result.
        n_trials: Trials behind ``predict``, recorded in the result.

    Raises:
        InputError: ``n_samples`` not a power of 2, fewer than 2 replicates, or ``predict``
            constant over the space (importance is undefined).
    """
    from scipy.stats import sobol_indices, uniform

    if n_samples < 2 or n_samples & (n_samples - 1):
        raise InputError(
            f"n_samples={n_samples} must be a power of 2 (>= 2)", details={"field": "n_samples"}
        )
    if replicates < 2:
        raise InputError(
            f"replicates={replicates} must be >= 2 (the standard error needs two)",
            details={"field": "replicates"},
        )
    factors = _factors(space)
    names = tuple(name for name, _, _ in factors)
    values: list[np.ndarray] = []

    def func(u: np.ndarray) -> np.ndarray:
        out = np.asarray(predict(_cube_points(space, u)), dtype=np.float64).reshape(-1)
        values.append(out)
        return out[None, :]

    dists = [uniform(0.0, 1.0)] * len(factors)
    rng = np.random.default_rng(seed)
    firsts, totals = [], []
    for _ in range(replicates):
        values.clear()
        res = sobol_indices(func=func, n=n_samples, dists=dists, rng=rng)
        spread = float(np.ptp(np.concatenate(values)))
        scale = max(1.0, float(np.max(np.abs(np.concatenate(values)))))
        if not spread > 1e-12 * scale:
            raise InputError(
                f"the model of {objective!r} is flat over the space; importance is undefined",
                details={"field": "objective"},
            )
        firsts.append(np.asarray(res.first_order).reshape(-1))
        totals.append(np.asarray(res.total_order).reshape(-1))
    first, total = np.array(firsts), np.array(totals)
    variance = float(np.var(np.concatenate(values)))

    def se(a: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in a.std(axis=0, ddof=1) / np.sqrt(len(a)))

    return ParameterImportance(
        objective=objective,
        names=names,
        first_order=tuple(float(v) for v in first.mean(axis=0)),
        first_order_se=se(first),
        total_order=tuple(float(v) for v in total.mean(axis=0)),
        total_order_se=se(total),
        variance=variance,
        n_samples=n_samples,
        replicates=replicates,
        n_trials=n_trials,
    )


def parameter_importance(
    study: Optimizer | StudySurrogate,
    objective: str | None = None,
    *,
    n_samples: int = 256,
    replicates: int = 8,
    seed: int = 0,
) -> ParameterImportance:
    """Importance of each searched parameter for ``objective`` (functional ANOVA of the GP
    posterior mean; see the module docstring for why and how).

    Args:
        study: An optimizer (a GP is fitted to its completed trials) or a surrogate from
            :func:`fit_surrogate` (reused, e.g. for several figures).
        objective: Objective name (default: the first; ignored for a surrogate).
        n_samples: Base samples per replicate, a power of 2.
        replicates: Independent scramblings averaged.
        seed: Seed of the Monte Carlo design.
    """
    surrogate = study if isinstance(study, StudySurrogate) else fit_surrogate(study, objective)
    return main_effect_importance(
        surrogate.space,
        surrogate.mean,
        n_samples=n_samples,
        replicates=replicates,
        seed=seed,
        objective=surrogate.objective,
        n_trials=surrogate.n_trials,
    )


def _grid(p: Real | Int | Categorical, n_grid: int) -> list[Any]:
    if isinstance(p, Categorical):
        return list(p.choices)
    if isinstance(p, Int) and p.high - p.low + 1 <= n_grid:
        return list(range(p.low, p.high + 1))
    values = [p.decode(np.array([u])) for u in np.linspace(0.0, 1.0, n_grid)]
    return list(dict.fromkeys(values))  # rounding can repeat integers


def response_surface(
    surrogate: StudySurrogate,
    x_name: str,
    y_name: str,
    *,
    base: Mapping[str, Any] | None = None,
    n_grid: int = 40,
) -> ResponseSurface:
    """The posterior over a grid of ``x_name`` x ``y_name``, other parameters at ``base``
    (default: the best trial's values).

    A Real axis has ``n_grid`` points evenly spaced in its encoding (geometric for a
    log-scaled one); an Int axis every integer when there are at most ``n_grid``; a
    categorical axis its choices. A grid point that makes a parameter inactive encodes it as
    the optimizer does (neutral), so the surface is flat along that axis there.
    """
    searched = {name: p for name, p, _ in _factors(surrogate.space)}
    for name in (x_name, y_name):
        if name not in searched:
            raise InputError(
                f"{name!r} is not a searched parameter of the space; use one of {sorted(searched)}",
                details={"field": "params"},
            )
    if x_name == y_name:
        raise InputError("the two axes must be different parameters", details={"field": "params"})
    if n_grid < 2:
        raise InputError(f"n_grid={n_grid} must be >= 2", details={"field": "n_grid"})
    fixed = dict(surrogate.best_params if base is None else base)
    xs, ys = _grid(searched[x_name], n_grid), _grid(searched[y_name], n_grid)
    configs: Sequence[Mapping[str, Any]] = [
        {**fixed, x_name: xv, y_name: yv} for yv in ys for xv in xs
    ]
    mean, std = surrogate.predict(surrogate.space.encode_many(configs))
    shape = (len(ys), len(xs))
    return ResponseSurface(
        objective=surrogate.objective,
        x_name=x_name,
        y_name=y_name,
        x_values=tuple(xs),
        y_values=tuple(ys),
        mean=mean.reshape(shape),
        std=std.reshape(shape),
        base={k: v for k, v in fixed.items() if k not in (x_name, y_name)},
    )
