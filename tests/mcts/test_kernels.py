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
