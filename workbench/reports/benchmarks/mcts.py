"""The AB-MCTS suite: workbench against TreeQuest on identical Python generate functions,
the jitted path, orchestration latency, and memory/start-up of a fresh process.

Side by side (same generate functions, same seeds; TreeQuest always ``inplace=True`` and
seeded through ``numpy.random.seed``, which its samplers use):

* one generator (``refinement_task(0.5)``): ABMCTSA vs ``ab-mcts-a`` and StandardMCTS vs
  ``uct`` at 1,000 and 10,000 steps (ours also at 100,000): steps per second, Python
  generate-function calls included, and the per-seed median ratio;
* three generators of different quality (``drift_task``): search quality - the mean score
  of generated nodes and the share of calls given to the best generator. TreeQuest's
  multi-generator ABMCTSA refits every generator's posterior from all its scores at each
  GEN decision, so its cost per step grows with the tree; it runs 1,000 steps there (300
  in a quick run), on every seed, and the notes give standard errors over seeds.

A TreeQuest run stops at ``TQ_TIME_CAP_S`` of wall time and is reported over the steps it
completed (noted in the measurement).

Jitted path: ``random_walk(branching 5, depth 10)``, one iteration = select to a leaf,
expand one child, score it with the task's jitted function, backpropagate (UCT and
Thompson sampling). Orchestration: 1,000 iterations over 5 agents, warm. Memory: peak RSS
of a fresh process that imports ``workbench.mcts`` and runs a 100,000-step search, and the
time of its first search (Numba cache warm, imports included).
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


def _speed(ctx: BenchContext) -> list[Measurement]:
    out: list[Measurement] = []
    sizes = [1000] if ctx.quick else [1000, 10_000]
    tq_seeds = ctx.seeds[:1] if ctx.quick else ctx.seeds[:3]
    pairs = [("ab-mcts-a", "ABMCTSA"), ("uct", "StandardMCTS")]
    _ours(_single, "ab-mcts-a", 50, 0)  # load kernels
    for ours_name, tq_name in pairs:
        for steps in sizes:
            mine = [_ours(_single, ours_name, steps, s) for s in ctx.seeds]
            theirs = [
                _treequest(_single, tq_name, steps, s)
                for s in ctx.progress(tq_seeds, desc=f"treequest {tq_name} {steps}")
            ]
            rate = [r["steps"] / r["seconds"] for r in mine]
            tq_rate = [r["steps"] / r["seconds"] for r in theirs]
            ratios = [a / b for a, b in zip(rate, tq_rate, strict=False)]
            params = {"steps": steps, "generators": 1, "seeds": ctx.seeds}
            target = 30_000.0 if (ours_name == "ab-mcts-a" and steps == 10_000) else None
            out.append(
                Measurement(
                    f"{ours_name} {steps} steps (Python generate fn)",
                    "workbench",
                    "steps_per_s",
                    statistics.median(rate),
                    "steps/s",
                    target=target,
                    params=params,
                    note=f"median over seeds; per-seed median ratio to TreeQuest {tq_name}: "
                    f"{statistics.median(ratios):.0f}x",
                )
            )
            capped = any(r["steps"] < steps for r in theirs)
            out.append(
                Measurement(
                    f"{ours_name} {steps} steps (Python generate fn)",
                    "treequest",
                    "steps_per_s",
                    statistics.median(tq_rate),
                    "steps/s",
                    params={**params, "seeds": tq_seeds, "algorithm": tq_name},
                    note=f"{tq_name}, inplace=True"
                    + (
                        f"; stopped at {TQ_TIME_CAP_S:.0f} s, rate over the steps done"
                        if capped
                        else ""
                    ),
                )
            )
            out.append(
                Measurement(
                    f"{ours_name} vs TreeQuest {tq_name} at {steps} steps",
                    "workbench",
                    "median_speedup",
                    statistics.median(ratios),
                    "x",
                    params={"steps": steps, "seeds": tq_seeds},
                )
            )
    big = [_ours(_single, "ab-mcts-a", 100_000, s) for s in ctx.seeds[: 1 if ctx.quick else 3]]
    ten = [_ours(_single, "ab-mcts-a", 10_000, s) for s in ctx.seeds[: 1 if ctx.quick else 3]]
    ratio = statistics.median(b["seconds"] for b in big) / statistics.median(
        t["seconds"] for t in ten
    )
    out.append(
        Measurement(
            "ab-mcts-a 100000 steps (Python generate fn)",
            "workbench",
            "steps_per_s",
            statistics.median(100_000 / b["seconds"] for b in big),
            "steps/s",
            params={"steps": 100_000},
        )
    )
    out.append(
        Measurement(
            "ab-mcts-a time(100k steps) / time(10k steps)",
            "workbench",
            "time_ratio",
            ratio,
            "x",
            better="lower",
            target=12.0,
        )
    )
    return out


def _quality(ctx: BenchContext) -> list[Measurement]:
    steps = 300 if ctx.quick else 1000
    seeds = ctx.seeds[:2] if ctx.quick else ctx.seeds
    out: list[Measurement] = []
    rows: dict[str, list[tuple[float, float, float]]] = {"workbench": [], "treequest": []}
    for s in ctx.progress(seeds, desc="drift task quality"):
        for tool, res in (
            ("workbench", _ours(_drift, "ab-mcts-a", steps, s)),
            ("treequest", _treequest(_drift, "ABMCTSA", steps, s)),
        ):
            rows[tool].append((*res["counter"].quality("g2"), res["steps"] / res["seconds"]))
    for tool, vals in rows.items():
        params = {"steps": steps, "generators": 3, "seeds": seeds, "task": "drift_task"}
        for k, (name, metric, unit) in enumerate(
            [
                ("mean score of generated nodes", "mean_score", "score"),
                ("share of calls to the best generator", "best_generator_share", "share"),
            ]
        ):
            xs = [v[k] for v in vals]
            se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
            out.append(
                Measurement(
                    f"ab-mcts-a drift task: {name}",
                    tool,
                    metric,
                    statistics.mean(xs),
                    unit,
                    params=params,
                    note=f"mean over seeds, standard error {se:.3f}",
                )
            )
        out.append(
            Measurement(
                f"ab-mcts-a {steps} steps, 3 generators",
                tool,
                "steps_per_s",
                statistics.median(v[2] for v in vals),
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
    times = []
    for i in range(20 if ctx.quick else 100):
        t0 = time.perf_counter()
        orc.orchestrate({}, agents, options=OrchestrationOptions(iterations=1000, seed=i))
        times.append(time.perf_counter() - t0)
    return Measurement(
        "orchestration, 1000 iterations, 5 agents (warm)",
        "workbench",
        "p50_latency_ms",
        statistics.median(times) * 1000,
        "ms",
        better="lower",
        target=10.0,
        params={"iterations": 1000, "agents": 5},
        note="search plus execution by model prediction and model update",
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

    warmup(jitted_tasks=True)
    out = []
    out += _speed(ctx)
    out += _quality(ctx)
    out += _jitted(ctx)
    out.append(_orchestration(ctx))
    out += _process(ctx)
    return out
