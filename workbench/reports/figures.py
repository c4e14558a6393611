"""Plotly figures for benchmark reports and the demo, and a self-contained HTML writer."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["bench_figures", "write_html_report"]


def bench_figures(run: dict[str, Any]) -> list[Any]:
    """One bar chart per metric of a saved run (``BenchRun.to_dict()``): tools side by side,
    the target as a dashed line."""
    import plotly.graph_objects as go

    by_metric: dict[str, list[dict[str, Any]]] = {}
    for m in run["measurements"]:
        by_metric.setdefault(m["metric"], []).append(m)
    figures = []
    for metric, rows in by_metric.items():
        fig = go.Figure()
        tools = sorted({r["tool"] for r in rows}, key=lambda t: (t != "workbench", t))
        for tool in tools:
            mine = [r for r in rows if r["tool"] == tool]
            fig.add_bar(
                name=tool,
                x=[r["name"] for r in mine],
                y=[r["value"] for r in mine],
                hovertext=[r.get("note", "") for r in mine],
            )
        targets = [r for r in rows if r.get("target") is not None]
        for r in targets:
            fig.add_hline(
                y=r["target"], line_dash="dash", annotation_text=f"target {r['target']:g}"
            )
        unit = rows[0]["unit"]
        better = rows[0]["better"]
        fig.update_layout(
            title=f"{run['suite']}: {metric} ({unit}, {better} is better)",
            barmode="group",
            yaxis_title=unit,
            template="plotly_white",
            height=420,
        )
        figures.append(fig)
    return figures


def write_html_report(
    path: Path | str, title: str, sections: Sequence[tuple[str, Sequence[str], Sequence[Any]]]
) -> Path:
    """Write a self-contained HTML file (plotly.js inlined once) of titled sections.

    Args:
        path: Output file; its folder is created.
        title: Page title.
        sections: ``(heading, lines of text or HTML tables, plotly figures)`` per section.
    """
    import plotly.io as pio

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        "pre{background:#f6f6f6;padding:8px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    first_figure = True
    for heading, lines, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for line in lines:
            parts.append(line if line.lstrip().startswith("<") else f"<p>{html.escape(line)}</p>")
        for fig in figures:
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=first_figure))
            first_figure = False
    parts.append("</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(out)
    return out
