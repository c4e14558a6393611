"""The synthetic log: its records are valid, its ground truth is what a large sample recovers.

Statistical checks use 5 standard errors (two-sided false-failure 5.7e-7 each); the file
makes at most 170 of them, so a false failure of the file has probability below 1e-4.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from scipy.stats import kstest

from workbench.analytics.records import COLUMNS, parameter_hash, validate
from workbench.analytics.stats import effectiveness_frame
from workbench.analytics.synthetic import Shift, generate_log, write_log
from workbench.errors import InputError

Z = 5.0


def _indices(frame: pd.DataFrame, truth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    task = {t: i for i, t in enumerate(truth.task_types)}
    model = {m: i for i, m in enumerate(truth.models)}
    sets = {(t, h): j for t in truth.task_types for j, h in enumerate(truth.parameter_hashes[t])}
    keys = zip(frame["task_type"], frame["parameter_hash"], strict=True)
    return (
        frame["task_type"].map(task).to_numpy(),
        np.array([sets[key] for key in keys]),
        frame["model"].map(model).to_numpy(),
    )


def test_same_seed_same_log_and_valid_records() -> None:
    a, truth = generate_log(5_000, seed=42)
    b, _ = generate_log(5_000, seed=42)
    c, _ = generate_log(5_000, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert not a["latency_ms"].equals(c["latency_ms"])
    assert list(a.columns) == list(COLUMNS)
    assert a["execution_id"].is_unique
    assert a["timestamp"].is_monotonic_increasing
    checked = validate(a)
    assert checked.rejected == [] and checked.accepted == len(a)
    for task in truth.task_types:
        hashes = truth.parameter_hashes[task]
        assert len(set(hashes)) == len(hashes) == 8
        assert [parameter_hash(p) for p in truth.parameter_sets[task]] == list(hashes)
        assert truth.best_parameter_set[task] in hashes
        assert truth.margin[task] >= 0.03
    q = a["quality"].to_numpy()
    assert np.nanmin(q) >= 0 and np.nanmax(q) <= 1 and np.isnan(q).any()
    sat = a["user_satisfaction"].to_numpy()
    assert 0.1 < np.mean(~np.isnan(sat)) < 0.3 and np.nanmax(sat) <= 5
    assert (a["completion_tokens"] <= a["parameters"].map(lambda p: p["maxTokens"])).all()
    failed = ~a["success"].to_numpy()
    assert (a["error_class"].to_numpy()[failed] != "").all()
    assert (a["error_class"].to_numpy()[~failed] == "").all()


def test_a_large_sample_recovers_the_ground_truth() -> None:
    """300,000 records, 40 (task, set) groups: success counts are exactly binomial with the
    true rate (the model is drawn independently of the set); latency, quality and
    satisfaction means are checked with the sample's standard error (160 checks at 5 SE).
    The best set per task (true margins >= 0.03, score standard errors near 0.003) is then
    recovered with probability above 1 - 1e-9."""
    frame, truth = generate_log(300_000, seed=2024)
    eff = effectiveness_frame(frame).merge(
        truth.effectiveness, on=["task_type", "parameter_hash"], suffixes=("", "_true")
    )
    assert len(eff) == 40
    n = eff["executions"].to_numpy()
    p = eff["success_rate_true"].to_numpy()
    assert np.all(np.abs(eff["success_rate"] - p) <= Z * np.sqrt(p * (1 - p) / n))
    grouped = frame.groupby(["task_type", "parameter_hash"])
    for col, metric in (
        ("latency_ms", "latency_mean_ms"),
        ("quality", "quality_mean"),
        ("user_satisfaction", "satisfaction_mean"),
    ):
        stats = grouped[col].agg(["std", "count"]).reset_index()
        merged = eff.merge(stats, on=["task_type", "parameter_hash"])
        se = merged["std"] / np.sqrt(merged["count"])
        assert np.all(np.abs(merged[metric] - merged[f"{metric}_true"]) <= Z * se), metric
    best = eff.loc[eff.groupby("task_type")["score"].idxmax()]
    assert dict(zip(best["task_type"], best["parameter_hash"], strict=True)) == dict(
        truth.best_parameter_set
    )
    share = frame.groupby("task_type").size() / len(frame)
    for i, task in enumerate(truth.task_types):
        assert abs(share[task] - truth.task_weights[i]) <= Z * math.sqrt(
            truth.task_weights[i] * (1 - truth.task_weights[i]) / len(frame)
        )


def test_latency_is_lognormal_around_the_truth() -> None:
    """The log-latency residual is N(0, sigma^2): a KS test at level 1e-5 (false failure
    1e-5; power against sigma off by 10 % at n = 20,000 is ~1)."""
    frame, truth = generate_log(20_000, seed=9)
    ti, si, mi = _indices(frame, truth)
    resid = np.log(frame["latency_ms"].to_numpy()) - truth.latency_log_mean[ti, si, mi]
    assert kstest(resid / truth.latency_log_sigma, "norm").pvalue > 1e-5


@pytest.mark.parametrize(("metric", "size"), [("latency", 0.3), ("quality", -0.2)])
def test_a_shift_starts_at_its_time(metric: str, size: float) -> None:
    at = datetime(2025, 1, 3, 12, tzinfo=UTC)
    frame, truth = generate_log(
        20_000, seed=4, duration=timedelta(days=4), shift=Shift(at, metric, size)
    )
    k = truth.shift_index
    assert k is not None and truth.shift_time == at
    ts = frame["timestamp"]
    assert ts.iloc[k] >= pd.Timestamp(at) > ts.iloc[k - 1]
    base, _ = generate_log(20_000, seed=4, duration=timedelta(days=4))
    if metric == "latency":
        ratio = frame["latency_ms"].to_numpy() / base["latency_ms"].to_numpy()
        np.testing.assert_allclose(ratio[:k], 1.0)
        np.testing.assert_allclose(ratio[k:], math.exp(size))
    else:
        before = frame["quality"].to_numpy()[:k]
        np.testing.assert_array_equal(before, base["quality"].to_numpy()[:k])
        drop = np.nanmean(base["quality"].to_numpy()[k:]) - np.nanmean(
            frame["quality"].to_numpy()[k:]
        )
        assert 0.15 < drop < 0.25
    _, t2 = generate_log(1_000, seed=1, shift=Shift(0.5, "error_rate", 0.2))
    assert t2.shift_time == datetime(2025, 1, 4, 12, tzinfo=UTC)
    summary = orjson.loads(orjson.dumps(t2.to_dict()))
    assert summary["shift"]["metric"] == "error_rate" and len(summary["effectiveness"]) == 40


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_written_logs_read_back_to_the_same_records(tmp_path: Path, suffix: str) -> None:
    frame, _ = generate_log(2_000, seed=6)
    path = write_log(frame, tmp_path / f"log{suffix}")
    if suffix == ".jsonl":
        back = pd.DataFrame([orjson.loads(line) for line in path.read_bytes().splitlines()])
    elif suffix == ".csv":
        back = pd.read_csv(
            path, keep_default_na=False, na_values={"quality": [""], "user_satisfaction": [""]}
        )
    else:
        back = pd.read_parquet(path)
    want = validate(frame)
    got = validate(back)
    assert got.rejected == []
    for col in COLUMNS:
        left, right = want.frame[col].to_numpy(), got.frame[col].to_numpy()
        if want.frame[col].dtype.kind == "f":
            np.testing.assert_allclose(left, right, rtol=1e-12, equal_nan=True, err_msg=col)
        else:
            assert list(left) == list(right), col


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="n_parameter_sets"):
        generate_log(10, seed=0, n_parameter_sets=1)
    with pytest.raises(InputError, match="task_types"):
        generate_log(10, seed=0, task_types=("a", "a"))
    with pytest.raises(InputError, match="metric"):
        Shift(0.5, "throughput", 1.0)
    with pytest.raises(InputError, match="timezone"):
        generate_log(10, seed=0, start=datetime(2025, 1, 1))
    with pytest.raises(InputError, match=r"\.jsonl"):
        write_log(generate_log(10, seed=0)[0], tmp_path / "log.xlsx")
