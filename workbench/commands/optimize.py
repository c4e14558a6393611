"""``workbench optimize run PROBLEM`` and ``workbench optimize show STUDY``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("optimize", help="Bayesian optimisation of test problems and studies")
    sub = p.add_subparsers(dest="optimize_verb")
    r = sub.add_parser("run", help="optimise a test problem (branin, hartmann6, branincurrin, llm)")
    r.add_argument("problem")
    r.add_argument("--budget", type=int, default=30, help="evaluations (default 30)")
    r.add_argument("--strategy", default="default", help="strategy name (default: default)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch", type=int, default=1, help="suggestions per ask (default 1)")
    r.add_argument("--name", default=None, help="study name (default PROBLEM-STRATEGY-SEED)")
    r.add_argument("--save", default=None, help="also save the study to this JSON file")
    r.set_defaults(func=_run)
    s = sub.add_parser("show", help="print a saved study")
    s.add_argument("study", help="a study name (under DATA_DIR/optimize/) or a JSON file")
    s.add_argument("--json", action="store_true", help="print the raw document")
    s.add_argument(
        "--plot",
        metavar="FILE.html",
        default=None,
        help="also write the study's figures (history, importance, slices, contour, Pareto "
        "front) to this self-contained HTML file",
    )
    s.set_defaults(func=_show)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from workbench.optimize import Optimizer
    from workbench.optimize.problems import get_problem

    problem = get_problem(args.problem)
    name = args.name or f"{problem.name}-{args.strategy}-{args.seed}"
    opt = Optimizer(
        problem.space,
        problem.objectives,
        strategy=args.strategy,
        seed=args.seed,
        ref_point=problem.ref_point,
        name=name,
    )
    with tqdm(total=args.budget, desc=problem.name, file=sys.stderr) as bar:
        while len(opt.completed) < args.budget:
            n = min(args.batch, args.budget - len(opt.completed))
            for trial in opt.ask_batch(n):
                opt.tell(trial, problem(trial.params))
            bar.update(n)
            bar.set_postfix(ms=round(1000 * opt.last_info.get("total_s", 0.0)))
    if len(problem.objectives) > 1 and problem.ref_point:
        print(f"hypervolume {opt.hypervolume():.4f} (max {problem.max_hypervolume})")
    else:
        best = opt.best()
        print(f"best {best.value:.6g} (regret {problem.regret(best.value):.3g}) at {best.params}")
    store = _store()
    store.save(opt)
    print(f"study {name!r} saved to {store.path(name)}")
    if args.save:
        opt.save(Path(args.save))
        print(f"saved {args.save}")
    return 0


def _store() -> Any:
    from workbench.config import load_settings
    from workbench.optimize.storage import FileStudyStore

    return FileStudyStore(load_settings().data_dir / "optimize")


def _show(args: argparse.Namespace) -> int:
    from workbench.optimize import Optimizer

    path = Path(args.study)
    opt = (
        Optimizer.load(path)
        if path.suffix == ".json" or path.is_file()
        else _store().load(args.study)
    )
    if args.json:
        print(json.dumps(opt.to_dict(), indent=2))
        return _plot(opt, args.plot)
    print(opt)
    statuses: dict[str, int] = {}
    for t in opt.trials:
        statuses[t.status] = statuses.get(t.status, 0) + 1
    print("trials:", statuses)
    if len(opt.objectives) == 1 and opt.completed:
        best = opt.best()
        print(f"best {best.value:.6g} (trial {best.trial_id}) {best.params}")
    elif opt.completed:
        print(f"pareto front: {len(opt.pareto_front())} trials")
    return _plot(opt, args.plot)


def _plot(opt: Any, path: str | None) -> int:
    """Write the study's figures when ``--plot FILE.html`` was given."""
    if path:
        from workbench.reports.optimize_figures import write_study_report

        print(f"figures written to {write_study_report(opt, Path(path))}", file=sys.stderr)
    return 0
