"""Benchmark suite ``optimize``: workbench's Bayesian optimisation side by side with Optuna
(TPE and GPSampler), Ax's default strategy, plain BoTorch tutorial settings and random search,
on the same functions, seeds and budgets, in one run.

Measured (``tool`` names the implementation):

- Hartmann6, 50 evaluations, median regret over the seeds, for every tool;
- suggestion latency (one torch thread, fit included) p50 at 50 and at 100 observations;
- the mixed LLM-parameter space: latency at 50 observations and the fraction of seeds that
  found the simulator's best configuration;
- BraninCurrin, 30 evaluations: hypervolume and seconds per iteration (qLogNEHVI vs Sobol);
- a Thompson-sampling batch of 8 at 50 observations (warm fit included);
- peak RSS of a process that runs one 50-evaluation study.

``ctx.quick`` keeps two seeds and short budgets (a smoke run, not the README figures).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.optimize.problems import Problem, get_problem, hartmann6_array
from workbench.optimize.space import Real
from workbench.reports.bench import BenchContext, Measurement

__all__ = ["run"]

log = logging.getLogger(__name__)


def _regret_workbench(
    problem: Problem, budget: int, seed: int, strategy: str = "default"
) -> tuple[float, list[tuple[int, float]]]:
    from workbench.optimize import Optimizer

    opt = Optimizer(problem.space, problem.objectives, strategy=strategy, seed=seed)
    lat: list[tuple[int, float]] = []
    for _ in range(budget):
        n = len(opt.completed)
        t0 = time.perf_counter()
        trial = opt.ask()
        if opt.last_info.get("phase") == "model":
            lat.append((n, time.perf_counter() - t0))
        opt.tell(trial, problem(trial.params))
    return problem.regret(opt.best().value), lat


def _latency_at(problem: Problem, n_obs: int, seed: int, repeats: int = 5) -> list[float]:
    """Seconds per suggestion with exactly ``n_obs`` observations (BO-collected)."""
    from workbench.optimize import Optimizer

    opt = Optimizer(problem.space, problem.objectives, seed=seed)
    for _ in range(n_obs):
        t = opt.ask()
        opt.tell(t, problem(t.params))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = opt.ask()
        out.append(time.perf_counter() - t0)
        opt.abandon(trial)
    return out


def _bounds(problem: Problem, name: str) -> tuple[float, float]:
    p = problem.space.params[name]
    if not isinstance(p, Real):
        raise TypeError(f"the baselines here take continuous parameters only, not {name!r}")
    return p.low, p.high


def _optuna(problem: Problem, budget: int, seed: int, sampler: str) -> tuple[float, list[float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = list(problem.space.params)
    if sampler == "tpe":
        s: Any = optuna.samplers.TPESampler(seed=seed)
    else:
        s = optuna.samplers.GPSampler(seed=seed)
    minimize = next(iter(problem.objectives.values())) == "minimize"
    study = optuna.create_study(sampler=s, direction="minimize" if minimize else "maximize")
    lat = []
    for _ in range(budget):
        t0 = time.perf_counter()
        trial = study.ask()
        params = {}
        for n in names:
            params[n] = trial.suggest_float(n, *_bounds(problem, n))
        lat.append(time.perf_counter() - t0)
        study.tell(trial, problem(params)[next(iter(problem.objectives))])
    return problem.regret(study.best_value), lat


def _optuna_mixed(problem: Problem, budget: int, seed: int, sampler: str) -> tuple[float, dict]:
    """Optuna on a mixed space (Real, Int, Categorical): the regret and the best params."""
    import optuna

    from workbench.optimize.space import Categorical, Int

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s: Any = (
        optuna.samplers.TPESampler(seed=seed)
        if sampler == "tpe"
        else optuna.samplers.GPSampler(seed=seed)
    )
    name, direction = next(iter(problem.objectives.items()))
    study = optuna.create_study(
        sampler=s, direction="minimize" if direction == "minimize" else "maximize"
    )
    for _ in range(budget):
        trial = study.ask()
        params: dict[str, Any] = {}
        for n, p in problem.space.params.items():
            if isinstance(p, Categorical):
                params[n] = trial.suggest_categorical(n, list(p.choices))
            elif isinstance(p, Int):
                params[n] = trial.suggest_int(n, int(p.low), int(p.high), log=p.log)
            elif isinstance(p, Real):
                params[n] = trial.suggest_float(n, p.low, p.high, log=p.log)
            else:
                raise TypeError(f"no Optuna mapping for parameter {n!r} ({type(p).__name__})")
        study.tell(trial, problem(params)[name])
    return problem.regret(study.best_value), dict(study.best_params)


def _ax(problem: Problem, budget: int, seed: int) -> tuple[float, list[float]]:
    from ax import Client, RangeParameterConfig

    names = list(problem.space.params)
    client = Client(random_seed=seed)
    for name in list(logging.root.manager.loggerDict):  # Ax sets INFO on its own loggers
        if name == "ax" or name.startswith("ax."):
            logging.getLogger(name).setLevel(logging.WARNING)
    bounds = {n: _bounds(problem, n) for n in names}
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name=n, parameter_type="float", bounds=bounds[n]) for n in names
        ]
    )
    obj = next(iter(problem.objectives))
    sign = "-" if problem.objectives[obj] == "minimize" else ""
    client.configure_optimization(objective=f"{sign}{obj}")
    best = math.inf if sign else -math.inf
    lat = []
    for _ in range(budget):
        t0 = time.perf_counter()
        trials = client.get_next_trials(max_trials=1)
        lat.append(time.perf_counter() - t0)
        for idx, params in trials.items():
            v = problem(params)[obj]
            best = min(best, v) if sign else max(best, v)
            client.complete_trial(trial_index=idx, raw_data={obj: v})
    return problem.regret(best), lat


def _botorch_tutorial(budget: int, seed: int, n_init: int = 10) -> tuple[float, list[float]]:
    """BoTorch tutorial settings on Hartmann6: SingleTaskGP, a fresh fit every step,
    qLogNEI, optimize_acqf with 10 restarts and 512 raw samples."""
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from scipy.stats import qmc

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x = torch.as_tensor(qmc.Sobol(6, seed=seed).random(16)[:n_init])
    y = -torch.as_tensor(hartmann6_array(x.numpy())).unsqueeze(-1)
    bounds = torch.tensor([[0.0] * 6, [1.0] * 6], dtype=torch.float64)
    lat = []
    while len(x) < budget:
        t0 = time.perf_counter()
        model = SingleTaskGP(x, y)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acqf = qLogNoisyExpectedImprovement(model, x, prune_baseline=True)
        cand, _ = optimize_acqf(acqf, bounds, q=1, num_restarts=10, raw_samples=512)
        lat.append(time.perf_counter() - t0)
        x = torch.cat([x, cand])
        y = torch.cat([y, -torch.as_tensor(hartmann6_array(cand.numpy())).unsqueeze(-1)])
    return 3.322368011415515 - float(y.max()), lat


def _random(problem: Problem, budget: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    obj = next(iter(problem.objectives))
    values = [problem(problem.space.decode(r))[obj] for r in problem.space.sample(budget, rng)]
    best = min(values) if problem.objectives[obj] == "minimize" else max(values)
    return problem.regret(best)


def _p50(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _peak_rss_mb(budget: int) -> float:
    # VmHWM of the child's own address space: ru_maxrss would carry the high-water mark of
    # the forked benchmark process (torch, Ax and Optuna loaded) across exec.
    code = (
        "from workbench.cli import main\n"
        f"main(['optimize', 'run', 'hartmann6', '--budget', '{budget}', '--name', 'rss-probe'])\n"
        "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
        "print('RSS', hwm.split()[1])\n"
    )
    with tempfile.TemporaryDirectory() as tmp:  # the study the CLI saves goes there
        env = {**os.environ, "WORKBENCH_DATA_DIR": tmp}
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
            env=env,
        )
    kb = next(int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("RSS"))
    return kb / 1024.0


def run(ctx: BenchContext) -> list[Measurement]:
    from workbench.optimize.models import configure_torch

    configure_torch(1)
    quick = ctx.quick
    seeds = ctx.seeds[:2] if quick else ctx.seeds
    budget = 20 if quick else 50
    h6 = get_problem("hartmann6")
    out: list[Measurement] = []
    params = {"problem": "hartmann6", "evaluations": budget, "seeds": len(seeds)}

    def regret_of(
        tool: str, fn: Callable[[int], tuple[float, list[float]] | float], note: str = ""
    ) -> None:
        regrets, lats = [], []
        for seed in ctx.progress(seeds, desc=f"hartmann6 {tool}"):
            try:
                res = fn(seed)
            except ImportError as exc:
                log.warning("skipping %s: %s", tool, exc)
                return
            if isinstance(res, tuple):
                regrets.append(res[0])
                lats.extend(res[1])
            else:
                regrets.append(res)
        out.append(
            Measurement(
                "hartmann6 median regret",
                tool,
                "regret",
                float(np.median(regrets)),
                "",
                better="lower",
                params=params,
                note=note or f"per seed: {[round(r, 4) for r in regrets]}",
            )
        )
        if lats:
            out.append(
                Measurement(
                    "hartmann6 suggestion latency p50 (whole run)",
                    tool,
                    "latency_p50",
                    _p50(lats),
                    "s",
                    better="lower",
                    params=params,
                )
            )

    # workbench
    regrets, lats = [], []
    for seed in ctx.progress(seeds, desc="hartmann6 workbench"):
        r, lat = _regret_workbench(h6, budget, seed)
        regrets.append(r)
        lats.extend(lat)
    out.append(
        Measurement(
            "hartmann6 median regret",
            "workbench",
            "regret",
            float(np.median(regrets)),
            "",
            better="lower",
            params=params,
            note=f"per seed: {[round(r, 4) for r in regrets]}",
        )
    )
    out.append(
        Measurement(
            "hartmann6 suggestion latency p50 (whole run)",
            "workbench",
            "latency_p50",
            _p50([x for _, x in lats]),
            "s",
            better="lower",
            params=params,
        )
    )
    for n_obs, target in ((50, 0.150), (100, 0.300)):
        if quick and n_obs == 100:
            continue
        obs = 25 if quick else n_obs
        lat_n: list[float] = []
        for seed in seeds[: 1 if quick else 3]:
            lat_n.extend(_latency_at(h6, obs, seed))
        out.append(
            Measurement(
                f"hartmann6 suggestion latency p50 at n={obs}",
                "workbench",
                "latency_p50",
                _p50(lat_n),
                "s",
                better="lower",
                target=target,
                params={"observations": obs, "threads": 1},
            )
        )

    regret_of("optuna-gp", lambda s: _optuna(h6, budget, s, "gp"))
    regret_of("optuna-tpe", lambda s: _optuna(h6, budget, s, "tpe"))
    regret_of("ax", lambda s: _ax(h6, budget, s))
    regret_of("botorch-tutorial", lambda s: _botorch_tutorial(budget, s))
    regret_of("random", lambda s: _random(h6, budget, s))

    # The mixed LLM space.
    from workbench.optimize import Optimizer

    llm = get_problem("llm")
    llm_budget = 25 if quick else 50
    found, llm_lat, llm_regrets = 0, [], []
    for seed in ctx.progress(seeds, desc="llm space"):
        opt = Optimizer(llm.space, llm.objectives, seed=seed)
        for _ in range(llm_budget):
            n = len(opt.completed)
            t0 = time.perf_counter()
            t = opt.ask()
            if n >= llm_budget - 5:
                llm_lat.append(time.perf_counter() - t0)
            opt.tell(t, llm(t.params))
        best = opt.best()
        assert llm.optimal_params is not None
        same = all(best.params[k] == llm.optimal_params[k] for k in ("model", "prompt_template"))
        found += int(same and llm.regret(best.value) < 0.01)
        llm_regrets.append(llm.regret(best.value))
    out.append(
        Measurement(
            f"llm space suggestion latency p50 at n~{llm_budget}",
            "workbench",
            "latency_p50",
            _p50(llm_lat),
            "s",
            better="lower",
            target=0.300,
            params={"evaluations": llm_budget},
        )
    )
    out.append(
        Measurement(
            "llm space best configuration found",
            "workbench",
            "fraction",
            found / len(seeds),
            "",
            better="higher",
            params={"evaluations": llm_budget, "regret_below": 0.01},
        )
    )
    out.append(
        Measurement(
            "llm space median regret",
            "workbench",
            "regret",
            float(np.median(llm_regrets)),
            "",
            better="lower",
            params={"evaluations": llm_budget, "seeds": len(seeds)},
            note="per seed: " + str([round(r, 4) for r in llm_regrets]),
        )
    )
    optimal = llm.optimal_params
    assert optimal is not None
    for sampler in ("tpe", "gp"):
        regrets, hits = [], 0
        for seed in ctx.progress(seeds, desc=f"llm space optuna-{sampler}"):
            r, bp = _optuna_mixed(llm, llm_budget, seed, sampler)
            regrets.append(r)
            hits += int(all(bp[k] == optimal[k] for k in ("model", "prompt_template")) and r < 0.01)
        out.append(
            Measurement(
                "llm space median regret",
                f"optuna-{sampler}",
                "regret",
                float(np.median(regrets)),
                "",
                better="lower",
                params={"evaluations": llm_budget, "seeds": len(seeds)},
                note="per seed: " + str([round(r, 4) for r in regrets]),
            )
        )
        out.append(
            Measurement(
                "llm space best configuration found",
                f"optuna-{sampler}",
                "fraction",
                hits / len(seeds),
                "",
                better="higher",
                params={"evaluations": llm_budget, "regret_below": 0.01},
            )
        )

    # Multi-objective.
    bc = get_problem("branincurrin")
    mo_budget = 20 if quick else 30
    for strategy in ("default", "sobol"):
        hvs, iters = [], []
        for seed in ctx.progress(seeds[: 2 if quick else 5], desc=f"branincurrin {strategy}"):
            opt = Optimizer(
                bc.space, bc.objectives, strategy=strategy, seed=seed, ref_point=bc.ref_point
            )
            for _ in range(mo_budget):
                t0 = time.perf_counter()
                t = opt.ask()
                if opt.last_info.get("phase") == "model":
                    iters.append(time.perf_counter() - t0)
                opt.tell(t, bc(t.params))
            hvs.append(opt.hypervolume())
        tool = "workbench" if strategy == "default" else "sobol"
        out.append(
            Measurement(
                f"branincurrin hypervolume after {mo_budget}",
                tool,
                "hypervolume",
                float(np.median(hvs)),
                "",
                better="higher",
                target=56.0 if tool == "workbench" and not quick else None,
                params={"max": bc.max_hypervolume},
            )
        )
        if iters:
            out.append(
                Measurement(
                    "branincurrin seconds per iteration p50",
                    tool,
                    "latency_p50",
                    _p50(iters),
                    "s",
                    better="lower",
                    target=0.600,
                )
            )

    # Thompson batch of 8 at n=50, repeated on the same data: the first call may land on a
    # scheduled full refit, the others use the warm fit the target is about.
    ts_lat: list[float] = []
    for seed in seeds[:3]:
        opt = Optimizer(h6.space, h6.objectives, strategy="thompson", seed=seed)
        for _ in range(25 if quick else 50):
            t = opt.ask()
            opt.tell(t, h6(t.params))
        for _ in range(4):
            t0 = time.perf_counter()
            batch = opt.ask_batch(8)
            ts_lat.append(time.perf_counter() - t0)
            for t in batch:
                opt.abandon(t)
    out.append(
        Measurement(
            "thompson batch of 8 at n=50",
            "workbench",
            "latency_p50",
            _p50(ts_lat),
            "s",
            better="lower",
            target=0.300,
            note=f"max {max(ts_lat):.3f} s (a call that lands on a scheduled full refit)",
        )
    )

    out.append(
        Measurement(
            "peak RSS of a 50-evaluation study",
            "workbench",
            "peak_rss",
            _peak_rss_mb(15 if quick else 50),
            "MB",
            better="lower",
            target=500.0,
        )
    )
    return out
