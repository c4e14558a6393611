"""HTTP routes of AB-MCTS: ``/api/v1/ab-mcts/*`` (platform envelope) and
``/api/v1/ab-mcts-rust/*`` (the native bridge's raw shapes).

The service keeps one :class:`~workbench.mcts.orchestrate.Orchestrator` per app (agent models
persist across requests; with ``[mcts] persist = "redis"`` they are loaded from and saved to
Redis under ``ab-mcts:models:default``). There is no agent runtime behind the service, so
orchestrations execute the chosen agent with :class:`~workbench.mcts.orchestrate.ModelExecutor`
(a prediction from the agent's models, marked ``"predicted": true``); real outcomes come in
through the feedback routes.

Limits: at most ``[mcts] max_agents`` agents (100) and ``[mcts] max_iterations`` iterations
(10,000) per request; larger requests get 400 ``VALIDATION_ERROR`` naming the field. As the
platform's bridge did, each client (peer address) may send 100 ``ab-mcts-rust/search`` and 200
``ab-mcts-rust/recommend`` requests a minute (``[mcts] rust_search_per_min`` and
``rust_recommend_per_min``; 0 turns a limit off); beyond that 429 ``RATE_LIMITED`` with
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.errors import CapacityError, InputError, NotFoundError

__all__ = ["MCTS_SERVICE_KEY", "MctsService", "router"]

router = ApiRouter("/api/v1", tag="ab-mcts")

DEFAULT_AGENTS = ("planner", "retriever", "synthesizer", "orchestrator")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --- request bodies ---------------------------------------------------------------------
class OrchestrateOptionsBody(_Model):
    use_cache: bool = True
    enable_parallelism: bool = True
    collect_feedback: bool = True
    save_checkpoints: bool = False
    visualize: bool = False
    verbose_logging: bool = False
    fallback_strategy: Literal["greedy", "random", "fixed"] = "greedy"
    max_iterations: int | None = Field(default=None, ge=1)
    max_depth: int | None = Field(default=None, ge=1, le=50)
    seed: int | None = None


class OrchestrateBody(_Model):
    user_request: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    options: OrchestrateOptionsBody = Field(default_factory=OrchestrateOptionsBody)


class BatchItem(_Model):
    user_request: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)


class BatchBody(_Model):
    requests: list[BatchItem] = Field(min_length=1, max_length=100)
    options: OrchestrateOptionsBody = Field(default_factory=OrchestrateOptionsBody)


class FeedbackBody(_Model):
    orchestration_id: str = Field(min_length=1)
    rating: int = Field(ge=1, le=5)
    comment: str | None = None


class ModelsQuery(_Model):
    task_type: str = "general"


class SubmitBody(_Model):
    user_request: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    priority: int = 5


class UserPreferences(_Model):
    preferred_agents: list[str] | None = None
    quality_vs_speed: float | None = Field(default=None, ge=0, le=1)
    max_cost: float | None = None
    timeout_ms: int | None = None


class ExecutionContext(_Model):
    session_id: str = Field(min_length=1)
    user_id: str | None = None
    timestamp: Any = None
    budget: float = 100.0
    priority: Literal["Low", "Normal", "High", "Critical"] = "Normal"


class RustContext(_Model):
    task: str = Field(min_length=1, max_length=10_000)
    requirements: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    context_data: dict[str, Any] = Field(default_factory=dict)
    user_preferences: UserPreferences | None = None
    execution_context: ExecutionContext


class RustOptions(_Model):
    max_iterations: int = Field(default=1000, ge=1)
    max_depth: int = Field(default=10, ge=1, le=50)
    time_limit_ms: int = Field(default=30_000, ge=1, le=300_000)
    exploration_constant: float = Field(default=1.414, ge=0)
    discount_factor: float = Field(default=0.95, ge=0, le=1)
    parallel_simulations: int = Field(default=4, ge=1, le=16)
    checkpoint_interval: int = 100
    enable_caching: bool = True
    verbose_logging: bool = False
    seed: int | None = None


class RustSearchBody(_Model):
    context: RustContext
    available_agents: list[str] = Field(min_length=1, max_length=100)
    options: RustOptions = Field(default_factory=RustOptions)


class RustRecommendBody(_Model):
    context: RustContext
    available_agents: list[str] = Field(min_length=1, max_length=100)
    max_recommendations: int = Field(default=3, ge=1, le=20)


class RustTestBody(_Model):
    test_type: Literal["simple", "complex", "load"] = "simple"
    agent_count: int = Field(default=5, ge=1, le=20)


class RewardComponents(_Model):
    quality: float = Field(ge=0, le=1)
    speed: float = Field(ge=0, le=1)
    cost: float = Field(ge=0, le=1)
    user_satisfaction: float | None = Field(default=None, ge=0, le=1)


class RewardMetadata(_Model):
    tokens_used: float = Field(default=0, ge=0)
    api_calls_made: int = Field(default=0, ge=0)
    execution_time_ms: float = Field(default=0, ge=0)
    agent_performance: dict[str, Any] = Field(default_factory=dict)


class RustReward(_Model):
    value: float = Field(ge=0, le=1)
    components: RewardComponents
    metadata: RewardMetadata = Field(default_factory=RewardMetadata)


class RustFeedbackBody(_Model):
    session_id: str = Field(min_length=1)
    agent_name: str = Field(min_length=1)
    reward: RustReward
    task_type: str = "general"


# --- the per-app service ----------------------------------------------------------------
class MctsService:
    """Orchestrator, limits, feedback log and the auto-pilot queue of one app."""

    def __init__(self, app: web.Application) -> None:
        from workbench.api.routing import SETTINGS_KEY
        from workbench.mcts.orchestrate import Orchestrator

        settings = app[SETTINGS_KEY]
        section = settings.section("mcts")
        self.max_iterations = int(section.get("max_iterations", 10_000))
        self.max_agents = min(int(section.get("max_agents", 100)), 100)
        self.default_agents = tuple(section.get("agents", DEFAULT_AGENTS))
        self.store = None
        registry = None
        if section.get("persist") == "redis":
            from workbench.mcts.storage import RedisStore
            from workbench.redis_adapter import RedisAdapter

            self.store = RedisStore(RedisAdapter.from_settings(settings))
            try:
                registry = self.store.load_models()
            except NotFoundError:
                registry = None
        self.orchestrator = Orchestrator(
            registry, store=self.store, persist_trees=self.store is not None
        )
        self.feedback_log: list[dict[str, Any]] = []
        self.started = time.time()
        self.searches = 0
        self.rust_feedback = 0
        self.autopilot = AutoPilot(self, max_queue=int(section.get("autopilot_max_queue", 1000)))
        self.lock = asyncio.Lock()

    def agents_for(self, context: dict[str, Any]) -> list[str]:
        agents = context.get("agents") or list(self.default_agents)
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise InputError(
                "context.agents: must be a list of agent names",
                details=[{"field": "context.agents"}],
            )
        self.check_agents(agents, "context.agents")
        return agents

    def check_agents(self, agents: list[str], field: str) -> None:
        if not 1 <= len(agents) <= self.max_agents:
            raise InputError(
                f"{field}: need 1..{self.max_agents} agents, got {len(agents)}",
                details=[{"field": field, "message": f"at most {self.max_agents} agents"}],
            )
        if len(set(agents)) != len(agents):
            raise InputError(f"{field}: agent names must be unique", details=[{"field": field}])

    def options(self, iterations: int | None, depth: int | None, seed: int | None, field: str):
        from workbench.mcts.orchestrate import OrchestrationOptions

        if iterations is not None and iterations > self.max_iterations:
            raise InputError(
                f"{field}: at most {self.max_iterations} iterations per request, got {iterations}",
                details=[{"field": field, "message": f"must be <= {self.max_iterations}"}],
            )
        return OrchestrationOptions(
            iterations=iterations or 500,
            max_depth=depth or 8,
            seed=seed,
            max_iterations=self.max_iterations,
        )

    async def run_orchestration(self, user_request: str, context: dict[str, Any], opts: Any):
        ctx = {"userRequest": user_request, "requestId": str(uuid.uuid4()), "metadata": context}
        if "taskType" in context:
            ctx["taskType"] = context["taskType"]
        agents = self.agents_for(context)
        self.searches += 1
        async with self.lock:  # one orchestration at a time mutates the shared models
            result = await asyncio.to_thread(
                self.orchestrator.orchestrate, ctx, agents, None, options=opts
            )
        await self.save_models()
        return result

    async def save_models(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.save_models, self.orchestrator.registry)


#: The app's service holder, filled on first use so startup stays fast.
MCTS_SERVICE_KEY = web.AppKey("workbench_mcts_service", dict)


async def _startup(app: web.Application) -> None:
    app[MCTS_SERVICE_KEY] = {}


def service(req: ApiRequest) -> MctsService:
    holder = req.app[MCTS_SERVICE_KEY]
    svc = holder.get("service")
    if svc is None:
        svc = holder["service"] = MctsService(req.app)
    return svc


async def _cleanup(app: web.Application) -> None:
    svc = app.get(MCTS_SERVICE_KEY, {}).get("service")
    if svc is not None:
        await svc.autopilot.stop()


router.on_startup.append(_startup)
router.on_cleanup.append(_cleanup)


def _orchestration_data(result: Any, visualize: bool, svc: MctsService) -> dict[str, Any]:
    d = result.to_dict()
    out = {
        "orchestrationId": d["orchestrationId"],
        "response": d["response"],
        "searchMetrics": d["searchMetrics"],
        "bestAction": d["bestAction"],
        "confidence": d["confidence"],
        "executionPath": d["executionPath"],
        "totalTime": d["totalTime"],
        "resourcesUsed": {
            "agents": sorted(set(d["executionPath"])),
            "llmCalls": 0,  # predictions only: no model was called
            "tokensUsed": d["response"]["tokens"] if d["response"] else 0,
        },
        "recommendations": d["recommendations"],
        "executionPlan": d["executionPlan"],
    }
    if visualize:
        out["visualization"] = svc.orchestrator.visualization(result.orchestration_id)
    return out


# --- /api/v1/ab-mcts --------------------------------------------------------------------
@router.post("/ab-mcts/orchestrate", body=OrchestrateBody, summary="Choose agents for a request")
async def orchestrate_route(req: ApiRequest) -> Any:
    svc = service(req)
    body: OrchestrateBody = req.body
    o = body.options
    opts = svc.options(o.max_iterations, o.max_depth, o.seed, "options.maxIterations")
    result = await svc.run_orchestration(body.user_request, body.context, opts)
    return Reply(
        _orchestration_data(result, o.visualize, svc), meta={"message": "Orchestration completed"}
    )


@router.post("/ab-mcts/orchestrate/batch", body=BatchBody, summary="Orchestrate several requests")
async def orchestrate_batch(req: ApiRequest) -> Any:
    svc = service(req)
    body: BatchBody = req.body
    o = body.options
    opts = svc.options(o.max_iterations, o.max_depth, o.seed, "options.maxIterations")
    batch_id = str(uuid.uuid4())
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(4)

    async def one(i: int, item: BatchItem) -> dict[str, Any]:
        ctx = {**item.context, "batchId": batch_id, "batchIndex": i, "source": "ab-mcts-api-batch"}
        s0 = time.perf_counter()
        async with sem:
            try:
                r = await svc.run_orchestration(item.user_request, ctx, opts)
            except InputError:
                raise
            except Exception as exc:  # one failed item does not fail the batch
                return {
                    "index": i,
                    "success": False,
                    "confidence": 0.0,
                    "response": {"success": False, "message": f"Orchestration failed: {exc}"},
                    "executionTime": (time.perf_counter() - s0) * 1000,
                }
        d = r.to_dict()
        return {
            "index": i,
            "success": True,
            "response": d["response"],
            "confidence": r.confidence,
            "executionTime": (time.perf_counter() - s0) * 1000,
        }

    results = await asyncio.gather(*(one(i, it) for i, it in enumerate(body.requests)))
    ok = [r for r in results if r["success"]]
    return {
        "batchId": batch_id,
        "results": results,
        "summary": {
            "total": len(results),
            "successful": len(ok),
            "failed": len(results) - len(ok),
            "averageConfidence": sum(r["confidence"] for r in ok) / len(ok) if ok else None,
            "totalTime": (time.perf_counter() - t0) * 1000,
        },
    }


@router.post("/ab-mcts/feedback", body=FeedbackBody, summary="Rate an orchestration (1..5)")
async def feedback_route(req: ApiRequest) -> Any:
    svc = service(req)
    body: FeedbackBody = req.body
    out = await asyncio.to_thread(
        svc.orchestrator.feedback, body.orchestration_id, body.rating, comment=body.comment
    )
    svc.feedback_log.append(
        {
            "agent": out["agent"],
            "taskType": out["taskType"],
            "reward": out["reward"],
            "rating": body.rating,
            "timestamp": out["timestamp"],
        }
    )
    del svc.feedback_log[:-10_000]
    await svc.save_models()
    return {
        "message": "Feedback recorded",
        "orchestrationId": body.orchestration_id,
        "rating": body.rating,
    }


def _ranked_arms(svc: MctsService, task_type: str) -> list[dict[str, Any]]:
    return [
        {"name": r["agent"], "mean": r["statistics"]["successRate"], "samples": r["samples"]}
        for r in svc.orchestrator.registry.rankings(task_type)
    ]


@router.get("/ab-mcts/metrics", summary="Orchestrator, feedback and bandit statistics")
async def metrics_route(req: ApiRequest) -> Any:
    svc = service(req)
    arms = _ranked_arms(svc, "general")
    return {
        "orchestrator": svc.orchestrator.statistics(),
        "feedback": {
            "queueSize": 0,
            "totalProcessed": len(svc.feedback_log),
            "aggregationCount": len({(f["agent"], f["taskType"]) for f in svc.feedback_log}),
        },
        "thompsonSampling": {"rankedArms": arms, "totalArms": len(svc.orchestrator.registry)},
        "adaptiveExploration": {"thompson": 0.7, "ucb": 0.3},
        "recommendations": svc.orchestrator.recommendations(),
    }


@router.get("/ab-mcts/models", query=ModelsQuery, summary="Agent rankings for a task type")
async def models_route(req: ApiRequest) -> Any:
    svc = service(req)
    rows = svc.orchestrator.registry.rankings(req.query.task_type)
    return {
        "taskType": req.query.task_type,
        "rankings": [
            {k: r[k] for k in ("agent", "performance", "reliability", "samples")} for r in rows
        ],
        "topModels": rows[:5],
    }


@router.get("/ab-mcts/visualization/{orchestration_id}", summary="Tree of one orchestration")
async def visualization_route(req: ApiRequest) -> Any:
    return service(req).orchestrator.visualization(req.path["orchestration_id"])


@router.get("/ab-mcts/report", summary="Feedback report")
async def report_route(req: ApiRequest) -> Any:
    svc = service(req)
    log = svc.feedback_log
    by_agent: dict[str, list[float]] = {}
    by_task: dict[str, list[float]] = {}
    for f in log:
        by_agent.setdefault(f["agent"], []).append(f["reward"])
        by_task.setdefault(f["taskType"], []).append(f["reward"])
    agent_rows = {
        a: {"count": len(v), "averageReward": sum(v) / len(v)} for a, v in by_agent.items()
    }
    ranked = sorted(agent_rows, key=lambda a: -agent_rows[a]["averageReward"])
    recs = [
        f"{a}: average feedback reward below 0.6"
        for a in ranked
        if agent_rows[a]["averageReward"] < 0.6 and agent_rows[a]["count"] > 10
    ]
    return {
        "summary": {
            "totalFeedbacks": len(log),
            "averageQuality": sum(f["reward"] for f in log) / len(log) if log else None,
            "topPerformers": ranked[:3],
            "needsImprovement": list(reversed(ranked))[:3],
        },
        "byAgent": agent_rows,
        "byTaskType": {
            t: {"count": len(v), "averageReward": sum(v) / len(v)} for t, v in by_task.items()
        },
        "recommendations": recs,
    }


@router.post("/ab-mcts/reset", admin=True, summary="Forget orchestrations and agent models")
async def reset_route(req: ApiRequest) -> Any:
    svc = service(req)
    svc.orchestrator.reset()
    svc.feedback_log.clear()
    await svc.save_models()
    return Reply(
        {"message": "AB-MCTS state reset", "timestamp": _now()},
        meta={"message": "AB-MCTS state reset"},
    )


@router.get("/ab-mcts/health", summary="Health of the orchestrator", public=True)
async def health_route(req: ApiRequest) -> Any:
    stats = service(req).orchestrator.statistics()
    rate = stats["successRate"]
    breaker = stats["circuitBreakerState"]
    ok = (rate is None or rate > 0.5) and breaker != "OPEN"
    return {
        "status": "healthy" if ok else "degraded",
        "circuitBreaker": breaker,  # the worst of the per-agent breakers
        "circuitBreakers": stats["circuitBreakers"],
        "successRate": rate,
        "activeSearches": 0,
        "timestamp": _now(),
    }


# --- auto-pilot -------------------------------------------------------------------------
class AutoPilot:
    """Priority queue of requests orchestrated in the background (highest priority first).

    Each finished task gets an automatic feedback score, the mean of ``1 - t/10000 ms``,
    ``1 - tokens/5000`` and ``1 - agents/10``, recorded when >= 0.7; a failed task is retried
    with priority -1 up to 3 failures, then kept (the last 100) in ``failed`` with its error.
    The queue holds at most ``max_queue`` tasks (``[mcts] autopilot_max_queue``, default
    1,000): a submit beyond it is refused with 409 ``CAPACITY_EXCEEDED``, never dropped later.
    """

    def __init__(self, svc: MctsService, *, batch_size: int = 5, max_queue: int = 1000) -> None:
        self.svc = svc
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.failed: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self.queue: list[tuple[int, int, dict[str, Any]]] = []
        self.counter = itertools.count()
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.processing = 0
        self.metrics: dict[str, Any] = {
            "totalRequests": 0,
            "successfulRequests": 0,
            "failedRequests": 0,
            "averageResponseTime": None,
            "autoFeedbacks": 0,
            "abandonedTasks": 0,
        }

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    def submit(self, user_request: str, context: dict[str, Any], priority: int) -> dict[str, Any]:
        if len(self.queue) >= self.max_queue:
            raise CapacityError(
                f"the auto-pilot queue is full ({len(self.queue)} tasks, "
                f"mcts.autopilot_max_queue={self.max_queue}); retry when it drains",
                details={"queued": len(self.queue), "maxQueue": self.max_queue},
            )
        task_id = str(uuid.uuid4())
        item = {
            "taskId": task_id,
            "userRequest": user_request,
            "context": context,
            "priority": priority,
            "failures": 0,
            "submittedAt": _now(),
        }
        heapq.heappush(self.queue, (-priority, next(self.counter), item))
        self.wake.set()
        position = sorted(self.queue).index(next(e for e in self.queue if e[2] is item)) + 1
        return {
            "taskId": task_id,
            "status": "queued",
            "queuePosition": position,
            "timestamp": _now(),
        }

    def start(self) -> None:
        if not self.active:
            self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None

    async def _loop(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
            batch = [
                heapq.heappop(self.queue)[2] for _ in range(min(self.batch_size, len(self.queue)))
            ]
            self.processing = len(batch)
            await asyncio.gather(*(self._run(item) for item in batch))
            self.processing = 0

    async def _run(self, item: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        self.metrics["totalRequests"] += 1
        try:
            opts = self.svc.options(None, None, None, "options")
            ctx = {**item["context"], "userId": "auto-pilot"}
            r = await self.svc.run_orchestration(item["userRequest"], ctx, opts)
        except Exception as exc:
            item["failures"] += 1
            self.metrics["failedRequests"] += 1
            if item["failures"] < 3:
                heapq.heappush(self.queue, (1, next(self.counter), item))
            else:
                self.metrics["abandonedTasks"] += 1
                self.failed.append(
                    {
                        "taskId": item["taskId"],
                        "userRequest": item["userRequest"],
                        "failures": item["failures"],
                        "error": str(exc),
                        "failedAt": _now(),
                    }
                )
            return
        ms = (time.perf_counter() - t0) * 1000
        self.metrics["successfulRequests"] += 1
        prev = self.metrics["averageResponseTime"]
        self.metrics["averageResponseTime"] = ms if prev is None else 0.9 * prev + 0.1 * ms
        tokens = r.outcome.tokens if r.outcome else 0.0
        score = (
            max(0.0, 1 - ms / 10_000)
            + max(0.0, 1 - tokens / 5000)
            + max(0.0, 1 - len(r.best_path) / 10)
        ) / 3
        if score >= 0.7:
            self.svc.orchestrator.feedback(r.orchestration_id, reward=score)
            self.metrics["autoFeedbacks"] += 1

    def queue_status(self) -> dict[str, Any]:
        return {
            "queued": len(self.queue),
            "processing": self.processing,
            "queuedTasks": [
                {k: e[2][k] for k in ("taskId", "userRequest", "priority", "submittedAt")}
                for e in sorted(self.queue)[:50]
            ],
            "maxQueue": self.max_queue,
            "failedTasks": list(self.failed)[-20:],
        }


@router.post("/ab-mcts/auto-pilot/start", summary="Start the auto-pilot")
async def autopilot_start(req: ApiRequest) -> Any:
    ap = service(req).autopilot
    ap.start()
    return {"status": "started", "metrics": ap.metrics, "timestamp": _now()}


@router.post("/ab-mcts/auto-pilot/stop", summary="Stop the auto-pilot")
async def autopilot_stop(req: ApiRequest) -> Any:
    ap = service(req).autopilot
    await ap.stop()
    return {"status": "stopped", "finalMetrics": ap.metrics, "timestamp": _now()}


@router.get("/ab-mcts/auto-pilot/status", summary="Auto-pilot state and queue")
async def autopilot_status(req: ApiRequest) -> Any:
    ap = service(req).autopilot
    return {
        "active": ap.active,
        "metrics": ap.metrics,
        "queue": ap.queue_status(),
        "timestamp": _now(),
    }


@router.post("/ab-mcts/auto-pilot/submit", body=SubmitBody, summary="Queue a request")
async def autopilot_submit(req: ApiRequest) -> Any:
    svc = service(req)
    body: SubmitBody = req.body
    svc.agents_for(body.context)  # validate now, not in the background
    return Reply(
        svc.autopilot.submit(body.user_request, body.context, body.priority),
        meta={"message": "Task queued"},
    )


@router.get("/ab-mcts/auto-pilot/metrics", summary="Auto-pilot performance")
async def autopilot_metrics(req: ApiRequest) -> Any:
    ap = service(req).autopilot
    m = ap.metrics
    recs = []
    if m["totalRequests"] and m["failedRequests"] / m["totalRequests"] > 0.2:
        recs.append("More than 20% of auto-pilot tasks failed: check the agents")
    return {
        "performance": m,
        "queue": ap.queue_status(),
        "recommendations": recs,
        "timestamp": _now(),
    }


# --- /api/v1/ab-mcts-rust (raw shapes) --------------------------------------------------
def _rust_meta(t0: float) -> dict[str, Any]:
    return {
        "durationMs": (time.perf_counter() - t0) * 1000,
        "timestamp": _now(),
        "version": "rust-0.1.0",
    }


async def _rust_search(svc: MctsService, ctx: RustContext, agents: list[str], opts: Any):
    svc.check_agents(agents, "availableAgents")
    context = {
        "userRequest": ctx.task,
        "taskType": ctx.context_data.get("taskType", "general"),
        "metadata": {"sessionId": ctx.execution_context.session_id},
    }
    svc.searches += 1
    async with svc.lock:
        return await asyncio.to_thread(
            svc.orchestrator.orchestrate, context, agents, None, options=opts
        )


def _rust_options(svc: MctsService, o: RustOptions, *, execute: bool = False):
    from dataclasses import replace

    if o.max_iterations > svc.max_iterations:
        raise InputError(
            f"options.maxIterations: at most {svc.max_iterations}, got {o.max_iterations}",
            details=[{"field": "options.maxIterations"}],
        )
    base = svc.options(o.max_iterations, o.max_depth, o.seed, "options.maxIterations")
    return replace(
        base,
        exploration=o.exploration_constant,
        discount=o.discount_factor,
        time_limit_s=o.time_limit_ms / 1000,
        execute=execute,
    )


@router.post(
    "/ab-mcts-rust/search",
    body=RustSearchBody,
    envelope=False,
    summary="Search (raw)",
    rate_limit=100,
    rate_setting="mcts.rust_search_per_min",
)
async def rust_search(req: ApiRequest) -> Any:
    t0 = time.perf_counter()
    svc = service(req)
    body: RustSearchBody = req.body
    r = await _rust_search(
        svc, body.context, body.available_agents, _rust_options(svc, body.options)
    )
    plan = r.execution_plan
    steps = plan["steps"]
    best_path = [
        {
            "id": str(s.node_id),
            "agentName": s.agent,
            "agentType": s.agent_type,
            "estimatedCost": st["estimatedCost"],
            "estimatedTimeMs": st["estimatedTimeMs"],
            "confidence": s.average_reward,
        }
        for s, st in zip(r.best_path, steps, strict=True)
    ]
    recs = [
        {
            "agentName": row["agent"],
            "confidence": row["statistics"]["successRate"],
            "expectedPerformance": row["performance"],
            "samples": row["samples"],
        }
        for row in svc.orchestrator.registry.rankings(r.task_type)
        if row["agent"] in body.available_agents
    ]
    return {
        "success": True,
        "result": {
            "bestPath": best_path,
            "confidence": r.confidence,
            "expectedReward": best_path[0]["confidence"] if best_path else 0.0,
            "searchStatistics": r.search_metrics,
            "agentRecommendations": recs[:5],
            "executionPlan": plan,
        },
        "metadata": _rust_meta(t0),
    }


@router.post(
    "/ab-mcts-rust/recommend",
    body=RustRecommendBody,
    envelope=False,
    summary="Recommend agents",
    rate_limit=200,
    rate_setting="mcts.rust_recommend_per_min",
)
async def rust_recommend(req: ApiRequest) -> Any:
    t0 = time.perf_counter()
    svc = service(req)
    body: RustRecommendBody = req.body
    o = RustOptions(
        max_iterations=100,
        max_depth=5,
        time_limit_ms=500,
        discount_factor=0.9,
        exploration_constant=1.0,
    )
    r = await _rust_search(svc, body.context, body.available_agents, _rust_options(svc, o))
    first = [r.best_path[0]] if r.best_path else []
    ranked = first + [p[0] for p in r.alternatives if p]
    return {
        "success": True,
        "recommendations": [
            {
                "agentName": s.agent,
                "agentType": s.agent_type,
                "confidence": s.average_reward,
                "visits": s.visits,
            }
            for s in ranked[: body.max_recommendations]
        ],
        "metadata": _rust_meta(t0),
    }


@router.post(
    "/ab-mcts-rust/feedback", body=RustFeedbackBody, envelope=False, summary="Agent reward"
)
async def rust_feedback(req: ApiRequest) -> Any:
    t0 = time.perf_counter()
    svc = service(req)
    body: RustFeedbackBody = req.body
    rw = body.reward
    model = svc.orchestrator.registry.update(
        body.agent_name,
        body.task_type,
        1.0 if rw.value > 0.5 else 0.0,
        rw.metadata.execution_time_ms or None,
        rw.metadata.tokens_used,
    )
    svc.rust_feedback += 1
    await svc.save_models()
    return {
        "success": True,
        "message": "Feedback recorded",
        "sessionId": body.session_id,
        "agentName": body.agent_name,
        "model": model.statistics(),
        "metadata": _rust_meta(t0),
    }


@router.get("/ab-mcts-rust/health", envelope=False, public=True, summary="Health (raw)")
async def rust_health(req: ApiRequest) -> Any:
    from workbench import __version__

    svc = service(req)
    return {
        "status": "healthy",
        "version": __version__,
        "uptime_seconds": round(time.time() - svc.started, 3),
        "features": {
            "search": True,
            "recommend": True,
            "feedback": True,
            "persistence": svc.store is not None,
        },
    }


#: The bridge's self-test sizes: iterations and time limit (s) per test type.
RUST_TESTS = {"simple": (50, 1.0), "complex": (200, 3.0), "load": (500, 10.0)}


@router.post(
    "/ab-mcts-rust/test",
    body=RustTestBody,
    envelope=False,
    summary="Self-test: a search over synthetic agents",
)
async def rust_test(req: ApiRequest) -> Any:
    """Runs a search over ``agentCount`` synthetic agents on a private orchestrator (the
    service's models are not touched) and reports whether it finished inside the limit."""
    from workbench.mcts.orchestrate import OrchestrationOptions, Orchestrator

    t0 = time.perf_counter()
    body: RustTestBody = req.body
    iterations, limit_s = RUST_TESTS[body.test_type]
    agents = [f"test-agent-{i + 1}" for i in range(body.agent_count)]
    opts = OrchestrationOptions(iterations=iterations, time_limit_s=limit_s, execute=False)
    r = await asyncio.to_thread(
        Orchestrator().orchestrate, {"taskType": "self-test"}, agents, None, options=opts
    )
    elapsed_ms = (time.perf_counter() - t0) * 1000
    return {
        "success": True,
        "testType": body.test_type,
        "agentCount": body.agent_count,
        "result": {
            "iterations": r.search_metrics["iterations"],
            "plannedIterations": iterations,
            "timeLimitMs": limit_s * 1000,
            "withinTimeLimit": elapsed_ms <= limit_s * 1000,
            "bestPath": [s.agent for s in r.best_path],
            "confidence": r.confidence,
            "searchStatistics": r.search_metrics,
        },
        "metadata": _rust_meta(t0),
    }


@router.get("/ab-mcts-rust/stats", envelope=False, summary="Statistics (raw)")
async def rust_stats(req: ApiRequest) -> Any:
    svc = service(req)
    return {
        "success": True,
        "stats": {
            **svc.orchestrator.statistics(),
            "searches": svc.searches,
            "feedbackReceived": svc.rust_feedback + len(svc.feedback_log),
            "agentModels": len(svc.orchestrator.registry),
        },
        "metadata": {"timestamp": _now(), "version": "rust-0.1.0"},
    }
