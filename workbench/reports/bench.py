"""``workbench bench``: run registered benchmark suites, save JSON, plot, compare to baselines.

A suite is a module in :data:`SUITES` with ``run(ctx: BenchContext) -> list[Measurement]``.
Each run writes ``data/benchmarks/<suite>-full-<UTC timestamp>.json`` and
``data/benchmarks/<suite>-full-latest.json`` (``quick`` for ``--quick``; a run of some parts
only names them instead of ``full``, ``<suite>-<part>+<part>-...``, so it never replaces the
latest whole run) holding the measurements and the machine they were taken on (CPU model,
cores, Python and library versions, git commit), and a plotly HTML report under
``data/reports/``. Baselines are measurements of other tools taken in the same run
(``tool != "workbench"``), so a comparison never mixes machines or days.

Benchmarks are never timed tests: tests check behaviour; this command measures.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from workbench.errors import InputError

__all__ = [
    "SUITES",
    "BenchContext",
    "BenchRun",
    "Measurement",
    "format_value",
    "machine_info",
    "markdown_table",
    "run_suites",
    "time_call",
]

#: Registered suites: name -> module with ``run(ctx) -> list[Measurement]``.
SUITES: dict[str, str] = {
    "env": "workbench.reports.benchmarks.env",
    "service": "workbench.reports.benchmarks.service",
    "mcts": "workbench.reports.benchmarks.mcts",
    "optimize": "workbench.reports.benchmarks.optimize",
    "gpu": "workbench.reports.benchmarks.gpu",
    "cache": "workbench.reports.benchmarks.cache",
    "analytics": "workbench.reports.benchmarks.analytics",
    "router": "workbench.reports.benchmarks.router",
}

FORMAT_VERSION = 1
T = TypeVar("T")


@dataclass(frozen=True)
class Measurement:
    """One measured number.

    Attributes:
        name: What was measured, e.g. ``"ab-mcts-a 10k steps"``.
        tool: ``"workbench"`` or the baseline's name (``"treequest"``, ``"optuna-tpe"``).
        metric: The quantity, e.g. ``"steps_per_s"``, ``"p50_latency_ms"``.
        value: The measured value (``nan`` where the tool could not run).
        unit: Unit of ``value``.
        better: Whether ``"higher"`` or ``"lower"`` values are better.
        target: The value the issue sets as the goal, when there is one.
        params: Conditions of the measurement (sizes, seeds, threads).
        note: Anything a reader needs to interpret the number.
    """

    name: str
    tool: str
    metric: str
    value: float
    unit: str
    better: Literal["higher", "lower"] = "higher"
    target: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise InputError(f"Measurement.better={self.better!r} must be 'higher' or 'lower'")

    @property
    def meets_target(self) -> bool | None:
        if self.target is None or self.value != self.value:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["meets_target"] = self.meets_target
        if out["value"] != out["value"]:
            out["value"] = None
        return out


@dataclass
class BenchContext:
    """What a suite gets from the frame.

    Attributes:
        quick: Run a short version (CI smoke, demos); full runs produce the README table.
        seeds: Seeds to repeat stochastic measurements over.
        show_progress: Whether to draw progress bars.
        parts: Names of the parts of a suite to run (empty: all); a suite that has parts
            says which, and refuses names it does not know.
    """

    quick: bool = False
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    show_progress: bool = True
    parts: tuple[str, ...] = ()

    def progress(
        self, iterable: Iterable[T], *, desc: str = "", total: int | None = None
    ) -> Iterator[T]:
        """Wrap ``iterable`` in a progress bar (tqdm) when progress is shown."""
        if not self.show_progress:
            yield from iterable
            return
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)


def run_kind(quick: bool, parts: Sequence[str] = ()) -> str:
    """``full``, ``quick``, or the parts run (``ttfb``, ``quick-ttfb+decision``): the middle
    of a saved run's file names."""
    if not parts:
        return "quick" if quick else "full"
    return ("quick-" if quick else "") + "+".join(parts)


@dataclass(frozen=True)
class BenchRun:
    """The result of one suite: measurements plus where and when they were taken."""

    suite: str
    measurements: list[Measurement]
    machine: dict[str, Any]
    started_at: str
    seconds: float
    quick: bool
    parts: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The run's file-name kind (:func:`run_kind`)."""
        return run_kind(self.quick, self.parts)

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "format": "workbench-bench",
            "version": FORMAT_VERSION,
            "suite": self.suite,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "quick": self.quick,
            "machine": self.machine,
            "measurements": [m.to_dict() for m in self.measurements],
        }
        if self.parts:
            doc["parts"] = list(self.parts)
        return doc


def spread(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and interquartile range of repeats (and the repeats themselves)."""
    xs = sorted(samples)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) >= 2 else [xs[0]] * 3
    return {
        "median": statistics.median(xs),
        "min": xs[0],
        "max": xs[-1],
        "iqr": q[2] - q[0],
        "repeats": [float(f"{x:.6g}") for x in samples],
    }


def repeated(
    name: str,
    tool: str,
    metric: str,
    samples: Sequence[float] | None,
    unit: str,
    *,
    better: Literal["higher", "lower"],
    note: str = "",
    target: float | None = None,
    params: dict[str, Any] | None = None,
    invalid: str = "",
) -> Measurement:
    """A measurement whose value is the median of repeated ``samples`` (NaNs dropped), with
    their spread in ``params["spread"]`` and the range in the note; ``invalid`` says why it
    is missing instead (its value is then NaN)."""
    stats: dict[str, Any] = {}
    xs = [float(x) for x in samples or [] if x == x]
    if invalid or not xs:
        value = float("nan")
        note = "; ".join(x for x in (invalid or "not measured", note) if x)
    else:
        stats = spread(xs)
        value = stats["median"]
        head = f"median of {len(xs)} repeats, range {stats['min']:.4g} to {stats['max']:.4g}"
        note = f"{head}; {note}" if note else head
    return Measurement(
        name,
        tool,
        metric,
        value,
        unit,
        better=better,
        target=target,
        params={**(params or {}), **({"spread": stats} if stats else {})},
        note=note,
    )


def time_call(fn: Callable[[], Any], *, repeat: int = 5, number: int = 1) -> list[float]:
    """Seconds per call of ``fn`` for each of ``repeat`` rounds of ``number`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - start) / number)
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict[str, Any]:
    """The facts that make a measurement comparable: hardware, software, commit."""
    from workbench import __version__
    from workbench.doctor import cpu_model

    libs: dict[str, str | None] = {}
    for dist in (
        "numpy",
        "numba",
        "scipy",
        "torch",
        "botorch",
        "aiohttp",
        "redis",
        "treequest",
        "optuna",
    ):
        try:
            libs[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            libs[dist] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "workbench": __version__,
        "git_commit": _git_commit(),
        "libraries": libs,
        "loadavg_at_start": load,
    }


def load_suite(name: str) -> Callable[[BenchContext], list[Measurement]]:
    if name not in SUITES:
        raise InputError(f"unknown benchmark suite {name!r}; known: {', '.join(sorted(SUITES))}")
    module = importlib.import_module(SUITES[name])
    run: Callable[[BenchContext], list[Measurement]] = module.run
    return run


def run_suites(
    names: Sequence[str] | None = None,
    *,
    ctx: BenchContext | None = None,
    out_dir: Path | str = Path("data/benchmarks"),
    save: bool = True,
) -> list[BenchRun]:
    """Run suites (all when ``names`` is empty), saving each as JSON under ``out_dir``."""
    ctx = ctx or BenchContext()
    names = list(names) if names else list(SUITES)
    runs = []
    for name in names:
        run = load_suite(name)
        started = dt.datetime.now(dt.UTC)
        machine = machine_info()
        t0 = time.perf_counter()
        measurements = run(ctx)
        result = BenchRun(
            suite=name,
            measurements=measurements,
            machine=machine,
            started_at=started.isoformat(timespec="seconds"),
            seconds=time.perf_counter() - t0,
            quick=ctx.quick,
            parts=tuple(ctx.parts),
        )
        if save:
            save_run(result, Path(out_dir))
        runs.append(result)
    return runs


def save_run(run: BenchRun, out_dir: Path) -> Path:
    """Write the run's JSON (timestamped and ``-latest``, under :attr:`BenchRun.kind`);
    returns the timestamped path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    kind = run.kind
    text = json.dumps(run.to_dict(), indent=1, sort_keys=False) + "\n"
    path = out_dir / f"{run.suite}-{kind}-{stamp}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # never leave a half-written result
    latest = out_dir / f"{run.suite}-{kind}-latest.json"
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(latest)
    return path


def load_run(path: Path | str) -> dict[str, Any]:
    """Read a saved run, refusing formats this version does not understand."""
    from workbench.errors import StorageFormatError

    data = json.loads(Path(path).read_text())
    if data.get("format") != "workbench-bench" or data.get("version") != FORMAT_VERSION:
        raise StorageFormatError(
            f"{path} is not a workbench benchmark of format version {FORMAT_VERSION}"
        )
    return data


def format_value(value: float | None, unit: str) -> str:
    """A measurement for people: thousands separated, three significant digits below."""
    if value is None or value != value:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {unit}"


def markdown_table(runs: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of saved runs (``BenchRun.to_dict()``), for the README."""
    lines = [
        "| suite | benchmark | tool | metric | value | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    machines = []
    for run in runs:
        m = run["machine"]
        machines.append(
            f"{run['suite']}: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
            f"commit {m['git_commit']}, {run['started_at']}"
        )
        for r in run["measurements"]:
            value = format_value(r["value"], r["unit"])
            target = "" if r["target"] is None else f"{r['target']:g}"
            met = {True: "yes", False: "no", None: ""}[r["meets_target"]]
            lines.append(
                f"| {run['suite']} | {r['name']} | {r['tool']} | {r['metric']} | {value} "
                f"| {target} | {met} |"
            )
    return "\n".join(lines) + "\n\nMeasured on " + "; ".join(machines) + "\n"
