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
    ("ab-mcts-a", {"prior_nu": 2.0}),  # the plain sampler (the exact one needs prior_nu = 1)
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


def _build(spec: list[tuple[float, list[float]]], pool: list[float], interleave: int = 0):
    """A root whose children are given by ``spec`` (own score, scores of its own children)
    plus pooled leaves with scores ``pool``; the kernel tree and its reference, built alike.
    ``interleave`` nodes elsewhere after each child spread the root's children's ids."""
    state = init(["a"], algorithm="ab-mcts-a", seed=0)
    t = state.tree
    t.reserve(sum(2 + len(k) + interleave for _, k in spec) + len(pool) + 2 * interleave + 10)
    args = (t.ints, t.floats, t.action_stats, t.node_action_stats, t.header)
    ref = naive.NaiveTree(1)

    def add(parent: int, score: float) -> int:
        new = K.add_child(*args, parent, 0, score, False)
        ref.unpool_path(parent)
        assert ref.add(parent, 0, score) == new
        return new

    other = add(0, 0.1) if interleave else -1
    kids = [(add(0, x), below) for x, below in spec]
    for x in pool:
        add(0, x)
        for _ in range(interleave):
            add(other, 0.1)
    for kid, below in kids:
        for y in below:
            add(kid, y)
    return state, ref


def _shape(name: str):
    """Trees the exact sampler must get right; ``params`` are AB-MCTS-A's defaults."""
    rs = np.random.default_rng(7)
    if name == "sparse-pool":  # the old wide tree: 60 leaves interleaved with 300 others
        spec = [(float(rs.random()), [float(rs.random())]) for _ in range(3)]
        return _build(spec, [float(rs.random() ** 2) for _ in range(60)], interleave=5)
    if name == "busy-node":  # one favourite and 300 heap children whose keys crowd it
        spec = [(0.8, [float(x) for x in np.clip(rs.normal(0.8, 0.05, 400), 0, 1)])]
        for m in rs.uniform(0.66, 0.78, 300):
            spec.append((float(m), [float(x) for x in np.clip(rs.normal(m, 0.05, 29), 0, 1)]))
        return _build(spec, [float(x) for x in rs.uniform(0.2, 0.6, 40)])
    if name == "heavy-tails":  # 200 heap children with two visits (t with 3 dof)
        spec = [(float(x), [float(y)]) for x, y in rs.uniform(0.3, 0.9, (200, 2))]
        return _build(spec, [float(x) for x in rs.uniform(0.0, 0.1, 30)])
    if name == "low-pool":  # a pool of poor leaves: the sweep runs past the dominated range
        return _build([], [float(x) for x in rs.uniform(0.0, 0.1, 40)])
    raise ValueError(name)


SHAPES = ["sparse-pool", "busy-node", "heavy-tails", "low-pool"]


@pytest.mark.parametrize("shape", SHAPES)
def test_exact_sampler_matches_reference(shape: str) -> None:
    """Same tree, same seed: the kernel's sampler and its plain-Python twin pick alike."""
    state, ref = _shape(shape)
    t, p = state.tree, state.params
    assert t.size == len(ref.nodes)
    rk, rr = R.rng_seed(3), naive.Rng(3)
    plist = [float(x) for x in p]
    for _ in range(150):
        got = K._best_child_pooled(t.ints, t.floats, t.header, p, rk, 0, 10**9)
        assert got == naive.best_child_pooled(ref, plist, rr, 0, 10**9)


def test_tail_quantile_bounds_the_t_tail() -> None:
    """The key quantile ``c`` of a child with ``nu`` dof: the envelope's mass above it is
    ``r`` times the tail budget, ``r <= 1``, and the t tail above ``c`` (SciPy) is below it."""
    from scipy import stats

    for nu in (1.5, 2.0, 3.0, 7.5, 31.0, 400.0, 1e5):
        c, r = K.tail_quantile(nu)
        assert c > 1.0 and 1.0 - 1e-8 < r <= 1.0
        assert stats.t(nu).sf(c) <= r * K._TAIL
        assert stats.t(nu).sf(c) > 0.5 * K._TAIL  # and not wastefully loose
        xs = np.linspace(c, 50 * c, 400)
        b = c * c * (nu + 1) / (nu + c * c)
        assert np.all(stats.t(nu).pdf(xs) <= stats.t(nu).pdf(c) * (xs / c) ** -b * (1 + 1e-12))


@pytest.mark.parametrize("shape", SHAPES)
def test_exact_sampler_has_the_plain_distribution(shape: str) -> None:
    """The fast sampler picks each child with the probability the plain O(width) sampler
    (:func:`_best_child`, one posterior draw per child) gives it, on identical trees.

    Chi-square test of homogeneity over 40,000 picks each (children picked fewer than 10
    times in all share one cell), alpha = 1e-4: a correct sampler fails about once in
    10,000 seeds (the seeds are fixed, so the outcome is too). Power: two points of
    probability moved between two cells of 10 % each gives a non-centrality of about 44,
    caught with probability above 0.9 even with 40 cells."""
    from scipy import stats

    state, _ = _shape(shape)
    t, p = state.tree, state.params
    ra, rb = R.rng_seed(11), R.rng_seed(12)
    ca = np.zeros(t.size, dtype=np.int64)
    cb = np.zeros(t.size, dtype=np.int64)
    for _ in range(40_000):
        ca[K._best_child_pooled(t.ints, t.floats, t.header, p, ra, 0, 10**9)] += 1
        cb[K._best_child(t.ints, t.floats, p, rb, 0, T.ALGO_AB_MCTS_A, 10**9)] += 1
    total = ca + cb
    big = total >= 10
    rows = np.vstack([ca[big], cb[big]])
    rest = np.array([[ca[~big].sum()], [cb[~big].sum()]])
    if rest.sum() > 0:
        rows = np.hstack([rows, rest])
    assert rows.shape[1] >= 3
    assert stats.chi2_contingency(rows)[1] > 1e-4
