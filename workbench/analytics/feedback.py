"""From stored execution records to training data: the optimizer's observations and rewards.

:func:`to_observations` turns the records of one task type into what
:meth:`workbench.optimize.Optimizer.tell` takes: one ``(params, value, sem)`` per parameter
set with at least ``min_executions`` records, where ``value`` is the set's mean objective and
``sem`` its standard error::

    for params, value, sem in to_observations(store, "code_generation", space=space):
        optimizer.tell(params, {"score": (value, sem)})

:func:`export_rewards` writes per-backend rewards (by provider and model, or any grouping)
to a file for offline study (bandit replay, router tuning).

**Objectives** (:data:`OBJECTIVES`): ``score`` (the platform's weighted score, as
:meth:`~workbench.analytics.store.AnalyticsStore.effectiveness` computes it), ``success_rate``,
``quality`` (mean over known values), ``satisfaction`` (mean user satisfaction, 0..5),
``latency_ms`` (mean) and ``cost`` (mean per execution). Values are in their own units and
directions: tell the optimizer to maximise score, success rate, quality and satisfaction, and
to minimise latency and cost.

**Standard errors.** A mean's is ``s / sqrt(n)``. The success rate's is the standard deviation
of its Beta(1 + successes, 1 + failures) posterior, which stays positive at 0 or n successes
(where ``sqrt(p (1 - p) / n)`` would claim an exact value). The score is a function of four
means (success, latency, quality, satisfaction), estimated on overlapping rows, so its
standard error comes from the delta method with the empirical influence function::

    psi_i = (0.4 (x_i - p) - 0.2 [L < 10000] (l_i - L) / 10000
             + 0.2 (n / n_q) [q_i known] (q_i - q) + 0.04 (n / n_s) [s_i known] (s_i - s)) / W
    sem = sqrt(sum psi_i^2 / (n (n - 1)))

with ``W`` the sum of the present weights (the score's renormalisation), so the covariances
between the terms are included. A test checks the result against the spread of the score
over independent replications.

**Search spaces.** With ``space`` (a :class:`~workbench.optimize.space.SearchSpace` or a mapping
of parameters), each stored set is mapped into it: a key is kept under its own name or, when
only that exists in the space, its snake_case form (the platform's ``maxTokens`` ->
``max_tokens``, ``topP`` -> ``top_p``); keys the space does not know are dropped; the result
goes through ``space.validate`` (Fixed values filled in). Sets the space refuses (a value out
of bounds, a missing parameter) are left out and counted in the log. Sets that map to the
same point stay separate observations (replicates).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.analytics.stats import success_interval
from workbench.analytics.store import Filters
from workbench.errors import InputError

__all__ = ["OBJECTIVES", "REWARDS_VERSION", "export_rewards", "to_observations"]

logger = logging.getLogger(__name__)

#: Objectives :func:`to_observations` can report, and their natural direction.
OBJECTIVES: dict[str, str] = {
    "score": "maximize",
    "success_rate": "maximize",
    "quality": "maximize",
    "satisfaction": "maximize",
    "latency_ms": "minimize",
    "cost": "minimize",
}
#: Version of the files :func:`export_rewards` writes.
REWARDS_VERSION = 1
_READ = ["parameter_hash", "success", "latency_ms", "quality", "user_satisfaction", "cost"]
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_REWARD_FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json"}


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _mean_sem(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite values (NaN: unknown)."""
    known = values[~np.isnan(values)]
    n = known.size
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(known.mean())
    sem = float(known.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return mean, sem, n


def _beta_sd(successes: int, n: int) -> float:
    a, b = 1.0 + successes, 1.0 + n - successes
    return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))


def _score_and_sem(group: pd.DataFrame) -> tuple[float, float]:
    """The weighted score of one group's rows and its delta-method standard error."""
    n = len(group)
    x = group["success"].to_numpy(dtype=np.float64)
    lat = group["latency_ms"].to_numpy(dtype=np.float64)
    q = group["quality"].to_numpy(dtype=np.float64)
    s = group["user_satisfaction"].to_numpy(dtype=np.float64)
    p, mean_lat = x.mean(), lat.mean()
    speed = max(0.0, 1.0 - mean_lat / 10_000.0)
    total, weight = 0.4 * p + 0.2 * speed, 0.6
    psi = 0.4 * (x - p)
    if mean_lat < 10_000.0:
        psi = psi - 0.2 * (lat - mean_lat) / 10_000.0
    for values, scale in ((q, 0.2), (s, 0.2 / 5.0)):
        known = ~np.isnan(values)
        n_known = int(known.sum())
        if n_known == 0:
            continue
        mean = float(values[known].mean())
        total += scale * mean
        weight += 0.2
        psi = psi + scale * (n / n_known) * np.where(known, values - mean, 0.0)
    score = total / weight
    if n < 2:
        return score, math.nan
    return score, float(math.sqrt(float(np.sum((psi / weight) ** 2)) / (n * (n - 1))))


def _objective(group: pd.DataFrame, objective: str) -> tuple[float, float]:
    if objective == "score":
        return _score_and_sem(group)
    if objective == "success_rate":
        ok = group["success"].to_numpy(dtype=bool)
        return float(ok.mean()), _beta_sd(int(ok.sum()), ok.size)
    column = {
        "quality": "quality",
        "satisfaction": "user_satisfaction",
        "latency_ms": "latency_ms",
        "cost": "cost",
    }[objective]
    mean, sem, _ = _mean_sem(group[column].to_numpy(dtype=np.float64))
    return mean, sem


def _to_space(params: Mapping[str, Any], space: Any) -> dict[str, Any]:
    names = set(space.names)
    mapped: dict[str, Any] = {}
    for key, value in params.items():
        if key in names:
            mapped[key] = value
        elif _snake(key) in names and _snake(key) not in params:
            mapped[_snake(key)] = value
    return dict(space.validate(mapped))


def to_observations(
    store: Any,
    task_type: str,
    *,
    space: Any = None,
    objective: str = "score",
    min_executions: int = 5,
    filters: Filters | None = None,
) -> list[tuple[dict[str, Any], float, float]]:
    """One observation per parameter set of ``task_type`` (module docstring).

    Args:
        store: An :class:`~workbench.analytics.store.AnalyticsStore`.
        task_type: The task type whose records train the optimizer.
        space: A search space (or mapping of parameters) to map the sets into; None keeps
            the stored dicts as they are.
        objective: One of :data:`OBJECTIVES`.
        min_executions: Sets with fewer records are left out (at least 2, so a standard
            error exists).
        filters: More conditions (time range, models, providers, complexity); its task
            types are replaced by ``task_type``.

    Returns:
        ``(params, value, sem)`` per set, ordered by parameter hash; sets whose objective is
        unknown (no quality scores, say) are left out.

    Raises:
        InputError: An unknown objective or a bad ``min_executions``.
    """
    if objective not in OBJECTIVES:
        raise InputError(f"objective={objective!r} is unknown; use one of {sorted(OBJECTIVES)}")
    if isinstance(min_executions, bool) or not isinstance(min_executions, int):
        raise InputError(f"min_executions={min_executions!r} must be an integer >= 2")
    if min_executions < 2:
        raise InputError(f"min_executions={min_executions} must be >= 2 (a standard error)")
    if space is not None:
        from workbench.optimize.space import SearchSpace

        space = SearchSpace.coerce(space)
    base = filters or Filters()
    chosen = Filters(
        task_types=(task_type,),
        models=base.models,
        providers=base.providers,
        complexity=base.complexity,
        start=base.start,
        end=base.end,
    )
    frame = store.frame(chosen, columns=_READ)
    out: list[tuple[dict[str, Any], float, float]] = []
    refused = 0
    for h, group in frame.groupby("parameter_hash", sort=True):
        if len(group) < min_executions:
            continue
        value, sem = _objective(group, objective)
        if not (math.isfinite(value) and math.isfinite(sem)):
            continue
        params = store.parameters_of(str(h))
        if space is not None:
            try:
                params = _to_space(params, space)
            except InputError as exc:
                refused += 1
                logger.debug("parameter set %s is outside the space: %s", h, exc.message)
                continue
        out.append((params, float(value), float(sem)))
    if refused:
        logger.info(
            "%s: %d parameter sets with >= %d records lie outside the search space",
            task_type,
            refused,
            min_executions,
        )
    return out


def export_rewards(
    store: Any,
    path: str | os.PathLike[str],
    by: Sequence[str] = ("provider", "model"),
    *,
    filters: Filters | None = None,
    format: str | None = None,
) -> pd.DataFrame:
    """Write per-backend rewards to ``path`` and return them.

    One row per group of ``by`` (columns of ``AnalyticsStore.effectiveness``): the group,
    ``executions``, ``successes``, ``success_rate`` with its 95 % Beta(1, 1) credible bounds
    ``success_lo``/``success_hi``, ``latency_mean_ms``, ``latency_p95_ms``, ``quality_mean``,
    ``satisfaction_mean``, ``cost_total``, ``cost_mean``, ``reward`` (the weighted score) and
    ``reward_sem`` (its delta-method standard error; NaN for a single record).

    Formats (from the suffix, or ``format``): ``.json`` is ``{"version", "kind", "by",
    "rows"}``; ``.csv`` and ``.parquet`` hold the rows with a ``format_version`` column. The
    file is written to a temporary name and renamed, so a reader never sees half of it.

    Raises:
        InputError: An unknown format or grouping column.
    """
    p = Path(path)
    kind = format or _REWARD_FORMATS.get(p.suffix.lower())
    if kind not in ("csv", "parquet", "json"):
        raise InputError(
            f"cannot tell the rewards format of {str(p)!r}; use a .json, .csv or .parquet "
            "name, or format='json'|'csv'|'parquet'"
        )
    by = list(by)
    eff = store.effectiveness(by, filters)
    wanted = dict.fromkeys([*by, "success", "latency_ms", "quality", "user_satisfaction"])
    rows = store.frame(filters, columns=list(wanted))
    sems: dict[tuple[Any, ...], float] = {}
    for key, group in rows.groupby(by, sort=False):
        sems[key if isinstance(key, tuple) else (key,)] = _score_and_sem(group)[1]
    n = eff["executions"].to_numpy(dtype=np.int64)
    k = eff["successes"].to_numpy(dtype=np.int64)
    lo, hi = success_interval(k, n, 0.95)
    out = eff[by].copy()
    out["executions"] = n
    out["successes"] = k
    out["success_rate"] = eff["success_rate"].to_numpy()
    out["success_lo"] = np.asarray(lo, dtype=np.float64)
    out["success_hi"] = np.asarray(hi, dtype=np.float64)
    for c in ("latency_mean_ms", "latency_p95_ms", "quality_mean", "satisfaction_mean"):
        out[c] = eff[c].to_numpy()
    out["cost_total"] = eff["cost_total"].to_numpy()
    out["cost_mean"] = out["cost_total"] / np.maximum(n, 1)
    out["reward"] = eff["score"].to_numpy()
    out["reward_sem"] = [
        sems.get(tuple(r), math.nan) for r in eff[by].itertuples(index=False, name=None)
    ]
    out = out.reset_index(drop=True)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if kind == "json":
            doc = {
                "version": REWARDS_VERSION,
                "kind": "workbench.analytics.rewards",
                "by": by,
                "rows": json.loads(out.to_json(orient="records")),
            }
            tmp.write_text(json.dumps(doc, indent=1))
        else:
            table = out.assign(format_version=REWARDS_VERSION)
            if kind == "csv":
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return out
