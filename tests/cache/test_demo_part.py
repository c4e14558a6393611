"""The cache part of ``workbench demo``."""

from __future__ import annotations

from workbench.config import Settings
from workbench.reports.demo import DemoContext
from workbench.reports.demos import cache


def test_demo_part_matches_che_and_rides_through_an_outage() -> None:
    section = cache.run(DemoContext(Settings(), smoke=True, seed=0))
    assert len(section.figures) == 2 and section.table is not None
    gaps = (section.table["measured"] - section.table["che"]).abs()
    assert gaps.max() < 0.03  # a smoke-sized catalog: Che's error and the sampling error
    assert any("0 errors reached callers, 0 stale reads, 0 writes lost" in s for s in section.lines)
