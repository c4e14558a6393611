"""The ``workbench mcts`` command group."""

from __future__ import annotations

import json

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
