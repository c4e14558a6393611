"""``workbench demo``: the main job on embedded defaults, ending in one HTML report.

Each subsystem contributes a part (a module in :data:`DEMO_PARTS` with
``run(ctx: DemoContext) -> DemoSection``). Parts use only embedded defaults (in-memory or file
stores, a simulated GPU), so the demo runs on a fresh machine without Redis or a GPU. A part
that fails is reported in its section and the demo goes on; the command exits non-zero.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config import Settings, load_settings

__all__ = ["DEMO_PARTS", "DemoContext", "DemoResult", "DemoSection", "run_demo"]

logger = logging.getLogger(__name__)

#: Demo parts, in the order they run: name -> module.
DEMO_PARTS: dict[str, str] = {
    "environment": "workbench.reports.demos.environment",
    "mcts": "workbench.reports.demos.mcts",
    "optimize": "workbench.reports.demos.optimize",
    "gpu": "workbench.reports.demos.gpu",
    "cache": "workbench.reports.demos.cache",
    "analytics": "workbench.reports.demos.analytics",
    "router": "workbench.reports.demos.router",
}


@dataclass
class DemoContext:
    """What a part gets: settings, whether to run a shrunken version, and a seed."""

    settings: Settings
    smoke: bool = False
    seed: int = 0


@dataclass
class DemoSection:
    """What a part returns.

    Attributes:
        title: Section heading.
        lines: Sentences of findings (printed and shown in the report).
        figures: plotly figures for the report.
        table: An optional pandas DataFrame shown as a table.
    """

    title: str
    lines: list[str] = field(default_factory=list)
    figures: list[Any] = field(default_factory=list)
    table: Any = None


@dataclass(frozen=True)
class DemoResult:
    """Sections produced, parts that failed, and where the report is."""

    sections: list[DemoSection]
    failed: list[str]
    report: Path
    seconds: float


def run_demo(
    parts: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    smoke: bool | None = None,
    report: Path | str | None = None,
    echo: Any = None,
) -> DemoResult:
    """Run the demo parts and write the HTML report.

    Args:
        parts: Names from :data:`DEMO_PARTS` (default: all).
        settings: Settings (default :func:`load_settings`).
        smoke: Shrink budgets (default ``settings.smoke``).
        report: Output HTML path (default ``<data_dir>/reports/demo.html``).
        echo: Called with each line as it is found (the CLI prints them).
    """
    from workbench.errors import InputError
    from workbench.reports.figures import write_html_report

    settings = settings or load_settings()
    ctx = DemoContext(settings=settings, smoke=settings.smoke if smoke is None else smoke)
    names = list(parts) if parts else list(DEMO_PARTS)
    unknown = [n for n in names if n not in DEMO_PARTS]
    if unknown:
        raise InputError(f"unknown demo part(s) {unknown}; known: {', '.join(DEMO_PARTS)}")
    sections: list[DemoSection] = []
    failed: list[str] = []
    t0 = time.perf_counter()
    for name in names:
        start = time.perf_counter()
        try:
            section = importlib.import_module(DEMO_PARTS[name]).run(ctx)
        except Exception as exc:  # a failing part is reported, the others still run
            logger.error("demo part %s failed: %s", name, exc)
            failed.append(name)
            section = DemoSection(
                title=f"{name} (FAILED)",
                lines=[f"{type(exc).__name__}: {exc}", f"<pre>{traceback.format_exc()}</pre>"],
            )
        section.lines.append(f"({name} took {time.perf_counter() - start:.1f} s)")
        if echo is not None:
            echo(section)
        sections.append(section)
    out = Path(report) if report else settings.data_dir / "reports" / "demo.html"
    html_sections = []
    for s in sections:
        lines = list(s.lines)
        if s.table is not None:
            lines.append(s.table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        html_sections.append((s.title, lines, s.figures))
    write_html_report(out, "workbench demo", html_sections)
    return DemoResult(sections, failed, out, time.perf_counter() - t0)
