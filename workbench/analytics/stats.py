"""Statistics of execution records: effectiveness, credible intervals, trends, insights,
recommendations and the 24-hour dashboard.

Everything here is a pure function of a DataFrame with the record columns of
:mod:`workbench.analytics.records` (``AnalyticsStore.frame()`` gives one; so does
:func:`workbench.analytics.synthetic.generate_log`). A ``timestamp`` column may be int64
microseconds since the epoch (the store's form) or datetime64 (naive means UTC).

:func:`effectiveness_frame` is the pandas reference of ``AnalyticsStore.effectiveness``: the
same groups and columns, computed independently, so the store's SQL is tested against it. The
weighted score is the platform's with the time term clamped at 0::

    score = (0.4 success_rate + 0.2 max(0, 1 - latency_mean_ms / 10000)
             + 0.2 quality_mean + 0.2 satisfaction_mean / 5) / (sum of the present weights)

A term whose mean is unknown (no quality scores, no feedback yet in the group) is left out and
the remaining weights are renormalised to sum to 1, so a group without feedback is not
penalised by 0.2 for it. Confidence is the platform's ``min(0.95, n / 100)``.

Trends follow the platform (section 4.3 of the reference): at least 5 values in time order,
``h = n // 2``, ``(mean(last h) - mean(first h)) / mean(first h)``, negated where lower is
better (latency, tokens); labelled improving above 0.1 and declining below -0.1. The
platform divided by zero when the first half's mean was 0; here the denominator is then the
larger magnitude of the two means, so the trend is +-1 (a rise from nothing) or 0 (no change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import beta as beta_dist

from workbench.errors import InputError

__all__ = [
    "DEFAULT_PARAMETERS",
    "EFFECTIVENESS_COLUMNS",
    "MAX_TOKENS_RANGES",
    "Alternative",
    "Dashboard",
    "Insight",
    "Recommendation",
    "TaskPerformance",
    "dashboard",
    "effectiveness_frame",
    "insights",
    "parameter_trends",
    "recommend",
    "success_interval",
    "trend",
    "trend_label",
    "trends",
    "weighted_score",
]

#: Columns of :func:`effectiveness_frame` after the grouping columns: those of
#: ``AnalyticsStore.effectiveness`` in its order, then the credible bounds (``parameters`` is
#: added at the end when the input has it and the grouping includes ``parameter_hash``).
EFFECTIVENESS_COLUMNS: tuple[str, ...] = (
    "executions",
    "successes",
    "success_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_mean_ms",
    "quality_mean",
    "satisfaction_mean",
    "prompt_tokens_total",
    "completion_tokens_total",
    "cost_total",
    "first_timestamp",
    "last_timestamp",
    "confidence",
    "score",
    "success_lo",
    "success_hi",
)
#: The platform's maxTokens range per task complexity (inclusive), used by :func:`recommend`.
MAX_TOKENS_RANGES: Mapping[str, tuple[int, int]] = {
    "simple": (50, 500),
    "medium": (200, 1500),
    "complex": (800, 4000),
}
#: What :func:`recommend` returns when no parameter set matches.
DEFAULT_PARAMETERS: Mapping[str, Any] = {"temperature": 0.5, "maxTokens": 1024}
_DEFAULT_CONFIDENCE = 0.1
_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
_TREND_MIN = 5
_US = 1_000_000


# -- intervals and scores -----------------------------------------------------------------------


def success_interval(
    successes: Any,
    n: Any,
    level: float = 0.95,
    prior: tuple[float, float] = (1.0, 1.0),
) -> tuple[Any, Any]:
    """Equal-tailed Beta credible interval of a success probability.

    With a ``Beta(a, b)`` prior and ``s`` successes in ``n`` trials the posterior is
    ``Beta(a + s, b + n - s)``; the interval is its ``(1-level)/2`` and ``(1+level)/2``
    quantiles (``scipy.stats.beta.ppf``).

    Args:
        successes: Success counts, scalar or array (broadcast against ``n``).
        n: Trial counts, scalar or array, ``0 <= successes <= n``.
        level: Credible level in (0, 1).
        prior: ``(a, b)`` of the Beta prior, both > 0 (default uniform).

    Returns:
        ``(lo, hi)``: floats for scalar input, float64 arrays otherwise.
    """
    if not (0.0 < level < 1.0):
        raise InputError(f"level={level!r} must lie in (0, 1); use e.g. 0.95")
    a, b = (float(prior[0]), float(prior[1]))
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise InputError(f"prior={prior!r} must be two finite numbers > 0; use (1, 1)")
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64)
    if np.any(~np.isfinite(s)) or np.any(~np.isfinite(t)) or np.any(s < 0) or np.any(s > t):
        raise InputError("successes and n must be finite with 0 <= successes <= n")
    tail = (1.0 - level) / 2.0
    lo = beta_dist.ppf(tail, a + s, b + t - s)
    hi = beta_dist.ppf(1.0 - tail, a + s, b + t - s)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def weighted_score(
    success_rate: Any, latency_mean_ms: Any, quality_mean: Any, satisfaction_mean: Any
) -> np.ndarray:
    """The platform's weighted score, time term clamped at 0, unknown terms renormalised
    away (see the module docstring). Vectorised; returns float64 (NaN where the success rate
    is unknown)."""
    terms = [
        np.asarray(success_rate, dtype=np.float64),
        np.maximum(0.0, 1.0 - np.asarray(latency_mean_ms, dtype=np.float64) / 10_000.0),
        np.asarray(quality_mean, dtype=np.float64),
        np.asarray(satisfaction_mean, dtype=np.float64) / 5.0,
    ]
    terms = list(np.broadcast_arrays(*terms))
    total = np.zeros(terms[0].shape)
    weight = np.zeros(terms[0].shape)
    for w, term in zip(_WEIGHTS, terms, strict=True):
        present = ~np.isnan(term)
        total += np.where(present, w * term, 0.0)
        weight += np.where(present, w, 0.0)
    out: np.ndarray = np.where(np.isnan(terms[0]), np.nan, total / np.where(weight > 0, weight, 1))
    return out


def _timestamps_us(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        ts = pd.to_datetime(col, utc=True)
        return np.asarray(ts.dt.as_unit("us").astype("int64"), dtype=np.int64)
    if pd.api.types.is_integer_dtype(col.dtype):
        return np.asarray(col, dtype=np.int64)
    raise InputError(
        f"timestamp column has dtype {col.dtype}; pass int64 microseconds since the epoch "
        "(the store's frame) or datetime64 values"
    )


def _need(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what} needs the columns {missing}; pass the store's record frame")


def effectiveness_frame(
    frame: pd.DataFrame,
    by: Sequence[str] = ("task_type", "parameter_hash"),
    *,
    level: float = 0.95,
    min_executions: int = 0,
    min_confidence: float = 0.0,
) -> pd.DataFrame:
    """Effectiveness per group, computed with pandas (the reference of the store's SQL).

    Args:
        frame: Records with at least ``by``, ``timestamp``, ``latency_ms``, ``success`` and
            ``quality``; ``prompt_tokens``, ``completion_tokens``, ``cost`` and
            ``user_satisfaction`` count as 0 / unknown when absent.
        by: Grouping columns.
        level: Level of the ``success_lo``/``success_hi`` Beta(1, 1) credible interval.
        min_executions: Drop groups with fewer executions.
        min_confidence: Drop groups whose confidence ``min(0.95, n/100)`` is lower.

    Returns:
        One row per group, sorted by ``by``: the grouping columns, then
        :data:`EFFECTIVENESS_COLUMNS` (latency percentiles by linear interpolation, numpy's
        default; means of quality and satisfaction ignore NaN; timestamps datetime64[us, UTC]),
        then
        ``parameters`` (the group's dict) when available.
    """
    by = list(by)
    _need(frame, [*by, "timestamp", "latency_ms", "success", "quality"], "effectiveness")
    n = len(frame)
    work = pd.DataFrame({c: frame[c].to_numpy() for c in by})
    work["_ts"] = _timestamps_us(frame["timestamp"])
    work["_ok"] = frame["success"].to_numpy(dtype=bool).astype(np.int64)
    work["_lat"] = frame["latency_ms"].to_numpy(dtype=np.float64)
    work["_q"] = frame["quality"].to_numpy(dtype=np.float64)
    for src, dst, dtype, fill in (
        ("prompt_tokens", "_pt", np.int64, 0),
        ("completion_tokens", "_ct", np.int64, 0),
        ("cost", "_cost", np.float64, 0.0),
        ("user_satisfaction", "_sat", np.float64, np.nan),
    ):
        work[dst] = frame[src].to_numpy(dtype=dtype) if src in frame.columns else np.full(n, fill)
    g = work.groupby(by, sort=True, dropna=False)
    out = g.agg(
        executions=("_ok", "size"),
        successes=("_ok", "sum"),
        latency_mean_ms=("_lat", "mean"),
        quality_mean=("_q", "mean"),
        satisfaction_mean=("_sat", "mean"),
        prompt_tokens_total=("_pt", "sum"),
        completion_tokens_total=("_ct", "sum"),
        cost_total=("_cost", "sum"),
        first_timestamp=("_ts", "min"),
        last_timestamp=("_ts", "max"),
    )
    quant = g["_lat"].quantile([0.5, 0.95, 0.99]).unstack() if n else None
    for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        out[name] = quant[q].to_numpy() if quant is not None else np.empty(0)
    execs = out["executions"].to_numpy(dtype=np.int64)
    succ = out["successes"].to_numpy(dtype=np.int64)
    out["success_rate"] = succ / np.maximum(execs, 1)
    lo, hi = success_interval(succ, execs, level)
    out["success_lo"] = lo
    out["success_hi"] = hi
    out["confidence"] = np.minimum(0.95, execs / 100.0)
    for c in ("first_timestamp", "last_timestamp"):
        out[c] = pd.to_datetime(out[c].to_numpy(dtype=np.int64), unit="us", utc=True)
    out["score"] = weighted_score(
        out["success_rate"], out["latency_mean_ms"], out["quality_mean"], out["satisfaction_mean"]
    )
    columns = list(EFFECTIVENESS_COLUMNS)
    if "parameters" in frame.columns and "parameter_hash" in by:
        work["_params"] = frame["parameters"].to_numpy()
        out["parameters"] = g["_params"].first().to_numpy()
        columns.append("parameters")
    out = out[columns].reset_index()
    keep = (out["executions"] >= min_executions) & (out["confidence"] >= min_confidence)
    return out.loc[keep].reset_index(drop=True)


# -- trends -------------------------------------------------------------------------------------


def trend(values: Any, *, lower_is_better: bool = False) -> float:
    """The platform's trend of a time-ordered series (0.0 below 5 values or when unknown).

    Args:
        values: Observations in time order (NaN values are dropped first).
        lower_is_better: Negate the relative change (latency, tokens), so > 0 is improving.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size < _TREND_MIN:
        return 0.0
    h = x.size // 2
    first = float(np.mean(x[:h]))
    last = float(np.mean(x[-h:]))
    denom = abs(first) if first != 0.0 else max(abs(first), abs(last))
    change = 0.0 if denom == 0.0 else (last - first) / denom
    return -change if lower_is_better else change


def trend_label(value: float) -> str:
    """``"improving"`` above 0.1, ``"declining"`` below -0.1, else ``"stable"``."""
    if value > 0.1:
        return "improving"
    if value < -0.1:
        return "declining"
    return "stable"


def trends(
    frame: pd.DataFrame,
    by: Sequence[str] = ("task_type",),
    buckets: str | int = "1h",
) -> pd.DataFrame:
    """Metrics per group and time bucket.

    Args:
        frame: Records (``timestamp``, ``success``, ``latency_ms``, ``quality``; tokens and
            cost when present).
        by: Grouping columns.
        buckets: A pandas frequency (``"1h"``, ``"15min"``, ``"1D"``: buckets aligned to the
            epoch) or a number of equal-width buckets spanning the frame's time range.

    Returns:
        Columns ``by``, ``bucket_start`` (datetime64[us, UTC]), ``executions``,
        ``success_rate``, ``latency_mean_ms``, ``quality_mean``, ``tokens_mean``,
        ``cost_mean``; sorted by group then bucket; empty buckets are absent.
    """
    by = list(by)
    _need(frame, [*by, "timestamp", "success", "latency_ms", "quality"], "trends")
    ts = _timestamps_us(frame["timestamp"])
    if isinstance(buckets, bool) or not isinstance(buckets, str | int):
        raise InputError(f"buckets={buckets!r} must be a pandas frequency or a bucket count")
    if isinstance(buckets, int):
        if buckets < 1:
            raise InputError(f"buckets={buckets!r} must be >= 1")
        lo = int(ts.min()) if len(ts) else 0
        width = max(1, -(-(int(ts.max()) - lo + 1) // buckets)) if len(ts) else 1
    else:
        try:
            width = int(pd.Timedelta(pd.tseries.frequencies.to_offset(buckets)).value // 1000)
        except (ValueError, TypeError):
            raise InputError(
                f"buckets={buckets!r} is not a fixed pandas frequency; use e.g. '1h' or '15min'"
            ) from None
        if width <= 0:
            raise InputError(f"buckets={buckets!r} must be a positive duration")
        lo = 0
    n = len(frame)
    work = pd.DataFrame({c: frame[c].to_numpy() for c in by})
    work["_bucket"] = lo + (ts - lo) // width * width
    work["_ok"] = frame["success"].to_numpy(dtype=bool).astype(np.float64)
    work["_lat"] = frame["latency_ms"].to_numpy(dtype=np.float64)
    work["_q"] = frame["quality"].to_numpy(dtype=np.float64)
    tokens = np.zeros(n)
    for c in ("prompt_tokens", "completion_tokens"):
        if c in frame.columns:
            tokens = tokens + frame[c].to_numpy(dtype=np.float64)
    work["_tok"] = tokens
    work["_cost"] = frame["cost"].to_numpy(dtype=np.float64) if "cost" in frame else np.zeros(n)
    out = (
        work.groupby([*by, "_bucket"], sort=True, dropna=False)
        .agg(
            executions=("_ok", "size"),
            success_rate=("_ok", "mean"),
            latency_mean_ms=("_lat", "mean"),
            quality_mean=("_q", "mean"),
            tokens_mean=("_tok", "mean"),
            cost_mean=("_cost", "mean"),
        )
        .reset_index()
    )
    starts = pd.to_datetime(out.pop("_bucket").to_numpy(dtype=np.int64), unit="us", utc=True)
    out.insert(len(by), "bucket_start", starts)
    return out


def parameter_trends(frame: pd.DataFrame, by: Sequence[str] = ("task_type",)) -> pd.DataFrame:
    """The platform's three trends per group over the records in time order.

    Returns:
        Columns ``by``, ``executions``, ``quality_trend``, ``speed_trend`` (latency,
        negated), ``cost_efficiency_trend`` (total tokens, negated), and a ``*_label`` column
        for each (:func:`trend_label`).
    """
    by = list(by)
    _need(frame, [*by, "timestamp", "latency_ms", "quality"], "parameter_trends")
    work = pd.DataFrame({c: frame[c].to_numpy() for c in by})
    work["_ts"] = _timestamps_us(frame["timestamp"])
    work["_lat"] = frame["latency_ms"].to_numpy(dtype=np.float64)
    work["_q"] = frame["quality"].to_numpy(dtype=np.float64)
    tokens = np.zeros(len(frame))
    for c in ("prompt_tokens", "completion_tokens"):
        if c in frame.columns:
            tokens = tokens + frame[c].to_numpy(dtype=np.float64)
    work["_tok"] = tokens
    work = work.sort_values("_ts", kind="stable")
    rows = []
    for key, grp in work.groupby(by, sort=True, dropna=False):
        keys = key if isinstance(key, tuple) else (key,)
        q = trend(grp["_q"].to_numpy())
        s = trend(grp["_lat"].to_numpy(), lower_is_better=True)
        e = trend(grp["_tok"].to_numpy(), lower_is_better=True)
        rows.append(
            (*keys, len(grp), q, s, e, trend_label(q), trend_label(s), trend_label(e)),
        )
    names = ["quality_trend", "speed_trend", "cost_efficiency_trend"]
    return pd.DataFrame(rows, columns=[*by, "executions", *names, *(f"{n}_label" for n in names)])


# -- insights and recommendations ---------------------------------------------------------------


@dataclass(frozen=True)
class Insight:
    """One optimisation opportunity for a task type (the platform's OptimizationInsight).

    Attributes:
        task_type: The task type.
        insight: What the data shows, in words.
        recommendation: The parameters to use (temperature, maxTokens, topP), in words.
        impact: ``"high"`` (improvement > 50 %), ``"medium"`` (> 25 %) or ``"low"``.
        confidence: The smaller confidence ``min(0.95, n/100)`` of the two sets compared.
        sample_size: Executions of the task over all its parameter sets.
        improvement_percent: ``(best - worst) / worst * 100`` of the weighted score (a worst
            score below 0.01 counts as 0.01).
        current_metric: The weakest set's score. optimized_metric: The best set's score.
        best_parameter_hash: Hash of the best set.
        best_parameters: Its parameters, when known.
    """

    task_type: str
    insight: str
    recommendation: str
    impact: str
    confidence: float
    sample_size: int
    improvement_percent: float
    current_metric: float
    optimized_metric: float
    best_parameter_hash: str
    best_parameters: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """Field by field (JSON-ready)."""
        out = asdict(self)
        out["best_parameters"] = (
            None if self.best_parameters is None else dict(self.best_parameters)
        )
        return out


def _lookup_parameters(
    eff: pd.DataFrame, parameters: Mapping[str, Mapping[str, Any]] | None
) -> list[Mapping[str, Any] | None]:
    hashes = eff["parameter_hash"].tolist()
    if parameters is not None:
        return [parameters.get(h) for h in hashes]
    if "parameters" in eff.columns:
        return [p if isinstance(p, Mapping) else None for p in eff["parameters"].tolist()]
    return [None] * len(hashes)


def _param(params: Mapping[str, Any] | None, *names: str) -> Any:
    for name in names:
        if params is not None and name in params:
            return params[name]
    return None


def _describe(params: Mapping[str, Any] | None) -> str:
    parts = []
    for label, names in (
        ("temperature", ("temperature",)),
        ("maxTokens", ("maxTokens", "max_tokens")),
        ("topP", ("topP", "top_p")),
    ):
        value = _param(params, *names)
        parts.append(f"{label}={'default' if value is None else value}")
    return ", ".join(parts)


def _task_rows(eff: pd.DataFrame, task_type: str, what: str) -> pd.DataFrame:
    _need(eff, ["task_type", "parameter_hash", "executions", "score"], what)
    return eff.loc[eff["task_type"] == task_type]


def insights(
    eff: pd.DataFrame,
    task_type: str,
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Insight]:
    """Insights for one task type from an effectiveness frame (platform thresholds).

    Needs at least 2 parameter sets; reports the best set against the weakest by weighted
    score when the improvement is at least 10 %.

    Args:
        eff: :func:`effectiveness_frame` or ``AnalyticsStore.effectiveness`` output grouped
            by ``("task_type", "parameter_hash")``.
        task_type: The task type.
        parameters: Parameter dicts by hash, when ``eff`` has no ``parameters`` column.

    Returns:
        Zero or one :class:`Insight` (a list, as the platform returns).
    """
    rows = _task_rows(eff, task_type, "insights")
    rows = rows.loc[rows["score"].notna()]
    if rows["parameter_hash"].nunique() < 2:
        return []
    order = rows.sort_values(["score", "executions"], ascending=[False, False], kind="stable")
    best, worst = order.iloc[0], order.iloc[-1]
    improvement = (best["score"] - worst["score"]) / max(float(worst["score"]), 0.01) * 100.0
    if improvement < 10.0:
        return []
    impact = "high" if improvement > 50.0 else "medium" if improvement > 25.0 else "low"
    best_params = _lookup_parameters(order.iloc[:1], parameters)[0]
    conf = min(min(0.95, best["executions"] / 100.0), min(0.95, worst["executions"] / 100.0))
    short = str(best["parameter_hash"])[:12]
    return [
        Insight(
            task_type=task_type,
            insight=(
                f"For {task_type}, parameter set {short} scores {best['score']:.3f} against "
                f"{worst['score']:.3f} for the weakest of {len(order)} sets "
                f"({improvement:.0f}% better)"
            ),
            recommendation=f"Use {_describe(best_params)} for {task_type}",
            impact=impact,
            confidence=float(conf),
            sample_size=int(rows["executions"].sum()),
            improvement_percent=float(improvement),
            current_metric=float(worst["score"]),
            optimized_metric=float(best["score"]),
            best_parameter_hash=str(best["parameter_hash"]),
            best_parameters=best_params,
        )
    ]


@dataclass(frozen=True)
class Alternative:
    """A runner-up parameter set.

    Attributes:
        parameters: The set. expected_performance: Its weighted score.
        tradeoffs: Latency and quality against the recommended set, e.g.
            ``"12% slower, 3% higher quality"``.
        parameter_hash: Its hash.
    """

    parameters: Mapping[str, Any] | None
    expected_performance: float
    tradeoffs: str
    parameter_hash: str

    def to_dict(self) -> dict[str, Any]:
        """Field by field (JSON-ready)."""
        out = asdict(self)
        out["parameters"] = None if self.parameters is None else dict(self.parameters)
        return out


@dataclass(frozen=True)
class Recommendation:
    """The platform's ``getParameterRecommendations`` result.

    Attributes:
        recommended: Parameters to use (:data:`DEFAULT_PARAMETERS` when nothing matches; empty
            when the best set's parameters are not known: pass ``parameters=``).
        confidence: The set's ``min(0.95, n/100)``; 0.1 for the default.
        reasoning: ``"Based on N executions with X% success rate"`` (or why the default).
        alternative_options: Up to 3 runners-up with their tradeoffs.
        parameter_hash: Hash of the recommended set (``None`` for the default).
    """

    recommended: Mapping[str, Any]
    confidence: float
    reasoning: str
    alternative_options: tuple[Alternative, ...]
    parameter_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        """Field by field (JSON-ready)."""
        return {
            "recommended": dict(self.recommended),
            "confidence": self.confidence,
            "reasoning": self.reasoning,
            "alternative_options": [a.to_dict() for a in self.alternative_options],
            "parameter_hash": self.parameter_hash,
        }


def _relative(value: float, ref: float, more: str, less: str, what: str) -> str:
    if not (math.isfinite(value) and math.isfinite(ref)) or ref == 0:
        return f"{what} unknown"
    pct = (value - ref) / abs(ref) * 100.0
    return f"{abs(pct):.0f}% {more if pct >= 0 else less}"


def recommend(
    eff: pd.DataFrame,
    task_type: str,
    complexity: str | None = None,
    domain: str | None = None,
    model: str | None = None,
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> Recommendation:
    """Recommend a parameter set for a task type (the platform's section 4.3).

    Args:
        eff: Effectiveness per ``(task_type, parameter_hash)`` (or with ``model`` too).
        task_type: The task type.
        complexity: ``simple``/``medium``/``complex``: keep sets whose maxTokens lies in
            :data:`MAX_TOKENS_RANGES` (sets without maxTokens are dropped then).
        domain: Accepted for the platform's signature; records carry no domain, so it
            filters nothing.
        model: Keep rows of this model (only when ``eff`` is grouped by ``model``).
        parameters: Parameter dicts by hash, when ``eff`` has no ``parameters`` column.

    Returns:
        The best set by weighted score, with up to 3 alternatives.
    """
    del domain  # no domain column in the record schema
    if complexity is not None and complexity not in MAX_TOKENS_RANGES:
        raise InputError(
            f"complexity={complexity!r} is unknown; use one of {sorted(MAX_TOKENS_RANGES)}"
        )
    rows = _task_rows(eff, task_type, "recommend")
    if model is not None and "model" in rows.columns:
        rows = rows.loc[rows["model"] == model]
    rows = rows.loc[rows["score"].notna()]
    params = _lookup_parameters(rows, parameters)
    if complexity is not None:
        lo, hi = MAX_TOKENS_RANGES[complexity]
        keep = []
        for p in params:
            value = _param(p, "maxTokens", "max_tokens")
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            keep.append(bool(ok and lo <= value <= hi))
        mask = np.asarray(keep, dtype=bool)
        rows = rows.loc[mask]
        params = [p for p, k in zip(params, keep, strict=True) if k]
    if rows.empty:
        return Recommendation(
            recommended=dict(DEFAULT_PARAMETERS),
            confidence=_DEFAULT_CONFIDENCE,
            reasoning=f"No executions of {task_type} match; using the default parameters",
            alternative_options=(),
            parameter_hash=None,
        )
    order = np.lexsort((-rows["executions"].to_numpy(), -rows["score"].to_numpy()))
    ranked = rows.iloc[order]
    ranked_params = [params[i] for i in order]
    best = ranked.iloc[0]
    has_q = "quality_mean" in ranked.columns
    has_lat = "latency_mean_ms" in ranked.columns
    alternatives = []
    for i in range(1, min(4, len(ranked))):
        alt = ranked.iloc[i]
        speed = _relative(
            float(alt["latency_mean_ms"]) if has_lat else math.nan,
            float(best["latency_mean_ms"]) if has_lat else math.nan,
            "slower",
            "faster",
            "speed",
        )
        quality = _relative(
            float(alt["quality_mean"]) if has_q else math.nan,
            float(best["quality_mean"]) if has_q else math.nan,
            "higher quality",
            "lower quality",
            "quality",
        )
        alternatives.append(
            Alternative(
                parameters=ranked_params[i],
                expected_performance=float(alt["score"]),
                tradeoffs=f"{speed}, {quality}",
                parameter_hash=str(alt["parameter_hash"]),
            )
        )
    n = int(best["executions"])
    if "success_rate" in ranked.columns:
        rate = float(best["success_rate"])
    else:
        rate = float(best["successes"]) / max(n, 1)
    recommended = ranked_params[0]
    return Recommendation(
        recommended=dict(recommended) if recommended is not None else {},
        confidence=float(min(0.95, n / 100.0)),
        reasoning=f"Based on {n} executions with {rate * 100:.1f}% success rate",
        alternative_options=tuple(alternatives),
        parameter_hash=str(best["parameter_hash"]),
    )


# -- dashboard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskPerformance:
    """One row of the dashboard's top tasks.

    Attributes:
        task_type: The task type. executions: Its executions in the window.
        success_rate: Successes / executions in the window.
    """

    task_type: str
    executions: int
    success_rate: float

    def to_dict(self) -> dict[str, Any]:
        """Field by field."""
        return asdict(self)


@dataclass(frozen=True)
class Dashboard:
    """The platform's 24-hour dashboard (``getDashboardMetrics``), in snake_case.

    Attributes:
        window_start, window_end: The window ``(window_start, window_end]`` (UTC).
        total_executions: Records in the window.
        success_rate: Their success rate (0.0 when there are none).
        avg_response_time_ms: Their mean latency (0.0 when there are none).
        top_performing_tasks: Up to 5 task types by success rate (ties: more executions).
        recent_insights: Up to 5 insights over all task types, largest improvement first.
        parameter_trends: Per task type, the three trends and their labels.
    """

    window_start: datetime
    window_end: datetime
    total_executions: int
    success_rate: float
    avg_response_time_ms: float
    top_performing_tasks: tuple[TaskPerformance, ...]
    recent_insights: tuple[Insight, ...]
    parameter_trends: tuple[Mapping[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """Field by field (JSON-ready; datetimes as ISO 8601)."""
        return {
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "total_executions": self.total_executions,
            "success_rate": self.success_rate,
            "avg_response_time_ms": self.avg_response_time_ms,
            "top_performing_tasks": [t.to_dict() for t in self.top_performing_tasks],
            "recent_insights": [i.to_dict() for i in self.recent_insights],
            "parameter_trends": [dict(t) for t in self.parameter_trends],
        }


def dashboard(
    frame: pd.DataFrame, now: datetime, *, window: timedelta = timedelta(hours=24)
) -> Dashboard:
    """The dashboard over the records with ``now - window < timestamp <= now``.

    Args:
        frame: Records (the store's frame or a generated log).
        now: End of the window, timezone-aware (injected, never read from a clock here).
        window: Length of the window (the platform's 24 hours).
    """
    if now.tzinfo is None:
        raise InputError(f"now={now!r} must be timezone-aware (UTC)")
    if window <= timedelta(0):
        raise InputError(f"window={window!r} must be positive")
    start = now - window
    end_us = round(
        (now.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
    )
    start_us = end_us - round(window / timedelta(microseconds=1))
    _need(frame, ["task_type", "timestamp", "success", "latency_ms", "quality"], "dashboard")
    ts = _timestamps_us(frame["timestamp"])
    recent = frame.loc[(ts > start_us) & (ts <= end_us)]
    total = len(recent)
    if total == 0:
        return Dashboard(start, now, 0, 0.0, 0.0, (), (), ())
    ok = recent["success"].to_numpy(dtype=bool)
    per_task = (
        pd.DataFrame({"task_type": recent["task_type"].to_numpy(), "ok": ok})
        .groupby("task_type", sort=True)["ok"]
        .agg(["size", "mean"])
        .reset_index()
        .sort_values(["mean", "size", "task_type"], ascending=[False, False, True])
    )
    top = tuple(
        TaskPerformance(str(r.task_type), int(r.size), float(r.mean))
        for r in per_task.head(5).itertuples(index=False)
    )
    found: list[Insight] = []
    if "parameter_hash" in recent.columns:
        eff = effectiveness_frame(recent)
        for task in per_task["task_type"]:
            found.extend(insights(eff, str(task)))
    found.sort(key=lambda i: (-i.improvement_percent, i.task_type))
    trend_rows = parameter_trends(recent).to_dict(orient="records")
    return Dashboard(
        window_start=start,
        window_end=now,
        total_executions=total,
        success_rate=float(ok.mean()),
        avg_response_time_ms=float(recent["latency_ms"].to_numpy(dtype=np.float64).mean()),
        top_performing_tasks=top,
        recent_insights=tuple(found[:5]),
        parameter_trends=tuple(trend_rows),
    )
