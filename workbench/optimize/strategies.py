"""Suggestion strategies: stateless configuration objects in a name-keyed registry.

A strategy turns a :class:`StrategyInput` (the space, the observations in the unit cube,
pending points, the previous model state, a seed) into a :class:`Suggestion` (new points and
the model state to keep). The caller (:class:`~workbench.optimize.optimizer.Optimizer`) owns
all state; a strategy holds only its settings, so the same input gives the same output.

Registered names:

- ``sobol``: scrambled Sobol points (space-filling; also every model strategy's warm-up).
- ``random``: uniform random points (a baseline).
- ``qlognei``: qLogNoisyExpectedImprovement (single objective, or a weighted sum of several;
  outcome constraints; pending points as ``X_pending`` fantasies; batches by sequential
  greedy selection).
- ``thompson``: Thompson sampling with pathwise (Matheron) posterior samples, each sample's
  arg-max over a candidate pool; cheap for large parallel batches.
- ``qlognehvi``: qLogNoisyExpectedHypervolumeImprovement for several objectives, with
  optional outcome constraints.
- ``default``: ``qlognehvi`` when there are several objectives and no weights, else
  ``qlognei``.

Time bound: a :class:`StrategyInput` may carry a ``deadline``. The model strategies give the
GP fit at most half of the time left, stop the acquisition optimisation when the deadline
passes (:func:`~workbench.optimize.acquisition.maximize_acqf` keeps the best candidate found
so far; the candidate pool is always scored, so the first point is always the model's
choice), fill the batch slots still open then with random new points (``info["filled"]``),
and mark ``info["truncated"]``.

Robustness: a model strategy never raises on bad numerics. Observations it cannot model
(non-finite, or beyond :data:`~workbench.optimize.models.MAX_ABS_OUTCOME`) and numerical
failures of the fit or the acquisition (a kernel matrix that is not positive definite) fall
back to random new points with ``info["phase"] == "fallback"`` and ``info["reason"]``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from workbench.errors import InputError
from workbench.optimize.acquisition import AcqfOptions, candidate_pool, is_new, maximize_acqf
from workbench.optimize.models import (
    MAX_ABS_OUTCOME,
    FitConfig,
    ModelState,
    configure_torch,
    fit_gp,
    lean_posterior_model,
)
from workbench.optimize.space import SearchSpace

__all__ = [
    "STRATEGIES",
    "OutcomeConstraint",
    "QLogNEHVI",
    "QLogNEI",
    "RandomSearch",
    "SobolSearch",
    "Strategy",
    "StrategyInput",
    "Suggestion",
    "ThompsonSampling",
    "get_strategy",
    "register_strategy",
]

log = logging.getLogger(__name__)


def _NUMERICAL_ERRORS() -> tuple[type[Exception], ...]:
    """Errors of a model step that mean bad numerics, not a bug (imported lazily)."""
    from botorch.exceptions.errors import ModelFittingError
    from linear_operator.utils.errors import NotPSDError
    from torch.linalg import LinAlgError

    return (NotPSDError, ModelFittingError, LinAlgError)


@dataclass(frozen=True)
class OutcomeConstraint:
    """``outcome <op> bound`` on a modelled column of ``y`` (in the outcome's own units).

    Attributes:
        column: Column of :attr:`StrategyInput.y`.
        op: ``"<="`` or ``">="``.
        bound: Threshold.
    """

    column: int
    op: str
    bound: float

    def slack(self, samples: Any) -> Any:
        """BoTorch's convention: ``<= 0`` means feasible."""
        value = samples[..., self.column]
        return value - self.bound if self.op == "<=" else self.bound - value

    def satisfied(self, y: np.ndarray) -> np.ndarray:
        v = y[..., self.column]
        return v <= self.bound if self.op == "<=" else v >= self.bound


@dataclass(frozen=True)
class StrategyInput:
    """Everything a strategy needs for one suggestion.

    Attributes:
        space: The search space.
        x: Observed points in the unit cube, shape ``(n, dim)``.
        y: Their outcomes, shape ``(n, m)``: the ``n_objectives`` objectives first, signed so
            that larger is better, then the constrained outcomes in their own units.
        n_objectives: Number of objective columns of ``y``.
        constraints: Outcome constraints on columns of ``y``.
        weights: Weights of a scalarised objective (length ``n_objectives``) or ``None``.
        ref_point: Hypervolume reference point (length ``n_objectives``, larger-is-better).
        pending: Points suggested but not yet told, shape ``(p, dim)``.
        avoid: Points never to suggest again (observed, failed, pending), shape ``(k, dim)``.
        seed: Seed of this suggestion (the caller derives it from its seed and counter).
        index: How many points were suggested before (the Sobol sequence position).
        model_state: The previous fit's state (warm start) or ``None``.
        deadline: ``time.perf_counter()`` value by which the suggestion should be returned
            (``None``: no bound); see the module docstring.
    """

    space: SearchSpace
    x: np.ndarray
    y: np.ndarray
    n_objectives: int = 1
    constraints: tuple[OutcomeConstraint, ...] = ()
    weights: np.ndarray | None = None
    ref_point: np.ndarray | None = None
    pending: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    avoid: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    seed: int = 0
    index: int = 0
    model_state: ModelState | None = None
    deadline: float | None = None

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (``inf`` without one; negative once passed)."""
        return math.inf if self.deadline is None else self.deadline - time.perf_counter()

    @property
    def avoid_points(self) -> np.ndarray:
        """``avoid`` as ``(k, dim)`` rows (``(0, dim)`` when empty)."""
        return _rows(self.avoid, self.space.dim)

    @property
    def pending_points(self) -> np.ndarray:
        """``pending`` as ``(p, dim)`` rows (``(0, dim)`` when empty)."""
        return _rows(self.pending, self.space.dim)


def _rows(a: np.ndarray, dim: int) -> np.ndarray:
    return a.reshape(-1, dim) if a.size else np.zeros((0, dim))


@dataclass(frozen=True)
class Suggestion:
    """A strategy's answer.

    Attributes:
        x: New points, shape ``(q, dim)``, snapped and feasible.
        model_state: Model state to keep for the next warm start (``None``: unchanged).
        info: Timings and diagnostics (``fit_s``, ``acq_s``, ``acq_value``, ``phase``).
    """

    x: np.ndarray
    model_state: ModelState | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    """What every registered strategy provides."""

    @property
    def name(self) -> str: ...

    def suggest(self, inp: StrategyInput, q: int) -> Suggestion: ...


def _fill_unique(
    space: SearchSpace, pts: np.ndarray, avoid: np.ndarray, q: int, rng: np.random.Generator
) -> np.ndarray:
    """Keep the first ``q`` new points of ``pts``; top up with random new ones."""
    chosen: list[np.ndarray] = []
    taken = avoid.reshape(-1, space.dim) if avoid.size else np.zeros((0, space.dim))
    for p in pts:
        if len(chosen) == q:
            break
        if is_new(p, taken):
            chosen.append(p)
            taken = np.vstack([taken, p[None]])
    tries = 0
    while len(chosen) < q and tries < 20:
        for p in space.sample(max(16, q), rng):
            if len(chosen) == q:
                break
            if is_new(p, taken):
                chosen.append(p)
                taken = np.vstack([taken, p[None]])
        tries += 1
    if len(chosen) < q:
        raise InputError(f"the search space has no untried configuration left ({len(taken)} tried)")
    return np.stack(chosen)


@dataclass(frozen=True)
class SobolSearch:
    """Scrambled Sobol points, in sequence order (``index`` picks the position)."""

    name: str = "sobol"

    def suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        from scipy.stats import qmc

        space = inp.space
        engine = qmc.Sobol(space.dim, scramble=True, seed=np.random.default_rng(inp.seed))
        # Draw past the current position so rounding/constraint losses still leave q points.
        total = inp.index + 4 * q + 16
        pts = space.snap(engine.random(int(2 ** np.ceil(np.log2(total)))))[inp.index :]
        pts = pts[space.feasible_unit(pts)]
        rng = np.random.default_rng([inp.seed, inp.index, 1])
        return Suggestion(_fill_unique(space, pts, inp.avoid, q, rng), None, {"phase": "sobol"})


@dataclass(frozen=True)
class RandomSearch:
    """Uniform random points (a baseline)."""

    name: str = "random"

    def suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        rng = np.random.default_rng([inp.seed, inp.index])
        pts = inp.space.sample(q * 2, rng)
        return Suggestion(
            _fill_unique(inp.space, pts, inp.avoid, q, rng), None, {"phase": "random"}
        )


def _n_init(space: SearchSpace) -> int:
    """Sobol warm-up length: 2 per searched parameter, between 5 and 10 (Optuna's GPSampler
    and Ax use 10 for six dimensions; fewer on small spaces lets the model work sooner)."""
    searched = sum(1 for p in space.params.values() if p.width > 0)
    return int(min(10, max(5, 2 * searched)))


@dataclass(frozen=True)
class _ModelStrategy:
    """Shared parts of the model-based strategies."""

    name: str = "model"
    n_init: int | None = None
    fit: FitConfig = field(default_factory=FitConfig)
    acqf_options: AcqfOptions = field(default_factory=AcqfOptions)
    mc_samples: int = 128
    num_threads: int | None = 1

    def suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        """Space-filling points until the model has data, then the strategy's own
        ``_suggest``; a numerical failure of the model falls back instead of raising."""
        if self.warmup_left(inp) >= q or len(inp.x) < 2:
            return self._warmup(inp, q)
        y = np.asarray(inp.y, dtype=np.float64)
        if not (np.all(np.isfinite(y)) and np.all(np.abs(y) <= MAX_ABS_OUTCOME)):
            reason = f"observed outcomes are not finite or beyond +-{MAX_ABS_OUTCOME:g}"
            return self._fallback(inp, q, reason)
        try:
            return self._suggest(inp, q)
        except _NUMERICAL_ERRORS() as exc:
            return self._fallback(inp, q, f"numerical failure of the model: {exc!r}")

    def _suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        raise NotImplementedError

    def warmup_left(self, inp: StrategyInput) -> int:
        n_init = self.n_init if self.n_init is not None else _n_init(inp.space)
        return max(0, n_init - len(inp.x) - len(inp.pending))

    def _fit(self, inp: StrategyInput) -> tuple[Any, ModelState, float, bool]:
        """The fitted model, its state, the fit's seconds and whether the time bound cut the
        fit short (it may use half of the time left)."""
        configure_torch(self.num_threads)
        fit = self.fit
        if fit.kernel == "auto":
            fit = replace(fit, kernel="matern" if inp.space.is_mixed else "matern-gamma")
        left = inp.time_left()
        timeout = None if math.isinf(left) else max(0.0, left / 2)
        model, state, info = fit_gp(inp.x, inp.y, inp.model_state, fit, timeout_s=timeout)
        return model, state, info.seconds, info.truncated

    def _anchors(self, inp: StrategyInput) -> np.ndarray:
        """Observed points ordered best first (by the scalarised objective)."""
        y = inp.y[:, : inp.n_objectives]
        w = inp.weights if inp.weights is not None else np.ones(inp.n_objectives)
        span = np.ptp(y, axis=0)
        span[span == 0] = 1.0
        score = ((y - y.min(axis=0)) / span) @ w
        if inp.constraints:
            ok = np.all([c.satisfied(inp.y) for c in inp.constraints], axis=0)
            score = np.where(ok, score, score - 1e3)
        return inp.x[np.argsort(-score)[:8]]

    def _fallback(self, inp: StrategyInput, q: int, reason: str) -> Suggestion:
        """Random new points when the model cannot be used, with the reason."""
        log.warning("%s: %s; suggesting random points", self.name, reason)
        s = RandomSearch().suggest(inp, q)
        return Suggestion(s.x, inp.model_state, {"phase": "fallback", "reason": reason})

    def _fill(self, inp: StrategyInput, chosen: list[np.ndarray], q: int) -> int:
        """Top ``chosen`` up to ``q`` random new points (the time bound was reached); returns
        how many were added."""
        missing = q - len(chosen)
        if missing > 0:
            taken = np.vstack([inp.avoid_points, *[c[None] for c in chosen]])
            rng = np.random.default_rng([inp.seed, inp.index, len(chosen)])
            chosen.extend(
                _fill_unique(inp.space, np.zeros((0, inp.space.dim)), taken, missing, rng)
            )
        return max(0, missing)

    def _warmup(self, inp: StrategyInput, q: int) -> Suggestion:
        s = SobolSearch().suggest(inp, q)
        return replace(s, model_state=inp.model_state)

    def _objective(self, inp: StrategyInput) -> Any:
        """MC objective over the modelled columns (scalarised or the first objective)."""
        from botorch.acquisition.objective import GenericMCObjective

        torch = configure_torch(None)
        if inp.weights is not None:
            w = torch.as_tensor(np.asarray(inp.weights, dtype=np.float64))
            k = inp.n_objectives

            def weighted(samples: Any, X: Any = None) -> Any:
                return samples[..., :k] @ w

            return GenericMCObjective(weighted)

        def first(samples: Any, X: Any = None) -> Any:
            return samples[..., 0]

        return GenericMCObjective(first)

    def _constraints(self, inp: StrategyInput) -> list[Callable[[Any], Any]] | None:
        return [c.slack for c in inp.constraints] or None


@dataclass(frozen=True)
class QLogNEI(_ModelStrategy):
    """qLogNoisyExpectedImprovement with warm-started GP fits (the default strategy)."""

    name: str = "qlognei"
    max_baseline: int = 8

    def _baseline(self, model: Any, inp: StrategyInput, objective: Any, constraints: Any) -> Any:
        """The observed points that may still be the best, at most ``max_baseline`` of them.

        Every acquisition call samples the joint posterior of the candidate and this baseline,
        so its size is the cost of a call. BoTorch's pruning keeps every point that won in any
        of 2,048 posterior samples: on Hartmann6 at n=50 that is 1 to 17 points, near-duplicates
        around the optimum whose joint covariance also needs Cholesky jitter. Keeping the most
        probable ``max_baseline`` (BoTorch's ``max_frac``) bounds the cost.
        """
        import torch
        from botorch.acquisition.utils import prune_inferior_points

        x = torch.as_tensor(inp.x)
        frac = min(1.0, self.max_baseline / max(1, len(x)))
        return prune_inferior_points(
            model, x, objective=objective, constraints=constraints, max_frac=frac
        )

    def _suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.sampling.normal import SobolQMCNormalSampler

        torch = configure_torch(self.num_threads)
        model, state, fit_s, truncated = self._fit(inp)
        t0 = time.perf_counter()
        space = inp.space
        avoid, pending = inp.avoid_points, inp.pending_points
        objective = self._objective(inp)
        constraints = self._constraints(inp)
        anchors = self._anchors(inp)
        # The same posterior without GPyTorch's per-call overhead (single output only).
        acq_model = lean_posterior_model(model) or model
        chosen: list[np.ndarray] = []
        values: list[float] = []
        with torch.random.fork_rng():
            torch.manual_seed(inp.seed)
            baseline = self._baseline(acq_model, inp, objective, constraints)
            for j in range(q):
                if j and inp.time_left() <= 0:
                    break
                x_pending = (
                    np.concatenate([pending, *[c[None] for c in chosen]])
                    if (len(pending) or chosen)
                    else None
                )
                acqf = qLogNoisyExpectedImprovement(
                    model=acq_model,
                    X_baseline=baseline,
                    sampler=SobolQMCNormalSampler(
                        sample_shape=torch.Size([self.mc_samples]), seed=inp.seed + j
                    ),
                    objective=objective,
                    constraints=constraints,
                    X_pending=None if x_pending is None else torch.as_tensor(x_pending),
                    prune_baseline=False,
                    cache_root=acq_model is model,
                )
                pool, n_global = candidate_pool(
                    space,
                    inp.seed * 7919 + j,
                    self.acqf_options.raw_sobol,
                    anchors,
                    self.acqf_options.raw_local,
                )
                taken = np.vstack([avoid, *[c[None] for c in chosen]]) if chosen else avoid
                x, v = maximize_acqf(
                    acqf,
                    space,
                    pool,
                    taken,
                    self.acqf_options,
                    n_global=n_global,
                    deadline=inp.deadline,
                )
                if x is None:
                    rng = np.random.default_rng([inp.seed, inp.index, j])
                    x = _fill_unique(space, np.zeros((0, space.dim)), taken, 1, rng)[0]
                chosen.append(x)
                values.append(v)
        filled = self._fill(inp, chosen, q)
        acq_s = time.perf_counter() - t0
        return Suggestion(
            np.stack(chosen),
            state,
            {
                "phase": "model",
                "fit_s": fit_s,
                "acq_s": acq_s,
                "acq_value": values[0],
                "baseline": int(baseline.shape[0]),
                "truncated": truncated or inp.time_left() <= 0,
                "filled": filled,
            },
        )


@dataclass(frozen=True)
class ThompsonSampling(_ModelStrategy):
    """Thompson sampling: one pathwise posterior sample per batch slot, each maximised over a
    shared candidate pool (Sobol plus the incumbents' neighbourhoods).

    Matheron paths evaluate a posterior sample at any point for O(features) cost, so a batch
    of 8 costs one fit plus eight cheap scans of the pool, not a joint sample over the pool.
    """

    name: str = "thompson"
    pool_sobol: int = 1024
    pool_local: int = 512

    def _suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        from botorch.sampling.pathwise import draw_matheron_paths

        torch = configure_torch(self.num_threads)
        model, state, fit_s, truncated = self._fit(inp)
        t0 = time.perf_counter()
        space = inp.space
        avoid = inp.avoid_points
        pool, _ = candidate_pool(
            space, inp.seed * 7919, self.pool_sobol, self._anchors(inp), self.pool_local
        )
        with torch.random.fork_rng():
            torch.manual_seed(inp.seed)
            paths = draw_matheron_paths(model, sample_shape=torch.Size([q]))
            with torch.no_grad():
                samples = paths(torch.as_tensor(pool))  # (q, [m,] N)
        s = samples.detach().numpy()
        if s.ndim == 2:
            s = s[:, None, :]
        # Untransform is affine per output; comparisons only need the right scale for
        # constraints, so use the model's outcome transform to bring samples back.
        tf = getattr(model, "outcome_transform", None)
        if tf is not None and hasattr(tf, "means"):
            means = tf.means.detach().numpy().reshape(-1)
            stdvs = tf.stdvs.detach().numpy().reshape(-1)
            s = s * stdvs[None, :, None] + means[None, :, None]
        ys = np.moveaxis(s, 1, 2)  # (q, N, m)
        if inp.weights is not None:
            obj = ys[..., : inp.n_objectives] @ np.asarray(inp.weights)
        else:
            obj = ys[..., 0]
        for c in inp.constraints:
            obj = np.where(c.satisfied(ys), obj, obj - 1e6)
        chosen: list[np.ndarray] = []
        taken = avoid
        for k in range(q):
            for i in np.argsort(-obj[k]):
                if is_new(pool[i], taken):
                    chosen.append(pool[i])
                    taken = np.vstack([taken, pool[i][None]])
                    break
        if len(chosen) < q:
            rng = np.random.default_rng([inp.seed, inp.index])
            extra = _fill_unique(space, np.zeros((0, space.dim)), taken, q - len(chosen), rng)
            chosen.extend(extra)
        return Suggestion(
            np.stack(chosen),
            state,
            {
                "phase": "model",
                "fit_s": fit_s,
                "acq_s": time.perf_counter() - t0,
                "truncated": truncated,
            },
        )


@dataclass(frozen=True)
class QLogNEHVI(_ModelStrategy):
    """qLogNoisyExpectedHypervolumeImprovement for several objectives (sequential greedy
    batches, pending points as ``X_pending``, optional outcome constraints).

    64 QMC samples instead of 128: the hypervolume estimate's error at 64 is far below the
    differences that decide the arg-max here, and it halves the cost per evaluation.
    """

    name: str = "qlognehvi"
    mc_samples: int = 64
    acqf_options: AcqfOptions = field(
        default_factory=lambda: AcqfOptions(raw_sobol=128, raw_local=128, restarts=2, maxiter=40)
    )

    def suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        if inp.n_objectives < 2:
            raise InputError("qlognehvi needs at least two objectives; use qlognei")
        return super().suggest(inp, q)

    def _suggest(self, inp: StrategyInput, q: int) -> Suggestion:
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.acquisition.multi_objective.objective import (
            IdentityMCMultiOutputObjective,
        )
        from botorch.sampling.normal import SobolQMCNormalSampler

        torch = configure_torch(self.num_threads)
        model, state, fit_s, truncated = self._fit(inp)
        t0 = time.perf_counter()
        space = inp.space
        k = inp.n_objectives
        ref = inp.ref_point
        if ref is None:
            from botorch.utils.multi_objective.hypervolume import infer_reference_point

            ref = infer_reference_point(torch.as_tensor(inp.y[:, :k])).numpy()
        avoid, pending = inp.avoid_points, inp.pending_points
        chosen: list[np.ndarray] = []
        values: list[float] = []
        anchors = self._anchors(inp)
        with torch.random.fork_rng():
            torch.manual_seed(inp.seed)
            for j in range(q):
                if j and inp.time_left() <= 0:
                    break
                x_pending = (
                    np.concatenate([pending, *[c[None] for c in chosen]])
                    if (len(pending) or chosen)
                    else None
                )
                acqf = qLogNoisyExpectedHypervolumeImprovement(
                    model=model,
                    ref_point=torch.as_tensor(np.asarray(ref, dtype=np.float64)).tolist(),
                    X_baseline=torch.as_tensor(inp.x),
                    sampler=SobolQMCNormalSampler(
                        sample_shape=torch.Size([self.mc_samples]), seed=inp.seed + j
                    ),
                    objective=IdentityMCMultiOutputObjective(outcomes=list(range(k))),
                    constraints=self._constraints(inp),
                    X_pending=None if x_pending is None else torch.as_tensor(x_pending),
                    prune_baseline=True,
                    cache_root=True,
                )
                pool, n_global = candidate_pool(
                    space,
                    inp.seed * 7919 + j,
                    self.acqf_options.raw_sobol,
                    anchors,
                    self.acqf_options.raw_local,
                )
                taken = np.vstack([avoid, *[c[None] for c in chosen]]) if chosen else avoid
                x, v = maximize_acqf(
                    acqf,
                    space,
                    pool,
                    taken,
                    self.acqf_options,
                    n_global=n_global,
                    deadline=inp.deadline,
                )
                if x is None:
                    rng = np.random.default_rng([inp.seed, inp.index, j])
                    x = _fill_unique(space, np.zeros((0, space.dim)), taken, 1, rng)[0]
                chosen.append(x)
                values.append(v)
        filled = self._fill(inp, chosen, q)
        return Suggestion(
            np.stack(chosen),
            state,
            {
                "phase": "model",
                "fit_s": fit_s,
                "acq_s": time.perf_counter() - t0,
                "acq_value": values[0],
                "truncated": truncated or inp.time_left() <= 0,
                "filled": filled,
            },
        )


STRATEGIES: dict[str, Callable[[], Strategy]] = {}


def register_strategy(name: str, factory: Callable[[], Strategy]) -> None:
    """Add a strategy factory under ``name`` (refuses duplicates)."""
    if name in STRATEGIES:
        raise InputError(f"strategy {name!r} is already registered")
    STRATEGIES[name] = factory


register_strategy("sobol", SobolSearch)
register_strategy("random", RandomSearch)
register_strategy("qlognei", QLogNEI)
register_strategy("thompson", ThompsonSampling)
register_strategy("qlognehvi", QLogNEHVI)


def get_strategy(name: str, *, n_objectives: int = 1, weighted: bool = False) -> Strategy:
    """The strategy registered as ``name``; ``default`` picks by the number of objectives."""
    if name == "default":
        name = "qlognehvi" if n_objectives > 1 and not weighted else "qlognei"
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise InputError(
            f"unknown strategy {name!r}; known: default, {', '.join(sorted(STRATEGIES))}"
        ) from None
