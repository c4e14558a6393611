"""The analytics part of ``workbench demo``."""

from __future__ import annotations

from workbench.config import Settings
from workbench.reports.demo import DemoContext
from workbench.reports.demos import analytics


def test_demo_part_ingests_idempotently_and_recovers_the_best_sets() -> None:
    section = analytics.run(DemoContext(Settings(), smoke=True, seed=0))
    assert section.figures and section.table is not None
    assert len(section.table) == 5
    assert any("replaying them added nothing" in line for line in section.lines)
    assert sum("for 5 of 5 task types" in line for line in section.lines) == 2  # store, optimizer
