"""Learning from execution records; task profiles; convergence report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.errors import CapacityError, InputError
from workbench.optimize.feedback import FeedbackLearner, convergence_report
from workbench.optimize.profiles import get_task_parameters, llm_space, profile_params
from workbench.optimize.storage import FileStudyStore, RedisStudyStore


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
        rows.append(
            {
                "task_type": "reasoning",
                "parameters": {"temperature": t, "maxTokens": tokens, "topP": 0.9},
                "latency_ms": 200 + tokens * 2.0,
                "success": tokens > 150,
                "quality": 0.9 - (t - 0.3) ** 2,
                "cost": tokens * 1e-6,
            }
        )
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


def _learning_survives_a_restart(store: Any) -> None:
    first = FeedbackLearner(seed=0, store=store)
    first.observe(simulated_records(12, np.random.default_rng(1)))
    first.observe(
        [
            {
                "task_type": "code_generation",
                "parameters": {"temperature": 0.2},
                "latency_ms": 900,
                "success": True,
                "quality": 0.8,
                "cost": 0.0,
            }
        ]
    )
    again = FeedbackLearner(seed=0, store=store)
    assert set(again.optimizers) == {"reasoning", "code_generation"}
    for task in again.optimizers:
        before, after = first.optimizer(task), again.optimizer(task)
        assert [t.params for t in after.trials] == [t.params for t in before.trials]
        assert after.best().value == before.best().value
    assert again.suggest("reasoning") == first.suggest("reasoning")


def test_learning_survives_a_restart_in_files(tmp_path: Any) -> None:
    _learning_survives_a_restart(FileStudyStore(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "parameters-code_generation.json",
        "parameters-reasoning.json",
    ]


@pytest.mark.redis
def test_learning_survives_a_restart_in_redis(redis_adapter: Any) -> None:
    _learning_survives_a_restart(RedisStudyStore(redis_adapter))


def test_a_bad_batch_is_refused_whole(tmp_path: Any) -> None:
    store = FileStudyStore(tmp_path)
    learner = FeedbackLearner(seed=0, store=store, max_task_types=2)
    good = simulated_records(3, np.random.default_rng(2)).to_dict("records")
    bad_rows = [
        ({"task_type": "has space"}, "task_type"),
        ({"parameters": {"temperature": "hot"}}, "parameters.temperature"),
        ({"parameters": {"temperature": float("nan")}}, "parameters.temperature"),
        ({"latency_ms": "slow"}, "quality"),
        ({"parameters": [0.3]}, "parameters"),
    ]
    for change, field in bad_rows:
        with pytest.raises(InputError) as info:
            learner.observe([*good, {**good[0], **change}])
        assert info.value.details["field"] == field
    with pytest.raises(CapacityError, match="max_task_types=2"):
        learner.observe([{**g, "task_type": t} for g, t in zip(good, "abc", strict=True)])
    assert learner.optimizers == {} and list(tmp_path.iterdir()) == []  # nothing half-told
    assert learner.observe(good) == {"reasoning": 3}
    with pytest.raises(InputError, match="task_type"):
        learner.suggest("no/slashes")


def test_convergence_report_on_a_converged_study() -> None:
    from workbench.optimize import Optimizer, Real

    opt = Optimizer({"x": Real(0, 1)}, {"y": "minimize"}, seed=0)
    for _ in range(14):
        t = opt.ask()
        opt.tell(t, {"y": (t.params["x"] - 0.5) ** 2})
    rep = convergence_report(opt)
    assert rep.status == "converged" and rep.recommend_stop
