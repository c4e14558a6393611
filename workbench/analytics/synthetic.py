"""A synthetic execution log with known ground truth, for tests, benchmarks and the notebook.

:func:`generate_log` draws ``n`` execution records (the columns of
:data:`workbench.analytics.records.COLUMNS`, ready for ``AnalyticsStore.ingest``) from a
model whose every probability is known:

* task type: a skewed mix (each task gets at least half of a uniform share); parameter sets:
  ``n_parameter_sets`` distinct ``{"temperature", "maxTokens", "topP"}`` dicts per task, used
  with skewed frequencies; model: a skewed mix independent of task and set.
* success: Bernoulli with ``p = sigmoid(a_task + b_task,set + c_model)``;
* latency: lognormal, ``log(latency_ms) ~ N(mu, sigma^2)`` with ``mu`` from the model's speed
  and the set's ``maxTokens``;
* quality: ``Beta(q kappa, (1 - q) kappa)`` with mean ``q = sigmoid(...)``, unknown (NaN) on a
  fraction ``quality_missing`` of rows;
* user satisfaction (feedback) on a fraction ``feedback_fraction``: ``5 Beta(...)`` with mean
  ``5 q``;
* tokens: lognormal prompt length per task; completion length lognormal, capped at
  ``maxTokens``; cost from per-model prices per 1,000 tokens.

One set per task is made the best by the platform's weighted score, by a margin of at least
``min_margin`` over the runner-up (its success and quality effects are raised until it is).
:class:`GroundTruth` holds the true probabilities and means per (task, set, model), the true
effectiveness per (task, set) over the model mix (the quantities
:func:`workbench.analytics.stats.effectiveness_frame` estimates), and the best set per task.
An optional :class:`Shift` changes one metric from a known time on, for the detectors; the
ground truth describes the records before it.

Each column draws from its own random stream (children of one ``SeedSequence``), so a log
with a shift differs from the same log without it only in the shifted metric. Everything is
vectorised numpy: 1,000,000 records take 1.4-1.9 s of CPU (4-6 s wall on the shared 2-core
CI machine), most of it building the execution id strings. :func:`write_log` of that log:
Parquet 0.5 s CPU, JSONL 4 s, CSV 9 s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from workbench.analytics.records import COLUMNS, canonical_json, parameter_hash
from workbench.analytics.stats import weighted_score
from workbench.errors import InputError

__all__ = ["METRICS", "GroundTruth", "Shift", "generate_log", "write_log"]

#: Metrics a :class:`Shift` can move.
METRICS = ("latency", "error_rate", "quality")
_TEMPERATURES = tuple(round(0.1 * i, 1) for i in range(13))
_MAX_TOKENS = (128, 256, 512, 1024, 2048, 4096)
_TOP_P = (0.8, 0.85, 0.9, 0.95, 1.0)
_ERRORS = np.array(["timeout", "rate_limit", "invalid_output", "server_error"], dtype=object)
_COMPLEXITY = np.array(["simple", "medium", "complex"], dtype=object)
_QUALITY_KAPPA = 12.0
_SATISFACTION_KAPPA = 6.0
_LATENCY_SIGMA = 0.45
_DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)


def _provider(model: str) -> str:
    name = model.lower()
    for prefix, provider in (
        ("gpt", "openai"),
        ("o1", "openai"),
        ("claude", "anthropic"),
        ("llama", "meta"),
        ("gemini", "google"),
        ("mistral", "mistral"),
    ):
        if name.startswith(prefix):
            return provider
    return "unknown"


@dataclass(frozen=True)
class Shift:
    """A change injected into one metric from time ``at`` on.

    Attributes:
        at: When it starts: a timezone-aware datetime, or a fraction in [0, 1] of the log's
            time span.
        metric: ``"latency"`` (``size`` added to log latency: latency times ``exp(size)``),
            ``"error_rate"`` (``size`` added to every error probability, capped at 1) or
            ``"quality"`` (``size`` added to every quality mean, kept in [0.01, 0.99]).
        size: The change, in the units just given.
    """

    at: datetime | float
    metric: str
    size: float

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InputError(f"Shift.metric={self.metric!r} is unknown; use one of {METRICS}")
        if not math.isfinite(self.size):
            raise InputError(f"Shift.size={self.size!r} must be finite")
        if isinstance(self.at, datetime):
            if self.at.tzinfo is None:
                raise InputError(f"Shift.at={self.at!r} must be timezone-aware (UTC)")
        elif not (isinstance(self.at, int | float) and 0.0 <= float(self.at) <= 1.0):
            raise InputError(f"Shift.at={self.at!r} must be a datetime or a fraction in [0, 1]")


@dataclass(frozen=True)
class GroundTruth:
    """What generated a log.

    Attributes:
        task_types, models: The names, in index order (axes 0 and 2 of the arrays below).
        model_weights: Probability of each model, shape (M,).
        task_weights: Probability of each task, shape (T,).
        set_weights: Probability of each set within its task, shape (T, S).
        parameter_sets: Per task, its S parameter dicts (axis 1 of the arrays).
        parameter_hashes: Per task, the hashes of those dicts.
        success_probability: True success probability, shape (T, S, M).
        latency_log_mean: Mean of log latency (log ms), shape (T, S, M); its standard
            deviation is ``latency_log_sigma``.
        latency_log_sigma: Standard deviation of log latency.
        quality_mean: True mean quality, shape (T, S, M); satisfaction has mean 5x this.
        effectiveness: True effectiveness per (task_type, parameter_hash) over the model mix:
            ``share`` (of the task's records), ``success_rate``, ``latency_mean_ms``,
            ``quality_mean``, ``satisfaction_mean``, ``score``.
        best_parameter_set: Per task, the hash of the best set by true score.
        best_parameters: Per task, its dict.
        margin: Per task, best score minus runner-up score.
        shift: The injected shift, if any; shift_time: when it starts (UTC).
        shift_index: Position of the first record at or after the shift (``None`` without).
    """

    task_types: tuple[str, ...]
    models: tuple[str, ...]
    model_weights: np.ndarray
    task_weights: np.ndarray
    set_weights: np.ndarray
    parameter_sets: Mapping[str, tuple[Mapping[str, Any], ...]]
    parameter_hashes: Mapping[str, tuple[str, ...]]
    success_probability: np.ndarray
    latency_log_mean: np.ndarray
    latency_log_sigma: float
    quality_mean: np.ndarray
    effectiveness: pd.DataFrame
    best_parameter_set: Mapping[str, str]
    best_parameters: Mapping[str, Mapping[str, Any]]
    margin: Mapping[str, float]
    shift: Shift | None
    shift_time: datetime | None
    shift_index: int | None

    def to_dict(self) -> dict[str, Any]:
        """The names, the best set per task with its margin, the true effectiveness rows and
        the shift (JSON-ready; the per-(task, set, model) arrays are left out)."""
        shift = None
        if self.shift is not None and self.shift_time is not None:
            shift = {
                "time": self.shift_time.isoformat(),
                "metric": self.shift.metric,
                "size": self.shift.size,
                "index": self.shift_index,
            }
        return {
            "task_types": list(self.task_types),
            "models": list(self.models),
            "best_parameter_set": dict(self.best_parameter_set),
            "best_parameters": {t: dict(p) for t, p in self.best_parameters.items()},
            "margin": dict(self.margin),
            "effectiveness": self.effectiveness.to_dict(orient="records"),
            "shift": shift,
        }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def _skewed(rng: np.random.Generator, k: int) -> np.ndarray:
    w = 0.5 / k + 0.5 * rng.dirichlet(np.ones(k))
    out: np.ndarray = w / w.sum()
    return out


def _true_effectiveness(
    success: np.ndarray,
    log_mean: np.ndarray,
    quality: np.ndarray,
    model_w: np.ndarray,
) -> dict[str, np.ndarray]:
    lat = np.exp(log_mean + 0.5 * _LATENCY_SIGMA**2)
    rate = success @ model_w
    latency = lat @ model_w
    q = quality @ model_w
    return {
        "success_rate": rate,
        "latency_mean_ms": latency,
        "quality_mean": q,
        "satisfaction_mean": 5.0 * q,
        "score": weighted_score(rate, latency, q, 5.0 * q),
    }


def _choose_within(rng: np.random.Generator, group: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # One categorical draw per row from the row's group's weights (rows of ``weights``).
    cum = np.cumsum(weights, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(group.shape[0])
    out = np.zeros(group.shape[0], dtype=np.int64)
    for j in range(weights.shape[1] - 1):
        out += u >= cum[group, j]
    return out


def generate_log(
    n: int,
    *,
    seed: int,
    start: datetime = _DEFAULT_START,
    duration: timedelta = timedelta(days=7),
    task_types: Sequence[str] = (
        "code_generation",
        "summarization",
        "question_answering",
        "translation",
        "data_analysis",
    ),
    models: Sequence[str] = ("gpt-4o", "claude-3-5-sonnet", "llama-3-70b"),
    n_parameter_sets: int = 8,
    feedback_fraction: float = 0.2,
    quality_missing: float = 0.05,
    min_margin: float = 0.03,
    shift: Shift | None = None,
) -> tuple[pd.DataFrame, GroundTruth]:
    """Draw a realistic execution log and the truth behind it.

    Args:
        n: Number of records, >= 0.
        seed: Seed of every random choice (the same arguments give the same log).
        start: Time of the earliest possible record (timezone-aware).
        duration: Span of the log; timestamps are uniform over ``[start, start+duration)``,
            sorted.
        task_types: Task type names (distinct).
        models: Model names (distinct); providers follow from their prefixes.
        n_parameter_sets: Distinct parameter sets per task, 2..390.
        feedback_fraction: Fraction of records with a user satisfaction score.
        quality_missing: Fraction of records whose quality is unknown (NaN).
        min_margin: Least true-score gap between each task's best set and the runner-up.
        shift: A change injected from a known time on.

    Returns:
        ``(frame, truth)``: the records in time order (columns
        :data:`~workbench.analytics.records.COLUMNS`, ``timestamp`` as datetime64[us, UTC],
        ``parameters`` holding one shared dict per set: do not mutate them) and the
        :class:`GroundTruth`.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InputError(f"n={n!r} must be an integer >= 0")
    tasks = tuple(str(t) for t in task_types)
    mods = tuple(str(m) for m in models)
    if not tasks or len(set(tasks)) != len(tasks):
        raise InputError(f"task_types={task_types!r} must be distinct and non-empty")
    if not mods or len(set(mods)) != len(mods):
        raise InputError(f"models={models!r} must be distinct and non-empty")
    combos = len(_TEMPERATURES) * len(_MAX_TOKENS) * len(_TOP_P)
    if not (2 <= n_parameter_sets <= combos):
        raise InputError(f"n_parameter_sets={n_parameter_sets!r} must lie in 2..{combos}")
    for name, value in (
        ("feedback_fraction", feedback_fraction),
        ("quality_missing", quality_missing),
    ):
        if not (0.0 <= value <= 1.0):
            raise InputError(f"{name}={value!r} must lie in [0, 1]")
    if start.tzinfo is None:
        raise InputError(f"start={start!r} must be timezone-aware (UTC)")
    if duration <= timedelta(0):
        raise InputError(f"duration={duration!r} must be positive")
    # One stream for the model and one per column, so a shift (or a change of one column's
    # law) leaves every other column of the log exactly as it was: common random numbers.
    seeds = np.random.SeedSequence(seed).spawn(16)
    rng = np.random.default_rng(seeds[0])
    col = [np.random.default_rng(s) for s in seeds[1:]]
    T, S, M = len(tasks), int(n_parameter_sets), len(mods)

    # -- the model ------------------------------------------------------------------------
    sets: dict[str, tuple[Mapping[str, Any], ...]] = {}
    max_tokens = np.empty((T, S))
    for t_idx, task in enumerate(tasks):
        picks = rng.choice(combos, size=S, replace=False)
        chosen = []
        for c in picks:
            t_i, rest = divmod(int(c), len(_MAX_TOKENS) * len(_TOP_P))
            m_i, p_i = divmod(rest, len(_TOP_P))
            chosen.append(
                {
                    "temperature": _TEMPERATURES[t_i],
                    "maxTokens": _MAX_TOKENS[m_i],
                    "topP": _TOP_P[p_i],
                }
            )
        sets[task] = tuple(chosen)
        max_tokens[t_idx] = [p["maxTokens"] for p in chosen]
    hashes = {task: tuple(parameter_hash(p) for p in sets[task]) for task in tasks}

    task_w = _skewed(rng, T)
    set_w = np.stack([_skewed(rng, S) for _ in range(T)])
    model_w = _skewed(rng, M)
    a = rng.uniform(1.0, 2.5, size=T)[:, None, None]
    b = rng.normal(0.0, 0.35, size=(T, S))
    c = rng.normal(0.0, 0.25, size=M)[None, None, :]
    qa = rng.uniform(-0.2, 1.0, size=T)[:, None, None]
    qb = rng.normal(0.0, 0.3, size=(T, S))
    qc = rng.normal(0.0, 0.2, size=M)[None, None, :]
    speed = np.log(rng.uniform(500.0, 2500.0, size=M))[None, None, :]
    task_speed = rng.normal(0.0, 0.15, size=T)[:, None, None]
    log_mean = np.broadcast_to(
        speed + task_speed + 0.25 * np.log2(max_tokens / 512.0)[:, :, None], (T, S, M)
    ).copy()
    best_idx = rng.integers(0, S, size=T)
    prompt_median = rng.uniform(80.0, 1500.0, size=T)
    price_in = rng.uniform(0.0002, 0.005, size=M)
    price_out = price_in * rng.uniform(2.0, 4.0, size=M)
    for t_idx in range(T):
        others = np.arange(S) != best_idx[t_idx]
        b[t_idx, best_idx[t_idx]] = b[t_idx, others].max() + 0.3
        qb[t_idx, best_idx[t_idx]] = qb[t_idx, others].max() + 0.2
    while True:
        success_p = _sigmoid(a + b[:, :, None] + c)
        quality = _sigmoid(qa + qb[:, :, None] + qc)
        truth = _true_effectiveness(success_p, log_mean, quality, model_w)
        score = truth["score"]
        order = np.argsort(-score, axis=1)
        margin = score[np.arange(T), order[:, 0]] - score[np.arange(T), order[:, 1]]
        weak = (order[:, 0] != best_idx) | (margin < min_margin)
        if not weak.any():
            break
        b[weak, best_idx[weak]] += 0.2
        qb[weak, best_idx[weak]] += 0.1

    # -- the records ----------------------------------------------------------------------
    span_us = int(duration / timedelta(microseconds=1))
    start_us = int(
        (start.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
    )
    ts = start_us + np.sort(col[0].integers(0, span_us, size=n))
    ti = col[1].choice(T, size=n, p=task_w)
    si = _choose_within(col[2], ti, set_w)
    mi = col[3].choice(M, size=n, p=model_w)
    p = success_p[ti, si, mi]
    mu = log_mean[ti, si, mi]
    qm = quality[ti, si, mi]

    shift_time: datetime | None = None
    shift_index: int | None = None
    if shift is not None:
        if isinstance(shift.at, datetime):
            at_us = int(
                (shift.at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC))
                / timedelta(microseconds=1)
            )
        else:
            at_us = start_us + round(float(shift.at) * span_us)
        shift_time = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at_us)
        shift_index = int(np.searchsorted(ts, at_us, side="left"))
        after = slice(shift_index, n)
        if shift.metric == "latency":
            mu = mu.copy()
            mu[after] += shift.size
        elif shift.metric == "error_rate":
            p = p.copy()
            p[after] = np.clip(p[after] - shift.size, 0.0, 1.0)
        else:
            qm = qm.copy()
            qm[after] = np.clip(qm[after] + shift.size, 0.01, 0.99)

    success = col[4].random(n) < p
    latency = np.exp(mu + _LATENCY_SIGMA * col[5].standard_normal(n))
    quality_obs = col[6].beta(qm * _QUALITY_KAPPA, (1.0 - qm) * _QUALITY_KAPPA)
    quality_obs[col[7].random(n) < quality_missing] = np.nan
    satisfaction = np.full(n, np.nan)
    fb = col[8].random(n) < feedback_fraction
    satisfaction[fb] = 5.0 * col[9].beta(
        qm[fb] * _SATISFACTION_KAPPA, (1.0 - qm[fb]) * _SATISFACTION_KAPPA
    )
    prompt_tokens = np.maximum(
        1, np.rint(prompt_median[ti] * np.exp(0.6 * col[10].standard_normal(n)))
    )
    cap = max_tokens[ti, si]
    completion = np.minimum(
        cap, np.maximum(1, np.rint(0.35 * cap * np.exp(0.5 * col[11].standard_normal(n))))
    )
    cost = (prompt_tokens * price_in[mi] + completion * price_out[mi]) / 1000.0
    error_class = np.full(n, "", dtype=object)
    failed = ~success
    error_class[failed] = _ERRORS[col[12].integers(0, len(_ERRORS), size=int(failed.sum()))]
    users = np.array([f"user-{i:04d}" for i in range(1000)], dtype=object)
    sessions = np.array([f"session-{i:05d}" for i in range(5000)], dtype=object)
    params = np.empty(T * S, dtype=object)
    params[:] = [sets[t][j] for t in tasks for j in range(S)]
    hash_arr = np.array([h for t in tasks for h in hashes[t]], dtype=object)
    flat = ti * S + si
    task_arr = np.array(tasks, dtype=object)
    model_arr = np.array(mods, dtype=object)
    provider_arr = np.array([_provider(m) for m in mods], dtype=object)
    ids = np.array([f"exec-{seed}-{i:09d}" for i in range(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "execution_id": ids,
            "timestamp": pd.to_datetime(ts, unit="us", utc=True).as_unit("us"),
            "task_type": task_arr[ti],
            "model": model_arr[mi],
            "provider": provider_arr[mi],
            "user_id": users[col[13].integers(0, len(users), size=n)],
            "session_id": sessions[col[13].integers(0, len(sessions), size=n)],
            "parameters": params[flat],
            "parameter_hash": hash_arr[flat],
            "prompt_tokens": prompt_tokens.astype(np.int64),
            "completion_tokens": completion.astype(np.int64),
            "latency_ms": latency,
            "cost": cost,
            "success": success,
            "error_class": error_class,
            "quality": quality_obs,
            "user_satisfaction": satisfaction,
            "complexity": _COMPLEXITY[col[14].choice(3, size=n, p=[0.3, 0.5, 0.2])],
        },
        columns=list(COLUMNS),
    )

    eff = pd.DataFrame(
        {
            "task_type": np.repeat(np.array(tasks, dtype=object), S),
            "parameter_hash": hash_arr,
            "share": set_w.reshape(-1),
            **{k: v.reshape(-1) for k, v in truth.items()},
        }
    )
    best = {task: hashes[task][int(order[i, 0])] for i, task in enumerate(tasks)}
    gt = GroundTruth(
        task_types=tasks,
        models=mods,
        model_weights=model_w,
        task_weights=task_w,
        set_weights=set_w,
        parameter_sets=sets,
        parameter_hashes=hashes,
        success_probability=success_p,
        latency_log_mean=log_mean,
        latency_log_sigma=_LATENCY_SIGMA,
        quality_mean=quality,
        effectiveness=eff,
        best_parameter_set=best,
        best_parameters={task: sets[task][int(order[i, 0])] for i, task in enumerate(tasks)},
        margin={task: float(margin[i]) for i, task in enumerate(tasks)},
        shift=shift,
        shift_time=shift_time,
        shift_index=shift_index,
    )
    return frame, gt


def _iso(ts: pd.Series) -> np.ndarray:
    utc = ts.dt.tz_convert("UTC") if ts.dt.tz is not None else ts
    naive = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    out: np.ndarray = np.char.add(np.datetime_as_string(naive, unit="us"), "Z").astype(object)
    return out


def write_log(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write records to ``path`` in the format its suffix names.

    ``.jsonl`` (one JSON object per line, timestamps ISO 8601, ``parameters`` an object,
    unknown numbers ``null``), ``.csv`` and ``.parquet`` (``parameters`` as canonical JSON
    text, timestamps ISO 8601 in CSV and timestamp[us, UTC] in Parquet). Every format reads
    back through ``AnalyticsStore.ingest`` to the same records.

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv", ".parquet"):
        raise InputError(f"path={str(path)!r} must end in .jsonl, .csv or .parquet")
    out = frame.copy()
    if "timestamp" in out.columns and not pd.api.types.is_datetime64_any_dtype(out["timestamp"]):
        out["timestamp"] = pd.to_datetime(
            out["timestamp"].to_numpy(dtype=np.int64), unit="us", utc=True
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        # orjson writes floats in their shortest exact form (pandas rounds to 10 digits,
        # which would change latencies and parameter values) and NaN as null.
        if "timestamp" in out.columns:
            out["timestamp"] = _iso(out["timestamp"])
        names = list(out.columns)
        columns = [out[c].tolist() for c in names]
        with path.open("wb") as fh:
            for row in zip(*columns, strict=True):
                fh.write(orjson.dumps(dict(zip(names, row, strict=True))))
                fh.write(b"\n")
        return path
    if "parameters" in out.columns:
        cache: dict[int, str] = {}
        texts = []
        for p in out["parameters"].tolist():
            key = id(p)
            if key not in cache:
                cache[key] = p if isinstance(p, str) else canonical_json(p)
            texts.append(cache[key])
        out["parameters"] = texts
    if suffix == ".csv":
        out["timestamp"] = _iso(out["timestamp"])
        out.to_csv(path, index=False)
    else:
        out.to_parquet(path, index=False)
    return path
