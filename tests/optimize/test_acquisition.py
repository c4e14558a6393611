"""The acquisition optimiser's time bound: the best candidate found so far, never an error."""

from __future__ import annotations

import time

import numpy as np
import pytest

from workbench.optimize import Categorical, Real, SearchSpace
from workbench.optimize.acquisition import AcqfOptions, candidate_pool, maximize_acqf

torch = pytest.importorskip("torch")


class SlowPeak:
    """``-|x - 0.3|^2`` that costs ``delay_s`` a call (an expensive acquisition function)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.delay_s)
        return -((X - 0.3) ** 2).sum(dim=-1).sum(dim=-1)


@pytest.mark.parametrize(
    "space",
    [
        SearchSpace({f"x{i}": Real(0, 1) for i in range(4)}),
        SearchSpace({"x0": Real(0, 1), "x1": Real(0, 1), "c": Categorical(["a", "b"])}),
    ],
    ids=["continuous", "mixed"],
)
def test_a_deadline_stops_lbfgs_and_keeps_its_best_point(space: SearchSpace) -> None:
    pool, n_global = candidate_pool(space, 0, 64, np.zeros((0, space.dim)), 0)
    options = AcqfOptions(maxiter=200, local_rounds=0)
    free = SlowPeak(0.0)
    _, v_free = maximize_acqf(free, space, pool, np.zeros((0, space.dim)), options)
    pool_best = float(free(torch.as_tensor(pool).unsqueeze(1)).max())
    slow = SlowPeak(0.05)
    start = time.perf_counter()
    x, v = maximize_acqf(
        slow,
        space,
        pool,
        np.zeros((0, space.dim)),
        options,
        n_global=n_global,
        deadline=start + 0.4,
    )
    elapsed = time.perf_counter() - start
    assert x is not None and x.shape == (space.dim,)
    assert 3 <= slow.calls < free.calls  # L-BFGS-B ran and was stopped
    assert elapsed < 0.4 + 1.0  # near the deadline: the running call, then the scoring
    assert v > pool_best  # what L-BFGS-B reached before the deadline is kept
    assert v_free >= v - 1e-9


def test_a_passed_deadline_still_answers_from_the_pool() -> None:
    space = SearchSpace({"x": Real(0, 1), "z": Real(0, 1)})
    pool, _ = candidate_pool(space, 1, 32, np.zeros((0, 2)), 0)
    acqf = SlowPeak(0.0)
    x, v = maximize_acqf(
        acqf, space, pool, np.zeros((0, 2)), AcqfOptions(), deadline=time.perf_counter() - 1
    )
    assert x is not None and acqf.calls == 1  # one batched scoring of the pool, nothing else
    assert v == pytest.approx(float(acqf(torch.as_tensor(pool).unsqueeze(1)).max()))
