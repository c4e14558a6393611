"""Synthetic tasks: jitted environments, bandits and generate-function families."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.mcts import tasks


def test_jitted_run_shapes_and_limits() -> None:
    task = tasks.random_walk(3, 4)
    r = tasks.run(task, 500, algorithm="thompson", seed=1)
    assert r.iterations == 500 and r.tree_size <= 501 and sum(r.action_visits) == 500
    assert r.iterations_per_s > 0 and 0 <= r.root_value <= 1
    with pytest.raises(InputError, match="jitted path"):
        tasks.run(task, 10, algorithm="ab-mcts-a")
    with pytest.raises(InputError):
        tasks.random_game(10, 10)  # too big for exact minimax
    beta = tasks.beta_generators((1.0, 9.0), (9.0, 1.0), depth=3)
    assert beta.optimum == pytest.approx(0.9)


def test_uct_finds_the_minimax_move() -> None:
    game = tasks.random_game(3, 5, seed=3)
    value, moves = tasks.minimax_value(game)
    r = tasks.run(game, 50_000, seed=0)
    assert abs(r.root_value - value) < 0.02
    assert abs(moves[r.best_action] - value) < 0.02
    wrong = tasks.run(game, 50_000, seed=0, two_player=False)
    assert abs(wrong.root_value - value) > 0.1


def test_bandit_regret() -> None:
    cps = [10, 100, 1000]
    ts = tasks.bandit_regret((0.7, 0.4), cps, runs=40, seed=0)
    eg = tasks.bandit_regret((0.7, 0.4), cps, runs=40, policy="epsilon-greedy", seed=0)
    assert ts.shape == (40, 3) and np.all(np.diff(ts, axis=1) >= 0)
    assert ts[:, -1].mean() < eg[:, -1].mean()
    assert np.array_equal(ts, tasks.bandit_regret((0.7, 0.4), cps, runs=40, seed=0))
    with pytest.raises(InputError):
        tasks.bandit_regret((0.5,), cps)
    with pytest.raises(InputError):
        tasks.bandit_regret((0.5, 0.4), [10, 5])
    with pytest.raises(InputError):
        tasks.bandit_regret((0.5, 0.4), cps, policy="ucb")
    with pytest.raises(InputError):
        tasks.bandit_regret((0.5, 0.4), cps, policy="frozen-thompson")
    kl = 0.6 * math.log(0.6 / 0.7) + 0.4 * math.log(0.4 / 0.3)
    assert tasks.lai_robbins_constant((0.7, 0.6)) == pytest.approx(0.1 / kl)


def test_generate_function_families_are_deterministic() -> None:
    a, b = tasks.refinement_task(0.5, seed=3), tasks.refinement_task(0.5, seed=3)
    s1, s2 = a(None), b(None)
    assert s1 == s2 and 0 <= s1[1] <= 1
    assert a(s1[0]) == b(s2[0])
    fns = tasks.drift_task(seed=1)
    assert sorted(fns) == ["g0", "g1", "g2"]
    state, score = fns["g2"](None)
    assert 0 <= score <= 1 and 0 <= fns["g0"](state)[1] <= 1


def test_bandit_runs_through_the_search_kernels() -> None:
    """Thompson sampling on a bandit is the search's own GEN decision at the root: pulls of
    the better arm dominate, and regret per run is bounded by the arm gap times the pulls."""
    r = tasks.bandit_regret((0.9, 0.1), [2000], runs=5, seed=2)
    assert np.all(r[:, 0] <= 0.8 * 2000)
    assert r.mean() < 0.8 * 100  # fewer than 100 of 2000 pulls on the worse arm on average


def test_gaussian_walk_task() -> None:
    """A child's score is its parent's plus N(0, sigma^2), clipped to [0, 1]. Steps from 0.5
    (clipped with probability 6e-7) against N(0, 0.1^2): Kolmogorov-Smirnov over 20,000 steps
    at alpha = 1e-4; a spread of 0.12 instead (distance 0.043, critical 0.016) is caught with
    power above 0.999."""
    from scipy import stats

    fn = tasks.gaussian_walk_task(0.1, seed=4)
    assert tasks.gaussian_walk_task(0.1, seed=4)(None) == fn(None)
    steps = []
    for _ in range(20_000):
        state, score = fn(0.5)
        assert state == score and 0.0 <= score <= 1.0
        steps.append(score - 0.5)
    assert stats.kstest(steps, stats.norm(0, 0.1).cdf).pvalue > 1e-4
    assert all(fn(1.0)[1] <= 1.0 and fn(0.0)[1] >= 0.0 for _ in range(100))
    assert max(fn(1.0)[1] for _ in range(100)) == 1.0  # clipped, not reflected
    with pytest.raises(InputError):
        tasks.gaussian_walk_task(0.0)
    with pytest.raises(InputError):
        tasks.gaussian_walk_task(0.1, start=2.0)
