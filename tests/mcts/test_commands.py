"""The ``workbench mcts`` command group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["mcts", "search", "--iterations", "300", "--json"],
        [
            "mcts",
            "search",
            "--task",
            "resample",
            "--algorithm",
            "uct",
            "--iterations",
            "50",
            "--json",
        ],
        ["mcts", "run", "--task", "game", "--iterations", "2000", "--json"],
        ["mcts", "orchestrate", "--agents", "a,b", "--iterations", "50", "--seed", "1", "--json"],
    ],
)
def test_verbs_print_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out


def test_algorithms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcts", "algorithms"]) == 0
    assert "ab-mcts-a" in capsys.readouterr().out


def test_bad_algorithm_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcts", "search", "--algorithm", "nope", "--iterations", "5"]) == 2
    assert "known algorithms" in capsys.readouterr().err


def test_search_plot_writes_the_tree_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.reports.test_mcts_figures import plotly_traces
    from workbench.mcts import search, tree_graph
    from workbench.mcts.tasks import drift_task

    page = tmp_path / "plots" / "tree.html"
    argv = ["mcts", "search", "--iterations", "300", "--seed", "4", "--plot", str(page)]
    assert main([*argv, "--plot-nodes", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(page)
    icicle, decisions = plotly_traces(page.read_text())
    # the same search, replayed from its seed
    graph = tree_graph(search(drift_task(seed=4), iterations=300, seed=4), max_nodes=40)
    assert graph.dropped_nodes > 0
    assert icicle[0]["type"] == "icicle"
    assert icicle[0]["ids"] == [str(n.node_id) for n in graph.nodes]
    assert icicle[0]["values"] == [n.visits for n in graph.nodes]
    assert [t["name"] for t in decisions] == ["wider", "at the root", "depth"]
    assert decisions[2]["y"] == list(graph.timeline.depth_max)
    assert main([*argv, "--plot-nodes", "0"]) == 2
    assert "max_nodes" in capsys.readouterr().err
