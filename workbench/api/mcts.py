"""HTTP routes of AB-MCTS under ``/api/v1/ab-mcts`` (the platform's envelope).

Orchestrate one request or a batch, rate an orchestration, read the agents' rankings, the
metrics, the feedback report, an orchestration's tree and the health, reset (admin), and
drive the auto-pilot (a background queue of requests). The native bridge's raw routes
(``/api/v1/ab-mcts-rust/*``) are in :mod:`workbench.api.mcts_bridge` and share this module's
:data:`SERVICE`.

The service behind them (:class:`~workbench.mcts.service.MctsService`) is built from the
validated ``[mcts]`` settings at start-up (see :mod:`workbench.api.services`) and stops its
auto-pilot with the app. Limits: at most ``[mcts] max_agents`` agents (100) and
``[mcts] max_iterations`` iterations (10,000) per request, and every request field within the
bounds listed in :mod:`workbench.api.mcts_schemas`; a request outside them gets 400
``VALIDATION_ERROR`` naming the field. The auto-pilot's queue is bounded in tasks
(``[mcts] autopilot_max_queue``, 1000) and in bytes (``[mcts] autopilot_max_queue_bytes``,
64 MiB): a submit beyond either gets 409 ``CAPACITY_EXCEEDED``. With
``[mcts] persist = "redis"`` the agent models are loaded from and saved to Redis under
``ab-mcts:models:default``. There is no agent runtime behind the service, so the chosen
agent's outcome is a prediction of its models (marked ``"predicted": true``); real outcomes
come in through the feedback routes.

``/health`` needs no token; it reports the verdict, the agents' breaker states, the success
rate and the searches in flight, never a request's contents.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.alias_generators import to_camel

from workbench.api import mcts_wire as wire
from workbench.api.mcts_schemas import (
    BatchBody,
    FeedbackBody,
    ModelsQuery,
    OrchestrateBody,
    OrchestrateOptionsBody,
    SubmitBody,
)
from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.mcts.graph import tree_graph
from workbench.mcts.orchestrate import OrchestrationOptions
from workbench.mcts.service import BatchRequest, MctsConfig, MctsService

__all__ = ["SERVICE", "router"]

#: The AB-MCTS service: built at start-up in the worker that owns it, closed with the app.
SERVICE: ServiceSpec[MctsConfig, MctsService] = ServiceSpec(
    "mcts", config=MctsConfig.from_settings, build=MctsService, close=MctsService.close
)

router = ApiRouter("/api/v1/ab-mcts", tag="ab-mcts", service=SERVICE)


def _options(svc: MctsService, o: OrchestrateOptionsBody) -> OrchestrationOptions:
    return svc.options(o.max_iterations, o.max_depth, o.seed, field="options.maxIterations")


@router.post("/orchestrate", body=OrchestrateBody, summary="Choose agents for a request")
async def orchestrate_route(req: ApiRequest) -> Any:
    svc = SERVICE.of(req)
    body: OrchestrateBody = req.body
    opts = _options(svc, body.options)
    agents = svc.resolve_agents(body.context.get("agents"))
    result = await svc.run_orchestration(
        body.user_request,
        body.context,
        opts,
        agents=agents,
        task_type=svc.task_type_of(body.context, "context.taskType"),
    )
    view = svc.visualization(result.orchestration_id) if body.options.visualize else None
    return Reply(wire.orchestration(result, view), meta={"message": "Orchestration completed"})


@router.post("/orchestrate/batch", body=BatchBody, summary="Orchestrate several requests")
async def orchestrate_batch(req: ApiRequest) -> Any:
    svc = SERVICE.of(req)
    body: BatchBody = req.body
    opts = _options(svc, body.options)
    requests = [  # every item is checked before any runs
        BatchRequest(
            item.user_request,
            item.context,
            tuple(svc.resolve_agents(item.context.get("agents"), f"requests.{i}.context.agents")),
            svc.task_type_of(item.context, f"requests.{i}.context.taskType"),
        )
        for i, item in enumerate(body.requests)
    ]
    return wire.batch(await svc.orchestrate_batch(requests, opts, source="ab-mcts-api-batch"))


@router.post(
    "/feedback",
    body=FeedbackBody,
    summary="Rate an orchestration (1..5)",
    responses={404: "unknown or expired orchestration"},
)
async def feedback_route(req: ApiRequest) -> Any:
    """Credited once per orchestration id (here or through ``/ab-mcts-rust/feedback``) to
    the last agent that ran; a repeat changes nothing and answers ``duplicate: true``."""
    body: FeedbackBody = req.body
    rec = await SERVICE.of(req).feedback(body.orchestration_id, body.rating, body.comment)
    return {
        "message": "Feedback already recorded" if rec.duplicate else "Feedback recorded",
        "orchestrationId": body.orchestration_id,
        "rating": body.rating,
        "duplicate": rec.duplicate,
        "creditedAgents": list(rec.credited_agents),
    }


@router.get("/metrics", summary="Orchestrator, feedback and bandit statistics")
async def metrics_route(req: ApiRequest) -> Any:
    return wire.metrics(SERVICE.of(req).metrics())


@router.get("/models", query=ModelsQuery, summary="Agent rankings for a task type")
async def models_route(req: ApiRequest) -> Any:
    task_type = req.query.task_type
    return wire.models(task_type, SERVICE.of(req).rankings(task_type))


class VisualizationQuery(WireModel):
    """Query of ``GET /visualization/{orchestrationId}``."""

    format: Literal["platform", "graph"] = Field(
        default="platform",
        description="platform (the default): the platform's nodes, edges and metrics; "
        "graph: the tree graph (nodes with parents, visits and mean scores, the best path, "
        "how many nodes were left out, and the wider-vs-deeper decisions over time)",
    )


@router.get(
    "/visualization/{orchestration_id}",
    query=VisualizationQuery,
    summary="Tree of one orchestration",
    description="Without format (or with format=platform) the platform's nodes, edges and "
    "metrics; format=graph the tree graph (workbench.mcts.graph) with camelCase keys. Any "
    "other format is a 400 VALIDATION_ERROR naming the field and the allowed values.",
)
async def visualization_route(req: ApiRequest) -> Any:
    view = SERVICE.of(req).visualization(req.path["orchestration_id"])
    if req.query.format == "graph":
        return _camel_keys(tree_graph(view).to_dict())
    return wire.tree_view(view)


def _camel_keys(doc: Any) -> Any:
    """``doc`` with every dict key in camelCase (``node_id`` -> ``nodeId``), as on the wire."""
    if isinstance(doc, dict):
        return {to_camel(k): _camel_keys(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_camel_keys(v) for v in doc]
    return doc


@router.get("/report", summary="Feedback report")
async def report_route(req: ApiRequest) -> Any:
    return wire.report(SERVICE.of(req).feedback_report())


@router.post("/reset", admin=True, summary="Forget orchestrations and agent models")
async def reset_route(req: ApiRequest) -> Any:
    await SERVICE.of(req).reset()
    return Reply(
        {"message": "AB-MCTS state reset", "timestamp": wire.now()},
        meta={"message": "AB-MCTS state reset"},
    )


@router.get("/health", summary="Health of the orchestrator", public=True)
async def health_route(req: ApiRequest) -> Any:
    return wire.health(SERVICE.of(req).health())


# -- auto-pilot --------------------------------------------------------------------------
@router.post("/auto-pilot/start", summary="Start the auto-pilot")
async def autopilot_start(req: ApiRequest) -> Any:
    ap = SERVICE.of(req).autopilot
    ap.start()
    return {
        "status": "started",
        "metrics": wire.autopilot_metrics(ap.metrics),
        "timestamp": wire.now(),
    }


@router.post("/auto-pilot/stop", summary="Stop the auto-pilot")
async def autopilot_stop(req: ApiRequest) -> Any:
    ap = SERVICE.of(req).autopilot
    await ap.stop()
    return {
        "status": "stopped",
        "finalMetrics": wire.autopilot_metrics(ap.metrics),
        "timestamp": wire.now(),
    }


@router.get("/auto-pilot/status", summary="Auto-pilot state and queue")
async def autopilot_status(req: ApiRequest) -> Any:
    ap = SERVICE.of(req).autopilot
    return {
        "active": ap.active,
        "metrics": wire.autopilot_metrics(ap.metrics),
        "queue": wire.queue_status(ap.queue_status()),
        "timestamp": wire.now(),
    }


@router.post(
    "/auto-pilot/submit",
    body=SubmitBody,
    summary="Queue a request",
    responses={
        409: "the auto-pilot queue is full: [mcts] autopilot_max_queue tasks or "
        "autopilot_max_queue_bytes bytes"
    },
)
async def autopilot_submit(req: ApiRequest) -> Any:
    svc = SERVICE.of(req)
    body: SubmitBody = req.body
    agents = svc.resolve_agents(body.context.get("agents"))  # now, not in the background
    task, position = svc.autopilot.submit(
        body.user_request,
        body.context,
        body.priority,
        agents=agents,
        task_type=svc.task_type_of(body.context, "context.taskType"),
    )
    return Reply(wire.submitted(task, position), meta={"message": "Task queued"})


@router.get("/auto-pilot/metrics", summary="Auto-pilot performance")
async def autopilot_metrics(req: ApiRequest) -> Any:
    ap = SERVICE.of(req).autopilot
    return {
        "performance": wire.autopilot_metrics(ap.metrics),
        "queue": wire.queue_status(ap.queue_status()),
        "recommendations": ap.recommendations(),
        "timestamp": wire.now(),
    }
