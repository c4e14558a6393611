"""Learning LLM parameters from execution records, one optimizer per task type.

:class:`FeedbackLearner` turns the platform's execution records (``task_type``,
``parameters``, ``latency_ms``, ``success``, ``quality``, ``cost``) into observations of a
per-task :class:`~workbench.optimize.optimizer.Optimizer` over
:func:`~workbench.optimize.profiles.llm_space`, maximising

    score = quality - latency_weight * latency_ms / 1000 - cost_weight * cost

(the platform's reward ``quality * max(0, 1 - latency/10 s)`` multiplies the terms, which
makes a failed-fast call look as good as a slow perfect one; an additive score keeps the
trade-off explicit and tunable). Failed executions are told as failed trials. A task with no
observation yet gets its rule-based profile (the cold start).

Given a study store (:class:`~workbench.optimize.storage.FileStudyStore` or
:class:`~workbench.optimize.storage.RedisStudyStore`), the learner loads every stored
``parameters-<task_type>`` study when it is created and saves each task it touched after every
:meth:`FeedbackLearner.observe`, so what it learnt survives a restart. Task types are names
(letters, digits, ``_ . -``, at most 64) and there are at most ``max_task_types`` of them: each
holds a model, and a client must not be able to grow the service without bound.

:func:`convergence_report` summarises a single-objective study: the expected improvement
left (the maximum of analytic EI over a candidate pool), the posterior of the best observed
point, and a stopping recommendation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench.errors import CapacityError, InputError, NotFoundError
from workbench.optimize.optimizer import Optimizer
from workbench.optimize.profiles import llm_space, profile_params
from workbench.optimize.space import Int, Real

__all__ = ["ConvergenceReport", "FeedbackLearner", "convergence_report"]

_ALIASES = {
    "maxTokens": "max_tokens",
    "topP": "top_p",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
_REQUIRED = ("task_type", "parameters", "latency_ms", "success", "quality", "cost")
STUDY_PREFIX = "parameters-"
TASK_TYPE_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_TASK_TYPE = re.compile(TASK_TYPE_PATTERN)


@dataclass(frozen=True)
class ConvergenceReport:
    """Where a study stands.

    Attributes:
        n_observations: Completed trials.
        best_value: Best observed objective value.
        best_params: Its configuration.
        posterior_mean: GP posterior mean at the best point (objective units).
        posterior_std: GP posterior standard deviation there.
        expected_improvement: Largest expected improvement over the best found in a candidate
            pool (objective units); ``None`` before a model can be fitted.
        status: ``exploring``, ``converging`` or ``converged``.
        recommend_stop: Whether more evaluations are unlikely to pay off.
    """

    n_observations: int
    best_value: float | None
    best_params: dict[str, Any] | None
    posterior_mean: float | None
    posterior_std: float | None
    expected_improvement: float | None
    status: str
    recommend_stop: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def convergence_report(opt: Optimizer, *, tolerance: float = 0.01) -> ConvergenceReport:
    """Convergence of a single-objective study.

    ``converged`` when the expected improvement left is below ``tolerance`` times the range of
    observed values, ``converging`` below five times that, else ``exploring`` (also with
    fewer than 5 observations).
    """
    done = opt.completed
    if len(opt.objectives) != 1 or opt.weights is not None:
        raise InputError("convergence_report needs a single-objective study")
    if not done:
        return ConvergenceReport(0, None, None, None, None, None, "exploring", False)
    best = opt.best()
    if len(done) < 5:
        return ConvergenceReport(
            len(done), best.value, best.params, None, None, None, "exploring", False
        )
    from workbench.optimize.acquisition import candidate_pool
    from workbench.optimize.models import configure_torch, fit_gp

    torch = configure_torch(1)
    from botorch.acquisition.analytic import LogExpectedImprovement

    name = next(iter(opt.objectives))
    sign = -1.0 if opt.objectives[name] == "minimize" else 1.0
    x = opt.space.encode_many([t.params for t in done])
    y = np.array([[sign * t.outcomes[name]] for t in done])  # type: ignore[index]
    model, _state, _ = fit_gp(x, y, opt.model_state)
    xb = torch.as_tensor(opt.space.encode(opt.trials[best.trial_id].params))[None]
    with torch.no_grad():
        post = model.posterior(xb)
        mean = float(post.mean.reshape(-1)[0]) * sign
        std = float(post.variance.clamp_min(0).sqrt().reshape(-1)[0])
        pool, _ = candidate_pool(opt.space, opt.seed, 512, x[np.argsort(-y[:, 0])[:4]], 256)
        ei = LogExpectedImprovement(model, best_f=float(y.max()))
        ei_max = float(ei(torch.as_tensor(pool).unsqueeze(1)).max().exp())
    span = float(np.ptp(y)) or 1.0
    if ei_max < tolerance * span:
        status = "converged"
    elif ei_max < 5 * tolerance * span:
        status = "converging"
    else:
        status = "exploring"
    return ConvergenceReport(
        len(done), best.value, best.params, mean, std, ei_max, status, status == "converged"
    )


class FeedbackLearner:
    """Per-task-type optimizers fed by execution records.

    Args:
        seed: Seed of every per-task optimizer.
        latency_weight: Score lost per second of latency.
        cost_weight: Score lost per unit of cost.
        strategy: Strategy of the per-task optimizers; ``"default"`` is qLogNEI after 5 Sobol
            points (the rule-based profile is the first observation, so a short space-filling
            warm-up suffices).
        store: Where the per-task studies persist (``None``: in memory only). Stored studies
            are loaded now; a study that cannot be read raises, rather than being dropped.
        max_task_types: Most task types held at once.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        latency_weight: float = 0.05,
        cost_weight: float = 1.0,
        strategy: str = "default",
        store: Any = None,
        max_task_types: int = 256,
    ) -> None:
        self.seed = seed
        self.latency_weight = float(latency_weight)
        self.cost_weight = float(cost_weight)
        self.strategy = strategy
        self.store = store
        self.max_task_types = int(max_task_types)
        self.optimizers: dict[str, Optimizer] = {}
        if store is not None:
            for name in store.names():
                if name.startswith(STUDY_PREFIX):
                    self.optimizers[name[len(STUDY_PREFIX) :]] = store.load(name)

    @staticmethod
    def check_task_type(task_type: str) -> str:
        if not isinstance(task_type, str) or not _TASK_TYPE.match(task_type):
            raise InputError(
                f"task_type {task_type!r} must be 1-64 letters, digits, '_', '.' or '-'",
                details={"field": "task_type"},
            )
        return task_type

    def optimizer(self, task_type: str) -> Optimizer:
        """The task's optimizer (created on first use).

        Raises:
            InputError: ``task_type`` is not a valid name.
            CapacityError: ``max_task_types`` task types are held already.
        """
        if task_type not in self.optimizers:
            self.check_task_type(task_type)
            if len(self.optimizers) >= self.max_task_types:
                raise CapacityError(
                    f"the learner already holds {len(self.optimizers)} task types "
                    f"(max_task_types={self.max_task_types}); reuse an existing task type",
                    details={"field": "task_type"},
                )
            strategy: Any = self.strategy
            if strategy == "default":
                from workbench.optimize.strategies import QLogNEI

                strategy = QLogNEI(n_init=5)
            self.optimizers[task_type] = Optimizer(
                llm_space(task_type),
                {"score": "maximize"},
                strategy=strategy,
                seed=self.seed,
                name=f"{STUDY_PREFIX}{task_type}",
            )
        return self.optimizers[task_type]

    def score(self, quality: float, latency_ms: float, cost: float) -> float:
        return quality - self.latency_weight * latency_ms / 1000.0 - self.cost_weight * cost

    def _params(self, task_type: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        space = llm_space(task_type)
        out = profile_params(task_type)
        for k, v in raw.items():
            key = _ALIASES.get(k, k)
            p = space.params.get(key)
            if p is None or v is None:
                continue  # parameters outside the searched space (prompts, stop words)
            if isinstance(p, (Real, Int)):
                try:
                    value = float(v)
                except (TypeError, ValueError):
                    value = math.nan
                if not math.isfinite(value):
                    raise InputError(
                        f"parameter {k!r}={v!r} must be a finite number",
                        details={"field": f"parameters.{k}"},
                    )
                value = min(max(value, p.low), p.high)
                out[key] = round(value) if isinstance(p, Int) else value
        return out

    def observe(self, records: Any) -> dict[str, int]:
        """Tell every record to its task's optimizer.

        Args:
            records: A pandas DataFrame (or an iterable of mappings) with the columns
                ``task_type``, ``parameters`` (a dict; camelCase or snake_case keys; values
                outside the space are clipped), ``latency_ms``, ``success``, ``quality``,
                ``cost``.

        Returns:
            Task type -> number of records told.

        Raises:
            InputError: a record lacks a column or holds a bad value (its index and field are
                named); nothing of the batch is told then.
            CapacityError: the batch would exceed ``max_task_types``.
        """
        rows: Iterable[Mapping[str, Any]]
        if hasattr(records, "to_dict") and hasattr(records, "columns"):
            missing = [c for c in _REQUIRED if c not in records.columns]
            if missing:
                raise InputError(
                    f"execution records lack column(s) {missing}", details={"field": missing[0]}
                )
            rows = records.to_dict("records")
        else:
            rows = list(records)
        # Validate and convert the whole batch first: a bad record leaves nothing half-told.
        prepared: list[tuple[str, dict[str, Any], float | None]] = []
        for i, row in enumerate(rows):
            missing = [c for c in _REQUIRED if c not in row]
            if missing:
                raise InputError(f"record {i} lacks {missing}", details={"field": missing[0]})
            task = self.check_task_type(row["task_type"])
            raw = row["parameters"] or {}
            if not isinstance(raw, Mapping):
                raise InputError(
                    f"record {i}: parameters must be a mapping, not {raw!r}",
                    details={"field": "parameters"},
                )
            quality = row["quality"]
            ok = (
                bool(row["success"])
                and quality is not None
                and not (isinstance(quality, float) and math.isnan(quality))
            )
            value = None
            if ok:
                try:
                    value = self.score(float(quality), float(row["latency_ms"]), float(row["cost"]))
                except (TypeError, ValueError) as exc:
                    raise InputError(
                        f"record {i}: quality, latency_ms and cost must be numbers",
                        details={"field": "quality"},
                    ) from exc
                if not math.isfinite(value):
                    raise InputError(
                        f"record {i}: quality, latency_ms and cost must be finite",
                        details={"field": "quality"},
                    )
            prepared.append((task, self._params(task, dict(raw)), value))
        new_tasks = {task for task, _, _ in prepared if task not in self.optimizers}
        if len(self.optimizers) + len(new_tasks) > self.max_task_types:
            raise CapacityError(
                f"the batch adds {len(new_tasks)} task types to the {len(self.optimizers)} held "
                f"(max_task_types={self.max_task_types})",
                details={"field": "task_type"},
            )
        counts: dict[str, int] = {}
        for task, params, value in prepared:
            opt = self.optimizer(task)
            if value is not None:
                opt.tell(params, {"score": value})
            else:
                opt.tell(params, failed=True)
            counts[task] = counts.get(task, 0) + 1
        if self.store is not None:
            for task in counts:
                self.store.save(self.optimizers[task])
        return counts

    def suggest(self, task_type: str) -> dict[str, Any]:
        """Parameters to use next for a task: its profile until it has an observation, then
        the optimizer's suggestion (not kept as pending: the outcome comes back as a record)."""
        opt = self.optimizer(task_type)
        if not opt.completed:
            return profile_params(task_type)
        trial = opt.ask()
        opt.abandon(trial)
        return dict(trial.params)

    def best(self, task_type: str) -> dict[str, Any]:
        """The best observed parameters of a task (its profile before any observation)."""
        opt = self.optimizers.get(task_type)
        try:
            return dict(opt.best().params) if opt else profile_params(task_type)
        except NotFoundError:
            return profile_params(task_type)

    def report(self, task_type: str) -> ConvergenceReport:
        """The task's convergence report."""
        return convergence_report(self.optimizer(task_type))
