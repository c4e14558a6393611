"""workbench.reports.mcts_figures: the icicle and the decisions figure hold the graph's data,
and the HTML report carries both."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.mcts import search, tree_graph
from workbench.mcts.graph import TreeGraph
from workbench.mcts.tasks import drift_task
from workbench.reports.mcts_figures import (
    BEST_COLOUR,
    decisions_figure,
    tree_figure,
    write_tree_report,
)


def plotly_traces(html: str) -> list[list[dict[str, Any]]]:
    """The data (list of traces) of every ``Plotly.newPlot(id, data, ...)`` in ``html``."""
    decoder = json.JSONDecoder()
    out = []
    at = html.find("Plotly.newPlot(")
    while at >= 0:
        pos = at + len("Plotly.newPlot(")
        _, pos = decoder.raw_decode(html, html.index('"', pos))  # the div id
        data, _ = decoder.raw_decode(html, html.index("[", pos))
        out.append(data)
        at = html.find("Plotly.newPlot(", pos)
    return out


@pytest.fixture(scope="module")
def graph() -> TreeGraph:
    return tree_graph(search(drift_task(seed=2), iterations=800, seed=2), max_nodes=60)


def test_icicle_sizes_colours_and_outlines(graph: TreeGraph) -> None:
    (trace,) = tree_figure(graph).data
    assert trace.type == "icicle" and trace.branchvalues == "total"
    assert list(trace.ids) == [str(n.node_id) for n in graph.nodes]
    assert list(trace.parents) == [""] + [str(n.parent) for n in graph.nodes[1:]]
    assert list(trace.values) == [n.visits for n in graph.nodes]
    assert list(trace.marker.colors) == [n.mean_value for n in graph.nodes]
    outlined = {
        i for i, c in zip(trace.ids, trace.marker.line.color, strict=True) if c == BEST_COLOUR
    }
    assert outlined == {str(b) for b in graph.best_path}
    title = tree_figure(graph).layout.title.text
    assert f"{graph.dropped_nodes} less visited nodes left out" in title


def test_icicle_of_a_view_without_consistent_visits_uses_remainder() -> None:
    from tests.mcts.test_graph import _view

    view = _view(dropped=False)
    root = dataclasses.replace(view.nodes[0], visits=2)  # fewer than its children's 9
    odd = dataclasses.replace(view, nodes=(root, *view.nodes[1:]))
    (trace,) = tree_figure(tree_graph(odd)).data
    assert trace.branchvalues == "remainder"
    (trace,) = tree_figure(tree_graph(view)).data
    assert trace.branchvalues == "total"


def test_decisions_figure_plots_the_rolling_shares(graph: TreeGraph) -> None:
    fig = decisions_figure(graph, window=40)
    wider, root, depth = fig.data
    roll = graph.timeline.rolling(40)
    assert list(wider.x) == roll["step"].tolist()
    np.testing.assert_allclose(wider.y, roll["wider_share"])
    np.testing.assert_allclose(root.y, roll["root_share"])
    assert list(depth.y) == list(graph.timeline.depth_max) and depth.mode == "markers"
    tl = graph.timeline
    assert f"{tl.wider} wider, {tl.deeper} deeper" in fig.layout.title.text
    binned = TreeGraph.from_tree(
        search(drift_task(seed=2), iterations=800, seed=2).state.tree, max_bins=50
    )
    names = [t.name for t in decisions_figure(binned).data]
    assert names == ["wider", "at the root", "mean depth", "max depth"]


def test_html_report_holds_both_figures(graph: TreeGraph, tmp_path: Path) -> None:
    path = write_tree_report(graph, tmp_path / "tree.html", lines=["a line"])
    html = path.read_text()
    assert "<p>a line</p>" in html and "<h2>Decisions over time</h2>" in html
    icicle, decisions = plotly_traces(html)
    assert icicle[0]["ids"] == [str(n.node_id) for n in graph.nodes]
    assert icicle[0]["values"] == [n.visits for n in graph.nodes]
    assert decisions[2]["y"] == list(graph.timeline.depth_max)
