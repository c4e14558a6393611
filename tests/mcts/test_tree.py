"""The struct-of-arrays tree: growth by doubling, queries, golden trees replayed."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.mcts import Tree, search
from workbench.mcts import types as T
from workbench.mcts.tasks import drift_task

DATA = Path(__file__).parent / "data"
GOLDEN = ["uct", "thompson", "ab-mcts-a", "multi-model", "ab-mcts-m"]


def test_growth_keeps_content() -> None:
    tree = Tree.empty(["a", "b"], capacity=2, per_node_actions=True)
    assert tree.capacity == 64
    res = search(drift_task((0.4, 0.6), seed=0), iterations=500, algorithm="multi-model")
    t = res.state.tree
    assert t.capacity >= 501 and t.size == 501
    before = t.ints[:, : t.size].copy()
    t.reserve(5000)
    assert t.capacity >= 5501
    np.testing.assert_array_equal(t.ints[:, : t.size], before)
    assert t.node_action_stats.shape[1] == t.capacity


def test_queries() -> None:
    res = search(drift_task(seed=2), iterations=100, algorithm="ab-mcts-a")
    t = res.state.tree
    leaf = t.top_nodes(1)[0]
    path = t.path(leaf)
    assert path[0] == 0 and path[-1] == leaf
    assert all(t.parent(b) == a for a, b in itertools.pairwise(path))
    assert sum(t.n_children(i) for i in range(t.size)) == t.size - 1
    assert sorted(c for i in range(t.size) for c in t.children(i)) == list(range(1, t.size))
    assert sum(t.generator_counts().values()) == 100
    assert t.mean_values()[0] == pytest.approx(t.scores().mean())
    with pytest.raises(InputError):
        t.path(10_000)
    with pytest.raises(InputError):
        Tree.empty([])
    with pytest.raises(InputError):
        Tree.empty(["a", "a"])


def _snapshot(name: str) -> dict:
    res = search(drift_task(seed=0), iterations=60, algorithm=name, seed=123)
    t = res.state.tree
    return {
        "algorithm": name,
        "seed": 123,
        "iterations": 60,
        "parent": t.ints[T.I_PARENT, : t.size].tolist(),
        "action": t.ints[T.I_ACTION, : t.size].tolist(),
        "score": t.floats[T.F_SCORE, : t.size].tolist(),
    }


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_trees(name: str) -> None:
    """Small trees recorded from a known-good version replay exactly (same parents, same
    generators, same scores). Regenerate with WORKBENCH_MCTS_REGOLD=1 after an intended
    change of the algorithms' random-number use, and say so in the commit."""
    path = DATA / f"golden_{name}.json"
    got = _snapshot(name)
    if os.environ.get("WORKBENCH_MCTS_REGOLD") == "1":
        path.write_text(json.dumps(got) + "\n")
    want = json.loads(path.read_text())
    assert got == want


def test_pool_and_heap_blocks_stay_consistent() -> None:
    """After a search, every node's pool and heap blocks hold exactly its children, each
    child's slot points back at it, the heap is ordered once refreshed, and the arena fits
    in the columns (it is saved with them)."""
    from workbench.mcts import _kernels as K
    from workbench.mcts.tasks import gaussian_walk_task

    res = search({"m": gaussian_walk_task(0.1, seed=1)}, iterations=3000, algorithm="ab-mcts-a")
    t, p = res.state.tree, res.state.params
    assert t.header[T.H_ARENA] < 8 * (t.size - 1)
    for node in range(t.size):
        K._refresh(t.ints, t.floats, t.header, p, node)
        pool = [
            K._arena_get(t.ints, t.ints[T.I_POOL_AT, node] + i)
            for i in range(t.ints[T.I_N_POOL, node])
        ]
        heap = [
            K._arena_get(t.ints, t.ints[T.I_HEAP_AT, node] + i)
            for i in range(t.ints[T.I_N_HEAP, node])
        ]
        assert sorted(pool + heap) == sorted(t.children(node))
        assert all(t.ints[T.I_POOL, c] == 1 and t.ints[T.I_N_CHILDREN, c] == 0 for c in pool)
        assert all(t.ints[T.I_POOL, c] == 0 for c in heap)
        assert [t.ints[T.I_SLOT, c] for c in pool] == list(range(len(pool)))
        assert [t.ints[T.I_SLOT, c] for c in heap] == list(range(len(heap)))
        keys = [t.floats[T.F_KEY, c] for c in heap]
        assert all(keys[(i - 1) // 2] >= keys[i] for i in range(1, len(keys)))
