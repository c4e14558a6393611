"""Demo part: what this machine offers (the doctor's table) and a tiny benchmark."""

from __future__ import annotations

from workbench.reports.demo import DemoContext, DemoSection

__all__ = ["run"]


def run(ctx: DemoContext) -> DemoSection:
    import pandas as pd

    from workbench.doctor import run_checks
    from workbench.reports.bench import BenchContext, format_value, run_suites
    from workbench.reports.figures import bench_figures

    checks = run_checks(ctx.settings)
    table = pd.DataFrame([c.to_dict() for c in checks])
    bench = run_suites(
        ["env"],
        ctx=BenchContext(quick=True, show_progress=False),
        out_dir=ctx.settings.data_dir / "reports" / "bench",
    )[0]
    lines = [
        f"{c.name}: {c.value}" + (f" ({c.detail})" if c.detail else "")
        for c in checks
        if c.ok is not None
    ]
    lines += [f"{m.name}: {format_value(m.value, m.unit)}" for m in bench.measurements]
    return DemoSection(
        title="Environment",
        lines=lines,
        figures=bench_figures(bench.to_dict()),
        table=table,
    )
