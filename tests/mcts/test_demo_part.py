"""The AB-MCTS part of ``workbench demo``."""

from __future__ import annotations

from workbench.config import Settings
from workbench.reports.demo import DemoContext
from workbench.reports.demos import mcts


def test_demo_part_learns_the_best_agent() -> None:
    section = mcts.run(DemoContext(Settings(), smoke=True, seed=0))
    assert section.figures and section.table is not None
    assert section.table.iloc[0]["agent"] == "synthesizer"
    assert any("chosen in" in line for line in section.lines)
