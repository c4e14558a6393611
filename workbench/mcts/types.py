"""Shared types, array layouts and constants of :mod:`workbench.mcts`.

The search tree is a struct of arrays packed in two 2-D buffers, one row per field, one
column per node (so each field is a contiguous vector and the tree grows by doubling the
column count):

``ints``: ``int64[N_INT_FIELDS, capacity]``
    ``I_PARENT`` parent id (-1 for the root); ``I_FIRST_CHILD`` / ``I_NEXT_SIBLING`` the
    children as a singly linked list (-1 terminates); ``I_N_CHILDREN``; ``I_DEPTH`` (root 0);
    ``I_ACTION`` index of the generator (or environment action) that made the node (-1 for
    the root); ``I_VISITS`` number of scores observed in the subtree, the node's own included;
    ``I_PENDING`` trials asked but not yet told in the subtree (virtual loss);
    ``I_PENDING_GEN`` of those, the ones that expand this node directly;
    ``I_ENV_STATE`` the environment state of the jitted path (unused otherwise);
    the children structures that let AB-MCTS-A pick among thousands of children without
    looking at each (see :func:`workbench.mcts._kernels._best_child_pooled`):

    * the *leaf pool*: ``I_POOL`` 1 while the node holds only its own score (no child, no
      pending trial ever), 2 once that changed but before its parent moved it out of the
      pool, 0 after; ``I_N_POOL`` how many of the node's children are in the pool, kept
      densely in an arena block at ``I_POOL_AT`` of capacity ``I_POOL_CAP``;
    * the *heap* of the children that left the pool: ``I_N_HEAP`` of them in a binary
      max-heap on their keys ``F_KEY`` in an arena block at ``I_HEAP_AT`` of capacity
      ``I_HEAP_CAP``;
    * ``I_SLOT`` the node's index in its parent's pool or heap block;
    * ``I_DIRTY_HEAD`` / ``I_DIRTY_NEXT`` a linked list of the node's children whose
      statistics changed since their key was computed (``I_DIRTY_NEXT`` is -2 while a node
      is not in its parent's list); ``I_MARK`` a stamp used while sampling;
    * ``I_ARENA`` .. ``I_ARENA + 7``: the arena itself, eight rows read as one flat
      ``int64`` vector (position ``a`` is ``ints[I_ARENA + a % 8, a // 8]``, so growing the
      columns keeps it in place). Blocks grow by doubling and are never freed: they total
      less than ``8 (size - 1)`` positions, so the arena always fits in the node columns.

    ``I_X_HEAD`` and ``I_LO`` are older names of ``I_HEAP_AT`` and ``I_POOL_AT``.

``floats``: ``float64[N_FLOAT_FIELDS, capacity]``
    ``F_SCORE`` the node's own score; ``F_SUM`` / ``F_SUMSQ`` sum and sum of squares of every
    score in the subtree, own included (the node-level score posterior's sufficient
    statistics); ``F_GEN_N`` / ``F_GEN_SUM`` / ``F_GEN_SUMSQ`` the same over the scores of the
    node's direct children only (the GEN posterior of AB-MCTS-A). The CONT posterior of a
    node is derived: subtree statistics minus own score minus GEN statistics.
    ``F_KEY`` the node's key in its parent's heap (an upper quantile of its posterior draw).
    ``F_TAIL_Q`` / ``F_TAIL_R``, indexed by a visit count ``n`` rather than by node: the key
    quantile of a child with ``n`` visits and the share of the tail budget its envelope uses
    (a table filled on first use; 0 while unset). ``F_MARGIN`` / ``F_EXPONENT``: the
    largest ``key - location`` and the smallest envelope exponent ``b - 1`` any child of the
    node has had in its heap (bounds for the tail step; 0 while unset).

``action_stats``: ``float64[n_actions, 3]``
    count, sum and sum of squares of the scores each generator produced anywhere in the tree
    (the tree-wide model-choice posterior).

``node_action_stats``: ``float64[3 * n_actions, capacity]`` (or ``[0, 1]`` when unused)
    the same per node: rows ``3a, 3a+1, 3a+2`` hold count, sum, sum of squares of the scores
    of the node's direct children made by generator ``a`` (per-node model choice).

``header``: ``int64[N_HEADER]``: ``H_SIZE`` number of nodes in use; ``H_SWEEP`` a counter
of sampling sweeps (the stamp ``I_MARK`` compares against); ``H_ARENA`` arena positions in
use.

``params``: ``float64[N_PARAMS]``: an algorithm's configuration flattened for the kernels
(see the ``P_*`` indices).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

__all__ = [
    "ALGO_AB_MCTS_A",
    "ALGO_AB_MCTS_M",
    "ALGO_THOMPSON",
    "ALGO_UCT",
    "DIST_BETA",
    "DIST_GAUSSIAN",
    "AsyncGenerateFn",
    "GenerateFn",
    "JsonValue",
    "StateScore",
]

# --- int fields -------------------------------------------------------------------------
I_PARENT = 0
I_FIRST_CHILD = 1
I_NEXT_SIBLING = 2
I_N_CHILDREN = 3
I_DEPTH = 4
I_ACTION = 5
I_VISITS = 6
I_PENDING = 7
I_PENDING_GEN = 8
I_ENV_STATE = 9
I_POOL = 10
I_N_POOL = 11
I_HEAP_AT = 12
I_SLOT = 13
I_POOL_AT = 14
I_MARK = 15
I_POOL_CAP = 16
I_HEAP_CAP = 17
I_N_HEAP = 18
I_DIRTY_HEAD = 19
I_DIRTY_NEXT = 20
I_ARENA = 21  # eight rows: 21 .. 28
N_INT_FIELDS = 29
I_X_HEAD = I_HEAP_AT
I_LO = I_POOL_AT

# --- float fields -----------------------------------------------------------------------
F_SCORE = 0
F_SUM = 1
F_SUMSQ = 2
F_GEN_N = 3
F_GEN_SUM = 4
F_GEN_SUMSQ = 5
F_KEY = 6
F_TAIL_Q = 7
F_TAIL_R = 8
F_MARGIN = 9
F_EXPONENT = 10
N_FLOAT_FIELDS = 11

# --- header -----------------------------------------------------------------------------
H_SIZE = 0
H_SWEEP = 1
H_ARENA = 2
N_HEADER = 3

# --- params -----------------------------------------------------------------------------
P_ALGO = 0  # one of the ALGO_* codes
P_DIST = 1  # DIST_GAUSSIAN or DIST_BETA
P_C = 2  # UCB1 exploration constant
P_WIDTH = 3  # children per node before UCT/Thompson descend (samples per action * actions)
P_MODEL_CHOICE = 4  # 0: tree-wide (TreeQuest), 1: per node (paper)
P_MAX_DEPTH = 5  # deepest depth a generated node may have
P_VIRTUAL = 6  # value of the pseudo-observations that pending trials add (virtual loss)
P_N_ACTIONS = 7
P_PRIOR_M = 8  # Normal-Inverse-chi^2 prior: mean, kappa, nu, tau^2
P_PRIOR_KAPPA = 9
P_PRIOR_NU = 10
P_PRIOR_TAU2 = 11
P_PRIOR_A = 12  # Beta prior a, b
P_PRIOR_B = 13
P_TAU_MIN = 14  # AB-MCTS-M: floor of the between-sibling standard deviation
P_SIGMA0 = 15  # AB-MCTS-M: prior within-node variance of scores
P_TWO_PLAYER = 16  # jitted path: alternate the player to move by depth
N_PARAMS = 17

ALGO_UCT = 0
ALGO_THOMPSON = 1
ALGO_AB_MCTS_A = 2
ALGO_AB_MCTS_M = 3

DIST_GAUSSIAN = 0
DIST_BETA = 1

#: No depth limit (a depth no search reaches).
UNLIMITED_DEPTH = 1 << 40

JsonValue: TypeAlias = Any
#: ``(state, score)`` as generate functions return it; score in [0, 1].
StateScore: TypeAlias = tuple[Any, float]
#: ``f(parent_state or None) -> (state, score)`` (TreeQuest-compatible).
GenerateFn: TypeAlias = Callable[[Any], StateScore]
#: ``async f(parent_state or None) -> (state, score)``.
AsyncGenerateFn: TypeAlias = Callable[[Any], Awaitable[StateScore]]
