"""Maximising an acquisition function over a (mixed, constrained) search space, quickly.

BoTorch's tutorial settings (10 restarts from 512 raw samples, L-BFGS until convergence)
cost 0.6-1 s per suggestion at n=50; most of it is spent refining starts that end in the
same basin. The recipe here, measured on Hartmann6 (50 evaluations, 10 seeds: median regret
0.0018-0.0027 for every setting below, against 0.009 with 60 L-BFGS iterations and starts
chosen by value only, which crowded around the incumbent):

1. A **candidate pool**: scrambled Sobol points plus Gaussian perturbations of the best
   observed points at three scales (0.01, 0.05, 0.15 of each unit side; categoricals
   resampled with probability 0.2). Local candidates matter: the incumbent's neighbourhood
   is where expected improvement concentrates once a model is fitted, and Sobol alone
   rarely lands there in six or more dimensions.
2. The pool is scored in one batched call, and the best ``restarts`` (4: three from the Sobol
   part, one from the local part) seed a batched L-BFGS-B capped at 12 iterations and 6
   line-search steps (each acquisition call costs ~3-4 ms at n=50 even on the lean
   posterior, so the call count is the latency): ``gen_candidates_scipy``, SLSQP when
   linear constraints are present.
   Integer and categorical columns are **held fixed per start** (``fixed_features`` with one
   value per start), so continuous columns are optimised exactly for each discrete
   combination that scored well, and no fractional value is ever proposed. On such mixed
   spaces 12 starts are taken (each start covers one discrete combination; the batched
   L-BFGS makes extra starts cheap): on the LLM simulator (50 evaluations, 10 seeds) median
   score regret went from 0.0163 with 4 starts and 3 local-search rounds to 0.0066 with 12
   and 6, against Optuna GPSampler's 0.0088, at 0.126 s instead of 0.115 s per suggestion.
   On Hartmann6 12 starts did not help (median regret 0.0016 against 0.0010), so continuous
   spaces keep 4.
3. On mixed spaces a **discrete local search** moves the best point to a neighbouring
   category or integer while that raises the acquisition value (a few rounds).
4. Candidates are ranked by acquisition value and the first one not already observed,
   failed or pending (after snapping to the space) is returned, so suggestions never repeat.

With a ``deadline`` the pool is still scored in full (one batched call, so there is always a
model-based answer), the stages that would start after the deadline are skipped, and an
L-BFGS-B run still going then is stopped at its next acquisition call, keeping the best point
it had evaluated: the result is the best candidate found so far. (BoTorch's own
``timeout_sec`` would do the last part, but in BoTorch 0.18 it turns off the batched L-BFGS-B,
which runs every start in one call and is the only path that takes per-start fixed features.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.optimize.space import Categorical, Int, SearchSpace

__all__ = ["AcqfOptions", "candidate_pool", "is_new", "maximize_acqf"]


@dataclass(frozen=True)
class AcqfOptions:
    """Budget of the acquisition optimiser.

    Attributes:
        raw_sobol: Sobol points in the pool.
        raw_local: Perturbed copies of the best observed points in the pool.
        restarts: L-BFGS starts taken from the pool's best (continuous spaces).
        maxiter: L-BFGS iterations per start.
        maxls: Line-search steps per L-BFGS iteration (each costs one acquisition call).
        local_rounds: Rounds of the discrete local search (mixed spaces).
        mixed_restarts: L-BFGS starts on spaces with integer or categorical columns.
    """

    raw_sobol: int = 256
    raw_local: int = 64
    restarts: int = 4
    maxiter: int = 12
    maxls: int = 6
    local_rounds: int = 6
    mixed_restarts: int = 12


def candidate_pool(
    space: SearchSpace,
    seed: int,
    n_sobol: int,
    anchors: np.ndarray,
    n_local: int,
) -> tuple[np.ndarray, int]:
    """Snapped, feasible candidates (shape ``(N, dim)``): Sobol points and perturbations of
    ``anchors`` (shape ``(k, dim)``, best points first), and how many of the first rows are
    the Sobol ones."""
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    parts = []
    if n_sobol > 0:
        sobol = qmc.Sobol(space.dim, scramble=True, seed=rng).random(n_sobol)
        parts.append(sobol)
    if n_local > 0 and len(anchors):
        anchors = np.atleast_2d(anchors)
        idx = rng.integers(0, len(anchors), size=n_local)
        # Favour the best anchor: half of the local points perturb anchors[0].
        idx[: n_local // 2] = 0
        base = anchors[idx].copy()
        scales = rng.choice([0.01, 0.05, 0.15], size=(n_local, 1))
        noise = rng.normal(0.0, 1.0, size=base.shape) * scales
        numeric = np.zeros(space.dim, dtype=bool)
        for name, p in space.params.items():
            s = space._slices[name]
            if isinstance(p, Categorical):
                flip = rng.random(n_local) < 0.2
                if flip.any():
                    choice = rng.integers(0, p.width, size=int(flip.sum()))
                    block = np.zeros((int(flip.sum()), p.width))
                    block[np.arange(len(choice)), choice] = 1.0
                    base[np.ix_(flip, np.arange(s.start, s.stop))] = block
            else:
                numeric[s] = True
        base[:, numeric] += noise[:, numeric]
        parts.append(np.clip(base, 0.0, 1.0))
    pool = space.snap(np.concatenate(parts)) if parts else np.zeros((0, space.dim))
    keep = space.feasible_unit(pool)
    return pool[keep], int(keep[:n_sobol].sum())


def is_new(x: np.ndarray, avoid: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether the snapped point ``x`` (shape ``(dim,)``) differs from every row of ``avoid``."""
    if len(avoid) == 0:
        return True
    return bool(np.min(np.max(np.abs(avoid - x[None]), axis=1)) > tol)


def _neighbours(space: SearchSpace, x: np.ndarray) -> np.ndarray:
    """Points one categorical switch or one integer step away from ``x``."""
    out = []
    for name, p in space.params.items():
        s = space._slices[name]
        if isinstance(p, Categorical):
            if not np.any(x[s] > 0.5):  # inactive conditional parameter
                continue
            for k in range(p.width):
                if x[s.start + k] < 0.5:
                    y = x.copy()
                    y[s] = 0.0
                    y[s.start + k] = 1.0
                    out.append(y)
        elif isinstance(p, Int):
            value = p.decode(x[s])
            for step in (-1, 1):
                target = value + step
                if p.log:  # a relative step, or the unit step never moves large integers
                    target = round(value * (1.15 if step > 0 else 1 / 1.15)) or value + step
                if p.low <= target <= p.high and target != value:
                    y = x.copy()
                    y[s] = p.encode(target)
                    out.append(y)
    if not out:
        return np.zeros((0, space.dim))
    pts = space.snap(np.stack(out))
    return pts[space.feasible_unit(pts)]


def _quiet_gen(*args: Any, **kwargs: Any) -> Any:
    """``gen_candidates_scipy`` without its warnings: a line search that stops early keeps its
    best point, which is all the caller needs."""
    import warnings

    from botorch.generation.gen import gen_candidates_scipy

    # BoTorch forces "always" for its OptimizationWarning; recording swallows it.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("ignore")
        return gen_candidates_scipy(*args, **kwargs)


class _OutOfTime(Exception):
    """Raised inside an optimiser's acquisition call once the deadline has passed."""


class _Watched:
    """An acquisition function that remembers the best point it evaluated and stops the
    optimiser calling it once ``deadline`` (a ``time.perf_counter()`` value) has passed."""

    def __init__(self, acqf: Callable[[Any], Any], deadline: float) -> None:
        self.acqf = acqf
        self.deadline = deadline
        self.best_x: np.ndarray | None = None
        self.best_v = -np.inf

    def __call__(self, X: Any) -> Any:
        if time.perf_counter() >= self.deadline:
            raise _OutOfTime
        values = self.acqf(X)
        v = values.detach().reshape(-1).numpy()
        if v.size and np.isfinite(v).any():
            i = int(np.nanargmax(np.where(np.isfinite(v), v, -np.inf)))
            if v[i] > self.best_v:
                self.best_v = float(v[i])
                self.best_x = X.detach().reshape(len(v), -1)[i].numpy().copy()
        return values


def maximize_acqf(
    acqf: Callable[[Any], Any],
    space: SearchSpace,
    pool: np.ndarray,
    avoid: np.ndarray,
    options: AcqfOptions,
    *,
    optimise: bool = True,
    n_global: int | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray | None, float]:
    """Best new point for ``acqf`` (a BoTorch acquisition function on ``b x 1 x d``).

    Args:
        acqf: The acquisition function.
        space: The search space (for snapping, constraints and discrete columns).
        pool: Candidate points (shape ``(N, dim)``, snapped and feasible).
        avoid: Points not to propose again (shape ``(k, dim)``).
        options: Budget.
        optimise: Run the gradient and local-search stages (False: best of the pool).
        n_global: How many of the first rows of ``pool`` are its space-filling part.
        deadline: ``time.perf_counter()`` value after which no stage starts and L-BFGS-B
            stops (``None``: no bound).

    Returns:
        The chosen point (shape ``(dim,)``) or ``None`` when every candidate is taken, and
        its acquisition value.
    """
    import torch

    def score(points: np.ndarray) -> np.ndarray:
        if len(points) == 0:
            return np.zeros(0)
        vals = []
        with torch.no_grad():
            for chunk in np.array_split(points, max(1, len(points) // 512 + 1)):
                if len(chunk):
                    vals.append(acqf(torch.as_tensor(chunk).unsqueeze(1)).detach().numpy())
        return np.concatenate(vals)

    def time_left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter()

    def out_of_time() -> bool:
        left = time_left()
        return left is not None and left <= 0

    values = score(pool)
    cand = [pool]
    cand_vals = [values]
    if optimise and len(pool) and not out_of_time():
        # Most starts come from the space-filling part of the pool, one from the incumbents'
        # neighbourhood: starts taken only by value all crowd around the incumbent and the
        # search stalls in its basin (seen on Hartmann6).
        n_global = len(pool) if n_global is None else n_global
        n_local_starts = 1 if len(pool) > n_global else 0
        starts: list[np.ndarray] = []
        restarts = options.mixed_restarts if space.is_mixed else options.restarts
        for part, quota in (
            (np.arange(n_global), restarts - n_local_starts),
            (np.arange(n_global, len(pool)), n_local_starts),
        ):
            taken = 0
            for i in part[np.argsort(-values[part])] if len(part) else []:
                if taken >= quota:
                    break
                if all(np.max(np.abs(pool[i] - s)) > 1e-4 for s in starts):
                    starts.append(pool[i])
                    taken += 1
        init = torch.as_tensor(np.stack(starts)).unsqueeze(1)
        discrete = space.discrete_columns()
        fixed = {c: init[:, 0, c].clone() for c in discrete} or None
        constraints = [
            (torch.as_tensor(cols), torch.as_tensor(coefs, dtype=torch.float64), rhs)
            for cols, coefs, rhs in space.constraints_unit()
        ] or None
        if len(discrete) < space.dim:
            watched = None if deadline is None else _Watched(acqf, deadline)
            target = acqf if watched is None else watched
            rows: list[Any] = []
            try:
                if constraints and fixed:
                    # SLSQP runs one problem at a time and takes scalar fixed values only.
                    for b in range(len(starts)):
                        xb, _ = _quiet_gen(
                            init[b : b + 1],
                            target,
                            lower_bounds=0.0,
                            upper_bounds=1.0,
                            inequality_constraints=constraints,
                            fixed_features={c: float(v[b]) for c, v in fixed.items()},
                            options={"maxiter": options.maxiter, "maxls": options.maxls},
                        )
                        rows.append(xb.detach().reshape(-1))
                else:
                    xs, _ = _quiet_gen(
                        init,
                        target,
                        lower_bounds=0.0,
                        upper_bounds=1.0,
                        inequality_constraints=constraints,
                        fixed_features=fixed,
                        options={"maxiter": options.maxiter, "maxls": options.maxls},
                    )
                    rows.extend(xs.detach().reshape(len(starts), -1))
            except _OutOfTime:  # keep what the finished starts and the running one reached
                if watched is not None and watched.best_x is not None:
                    rows.append(torch.as_tensor(watched.best_x))
            except (RuntimeError, ValueError) as exc:  # keep the pool's best
                import logging

                logging.getLogger(__name__).debug("acquisition L-BFGS failed: %r", exc)
            if rows:
                opt = space.snap(torch.stack(rows).numpy())
                opt = opt[space.feasible_unit(opt)]
                cand.append(opt)
                cand_vals.append(score(opt))
        if discrete and options.local_rounds > 0:
            allx = np.concatenate(cand)
            allv = np.concatenate(cand_vals)
            best = allx[int(np.argmax(allv))]
            best_v = float(np.max(allv))
            for _ in range(options.local_rounds):
                if out_of_time():
                    break
                nb = _neighbours(space, best)
                if len(nb) == 0:
                    break
                nv = score(nb)
                cand.append(nb)
                cand_vals.append(nv)
                if nv.max() <= best_v:
                    break
                best, best_v = nb[int(np.argmax(nv))], float(nv.max())
    allx = np.concatenate(cand)
    allv = np.concatenate(cand_vals)
    for i in np.argsort(-allv, kind="stable"):
        if is_new(allx[i], avoid):
            return allx[i], float(allv[i])
    return None, float("-inf")
