"""HTTP routes of the parameter optimizer.

- ``/api/v1/parameters``: the platform's parameter-service contract (the Rust service's raw
  shapes, no envelope): ``POST`` suggests parameters for a request, ``POST /feedback``
  learns from executions, ``GET /analytics`` summarises every task, ``GET /health``,
  ``DELETE /{taskType}`` (admin) forgets a task type.
- ``/api/v1/optimize/{study}``: generic ask/tell studies (enveloped): ``POST`` creates a
  study from a space definition, ``POST .../ask``, ``POST .../tell``, ``GET .../best``,
  ``GET .../pareto``, ``DELETE`` (admin) deletes it.

The domain service (:class:`~workbench.optimize.service.OptimizeService`) holds the studies
and the learner; model work runs in a worker thread under the study's own lock, so the event
loop keeps answering ``/health`` while a GP is fitted, and a slow ask on one study never
delays another.

Studies persist after every change, and so does what ``/api/v1/parameters/feedback`` learnt
(each task type is the study ``parameters-<task_type>``, readable through the study routes;
that prefix is reserved), so a restarted service resumes them where they were (and proposes
the same next point). ``[optimize] store`` (``WORKBENCH_OPTIMIZE__STORE``)
chooses where (:mod:`workbench.optimize.service`): ``"file"`` (default), ``"redis"`` or
``"memory"``.

Bounds: every request field has a documented range in the OpenAPI document (string lengths,
list and object sizes, numeric ranges). Names (study, parameter, outcome) are at most 64
characters (study names: 1-128 of ``A-Z a-z 0-9 _ - .``, not starting with ``.``); outcome
values, reference points, constraint bounds and parameter bounds lie within +-1e12
(:data:`~workbench.optimize.optimizer.MAX_ABS_OUTCOME`); feedback ``latencyMs`` is 0-1e7 ms,
``quality`` 0-1, ``cost`` 0-1e6. The ``[optimize]`` knobs ``max_dimensions`` (64),
``max_batch`` (64), ``ask_time_limit_s`` (10 s), ``max_studies`` (1024) and
``max_task_types`` (256) bound the work a request can cause; values past them are 400 (409
for the counts). ``context`` and ``metadata`` of a parameter request and the ``parameters``
of an execution record hold any JSON the optimizer does not interpret (at most 64 members,
within the request body limit).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.config import Settings
from workbench.errors import InputError
from workbench.optimize.feedback import MAX_COST, MAX_LATENCY_MS, TASK_TYPE_PATTERN
from workbench.optimize.optimizer import MAX_ABS_OUTCOME
from workbench.optimize.service import MAX_BATCH, OptimizeConfig, OptimizeService
from workbench.optimize.storage import STUDY_NAME_PATTERN

__all__ = ["SERVICE", "router"]

#: Why a request on a study may get 409: another request held it for [optimize] lock_wait_s.
BUSY = "the study is busy with other requests ([optimize] lock_wait_s); see Retry-After"

#: The OpenAPI pattern of the {study} path parameter (validated again by the service).
STUDY = {"study": STUDY_NAME_PATTERN}

_Model = WireModel  # the request schemas below share the one wire base

#: A parameter, objective or outcome name, or a short label.
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=256)]
#: A value within the optimizer's range (+-1e12).
Value = Annotated[float, Field(ge=-MAX_ABS_OUTCOME, le=MAX_ABS_OUTCOME)]
IntValue = Annotated[int, Field(ge=-(10**12), le=10**12)]
#: A categorical choice, a fixed value or a parameter value.
Scalar = bool | IntValue | Value | Text
Tokens = Annotated[int, Field(ge=1, le=1_048_576)]

MAX_PARAMS = 256
MAX_CHOICES = 256
MAX_OBJECTIVES = 4  # hypervolume improvement's cost grows exponentially with the objectives
MAX_OUTCOMES = 32
MAX_OPAQUE = 64  # members of the objects the optimizer does not interpret


# ----- /api/v1/parameters schemas --------------------------------------------------------------
class UserPreferences(_Model):
    priority: str = Field(default="balanced", max_length=32)
    quality_threshold: float | None = Field(default=None, ge=0, le=1)
    max_latency_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    max_tokens: Tokens | None = None
    preferred_style: str | None = Field(default=None, max_length=64)


Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class ParameterConstraints(_Model):
    """Ranges the suggestion is clipped to (each ``[low, high]`` with ``low <= high``)."""

    temperature_range: tuple[Temperature, Temperature] = (0.0, 2.0)
    top_p_range: tuple[TopP, TopP] = (0.0, 1.0)
    max_tokens_limit: Tokens = 4096
    presence_penalty_range: tuple[Penalty, Penalty] = (-2.0, 2.0)
    frequency_penalty_range: tuple[Penalty, Penalty] = (-2.0, 2.0)

    @model_validator(mode="after")
    def _ordered(self) -> ParameterConstraints:
        for name in (
            "temperature_range",
            "top_p_range",
            "presence_penalty_range",
            "frequency_penalty_range",
        ):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: low {low} is above high {high}")
        return self


Opaque = dict[Name, Any]


class ParameterRequest(_Model):
    id: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=128)
    prompt: str = Field(default="", max_length=1_000_000)
    task_type: str = Field(default="casual_chat", max_length=64, pattern=TASK_TYPE_PATTERN)
    context: Opaque | None = Field(default=None, max_length=MAX_OPAQUE)
    user_preferences: UserPreferences = Field(default_factory=UserPreferences)
    constraints: ParameterConstraints = Field(default_factory=ParameterConstraints)
    metadata: Opaque | None = Field(default=None, max_length=MAX_OPAQUE)


class Feedback(_Model):
    task_type: str = Field(max_length=64, pattern=TASK_TYPE_PATTERN)
    parameters: Opaque = Field(max_length=MAX_OPAQUE)
    latency_ms: float = Field(ge=0, le=MAX_LATENCY_MS)
    success: bool = True
    quality: float | None = Field(default=None, ge=0, le=1)
    cost: float = Field(default=0.0, ge=0, le=MAX_COST)


class FeedbackBatch(_Model):
    executions: list[Feedback] = Field(min_length=1, max_length=1000)


# ----- /api/v1/optimize schemas ----------------------------------------------------------------
class _Param(_Model):
    model_config = ConfigDict(extra="forbid")  # a misspelt key would change the space

    active_if: dict[Name, Annotated[list[Scalar], Field(max_length=MAX_CHOICES)]] | None = Field(
        default=None, max_length=8
    )


class RealParam(_Param):
    type: Literal["real"]
    low: Value
    high: Value
    log: bool = False


class IntParam(_Param):
    type: Literal["int"]
    low: IntValue
    high: IntValue
    log: bool = False


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, max_length=MAX_CHOICES)


class FixedParam(_Param):
    type: Literal["fixed"]
    value: Scalar


ParamDefinition = Annotated[
    RealParam | IntParam | CategoricalParam | FixedParam, Field(discriminator="type")
]
Direction = Literal["minimize", "maximize", "min", "max"]


def _minimize_y() -> dict[str, Direction]:
    return {"y": "minimize"}


class StudyCreate(_Model):
    space: dict[Name, ParamDefinition] = Field(min_length=1, max_length=MAX_PARAMS)
    objectives: dict[Name, Direction] = Field(
        default_factory=_minimize_y, min_length=1, max_length=MAX_OBJECTIVES
    )
    strategy: str = Field(default="default", max_length=64)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    outcome_constraints: dict[Name, tuple[Literal["<=", ">="], Value]] | None = Field(
        default=None, max_length=16
    )
    ref_point: dict[Name, Value] | None = Field(default=None, max_length=MAX_OBJECTIVES)


class AskBody(_Model):
    n: int = Field(
        default=1,
        ge=1,
        le=MAX_BATCH,
        description="configurations to suggest; at most [optimize] max_batch (default 64)",
    )


class TellBody(_Model):
    """Give ``trialId`` (a suggestion of this study) or ``params`` (observed elsewhere).

    ``sem`` gives the standard error of outcomes whose noise is known (each one of
    ``outcomes``); once every modelled value has one the model uses a fixed-noise likelihood.
    """

    trial_id: int | None = Field(default=None, ge=0, le=10**9)
    params: dict[Name, Scalar] | None = Field(default=None, max_length=MAX_PARAMS)
    outcomes: dict[Name, Value] | None = Field(default=None, max_length=MAX_OUTCOMES)
    sem: dict[Name, Annotated[float, Field(ge=0, le=MAX_ABS_OUTCOME)]] | None = Field(
        default=None, max_length=MAX_OUTCOMES
    )
    failed: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> TellBody:
        if (self.trial_id is None) == (self.params is None):
            raise ValueError("give exactly one of trialId and params")
        extra = sorted(set(self.sem or {}) - set(self.outcomes or {}))
        if extra:
            raise ValueError(f"sem names outcome(s) {extra} that are not in outcomes")
        return self


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
    responses={409: BUSY},
)
async def suggest_parameters(req: ApiRequest) -> dict[str, Any]:
    """The task's rule-based profile until feedback arrives, then the BO suggestion, clipped to
    the request's constraints."""
    body: ParameterRequest = req.body
    s = await _service(req).suggest_parameters(body.task_type)
    params, n = s.params, s.observations
    c = body.constraints
    reasoning = []
    if n == 0:
        reasoning.append(f"no feedback for {body.task_type} yet: rule-based profile")
    elif s.info.get("phase") == "fallback":
        reasoning.append(
            f"model unavailable for {body.task_type} ({s.info.get('reason')}): a random point"
        )
    else:
        reasoning.append(f"Bayesian optimisation over {n} executions of {body.task_type}")
    if s.info.get("truncated"):
        reasoning.append("time limit reached: the best candidate found so far")
    if s.info.get("best_truncated"):
        reasoning.append(
            "time limit reached before the model's recommendation: expected "
            "quality is the best observed score"
        )

    def clip(v: float, rng: tuple[float, float]) -> float:
        return float(min(max(v, rng[0]), rng[1]))

    max_tokens = min(int(params["max_tokens"]), c.max_tokens_limit)
    if body.user_preferences.max_tokens:
        max_tokens = min(max_tokens, body.user_preferences.max_tokens)
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
        "expected_quality": s.expected_score,
        "expected_quality_basis": s.expected_basis,
        "expected_latency_ms": None,
    }


@router.post(
    "/parameters/feedback",
    body=FeedbackBatch,
    envelope=False,
    summary="Learn from executions (one or many)",
    responses={409: "the task-type slots are full (max_task_types), or " + BUSY},
)
async def parameters_feedback(req: ApiRequest) -> dict[str, Any]:
    records = [f.model_dump() for f in req.body.executions]
    counts = await _service(req).observe(records)
    return {"success": True, "accepted": sum(counts.values()), "byTaskType": counts}


@router.get("/parameters/analytics", envelope=False, summary="Per-task learning status")
async def parameters_analytics(req: ApiRequest) -> dict[str, Any]:
    svc = _service(req)
    tasks = {}
    for task, opt in svc.learner.tasks().items():
        done = opt.completed
        if done:
            await asyncio.to_thread(opt.best)  # may fit a GP (then cached): off the event loop
        tasks[task] = {
            "observations": len(done),
            "failures": sum(t.status == "failed" for t in opt.trials),
            "pending": len(opt.pending),
            "bestParameters": svc.learner.best(task),
            "bestScore": opt.best().value if done else None,
            "bestPosteriorScore": opt.best().posterior_mean if done else None,
            "bestObservedParameters": svc.learner.best_observed(task),
            "bestObservedScore": opt.best_observed().value if done else None,
        }
    return {"success": True, "taskTypes": tasks, "totalTasks": len(tasks)}


@router.get(
    "/parameters/health", envelope=False, public=True, summary="Health of the parameter service"
)
async def parameters_health(req: ApiRequest) -> dict[str, Any]:
    svc = _service(req)
    return {"status": "healthy", "service": "parameters", "taskTypes": len(svc.learner.tasks())}


@router.delete(
    "/parameters/task-types/{taskType}",
    path_params={"taskType": TASK_TYPE_PATTERN},
    envelope=False,
    admin=True,
    summary="Forget a task type (what it learnt and its slot)",
    responses={409: BUSY},
)
async def forget_task_type(req: ApiRequest) -> dict[str, Any]:
    task = req.path["taskType"]
    await _service(req).forget_task_type(task)
    return {"success": True, "deleted": task}


# ----- /api/v1/optimize/{study} ---------------------------------------------------------------
def _in_space(exc: InputError) -> InputError:
    """The space's error with its field named from the request body (``space.<param>...``)."""
    details = exc.details
    if isinstance(details, dict) and "field" in details:
        details = {**details, "field": f"space.{details['field']}"}
    return InputError(exc.message, details=details)


@router.post(
    "/optimize/{study}",
    path_params=STUDY,
    body=StudyCreate,
    status=201,
    summary="Create a study",
    responses={409: "the study exists, or max_studies studies do, or " + BUSY},
)
async def create_study(req: ApiRequest) -> Reply:
    from workbench.optimize import Optimizer, SearchSpace

    body: StudyCreate = req.body
    try:
        space = SearchSpace.from_dict(
            {"params": {k: v.model_dump() for k, v in body.space.items()}}
        )
    except InputError as exc:
        raise _in_space(exc) from None

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


@router.delete(
    "/optimize/{study}",
    path_params=STUDY,
    admin=True,
    summary="Delete a study",
    responses={409: BUSY},
)
async def delete_study(req: ApiRequest) -> dict[str, Any]:
    await _service(req).delete(req.path["study"])
    return {"deleted": req.path["study"]}


@router.post(
    "/optimize/{study}/ask",
    path_params=STUDY,
    body=AskBody,
    summary="Suggest configurations",
    responses={409: BUSY},
)
async def ask(req: ApiRequest) -> dict[str, Any]:
    """Suggestions within ``[optimize] ask_time_limit_s``; ``info.truncated`` says whether the
    bound cut the acquisition short (the trials are then the best found so far)."""
    trials, info = await _service(req).ask(req.path["study"], req.body.n)
    return {"trials": [t.to_dict() for t in trials], "info": info}


@router.post(
    "/optimize/{study}/tell",
    path_params=STUDY,
    body=TellBody,
    summary="Report outcomes",
    responses={409: BUSY},
)
async def tell(req: ApiRequest) -> dict[str, Any]:
    body: TellBody = req.body
    target: Any = body.trial_id if body.trial_id is not None else body.params
    outcomes: Any = body.outcomes
    if body.sem and outcomes is not None:
        # Optimizer.tell takes Ax's (value, sem) pairs, so the service passes them through
        outcomes = {k: (v, body.sem[k]) if k in body.sem else v for k, v in outcomes.items()}
    trial = await _service(req).tell(req.path["study"], target, outcomes, failed=body.failed)
    return {"trial": trial.to_dict()}


@router.get("/optimize/{study}/best", path_params=STUDY, summary="Recommended trial")
async def best(req: ApiRequest) -> dict[str, Any]:
    """The recommended trial (the best GP posterior mean among the observed ones; ``basis``
    says whether a model chose it) and, under ``best_observed``, the trial with the best
    observed value, which noise biases upwards."""
    opt = await _service(req).study(req.path["study"])
    recommended = await asyncio.to_thread(opt.best)  # may fit a GP: off the event loop
    return {**recommended.to_dict(), "best_observed": opt.best_observed().to_dict()}


@router.get("/optimize/{study}/pareto", path_params=STUDY, summary="Pareto front")
async def pareto(req: ApiRequest) -> dict[str, Any]:
    opt = await _service(req).study(req.path["study"])
    return {"trials": [t.to_dict() for t in opt.pareto_front()]}
