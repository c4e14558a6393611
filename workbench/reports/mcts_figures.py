"""Plotly figures of an AB-MCTS search tree, from a :class:`~workbench.mcts.graph.TreeGraph`.

* :func:`tree_figure`: an icicle of the kept nodes, sized by visits and coloured by the mean
  score of each subtree, the best path outlined;
* :func:`decisions_figure`: wider-vs-deeper decisions over time: the share of wider
  decisions and of expansions at the root in a trailing window, and the depth of each
  expansion (its mean and maximum per bin once a long search is binned);
* :func:`write_tree_report`: both in one self-contained HTML file
  (:func:`~workbench.reports.figures.write_html_report`).

Plotly is imported when a figure is made, so importing :mod:`workbench.mcts` never pulls it.
Values are passed to plotly as Python lists, so the HTML holds them as plain JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.mcts.graph import TreeGraph
from workbench.reports.figures import write_html_report

__all__ = ["decisions_figure", "tree_figure", "write_tree_report"]

#: Outline of the best path's nodes.
BEST_COLOUR = "#d62728"


def tree_figure(graph: TreeGraph, *, title: str = "Search tree") -> Any:
    """An icicle of ``graph``'s nodes: area by visits, colour by subtree mean score.

    Nodes on the best path get a thick red outline; hovering shows the generator, visits,
    own score and mean score. The caption states how many nodes were left out.
    """
    import plotly.graph_objects as go

    nodes = graph.nodes
    ids = [str(n.node_id) for n in nodes]
    parents = ["" if n.parent < 0 else str(n.parent) for n in nodes]
    visits = [n.visits for n in nodes]
    kids: dict[int, int] = {}
    for n in nodes:
        if n.parent >= 0:
            kids[n.parent] = kids.get(n.parent, 0) + n.visits
    # "total" sizes a node by its own value; it needs every parent's visits to cover its kept
    # children's, which holds for trees whose visits count every score below a node.
    total = all(kids.get(n.node_id, 0) <= n.visits for n in nodes)
    hover = [
        f"node {n.node_id} ({n.label})<br>depth {n.depth}<br>visits {n.visits}"
        f"<br>own score {'-' if n.score is None else f'{n.score:.3f}'}"
        f"<br>mean score {n.mean_value:.3f}{'<br>best path' if n.on_best_path else ''}"
        for n in nodes
    ]
    fig = go.Figure(
        go.Icicle(
            ids=ids,
            labels=[f"{n.label} #{n.node_id}" for n in nodes],
            parents=parents,
            values=visits,
            branchvalues="total" if total else "remainder",
            marker={
                "colors": [n.mean_value for n in nodes],
                "colorscale": "Viridis",
                "cmin": 0.0,
                "cmax": 1.0,
                "showscale": True,
                "colorbar": {"title": {"text": "mean score"}},
                "line": {
                    "color": [BEST_COLOUR if n.on_best_path else "white" for n in nodes],
                    "width": [4 if n.on_best_path else 1 for n in nodes],
                },
            },
            hovertext=hover,
            hoverinfo="text",
            tiling={"orientation": "v"},
            maxdepth=8,
        )
    )
    left_out = f"; {graph.dropped_nodes} less visited nodes left out" if graph.dropped_nodes else ""
    fig.update_layout(
        title=f"{title}: {graph.total_nodes} nodes{left_out} (best path outlined)",
        margin={"t": 60, "l": 10, "r": 10, "b": 10},
        height=560,
    )
    return fig


def decisions_figure(
    graph: TreeGraph, *, window: int | None = None, title: str = "Wider or deeper"
) -> Any:
    """Wider-vs-deeper decisions over the search.

    Top: in a trailing window of ``window`` expansions (default a twentieth of the search,
    at least 10), the share of decisions that went wider (one per expansion, at the new
    node's parent, against ``depth - 1`` deeper ones above it) and the share of expansions
    that widened the root. Bottom: the depth of each expansion (per bin: mean and maximum).
    """
    from plotly.subplots import make_subplots

    tl = graph.timeline
    if window is None:
        window = max(10, tl.steps // 20)
    roll = tl.rolling(window)
    step = roll["step"].tolist()
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            f"share of decisions in the last {window} expansions",
            "depth of the expansions" + ("" if tl.bin_width == 1 else f" (per {tl.bin_width})"),
        ),
    )
    fig.add_scatter(x=step, y=roll["wider_share"].tolist(), name="wider", row=1, col=1)
    fig.add_scatter(x=step, y=roll["root_share"].tolist(), name="at the root", row=1, col=1)
    if tl.bin_width == 1:
        fig.add_scatter(x=step, y=list(tl.depth_max), mode="markers", name="depth", row=2, col=1)
    else:
        fig.add_scatter(x=step, y=roll["mean_depth"].tolist(), name="mean depth", row=2, col=1)
        fig.add_scatter(
            x=step, y=list(tl.depth_max), name="max depth", line={"dash": "dot"}, row=2, col=1
        )
    fig.update_yaxes(range=[0, 1.02], title_text="share", row=1, col=1)
    fig.update_yaxes(title_text="depth", row=2, col=1)
    fig.update_xaxes(title_text="expansion", row=2, col=1)
    partial = "" if tl.complete else " (kept nodes only)"
    fig.update_layout(
        title=f"{title}: {tl.wider} wider, {tl.deeper} deeper decisions{partial}",
        template="plotly_white",
        height=560,
    )
    return fig


def write_tree_report(
    graph: TreeGraph,
    path: Path | str,
    *,
    title: str = "AB-MCTS search tree",
    lines: Sequence[str] = (),
) -> Path:
    """Write both figures of ``graph`` to a self-contained HTML file; returns its path."""
    return write_html_report(
        path,
        title,
        [
            ("Tree", list(lines), [tree_figure(graph)]),
            ("Decisions over time", [], [decisions_figure(graph)]),
        ],
    )
