"""Numba kernels of the tree search (arrays and scalars in, arrays and scalars out).

Layouts and indices are documented in :mod:`workbench.mcts.types`. Nothing here validates
input: :mod:`workbench.mcts.tree` and :mod:`workbench.mcts.search` do, and make sure there is
room for one more node before a kernel adds one. Every kernel has a plain-Python twin in
``tests/mcts/naive.py``.

Cost: selection walks one root-to-leaf path and backpropagation walks it back up, so a step
is O(depth x work per node), never a pass over the tree. For UCT, Thompson sampling,
AB-MCTS-M and the Beta model the work per node is the width (:func:`_best_child` draws every
child: the plain sampler). AB-MCTS-A with the Gaussian model and ``prior_nu = 1`` (the
default) uses :func:`_best_child_pooled`, whose expected work per node is O(log width) plus
the children that are genuine contenders, and whose pick has exactly the plain sampler's
distribution.

Why the fast sampler is exact. Thompson sampling picks the argmax of independent draws
``X_i = m_i + s_i T_i`` (``T_i`` Student-t with ``nu_i`` dof, the Normal-Inverse-chi^2
posterior of child ``i``). Any procedure that produces every ``X_i`` with its law, or
proves it below the winner without producing it, picks with that law. A node keeps two
kinds of children:

* the *leaf pool*: children holding only their own score ``x`` in [0, 1] (the score
  contract; :func:`workbench.mcts.search.tell` enforces it). With ``prior_nu = 1`` their
  draw is ``m(x) + s(x) Q2(1 - V)`` with ``Q2`` the closed-form t_2 quantile and ``V``
  uniform, and ``m(x) <= m_max``, ``s(x) <= s_max`` over [0, 1]. The pool's uniforms are
  generated in increasing order (order statistics) and handed to distinct pooled children
  chosen uniformly at random (a partial Fisher-Yates shuffle of the dense pool block), so
  the dominating values ``m_max + s_max Q2(1 - V)`` fall; while ``V < 1/2`` a child's draw
  is at most its dominating value, so once that falls below the best draw no remaining
  pooled child can win. If the next uniform reaches 1/2 it is given to a random remaining
  child and the rest are drawn uniform above it (exactly their conditional law).
* the *heap*: children that have descendants or had a pending trial, keyed by
  ``k_i = m_i + s_i c(nu_i)``. For ``t >= c > 1`` the t density obeys
  ``f(t) <= f(c) (t / c)^-b`` with ``b = c^2 (nu + 1) / (nu + c^2) > 1``; ``c(nu)``
  (:func:`tail_quantile`, tabulated per visit count) puts this envelope's mass above ``c``
  at ``r _TAIL`` with ``r <= 1``, so ``P(X_i > k_i) <= r _TAIL``. Split each draw by the
  event ``X_i > k_i``. A preorder walk of the heap draws every child whose key is at least
  the best draw so far (a subtree whose top key is below it holds only smaller keys); a
  child not drawn had ``k_i`` below the best, so it can only win through that event. The
  tail step then makes each such child a candidate with probability ``_TAIL`` (geometric
  gaps along the heap), keeps a candidate with probability ``r``, proposes ``T`` from the
  normalised envelope above ``c`` (Pareto: closed-form inverse) and accepts it with
  probability density / envelope. A child thereby exceeds its key with probability exactly
  ``_TAIL r (P(T > c) / (r _TAIL)) = P(X_i > k_i)``, and then with the law of ``X_i``
  given that event; otherwise its draw is at most its key and never needed. Proposals that
  cannot beat the best draw need not be made: :func:`_tail_draw` proposes only above the
  best draw's t value (the Pareto tail's share of the envelope there has a closed form).
  When the best draw is far above the top key (a wide heap under a node whose leaf pool
  holds the winner), the candidate probability drops from ``_TAIL`` to a bound on every
  such share, from the top key, the largest key margin and the smallest envelope exponent
  seen at the node, and candidates are thinned by the ratio: O(1) candidates, not
  O(width / 64).

The pool is searched first (its best draw prunes the heap), then the heap, then the tail.
Keys use visit statistics only: below a node with pending trials under its children
(batched asks add pseudo-observations) the heap children are all drawn. Keys are refreshed
lazily: a trial's path flags each node in its parent's dirty list and the parent recomputes
those keys (O(log width) each) the next time it samples. The chi-square tests in
``tests/mcts/test_kernels.py`` compare the picks with the plain sampler's on identical trees.
The only approximation is floating point (the key tables carry relative errors near 1e-10
for very large ``nu``, from ``lgamma`` differences).
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
    F_EXPONENT,
    F_GEN_N,
    F_GEN_SUM,
    F_GEN_SUMSQ,
    F_KEY,
    F_MARGIN,
    F_SCORE,
    F_SUM,
    F_SUMSQ,
    F_TAIL_Q,
    F_TAIL_R,
    H_ARENA,
    H_SIZE,
    H_SWEEP,
    I_ACTION,
    I_ARENA,
    I_DEPTH,
    I_DIRTY_HEAD,
    I_DIRTY_NEXT,
    I_ENV_STATE,
    I_FIRST_CHILD,
    I_HEAP_AT,
    I_HEAP_CAP,
    I_MARK,
    I_N_CHILDREN,
    I_N_HEAP,
    I_N_POOL,
    I_NEXT_SIBLING,
    I_PARENT,
    I_PENDING,
    I_PENDING_GEN,
    I_POOL,
    I_POOL_AT,
    I_POOL_CAP,
    I_SLOT,
    I_VISITS,
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
    "mark_pending",
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
    ints[I_HEAP_AT, 0] = -1
    ints[I_POOL_AT, 0] = -1
    ints[I_SLOT, 0] = -1
    ints[I_DIRTY_HEAD, 0] = -1
    ints[I_DIRTY_NEXT, 0] = -2
    ints[I_ENV_STATE, 0] = env_state
    header[H_SIZE] = 1
    header[H_SWEEP] = 0
    header[H_ARENA] = 0


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
#: Tail budget of the heap sampler: a heap child's draw exceeds its key with probability at
#: most this (see :func:`tail_quantile`); about ``width / 256`` tail checks per visit.
_TAIL = 1.0 / 64.0
_LOG_TAIL = math.log(_TAIL)
_FIRST_BLOCK = 4


@nb.njit(cache=True, nogil=True)
def _arena_get(ints: np.ndarray, a: int) -> int:
    return ints[I_ARENA + (a & 7), a >> 3]


@nb.njit(cache=True, nogil=True)
def _arena_set(ints: np.ndarray, a: int, value: int) -> None:
    ints[I_ARENA + (a & 7), a >> 3] = value


@nb.njit(cache=True, nogil=True)
def _block_append(
    ints: np.ndarray,
    header: np.ndarray,
    node: int,
    at_field: int,
    cap_field: int,
    count: int,
    child: int,
) -> None:
    """Put ``child`` at index ``count`` of one of ``node``'s arena blocks (moving the block to
    a fresh one of twice the size when it is full) and record its slot."""
    at = ints[at_field, node]
    cap = ints[cap_field, node]
    if count >= cap:
        new_cap = max(2 * cap, _FIRST_BLOCK)
        new_at = header[H_ARENA]
        header[H_ARENA] = new_at + new_cap
        for i in range(count):
            _arena_set(ints, new_at + i, _arena_get(ints, at + i))
        ints[at_field, node] = new_at
        ints[cap_field, node] = new_cap
        at = new_at
    _arena_set(ints, at + count, child)
    ints[I_SLOT, child] = count


@nb.njit(cache=True, nogil=True)
def _pool_swap(ints: np.ndarray, at: int, i: int, j: int) -> None:
    """Swap pool positions ``i`` and ``j`` of the block at ``at``."""
    a = _arena_get(ints, at + i)
    b = _arena_get(ints, at + j)
    _arena_set(ints, at + i, b)
    _arena_set(ints, at + j, a)
    ints[I_SLOT, b] = i
    ints[I_SLOT, a] = j


@nb.njit(cache=True, nogil=True)
def _unpool(ints: np.ndarray, node: int) -> None:
    """``node``'s statistics are about to change: flag it for a key refresh in its parent.

    A pooled node is marked as leaving the pool (``I_POOL`` 2); its parent moves it from the
    pool block to the heap at its next refresh (:func:`_refresh`), where the arena can grow.
    """
    if ints[I_POOL, node] == 1:
        ints[I_POOL, node] = 2
    if ints[I_DIRTY_NEXT, node] == -2:
        parent = ints[I_PARENT, node]
        ints[I_DIRTY_NEXT, node] = ints[I_DIRTY_HEAD, parent]
        ints[I_DIRTY_HEAD, parent] = node


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
def t_location_scale(n: float, s: float, q: float, params: np.ndarray) -> tuple:
    """``(location, scale, dof)`` of the Student-t that :func:`posterior_sample` draws from
    (Gaussian model) for sufficient statistics ``(n, sum, sum sq)``."""
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
    return mn, math.sqrt(tn / kn), nun


@nb.njit(cache=True, nogil=True)
def log_envelope_mass(nu: float, c: float) -> float:
    """Log of the mass above ``c > 1`` of the power-law envelope of the ``t_nu`` density.

    For ``t >= c`` the density obeys ``f(t) <= f(c) (t / c)^-b`` with
    ``b = c^2 (nu + 1) / (nu + c^2)`` (``log(1 + t^2/nu) - (2b / (nu + 1)) log t`` grows for
    ``t >= c``), and ``b > 1`` for ``c > 1``; the envelope's mass is ``f(c) c / (b - 1)``.
    """
    c2 = c * c
    log_k = math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
    return (
        log_k
        - 0.5 * (nu + 1.0) * math.log1p(c2 / nu)
        + math.log(c)
        + math.log(nu + c2)
        - math.log(nu)
        - math.log(c2 - 1.0)
    )


@nb.njit(cache=True, nogil=True)
def tail_quantile(nu: float) -> tuple:
    """``(c, r)``: the point above which the ``t_nu`` envelope of :func:`log_envelope_mass`
    holds mass ``r * _TAIL`` with ``r <= 1`` (and ``r`` within 1e-9 of 1).

    The log mass minus ``log(_TAIL)`` falls strictly from +inf at ``c = 1`` to -inf, so a
    bracketed Newton iteration finds the root; the returned ``c`` is the bracket's upper end,
    where the mass is certified not to exceed the budget. Hand-written because kernels cannot
    call SciPy, and it needs only ``lgamma``.
    """
    lo = 1.0
    hi = 2.0
    while log_envelope_mass(nu, hi) > _LOG_TAIL:
        lo = hi
        hi *= 2.0
    c = hi
    for _ in range(200):
        g = log_envelope_mass(nu, c) - _LOG_TAIL
        if g > 0.0:
            lo = c
        else:
            hi = c
            if g > -1e-10:
                break
        c2 = c * c
        dg = -(nu - 1.0) * c / (nu + c2) + 1.0 / c - 2.0 * c / (c2 - 1.0)
        nxt = c - g / dg
        if not (lo < nxt < hi):
            nxt = 0.5 * (lo + hi)
        if hi - lo <= 1e-13 * hi:
            break
        c = nxt
    return hi, math.exp(log_envelope_mass(nu, hi) - _LOG_TAIL)


@nb.njit(cache=True, nogil=True)
def _tail_entry(floats: np.ndarray, params: np.ndarray, n: int) -> tuple:
    """``(c, r)`` of :func:`tail_quantile` for a child with ``n`` visits, from the tree's
    table (filled on first use)."""
    c = floats[F_TAIL_Q, n]
    if c == 0.0:
        c, r = tail_quantile(params[P_PRIOR_NU] + n)
        floats[F_TAIL_Q, n] = c
        floats[F_TAIL_R, n] = r
    return c, floats[F_TAIL_R, n]


@nb.njit(cache=True, nogil=True)
def _heap_fix(ints: np.ndarray, floats: np.ndarray, node: int, i: int) -> None:
    """Restore the max-heap order of ``node``'s heap after the key at index ``i`` changed."""
    at = ints[I_HEAP_AT, node]
    w = ints[I_N_HEAP, node]
    child = _arena_get(ints, at + i)
    key = floats[F_KEY, child]
    while i > 0:
        up = (i - 1) >> 1
        other = _arena_get(ints, at + up)
        if floats[F_KEY, other] >= key:
            break
        _arena_set(ints, at + i, other)
        ints[I_SLOT, other] = i
        i = up
    while True:
        left = 2 * i + 1
        if left >= w:
            break
        big = left
        bl = _arena_get(ints, at + left)
        if left + 1 < w:
            br = _arena_get(ints, at + left + 1)
            if floats[F_KEY, br] > floats[F_KEY, bl]:
                big = left + 1
                bl = br
        if floats[F_KEY, bl] <= key:
            break
        _arena_set(ints, at + i, bl)
        ints[I_SLOT, bl] = i
        i = big
    _arena_set(ints, at + i, child)
    ints[I_SLOT, child] = i


@nb.njit(cache=True, nogil=True)
def _refresh(
    ints: np.ndarray, floats: np.ndarray, header: np.ndarray, params: np.ndarray, node: int
) -> None:
    """Bring ``node``'s heap up to date: move children that left the pool into it and
    recompute the key of every child whose statistics changed (its dirty list).

    A key is ``location + scale * c`` of the child's Student-t posterior from its visits
    alone (pending trials are handled by the caller), with ``c`` from :func:`tail_quantile`.
    """
    child = ints[I_DIRTY_HEAD, node]
    ints[I_DIRTY_HEAD, node] = -1
    while child >= 0:
        nxt = ints[I_DIRTY_NEXT, child]
        ints[I_DIRTY_NEXT, child] = -2
        if ints[I_POOL, child] == 2:
            pat = ints[I_POOL_AT, node]
            last = ints[I_N_POOL, node] - 1
            _pool_swap(ints, pat, ints[I_SLOT, child], last)
            ints[I_N_POOL, node] = last
            ints[I_POOL, child] = 0
            w = ints[I_N_HEAP, node]
            _block_append(ints, header, node, I_HEAP_AT, I_HEAP_CAP, w, child)
            ints[I_N_HEAP, node] = w + 1
        n = ints[I_VISITS, child]
        m, sd, nu = t_location_scale(float(n), floats[F_SUM, child], floats[F_SUMSQ, child], params)
        c, _ = _tail_entry(floats, params, n)
        floats[F_KEY, child] = m + sd * c
        floats[F_MARGIN, node] = max(floats[F_MARGIN, node], sd * c)
        e = c * c * (nu + 1.0) / (nu + c * c) - 1.0
        if floats[F_EXPONENT, node] == 0.0 or e < floats[F_EXPONENT, node]:
            floats[F_EXPONENT, node] = e
        _heap_fix(ints, floats, node, ints[I_SLOT, child])
        child = nxt


@nb.njit(cache=True, nogil=True)
def _tail_draw(
    ints: np.ndarray,
    floats: np.ndarray,
    params: np.ndarray,
    rng: np.ndarray,
    child: int,
    best_val: float,
    thin: float,
) -> float:
    """A heap child's draw when it beats ``best_val`` through its tail, else -inf.

    Called with probability ``_TAIL / thin`` for a child whose key is below ``best_val``; a
    draw comes back with probability ``thin P(draw > best_val) / _TAIL`` and with the
    posterior law conditioned on that event. The envelope of :func:`log_envelope_mass`
    above ``c`` has mass ``r _TAIL``; its part above ``z = (best_val - location) / scale``
    is the share ``(c / z)^(b - 1)`` (a Pareto tail), so one uniform decides whether a
    proposal above ``z`` is made, the proposal is Pareto above ``z``, and it is accepted
    with probability density / envelope. Proposals between ``c`` and ``z`` could never win
    and are skipped.
    """
    n = ints[I_VISITS, child]
    m, sd, nu = t_location_scale(float(n), floats[F_SUM, child], floats[F_SUMSQ, child], params)
    c, r = _tail_entry(floats, params, n)
    c2 = c * c
    b = c2 * (nu + 1.0) / (nu + c2)
    z = (best_val - m) / sd
    lo = c
    rho = r * thin
    if z > c:
        lo = z
        rho = r * thin * math.exp((b - 1.0) * math.log(c / z))
    if rng_uniform(rng) >= rho:
        return -_INF
    y = lo * (1.0 - rng_uniform(rng)) ** (-1.0 / (b - 1.0))
    log_acc = 0.5 * (nu + 1.0) * (math.log1p(c2 / nu) - math.log1p(y * y / nu)) + b * math.log(
        y / c
    )
    if rng_uniform(rng) >= math.exp(log_acc):
        return -_INF
    return m + sd * y


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
    """Thompson sampling over the children of ``node`` without drawing for every child.

    Exact in distribution for the Gaussian model with ``prior_nu = 1`` and scores in [0, 1]
    (the module docstring has the argument); the plain sampler is :func:`_best_child`.
    Expected work: O(log width) to refresh keys, the heap children whose key beats the best
    draw so far, about ``heap size / 256`` tail checks, and O(1) for the leaf pool.
    """
    if ints[I_DEPTH, node] + 1 >= max_depth:
        return -1
    _refresh(ints, floats, header, params, node)
    vl = params[P_VIRTUAL]
    best = -1
    best_val = -_INF
    sweep = header[H_SWEEP] + 1
    header[H_SWEEP] = sweep
    w = ints[I_N_HEAP, node]
    hat = ints[I_HEAP_AT, node]
    exact_keys = ints[I_PENDING, node] == ints[I_PENDING_GEN, node]
    c = ints[I_N_POOL, node]
    if c > 0:
        pat = ints[I_POOL_AT, node]
        v_used = 0.0
        j = 0
        done = False
        if c > _SMALL_POOL:
            m_a, s_a = leaf_location_scale(0.0, params)
            m_b, s_b = leaf_location_scale(1.0, params)
            m_max = max(m_a, m_b)
            s_max = max(s_a, s_b)
            while j < c:
                u = 1.0 - rng_uniform(rng)
                v = 1.0 - (1.0 - v_used) * u ** (1.0 / (c - j))
                v = min(max(v, 1e-300), 1.0 - 1e-16)
                if v >= 0.5:
                    # past the dominated range: v is the smallest remaining uniform; it goes
                    # to a random remaining child, the others are uniform above it
                    _pool_swap(ints, pat, j, j + rng_integers(rng, c - j))
                    found = _arena_get(ints, pat + j)
                    m, s = leaf_location_scale(floats[F_SCORE, found], params)
                    val = m + s * t2_quantile(1.0 - v)
                    if val > best_val or best < 0:
                        best_val = val
                        best = found
                    v_used = v
                    j += 1
                    break
                tq = t2_quantile(1.0 - v)
                if best >= 0 and m_max + s_max * tq <= best_val:
                    done = True
                    break
                _pool_swap(ints, pat, j, j + rng_integers(rng, c - j))
                found = _arena_get(ints, pat + j)
                m, s = leaf_location_scale(floats[F_SCORE, found], params)
                val = m + s * tq
                if val > best_val or best < 0:
                    best_val = val
                    best = found
                v_used = v
                j += 1
        if not done:
            for k in range(j, c):
                child = _arena_get(ints, pat + k)
                v = v_used + (1.0 - v_used) * rng_uniform(rng)
                v = min(max(v, 1e-300), 1.0 - 1e-16)
                m, s = leaf_location_scale(floats[F_SCORE, child], params)
                val = m + s * t2_quantile(1.0 - v)
                if val > best_val or best < 0:
                    best_val = val
                    best = child
    if not exact_keys:
        # pending trials below a child add pseudo-observations the keys ignore: draw all
        for i in range(w):
            child = _arena_get(ints, hat + i)
            n, s, q = _child_stats(ints, floats, child, vl)
            val = posterior_sample(n, s, q, params, rng)
            if val > best_val or best < 0:
                best_val = val
                best = child
    elif w > 0:
        # preorder walk of the heap, skipping every subtree whose top key is below the best
        i = 0
        while True:
            if i < w:
                child = _arena_get(ints, hat + i)
                if best < 0 or floats[F_KEY, child] >= best_val:
                    ints[I_MARK, child] = sweep
                    val = posterior_sample(
                        float(ints[I_VISITS, child]),
                        floats[F_SUM, child],
                        floats[F_SUMSQ, child],
                        params,
                        rng,
                    )
                    if val > best_val or best < 0:
                        best_val = val
                        best = child
                    i = 2 * i + 1
                    continue
            while i > 0 and i % 2 == 0:
                i = (i - 1) >> 1
            if i == 0:
                break
            i += 1
    if exact_keys and w > 0:
        # tail step: each heap child not drawn above is a candidate with probability
        # rate (geometric gaps), and a candidate's draw above the best is made exactly.
        # rate bounds every such child's P(draw > best) / _TAIL * _TAIL: its key is at most
        # the top key, so (best - location) / scale >= c (1 + (best - top) / margin), and
        # the envelope's share above that is at most (1 + (best - top) / margin)^-exponent
        rate = _TAIL
        top = floats[F_KEY, _arena_get(ints, hat)]
        if best_val > top:
            gap = (best_val - top) / floats[F_MARGIN, node]
            rate = _TAIL * math.exp(-floats[F_EXPONENT, node] * math.log1p(gap))
        log1m = math.log1p(-rate)
        i = -1
        while log1m < 0.0:
            skip = math.log(1.0 - rng_uniform(rng)) / log1m
            if skip >= w - 1 - i:
                break
            i += 1 + int(skip)
            child = _arena_get(ints, hat + i)
            if ints[I_MARK, child] == sweep:
                continue
            val = _tail_draw(ints, floats, params, rng, child, best_val, _TAIL / rate)
            if val > best_val:
                best_val = val
                best = child
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
def mark_pending(ints: np.ndarray, node: int) -> None:
    """Mark one trial that expands ``node`` pending again after :func:`release_pending`
    (the counts only; the path already left the leaf pool when it was selected)."""
    ints[I_PENDING_GEN, node] += 1
    p = node
    while p >= 0:
        ints[I_PENDING, p] += 1
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
    ints[I_N_HEAP, new] = 0
    ints[I_POOL_AT, new] = -1
    ints[I_POOL_CAP, new] = 0
    ints[I_HEAP_AT, new] = -1
    ints[I_HEAP_CAP, new] = 0
    ints[I_DIRTY_HEAD, new] = -1
    ints[I_DIRTY_NEXT, new] = -2
    ints[I_MARK, new] = 0
    floats[F_KEY, new] = 0.0
    floats[F_MARGIN, new] = 0.0
    floats[F_EXPONENT, new] = 0.0
    count = ints[I_N_POOL, parent]
    _block_append(ints, header, parent, I_POOL_AT, I_POOL_CAP, count, new)
    ints[I_N_POOL, parent] = count + 1
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
                ints[I_HEAP_AT, new] = -1
                ints[I_POOL_AT, new] = -1
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
