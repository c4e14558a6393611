"""A search tree as plain, bounded data: nodes, the best path, and wider-vs-deeper decisions.

:class:`TreeGraph` is what the figures of :mod:`workbench.reports.mcts_figures`, the CLI's
``workbench mcts search --plot`` and ``GET /api/v1/ab-mcts/visualization/{id}?format=graph``
show. It is built from a :class:`~workbench.mcts.tree.Tree` (a search's, or an
orchestration's) or from a :class:`~workbench.mcts.results.TreeView` (the view an
orchestrator keeps, and persists, of its trees):

* **nodes**: per node its parent, depth, generator (agent) label, visits, own score, mean
  score of its subtree and whether it lies on the best path. At most ``max_nodes`` of the
  most visited nodes are kept, plus the best path, with the same rule as
  :meth:`Orchestrator.visualization <workbench.mcts.orchestrate.Orchestrator.visualization>`;
  :attr:`TreeGraph.dropped_nodes` says how many were left out.
* **decisions over time** (:class:`ExpansionTimeline`): each told trial of AB-MCTS created one
  child. At the new node's parent the search went *wider* (it generated a new child there);
  at each ancestor above that parent it went *deeper* (into an existing child). Node ids grow
  with creation, each node's parent is where the search generated and its depth says how
  deep the search went, so the decisions follow from the tree alone: an expansion at depth
  ``d`` is one wider decision and ``d - 1`` deeper ones. Long searches are summarised in at
  most ``max_bins`` equal bins of consecutive expansions, so the graph stays bounded.

The rolling shares are computed here with numpy (cumulative sums over bins) rather than
pandas, which would be a heavy import on the search's path for two lines of arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench.errors import InputError
from workbench.mcts.results import TreeView
from workbench.mcts.search import SearchResult, SearchState
from workbench.mcts.tree import Tree
from workbench.mcts.types import F_SCORE, I_ACTION, I_DEPTH, I_PARENT, I_VISITS

__all__ = ["GRAPH_FORMAT", "ExpansionTimeline", "GraphNode", "TreeGraph", "tree_graph"]

#: Version of the JSON shape of :meth:`TreeGraph.to_dict`.
GRAPH_FORMAT = 1

#: Nodes a graph keeps by default (besides the best path).
DEFAULT_MAX_NODES = 500

#: Bins the decisions timeline is summarised in by default.
DEFAULT_MAX_BINS = 2000


@dataclass(frozen=True)
class GraphNode:
    """One node of a :class:`TreeGraph`.

    Attributes:
        node_id: Id in the tree (0 is the root; ids grow with creation).
        parent: Id of the parent (-1 for the root).
        depth: Depth (the root is 0).
        label: Name of the generator (agent) that made the node; ``"root"`` for the root.
        visits: Scores observed in the node's subtree, its own included.
        score: The node's own score in [0, 1]; ``None`` for the root and where the source
            keeps none (orchestration trees score paths, not nodes).
        mean_value: Mean score over the subtree (0 while unvisited).
        on_best_path: The node lies on the path from the root to the best node.
    """

    node_id: int
    parent: int
    depth: int
    label: str
    visits: int
    score: float | None
    mean_value: float
    on_best_path: bool


@dataclass(frozen=True)
class ExpansionTimeline:
    """Wider-vs-deeper decisions over time, in bins of ``bin_width`` consecutive expansions.

    Expansion ``k`` (0-based) created node ``k + 1``. An expansion at depth ``d`` went wider
    once (at the new node's parent) and deeper ``d - 1`` times (at every ancestor above it).
    All sequences have one entry per non-empty bin, in time order.

    Attributes:
        steps: Expansions of the whole tree (nodes minus the root).
        bin_width: Expansions per bin (1 while ``steps <= max_bins``: one bin per expansion).
        complete: ``False`` when the source had dropped nodes (a capped
            :class:`~workbench.mcts.results.TreeView`): the bins then count only the kept
            nodes' expansions, which over-represent the most visited (early, shallow) ones.
        start: First expansion index of each bin.
        count: Expansions counted in each bin.
        depth_sum: Sum of their depths (wider + deeper decisions).
        depth_max: Deepest of them.
        root_expansions: Of them, how many generated a child of the root.
    """

    steps: int
    bin_width: int
    complete: bool
    start: tuple[int, ...]
    count: tuple[int, ...]
    depth_sum: tuple[int, ...]
    depth_max: tuple[int, ...]
    root_expansions: tuple[int, ...]

    @property
    def wider(self) -> int:
        """Wider decisions counted (one per expansion)."""
        return int(sum(self.count))

    @property
    def deeper(self) -> int:
        """Deeper decisions counted (depth - 1 per expansion)."""
        return int(sum(self.depth_sum)) - self.wider

    def rolling(self, window: int) -> dict[str, np.ndarray]:
        """Shares over a trailing window of about ``window`` expansions, per bin.

        The window spans ``max(1, round(window / bin_width))`` bins (fewer at the start).

        Returns:
            ``step``: ``float64[n_bins]``, index of the last expansion of each bin;
            ``wider_share``: wider decisions / all decisions in the window;
            ``root_share``: expansions at the root / expansions in the window;
            ``mean_depth``: mean depth of the expansions of each bin (not rolled).
        """
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InputError(f"window: must be an integer >= 1, got {window!r}")
        count = np.asarray(self.count, dtype=np.float64)
        depth = np.asarray(self.depth_sum, dtype=np.float64)
        root = np.asarray(self.root_expansions, dtype=np.float64)
        k = max(1, round(window / self.bin_width))

        def trailing(x: np.ndarray) -> np.ndarray:
            c = np.concatenate(([0.0], np.cumsum(x)))
            lo = np.maximum(np.arange(x.size) + 1 - k, 0)
            return c[1:] - c[lo]

        n, d = trailing(count), trailing(depth)
        start = np.asarray(self.start, dtype=np.float64)
        return {
            "step": np.minimum(start + self.bin_width, float(self.steps)) - 1.0,
            "wider_share": np.divide(n, d, out=np.zeros_like(n), where=d > 0),
            "root_share": np.divide(trailing(root), n, out=np.zeros_like(n), where=n > 0),
            "mean_depth": np.divide(depth, count, out=np.zeros_like(depth), where=count > 0),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("start", "count", "depth_sum", "depth_max", "root_expansions"):
            out[key] = list(out[key])
        out["wider"] = self.wider
        out["deeper"] = self.deeper
        return out

    @classmethod
    def from_creations(
        cls, node_ids: np.ndarray, depths: np.ndarray, *, steps: int, max_bins: int
    ) -> ExpansionTimeline:
        """Bin the expansions that created ``node_ids`` (``int64[m]``, ascending, no root)
        at ``depths`` (``int64[m]``); ``steps`` is the number of expansions of the whole
        tree."""
        width = max(1, math.ceil(steps / max_bins))
        if node_ids.size == 0:
            return cls(steps, width, node_ids.size == steps, (), (), (), (), ())
        b = (node_ids - 1) // width
        n_bins = int(b[-1]) + 1
        count = np.bincount(b, minlength=n_bins)
        depth_sum = np.bincount(b, weights=depths, minlength=n_bins)
        root = np.bincount(b, weights=(depths == 1), minlength=n_bins)
        depth_max = np.zeros(n_bins, dtype=np.int64)
        np.maximum.at(depth_max, b, depths)
        used = np.flatnonzero(count)

        def ints(x: np.ndarray) -> tuple[int, ...]:
            return tuple(int(v) for v in np.rint(x[used]))

        return cls(
            steps=int(steps),
            bin_width=width,
            complete=int(node_ids.size) == int(steps),
            start=tuple(int(i) * width for i in used),
            count=ints(count),
            depth_sum=ints(depth_sum),
            depth_max=ints(depth_max),
            root_expansions=ints(root),
        )


@dataclass(frozen=True)
class TreeGraph:
    """A bounded picture of a search tree (see the module docstring).

    Attributes:
        nodes: The kept nodes, by id (every kept node's parent is kept).
        best_path: Node ids from the root to the best node (the root alone if none).
        total_nodes: Nodes of the whole tree, the root included.
        dropped_nodes: Nodes of the tree left out of ``nodes``.
        max_nodes: The cap the nodes were chosen under (``None``: as the source gave them).
        timeline: The wider-vs-deeper decisions over time.
    """

    nodes: tuple[GraphNode, ...]
    best_path: tuple[int, ...]
    total_nodes: int
    dropped_nodes: int
    max_nodes: int | None
    timeline: ExpansionTimeline

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (snake_case; the HTTP layer renames it to camelCase)."""
        return {
            "format": GRAPH_FORMAT,
            "total_nodes": self.total_nodes,
            "dropped_nodes": self.dropped_nodes,
            "max_nodes": self.max_nodes,
            "best_path": list(self.best_path),
            "nodes": [asdict(n) for n in self.nodes],
            "timeline": self.timeline.to_dict(),
        }

    @classmethod
    def from_tree(
        cls,
        tree: Tree,
        *,
        best_node: int | None = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_bins: int = DEFAULT_MAX_BINS,
        own_scores: bool = True,
    ) -> TreeGraph:
        """The graph of ``tree``.

        Args:
            tree: A search's tree (``result.state.tree``) or an orchestration's.
            best_node: The node whose root path is the best path; default the node with the
                highest own score (the one :attr:`SearchResult.best_state` comes from). For
                an orchestration pass the last node of its ``best_path``.
            max_nodes: Keep at most this many of the most visited nodes (ties: earlier
                first), plus the best path.
            max_bins: Bins of the decisions timeline, at most.
            own_scores: Report each node's own score; pass ``False`` for orchestration
                trees, which keep none (``score`` is then ``None``).
        """
        _check_positive("max_nodes", max_nodes)
        _check_positive("max_bins", max_bins)
        size = tree.size
        if best_node is None:
            top = tree.top_nodes(1)
            best_node = top[0] if top else 0
        best = tuple(tree.path(best_node))
        parents = tree.ints[I_PARENT, :size]
        visits = tree.ints[I_VISITS, :size]
        depths = tree.ints[I_DEPTH, :size]
        keep = _select(parents, visits, best, max_nodes)
        means = tree.mean_values()
        on_best = set(best)
        nodes = tuple(
            GraphNode(
                node_id=i,
                parent=int(parents[i]),
                depth=int(depths[i]),
                label="root" if i == 0 else tree.actions[int(tree.ints[I_ACTION, i])],
                visits=int(visits[i]),
                score=float(tree.floats[F_SCORE, i]) if own_scores and i > 0 else None,
                mean_value=float(means[i]),
                on_best_path=i in on_best,
            )
            for i in (int(j) for j in keep)
        )
        timeline = ExpansionTimeline.from_creations(
            np.arange(1, size, dtype=np.int64), depths[1:], steps=size - 1, max_bins=max_bins
        )
        return cls(nodes, best, size, size - len(nodes), max_nodes, timeline)

    @classmethod
    def from_view(
        cls,
        view: TreeView,
        *,
        max_nodes: int | None = None,
        max_bins: int = DEFAULT_MAX_BINS,
    ) -> TreeGraph:
        """The graph of an orchestration's :class:`~workbench.mcts.results.TreeView`.

        A view keeps no own scores (``score`` is ``None``), and a view that dropped nodes
        yields an incomplete timeline (see :attr:`ExpansionTimeline.complete`).

        Args:
            view: The view (from :meth:`Orchestrator.visualization`, or as persisted).
            max_nodes: Cap the view's nodes further (``None``: keep them all).
            max_bins: Bins of the decisions timeline, at most.
        """
        if max_nodes is not None:
            _check_positive("max_nodes", max_nodes)
        _check_positive("max_bins", max_bins)
        by_id = {n.node_id: n for n in view.nodes}
        parent_of = {e.target: e.source for e in view.edges}
        ids = np.array(sorted(by_id), dtype=np.int64)
        parents = np.array([parent_of.get(int(i), -1) for i in ids], dtype=np.int64)
        visits = np.array([by_id[int(i)].visits for i in ids], dtype=np.int64)
        best = tuple(
            sorted((n.node_id for n in view.nodes if n.is_best), key=lambda i: by_id[i].depth)
        )
        if max_nodes is not None:
            pos = {int(i): k for k, i in enumerate(ids)}
            local = _select(
                np.array([pos.get(int(p), -1) for p in parents], dtype=np.int64),
                visits,
                tuple(pos[b] for b in best),
                max_nodes,
            )
            ids = ids[local]
        nodes = tuple(
            GraphNode(
                node_id=int(i),
                parent=parent_of.get(int(i), -1),
                depth=by_id[int(i)].depth,
                label=by_id[int(i)].label,
                visits=by_id[int(i)].visits,
                score=None,
                mean_value=by_id[int(i)].score,
                on_best_path=by_id[int(i)].is_best,
            )
            for i in ids
        )
        total = view.metrics.total_nodes
        made = np.array([n.node_id for n in nodes if n.node_id > 0], dtype=np.int64)
        made_depths = np.array([n.depth for n in nodes if n.node_id > 0], dtype=np.int64)
        timeline = ExpansionTimeline.from_creations(
            made, made_depths, steps=max(total - 1, 0), max_bins=max_bins
        )
        return cls(nodes, best, total, total - len(nodes), max_nodes, timeline)


def tree_graph(
    source: SearchResult | SearchState | Tree | TreeView,
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    max_bins: int = DEFAULT_MAX_BINS,
) -> TreeGraph:
    """The :class:`TreeGraph` of a search result, a search state, a tree or a tree view.

    For a search (result, state or tree) the best path leads to the node with the highest
    own score; for a view it is the view's own. Use :meth:`TreeGraph.from_tree` for other
    choices (an orchestration tree, another best node).

    Example::

        result = search(fns, iterations=1000)
        graph = tree_graph(result)
        graph.dropped_nodes, graph.timeline.deeper
    """
    if isinstance(source, TreeView):
        return TreeGraph.from_view(source, max_bins=max_bins)
    if isinstance(source, SearchResult):
        source = source.state
    if isinstance(source, SearchState):
        source = source.tree
    if not isinstance(source, Tree):
        raise InputError(
            "source: need a SearchResult, SearchState, Tree or TreeView, got "
            f"{type(source).__name__}"
        )
    return TreeGraph.from_tree(source, max_nodes=max_nodes, max_bins=max_bins)


def _select(
    parents: np.ndarray, visits: np.ndarray, best: tuple[int, ...], max_nodes: int
) -> np.ndarray:
    """Positions kept: the ``max_nodes`` most visited (stable: ties keep the earlier node)
    plus ``best``, then only those whose parent is kept (positions ascend with creation, so
    one pass in order settles it). Returns ascending positions."""
    order = np.argsort(-visits, kind="stable")[:max_nodes]
    chosen = np.zeros(visits.size, dtype=np.bool_)
    chosen[order] = True
    chosen[list(best)] = True
    kept = np.zeros_like(chosen)
    for i in np.flatnonzero(chosen):
        p = int(parents[i])
        kept[i] = p < 0 or kept[p]
    return np.flatnonzero(kept)


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name}: must be an integer >= 1, got {value!r}")
