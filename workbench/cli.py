"""The ``workbench`` command line.

Top-level verbs: ``doctor``, ``demo``, ``serve``, ``bench``; then one group per subsystem
(``workbench mcts ...``, ``workbench gpu ...``) from the modules named in
:data:`SUBSYSTEM_COMMANDS`. Errors of the WorkbenchError family print one line and exit 2;
anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from workbench import __version__
from workbench.errors import WorkbenchError

__all__ = ["SUBSYSTEM_COMMANDS", "build_parser", "main"]

#: Subsystem command groups: each is ``workbench.commands.<name>`` with ``register()``.
SUBSYSTEM_COMMANDS: tuple[str, ...] = ("mcts", "optimize", "gpu", "cache", "analytics", "router")


def _console() -> Any:
    from rich.console import Console

    return Console()


def _cmd_doctor(args: argparse.Namespace) -> int:
    from workbench.config import load_settings
    from workbench.doctor import run_checks

    checks = run_checks(load_settings())
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"workbench {__version__} doctor")
    for col in ("check", "status", "value", "detail"):
        table.add_column(col)
    marks = {True: "[green]ok[/]", False: "[red]missing[/]", None: "[dim]info[/]"}
    for c in checks:
        table.add_row(c.name, marks[c.ok], c.value, c.detail)
    _console().print(table)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from workbench.config import load_settings
    from workbench.logging import configure_logging
    from workbench.reports.demo import run_demo

    configure_logging("WARNING")
    console = _console()
    settings = load_settings(smoke=True if args.smoke else None)

    def echo(section: Any) -> None:
        console.rule(f"[bold]{section.title}")
        for line in section.lines:
            if not line.lstrip().startswith("<"):
                console.print(line, markup=False, highlight=False)

    with console.status("running the demo..."):
        result = run_demo(args.parts or None, settings=settings, report=args.report, echo=echo)
    console.rule()
    console.print(f"report: {result.report} ({result.seconds:.1f} s)")
    if result.failed:
        console.print(f"[red]failed parts: {', '.join(result.failed)}")
        return 1
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from workbench.api.server import serve
    from workbench.config import load_settings
    from workbench.logging import configure_logging

    settings = load_settings(host=args.host, port=args.port, workers=args.workers)
    configure_logging(settings.log_level)
    serve(settings, insecure=args.insecure)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.table import Table

    from workbench.reports.bench import SUITES, BenchContext, format_value, run_suites
    from workbench.reports.figures import bench_figures, write_html_report

    if args.list:
        for name, module in SUITES.items():
            print(f"{name}\t{module}")
        return 0
    if args.markdown:
        from workbench.reports.bench import load_run, markdown_table, run_kind

        names = args.suites or list(SUITES)
        kind = run_kind(args.quick, tuple(args.part or ()))
        paths = [Path(args.out) / f"{n}-{kind}-latest.json" for n in names]
        print(markdown_table([load_run(p) for p in paths if p.exists()]))
        return 0
    ctx = BenchContext(quick=args.quick, parts=tuple(args.part or ()))
    if args.seeds is not None:
        ctx.seeds = list(range(args.seeds))
    runs = run_suites(args.suites, ctx=ctx, out_dir=Path(args.out))
    console = _console()
    sections = []
    for run in runs:
        table = Table(title=f"{run.suite} ({run.seconds:.1f} s, {run.machine['cpu']})")
        for col in ("benchmark", "tool", "metric", "value", "target", "met"):
            table.add_column(col)
        for m in run.measurements:
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[m.meets_target]
            table.add_row(
                m.name,
                m.tool,
                m.metric,
                format_value(m.value, m.unit),
                "" if m.target is None else f"{m.target:g}",
                met,
            )
        console.print(table)
        data = run.to_dict()
        lines = [f"machine: {json.dumps(run.machine)}"]
        sections.append((f"{run.suite}", lines, bench_figures(data)))
    report = write_html_report(Path(args.report), "workbench benchmarks", sections)
    console.print(f"saved JSON under {args.out}; report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subsystem groups included)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Build, measure and serve the platform's compute services.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("doctor", help="check Python, libraries, GPU, Redis and PostgreSQL")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("demo", help="run the main job on embedded defaults; write an HTML report")
    p.add_argument("parts", nargs="*", help="demo parts to run (default: all)")
    p.add_argument("--smoke", action="store_true", help="shrink budgets (also WORKBENCH_SMOKE=1)")
    p.add_argument("--report", default=None, help="output HTML (default data/reports/demo.html)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080; 0 picks one)")
    p.add_argument("--workers", type=int, default=None, help="server processes (default 1)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without WORKBENCH_API_TOKEN",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("bench", help="run benchmark suites; save JSON and a plotly report")
    p.add_argument("suites", nargs="*", help="suites to run (default: all; --list shows them)")
    p.add_argument("--quick", action="store_true", help="short runs (smoke)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10)")
    p.add_argument("--out", default="data/benchmarks", help="folder of the JSON results")
    p.add_argument("--report", default="data/reports/bench.html", help="output HTML")
    p.add_argument("--list", action="store_true", help="list suites and exit")
    p.add_argument(
        "--part",
        action="append",
        help="run only this part of a suite (repeatable; mcts: speed, treequest, quality, "
        "jitted, orchestration, process)",
    )
    p.add_argument(
        "--markdown",
        action="store_true",
        help=(
            "print the latest saved full runs (with --part, of those parts) as a Markdown "
            "table (no new run)"
        ),
    )
    p.set_defaults(func=_cmd_bench)

    for name in SUBSYSTEM_COMMANDS:
        importlib.import_module(f"workbench.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
