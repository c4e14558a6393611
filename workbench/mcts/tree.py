"""The search tree: struct-of-arrays buffers grown by doubling, plus the user states.

:class:`Tree` owns the arrays described in :mod:`workbench.mcts.types` and a Python list of
user states (one per node; ``None`` for the root). Kernels in :mod:`workbench.mcts._kernels`
work on the arrays; this wrapper validates input, grows the buffers before a kernel needs a
free column, and answers questions (paths, best nodes, depth) with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import InputError
from workbench.mcts import _kernels
from workbench.mcts.types import (
    F_SCORE,
    F_SUM,
    H_SIZE,
    I_ACTION,
    I_DEPTH,
    I_FIRST_CHILD,
    I_N_CHILDREN,
    I_NEXT_SIBLING,
    I_PARENT,
    I_VISITS,
    N_FLOAT_FIELDS,
    N_HEADER,
    N_INT_FIELDS,
)

__all__ = ["Tree"]

_MIN_CAPACITY = 64


@dataclass(eq=False)
class Tree:
    """A search tree over ``actions`` (generator names or environment actions).

    Attributes:
        actions: Names of the generators; ``I_ACTION`` of a node indexes this tuple.
        ints: ``int64[N_INT_FIELDS, capacity]`` (see :mod:`workbench.mcts.types`).
        floats: ``float64[N_FLOAT_FIELDS, capacity]``.
        action_stats: ``float64[len(actions), 3]`` tree-wide per-generator statistics.
        node_action_stats: ``float64[3 * len(actions), capacity]`` per-node per-generator
            statistics, or ``float64[0, 1]`` when the algorithm does not use them.
        header: ``int64[N_HEADER]``; ``header[H_SIZE]`` is the number of nodes.
        states: User state of each node (index = node id); the root's is ``None``.
    """

    actions: tuple[str, ...]
    ints: np.ndarray
    floats: np.ndarray
    action_stats: np.ndarray
    node_action_stats: np.ndarray
    header: np.ndarray
    states: list[Any]

    @classmethod
    def empty(
        cls,
        actions: tuple[str, ...] | list[str],
        *,
        capacity: int = 1024,
        per_node_actions: bool = False,
        root_env_state: int = 0,
    ) -> Tree:
        """A tree holding only the root.

        Args:
            actions: Generator names, at least one, unique.
            capacity: Initial number of node columns (grows by doubling).
            per_node_actions: Allocate per-node per-generator statistics.
            root_env_state: ``I_ENV_STATE`` of the root (jitted path).
        """
        actions = tuple(actions)
        if not actions:
            raise InputError("actions: need at least one generator name")
        if len(set(actions)) != len(actions):
            raise InputError(f"actions: names must be unique, got {list(actions)}")
        cap = max(int(capacity), _MIN_CAPACITY)
        n_act = len(actions)
        tree = cls(
            actions=actions,
            ints=np.zeros((N_INT_FIELDS, cap), dtype=np.int64),
            floats=np.zeros((N_FLOAT_FIELDS, cap), dtype=np.float64),
            action_stats=np.zeros((n_act, 3), dtype=np.float64),
            node_action_stats=(
                np.zeros((3 * n_act, cap), dtype=np.float64)
                if per_node_actions
                else np.zeros((0, 1), dtype=np.float64)
            ),
            header=np.zeros(N_HEADER, dtype=np.int64),
            states=[None],
        )
        _kernels.init_root(tree.ints, tree.floats, tree.header, int(root_env_state))
        return tree

    # -- size ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of nodes, root included."""
        return int(self.header[H_SIZE])

    @property
    def capacity(self) -> int:
        """Number of node columns allocated."""
        return int(self.ints.shape[1])

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more nodes (doubling the buffers as often as needed)."""
        need = self.size + int(extra)
        cap = self.capacity
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        self.ints = _grow(self.ints, cap)
        self.floats = _grow(self.floats, cap)
        if self.node_action_stats.shape[0] > 0:
            self.node_action_stats = _grow(self.node_action_stats, cap)

    # -- queries ------------------------------------------------------------------------
    def parent(self, node: int) -> int:
        return int(self.ints[I_PARENT, self._check(node)])

    def children(self, node: int) -> list[int]:
        """Children of ``node`` in creation order."""
        out = []
        child = int(self.ints[I_FIRST_CHILD, self._check(node)])
        while child >= 0:
            out.append(child)
            child = int(self.ints[I_NEXT_SIBLING, child])
        out.reverse()
        return out

    def path(self, node: int) -> list[int]:
        """Node ids from the root to ``node``."""
        out = [self._check(node)]
        while out[-1] != 0:
            out.append(int(self.ints[I_PARENT, out[-1]]))
        out.reverse()
        return out

    def depth(self) -> int:
        """Largest node depth (0 for a lone root)."""
        return int(self.ints[I_DEPTH, : self.size].max())

    def scores(self) -> np.ndarray:
        """``float64[size - 1]``: own scores of every non-root node, by node id."""
        return self.floats[F_SCORE, 1 : self.size].copy()

    def mean_values(self) -> np.ndarray:
        """``float64[size]``: mean score over each node's subtree (0 where unvisited)."""
        n = self.ints[I_VISITS, : self.size].astype(np.float64)
        s = self.floats[F_SUM, : self.size]
        return np.divide(s, n, out=np.zeros_like(s), where=n > 0)

    def generator_counts(self) -> dict[str, int]:
        """Number of nodes each generator made."""
        acts = self.ints[I_ACTION, 1 : self.size]
        counts = np.bincount(acts, minlength=len(self.actions))
        return {name: int(c) for name, c in zip(self.actions, counts, strict=True)}

    def top_nodes(self, k: int) -> list[int]:
        """Ids of the ``k`` non-root nodes with the highest own score (ties: earlier first)."""
        if k < 0:
            raise InputError(f"k: must be >= 0, got {k}")
        scores = self.floats[F_SCORE, 1 : self.size]
        if scores.size == 0 or k == 0:
            return []
        k = min(k, scores.size)
        order = np.argsort(-scores, kind="stable")[:k]
        return [int(i) + 1 for i in order]

    def n_children(self, node: int) -> int:
        return int(self.ints[I_N_CHILDREN, self._check(node)])

    def _check(self, node: int) -> int:
        node = int(node)
        if not 0 <= node < self.size:
            raise InputError(f"node: {node} is not in the tree (size {self.size})")
        return node

    def copy(self) -> Tree:
        """A deep copy of the arrays; user states are shared (shallow list copy)."""
        return Tree(
            actions=self.actions,
            ints=self.ints.copy(),
            floats=self.floats.copy(),
            action_stats=self.action_stats.copy(),
            node_action_stats=self.node_action_stats.copy(),
            header=self.header.copy(),
            states=list(self.states),
        )


def _grow(arr: np.ndarray, cap: int) -> np.ndarray:
    out = np.zeros((arr.shape[0], cap), dtype=arr.dtype)
    out[:, : arr.shape[1]] = arr
    return out
