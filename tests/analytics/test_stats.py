"""Statistics against closed forms and independent computations (numpy, scipy)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta, binom

from workbench.analytics.stats import (
    DEFAULT_PARAMETERS,
    EFFECTIVENESS_COLUMNS,
    dashboard,
    effectiveness_frame,
    insights,
    parameter_trends,
    recommend,
    success_interval,
    trend,
    trend_label,
    trends,
    weighted_score,
)
from workbench.analytics.synthetic import generate_log
from workbench.errors import InputError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000


# -- credible intervals -------------------------------------------------------------------------


def test_interval_closed_form_at_zero_and_all_successes() -> None:
    # s = 0 under Beta(1, 1): the posterior is Beta(1, n + 1), with CDF 1 - (1 - x)^(n + 1).
    n = np.array([0, 1, 5, 50, 1000])
    lo, hi = success_interval(np.zeros_like(n), n)
    np.testing.assert_allclose(lo, 1 - 0.975 ** (1 / (n + 1)), rtol=1e-10)
    np.testing.assert_allclose(hi, 1 - 0.025 ** (1 / (n + 1)), rtol=1e-10)
    lo2, hi2 = success_interval(n, n)  # s = n mirrors it
    np.testing.assert_allclose(lo2, 1 - hi, rtol=1e-10)
    np.testing.assert_allclose(hi2, 1 - lo, rtol=1e-10)


def test_interval_is_the_beta_posterior_quantile() -> None:
    s = np.array([[3, 10], [0, 7]])
    n = np.array([20, 30])
    lo, hi = success_interval(s, n, level=0.9, prior=(0.5, 2.0))
    assert lo.shape == (2, 2)
    np.testing.assert_allclose(lo, beta.ppf(0.05, 0.5 + s, 2.0 + n - s))
    np.testing.assert_allclose(hi, beta.ppf(0.95, 0.5 + s, 2.0 + n - s))
    one = success_interval(7, 20)
    assert isinstance(one[0], float)
    assert one == pytest.approx((beta.ppf(0.025, 8, 14), beta.ppf(0.975, 8, 14)))


@pytest.mark.parametrize(
    ("successes", "n", "kwargs"),
    [(5, 4, {}), (-1, 4, {}), (1, 4, {"level": 1.0}), (1, 4, {"prior": (0.0, 1.0)})],
)
def test_interval_refuses_bad_input(successes: int, n: int, kwargs: dict) -> None:
    with pytest.raises(InputError):
        success_interval(successes, n, **kwargs)


@pytest.mark.parametrize(("n", "prior"), [(20, (1.0, 1.0)), (200, (1.0, 1.0)), (50, (2.0, 5.0))])
def test_interval_covers_at_the_nominal_rate(n: int, prior: tuple[float, float]) -> None:
    """Calibration: with p drawn from the prior, a 95 % credible interval holds p with
    probability exactly 0.95, so over R = 1000 replications the count of covers is
    Binomial(1000, 0.95).

    The band is that binomial's central 1 - 2e-5 range (918..977), so each check
    fails falsely with probability < 2e-5 (three checks: < 1e-4). Power: an interval that
    ignores the failures (Beta(a + s, b)) covers almost never for small p and fails with
    probability ~1; a 90 % interval mislabelled 95 % (expected 900 covers) fails with
    probability about 0.97. The 2,000-replication check over more settings is in the
    notebook.
    """
    rng = np.random.default_rng(1234 + n)
    reps = 1000
    p = rng.beta(*prior, size=reps)
    s = rng.binomial(n, p)
    lo, hi = success_interval(s, np.full(reps, n), prior=prior)
    covered = int(((lo <= p) & (p <= hi)).sum())
    low, high = binom.ppf(1e-5, reps, 0.95), binom.isf(1e-5, reps, 0.95)
    assert low <= covered <= high, (covered, low, high)
    assert high - low < 70  # narrow enough to have the power stated


# -- effectiveness ------------------------------------------------------------------------------


def _frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": 0.01,
        "user_satisfaction": math.nan,
        "quality": math.nan,
    }
    return pd.DataFrame([{**base, **r} for r in rows])


def _reference_score(rate: float, lat: float, q: float, sat: float) -> float:
    terms = [(0.4, rate), (0.2, max(0.0, 1 - lat / 10_000))]
    if not math.isnan(q):
        terms.append((0.2, q))
    if not math.isnan(sat):
        terms.append((0.2, sat / 5))
    return sum(w * t for w, t in terms) / sum(w for w, _ in terms)


def test_effectiveness_matches_a_per_group_numpy_computation() -> None:
    frame, _ = generate_log(6_000, seed=3, n_parameter_sets=4)
    eff = effectiveness_frame(frame)
    assert list(eff.columns) == [
        "task_type",
        "parameter_hash",
        *EFFECTIVENESS_COLUMNS,
        "parameters",
    ]
    assert len(eff) == frame.groupby(["task_type", "parameter_hash"]).ngroups
    assert eff["executions"].sum() == len(frame)
    ts_us = frame["timestamp"].dt.as_unit("us").astype("int64").to_numpy()
    for row in eff.itertuples(index=False):
        mask = (frame["task_type"] == row.task_type) & (
            frame["parameter_hash"] == row.parameter_hash
        )
        g = frame.loc[mask]
        lat = g["latency_ms"].to_numpy()
        ok = g["success"].to_numpy()
        assert row.executions == len(g) and row.successes == ok.sum()
        np.testing.assert_allclose(
            [row.latency_p50_ms, row.latency_p95_ms, row.latency_p99_ms],
            np.percentile(lat, [50, 95, 99]),
            rtol=1e-12,
        )
        assert row.latency_mean_ms == pytest.approx(lat.mean(), rel=1e-12)
        assert row.quality_mean == pytest.approx(np.nanmean(g["quality"]), rel=1e-12)
        assert row.satisfaction_mean == pytest.approx(np.nanmean(g["user_satisfaction"]))
        assert row.prompt_tokens_total == g["prompt_tokens"].sum()
        assert row.completion_tokens_total == g["completion_tokens"].sum()
        assert row.cost_total == pytest.approx(g["cost"].sum())
        assert row.first_timestamp.value // 1000 == ts_us[mask.to_numpy()].min()
        assert row.last_timestamp.value // 1000 == ts_us[mask.to_numpy()].max()
        assert row.confidence == min(0.95, len(g) / 100)
        lo, hi = beta.ppf([0.025, 0.975], 1 + ok.sum(), 1 + len(g) - ok.sum())
        assert (row.success_lo, row.success_hi) == pytest.approx((lo, hi))
        assert row.score == pytest.approx(
            _reference_score(ok.mean(), lat.mean(), row.quality_mean, row.satisfaction_mean)
        )
        assert row.parameters == g["parameters"].iloc[0]


def test_score_clamps_time_and_renormalises_missing_terms() -> None:
    rows = [
        # a: slow (time term would be -1.0), no quality, no feedback
        {
            "task_type": "t",
            "parameter_hash": "a",
            "timestamp": T0_US,
            "latency_ms": 20_000.0,
            "success": True,
        },
        {
            "task_type": "t",
            "parameter_hash": "a",
            "timestamp": T0_US + 1,
            "latency_ms": 20_000.0,
            "success": False,
        },
        # b: everything present
        {
            "task_type": "t",
            "parameter_hash": "b",
            "timestamp": T0_US,
            "latency_ms": 2_000.0,
            "success": True,
            "quality": 0.5,
            "user_satisfaction": 4.0,
        },
        # c: quality known, feedback missing
        {
            "task_type": "t",
            "parameter_hash": "c",
            "timestamp": T0_US,
            "latency_ms": 5_000.0,
            "success": True,
            "quality": 0.9,
        },
    ]
    eff = effectiveness_frame(_frame(rows)).set_index("parameter_hash")
    assert eff.loc["a", "score"] == pytest.approx((0.4 * 0.5 + 0.2 * 0.0) / 0.6)
    assert eff.loc["b", "score"] == pytest.approx(0.4 + 0.2 * 0.8 + 0.2 * 0.5 + 0.2 * 0.8)
    assert eff.loc["c", "score"] == pytest.approx((0.4 + 0.2 * 0.5 + 0.2 * 0.9) / 0.8)
    assert math.isnan(eff.loc["a", "quality_mean"])
    np.testing.assert_allclose(
        weighted_score([1.0, 0.0], [0.0, 50_000.0], [math.nan, 1.0], [5.0, math.nan]),
        [1.0, 0.2 / 0.8],
    )
    assert effectiveness_frame(_frame(rows), min_executions=2)["parameter_hash"].tolist() == ["a"]
    assert effectiveness_frame(_frame(rows), min_confidence=0.02)["parameter_hash"].tolist() == [
        "a"
    ]


def test_effectiveness_names_missing_columns_and_takes_an_empty_frame() -> None:
    empty = effectiveness_frame(generate_log(0, seed=0)[0])
    assert empty.empty and list(empty.columns)[2:-1] == list(EFFECTIVENESS_COLUMNS)
    with pytest.raises(InputError, match="latency_ms"):
        effectiveness_frame(pd.DataFrame({"task_type": ["t"], "parameter_hash": ["a"]}))


# -- trends -------------------------------------------------------------------------------------


def test_trend_closed_forms() -> None:
    assert trend([1, 1, 1, 2, 2, 2]) == pytest.approx(1.0)
    assert trend([1, 1, 1, 2, 2, 2], lower_is_better=True) == pytest.approx(-1.0)
    assert trend([1, 2, 100, 3, 4]) == pytest.approx((3.5 - 1.5) / 1.5)  # middle value left out
    assert trend([4, 4, 4, 2, 2, 2]) == pytest.approx(-0.5)
    assert trend([1, 2, 3, 4]) == 0.0  # fewer than 5 values
    assert trend([0, 0, 0, 1, 1, 1]) == pytest.approx(1.0)  # zero first half: no division by 0
    assert trend([0, 0, 0, -2, -2, -2]) == pytest.approx(-1.0)
    assert trend([0.0] * 8) == 0.0
    assert trend([1, math.nan, 1, 1, 3, 3, 3]) == pytest.approx(2.0)  # NaN dropped first
    assert trend([-2, -2, -2, -1, -1, -1]) == pytest.approx(0.5)  # relative to |first|
    assert [trend_label(x) for x in (0.11, 0.1, -0.1, -0.11)] == [
        "improving",
        "stable",
        "stable",
        "declining",
    ]


def test_trends_bucket_by_time() -> None:
    frame, _ = generate_log(3_000, seed=8, duration=timedelta(hours=10))
    out = trends(frame, by=("task_type",), buckets="1h")
    assert out["executions"].sum() == len(frame)
    ts_us = frame["timestamp"].dt.as_unit("us").astype("int64").to_numpy()
    hour = 3_600_000_000
    expected = (
        pd.DataFrame(
            {
                "task_type": frame["task_type"],
                "b": ts_us // hour * hour,
                "ok": frame["success"],
                "lat": frame["latency_ms"],
            }
        )
        .groupby(["task_type", "b"])
        .agg(n=("ok", "size"), rate=("ok", "mean"), lat=("lat", "mean"))
        .reset_index()
    )
    np.testing.assert_array_equal(out["executions"], expected["n"])
    np.testing.assert_allclose(out["success_rate"], expected["rate"])
    np.testing.assert_allclose(out["latency_mean_ms"], expected["lat"])
    starts = out["bucket_start"].dt.as_unit("us").astype("int64").to_numpy()
    np.testing.assert_array_equal(starts, expected["b"])
    counted = trends(frame, by=["model"], buckets=4)
    assert counted["executions"].sum() == len(frame)
    assert counted.groupby("model").size().max() == 4
    with pytest.raises(InputError, match="buckets"):
        trends(frame, buckets=0)


def test_parameter_trends_follow_the_series() -> None:
    n = 10
    rows = [
        {
            "task_type": "up",
            "timestamp": T0_US + i,
            "latency_ms": 100.0 - 5 * i,
            "success": True,
            "quality": 0.1 * (i + 1),
        }
        for i in range(n)
    ] + [
        {
            "task_type": "flat",
            "timestamp": T0_US + i,
            "latency_ms": 100.0,
            "success": True,
            "quality": 0.5,
        }
        for i in range(n)
    ]
    frame = _frame(rows).sample(frac=1.0, random_state=0)  # order by timestamp, not by row
    out = parameter_trends(frame).set_index("task_type")
    assert out.loc["up", "quality_trend"] == pytest.approx((0.8 - 0.3) / 0.3)
    lat = 100.0 - 5 * np.arange(n)
    assert out.loc["up", "speed_trend"] == pytest.approx(-(lat[5:].mean() / lat[:5].mean() - 1))
    assert out.loc["up", "quality_trend_label"] == "improving"
    assert out.loc["flat", "speed_trend"] == 0.0
    assert out.loc["flat", "cost_efficiency_trend_label"] == "stable"


# -- insights and recommendations ---------------------------------------------------------------


def _eff(scores: list[float], **extra: list) -> pd.DataFrame:
    k = len(scores)
    data = {
        "task_type": ["t"] * k,
        "parameter_hash": [f"h{i}" for i in range(k)],
        "executions": extra.pop("executions", [100] * k),
        "success_rate": extra.pop("success_rate", [0.9] * k),
        "latency_mean_ms": extra.pop("latency_mean_ms", [1000.0] * k),
        "quality_mean": extra.pop("quality_mean", [0.8] * k),
        "score": scores,
        "parameters": extra.pop(
            "parameters",
            [{"temperature": 0.1 * i, "maxTokens": 100 * (i + 1), "topP": 0.9} for i in range(k)],
        ),
    }
    data.update(extra)
    return pd.DataFrame(data)


@pytest.mark.parametrize(
    ("worst", "best", "impact"),
    [
        (0.5, 0.54, None),
        (0.5, 0.55, "low"),
        (0.5, 0.62, "low"),
        (0.5, 0.63, "medium"),
        (0.5, 0.75, "medium"),
        (0.5, 0.76, "high"),
    ],
)
def test_insight_thresholds(worst: float, best: float, impact: str | None) -> None:
    eff = _eff([worst, (worst + best) / 2, best], executions=[40, 100, 300])
    found = insights(eff, "t")
    if impact is None:
        assert found == []
        return
    (one,) = found
    assert one.impact == impact
    assert one.improvement_percent == pytest.approx((best - worst) / worst * 100)
    assert one.best_parameter_hash == "h2"
    assert one.sample_size == 440
    assert one.confidence == pytest.approx(0.4)  # the weaker evidence of the two sets
    assert (one.current_metric, one.optimized_metric) == (worst, best)
    assert "temperature=0.2" in one.recommendation and "maxTokens=300" in one.recommendation
    assert "topP=0.9" in one.recommendation
    assert one.to_dict()["best_parameters"] == {"temperature": 0.2, "maxTokens": 300, "topP": 0.9}


def test_insights_need_two_sets_and_the_task() -> None:
    assert insights(_eff([0.2]), "t") == []
    assert insights(_eff([0.2, 0.9]), "other") == []


def test_recommend_filters_by_complexity_and_explains() -> None:
    eff = _eff(
        [0.7, 0.9, 0.8, 0.6, 0.65],
        parameters=[{"maxTokens": m, "temperature": 0.3} for m in (100, 3000, 400, 450, 1000)],
        latency_mean_ms=[1000.0, 3000.0, 800.0, 1200.0, 1000.0],
        quality_mean=[0.8, 0.9, 0.88, 0.4, 0.7],
        success_rate=[0.5, 0.95, 0.875, 0.5, 0.5],
        executions=[10, 20, 80, 300, 5],
    )
    rec = recommend(eff, "t")
    assert rec.parameter_hash == "h1" and rec.recommended["maxTokens"] == 3000
    assert rec.confidence == pytest.approx(0.2)
    assert rec.reasoning == "Based on 20 executions with 95.0% success rate"
    assert [a.parameter_hash for a in rec.alternative_options] == ["h2", "h0", "h4"]
    assert rec.alternative_options[0].tradeoffs == "73% faster, 2% lower quality"
    simple = recommend(eff, "t", complexity="simple")  # maxTokens 50..500
    assert simple.parameter_hash == "h2"
    assert [a.parameter_hash for a in simple.alternative_options] == ["h0", "h3"]
    assert simple.alternative_options[0].tradeoffs == "25% slower, 9% lower quality"
    assert recommend(eff, "t", complexity="complex").parameter_hash == "h1"  # 800..4000
    assert recommend(eff, "t", complexity="medium").parameter_hash == "h2"  # 200..1500
    none = recommend(eff, "unknown-task")
    assert none.recommended == dict(DEFAULT_PARAMETERS) == {"temperature": 0.5, "maxTokens": 1024}
    assert none.confidence == 0.1 and none.alternative_options == () and none.parameter_hash is None
    assert recommend(eff, "t", domain="legal").parameter_hash == "h1"
    with pytest.raises(InputError, match="complexity"):
        recommend(eff, "t", complexity="hard")
    by_model = pd.concat(
        [eff.assign(model="a"), eff.assign(model="b", score=eff["score"][::-1].to_numpy())]
    )
    assert recommend(by_model, "t", model="b").parameter_hash == "h3"
    assert rec.to_dict()["alternative_options"][0]["parameters"] == {
        "maxTokens": 400,
        "temperature": 0.3,
    }


# -- dashboard ----------------------------------------------------------------------------------


def test_dashboard_counts_the_last_24_hours() -> None:
    now = T0 + timedelta(days=2)
    now_us = T0_US + 2 * 86_400_000_000
    day = 86_400_000_000
    rows = []
    for i, task in enumerate(["a", "b", "c", "d", "e", "f"]):
        for j in range(10):
            rows.append(
                {
                    "task_type": task,
                    "parameter_hash": f"{task}{j % 2}",
                    "timestamp": now_us - 1_000 * (j + 1),
                    "latency_ms": 100.0 * (i + 1),
                    "success": j >= i,
                    "quality": 0.5,
                }
            )
    rows.append(
        {
            "task_type": "a",
            "parameter_hash": "a0",
            "timestamp": now_us - day,
            "latency_ms": 1e6,
            "success": False,
            "quality": 0.5,
        }
    )  # exactly 24 h old: outside
    rows.append(
        {
            "task_type": "a",
            "parameter_hash": "a0",
            "timestamp": now_us + 1,
            "latency_ms": 1e6,
            "success": False,
            "quality": 0.5,
        }
    )  # after now: outside
    rows.append(
        {
            "task_type": "z",
            "parameter_hash": "z0",
            "timestamp": now_us - day + 1,
            "latency_ms": 100.0,
            "success": True,
            "quality": 0.5,
        }
    )  # just inside
    frame = _frame(rows)
    d = dashboard(frame, now)
    assert d.total_executions == 61
    ok = [j >= i for i in range(6) for j in range(10)] + [True]
    assert d.success_rate == pytest.approx(np.mean(ok))
    lat = [100.0 * (i + 1) for i in range(6) for _ in range(10)] + [100.0]
    assert d.avg_response_time_ms == pytest.approx(np.mean(lat))
    assert [t.task_type for t in d.top_performing_tasks] == [
        "a",
        "z",
        "b",
        "c",
        "d",
    ]  # ties: more executions first
    assert d.top_performing_tasks[2].success_rate == pytest.approx(0.9)
    assert len(d.recent_insights) <= 5
    assert [i.improvement_percent for i in d.recent_insights] == sorted(
        (i.improvement_percent for i in d.recent_insights), reverse=True
    )
    assert {t["task_type"] for t in d.parameter_trends} == {"a", "b", "c", "d", "e", "f", "z"}
    payload = d.to_dict()
    assert payload["window_end"] == now.isoformat() and payload["total_executions"] == 61
    empty = dashboard(frame, T0)
    assert empty.total_executions == 0 and empty.top_performing_tasks == ()
    with pytest.raises(InputError, match="timezone"):
        dashboard(frame, datetime(2026, 3, 3))


@pytest.mark.parametrize("backend", ["sqlite", "duckdb"])
def test_the_reference_agrees_with_the_store(tmp_path, backend: str) -> None:
    from workbench.analytics import AnalyticsStore

    frame, _ = generate_log(4_000, seed=21, n_parameter_sets=3)
    suffix = "db" if backend == "sqlite" else "duckdb"
    with AnalyticsStore(f"{backend}:///{tmp_path / f'a.{suffix}'}") as store:
        assert store.ingest(frame).accepted == len(frame)
        for by in (("task_type", "parameter_hash"), ("task_type", "model")):
            sql = store.effectiveness(by=by)
            ref = effectiveness_frame(store.frame(), by=by)
            assert len(sql) == len(ref)
            for col in sql.columns:
                left, right = sql[col].to_numpy(), ref[col].to_numpy()
                if sql[col].dtype.kind == "f":
                    np.testing.assert_allclose(left, right, rtol=1e-9, equal_nan=True, err_msg=col)
                else:
                    assert list(left) == list(right), col
