"""Learning from execution records; task profiles; convergence report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.errors import InputError
from workbench.optimize.feedback import FeedbackLearner, convergence_report
from workbench.optimize.profiles import get_task_parameters, llm_space, profile_params


def test_profiles_and_adjustment_order() -> None:
    p = get_task_parameters("code_generation")
    assert (p.context_length, p.temperature, p.max_tokens) == (8192, 0.2, 2048)
    c = get_task_parameters("code_generation", complexity="complex", output_length="short")
    assert c.context_length == round(8192 * 1.5 * 0.5) and c.max_tokens == round(2048 * 1.3 * 0.5)
    assert c.temperature == pytest.approx(0.3)
    d = get_task_parameters("research", domain="business")
    assert d.max_tokens == 1536  # a factor, not the platform's overwrite to 256
    pref = get_task_parameters("casual_chat", preferences={"preferred_temperature": 0.33})
    assert pref.temperature == 0.33
    assert get_task_parameters("unknown_task").temperature == 0.5
    with pytest.raises(InputError):
        get_task_parameters("reasoning", complexity="huge")
    for task in ("creative_writing", "code_generation", "reasoning"):
        llm_space(task).validate(profile_params(task))


def simulated_records(n: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for _ in range(n):
        t = float(rng.uniform(0.1, 1.0))
        tokens = int(rng.integers(100, 3000))
        rows.append({
            "task_type": "reasoning",
            "parameters": {"temperature": t, "maxTokens": tokens, "topP": 0.9},
            "latency_ms": 200 + tokens * 2.0,
            "success": tokens > 150,
            "quality": 0.9 - (t - 0.3) ** 2,
            "cost": tokens * 1e-6,
        })  # fmt: skip
    return pd.DataFrame(rows)


def test_observe_updates_per_task_optimizers() -> None:
    learner = FeedbackLearner(seed=0)
    assert learner.suggest("reasoning") == profile_params("reasoning")
    df = simulated_records(20, np.random.default_rng(0))
    counts = learner.observe(df)
    assert counts == {"reasoning": 20}
    opt = learner.optimizer("reasoning")
    assert len(opt.completed) + sum(t.status == "failed" for t in opt.trials) == 20
    s = learner.suggest("reasoning")
    llm_space("reasoning").validate(s)
    assert not opt.pending  # suggestions through the learner are not left pending
    report = learner.report("reasoning")
    assert report.n_observations == len(opt.completed)
    assert report.expected_improvement is not None and report.expected_improvement >= 0
    assert report.status in ("exploring", "converging", "converged")
    with pytest.raises(InputError, match="column"):
        learner.observe(df.drop(columns=["quality"]))


def test_convergence_report_on_a_converged_study() -> None:
    from workbench.optimize import Optimizer, Real

    opt = Optimizer({"x": Real(0, 1)}, {"y": "minimize"}, seed=0)
    for _ in range(14):
        t = opt.ask()
        opt.tell(t, {"y": (t.params["x"] - 0.5) ** 2})
    rep = convergence_report(opt)
    assert rep.status == "converged" and rep.recommend_stop
