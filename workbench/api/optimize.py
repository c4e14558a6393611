"""HTTP routes of the parameter optimizer.

- ``/api/v1/parameters``: the platform's parameter-service contract (the Rust service's raw
  shapes, no envelope): ``POST`` suggests parameters for a request, ``POST /feedback``
  learns from executions, ``GET /analytics`` summarises every task, ``GET /health``.
- ``/api/v1/optimize/{study}``: generic ask/tell studies (enveloped): ``POST`` creates a
  study from a space definition, ``POST .../ask``, ``POST .../tell``, ``GET .../best``,
  ``GET .../pareto``.

The domain service (:class:`~workbench.optimize.service.OptimizeService`) holds the studies
and the learner; model work runs in a worker thread under its lock, so the event loop keeps
answering ``/health`` while a GP is fitted.

Studies persist after every change, and so does what ``/api/v1/parameters/feedback`` learnt
(each task type is the study ``parameters-<task_type>``, readable through the study routes;
that prefix is reserved), so a restarted service resumes them where they were (and proposes
the same next point). ``[optimize] store`` (``WORKBENCH_OPTIMIZE__STORE``)
chooses where (:mod:`workbench.optimize.service`): ``"file"`` (default), ``"redis"`` or
``"memory"``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import Field

from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.config import Settings
from workbench.errors import InputError
from workbench.optimize.feedback import TASK_TYPE_PATTERN
from workbench.optimize.service import OptimizeConfig, OptimizeService

__all__ = ["SERVICE", "router"]

_Model = WireModel  # the request schemas below share the one wire base


class UserPreferences(_Model):
    priority: str = "balanced"
    quality_threshold: float | None = None
    max_latency_ms: float | None = None
    max_tokens: int | None = None
    preferred_style: str | None = None


class ParameterConstraints(_Model):
    temperature_range: tuple[float, float] = (0.0, 2.0)
    top_p_range: tuple[float, float] = (0.0, 1.0)
    max_tokens_limit: int = 4096
    presence_penalty_range: tuple[float, float] = (-2.0, 2.0)
    frequency_penalty_range: tuple[float, float] = (-2.0, 2.0)


class ParameterRequest(_Model):
    id: str | None = None
    model: str | None = None
    prompt: str = ""
    task_type: str = Field(default="casual_chat", pattern=TASK_TYPE_PATTERN)
    context: dict[str, Any] | None = None
    user_preferences: UserPreferences = Field(default_factory=UserPreferences)
    constraints: ParameterConstraints = Field(default_factory=ParameterConstraints)
    metadata: dict[str, Any] | None = None


class Feedback(_Model):
    task_type: str = Field(pattern=TASK_TYPE_PATTERN)
    parameters: dict[str, Any]
    latency_ms: float = Field(ge=0)
    success: bool = True
    quality: float | None = Field(default=None, ge=0, le=1)
    cost: float = Field(default=0.0, ge=0)


class FeedbackBatch(_Model):
    executions: list[Feedback] = Field(min_length=1, max_length=1000)


class StudyCreate(_Model):
    space: dict[str, dict[str, Any]]
    objectives: dict[str, str] = Field(default_factory=lambda: {"y": "minimize"})
    strategy: str = "default"
    seed: int = 0
    outcome_constraints: dict[str, tuple[str, float]] | None = None
    ref_point: dict[str, float] | None = None


class AskBody(_Model):
    n: int = Field(default=1, ge=1, le=64)


class TellBody(_Model):
    trial_id: int | None = None
    params: dict[str, Any] | None = None
    outcomes: dict[str, float] | None = None
    failed: bool = False


def _build(config: OptimizeConfig, settings: Settings) -> OptimizeService:
    return OptimizeService(config, settings)


#: The optimizer service: built at start-up in the worker that owns it.
SERVICE: ServiceSpec[OptimizeConfig, OptimizeService] = ServiceSpec(
    "optimize", config=OptimizeConfig.from_settings, build=_build
)

router = ApiRouter("/api/v1", tag="optimize", service=SERVICE)


def _service(req: ApiRequest) -> OptimizeService:
    return SERVICE.of(req)


# ----- /api/v1/parameters --------------------------------------------------------------------
@router.post(
    "/parameters",
    body=ParameterRequest,
    envelope=False,
    summary="Suggest LLM parameters for a request",
)
async def suggest_parameters(req: ApiRequest) -> dict[str, Any]:
    """The task's rule-based profile until feedback arrives, then the BO suggestion, clipped to
    the request's constraints."""
    body: ParameterRequest = req.body
    svc = _service(req)
    async with svc.lock:
        n = len(svc.learner.optimizer(body.task_type).completed)
        params = await asyncio.to_thread(svc.learner.suggest, body.task_type)
    c = body.constraints
    reasoning = []
    if n == 0:
        reasoning.append(f"no feedback for {body.task_type} yet: rule-based profile")
    else:
        reasoning.append(f"Bayesian optimisation over {n} executions of {body.task_type}")

    def clip(v: float, rng: tuple[float, float]) -> float:
        return float(min(max(v, rng[0]), rng[1]))

    max_tokens = min(int(params["max_tokens"]), c.max_tokens_limit)
    if body.user_preferences.max_tokens:
        max_tokens = min(max_tokens, body.user_preferences.max_tokens)
    best = svc.learner.optimizers[body.task_type] if n else None
    expected = None
    if best is not None:
        expected = best.best().outcomes.get("score")
    return {
        "id": body.id or str(uuid.uuid4()),
        "temperature": clip(params["temperature"], c.temperature_range),
        "top_p": clip(params["top_p"], c.top_p_range),
        "top_k": None,
        "max_tokens": max_tokens,
        "presence_penalty": clip(params["presence_penalty"], c.presence_penalty_range),
        "frequency_penalty": clip(params["frequency_penalty"], c.frequency_penalty_range),
        "stop_sequences": [],
        "confidence": round(min(0.95, n / 100), 4),
        "reasoning": reasoning,
        "expected_quality": expected,
        "expected_latency_ms": None,
    }


@router.post(
    "/parameters/feedback",
    body=FeedbackBatch,
    envelope=False,
    summary="Learn from executions (one or many)",
)
async def parameters_feedback(req: ApiRequest) -> dict[str, Any]:
    svc = _service(req)
    records = [f.model_dump() for f in req.body.executions]
    async with svc.lock:
        counts = await asyncio.to_thread(svc.learner.observe, records)
    return {"success": True, "accepted": sum(counts.values()), "byTaskType": counts}


@router.get("/parameters/analytics", envelope=False, summary="Per-task learning status")
async def parameters_analytics(req: ApiRequest) -> dict[str, Any]:
    svc = _service(req)
    tasks = {}
    for task, opt in svc.learner.optimizers.items():
        done = opt.completed
        tasks[task] = {
            "observations": len(done),
            "failures": sum(t.status == "failed" for t in opt.trials),
            "bestParameters": svc.learner.best(task),
            "bestScore": opt.best().value if done else None,
        }
    return {"success": True, "taskTypes": tasks, "totalTasks": len(tasks)}


@router.get(
    "/parameters/health", envelope=False, public=True, summary="Health of the parameter service"
)
async def parameters_health(req: ApiRequest) -> dict[str, Any]:
    svc = _service(req)
    return {"status": "healthy", "service": "parameters", "taskTypes": len(svc.learner.optimizers)}


# ----- /api/v1/optimize/{study} ---------------------------------------------------------------
async def _study(req: ApiRequest) -> Any:
    return await _service(req).study(req.path["study"])


@router.post("/optimize/{study}", body=StudyCreate, summary="Create a study")
async def create_study(req: ApiRequest) -> Reply:
    from workbench.optimize import Optimizer, SearchSpace

    body: StudyCreate = req.body
    space = SearchSpace.from_dict({"params": body.space})

    def make(name: str) -> Optimizer:
        return Optimizer(
            space,
            body.objectives,
            strategy=body.strategy,
            seed=body.seed,
            outcome_constraints=body.outcome_constraints,
            ref_point=body.ref_point,
            name=name,
        )

    opt = await _service(req).create(req.path["study"], make)
    return Reply(
        {"study": opt.name, "space": space.to_dict(), "objectives": opt.objectives},
        status=201,
        meta={"message": "study created"},
    )


@router.post("/optimize/{study}/ask", body=AskBody, summary="Suggest configurations")
async def ask(req: ApiRequest) -> dict[str, Any]:
    opt = await _study(req)
    svc = _service(req)
    async with svc.lock:
        trials = await asyncio.to_thread(opt.ask_batch, req.body.n)
        await svc.save(opt)  # pending trials survive a restart too
    return {"trials": [t.to_dict() for t in trials], "info": opt.last_info}


@router.post("/optimize/{study}/tell", body=TellBody, summary="Report outcomes")
async def tell(req: ApiRequest) -> dict[str, Any]:
    opt = await _study(req)
    svc = _service(req)
    body: TellBody = req.body
    if (body.trial_id is None) == (body.params is None):
        raise InputError("give exactly one of trialId and params", details={"field": "trialId"})
    target = body.trial_id if body.trial_id is not None else body.params
    async with svc.lock:
        trial = opt.tell(target, body.outcomes, failed=body.failed)
        await svc.save(opt)
    return {"trial": trial.to_dict()}


@router.get("/optimize/{study}/best", summary="Best trial so far")
async def best(req: ApiRequest) -> dict[str, Any]:
    return (await _study(req)).best().to_dict()


@router.get("/optimize/{study}/pareto", summary="Pareto front")
async def pareto(req: ApiRequest) -> dict[str, Any]:
    return {"trials": [t.to_dict() for t in (await _study(req)).pareto_front()]}
