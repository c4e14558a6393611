"""Synthetic tasks for tests, notebooks and benchmarks.

Jitted environments (the fully jitted path, :func:`run`, no Python per step): each is a
:class:`Task` whose ``step_fn(env_params, state, action, depth, rng) -> (child_state, score)``
is a Numba function over ``int64`` states:

* :func:`random_walk` - actions move a walker; the score is its normalised position plus
  Gaussian noise; the best path always takes the largest step (optimum 1).
* :func:`beta_generators` - action ``a`` yields a Beta(alpha_a, beta_a) score at any depth;
  the best action is the one with the highest mean.
* :func:`random_game` - a two-player game tree with uniform leaf values from a hash of the
  path (a P-game); inner nodes are scored by one random play-out; :func:`minimax_value`
  computes the exact value by exhaustive search.

Python generate functions (for :func:`workbench.mcts.search`): :func:`refinement_task` (a
family spanning "resampling pays" to "refinement pays") and :func:`drift_task` (several
generators of different quality whose refinements drift up or down). Bandits:
:func:`bandit_regret` and :func:`lai_robbins_constant`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numba as nb
import numpy as np

from workbench.errors import InputError
from workbench.mcts import _kernels
from workbench.mcts._random import rng_beta, rng_integers, rng_normal, rng_seed, rng_uniform
from workbench.mcts.policies import Algorithm, get_algorithm
from workbench.mcts.tree import Tree
from workbench.mcts.types import ALGO_AB_MCTS_A, F_SUM, I_ACTION, I_VISITS

__all__ = [
    "JitResult",
    "Task",
    "bandit_regret",
    "beta_generators",
    "drift_task",
    "gaussian_walk_task",
    "lai_robbins_constant",
    "minimax_value",
    "random_game",
    "random_walk",
    "refinement_task",
    "run",
]


@dataclass(frozen=True)
class Task:
    """A jitted environment.

    Attributes:
        name: Short name.
        step_fn: Jitted ``(env_params, state, action, depth, rng) -> (state, score)``.
        env_params: ``float64[k]`` parameters of ``step_fn``.
        branching: Actions per node.
        depth: Depth of the terminal nodes.
        two_player: Players alternate by depth; scores are the root player's.
        optimum: The known best value (best path score, or minimax value), if known.
        root_state: ``int64`` state of the root.
    """

    name: str
    step_fn: Any
    env_params: np.ndarray
    branching: int
    depth: int
    two_player: bool = False
    optimum: float | None = None
    root_state: int = 0


_U = np.uint64
IntLike = int | np.int64


@nb.njit(cache=True, nogil=True)
def _mix_u(z: np.uint64) -> np.int64:
    """SplitMix64 finaliser; returns a non-negative int64 (a well-spread hash)."""
    z = z + _U(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    z = z ^ (z >> _U(31))
    return np.int64(z >> _U(1))


@nb.njit(cache=True, nogil=True)
def _mix(x: IntLike) -> np.int64:
    return _mix_u(_U(x))


@nb.njit(cache=True, nogil=True)
def _child(state: IntLike, action: int) -> np.int64:
    """State of the child reached by ``action`` (a hash of the path)."""
    return _mix_u(_U(state) * _U(31) + _U(action + 1))


@nb.njit(cache=True, nogil=True)
def _hash01(x: IntLike) -> float:
    return (_mix(x) >> 10) / 9007199254740992.0


@nb.njit(cache=True, nogil=True)
def _random_walk_step(params: np.ndarray, state: IntLike, action: int, depth: int, rng: np.ndarray):
    b = int(params[0])
    d = params[1]
    pos = state + 2 * action - (b - 1)
    score = 0.5 + pos / (2.0 * d * max(b - 1, 1)) + params[2] * rng_normal(rng)
    return pos, min(max(score, 0.0), 1.0)


def random_walk(branching: int = 5, depth: int = 10, noise: float = 0.1) -> Task:
    """Random walk: action ``a`` moves by ``2a - (branching - 1)``."""
    _check_shape(branching, depth)
    return Task(
        "random-walk",
        _random_walk_step,
        np.array([branching, depth, noise], dtype=np.float64),
        branching,
        depth,
        optimum=1.0,
    )


@nb.njit(cache=True, nogil=True)
def _beta_step(params: np.ndarray, state: IntLike, action: int, depth: int, rng: np.ndarray):
    child = _child(state, action)
    return child, rng_beta(rng, params[2 * action], params[2 * action + 1])


def beta_generators(
    alphas: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0),
    betas: tuple[float, ...] = (6.0, 5.0, 4.0, 3.0, 2.0),
    depth: int = 10,
) -> Task:
    """Action ``a`` scores Beta(alphas[a], betas[a]) at every depth."""
    if len(alphas) != len(betas) or not alphas:
        raise InputError("alphas and betas: need equal, non-zero lengths")
    params = np.empty(2 * len(alphas), dtype=np.float64)
    params[0::2] = alphas
    params[1::2] = betas
    best = max(a / (a + b) for a, b in zip(alphas, betas, strict=True))
    return Task("beta-generators", _beta_step, params, len(alphas), depth, optimum=best)


@nb.njit(cache=True, nogil=True)
def _game_step(params: np.ndarray, state: IntLike, action: int, depth: int, rng: np.ndarray):
    b = int(params[0])
    d = int(params[1])
    child = _child(state, action)
    s = child
    for _ in range(depth, d):
        s = _child(s, rng_integers(rng, b))
    return child, _hash01(s)


@nb.njit(cache=True, nogil=True)
def _minimax(state: IntLike, depth: int, b: int, d: int) -> float:
    if depth == d:
        return _hash01(state)
    best = -1.0 if depth % 2 == 0 else 2.0
    for a in range(b):
        v = _minimax(_child(state, a), depth + 1, b, d)
        best = max(best, v) if depth % 2 == 0 else min(best, v)
    return best


def random_game(branching: int = 3, depth: int = 6, seed: int = 0) -> Task:
    """A two-player P-game: leaf values uniform in [0, 1] from a hash of the path."""
    _check_shape(branching, depth)
    if branching**depth > 20_000_000:
        raise InputError("random_game: branching**depth must be <= 2e7 (exact minimax)")
    root = int(_mix(int(seed) + 12345))
    params = np.array([branching, depth], dtype=np.float64)
    value = float(_minimax(root, 0, branching, depth))
    return Task("random-game", _game_step, params, branching, depth, True, value, root)


def minimax_value(task: Task) -> tuple[float, list[float]]:
    """Exact minimax value of a :func:`random_game` and the value of each root move."""
    b, d = task.branching, task.depth
    moves = [float(_minimax(_child(task.root_state, a), 1, b, d)) for a in range(b)]
    return float(_minimax(task.root_state, 0, b, d)), moves


def _check_shape(branching: int, depth: int) -> None:
    if branching < 1 or depth < 1:
        raise InputError(f"branching and depth: must be >= 1, got {branching}, {depth}")


@dataclass(frozen=True)
class JitResult:
    """Outcome of :func:`run`.

    Attributes:
        iterations: Iterations run (select, expand or revisit, backpropagate).
        tree_size: Nodes in the tree.
        root_value: Mean score backed up to the root.
        best_action: Most visited root action.
        action_values: Mean score under each root action (``nan`` if unvisited).
        action_visits: Visits of each root action.
        elapsed_s: Wall time of the kernel, seconds.
        tree: The tree.
    """

    iterations: int
    tree_size: int
    root_value: float
    best_action: int
    action_values: list[float]
    action_visits: list[int]
    elapsed_s: float
    tree: Tree = field(repr=False)

    @property
    def iterations_per_s(self) -> float:
        return self.iterations / self.elapsed_s if self.elapsed_s > 0 else math.inf


def run(
    task: Task,
    iterations: int,
    *,
    algorithm: str | Algorithm = "uct",
    seed: int = 0,
    two_player: bool | None = None,
    **knobs: Any,
) -> JitResult:
    """Search ``task`` for ``iterations`` iterations entirely inside Numba.

    ``algorithm`` must be ``"uct"`` or ``"thompson"`` (the expansion rule is the classic
    one: expand the first untried action on the path). Thompson sampling defaults to Beta
    posteriors, which need scores in [0, 1] (all tasks here score in [0, 1]).
    ``two_player`` overrides the task's flag; ``False`` on a two-player game is the classic
    wrong-sign backpropagation (every level maximises the root player's score), kept for
    tests that must see a broken search fail.
    """
    algo = get_algorithm(algorithm, **knobs)
    if algo.name not in ("uct", "thompson"):
        raise InputError(f"algorithm: the jitted path runs 'uct' or 'thompson', not {algo.name!r}")
    if iterations < 0:
        raise InputError(f"iterations: must be >= 0, got {iterations}")
    tree = Tree.empty(
        tuple(str(a) for a in range(task.branching)),
        capacity=iterations + 1,
        root_env_state=task.root_state,
    )
    flip = task.two_player if two_player is None else two_player
    params = algo.params(task.branching, two_player=flip)
    rng = rng_seed(int(seed))
    t0 = time.perf_counter()
    _kernels.env_search(
        tree.ints,
        tree.floats,
        tree.header,
        params,
        rng,
        task.step_fn,
        task.env_params,
        task.branching,
        task.depth,
        iterations,
    )
    elapsed = time.perf_counter() - t0
    kids = tree.children(0)
    visits = [0] * task.branching
    values = [math.nan] * task.branching
    for c in kids:
        a = int(tree.ints[I_ACTION, c])
        visits[a] = int(tree.ints[I_VISITS, c])
        values[a] = float(tree.floats[F_SUM, c]) / max(visits[a], 1)
    n_root = int(tree.ints[I_VISITS, 0])
    return JitResult(
        iterations=iterations,
        tree_size=tree.size,
        root_value=float(tree.floats[F_SUM, 0]) / n_root if n_root else math.nan,
        best_action=int(np.argmax(visits)),
        action_values=values,
        action_visits=visits,
        elapsed_s=elapsed,
        tree=tree,
    )


# --- Python generate functions ----------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def refinement_task(mix: float, *, seed: int = 0, noise: float = 0.2) -> Callable[[Any], Any]:
    """One generate function spanning "resampling pays" (``mix = 0``) to "refinement pays"
    (``mix = 1``); the score is ``sigmoid(z - 2)`` of a latent quality ``z``.

    A fresh answer (``parent is None``) is a new idea of quality ``q ~ N(0, 1)`` with
    ``z = q``. Refining moves ``z`` a quarter of the way to the idea's ceiling
    ``q + 4 mix - 1`` plus ``noise * N(0, 1)``: at ``mix = 0`` refinement drags answers
    down (only new ideas help), at ``mix = 1`` it lifts every idea by up to 3 (depth
    pays), and in between both the idea and its refinement matter. The state is the pair
    ``(q, z)``. Deterministic given ``seed`` and the sequence of calls.
    """
    rnd = np.random.default_rng(seed)
    lift = 4.0 * mix - 1.0

    def generate(parent: Any) -> tuple[tuple[float, float], float]:
        if parent is None:
            q = float(rnd.normal())
            z = q
        else:
            q, z = float(parent[0]), float(parent[1])
            z = z + 0.25 * (q + lift - z) + noise * float(rnd.normal())
        return (q, z), _sigmoid(z - 2.0)

    return generate


def gaussian_walk_task(
    sigma: float = 0.1, *, seed: int = 0, start: float = 0.5
) -> Callable[[Any], Any]:
    """One generate function whose scores follow a clipped Gaussian random walk down the tree.

    A child's score is its parent's plus ``sigma * N(0, 1)``, clipped to [0, 1]; a fresh
    answer (``parent is None``) starts from ``start``. The state is the score itself. Good
    branches drift towards 1 and stick there, so busy nodes collect many children of nearly
    equal promise: the case that stresses the exact sampler. Deterministic given ``seed`` and
    the sequence of calls.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma: must be a positive finite number, got {sigma!r}")
    if not 0.0 <= start <= 1.0:
        raise InputError(f"start: must be in [0, 1], got {start!r}")
    rnd = np.random.default_rng(seed)

    def generate(parent: Any) -> tuple[float, float]:
        x = start if parent is None else float(parent)
        x = min(max(x + sigma * float(rnd.normal()), 0.0), 1.0)
        return x, x

    return generate


def drift_task(
    qualities: tuple[float, ...] = (-0.5, 0.0, 0.5), *, seed: int = 0, step: float = 0.15
) -> dict[str, Callable[[Any], Any]]:
    """Several generators ``g0, g1, ...`` of different quality ``q_i``.

    The state is a latent quality ``z``; the score is ``sigmoid(z - 1)`` (never saturates).
    Generator ``i`` answers from scratch with ``z ~ N(q_i, 1)`` and refines a parent by
    ``z + step * q_i + 0.3 N(0, 1)``, so good generators' refinements drift up and poor
    ones' drift down. The best generator is the one with the highest quality.
    Deterministic given ``seed`` and the sequence of calls.
    """
    rnd = np.random.default_rng(seed)

    def make(q: float) -> Callable[[Any], Any]:
        def generate(parent: Any) -> tuple[float, float]:
            if parent is None:
                z = q + float(rnd.normal())
            else:
                z = float(parent) + step * q + 0.3 * float(rnd.normal())
            return z, _sigmoid(z - 1.0)

        return generate

    return {f"g{i}": make(q) for i, q in enumerate(qualities)}


# --- bandits ------------------------------------------------------------------------------
_POLICIES = ("thompson", "epsilon-greedy")


@nb.njit(cache=True, nogil=True)
def _bandit_thompson(
    ints: np.ndarray,
    floats: np.ndarray,
    action_stats: np.ndarray,
    node_action_stats: np.ndarray,
    header: np.ndarray,
    params: np.ndarray,
    means: np.ndarray,
    checkpoints: np.ndarray,
    rng: np.ndarray,
    out: np.ndarray,
) -> None:
    """One Bernoulli-bandit run through the search's own kernels: each pull is a GEN
    decision at the root (the generator chosen by :func:`_kernels._choose_action`, as
    AB-MCTS-A chooses one) and its reward is added by :func:`_kernels.add_child`, which
    updates the generators' posteriors; ``out[c]`` is the pseudo-regret at
    ``checkpoints[c]``."""
    best = means.max()
    regret = 0.0
    c = 0
    for t in range(1, checkpoints[-1] + 1):
        arm = _kernels._choose_action(
            ints, floats, action_stats, node_action_stats, params, rng, 0, ALGO_AB_MCTS_A
        )
        x = 1.0 if rng_uniform(rng) < means[arm] else 0.0
        _kernels.add_child(ints, floats, action_stats, node_action_stats, header, 0, arm, x, False)
        regret += best - means[arm]
        if t == checkpoints[c]:
            out[c] = regret
            c += 1


@nb.njit(cache=True, nogil=True)
def _bandit_epsilon_greedy(
    means: np.ndarray, checkpoints: np.ndarray, eps: float, rng: np.ndarray, out: np.ndarray
) -> None:
    """The epsilon-greedy baseline (explore with probability ``eps``, else the best
    empirical mean; an untried arm counts as 1)."""
    k = means.shape[0]
    best = means.max()
    pulls = np.zeros(k)
    wins = np.zeros(k)
    regret = 0.0
    c = 0
    for t in range(1, checkpoints[-1] + 1):
        arm = 0
        if rng_uniform(rng) < eps:
            arm = rng_integers(rng, k)
        else:
            top = -1.0
            for i in range(k):
                v = wins[i] / pulls[i] if pulls[i] > 0 else 1.0
                if v > top:
                    top = v
                    arm = i
        x = 1.0 if rng_uniform(rng) < means[arm] else 0.0
        pulls[arm] += 1.0
        wins[arm] += x
        regret += best - means[arm]
        if t == checkpoints[c]:
            out[c] = regret
            c += 1


def bandit_regret(
    means: tuple[float, ...],
    checkpoints: np.ndarray | list[int],
    *,
    runs: int = 100,
    policy: str = "thompson",
    epsilon: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Pseudo-regret of a Bernoulli bandit, ``float64[runs, len(checkpoints)]``.

    ``"thompson"`` is the search itself, not a separate sampler: each arm is a generator,
    every pull is a GEN decision at the root of a fresh AB-MCTS-A tree (Beta(1, 1) priors)
    and its reward is told like any generated score, so the generator choice and the
    posterior updates under test are those of :func:`workbench.mcts.search`. A run holds
    one node per pull (about 200 bytes each). ``"epsilon-greedy"`` is the usual baseline
    (explore with probability ``epsilon``, else the best empirical mean; untried arms count
    as 1). Both run jitted with the seeded generator.
    """
    if policy not in _POLICIES:
        raise InputError(f"policy={policy!r}; known: {', '.join(_POLICIES)}")
    cps = np.asarray(checkpoints, dtype=np.int64)
    if cps.ndim != 1 or cps.size == 0 or np.any(np.diff(cps) <= 0) or cps[0] < 1:
        raise InputError("checkpoints: need increasing positive integers")
    m = np.asarray(means, dtype=np.float64)
    if m.size < 2 or np.any((m < 0) | (m > 1)):
        raise InputError("means: need at least two probabilities in [0, 1]")
    rng = rng_seed(int(seed))
    out = np.zeros((int(runs), cps.size))
    if policy == "epsilon-greedy":
        for r in range(int(runs)):
            _bandit_epsilon_greedy(m, cps, float(epsilon), rng, out[r])
        return out
    algo = get_algorithm("ab-mcts-a", dist="beta", prior_alpha=1.0, prior_beta=1.0)
    actions = tuple(f"arm{i}" for i in range(m.size))
    params = algo.params(m.size, max_depth=1)
    for r in range(int(runs)):
        tree = Tree.empty(actions, capacity=int(cps[-1]) + 1)
        _bandit_thompson(
            tree.ints,
            tree.floats,
            tree.action_stats,
            tree.node_action_stats,
            tree.header,
            params,
            m,
            cps,
            rng,
            out[r],
        )
    return out


def lai_robbins_constant(means: tuple[float, ...]) -> float:
    """``sum over suboptimal arms of gap / KL(mean_i, best)`` (Bernoulli KL): the slope of
    the best achievable expected regret against ``log T``."""
    best = max(means)
    total = 0.0
    for p in means:
        if p < best:
            kl = p * math.log(p / best) + (1 - p) * math.log((1 - p) / (1 - best))
            total += (best - p) / kl
    return total
