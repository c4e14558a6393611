"""Numba kernel of orchestration planning: a tree search over sequences of agents.

The tree is the struct of arrays of :mod:`workbench.mcts.types`. A node at depth ``d`` is a
plan prefix of ``d`` agents; its children are the agents that may come next (agents not yet in
the prefix, or, with ``allow_repeats``, any agent but the one just before) and, below the
root, the *end* action (index ``n_agents``): the plan stops there. An end node, or a node at
``max_depth``, is a complete plan.

Each iteration selects with the platform's blend ``w Thompson(Beta) + (1 - w) UCB1``, expands
one untried child (the end action first, then the next agent most likely to succeed after the
prefix's last one), evaluates the plan that ends at the new node by simulating it step by
step, and backpropagates its reward discounted by ``gamma`` per level. The search's answer is
the plan with the highest simulated reward it met (:func:`plan_search` returns where it ends).

A step's success probability depends on its predecessor: ``p_succ[prev, agent]`` with
``prev = n_agents`` for the first step (the caller fills it from the pair models of
:mod:`workbench.mcts.models`, sampled or at their means). The simulated plan's outcome is its
last step's success (the plan's answer), the sum of the steps' latencies and the sum of their
tokens, scored on the same scale as an executed plan:
``0.5 quality + 0.3 max(0, 1 - ms / target_ms) + 0.2 max(0, 1 - tokens / 1000)``.

The simulation is at the steps' expected outcomes rather than one sampled outcome: quality is
the last step's success probability (exactly the expected quality term), latency the sum of
``E[max(0, N(lat_mu, lat_sd))]`` and tokens the sum of ``tok_mean`` (plug-ins inside the two
clipped terms). Sampling each step (a Bernoulli success, a Normal latency, exponential
tokens) adds noise that only more iterations average out: with 5 agents the sampled
simulation needed about 2000 iterations to rank an agent pair that works together above the
best single agent. Exploration across orchestrations comes from the posterior draw behind
``p_succ`` (Thompson sampling over plans), not from this noise.

Every kernel here has a plain-Python twin in ``tests/mcts/test_orchestrate.py``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from workbench.mcts._kernels import ucb_score
from workbench.mcts._random import rng_beta, rng_uniform
from workbench.mcts.types import (
    F_SCORE,
    F_SUM,
    F_SUMSQ,
    H_SIZE,
    I_ACTION,
    I_DEPTH,
    I_FIRST_CHILD,
    I_LO,
    I_N_CHILDREN,
    I_NEXT_SIBLING,
    I_PARENT,
    I_POOL,
    I_VISITS,
    I_X_HEAD,
)

__all__ = ["expected_latency", "plan_reward", "plan_search", "simulate_plan"]


@nb.njit(cache=True, nogil=True)
def plan_reward(quality: float, ms: float, tokens: float, target_ms: float) -> float:
    """``0.5 quality + 0.3 max(0, 1 - ms/target_ms) + 0.2 max(0, 1 - tokens/1000)``."""
    return (
        0.5 * quality + 0.3 * max(0.0, 1.0 - ms / target_ms) + 0.2 * max(0.0, 1.0 - tokens / 1000.0)
    )


@nb.njit(cache=True, nogil=True)
def expected_latency(mu: float, sd: float) -> float:
    """``E[max(0, X)]`` for ``X ~ N(mu, sd^2)``: ``mu Phi(mu/sd) + sd phi(mu/sd)``."""
    if not sd > 0.0:
        return max(mu, 0.0)
    z = mu / sd
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return mu * cdf + sd * pdf


@nb.njit(cache=True, nogil=True)
def simulate_plan(
    plan: np.ndarray,
    length: int,
    p_succ: np.ndarray,
    lat_mu: np.ndarray,
    lat_sd: np.ndarray,
    tok_mean: np.ndarray,
    target_ms: float,
) -> tuple:
    """The predicted outcome of the plan ``plan[:length]`` at its expected step outcomes
    (no real call; see the module docstring).

    Step ``i`` succeeds with probability ``p_succ[plan[i-1], plan[i]]`` (row ``n_agents``
    for the first step), takes ``max(0, N(lat_mu, lat_sd))`` ms and ``tok_mean`` tokens on
    average. Returns ``(reward, last step's success probability, total ms, total tokens)``.
    """
    n_agents = p_succ.shape[1]
    prev = n_agents
    ms = 0.0
    tokens = 0.0
    quality = 0.0
    for i in range(length):
        a = plan[i]
        quality = p_succ[prev, a]
        ms += expected_latency(lat_mu[a], lat_sd[a])
        tokens += tok_mean[a]
        prev = a
    return plan_reward(quality, ms, tokens, target_ms), quality, ms, tokens


@nb.njit(cache=True, nogil=True)
def _allowed(plan: np.ndarray, length: int, a: int, allow_repeats: bool) -> bool:
    if allow_repeats:
        return length == 0 or plan[length - 1] != a
    for i in range(length):  # noqa: SIM110 - Numba compiles no generator expressions
        if plan[i] == a:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def plan_search(
    ints: np.ndarray,
    floats: np.ndarray,
    header: np.ndarray,
    p_succ: np.ndarray,
    lat_mu: np.ndarray,
    lat_sd: np.ndarray,
    tok_mean: np.ndarray,
    iterations: int,
    max_depth: int,
    allow_repeats: bool,
    c: float,
    gamma: float,
    w_thompson: float,
    prior_a: float,
    prior_b: float,
    target_ms: float,
    budget: float,
    rng: np.ndarray,
    best_leaf: int,
    best_reward: float,
) -> tuple:
    """``iterations`` steps of the plan search (see the module docstring). Each simulation
    spends ``tokens / 1000`` of ``budget``; the search stops when it is spent.

    The caller guarantees ``iterations`` free columns and a tree whose actions are the
    ``n_agents`` agents followed by the end action. ``best_leaf`` and ``best_reward`` carry
    the best plan simulated so far across calls (-1 and -inf at first). Returns
    ``(iterations done, budget left, best leaf, best reward)``: the node where the plan with
    the highest simulated reward ends (its agents are the actions on the way from the root,
    the end action left out) and that reward. Since a plan's simulated reward is a function
    of the plan (the expected outcome under ``p_succ``), this is the best plan the search
    met, whatever the visits of the nodes above it.
    """
    n_agents = p_succ.shape[1]
    end = n_agents
    tried = np.zeros(n_agents + 1, dtype=np.bool_)
    plan = np.zeros(max_depth + 1, dtype=np.int64)
    done = 0
    for _ in range(iterations):
        if budget <= 0.0:
            break
        node = 0
        length = 0
        leaf = -1
        while leaf < 0:
            d = ints[I_DEPTH, node]
            if ints[I_ACTION, node] == end or d >= max_depth:
                leaf = node
                break
            prev = plan[length - 1] if length > 0 else n_agents
            n_allowed = 1 if d > 0 else 0
            for a in range(n_agents):
                if _allowed(plan, length, a, allow_repeats):
                    n_allowed += 1
            nc = ints[I_N_CHILDREN, node]
            if nc < n_allowed:
                tried[:] = False
                child = ints[I_FIRST_CHILD, node]
                while child >= 0:
                    tried[ints[I_ACTION, child]] = True
                    child = ints[I_NEXT_SIBLING, child]
                best = -1
                if d > 0 and not tried[end]:
                    best = end
                else:
                    best_val = -1.0
                    for a in range(n_agents):
                        if not tried[a] and _allowed(plan, length, a, allow_repeats):
                            v = p_succ[prev, a] + 1e-9 * rng_uniform(rng)  # random tie-break
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
                if best != end:
                    plan[length] = best
                    length += 1
                leaf = new
                break
            parent_n = float(ints[I_VISITS, node])
            best = -1
            best_val = -math.inf
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
            if ints[I_ACTION, node] != end:
                plan[length] = ints[I_ACTION, node]
                length += 1
        if length == 0:
            break  # nothing to plan
        reward, _, _, tokens = simulate_plan(
            plan, length, p_succ, lat_mu, lat_sd, tok_mean, target_ms
        )
        budget -= tokens * 0.001
        floats[F_SCORE, leaf] += reward
        if reward > best_reward:
            best_reward = reward
            best_leaf = leaf
        r = reward
        p = leaf
        while p >= 0:
            ints[I_VISITS, p] += 1
            floats[F_SUM, p] += r
            floats[F_SUMSQ, p] += r * r
            r *= gamma
            p = ints[I_PARENT, p]
        done += 1
    return done, budget, best_leaf, best_reward
