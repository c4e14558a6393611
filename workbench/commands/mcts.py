"""``workbench mcts ...``: run searches, jitted tasks and orchestrations from the shell.

* ``workbench mcts algorithms``: the registered algorithm names;
* ``workbench mcts search --task drift --iterations 10000 --algorithm ab-mcts-a``: a search
  over a synthetic task's Python generate functions (``drift`` or ``refine``/``resample``);
  ``--plot tree.html`` also writes the tree's figures (an icicle of visits and scores with
  the best path outlined, and the wider-vs-deeper decisions over time) to a standalone page;
* ``workbench mcts run --task random-walk --iterations 1000000 --algorithm uct``: the fully
  jitted path (``random-walk``, ``beta``, ``game``);
* ``workbench mcts orchestrate --agents planner,coder --request "..."``: one orchestration
  with model-predicted outcomes.

Every verb prints a table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("mcts", help="AB-MCTS searches and agent orchestration")
    verbs = group.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("algorithms", help="list the registered search algorithms")
    p.set_defaults(func=_algorithms)

    p = verbs.add_parser("search", help="search a synthetic task's generate functions")
    p.add_argument("--task", choices=["drift", "refine", "resample"], default="drift")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--algorithm", default="ab-mcts-a")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-depth", type=int, default=None)
    p.add_argument("--top", type=int, default=3, help="best answers to show")
    p.add_argument(
        "--plot",
        metavar="FILE.html",
        default=None,
        help="write the tree's figures (icicle, wider-vs-deeper decisions) to this HTML file",
    )
    p.add_argument(
        "--plot-nodes", type=int, default=500, help="most visited nodes the icicle shows"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    p = verbs.add_parser("run", help="the fully jitted path on a synthetic environment")
    p.add_argument("--task", choices=["random-walk", "beta", "game"], default="random-walk")
    p.add_argument("--iterations", type=int, default=100_000)
    p.add_argument("--algorithm", choices=["uct", "thompson"], default="uct")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)

    p = verbs.add_parser("orchestrate", help="choose an agent for a request")
    p.add_argument("--agents", default="planner,retriever,synthesizer,orchestrator")
    p.add_argument("--request", default="Summarise the quarterly report")
    p.add_argument("--task-type", default="general")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_orchestrate)


def _print(rows: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for key, value in rows.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    Console().print(table)


def _algorithms(args: argparse.Namespace) -> int:
    from workbench.mcts import ALGORITHMS, get_algorithm

    for name in sorted(ALGORITHMS):
        print(f"{name}\t{get_algorithm(name).to_dict()}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from workbench.mcts import search
    from workbench.mcts.tasks import drift_task, refinement_task

    if args.task == "drift":
        fns = drift_task(seed=args.seed)
    else:
        fns = {"model": refinement_task(1.0 if args.task == "refine" else 0.0, seed=args.seed)}
    result = search(
        fns,
        iterations=args.iterations,
        algorithm=args.algorithm,
        seed=args.seed,
        max_depth=args.max_depth,
    )
    out = result.to_dict()
    out["top_k"] = [{"state": s, "score": v} for s, v in result.top_k(args.top)]
    if args.plot:
        out["plot"] = str(_plot(result, args))
    _print(out, args.json, f"{args.algorithm} on {args.task}")
    return 0


def _plot(result: Any, args: argparse.Namespace) -> Path:
    from workbench.mcts import tree_graph
    from workbench.reports.mcts_figures import write_tree_report

    graph = tree_graph(result, max_nodes=args.plot_nodes)
    summary = (
        f"{args.algorithm} on {args.task}: {result.iterations} iterations, seed {args.seed}, "
        f"best score {result.best_score:.4f}, {result.tree_size} nodes, depth {result.depth}"
    )
    return write_tree_report(
        graph, args.plot, title=f"{args.algorithm} on {args.task}", lines=[summary]
    )


def _run(args: argparse.Namespace) -> int:
    from workbench.mcts import tasks

    makers: dict[str, Callable[[], tasks.Task]] = {
        "random-walk": tasks.random_walk,
        "beta": tasks.beta_generators,
        "game": tasks.random_game,
    }
    task = makers[args.task]()
    tasks.run(task, 10, algorithm=args.algorithm)  # compile or load from cache
    r = tasks.run(task, args.iterations, algorithm=args.algorithm, seed=args.seed)
    out = {
        "iterations": r.iterations,
        "iterations_per_s": r.iterations_per_s,
        "tree_size": r.tree_size,
        "root_value": r.root_value,
        "best_action": r.best_action,
        "optimum": task.optimum,
    }
    _print(out, args.json, f"{args.algorithm} on {task.name} (jitted)")
    return 0


def _orchestrate(args: argparse.Namespace) -> int:
    from workbench.mcts import OrchestrationOptions, Orchestrator

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    opts = OrchestrationOptions(iterations=args.iterations, seed=args.seed)
    r = Orchestrator().orchestrate(
        {"userRequest": args.request, "taskType": args.task_type}, agents, options=opts
    )
    d = r.to_dict()
    keys = ("best_action", "confidence", "execution_path", "search_metrics", "recommendations")
    _print({k: d[k] for k in keys}, args.json, "orchestration")
    return 0
