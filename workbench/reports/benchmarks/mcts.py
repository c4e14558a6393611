"""The AB-MCTS suite: workbench against TreeQuest on identical Python generate functions,
the jitted path, orchestration latency, and memory/start-up of a fresh process.

Parts (``workbench bench mcts --part NAME``, repeatable; all by default):

* ``speed``: our ``ab-mcts-a`` alone on the two one-generator tasks,
  ``refinement_task(0.5)`` and ``gaussian_walk_task(0.1)`` (a clipped Gaussian random walk
  of scores), every seed at 10,000 and 100,000 steps: the slowest seed and the median in
  steps per second (Python generate-function calls included; targets 40,000 and 80,000 at
  100,000 steps) and the worst seed's time(100k) / time(10k) (target 11). The notes list
  every seed.
* ``treequest``: side by side on the same generate functions and seeds (TreeQuest always
  ``inplace=True`` and seeded through ``numpy.random.seed``, which its samplers use):
  ABMCTSA vs ``ab-mcts-a`` on both tasks and StandardMCTS vs ``uct`` on the refinement task,
  at 1,000 steps (every seed) and 10,000 steps (three seeds), never at 100,000; per-seed
  rates and the per-seed median ratio. A TreeQuest run stops at ``TQ_TIME_CAP_S`` of wall
  time and is reported over the steps it completed (noted in the measurement).
* ``quality``: search quality against TreeQuest (see :func:`_quality`).
* ``jitted``: ``random_walk(branching 5, depth 10)``, one iteration = select to a leaf,
  expand one child, score it with the task's jitted function, backpropagate (UCT and
  Thompson sampling; targets 1,000,000 and 200,000 it/s).
* ``orchestration``: 1,000 iterations over 5 agents, warm.
* ``process``: peak RSS of a fresh process that imports ``workbench.mcts`` and runs a
  100,000-step search (target 250 MB), and the time of its first search (Numba cache warm,
  imports included; target 2 s).

Timings on a machine shared with other work are noisy, the short 10,000-step runs most:
read the per-seed notes with the load average the JSON records.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.reports.bench import BenchContext, Measurement

__all__ = ["run"]

TQ_TIME_CAP_S = 240.0


class _Counting:
    """Wraps generate functions identically for both tools: counts calls and sums scores."""

    def __init__(self, fns: dict[str, Callable[[Any], Any]]) -> None:
        self.calls = dict.fromkeys(fns, 0)
        self.total = 0.0
        self.fns = {name: self._wrap(name, fn) for name, fn in fns.items()}

    def _wrap(self, name: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        calls = self.calls

        def generate(parent: Any) -> Any:
            out = fn(parent)
            calls[name] += 1
            self.total += out[1]
            return out

        return generate

    def quality(self, best: str) -> tuple[float, float]:
        n = sum(self.calls.values())
        return self.total / max(n, 1), self.calls.get(best, 0) / max(n, 1)


def _ours(make: Callable[[int], dict], algorithm: str, steps: int, seed: int) -> dict:
    from workbench.mcts import search

    c = _Counting(make(seed))
    t0 = time.perf_counter()
    search(c.fns, iterations=steps, algorithm=algorithm, seed=seed)
    return {"seconds": time.perf_counter() - t0, "steps": steps, "counter": c}


def _treequest(make: Callable[[int], dict], algo_name: str, steps: int, seed: int) -> dict:
    import numpy as np
    import treequest as tq

    np.random.seed(seed)
    c = _Counting(make(seed))
    algo: Any = tq.ABMCTSA() if algo_name == "ABMCTSA" else tq.StandardMCTS()
    state = algo.init_tree()
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        state = algo.step(state, c.fns, inplace=True)
        done += 1
        if done % 50 == 0 and time.perf_counter() - t0 > TQ_TIME_CAP_S:
            break
    return {"seconds": time.perf_counter() - t0, "steps": done, "counter": c}


def _single(seed: int) -> dict:
    from workbench.mcts.tasks import refinement_task

    return {"model": refinement_task(0.5, seed=seed)}


def _drift(seed: int) -> dict:
    from workbench.mcts.tasks import drift_task

    return drift_task(seed=seed)


def _walk(seed: int) -> dict:
    from workbench.mcts.tasks import gaussian_walk_task

    return {"model": gaussian_walk_task(0.1, seed=seed)}


#: The one-generator tasks of the speed part: label -> seed -> generate functions.
_SPEED_TASKS: dict[str, Callable[[int], dict]] = {
    "refinement_task(0.5)": _single,
    "gaussian_walk_task(0.1)": _walk,
}


def _per_seed(seeds: list[int], values: list[float], fmt: str = ",.0f") -> str:
    return "per seed " + ", ".join(f"{s}: {v:{fmt}}" for s, v in zip(seeds, values, strict=True))


def _speed(ctx: BenchContext) -> list[Measurement]:
    """Our AB-MCTS-A alone on each one-generator task, every seed at 10,000 and 100,000
    steps (1,000 and 10,000 in a quick run): slowest seed, median, and the worst seed's
    time(100k) / time(10k). Each seed's two searches run back to back, so a load change on a
    shared machine hits both sizes alike; the notes list every seed."""
    small, big = (1000, 10_000) if ctx.quick else (10_000, 100_000)
    seeds = list(ctx.seeds)
    _ours(_single, "ab-mcts-a", 50, 0)  # load kernels
    out: list[Measurement] = []
    for task, make in _SPEED_TASKS.items():
        secs: dict[int, list[float]] = {small: [], big: []}
        for s in ctx.progress(seeds, desc=f"ab-mcts-a {task}"):
            for n in (small, big):
                secs[n].append(_ours(make, "ab-mcts-a", n, s)["seconds"])
        for n in (small, big):
            rates = [n / t for t in secs[n]]
            params = {"steps": n, "generators": 1, "task": task, "seeds": seeds, "rates": rates}
            for label, value, target in (
                ("slowest seed", min(rates), 40_000.0),
                ("median over seeds", statistics.median(rates), 80_000.0),
            ):
                out.append(
                    Measurement(
                        f"ab-mcts-a {n} steps, {task}: {label}",
                        "workbench",
                        "steps_per_s",
                        value,
                        "steps/s",
                        target=target if n == 100_000 else None,
                        params=params,
                        note=f"Python generate fn; {_per_seed(seeds, rates)}",
                    )
                )
        ratios = [b / a for a, b in zip(secs[small], secs[big], strict=True)]
        out.append(
            Measurement(
                f"ab-mcts-a {task}: time({big} steps) / time({small} steps), worst seed",
                "workbench",
                "time_ratio",
                max(ratios),
                "x",
                better="lower",
                target=11.0 if big == 100_000 else None,
                params={"steps": [small, big], "task": task, "seeds": seeds, "ratios": ratios},
                note=_per_seed(seeds, ratios, ".2f"),
            )
        )
    return out


def _treequest_side(ctx: BenchContext) -> list[Measurement]:
    """Ours beside TreeQuest on the same generate functions and seeds: ABMCTSA vs
    ``ab-mcts-a`` on both one-generator tasks and StandardMCTS vs ``uct`` on the refinement
    task, at 1,000 steps (every seed) and 10,000 steps (three seeds; TreeQuest runs about a
    hundred steps per second there). Never at 100,000 steps."""
    sizes = [1000] if ctx.quick else [1000, 10_000]
    pairs = [(task, "ab-mcts-a", "ABMCTSA") for task in _SPEED_TASKS]
    pairs.append(("refinement_task(0.5)", "uct", "StandardMCTS"))
    _ours(_single, "ab-mcts-a", 50, 0)  # load kernels
    out: list[Measurement] = []
    for task, ours_name, tq_name in pairs:
        make = _SPEED_TASKS[task]
        for steps in sizes:
            seeds = list(ctx.seeds[:1] if ctx.quick else ctx.seeds[: 3 if steps > 1000 else 10])
            mine = [_ours(make, ours_name, steps, s) for s in seeds]
            theirs = [
                _treequest(make, tq_name, steps, s)
                for s in ctx.progress(seeds, desc=f"treequest {tq_name} {task} {steps}")
            ]
            rate = [r["steps"] / r["seconds"] for r in mine]
            tq_rate = [r["steps"] / r["seconds"] for r in theirs]
            ratios = [a / b for a, b in zip(rate, tq_rate, strict=True)]
            params = {"steps": steps, "generators": 1, "task": task, "seeds": seeds}
            name = f"{ours_name} {steps} steps, {task} (beside TreeQuest)"
            out.append(
                Measurement(
                    name,
                    "workbench",
                    "steps_per_s",
                    statistics.median(rate),
                    "steps/s",
                    params={**params, "rates": rate},
                    note=f"median over seeds; {_per_seed(seeds, rate)}",
                )
            )
            capped = any(r["steps"] < steps for r in theirs)
            out.append(
                Measurement(
                    name,
                    "treequest",
                    "steps_per_s",
                    statistics.median(tq_rate),
                    "steps/s",
                    params={**params, "algorithm": tq_name, "rates": tq_rate},
                    note=f"{tq_name}, inplace=True; {_per_seed(seeds, tq_rate)}"
                    + (
                        f"; stopped at {TQ_TIME_CAP_S:.0f} s, rate over the steps done"
                        if capped
                        else ""
                    ),
                )
            )
            out.append(
                Measurement(
                    f"{ours_name} vs TreeQuest {tq_name} at {steps} steps, {task}",
                    "workbench",
                    "median_speedup",
                    statistics.median(ratios),
                    "x",
                    params=params,
                    note=_per_seed(seeds, ratios, ".0f"),
                )
            )
    return out


def _quality(ctx: BenchContext) -> list[Measurement]:
    """Search quality against TreeQuest's ABMCTSA, paired by seed, 300 steps per search.

    Three families: two multi-generator drift tasks (three generators whose refinements
    drift up or down; ``drift-close`` has qualities three times closer, so the best
    generator is harder to find) and the single-generator ``refinement_task(0.5)``. For each
    seed both tools search the same freshly seeded task; per family the paired differences
    (workbench - TreeQuest) of the best score found and of the share of calls given to the
    best generator are tested for non-inferiority at a margin of 0.01: H0 "workbench is
    worse by at least 0.01", one-sided one-sample t-test on the differences (SciPy), and
    non-inferiority is claimed at p < 0.05. A quick run uses 3 seeds and 100 steps (figures
    only, too few for the test to mean much).
    """
    from scipy import stats

    from workbench.mcts.tasks import drift_task, refinement_task

    margin = 0.01
    # name -> (seed -> generate functions, name of the best generator)
    families: dict[str, tuple[Callable[[int], dict], str]] = {
        "drift": (lambda s: drift_task((-0.5, 0.0, 0.5), seed=s), "g2"),
        "drift-close": (lambda s: drift_task((-0.2, 0.0, 0.2), seed=s), "g2"),
        "refinement-0.5": (lambda s: {"model": refinement_task(0.5, seed=s)}, "model"),
    }
    steps = 100 if ctx.quick else 300
    seeds = list(range(3)) if ctx.quick else list(range(max(40, len(ctx.seeds))))
    out: list[Measurement] = []
    for family, (make, best_gen) in families.items():
        rows: dict[str, list[tuple[float, float, float]]] = {"workbench": [], "treequest": []}
        for s in ctx.progress(seeds, desc=f"quality {family}"):
            for tool in rows:
                best = [0.0]

                def tracked(seed: int, best: list[float] = best, make: Any = make) -> dict:
                    def wrap(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
                        def generate(parent: Any) -> Any:
                            res = fn(parent)
                            best[0] = max(best[0], float(res[1]))
                            return res

                        return generate

                    return {name: wrap(fn) for name, fn in make(seed).items()}

                if tool == "workbench":
                    res = _ours(tracked, "ab-mcts-a", steps, s)
                else:
                    res = _treequest(tracked, "ABMCTSA", steps, s)
                share = res["counter"].quality(best_gen)[1]
                rows[tool].append((best[0], share, res["steps"] / res["seconds"]))
        params = {"steps": steps, "seeds": len(seeds), "task": family, "margin": margin}
        metrics = [("best score", "best_score", "score", 0)]
        if best_gen != "model":
            metrics.append(
                ("share of calls to the best generator", "best_generator_share", "share", 1)
            )
        for label, metric, unit, k in metrics:
            ours = [v[k] for v in rows["workbench"]]
            theirs = [v[k] for v in rows["treequest"]]
            diffs = [a - b for a, b in zip(ours, theirs, strict=True)]
            for tool, xs in (("workbench", ours), ("treequest", theirs)):
                out.append(
                    Measurement(
                        f"ab-mcts-a {family}: {label}",
                        tool,
                        metric,
                        statistics.mean(xs),
                        unit,
                        params=params,
                        note=f"mean over {len(xs)} seeds, sd {statistics.stdev(xs):.3f}",
                    )
                )
            mean_d = statistics.mean(diffs)
            sd_d = statistics.stdev(diffs)
            se_d = sd_d / len(diffs) ** 0.5
            if se_d > 0:
                p = float(
                    stats.ttest_1samp(
                        [d + margin for d in diffs], 0.0, alternative="greater"
                    ).pvalue
                )
            else:
                p = 0.0 if mean_d > -margin else 1.0
            # The target sits on the one-sided 95 % lower confidence bound, not on the mean
            # difference: the bound clears -margin exactly when the t-test shows
            # non-inferiority at 0.05, so the table's "met" is the test's verdict.
            lower = mean_d - float(stats.t.ppf(0.95, len(diffs) - 1)) * se_d
            verdict = " (non-inferior at 0.05)" if p < 0.05 else " (not shown)"
            out.append(
                Measurement(
                    f"ab-mcts-a {family}: {label}, paired difference vs TreeQuest",
                    "workbench",
                    f"{metric}_difference",
                    mean_d,
                    unit,
                    params=params,
                    note=f"sd {sd_d:.3f}, standard error {se_d:.4f}; non-inferiority at margin "
                    f"{margin}: one-sided p = {p:.2g}" + verdict,
                )
            )
            out.append(
                Measurement(
                    f"ab-mcts-a {family}: {label}, 95% lower bound of the paired difference",
                    "workbench",
                    f"{metric}_difference_lower_bound",
                    lower,
                    unit,
                    target=-margin,
                    params=params,
                    note=f"one-sided Student t bound over {len(diffs)} paired seeds; at least "
                    f"-{margin} means non-inferior at 0.05 (p = {p:.2g})" + verdict,
                )
            )
        for tool in rows:
            out.append(
                Measurement(
                    f"ab-mcts-a {steps} steps, {family}",
                    tool,
                    "steps_per_s",
                    statistics.median(v[2] for v in rows[tool]),
                    "steps/s",
                    params=params,
                )
            )
    return out


def _jitted(ctx: BenchContext) -> list[Measurement]:
    from workbench.mcts import tasks

    task = tasks.random_walk(5, 10)
    out = []
    for algo, n, target in (("uct", 1_000_000, 1_000_000.0), ("thompson", 300_000, 200_000.0)):
        n = n // 5 if ctx.quick else n
        tasks.run(task, 1000, algorithm=algo)
        rates = [tasks.run(task, n, algorithm=algo, seed=s).iterations_per_s for s in ctx.seeds[:3]]
        out.append(
            Measurement(
                f"jitted {algo}, random walk b=5 d=10",
                "workbench",
                "iterations_per_s",
                statistics.median(rates),
                "it/s",
                target=target,
                params={"iterations": n, "branching": 5, "depth": 10},
                note="median of 3 seeds, one core, no Python per iteration",
            )
        )
    return out


def _orchestration(ctx: BenchContext) -> Measurement:
    from workbench.mcts import OrchestrationOptions, Orchestrator

    orc = Orchestrator()
    agents = ["planner", "retriever", "synthesizer", "coder", "reviewer"]
    opts = OrchestrationOptions(iterations=1000, seed=0)
    orc.orchestrate({}, agents, options=opts)
    times, search_ms, steps = [], [], []
    for i in range(20 if ctx.quick else 100):
        t0 = time.perf_counter()
        r = orc.orchestrate({}, agents, options=OrchestrationOptions(iterations=1000, seed=i))
        times.append(time.perf_counter() - t0)
        search_ms.append(r.search_metrics.time_elapsed_ms)
        steps.append(len(r.executed_steps))
    return Measurement(
        "orchestration, 1000 iterations, 5 agents (warm)",
        "workbench",
        "p50_latency_ms",
        statistics.median(times) * 1000,
        "ms",
        better="lower",
        target=10.0,
        params={"iterations": 1000, "agents": 5},
        note="plan search over agent sequences, then the plan run step by step by model "
        "prediction, each step learnt into its agent and pair models; of that, the search "
        f"took {statistics.median(search_ms):.2f} ms (p50) and plans ran "
        f"{statistics.mean(steps):.2f} steps on average",
    )


_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from workbench.mcts import search
from workbench.mcts.tasks import refinement_task
search({"model": refinement_task(0.5)}, iterations=10)
first = time.perf_counter() - t0
search({"model": refinement_task(0.5)}, iterations=100_000)
heavy = [m for m in ("scipy.stats", "pandas", "plotly", "torch") if m in sys.modules]
from workbench.mcts import _kernels as K
kernels = (K.tell_and_select, K.add_child, K.init_root, K.release_pending)
compiled = sum(sum(k.stats.cache_misses.values()) for k in kernels)
# VmHWM is this process's own peak; ru_maxrss would start from the parent's peak at fork.
try:
    line = [x for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
    rss_mb = int(line.split()[1]) / 1024
except (OSError, IndexError):
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"first_s": first, "rss_mb": rss_mb, "heavy": heavy, "compiled": compiled}))
"""


def _process(ctx: BenchContext) -> list[Measurement]:
    import workbench

    root = str(Path(workbench.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, check=True)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t0
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    return [
        Measurement(
            "peak RSS: import workbench.mcts + 100k-step search",
            "workbench",
            "peak_rss_mb",
            doc["rss_mb"],
            "MB",
            better="lower",
            target=250.0,
            note=f"fresh process; heavy modules loaded: {doc['heavy'] or 'none'}; kernels "
            f"compiled in it (not loaded from the cache): {doc['compiled']}",
        ),
        Measurement(
            "first search in a fresh process (Numba cache warm)",
            "workbench",
            "seconds",
            doc["first_s"],
            "s",
            better="lower",
            target=2.0,
            note=f"imports included; whole child process took {wall:.2f} s",
        ),
    ]


def run(ctx: BenchContext) -> list[Measurement]:
    from workbench.mcts import warmup

    parts = {
        "speed": _speed,
        "treequest": _treequest_side,
        "quality": _quality,
        "jitted": _jitted,
        "orchestration": lambda c: [_orchestration(c)],
        "process": _process,
    }
    unknown = set(ctx.parts) - set(parts)
    if unknown:
        raise InputError(f"--part: unknown {sorted(unknown)}; the mcts suite has {list(parts)}")
    warmup(jitted_tasks=True)
    out: list[Measurement] = []
    for name, part in parts.items():
        if not ctx.parts or name in ctx.parts:
            out += part(ctx)
    return out
