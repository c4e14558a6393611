"""HTTP routes of the native AB-MCTS bridge under ``/api/v1/ab-mcts-rust`` (raw bodies, no
envelope), served by the same :class:`~workbench.mcts.service.MctsService` as
``/api/v1/ab-mcts`` (:data:`workbench.api.mcts.SERVICE`), so both see the same agent models.

``search`` and ``recommend`` search without running an agent; ``feedback`` reports an agent's
outcome directly; ``test`` runs a self-test search over synthetic agents on a private
orchestrator. As the platform's bridge did, each client (peer address) may send 100 ``search``
and 200 ``recommend`` requests a minute (``[mcts] rust_search_per_min`` and
``rust_recommend_per_min``; 0 turns a limit off); beyond that 429 ``RATE_LIMITED`` with
``Retry-After``. Every request field is bounded (see :mod:`workbench.api.mcts_schemas`): a
feedback outside its bounds (an execution time over 24 hours, say) is a 400 naming the field,
and changes no model. ``health`` needs no token and reports only the version, the uptime and
the features.
"""

from __future__ import annotations

import time
from typing import Any

from workbench import __version__
from workbench.api import mcts_wire as wire
from workbench.api.mcts import SERVICE
from workbench.api.mcts_schemas import (
    RustContext,
    RustFeedbackBody,
    RustOptions,
    RustRecommendBody,
    RustSearchBody,
    RustTestBody,
)
from workbench.api.routing import ApiRequest, ApiRouter
from workbench.errors import InputError
from workbench.mcts.orchestrate import OrchestrationOptions, OrchestrationResult
from workbench.mcts.service import MctsService

__all__ = ["router"]

router = ApiRouter("/api/v1/ab-mcts-rust", tag="ab-mcts", envelope=False, service=SERVICE)

#: The options of a ``recommend`` search: short and shallow.
RECOMMEND_OPTIONS = RustOptions(
    max_iterations=100,
    max_depth=5,
    time_limit_ms=500,
    discount_factor=0.9,
    exploration_constant=1.0,
)


def _options(svc: MctsService, o: RustOptions) -> OrchestrationOptions:
    limit = svc.config.max_iterations
    if o.max_iterations > limit:
        raise InputError(
            f"options.maxIterations: at most {limit}, got {o.max_iterations}",
            details=[{"field": "options.maxIterations"}],
        )
    return svc.options(
        o.max_iterations,
        o.max_depth,
        o.seed,
        field="options.maxIterations",
        exploration=o.exploration_constant,
        discount=o.discount_factor,
        time_limit_s=o.time_limit_ms / 1000,
        execute=False,
    )


async def _search(
    svc: MctsService, ctx: RustContext, agents: list[str], opts: OrchestrationOptions
) -> OrchestrationResult:
    svc.check_agents(agents, "availableAgents")
    return await svc.run_orchestration(
        ctx.task,
        {"sessionId": ctx.execution_context.session_id},
        opts,
        agents=agents,
        task_type=svc.task_type_of(ctx.context_data, "context.contextData.taskType"),
    )


@router.post(
    "/search",
    body=RustSearchBody,
    summary="Search (raw)",
    rate_limit=100,
    rate_setting="rust_search_per_min",
)
async def rust_search(req: ApiRequest) -> Any:
    t0 = time.perf_counter()
    svc = SERVICE.of(req)
    body: RustSearchBody = req.body
    r = await _search(svc, body.context, body.available_agents, _options(svc, body.options))
    return {
        "success": True,
        "result": wire.bridge_search(r, svc.rankings(r.task_type), body.available_agents),
        "metadata": wire.bridge_meta(t0),
    }


@router.post(
    "/recommend",
    body=RustRecommendBody,
    summary="Recommend agents",
    rate_limit=200,
    rate_setting="rust_recommend_per_min",
)
async def rust_recommend(req: ApiRequest) -> Any:
    t0 = time.perf_counter()
    svc = SERVICE.of(req)
    body: RustRecommendBody = req.body
    opts = _options(svc, RECOMMEND_OPTIONS)
    r = await _search(svc, body.context, body.available_agents, opts)
    return {
        "success": True,
        "recommendations": wire.bridge_recommendations(r, body.max_recommendations),
        "metadata": wire.bridge_meta(t0),
    }


@router.post(
    "/feedback",
    body=RustFeedbackBody,
    summary="Agent reward (credited once)",
    responses={404: "unknown or expired orchestrationId"},
)
async def rust_feedback(req: ApiRequest) -> Any:
    t0 = time.perf_counter()
    body: RustFeedbackBody = req.body
    rw = body.reward
    model, duplicate = await SERVICE.of(req).bridge_feedback_once(
        body.session_id,
        body.agent_name,
        body.task_type,
        rw.value,
        rw.metadata.execution_time_ms or None,
        rw.metadata.tokens_used,
        orchestration_id=body.orchestration_id,
    )
    return wire.bridge_feedback(body.session_id, body.agent_name, model, t0, duplicate=duplicate)


@router.get("/health", public=True, summary="Health (raw)")
async def rust_health(req: ApiRequest) -> Any:
    svc = SERVICE.of(req)
    return wire.bridge_health(__version__, svc.uptime_s(), svc.persistent)


@router.post("/test", body=RustTestBody, summary="Self-test: a search over synthetic agents")
async def rust_test(req: ApiRequest) -> Any:
    """Runs a search over ``agentCount`` synthetic agents on a private orchestrator (the
    service's models are not touched) and reports whether it finished inside the limit."""
    t0 = time.perf_counter()
    body: RustTestBody = req.body
    outcome = await SERVICE.of(req).self_test(body.test_type, body.agent_count)
    return wire.self_test(outcome, body.test_type, body.agent_count, t0)


@router.get("/stats", summary="Statistics (raw)")
async def rust_stats(req: ApiRequest) -> Any:
    svc = SERVICE.of(req)
    received = svc.bridge_feedback + len(svc.feedback_log)
    return wire.bridge_stats(
        svc.statistics(), svc.searches, received, len(svc.orchestrator.registry)
    )
