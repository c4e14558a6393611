"""The feedback loop: stored records as the optimizer's observations, and rewards on file."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.analytics.conftest import random_log
from workbench.analytics import AnalyticsStore, Filters, generate_log, parameter_hash
from workbench.analytics.feedback import REWARDS_VERSION, export_rewards, to_observations
from workbench.errors import InputError
from workbench.optimize.optimizer import Optimizer
from workbench.optimize.space import Fixed, Int, Real, SearchSpace

NOW = 1_800_000_000.0


def correlated_log(tasks: int, n: int, seed: int) -> pd.DataFrame:
    """``n`` records per task type of one parameter set; failures are slow and poor, so the
    score's four means are correlated (their covariances matter for its standard error)."""
    rng = np.random.default_rng(seed)
    size = tasks * n
    ok = rng.random(size) < 0.7
    latency = rng.lognormal(np.log(np.where(ok, 1500.0, 4500.0)), 0.5)
    quality = np.where(ok, rng.beta(8, 2, size), rng.beta(2, 5, size))
    quality[rng.random(size) < 0.2] = np.nan
    satisfaction = 5 * np.where(ok, rng.beta(5, 2, size), rng.beta(2, 4, size))
    satisfaction[rng.random(size) < 0.6] = np.nan
    return pd.DataFrame(
        {
            "execution_id": [f"e{i}" for i in range(size)],
            "timestamp": 1_700_000_000 + np.arange(size),
            "task_type": [f"t{i // n}" for i in range(size)],
            "model": "m",
            "parameters": [{"temperature": 0.5}] * size,
            "latency_ms": latency,
            "success": ok,
            "quality": quality,
            "user_satisfaction": satisfaction,
        }
    )


@pytest.fixture
def memory_store() -> Iterator[AnalyticsStore]:
    store = AnalyticsStore("duckdb:///:memory:", clock=lambda: NOW)
    yield store
    store.close()


def test_values_are_the_stores_effectiveness(store: AnalyticsStore) -> None:
    log = random_log(3000, seed=11)
    assert store.ingest(log).accepted == 3000
    eff = store.effectiveness(("task_type", "parameter_hash"), Filters(task_types=("code",)))
    by_hash = {h: row for h, row in zip(eff["parameter_hash"], eff.to_dict("records"), strict=True)}
    obs = to_observations(store, "code", min_executions=5)
    assert len(obs) == len(eff) == 4
    for params, value, sem in obs:
        row = by_hash[parameter_hash(params)]
        assert value == pytest.approx(row["score"], rel=1e-9)
        assert 0 < sem < 0.05
    rates = to_observations(store, "code", objective="success_rate")
    for params, value, sem in rates:
        row = by_hash[parameter_hash(params)]
        n, k = row["executions"], row["successes"]
        assert value == pytest.approx(k / n)
        a, b = 1 + k, 1 + n - k
        assert sem == pytest.approx(math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))
    latencies = to_observations(store, "code", objective="latency_ms")
    for params, value, sem in latencies:
        frame = store.frame(Filters(task_types=("code",)))
        mine = frame.loc[frame["parameter_hash"] == parameter_hash(params), "latency_ms"]
        assert value == pytest.approx(mine.mean())
        assert sem == pytest.approx(mine.std(ddof=1) / math.sqrt(len(mine)))


def test_score_standard_errors_match_the_spread_over_replications(
    memory_store: AnalyticsStore,
) -> None:
    """300 independent task types of 80 records each, drawn alike: the root mean square of
    the reported standard errors must equal the standard deviation of the scores.

    The sample standard deviation of 300 near-normal scores has a relative standard error of
    1/sqrt(598) = 4.1 %, so the band [0.8, 1.2] is about 4.9 of them wide on each side
    (false-failure rate below 1e-5 with the fixed seed; the delta method's own bias at
    n = 80 is under 2 %). Power: a standard error that adds the four terms' variances and
    drops their covariances reads 0.68 on these correlated records, far outside the band.
    """
    tasks, n = 300, 80
    assert memory_store.ingest(correlated_log(tasks, n, seed=1)).accepted == tasks * n
    values, sems = [], []
    for t in range(tasks):
        ((_, value, sem),) = to_observations(memory_store, f"t{t}")
        values.append(value)
        sems.append(sem)
    ratio = math.sqrt(float(np.mean(np.square(sems)))) / float(np.std(values, ddof=1))
    assert 0.8 <= ratio <= 1.2, ratio


def test_a_search_space_maps_names_and_leaves_out_what_it_refuses(
    memory_store: AnalyticsStore,
) -> None:
    rows = []
    sets = [
        {"temperature": 0.2, "maxTokens": 512, "systemPrompt": "be brief"},
        {"temperature": 0.9, "max_tokens": 1024},
        {"temperature": 1.9, "maxTokens": 512},  # outside the space's temperature range
        {"maxTokens": 256},  # no temperature
    ]
    for i in range(80):
        rows.append(
            {
                "execution_id": f"x{i}",
                "timestamp": 1_700_000_000 + i,
                "task_type": "code",
                "model": "m",
                "parameters": sets[i % 4],
                "latency_ms": 100.0 + i,
                "success": i % 3 != 0,
                "quality": 0.5,
            }
        )
    assert memory_store.ingest(rows).accepted == 80
    space = SearchSpace(
        {
            "temperature": Real(0.0, 1.2),
            "max_tokens": Int(64, 4096, log=True),
            "style": Fixed("plain"),
        }
    )
    obs = to_observations(memory_store, "code", space={**space.params}, min_executions=10)
    got = sorted((p["temperature"], p["max_tokens"], p["style"]) for p, _, _ in obs)
    assert got == [(0.2, 512, "plain"), (0.9, 1024, "plain")]
    with pytest.raises(InputError, match="objective"):
        to_observations(memory_store, "code", objective="speed")
    with pytest.raises(InputError, match="min_executions"):
        to_observations(memory_store, "code", min_executions=1)
    assert to_observations(memory_store, "code", min_executions=1000) == []


def test_the_optimizer_learns_the_best_set_from_records_in_the_store(
    memory_store: AnalyticsStore,
) -> None:
    """Records with a known best parameter set go through the store; the optimizer told
    their observations ranks that set first (margin >= 0.05 against standard errors near
    0.005: a failure needs a 10-sigma error)."""
    log, truth = generate_log(
        16_000,
        seed=5,
        task_types=("code_generation",),
        n_parameter_sets=8,
        min_margin=0.05,
    )
    assert memory_store.ingest(log).accepted == len(log)
    space = SearchSpace(
        {
            "temperature": Real(0.0, 1.2),
            "max_tokens": Int(64, 8192, log=True),
            "top_p": Real(0.5, 1.0),
        }
    )
    optimizer = Optimizer(space, {"score": "maximize"}, seed=0)
    obs = to_observations(memory_store, "code_generation", space=space)
    assert len(obs) == 8
    for params, value, sem in obs:
        optimizer.tell(params, {"score": (value, sem)})
    best = truth.best_parameters["code_generation"]
    expect = {
        "temperature": best["temperature"],
        "max_tokens": best["maxTokens"],
        "top_p": best["topP"],
    }
    assert optimizer.best_observed().params == pytest.approx(expect)


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_rewards_per_backend_on_file(
    memory_store: AnalyticsStore, tmp_path: Path, suffix: str
) -> None:
    log, _ = generate_log(3000, seed=2)
    memory_store.ingest(log)
    path = tmp_path / f"rewards{suffix}"
    out = export_rewards(memory_store, path)
    eff = memory_store.effectiveness(("provider", "model"))
    assert out[["provider", "model"]].values.tolist() == eff[["provider", "model"]].values.tolist()
    assert out["reward"].tolist() == pytest.approx(eff["score"].tolist())
    assert (out["success_lo"] <= out["success_rate"]).all()
    assert (out["success_rate"] <= out["success_hi"]).all()
    assert (out["reward_sem"] > 0).all()
    if suffix == ".json":
        doc = json.loads(path.read_text())
        assert doc["version"] == REWARDS_VERSION and doc["by"] == ["provider", "model"]
        back = pd.DataFrame(doc["rows"])
    elif suffix == ".csv":
        back = pd.read_csv(path)
    else:
        back = pd.read_parquet(path)
    if suffix != ".json":
        assert (back["format_version"] == REWARDS_VERSION).all()
    assert back["executions"].tolist() == out["executions"].tolist()
    assert back["reward"].tolist() == pytest.approx(out["reward"].tolist())
    assert not list(tmp_path.glob(".*.tmp"))


def test_rewards_refuse_an_unknown_format(memory_store: AnalyticsStore, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="format"):
        export_rewards(memory_store, tmp_path / "rewards.xlsx")
