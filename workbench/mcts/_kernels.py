"""Numba kernels of the tree search (arrays and scalars in, arrays and scalars out).

Layouts and indices are documented in :mod:`workbench.mcts.types`. Nothing here validates
input: :mod:`workbench.mcts.tree` and :mod:`workbench.mcts.search` do, and make sure there is
room for one more node before a kernel adds one. Every kernel has a plain-Python twin in
``tests/mcts/naive.py``.

Cost: selection walks one root-to-leaf path and backpropagation walks it back up, so a step
is O(depth x work per node), never a pass over the tree. The work per node is bounded by the
width for UCT and Thompson sampling. For AB-MCTS-A (Gaussian model, TreeQuest's prior) a
node's children that hold only their own score sit in a leaf pool sampled by an exact sweep
in expected O(1) (:func:`_best_child_pooled`); children with descendants are drawn one by
one, so a node costs O(children with descendants) - the part of a step that still grows with
wide, deep trees. AB-MCTS-M and the Beta model draw every child.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from workbench.mcts._random import rng_beta, rng_gamma, rng_integers, rng_normal, rng_uniform
from workbench.mcts.types import (
    ALGO_AB_MCTS_A,
    ALGO_THOMPSON,
    ALGO_UCT,
    DIST_BETA,
    F_GEN_N,
    F_GEN_SUM,
    F_GEN_SUMSQ,
    F_SCORE,
    F_SUM,
    F_SUMSQ,
    H_SIZE,
    H_SWEEP,
    I_ACTION,
    I_DEPTH,
    I_ENV_STATE,
    I_FIRST_CHILD,
    I_LO,
    I_MARK,
    I_N_CHILDREN,
    I_N_POOL,
    I_NEXT_SIBLING,
    I_PARENT,
    I_PENDING,
    I_PENDING_GEN,
    I_POOL,
    I_VISITS,
    I_X_HEAD,
    I_X_NEXT,
    P_ALGO,
    P_C,
    P_DIST,
    P_MAX_DEPTH,
    P_MODEL_CHOICE,
    P_N_ACTIONS,
    P_PRIOR_A,
    P_PRIOR_B,
    P_PRIOR_KAPPA,
    P_PRIOR_M,
    P_PRIOR_NU,
    P_PRIOR_TAU2,
    P_SIGMA0,
    P_TAU_MIN,
    P_TWO_PLAYER,
    P_VIRTUAL,
    P_WIDTH,
)

__all__ = [
    "add_child",
    "env_search",
    "init_root",
    "posterior_sample",
    "release_pending",
    "select_expansion",
    "tell_and_select",
    "ucb_score",
]

_INF = np.inf


@nb.njit(cache=True, nogil=True)
def init_root(ints: np.ndarray, floats: np.ndarray, header: np.ndarray, env_state: int) -> None:
    """Reset the tree to a lone root (node 0)."""
    ints[:, 0] = 0
    floats[:, 0] = 0.0
    ints[I_PARENT, 0] = -1
    ints[I_FIRST_CHILD, 0] = -1
    ints[I_NEXT_SIBLING, 0] = -1
    ints[I_ACTION, 0] = -1
    ints[I_X_HEAD, 0] = -1
    ints[I_X_NEXT, 0] = -1
    ints[I_LO, 0] = -1
    ints[I_ENV_STATE, 0] = env_state
    header[H_SIZE] = 1


@nb.njit(cache=True, nogil=True)
def posterior_sample(n: float, s: float, q: float, params: np.ndarray, rng: np.ndarray) -> float:
    """One Thompson draw of the mean score from sufficient statistics ``(n, sum, sum sq)``.

    Beta: ``Beta(a0 + s, b0 + n - s)`` (scores in [0, 1] count fractionally).
    Gaussian: Normal-Inverse-chi^2 posterior (Murphy 2023, section 3.4.3.3) with prior
    ``(m0, kappa0, nu0, tau0^2)``: ``sigma^2 ~ Inv-chi^2(nu_n, tau_n^2)``,
    ``mu ~ N(m_n, sigma^2 / kappa_n)``; returns ``mu``.
    """
    if int(params[P_DIST]) == DIST_BETA:
        a = params[P_PRIOR_A] + s
        b = params[P_PRIOR_B] + n - s
        return rng_beta(rng, max(a, 1e-12), max(b, 1e-12))
    m0 = params[P_PRIOR_M]
    k0 = params[P_PRIOR_KAPPA]
    nu0 = params[P_PRIOR_NU]
    t0 = params[P_PRIOR_TAU2]
    if n > 0.0:
        ave = s / n
        ss = max(q - n * ave * ave, 0.0)
        kn = k0 + n
        nun = nu0 + n
        mn = (k0 * m0 + s) / kn
        tn = (nu0 * t0 + ss + n * k0 * (m0 - ave) * (m0 - ave) / kn) / nun
    else:
        kn = k0
        nun = nu0
        mn = m0
        tn = t0
    sigma2 = 0.5 * nun * tn / rng_gamma(rng, 0.5 * nun)
    return mn + math.sqrt(sigma2 / kn) * rng_normal(rng)


@nb.njit(cache=True, nogil=True)
def ucb_score(n: float, s: float, parent_n: float, c: float) -> float:
    """UCB1: ``s/n + c sqrt(ln N / n)``; +inf for an unvisited child."""
    if n <= 0.0:
        return _INF
    return s / n + c * math.sqrt(math.log(max(parent_n, 1.0)) / n)


@nb.njit(cache=True, nogil=True)
def _child_stats(ints: np.ndarray, floats: np.ndarray, child: int, vl: float) -> tuple:
    """Subtree statistics of a child with its pending trials as pseudo-observations."""
    pend = float(ints[I_PENDING, child])
    n = float(ints[I_VISITS, child]) + pend
    s = floats[F_SUM, child] + vl * pend
    q = floats[F_SUMSQ, child] + vl * vl * pend
    return n, s, q


@nb.njit(cache=True, nogil=True)
def _best_child(
    ints: np.ndarray,
    floats: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    node: int,
    algo: int,
    max_depth: int,
) -> int:
    """The child UCB1 (``ALGO_UCT``) or Thompson sampling (others) picks; -1 if none is open.

    A child is open when its depth is below ``max_depth``. With ``P_TWO_PLAYER`` the player
    to move at odd depths minimises the root player's score.
    """
    vl = params[P_VIRTUAL]
    flip = params[P_TWO_PLAYER] > 0.0 and ints[I_DEPTH, node] % 2 == 1
    parent_n = float(ints[I_VISITS, node] + ints[I_PENDING, node])
    c = params[P_C]
    best = -1
    best_val = -_INF
    child = ints[I_FIRST_CHILD, node]
    while child >= 0:
        if ints[I_DEPTH, child] < max_depth:
            n, s, q = _child_stats(ints, floats, child, vl)
            if flip:
                # scores live in [0, 1]: the opponent's score is 1 - score
                q = n - 2.0 * s + q
                s = n - s
            if algo == ALGO_UCT:
                val = ucb_score(n, s, parent_n, c)
            else:
                val = posterior_sample(n, s, q, params, rng)
            if val > best_val or best < 0:
                best_val = val
                best = child
        child = ints[I_NEXT_SIBLING, child]
    return best


_SMALL_POOL = 16
_POOL_TRIES = 64


@nb.njit(cache=True, nogil=True)
def _unpool(ints: np.ndarray, node: int) -> None:
    """Move ``node`` from its parent's leaf pool to the parent's explicit list."""
    if ints[I_POOL, node] == 1:
        ints[I_POOL, node] = 0
        parent = ints[I_PARENT, node]
        ints[I_N_POOL, parent] -= 1
        ints[I_X_NEXT, node] = ints[I_X_HEAD, parent]
        ints[I_X_HEAD, parent] = node


@nb.njit(cache=True, nogil=True)
def t2_quantile(p: float) -> float:
    """Quantile of Student's t with 2 degrees of freedom (closed form), ``0 < p < 1``."""
    return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))


@nb.njit(cache=True, nogil=True)
def leaf_location_scale(x: float, params: np.ndarray) -> tuple:
    """Location and scale of the Student-t (2 dof) posterior of a child whose only
    observation is its own score ``x`` (Gaussian model with ``prior_nu = 1``)."""
    m0 = params[P_PRIOR_M]
    k0 = params[P_PRIOR_KAPPA]
    t0 = params[P_PRIOR_TAU2]
    kn = k0 + 1.0
    mn = (k0 * m0 + x) / kn
    tn = (t0 + k0 * (m0 - x) * (m0 - x) / kn) / 2.0
    return mn, math.sqrt(tn / kn)


@nb.njit(cache=True, nogil=True)
def _best_child_pooled(
    ints: np.ndarray,
    floats: np.ndarray,
    header: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    node: int,
    max_depth: int,
) -> int:
    """Thompson sampling over the children of ``node`` without drawing for every leaf child.

    Exact in distribution for the Gaussian model with ``prior_nu = 1`` and scores in
    [0, 1]. Children that left the leaf pool are drawn one by one. A pooled child's draw is
    ``m(x) + s(x) T`` with ``T ~ t_2``, and ``m(x) <= m_max``, ``s(x) <= s_max`` over [0, 1].
    Each pooled child gets an independent uniform ``V`` and the draw ``m + s Q(1 - V)``;
    the uniforms are generated in increasing order (order statistics of ``c`` uniforms) and
    handed to distinct pooled children picked uniformly at random, so the dominating values
    ``m_max + s_max Q(1 - V)`` decrease. While ``V < 1/2`` each child's draw is at most its
    dominating value, so once a dominating value falls below the best draw no remaining
    child can win and the sweep stops. If ``V`` reaches 1/2 or random picking keeps missing,
    the remaining children are drawn one by one with ``V`` uniform above the last one used.
    The expected work is O(1 + explicit children) for large pools instead of O(children).
    """
    vl = params[P_VIRTUAL]
    best = -1
    best_val = -_INF
    child = ints[I_X_HEAD, node]
    while child >= 0:
        if ints[I_DEPTH, child] < max_depth:
            n, s, q = _child_stats(ints, floats, child, vl)
            val = posterior_sample(n, s, q, params, rng)
            if val > best_val or best < 0:
                best_val = val
                best = child
        child = ints[I_X_NEXT, child]
    c = ints[I_N_POOL, node]
    if c == 0 or ints[I_DEPTH, node] + 1 >= max_depth:
        return best
    v_used = 0.0
    sweep = header[H_SWEEP] + 1
    header[H_SWEEP] = sweep
    if c > _SMALL_POOL:
        m_a, s_a = leaf_location_scale(0.0, params)
        m_b, s_b = leaf_location_scale(1.0, params)
        m_max = max(m_a, m_b)
        s_max = max(s_a, s_b)
        lo = ints[I_LO, node]
        span = ints[I_FIRST_CHILD, node] - lo + 1
        j = 0
        while j < c:
            u = 1.0 - rng_uniform(rng)
            v = 1.0 - (1.0 - v_used) * u ** (1.0 / (c - j))
            if v >= 0.5 or v <= 0.0:
                break
            tq = t2_quantile(1.0 - v)
            if best >= 0 and m_max + s_max * tq <= best_val:
                return best
            found = -1
            for _ in range(_POOL_TRIES):
                i = lo + rng_integers(rng, span)
                if ints[I_PARENT, i] == node and ints[I_POOL, i] == 1 and ints[I_MARK, i] != sweep:
                    found = i
                    break
            if found < 0:
                break
            ints[I_MARK, found] = sweep
            m, s = leaf_location_scale(floats[F_SCORE, found], params)
            val = m + s * tq
            if val > best_val or best < 0:
                best_val = val
                best = found
            v_used = v
            j += 1
        if j == c:
            return best
    child = ints[I_FIRST_CHILD, node]
    while child >= 0:
        if ints[I_POOL, child] == 1 and ints[I_MARK, child] != sweep:
            v = v_used + (1.0 - v_used) * rng_uniform(rng)
            v = min(max(v, 1e-300), 1.0 - 1e-16)
            m, s = leaf_location_scale(floats[F_SCORE, child], params)
            val = m + s * t2_quantile(1.0 - v)
            if val > best_val or best < 0:
                best_val = val
                best = child
        child = ints[I_NEXT_SIBLING, child]
    return best


@nb.njit(cache=True, nogil=True)
def _pool_applies(params: np.ndarray) -> bool:
    return (
        int(params[P_DIST]) != DIST_BETA
        and params[P_PRIOR_NU] == 1.0
        and params[P_TWO_PLAYER] == 0.0
    )


@nb.njit(cache=True, nogil=True)
def _choose_action(
    ints: np.ndarray,
    floats: np.ndarray,
    action_stats: np.ndarray,
    node_action_stats: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    node: int,
    algo: int,
) -> int:
    """Which generator expands ``node``: round robin for UCT/Thompson, else Thompson sampling
    over per-generator score posteriors (tree-wide or per node, ``P_MODEL_CHOICE``)."""
    n_actions = int(params[P_N_ACTIONS])
    if n_actions == 1:
        return 0
    if algo in (ALGO_UCT, ALGO_THOMPSON):
        return int((ints[I_N_CHILDREN, node] + ints[I_PENDING_GEN, node]) % n_actions)
    per_node = params[P_MODEL_CHOICE] > 0.0
    best = 0
    best_val = -_INF
    for a in range(n_actions):
        if per_node:
            n = node_action_stats[3 * a, node]
            s = node_action_stats[3 * a + 1, node]
            q = node_action_stats[3 * a + 2, node]
        else:
            n = action_stats[a, 0]
            s = action_stats[a, 1]
            q = action_stats[a, 2]
        val = posterior_sample(n, s, q, params, rng)
        if val > best_val:
            best_val = val
            best = a
    return best


@nb.njit(cache=True, nogil=True)
def _gen_beats_cont(
    ints: np.ndarray, floats: np.ndarray, params: np.ndarray, rng: np.ndarray, node: int
) -> bool:
    """AB-MCTS-A: Thompson draw between the GEN node and the aggregated CONT node."""
    vl = params[P_VIRTUAL]
    pg = float(ints[I_PENDING_GEN, node])
    g = posterior_sample(
        floats[F_GEN_N, node] + pg,
        floats[F_GEN_SUM, node] + vl * pg,
        floats[F_GEN_SUMSQ, node] + vl * vl * pg,
        params,
        rng,
    )
    own = 1.0 if node > 0 else 0.0
    own_s = floats[F_SCORE, node] if node > 0 else 0.0
    pc = float(ints[I_PENDING, node]) - pg
    cn = float(ints[I_VISITS, node]) - own - floats[F_GEN_N, node] + pc
    cs = floats[F_SUM, node] - own_s - floats[F_GEN_SUM, node] + vl * pc
    cq = floats[F_SUMSQ, node] - own_s * own_s - floats[F_GEN_SUMSQ, node] + vl * vl * pc
    c = posterior_sample(max(cn, 0.0), cs, max(cq, 0.0), params, rng)
    return g >= c


@nb.njit(cache=True, nogil=True)
def _mixed_choice(
    ints: np.ndarray,
    floats: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    node: int,
    max_depth: int,
) -> int:
    """AB-MCTS-M: Thompson draw over a new child (GEN) and the open children under a
    hierarchical Normal model fitted by empirical Bayes; -1 means GEN.

    Model: a score under child ``i`` is ``N(theta_i, sigma^2)``, ``theta_i ~ N(mu, tau^2)``.
    ``sigma^2`` is the pooled within-child variance (prior ``sigma0^2`` with one degree of
    freedom), ``tau^2`` the method-of-moments between-child variance floored at
    ``tau_min^2``, ``mu`` the precision-weighted mean with the prior mean as one pseudo-child.
    Children's posteriors shrink towards ``mu``; GEN draws a fresh ``theta ~ N(mu, tau^2 +
    var(mu))``, so strength is shared across siblings.
    """
    vl = params[P_VIRTUAL]
    sigma0 = params[P_SIGMA0]
    tau_min2 = params[P_TAU_MIN] * params[P_TAU_MIN]
    m0 = params[P_PRIOR_M]
    k = 0
    within = 0.0
    dof = 0.0
    sum_y = 0.0
    sum_y2 = 0.0
    inv_n = 0.0
    child = ints[I_FIRST_CHILD, node]
    while child >= 0:
        n, s, q = _child_stats(ints, floats, child, vl)
        if n > 0.0:
            ybar = s / n
            within += max(q - s * ybar, 0.0)
            dof += n - 1.0
            sum_y += ybar
            sum_y2 += ybar * ybar
            inv_n += 1.0 / n
            k += 1
        child = ints[I_NEXT_SIBLING, child]
    if k == 0:
        return -1
    sigma2 = (sigma0 + within) / (1.0 + dof)
    if k >= 2:
        mean_y = sum_y / k
        between = (sum_y2 - k * mean_y * mean_y) / (k - 1)
        tau2 = max(between - sigma2 * inv_n / k, tau_min2)
    else:
        tau2 = max(sigma0, tau_min2)
    w_sum = 1.0 / (tau2 + sigma0)
    wy_sum = m0 * w_sum
    child = ints[I_FIRST_CHILD, node]
    while child >= 0:
        n, s, q = _child_stats(ints, floats, child, vl)
        if n > 0.0:
            w = 1.0 / (tau2 + sigma2 / n)
            w_sum += w
            wy_sum += w * s / n
        child = ints[I_NEXT_SIBLING, child]
    mu = wy_sum / w_sum
    best = -1
    best_val = mu + math.sqrt(tau2 + 1.0 / w_sum) * rng_normal(rng)
    child = ints[I_FIRST_CHILD, node]
    while child >= 0:
        if ints[I_DEPTH, child] < max_depth:
            n, s, q = _child_stats(ints, floats, child, vl)
            prec = 1.0 / tau2 + n / sigma2
            mean = (mu / tau2 + s / sigma2) / prec
            val = mean + rng_normal(rng) / math.sqrt(prec)
            if val > best_val:
                best_val = val
                best = child
        child = ints[I_NEXT_SIBLING, child]
    return best


@nb.njit(cache=True, nogil=True)
def select_expansion(
    ints: np.ndarray,
    floats: np.ndarray,
    action_stats: np.ndarray,
    node_action_stats: np.ndarray,
    header: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
) -> tuple:
    """Choose the node to expand and the generator, and mark the trial pending.

    Returns:
        ``(node, action)``; the path from the root to ``node`` has ``I_PENDING`` raised by
        one and ``node`` has ``I_PENDING_GEN`` raised by one until :func:`add_child` or
        :func:`release_pending` is called for it.
    """
    algo = int(params[P_ALGO])
    max_depth = int(params[P_MAX_DEPTH])
    width = int(params[P_WIDTH])
    pooled = _pool_applies(params)
    node = 0
    while True:
        expand = False
        child = -1
        if ints[I_DEPTH, node] + 1 > max_depth:
            # only reachable at the root of a depth-0 search; callers forbid it
            expand = True
        elif algo in (ALGO_UCT, ALGO_THOMPSON):
            if ints[I_N_CHILDREN, node] + ints[I_PENDING_GEN, node] < width:
                expand = True
            else:
                child = _best_child(ints, floats, params, rng, node, algo, max_depth)
                expand = child < 0
        elif algo == ALGO_AB_MCTS_A:
            if ints[I_N_CHILDREN, node] == 0 or _gen_beats_cont(ints, floats, params, rng, node):
                expand = True
            else:
                if pooled:
                    child = _best_child_pooled(ints, floats, header, params, rng, node, max_depth)
                else:
                    child = _best_child(ints, floats, params, rng, node, algo, max_depth)
                expand = child < 0
        else:  # ALGO_AB_MCTS_M
            if ints[I_N_CHILDREN, node] == 0:
                expand = True
            else:
                child = _mixed_choice(ints, floats, params, rng, node, max_depth)
                expand = child < 0
        if expand:
            action = _choose_action(
                ints, floats, action_stats, node_action_stats, params, rng, node, algo
            )
            ints[I_PENDING_GEN, node] += 1
            p = node
            while p >= 0:
                ints[I_PENDING, p] += 1
                if p > 0:
                    _unpool(ints, p)
                p = ints[I_PARENT, p]
            return node, action
        node = child


@nb.njit(cache=True, nogil=True)
def release_pending(ints: np.ndarray, node: int) -> None:
    """Forget one pending trial that was to expand ``node`` (abandoned or cancelled)."""
    ints[I_PENDING_GEN, node] -= 1
    p = node
    while p >= 0:
        ints[I_PENDING, p] -= 1
        p = ints[I_PARENT, p]


@nb.njit(cache=True, nogil=True)
def add_child(
    ints: np.ndarray,
    floats: np.ndarray,
    action_stats: np.ndarray,
    node_action_stats: np.ndarray,
    header: np.ndarray,
    parent: int,
    action: int,
    score: float,
    pending: bool,
) -> int:
    """Append a child made by ``action`` with ``score`` under ``parent`` and backpropagate.

    The caller guarantees a free column. With ``pending`` the trial's virtual loss is
    removed from the path. Returns the new node's id.
    """
    new = header[H_SIZE]
    header[H_SIZE] = new + 1
    ints[I_PARENT, new] = parent
    ints[I_FIRST_CHILD, new] = -1
    ints[I_NEXT_SIBLING, new] = ints[I_FIRST_CHILD, parent]
    ints[I_FIRST_CHILD, parent] = new
    ints[I_N_CHILDREN, new] = 0
    ints[I_N_CHILDREN, parent] += 1
    ints[I_DEPTH, new] = ints[I_DEPTH, parent] + 1
    ints[I_ACTION, new] = action
    ints[I_VISITS, new] = 1
    ints[I_PENDING, new] = 0
    ints[I_PENDING_GEN, new] = 0
    ints[I_ENV_STATE, new] = 0
    ints[I_POOL, new] = 1
    ints[I_N_POOL, new] = 0
    ints[I_X_HEAD, new] = -1
    ints[I_X_NEXT, new] = -1
    ints[I_LO, new] = -1
    ints[I_MARK, new] = 0
    ints[I_N_POOL, parent] += 1
    if ints[I_LO, parent] < 0:
        ints[I_LO, parent] = new
    sq = score * score
    floats[F_SCORE, new] = score
    floats[F_SUM, new] = score
    floats[F_SUMSQ, new] = sq
    floats[F_GEN_N, new] = 0.0
    floats[F_GEN_SUM, new] = 0.0
    floats[F_GEN_SUMSQ, new] = 0.0
    floats[F_GEN_N, parent] += 1.0
    floats[F_GEN_SUM, parent] += score
    floats[F_GEN_SUMSQ, parent] += sq
    action_stats[action, 0] += 1.0
    action_stats[action, 1] += score
    action_stats[action, 2] += sq
    if node_action_stats.shape[0] > 0:
        for r in range(node_action_stats.shape[0]):
            node_action_stats[r, new] = 0.0
        node_action_stats[3 * action, parent] += 1.0
        node_action_stats[3 * action + 1, parent] += score
        node_action_stats[3 * action + 2, parent] += sq
    if pending:
        ints[I_PENDING_GEN, parent] -= 1
    p = parent
    while p >= 0:
        ints[I_VISITS, p] += 1
        floats[F_SUM, p] += score
        floats[F_SUMSQ, p] += sq
        if pending:
            ints[I_PENDING, p] -= 1
        if p > 0:
            _unpool(ints, p)
        p = ints[I_PARENT, p]
    return new


@nb.njit(cache=True, nogil=True)
def tell_and_select(
    ints: np.ndarray,
    floats: np.ndarray,
    action_stats: np.ndarray,
    node_action_stats: np.ndarray,
    header: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    parent: int,
    action: int,
    score: float,
) -> tuple:
    """One sequential step in one call: add the previous result (when ``parent >= 0``), then
    select the next expansion. Returns ``(new node or -1, next node, next action)``."""
    new = -1
    if parent >= 0:
        new = add_child(
            ints, floats, action_stats, node_action_stats, header, parent, action, score, True
        )
    node, act = select_expansion(ints, floats, action_stats, node_action_stats, header, params, rng)
    return new, node, act


@nb.njit(cache=True, nogil=True)
def _backprop_env(ints: np.ndarray, floats: np.ndarray, node: int, score: float) -> None:
    sq = score * score
    p = node
    while p >= 0:
        ints[I_VISITS, p] += 1
        floats[F_SUM, p] += score
        floats[F_SUMSQ, p] += sq
        p = ints[I_PARENT, p]


@nb.njit(nogil=True)
def env_search(
    ints: np.ndarray,
    floats: np.ndarray,
    header: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    step_fn,
    env_params: np.ndarray,
    branching: int,
    depth: int,
    iterations: int,
) -> int:
    """The fully jitted search over an environment: ``iterations`` times, select from the
    root to a node with an untried action (UCB1 or Thompson sampling), expand that action,
    score the child with ``step_fn`` and backpropagate; a terminal node reached by selection
    backpropagates its own score again. The caller guarantees ``iterations`` free columns.

    ``step_fn(env_params, state, action, depth, rng) -> (child_state, score)`` is a jitted
    function; scores are in [0, 1] for Beta posteriors and two-player tasks. Not cached:
    Numba compiles one specialisation per environment in each process.

    Returns the number of nodes added.
    """
    algo = int(params[P_ALGO])
    added = 0
    for _ in range(iterations):
        node = 0
        while True:
            d = ints[I_DEPTH, node]
            if d >= depth:
                _backprop_env(ints, floats, node, floats[F_SCORE, node])
                break
            nc = ints[I_N_CHILDREN, node]
            if nc < branching:
                new_state, score = step_fn(env_params, ints[I_ENV_STATE, node], nc, d + 1, rng)
                new = header[H_SIZE]
                header[H_SIZE] = new + 1
                ints[I_PARENT, new] = node
                ints[I_FIRST_CHILD, new] = -1
                ints[I_NEXT_SIBLING, new] = ints[I_FIRST_CHILD, node]
                ints[I_FIRST_CHILD, node] = new
                ints[I_N_CHILDREN, new] = 0
                ints[I_N_CHILDREN, node] = nc + 1
                ints[I_DEPTH, new] = d + 1
                ints[I_ACTION, new] = nc
                ints[I_VISITS, new] = 0
                ints[I_PENDING, new] = 0
                ints[I_PENDING_GEN, new] = 0
                ints[I_ENV_STATE, new] = new_state
                ints[I_POOL, new] = 0
                ints[I_X_HEAD, new] = -1
                ints[I_LO, new] = -1
                floats[F_SCORE, new] = score
                floats[F_SUM, new] = 0.0
                floats[F_SUMSQ, new] = 0.0
                floats[F_GEN_N, new] = 0.0
                floats[F_GEN_SUM, new] = 0.0
                floats[F_GEN_SUMSQ, new] = 0.0
                _backprop_env(ints, floats, new, score)
                added += 1
                break
            node = _best_child(ints, floats, params, rng, node, algo, depth + 1)
    return added


# --- agent orchestration ------------------------------------------------------------------
# Columns of the per-agent parameter matrix (see AgentModel.kernel_params).
A_ALPHA, A_BETA, A_MU, A_KAPPA, A_A, A_B, A_USAGE_A, A_USAGE_B, A_RELIABILITY = range(9)


@nb.njit(cache=True, nogil=True)
def simulate_agent(agents: np.ndarray, agent: int, rng: np.ndarray) -> tuple:
    """One predicted outcome of ``agent`` from its models (no sleeping, no real call).

    Returns ``(reward, success, latency_ms, tokens)`` with the platform's reward
    ``0.5 quality + 0.3 max(0, 1 - ms/10000) + 0.2 max(0, 1 - tokens/1000)`` where quality is
    1 on success and 0 on failure.
    """
    p = rng_beta(rng, agents[agent, A_ALPHA], agents[agent, A_BETA])
    success = rng_uniform(rng) < p
    tau = rng_gamma(rng, agents[agent, A_A]) / agents[agent, A_B]
    mean = agents[agent, A_MU] + rng_normal(rng) / math.sqrt(agents[agent, A_KAPPA] * tau)
    ms = max(mean + rng_normal(rng) / math.sqrt(tau), 0.0)
    rate = rng_gamma(rng, agents[agent, A_USAGE_A]) / agents[agent, A_USAGE_B]
    tokens = -math.log(1.0 - rng_uniform(rng)) / rate
    quality = 1.0 if success else 0.0
    reward = (
        0.5 * quality + 0.3 * max(0.0, 1.0 - ms / 10000.0) + 0.2 * max(0.0, 1.0 - tokens / 1000.0)
    )
    return reward, success, ms, tokens


@nb.njit(cache=True, nogil=True)
def orchestrate_search(
    ints: np.ndarray,
    floats: np.ndarray,
    header: np.ndarray,
    agents: np.ndarray,
    iterations: int,
    max_depth: int,
    c: float,
    gamma: float,
    w_thompson: float,
    prior_a: float,
    prior_b: float,
    budget: float,
    rng: np.ndarray,
) -> tuple:
    """Search over sequences of agents: ``iterations`` times select (``w_thompson`` x a Beta
    Thompson draw + (1 - w) x UCB1 of each child), expand one *untried* agent (chosen by
    Thompson sampling of the agents' success models), simulate it with
    :func:`simulate_agent` together with the agents above it (the path's value is their mean
    reward), and backpropagate it discounted by ``gamma`` per level.
    A node at ``max_depth`` is re-simulated instead of expanded. Each simulation spends
    ``tokens / 1000`` of ``budget``; the search stops when it is spent.

    The caller guarantees ``iterations`` free columns. Returns ``(iterations done, budget
    left)``.
    """
    n_agents = agents.shape[0]
    tried = np.zeros(n_agents, dtype=np.bool_)
    done = 0
    for _ in range(iterations):
        if budget <= 0.0:
            break
        node = 0
        leaf = -1
        while leaf < 0:
            d = ints[I_DEPTH, node]
            if d >= max_depth:
                leaf = node
                break
            nc = ints[I_N_CHILDREN, node]
            if nc < n_agents:
                tried[:] = False
                child = ints[I_FIRST_CHILD, node]
                while child >= 0:
                    tried[ints[I_ACTION, child]] = True
                    child = ints[I_NEXT_SIBLING, child]
                best = -1
                best_val = -1.0
                for a in range(n_agents):
                    if not tried[a]:
                        v = rng_beta(rng, agents[a, A_ALPHA], agents[a, A_BETA])
                        if v > best_val:
                            best_val = v
                            best = a
                new = header[H_SIZE]
                header[H_SIZE] = new + 1
                ints[I_PARENT, new] = node
                ints[I_FIRST_CHILD, new] = -1
                ints[I_NEXT_SIBLING, new] = ints[I_FIRST_CHILD, node]
                ints[I_FIRST_CHILD, node] = new
                ints[I_N_CHILDREN, new] = 0
                ints[I_N_CHILDREN, node] = nc + 1
                ints[I_DEPTH, new] = d + 1
                ints[I_ACTION, new] = best
                ints[I_VISITS, new] = 0
                floats[F_SCORE, new] = 0.0
                ints[I_POOL, new] = 0
                ints[I_X_HEAD, new] = -1
                ints[I_LO, new] = -1
                floats[F_SUM, new] = 0.0
                floats[F_SUMSQ, new] = 0.0
                leaf = new
                break
            parent_n = float(ints[I_VISITS, node])
            best = -1
            best_val = -_INF
            child = ints[I_FIRST_CHILD, node]
            while child >= 0:
                n = float(ints[I_VISITS, child])
                s = floats[F_SUM, child]
                ts = rng_beta(rng, prior_a + s, prior_b + max(n - s, 0.0))
                val = w_thompson * ts + (1.0 - w_thompson) * ucb_score(n, s, parent_n, c)
                if val > best_val or best < 0:
                    best_val = val
                    best = child
                child = ints[I_NEXT_SIBLING, child]
            node = best
        if leaf == 0:
            break  # max_depth 0: nothing to search
        # The value of a sequence is the mean predicted reward of its agents, so every
        # agent on the path is credited for its own part (the platform rewarded the leaf
        # agent only, which drowns the first agent's signal in its successors').
        total = 0.0
        count = 0
        p = leaf
        while p > 0:
            r1, _, _, tokens = simulate_agent(agents, ints[I_ACTION, p], rng)
            budget -= tokens * 0.001
            total += r1
            count += 1
            p = ints[I_PARENT, p]
        reward = total / count
        floats[F_SCORE, leaf] += reward
        r = reward
        p = leaf
        while p >= 0:
            ints[I_VISITS, p] += 1
            floats[F_SUM, p] += r
            floats[F_SUMSQ, p] += r * r
            r *= gamma
            p = ints[I_PARENT, p]
        done += 1
    return done, budget
