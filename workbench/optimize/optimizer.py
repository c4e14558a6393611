"""The :class:`Optimizer`: a stateful ask/tell facade over the stateless strategies.

It keeps the study (trials, their outcomes, pending suggestions, the GP's warm-start state)
and turns it into a :class:`~workbench.optimize.strategies.StrategyInput` for each
suggestion. Objectives are turned to "larger is better" internally; outcome constraints
are modelled as extra GP outputs.

Determinism: suggestion ``k`` uses a seed derived from ``(seed, k)`` and the warm-start
state saved with the study, so a study saved and loaded elsewhere proposes the same next
point as the original would have.

Failed trials (``tell(trial, failed=True)``) are never suggested again; with
``on_failure="impute"`` (the default) they also enter the model with the worst value seen so
far, which steers the search away from regions that fail (a timeout at a huge token budget,
say) instead of retrying next to them.

Outcome values must be finite and at most :data:`MAX_ABS_OUTCOME` (1e12) in absolute value;
``tell`` refuses others with :class:`~workbench.errors.InputError` naming the outcome. Why
1e12: it is wider than any metric a study reports in sensible units (1e12 ms is 31 years,
1e12 tokens or dollars is beyond any budget), so a value past it is a unit or overflow bug
that a model cannot learn from; and it keeps the GP's standardisation (which squares
deviations: values near 1e154 overflow float64) and the posterior's variance (scaled by the
squared standard deviation) many orders of magnitude inside float64. A study saved by an
older version that holds such values still loads: those trials become ``failed`` (their
outcomes kept for the record), so they are never suggested again and never reported as best.

``ask_batch(n, time_limit_s=...)`` bounds the wall time of the whole call: the strategy
gets :data:`STRATEGY_SHARE` of it (the rest covers preparing its input and recording the
trials), returns the best candidates found when its time is up and marks
``last_info["truncated"]`` (a truncated suggestion depends on timing, so it may differ between
two runs of the same study).

Recommendation under noise: :meth:`Optimizer.best` is the observed feasible configuration
with the best GP posterior mean (what Ax and BoTorch recommend when observations are noisy:
the highest noisy observation is biased upwards, the more so the more configurations were
tried), :meth:`Optimizer.best_observed` the one with the best observed value. Both agree on
noise-free data up to the model's smoothing.

Known noise: ``tell(trial, outcomes, sem={"y": 0.02})`` (or Ax's ``{"y": (mean, sem)}``)
records each outcome's standard error; once every modelled value has one the GP uses them
as a fixed-noise likelihood.

Pending trials: a suggestion stays pending until it is told or abandoned.
:meth:`Optimizer.drop_pending` removes pending trials older than a time to live (and the
oldest beyond a count), for callers such as the feedback learner whose suggestions may never
come back; removed trials leave the study, and trial ids are never reused.

Saved form: :meth:`Optimizer.to_dict` carries ``"version"`` (:data:`STUDY_VERSION`);
version 2 adds the Sobol engine's position, each trial's standard errors and metadata and
the next trial id. :meth:`Optimizer.from_dict` reads version 1 (no ``"version"`` key: the
engine starts at the beginning of its sequence) and 2, and refuses newer ones.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workbench.errors import ConflictError, InputError, NotFoundError
from workbench.metrics import counter, histogram
from workbench.optimize.models import MAX_ABS_OUTCOME, ModelState, configure_torch
from workbench.optimize.pareto import hypervolume, pareto_mask
from workbench.optimize.space import LinearConstraint, Param, SearchSpace
from workbench.optimize.strategies import (
    OutcomeConstraint,
    Strategy,
    StrategyInput,
    get_strategy,
)

__all__ = ["MAX_ABS_OUTCOME", "STUDY_VERSION", "Best", "Optimizer", "Trial"]

log = logging.getLogger(__name__)

_SUGGEST_SECONDS = histogram(
    "workbench_optimize_suggest_seconds",
    "Wall time of one ask/ask_batch call (model fit and acquisition included)",
    ["strategy"],
)
_TRIALS = counter("workbench_optimize_trials_total", "Trials told, by status", ["status"])

_MAX_SEED = 2**63 - 1

#: Version of the study form :meth:`Optimizer.to_dict` writes (see the module docstring).
STUDY_VERSION = 2
#: Share of ``time_limit_s`` given to the strategy; the rest is left for the bookkeeping
#: around it, so the whole call stays within the limit.
STRATEGY_SHARE = 0.8
#: Fewest feasible completed trials for a model-based recommendation (fewer: the best
#: observed one).
MIN_FOR_MODEL_BEST = 3

_DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


@dataclass(frozen=True)
class Trial:
    """One evaluated or pending configuration.

    Attributes:
        id: Trial number within the study (0, 1, ...).
        params: The configuration (parameter name -> value; inactive ones absent).
        status: ``"pending"``, ``"completed"``, ``"failed"`` or ``"abandoned"`` (a
            suggestion that will never be evaluated; it no longer counts as pending).
        outcomes: Outcome name -> value once completed.
        created_s: Wall-clock time of the suggestion or observation (Unix seconds).
        sem: Outcome name -> standard error of its value, for the outcomes told with one.
        metadata: How the suggestion was made: ``phase`` (``sobol``, ``model``,
            ``fallback``, ...), the ``reason`` of a fallback, ``retried`` when the model
            needed a second, more jittered attempt, ``truncated`` when the time bound cut it.
    """

    id: int
    params: dict[str, Any]
    status: str = "pending"
    outcomes: dict[str, float] | None = None
    created_s: float = 0.0
    sem: dict[str, float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "params": dict(self.params),
            "status": self.status,
            "outcomes": None if self.outcomes is None else dict(self.outcomes),
            "created_s": self.created_s,
            "sem": None if self.sem is None else dict(self.sem),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        sem = data.get("sem")
        return cls(
            id=int(data["id"]),
            params=dict(data["params"]),
            status=str(data["status"]),
            outcomes=None
            if data.get("outcomes") is None
            else {k: float(v) for k, v in data["outcomes"].items()},
            created_s=float(data.get("created_s", 0.0)),
            sem=None if sem is None else {k: float(v) for k, v in sem.items()},
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class Best:
    """The recommended trial; unpacks as ``params, value = opt.best()``.

    Attributes:
        params: Its configuration.
        value: Its observed objective value (the scalarised value with weights; the first
            objective otherwise).
        trial_id: Its trial id.
        outcomes: All its observed outcomes.
        posterior_mean: The GP posterior mean of that objective value there (``None`` when
            chosen without a model).
        basis: ``"posterior_mean"`` (chosen by the model) or ``"observed"`` (by the observed
            value: :meth:`Optimizer.best_observed`, or too few trials for a model).
        truncated: The time bound of :meth:`Optimizer.best` stopped the model fit, so this is
            the best observed trial instead of the model's choice.
    """

    params: dict[str, Any]
    value: float
    trial_id: int
    outcomes: dict[str, float]
    posterior_mean: float | None = None
    basis: str = "observed"
    truncated: bool = False

    def __iter__(self) -> Iterator[Any]:
        yield self.params
        yield self.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "value": self.value,
            "trial_id": self.trial_id,
            "outcomes": self.outcomes,
            "posterior_mean": self.posterior_mean,
            "basis": self.basis,
            "truncated": self.truncated,
        }


def _bounded(value: Any) -> float | None:
    """``value`` as a float when it is a finite number within :data:`MAX_ABS_OUTCOME`."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) and abs(x) <= MAX_ABS_OUTCOME else None


def _parse_outcome_constraints(
    raw: Mapping[str, Any] | Sequence[str] | None,
) -> list[tuple[str, str, float]]:
    out: list[tuple[str, str, float]] = []
    if not raw:
        return out
    items: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise InputError(
            f"outcome constraints must be a mapping or a list of 'name <= bound', got {raw!r}",
            details={"field": "outcome_constraints"},
        )
    else:
        items = []
        for text in raw:
            for op in ("<=", ">="):
                if isinstance(text, str) and op in text:
                    name, _, bound = text.partition(op)
                    items.append((name.strip(), (op, bound.strip())))
                    break
            else:
                raise InputError(
                    f"outcome constraint {text!r} must look like 'name <= bound'",
                    details={"field": "outcome_constraints"},
                )
    for name, spec in items:
        field = f"outcome_constraints.{name}"
        if not isinstance(name, str) or not name:
            raise InputError(
                f"outcome constraint names must be non-empty strings, got {name!r}",
                details={"field": "outcome_constraints"},
            )
        if not isinstance(spec, (tuple, list)) or len(spec) != 2 or spec[0] not in ("<=", ">="):
            raise InputError(
                f"outcome constraint for {name!r} must be ('<=' | '>=', bound), got {spec!r}",
                details={"field": field},
            )
        limit = _bounded(spec[1])
        if limit is None:
            raise InputError(
                f"outcome constraint for {name!r}: bound {spec[1]!r} must be a finite number "
                f"within +-{MAX_ABS_OUTCOME:g}",
                details={"field": field},
            )
        out.append((name, str(spec[0]), limit))
    return out


def _parse_ref_point(
    raw: Mapping[str, Any] | None, objectives: Mapping[str, str]
) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != set(objectives):
        names = sorted(raw) if isinstance(raw, Mapping) else raw
        raise InputError(
            f"ref_point must give a value for each objective {sorted(objectives)}, got {names}",
            details={"field": "ref_point"},
        )
    out = {}
    for k, v in raw.items():
        value = _bounded(v)
        if value is None:
            raise InputError(
                f"ref_point[{k!r}]={v!r} must be a finite number within +-{MAX_ABS_OUTCOME:g}",
                details={"field": f"ref_point.{k}"},
            )
        out[str(k)] = value
    return out


class Optimizer:
    """Ask/tell Bayesian optimisation over a search space.

    Args:
        space: Parameter name -> ``Real``/``Int``/``Categorical``/``Fixed``, or a
            :class:`SearchSpace`.
        objectives: Outcome name -> ``"minimize"`` or ``"maximize"``.
        strategy: A registered strategy name (``default``, ``qlognei``, ``thompson``,
            ``qlognehvi``, ``sobol``, ``random``) or a strategy object.
        seed: Seed of every random choice; the same seed and tells give the same asks.
        constraints: Linear constraints on parameters.
        outcome_constraints: ``{"latency_ms": ("<=", 2000)}`` or ``["latency_ms <= 2000"]``.
        weights: Objective name -> weight for a scalarised single objective (applied to the
            objectives signed so that larger is better).
        ref_point: Objective name -> hypervolume reference value (own units); inferred from
            the data when omitted.
        on_failure: ``"impute"`` (failed trials enter the model at the worst value seen) or
            ``"ignore"`` (they are only never suggested again).
        name: Study name (used by storage and the HTTP API).
        clock: Wall clock in Unix seconds for trial timestamps (injected by tests).
    """

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Param],
        objectives: Mapping[str, str] | None = None,
        *,
        strategy: str | Strategy = "default",
        seed: int = 0,
        constraints: Sequence[LinearConstraint] = (),
        outcome_constraints: Mapping[str, Any] | Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        ref_point: Mapping[str, float] | None = None,
        on_failure: str = "impute",
        name: str = "study",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.space = SearchSpace.coerce(space, constraints)
        objectives = dict(objectives or {"y": "minimize"})
        if not objectives:
            raise InputError("at least one objective is needed")
        self.objectives: dict[str, str] = {}
        for k, v in objectives.items():
            d = _DIRECTIONS.get(str(v).lower())
            if d is None:
                raise InputError(f"objective {k!r} direction {v!r} must be minimize or maximize")
            self.objectives[str(k)] = d
        self.outcome_constraints = _parse_outcome_constraints(outcome_constraints)
        self.weights = None if weights is None else {k: float(v) for k, v in weights.items()}
        if self.weights is not None and set(self.weights) != set(self.objectives):
            raise InputError(f"weights must name every objective: {sorted(self.objectives)}")
        self.ref_point = _parse_ref_point(ref_point, self.objectives)
        if on_failure not in ("impute", "ignore"):
            raise InputError(f"on_failure={on_failure!r} must be 'impute' or 'ignore'")
        self.on_failure = on_failure
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InputError(f"seed={seed!r} must be an integer", details={"field": "seed"})
        if not 0 <= seed <= _MAX_SEED:
            raise InputError(f"seed={seed} must be in [0, 2**63 - 1]", details={"field": "seed"})
        self.seed = int(seed)
        self.name = name
        if isinstance(strategy, str):
            self.strategy_name = strategy
            self.strategy: Strategy = get_strategy(
                strategy, n_objectives=len(self.objectives), weighted=self.weights is not None
            )
        else:
            self.strategy_name = getattr(strategy, "name", type(strategy).__name__)
            self.strategy = strategy
        self.clock = clock
        self.trials: list[Trial] = []
        self.model_state: ModelState | None = None
        self.n_asked = 0
        self.sobol_position = 0
        self.next_trial_id = 0
        self.last_info: dict[str, Any] = {}
        self._best_cache: tuple[tuple[Any, ...], Best] | None = None

    @property
    def sobol_seed(self) -> int:
        """Seed of the study's one Sobol engine (derived from :attr:`seed`)."""
        return int(np.random.SeedSequence([self.seed, 0x50B01]).generate_state(1)[0])

    def _new_id(self) -> int:
        tid = self.next_trial_id
        self.next_trial_id += 1
        return tid

    def _position(self, tid: int) -> int:
        """Index in :attr:`trials` of the trial ``tid`` (ids grow with the list, with gaps
        where trials were dropped)."""
        lo, hi = 0, len(self.trials)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.trials[mid].id < tid:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.trials) and self.trials[lo].id == tid:
            return lo
        raise NotFoundError(
            f"trial {tid} does not exist in study {self.name!r}", details={"trial_id": tid}
        )

    # ----- columns ---------------------------------------------------------------------------
    @property
    def outcome_names(self) -> list[str]:
        """Every outcome a completed trial must report (objectives, then constrained ones)."""
        names = list(self.objectives)
        for n, _, _ in self.outcome_constraints:
            if n not in names:
                names.append(n)
        return names

    def _sign(self, name: str) -> float:
        return -1.0 if self.objectives.get(name) == "minimize" else 1.0

    def _outcome_matrix(self, trials: Sequence[Trial]) -> np.ndarray:
        names = self.outcome_names
        rows = [[(t.outcomes or {})[n] for n in names] for t in trials]
        y: np.ndarray = np.asarray(rows, dtype=np.float64).reshape(len(trials), len(names))
        for j, n in enumerate(names):
            if n in self.objectives:
                y[:, j] *= self._sign(n)
        return y

    def _strategy_constraints(self) -> tuple[OutcomeConstraint, ...]:
        names = self.outcome_names
        out = []
        for n, op, bound in self.outcome_constraints:
            j = names.index(n)
            if self._sign(n) < 0:  # the column holds -value
                op, bound = ("<=" if op == ">=" else ">="), -bound
            out.append(OutcomeConstraint(j, op, bound))
        return tuple(out)

    # ----- ask ---------------------------------------------------------------------------------
    def _strategy_input(self, deadline: float | None = None) -> StrategyInput:
        done = [t for t in self.trials if t.status == "completed"]
        failed = [t for t in self.trials if t.status == "failed"]
        pending = [t for t in self.trials if t.status == "pending"]
        enc = self.space.encode_many
        x = enc([t.params for t in done])
        y = self._outcome_matrix(done)
        yvar = self._variance_matrix(done)
        if failed and done and self.on_failure == "impute":
            worst = y.min(axis=0)
            for c in self._strategy_constraints():  # the violating side of each constraint
                col = y[:, c.column]
                worst[c.column] = col.max() if c.op == "<=" else col.min()
            x = np.vstack([x, enc([t.params for t in failed])])
            y = np.vstack([y, np.tile(worst, (len(failed), 1))])
            # an imputed value is a guess, as uncertain as the noisiest measurement
            noisiest = np.max(yvar, axis=0) if len(yvar) else np.full(y.shape[1], np.nan)
            yvar = np.vstack([yvar, np.tile(noisiest, (len(failed), 1))])
        k = len(self.objectives)
        weights = None
        if self.weights is not None:
            weights = np.array([self.weights[n] for n in self.objectives])
        ref = None
        if self.ref_point is not None:
            ref = np.array([self.ref_point[n] * self._sign(n) for n in self.objectives])
        avoid_trials = [t.params for t in self.trials if t.status != "abandoned"]
        seed = int(np.random.SeedSequence([self.seed, self.n_asked]).generate_state(1)[0] >> 1)
        return StrategyInput(
            space=self.space,
            x=x,
            y=y,
            n_objectives=k,
            constraints=self._strategy_constraints(),
            weights=weights,
            ref_point=ref,
            pending=enc([t.params for t in pending]),
            avoid=enc(avoid_trials),
            seed=seed,
            index=self.n_asked,
            model_state=self.model_state,
            deadline=deadline,
            sobol_seed=self.sobol_seed,
            sobol_position=self.sobol_position,
            yvar=yvar if np.all(np.isfinite(yvar)) else None,
        )

    def _variance_matrix(self, trials: Sequence[Trial]) -> np.ndarray:
        """Known noise variances (``sem**2``) in the layout of :meth:`_outcome_matrix`
        (``NaN`` where no standard error was told)."""
        names = self.outcome_names
        rows = [[(t.sem or {}).get(n, math.nan) ** 2 for n in names] for t in trials]
        return np.asarray(rows, dtype=np.float64).reshape(len(trials), len(names))

    def ask(self, *, time_limit_s: float | None = None) -> Trial:
        """Suggest one configuration (registered as a pending trial); see :meth:`ask_batch`."""
        return self.ask_batch(1, time_limit_s=time_limit_s)[0]

    def ask_batch(self, n: int, *, time_limit_s: float | None = None) -> list[Trial]:
        """Suggest ``n`` configurations at once (for parallel evaluation); each later one
        accounts for the earlier ones as pending.

        Args:
            n: Number of configurations.
            time_limit_s: Wall-time bound of the suggestion (seconds, ``None``: unbounded).
                When it is reached the strategy returns the best candidates found so far
                and ``last_info["truncated"]`` is ``True``; it is never an error.
        """
        if n < 1:
            raise InputError(f"ask_batch needs n >= 1, got {n}", details={"field": "n"})
        if time_limit_s is not None and not (
            isinstance(time_limit_s, (int, float)) and 0 < time_limit_s < math.inf
        ):
            raise InputError(
                f"time_limit_s={time_limit_s!r} must be a positive number of seconds or None",
                details={"field": "time_limit_s"},
            )
        start = time.perf_counter()
        deadline = None
        if time_limit_s is not None:
            deadline = start + STRATEGY_SHARE * float(time_limit_s)
        inp = self._strategy_input(deadline)
        suggestion = self.strategy.suggest(inp, n)
        if suggestion.model_state is not None:
            self.model_state = suggestion.model_state
        if suggestion.sobol_position is not None:
            self.sobol_position = suggestion.sobol_position
        self.n_asked += n
        now = self.clock()
        info = suggestion.info
        meta: dict[str, Any] = {
            k: info[k] for k in ("phase", "reason", "retried", "acquisition") if k in info
        }
        if info.get("truncated"):
            meta["truncated"] = True
        if info.get("phase") == "fallback":
            log.warning(
                "study %r: suggestion %d is random (%s)", self.name, self.n_asked, info["reason"]
            )
        out = []
        for row in suggestion.x:
            params = self.space.decode(row)
            trial = Trial(self._new_id(), params, "pending", None, now, metadata=dict(meta))
            self.trials.append(trial)
            out.append(trial)
        self._best_cache = None
        elapsed = time.perf_counter() - start
        self.last_info = {"truncated": False, **suggestion.info, "total_s": elapsed}
        _SUGGEST_SECONDS.labels(self.strategy_name).observe(elapsed)
        return out

    # ----- tell --------------------------------------------------------------------------------
    def _split_sem(
        self, outcomes: Mapping[str, Any] | None, sem: Mapping[str, Any] | None
    ) -> tuple[Mapping[str, Any] | None, dict[str, float] | None]:
        """Outcome values and standard errors from ``outcomes`` (values, or Ax-style
        ``(mean, sem)`` pairs) and ``sem``; checks every standard error."""
        errors: dict[str, Any] = dict(sem or {})
        values: dict[str, Any] | None = None
        if outcomes is not None:
            values = {}
            for k, v in outcomes.items():
                if isinstance(v, (tuple, list)) and len(v) == 2:
                    values[k], errors[k] = v[0], v[1]
                else:
                    values[k] = v
        out: dict[str, float] = {}
        for k, v in errors.items():
            if v is None:
                continue
            if values is None or k not in values:
                raise InputError(
                    f"sem[{k!r}] is given for an outcome that is not told",
                    details={"field": f"sem.{k}"},
                )
            value = _bounded(v)
            if value is None or value < 0:
                raise InputError(
                    f"sem[{k!r}]={v!r} must be a finite number >= 0 (a standard error)",
                    details={"field": f"sem.{k}"},
                )
            out[str(k)] = value
        return values, out or None

    def _check_outcomes(self, outcomes: Mapping[str, Any] | None) -> dict[str, float]:
        if outcomes is None:
            raise InputError(f"outcomes are required: {self.outcome_names}")
        out: dict[str, float] = {}
        for k, v in outcomes.items():
            try:
                out[str(k)] = float(v)
            except (TypeError, ValueError, OverflowError):
                raise InputError(
                    f"outcome {k!r}={v!r} is not a number", details={"field": k}
                ) from None
        missing = [n for n in self.outcome_names if n not in out]
        if missing:
            raise InputError(
                f"outcome(s) {missing} missing; this study needs {self.outcome_names}",
                details={"field": missing[0]},
            )
        bad = [n for n, v in out.items() if not math.isfinite(v)]
        if bad:
            raise InputError(
                f"outcome(s) {bad} are not finite; tell failed=True instead",
                details={"field": bad[0]},
            )
        huge = [n for n, v in out.items() if abs(v) > MAX_ABS_OUTCOME]
        if huge:
            raise InputError(
                f"outcome {huge[0]!r}={out[huge[0]]!r} is outside +-{MAX_ABS_OUTCOME:g}; "
                "report it in other units, or tell failed=True",
                details={"field": huge[0]},
            )
        return out

    def tell(
        self,
        trial: Trial | int | Mapping[str, Any],
        outcomes: Mapping[str, Any] | None = None,
        *,
        failed: bool = False,
        sem: Mapping[str, float] | None = None,
    ) -> Trial:
        """Report a trial's outcomes, or that it failed.

        Args:
            trial: A trial from :meth:`ask`, its id, or a params dict observed elsewhere
                (recorded as a new trial).
            outcomes: Outcome name -> value (every objective and constrained outcome), or
                -> ``(value, sem)`` as Ax takes it.
            failed: The evaluation failed (no outcomes needed).
            sem: Outcome name -> standard error of its value (>= 0), for outcomes whose
                noise is known; the model uses them once every modelled value has one.

        Returns:
            The updated trial. Telling a finished trial the same result again is a no-op;
            a different result raises :class:`~workbench.errors.ConflictError`.
        """
        status = "failed" if failed else "completed"
        raw, errors = self._split_sem(outcomes, sem)
        values = None if failed else self._check_outcomes(raw)
        if failed:
            errors = None
        if isinstance(trial, Mapping):
            params = self.space.validate(trial)
            new = Trial(self._new_id(), params, status, values, self.clock(), sem=errors)
            self.trials.append(new)
            self._best_cache = None
            _TRIALS.labels(status).inc()
            return new
        if isinstance(trial, Trial):
            tid = trial.id
        elif isinstance(trial, (int, np.integer)) and not isinstance(trial, bool):
            tid = int(trial)
        else:
            raise InputError(
                f"tell needs a trial, a trial id or a params mapping, got {trial!r}",
                details={"field": "trial_id"},
            )
        pos = self._position(tid)
        current = self.trials[pos]
        if current.status != "pending":
            if current.status == status and current.outcomes == values and current.sem == errors:
                return current
            raise ConflictError(
                f"trial {tid} was already told ({current.status}); results are final",
                details={"trial_id": tid},
            )
        updated = replace(current, status=status, outcomes=values, sem=errors)
        self.trials[pos] = updated
        self._best_cache = None
        _TRIALS.labels(status).inc()
        return updated

    def abandon(self, trial: Trial | int) -> Trial:
        """Withdraw a pending suggestion that will not be evaluated (it stops being a
        fantasy for later suggestions and may be suggested again)."""
        tid = trial if isinstance(trial, int) else trial.id
        pos = self._position(tid)
        current = self.trials[pos]
        if current.status != "pending":
            raise ConflictError(f"trial {tid} is {current.status}, not pending")
        self.trials[pos] = replace(current, status="abandoned")
        return self.trials[pos]

    def drop_pending(
        self,
        *,
        older_than_s: float | None = None,
        keep: int | None = None,
        abandoned: bool = False,
        now: float | None = None,
    ) -> list[Trial]:
        """Remove pending trials from the study: those created more than ``older_than_s``
        ago, then the oldest beyond the newest ``keep``; with ``abandoned`` also every
        abandoned trial. Their ids are never reused. Returns the removed trials.

        For callers whose suggestions may never be told (the feedback learner): a pending
        trial counts as a fantasy in every later suggestion and as a point to avoid, so
        without expiry they accumulate without bound.
        """
        now = self.clock() if now is None else now
        drop: set[int] = set()
        pending = [t for t in self.trials if t.status == "pending"]
        if older_than_s is not None:
            drop.update(t.id for t in pending if now - t.created_s > older_than_s)
        if keep is not None:
            alive = [t for t in pending if t.id not in drop]
            drop.update(t.id for t in alive[: max(0, len(alive) - keep)])
        if abandoned:
            drop.update(t.id for t in self.trials if t.status == "abandoned")
        removed = [t for t in self.trials if t.id in drop]
        if removed:
            self.trials = [t for t in self.trials if t.id not in drop]
        return removed

    # ----- results ----------------------------------------------------------------------------
    @property
    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.status == "completed"]

    @property
    def pending(self) -> list[Trial]:
        return [t for t in self.trials if t.status == "pending"]

    def _feasible(self, trials: Sequence[Trial]) -> list[Trial]:
        out = []
        for t in trials:
            assert t.outcomes is not None
            ok = True
            for n, op, b in self.outcome_constraints:
                v = t.outcomes[n]
                ok &= v <= b if op == "<=" else v >= b
            if ok:
                out.append(t)
        return out

    def _scalar(self, t: Trial) -> float:
        """The value ``best`` ranks by, in the objective's own direction."""
        assert t.outcomes is not None
        if self.weights is not None:
            return sum(self.weights[n] * self._sign(n) * t.outcomes[n] for n in self.objectives)
        return t.outcomes[next(iter(self.objectives))]

    def best_observed(self) -> Best:
        """The feasible completed trial with the best observed value (by the first
        objective, or the weighted sum); biased upwards under noise, see :meth:`best`.

        Raises:
            NotFoundError: no feasible trial was completed yet.
        """
        feasible = self._feasible(self.completed)
        if not feasible:
            raise NotFoundError(f"study {self.name!r} has no feasible completed trial yet")
        top = max(feasible, key=self._ranked)
        assert top.outcomes is not None
        return Best(dict(top.params), self._scalar(top), top.id, dict(top.outcomes))

    def _ranked(self, t: Trial) -> float:
        """``_scalar`` signed so that larger is better."""
        if self.weights is not None:
            return self._scalar(t)
        return self._sign(next(iter(self.objectives))) * self._scalar(t)

    def best(self, *, time_limit_s: float | None = None) -> Best:
        """The recommended configuration: the feasible completed trial with the best GP
        posterior mean of the objective (the first objective, or the weighted sum).

        Under noise the highest observation is mostly the luckiest draw; the posterior mean
        pools every observation, so it ranks configurations by what they would give again.
        With fewer than :data:`MIN_FOR_MODEL_BEST` feasible trials, or when the model cannot
        be fitted, it is :meth:`best_observed` (``basis == "observed"``). The GP is the one
        the strategy fits (same kernel and settings, warm-started from the study's state,
        which it does not change), and the answer is cached until the study changes.

        Args:
            time_limit_s: Wall-time bound of the model fit (seconds; ``None``: unbounded,
                ``<= 0``: no time at all). When the bound stops the fit the answer is
                :meth:`best_observed` with ``truncated=True`` (not cached: a later call with
                more time gets the model's choice).

        Raises:
            NotFoundError: no feasible trial was completed yet.
        """
        feasible = self._feasible(self.completed)
        if not feasible:
            raise NotFoundError(f"study {self.name!r} has no feasible completed trial yet")
        key = tuple((t.id, t.status) for t in self.trials if t.status != "pending")
        if self._best_cache is not None and self._best_cache[0] == key:
            return self._best_cache[1]
        answer = self.best_observed()
        truncated = False
        if len(feasible) >= MIN_FOR_MODEL_BEST:
            if time_limit_s is not None and time_limit_s <= 0:
                means, truncated = None, True
            else:
                means, truncated = self._posterior_objective(feasible, time_limit_s)
            if means is not None:
                i = int(np.argmax(means))
                top = feasible[i]
                assert top.outcomes is not None
                sign = 1.0 if self.weights is not None else self._sign(next(iter(self.objectives)))
                answer = Best(
                    dict(top.params),
                    self._scalar(top),
                    top.id,
                    dict(top.outcomes),
                    posterior_mean=float(sign * means[i]),
                    basis="posterior_mean",
                )
        if truncated:
            return replace(answer, truncated=True)
        self._best_cache = (key, answer)
        return answer

    def _posterior_objective(
        self, trials: Sequence[Trial], timeout_s: float | None = None
    ) -> tuple[np.ndarray | None, bool]:
        """GP posterior mean of the (larger-is-better) objective at ``trials``, or ``None``
        when no model can be fitted (torch missing, numbers it cannot model) or ``timeout_s``
        stopped the fit; and whether it did."""
        try:
            from workbench.optimize.models import FitConfig, fit_gp, resolve_kernel
            from workbench.optimize.strategies import _NUMERICAL_ERRORS
        except ImportError:  # pragma: no cover - torch is an optional dependency
            return None, False
        inp = self._strategy_input()
        if len(inp.x) < 2 or not np.all(np.abs(inp.y) <= MAX_ABS_OUTCOME):
            return None, False
        config = getattr(self.strategy, "fit", None)
        config = config if isinstance(config, FitConfig) else FitConfig()
        config = resolve_kernel(config, self.space.is_mixed)
        torch = configure_torch(getattr(self.strategy, "num_threads", 1))
        try:
            model, _state, info = fit_gp(
                inp.x, inp.y, self.model_state, config, timeout_s=timeout_s, yvar=inp.yvar
            )
            if info.truncated:
                return None, True
            with torch.no_grad():
                tx = torch.as_tensor(self.space.encode_many([t.params for t in trials]))
                mean = model.posterior(tx).mean.detach().numpy().reshape(len(trials), -1)
        except _NUMERICAL_ERRORS() as exc:
            log.warning(
                "study %r: no model for best(): %r; using the best observed", self.name, exc
            )
            return None, False
        k = len(self.objectives)
        if self.weights is not None:
            w = np.array([self.weights[n] for n in self.objectives])
            out: np.ndarray = mean[:, :k] @ w
        else:
            out = mean[:, 0]
        return (out if np.all(np.isfinite(out)) else None), False

    def pareto_front(self) -> list[Trial]:
        """Feasible completed trials that no other one dominates (over the objectives)."""
        feasible = self._feasible(self.completed)
        if not feasible:
            return []
        y = self._outcome_matrix(feasible)[:, : len(self.objectives)]
        return [t for t, keep in zip(feasible, pareto_mask(y), strict=True) if keep]

    def hypervolume(self, ref_point: Mapping[str, float] | None = None) -> float:
        """Hypervolume of the feasible completed trials w.r.t. ``ref_point`` (own units)."""
        ref = ref_point or self.ref_point
        if ref is None:
            raise InputError("a reference point is needed (pass ref_point)")
        feasible = self._feasible(self.completed)
        y = (
            self._outcome_matrix(feasible)[:, : len(self.objectives)]
            if feasible
            else np.zeros((0, len(self.objectives)))
        )
        r = np.array([ref[n] * self._sign(n) for n in self.objectives])
        return hypervolume(y, r)

    def history(self) -> list[dict[str, Any]]:
        """Every trial as a dict (JSON-ready)."""
        return [t.to_dict() for t in self.trials]

    # ----- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The whole study as JSON-ready data (see :mod:`workbench.optimize.storage`)."""
        return {
            "version": STUDY_VERSION,
            "name": self.name,
            "space": self.space.to_dict(),
            "objectives": dict(self.objectives),
            "strategy": self.strategy_name,
            "seed": self.seed,
            "outcome_constraints": [list(c) for c in self.outcome_constraints],
            "weights": self.weights,
            "ref_point": self.ref_point,
            "on_failure": self.on_failure,
            "n_asked": self.n_asked,
            "sobol_position": self.sobol_position,
            "next_trial_id": self.next_trial_id,
            "trials": [t.to_dict() for t in self.trials],
            "model_state": None if self.model_state is None else self.model_state.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optimizer:
        """Rebuild a study saved with :meth:`to_dict` (version 1 or 2, see the module
        docstring).

        Raises:
            InputError: malformed data, or a version newer than :data:`STUDY_VERSION`.
        """
        version = data.get("version", 1) if isinstance(data, Mapping) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InputError(f"malformed study data: version {version!r}")
        if version > STUDY_VERSION:
            raise InputError(
                f"the study has version {version}; this workbench reads versions 1 to "
                f"{STUDY_VERSION}",
                details={"version": version},
            )
        try:
            opt = cls(
                SearchSpace.from_dict(data["space"]),
                data["objectives"],
                strategy=data.get("strategy", "default"),
                seed=int(data.get("seed", 0)),
                outcome_constraints={
                    n: (op, b) for n, op, b in data.get("outcome_constraints") or []
                },
                weights=data.get("weights"),
                ref_point=data.get("ref_point"),
                on_failure=data.get("on_failure", "impute"),
                name=data.get("name", "study"),
            )
            opt.trials = [opt._usable(Trial.from_dict(t)) for t in data.get("trials", [])]
            ids = [t.id for t in opt.trials]
            if ids != sorted(set(ids)):
                raise InputError("malformed study data: trial ids must be unique and increasing")
            opt.n_asked = int(data.get("n_asked", len(opt.trials)))
            # version 1 had no Sobol engine per study: it starts at the sequence's beginning
            opt.sobol_position = int(data.get("sobol_position", 0)) if version >= 2 else 0
            opt.next_trial_id = max(int(data.get("next_trial_id", 0)), ids[-1] + 1 if ids else 0)
            opt.model_state = ModelState.from_dict(data.get("model_state"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"malformed study data: {exc!r}") from None
        return opt

    def _usable(self, trial: Trial) -> Trial:
        """``trial``, or the same trial marked failed when an older version accepted outcome
        values that :meth:`tell` now refuses (non-finite, or beyond MAX_ABS_OUTCOME)."""
        if trial.status != "completed" or trial.outcomes is None:
            return trial
        bad = [k for k, v in trial.outcomes.items() if _bounded(v) is None]
        if not bad:
            return trial
        log.warning(
            "study %r: trial %d has outcome(s) %s outside +-%g; it is kept as failed",
            self.name,
            trial.id,
            bad,
            MAX_ABS_OUTCOME,
        )
        return replace(trial, status="failed")

    def save(self, path: Any) -> None:
        """Write the study to a JSON file (atomic replace)."""
        from workbench.optimize.storage import save_file

        save_file(self, path)

    @classmethod
    def load(cls, path: Any) -> Optimizer:
        """Read a study written by :meth:`save`."""
        from workbench.optimize.storage import load_file

        return load_file(path)

    def __repr__(self) -> str:
        return (
            f"Optimizer(name={self.name!r}, strategy={self.strategy_name!r}, "
            f"trials={len(self.trials)}, objectives={self.objectives})"
        )
