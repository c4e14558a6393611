"""Kernels against their plain-Python references in ``tests/mcts/naive.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.mcts import naive
from workbench.mcts import _kernels as K
from workbench.mcts import _random as R
from workbench.mcts import init, tasks
from workbench.mcts import types as T
from workbench.mcts.policies import get_algorithm


def _score(step: int, action: int) -> float:
    """A deterministic, varied score sequence."""
    return naive.hash01(step * 7 + action)


ALGOS = [
    ("uct", {}),
    ("thompson", {}),
    ("thompson", {"dist": "gaussian"}),
    ("ab-mcts-a", {}),
    ("ab-mcts-a", {"dist": "beta"}),
    ("multi-model", {}),
    ("ab-mcts-m", {}),
]


@pytest.mark.parametrize(("name", "knobs"), ALGOS)
@pytest.mark.parametrize("batch", [1, 3])
def test_search_matches_reference(name: str, knobs: dict, batch: int) -> None:
    """Same seed, same scores: the kernels and the reference choose the same expansions,
    with pending trials (batch > 1, virtual loss) and a depth limit."""
    state = init(["a", "b", "c"], algorithm=name, seed=5, max_depth=4, virtual_loss=0.2, **knobs)
    ref = naive.NaiveTree(3)
    rng = naive.Rng(5)
    p = [float(x) for x in state.params]
    ids = {0: 0}  # kernel node id -> reference node id
    step = 0
    for _ in range(40):
        from workbench.mcts import ask_batch, tell

        trials = ask_batch(state, batch)
        expected = [naive.select_expansion(ref, p, rng) for _ in range(batch)]
        assert [(ids[t.node], state.actions.index(t.action)) for t in trials] == expected
        for t, (rnode, ract) in zip(trials, expected, strict=True):
            step += 1
            score = _score(step, ract)
            new = tell(state, t, (None, score))
            ids[new] = naive.tell(ref, rnode, ract, score)
    tree = state.tree
    assert tree.size == len(ref.nodes)
    assert int(tree.ints[T.I_DEPTH, : tree.size].max()) <= 4
    assert not tree.ints[T.I_PENDING, : tree.size].any()
    for kid, rid in ids.items():
        n, s, q = ref.stats(rid, 0.0)
        assert tree.ints[T.I_VISITS, kid] == n
        assert math.isclose(tree.floats[T.F_SUM, kid], s, abs_tol=1e-9)
        assert math.isclose(tree.floats[T.F_SUMSQ, kid], q, abs_tol=1e-9)


def test_posterior_and_ucb_match_reference() -> None:
    for name, knobs in ALGOS:
        p = get_algorithm(name, **knobs).params(3)
        state, ref = R.rng_seed(1), naive.Rng(1)
        for n, s, q in [(0, 0, 0), (1, 0.3, 0.09), (5, 2.0, 1.0), (50, 40.0, 33.0)]:
            a = K.posterior_sample(n, s, q, p, state)
            b = naive.posterior_sample(n, s, q, [float(x) for x in p], ref)
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    assert K.ucb_score(0.0, 0.0, 10.0, 1.4) == math.inf
    assert math.isclose(K.ucb_score(4, 2, 10, 1.4), naive.ucb_score(4, 2, 10, 1.4))


@pytest.mark.parametrize("algo", ["uct", "thompson"])
@pytest.mark.parametrize("make", ["game", "walk"])
def test_env_search_matches_reference(algo: str, make: str) -> None:
    if make == "game":
        task, step = tasks.random_game(3, 4, seed=2), naive.game_step
    else:
        task, step = tasks.random_walk(3, 4, noise=0.1), naive.random_walk_step
    res = tasks.run(task, 300, algorithm=algo, seed=11)
    ref = naive.NaiveTree(task.branching, env_state=task.root_state)
    p = [float(x) for x in get_algorithm(algo).params(task.branching, two_player=task.two_player)]
    naive.env_search(
        ref,
        p,
        naive.Rng(11),
        step,
        [float(x) for x in task.env_params],
        task.branching,
        task.depth,
        300,
    )
    tree = res.tree
    assert tree.size == len(ref.nodes)
    for i, node in enumerate(ref.nodes):
        assert tree.ints[T.I_PARENT, i] == node.parent
        assert tree.ints[T.I_ENV_STATE, i] == node.env_state
        assert math.isclose(tree.floats[T.F_SCORE, i], node.score, rel_tol=1e-12)
        n, s, _ = ref.stats(i, 0.0)
        assert tree.ints[T.I_VISITS, i] == n
        assert math.isclose(tree.floats[T.F_SUM, i], s, rel_tol=1e-9, abs_tol=1e-12)


def test_minimax_matches_reference() -> None:
    task = tasks.random_game(3, 5, seed=4)
    assert task.optimum == pytest.approx(naive.minimax(task.root_state, 0, 3, 5), abs=0)
    value, moves = tasks.minimax_value(task)
    assert value == max(moves)


def test_release_pending_restores_counts() -> None:
    state = init(["a"], algorithm="ab-mcts-a", seed=0)
    from workbench.mcts import abandon, ask

    before = state.tree.ints.copy()
    trial = ask(state)
    assert state.tree.ints[T.I_PENDING, 0] == 1
    abandon(state, trial)
    np.testing.assert_array_equal(state.tree.ints, before)


def test_long_ab_mcts_a_run_matches_reference() -> None:
    """Enough steps for wide nodes, so the leaf-pool sweep (pools > 16) runs."""
    state = init(["a"], algorithm="ab-mcts-a", seed=1)
    ref = naive.NaiveTree(1)
    rng = naive.Rng(1)
    p = [float(x) for x in state.params]
    from workbench.mcts import ask, tell

    widest = 0
    for step in range(400):
        trial = ask(state)
        assert (trial.node, 0) == naive.select_expansion(ref, p, rng)
        score = naive.hash01(step)
        assert tell(state, trial, (None, score)) == naive.tell(ref, trial.node, 0, score)
        widest = max(widest, int(state.tree.ints[T.I_N_POOL, : state.tree.size].max()))
    assert widest > 16


def _wide_tree(sparse: bool) -> tuple:
    """A root with 60 leaf children and 3 children that have a child; with ``sparse`` the
    root's children are interleaved with 300 nodes elsewhere (rejection picking misses)."""
    state = init(["a"], algorithm="ab-mcts-a", seed=0)
    t = state.tree
    t.reserve(1000)
    rs = np.random.default_rng(1)
    args = (t.ints, t.floats, t.action_stats, t.node_action_stats, t.header)
    other = K.add_child(*args, 0, 0, 0.1, False)
    for _ in range(60):
        K.add_child(*args, 0, 0, float(rs.random() ** 2), False)
        for _ in range(5 if sparse else 0):
            K.add_child(*args, other, 0, 0.1, False)
    for c in (5, 17, 33):
        K.add_child(*args, c, 0, float(rs.random()), False)
    return state


@pytest.mark.parametrize("sparse", [False, True])
def test_pooled_selection_has_the_exact_distribution(sparse: bool) -> None:
    """The leaf-pool sweep picks each child with the same probability as drawing every
    child's posterior. Chi-square over 40,000 picks each, alpha = 1e-4 (seeded, so the
    outcome is fixed; a true difference of 2 points on a 20 % child is caught)."""
    from scipy import stats

    state = _wide_tree(sparse)
    t, p = state.tree, state.params
    assert t.ints[T.I_N_POOL, 0] > 16
    ra, rb = R.rng_seed(11), R.rng_seed(12)
    ca = np.zeros(t.size, dtype=np.int64)
    cb = np.zeros(t.size, dtype=np.int64)
    for _ in range(40_000):
        ca[K._best_child_pooled(t.ints, t.floats, t.header, p, ra, 0, 10**9)] += 1
        cb[K._best_child(t.ints, t.floats, p, rb, 0, T.ALGO_AB_MCTS_A, 10**9)] += 1
    used = (ca + cb) > 0
    assert stats.chi2_contingency(np.vstack([ca[used], cb[used]]))[1] > 1e-4
