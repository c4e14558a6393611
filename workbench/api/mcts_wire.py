"""The platform's camelCase shapes of AB-MCTS, built from the domain's dataclasses.

Each function takes what :mod:`workbench.mcts.orchestrate`, :mod:`workbench.mcts.service` or
:mod:`workbench.mcts.autopilot` return and gives the JSON the TypeScript platform reads: the
``/api/v1/ab-mcts/*`` payloads (inside the envelope) and the native bridge's raw bodies
(``/api/v1/ab-mcts-rust/*``). Nothing here decides anything; key names and their order are
the platform's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from workbench.mcts.autopilot import AutoPilotMetrics, FailedTask, QueuedTask, QueueStatus
from workbench.mcts.models import AgentModel
from workbench.mcts.orchestrate import (
    AgentOutcome,
    ExecutedStep,
    ExecutionPlan,
    OrchestrationResult,
    OrchestratorStatistics,
    PathStep,
    PlanStep,
    SearchMetrics,
    TreeView,
    json_safe,
)
from workbench.mcts.service import (
    BatchResult,
    FeedbackReport,
    MctsHealth,
    MctsMetrics,
    RewardSummary,
    SelfTestResult,
)

__all__ = [
    "BRIDGE_VERSION",
    "autopilot_metrics",
    "batch",
    "bridge_feedback",
    "bridge_health",
    "bridge_meta",
    "bridge_recommendations",
    "bridge_search",
    "bridge_stats",
    "execution_plan",
    "health",
    "iso",
    "metrics",
    "models",
    "now",
    "orchestration",
    "path_step",
    "queue_status",
    "report",
    "search_metrics",
    "self_test",
    "statistics",
    "submitted",
    "tree_view",
]

#: The version the native bridge's bodies report.
BRIDGE_VERSION = "rust-0.1.0"


def iso(dt: datetime) -> str:
    """A UTC time as the platform writes it (``2024-05-01T12:00:00.123456Z``)."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now() -> str:
    return iso(datetime.now(UTC))


# -- orchestration results -------------------------------------------------------------
def path_step(s: PathStep) -> dict[str, Any]:
    return {
        "id": str(s.node_id),
        "agentName": s.agent,
        "agentType": s.agent_type,
        "depth": s.depth,
        "visits": s.visits,
        "averageReward": s.average_reward,
    }


def search_metrics(m: SearchMetrics) -> dict[str, Any]:
    return {
        "nodesExplored": m.nodes_explored,
        "iterations": m.iterations,
        "timeElapsed": m.time_elapsed_ms,
        "averageDepth": m.average_depth,
        "branchingFactor": m.branching_factor,
        "budgetLeft": m.budget_left,
    }


def _plan_step(s: PlanStep) -> dict[str, Any]:
    return {
        "agentName": s.agent,
        "agentType": s.agent_type,
        "estimatedTimeMs": s.estimated_time_ms,
        "estimatedCost": s.estimated_cost,
        "confidence": s.confidence,
    }


def execution_plan(p: ExecutionPlan) -> dict[str, Any]:
    return {
        "steps": [_plan_step(s) for s in p.steps],
        "totalEstimatedTimeMs": p.total_estimated_time_ms,
        "totalEstimatedCost": p.total_estimated_cost,
        "riskAssessment": p.risk_assessment,
    }


def _response(out: AgentOutcome | None) -> dict[str, Any] | None:
    if out is None:
        return None
    return {
        "success": bool(out.success >= 0.5),
        "data": json_safe(out.response),
        "latencyMs": out.latency_ms,
        "tokens": out.tokens,
        "error": out.error,
    }


def _agent_calls(steps: tuple[ExecutedStep, ...]) -> int:
    """Steps that called an agent (a prediction of the models, marked ``predicted``, is not
    a call)."""
    return sum(
        1
        for s in steps
        if not (isinstance(s.outcome.response, dict) and s.outcome.response.get("predicted"))
    )


def _executed_step(s: ExecutedStep) -> dict[str, Any]:
    o = s.outcome
    return {
        "agentName": s.agent,
        "previousAgent": s.previous_agent or None,
        "success": bool(o.success >= 0.5),
        "latencyMs": o.latency_ms,
        "tokens": o.tokens,
        "error": o.error,
    }


def orchestration(r: OrchestrationResult, view: TreeView | None = None) -> dict[str, Any]:
    """``POST /ab-mcts/orchestrate``'s data (with ``visualization`` when ``view`` is given)."""
    response = _response(r.outcome)
    path = list(r.execution_path)
    out = {
        "orchestrationId": r.orchestration_id,
        "response": response,
        "searchMetrics": search_metrics(r.search_metrics),
        "bestAction": r.best_action,
        "confidence": r.confidence,
        "executionPath": path,
        "totalTime": r.total_time_s * 1000.0,
        "resourcesUsed": {
            "agents": sorted(set(r.executed_path)),  # the agents that ran
            "llmCalls": _agent_calls(r.executed_steps),
            "tokensUsed": response["tokens"] if response else 0,
        },
        "recommendations": list(r.recommendations),
        "executionPlan": execution_plan(r.execution_plan),
        "executedPath": list(r.executed_path),
        "steps": [_executed_step(s) for s in r.executed_steps],
    }
    if view is not None:
        out["visualization"] = tree_view(view)
    return out


def batch(b: BatchResult) -> dict[str, Any]:
    """``POST /ab-mcts/orchestrate/batch``'s data."""
    results: list[dict[str, Any]] = []
    for item in b.items:
        if item.result is None:
            results.append(
                {
                    "index": item.index,
                    "success": False,
                    "confidence": 0.0,
                    "response": {
                        "success": False,
                        "message": f"Orchestration failed: {item.error}",
                    },
                    "executionTime": item.execution_time_ms,
                }
            )
        else:
            results.append(
                {
                    "index": item.index,
                    "success": True,
                    "response": _response(item.result.outcome),
                    "confidence": item.result.confidence,
                    "executionTime": item.execution_time_ms,
                }
            )
    ok = b.successful
    return {
        "batchId": b.batch_id,
        "results": results,
        "summary": {
            "total": len(results),
            "successful": ok,
            "failed": len(results) - ok,
            "averageConfidence": b.average_confidence,
            "totalTime": b.total_time_ms,
        },
    }


def tree_view(v: TreeView) -> dict[str, Any]:
    return {
        "orchestrationId": v.orchestration_id,
        "nodes": [
            {
                "id": str(n.node_id),
                "label": n.label,
                "score": n.score,
                "visits": n.visits,
                "depth": n.depth,
                "isLeaf": n.is_leaf,
                "isBest": n.is_best,
            }
            for n in v.nodes
        ],
        "edges": [
            {"source": str(e.source), "target": str(e.target), "weight": e.weight, "label": e.label}
            for e in v.edges
        ],
        "metrics": {
            "totalNodes": v.metrics.total_nodes,
            "maxDepth": v.metrics.max_depth,
            "avgBranchingFactor": v.metrics.avg_branching_factor,
            "explorationRate": v.metrics.exploration_rate,
        },
    }


# -- service views ---------------------------------------------------------------------
def statistics(s: OrchestratorStatistics) -> dict[str, Any]:
    return {
        "totalOrchestrations": s.total_orchestrations,
        "successfulOrchestrations": s.successful_orchestrations,
        "successRate": s.success_rate,
        "averageSearchTime": s.average_search_time_ms,
        "cachedResults": s.cached_results,
        "activeSearches": s.active_searches,
        "circuitBreakerState": s.circuit_breaker_state,
        "circuitBreakers": dict(s.circuit_breakers),
    }


def metrics(m: MctsMetrics) -> dict[str, Any]:
    """``GET /ab-mcts/metrics``'s data."""
    arms = [
        {"name": r["agent"], "mean": r["statistics"]["successRate"], "samples": r["samples"]}
        for r in m.rankings
    ]
    return {
        "orchestrator": statistics(m.statistics),
        "feedback": {
            "queueSize": 0,
            "totalProcessed": m.feedback_processed,
            "aggregationCount": m.feedback_aggregations,
        },
        "thompsonSampling": {"rankedArms": arms, "totalArms": m.agent_models},
        "adaptiveExploration": {"thompson": 0.7, "ucb": 0.3},
        "recommendations": m.recommendations,
    }


def models(task_type: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /ab-mcts/models``'s data from :meth:`ModelRegistry.rankings` rows."""
    return {
        "taskType": task_type,
        "rankings": [
            {k: r[k] for k in ("agent", "performance", "reliability", "samples")} for r in rows
        ],
        "topModels": rows[:5],
    }


def _summary(s: RewardSummary) -> dict[str, Any]:
    return {"count": s.count, "averageReward": s.average_reward}


def report(r: FeedbackReport) -> dict[str, Any]:
    """``GET /ab-mcts/report``'s data."""
    return {
        "summary": {
            "totalFeedbacks": r.total,
            "averageQuality": r.average_quality,
            "topPerformers": list(r.top_performers),
            "needsImprovement": list(r.needs_improvement),
        },
        "byAgent": {a: _summary(s) for a, s in r.by_agent.items()},
        "byTaskType": {t: _summary(s) for t, s in r.by_task_type.items()},
        "recommendations": list(r.recommendations),
    }


def health(h: MctsHealth) -> dict[str, Any]:
    """``GET /ab-mcts/health``'s data."""
    return {
        "status": "healthy" if h.healthy else "degraded",
        "circuitBreaker": h.circuit_breaker,  # the worst of the per-agent breakers
        "circuitBreakers": dict(h.circuit_breakers),
        "successRate": h.success_rate,
        "activeSearches": h.active_searches,
        "timestamp": now(),
    }


# -- auto-pilot ------------------------------------------------------------------------
def autopilot_metrics(m: AutoPilotMetrics) -> dict[str, Any]:
    return {
        "totalRequests": m.total_requests,
        "successfulRequests": m.successful_requests,
        "failedRequests": m.failed_requests,
        "averageResponseTime": m.average_response_time_ms,
        "autoFeedbacks": m.auto_feedbacks,
        "abandonedTasks": m.abandoned_tasks,
    }


def _queued(t: QueuedTask) -> dict[str, Any]:
    return {
        "taskId": t.task_id,
        "userRequest": t.user_request,
        "priority": t.priority,
        "submittedAt": iso(t.submitted_at),
    }


def _failed(f: FailedTask) -> dict[str, Any]:
    return {
        "taskId": f.task_id,
        "userRequest": f.user_request,
        "failures": f.failures,
        "error": f.error,
        "failedAt": iso(f.failed_at),
    }


def queue_status(q: QueueStatus) -> dict[str, Any]:
    return {
        "queued": q.queued,
        "processing": q.processing,
        "queuedTasks": [_queued(t) for t in q.tasks],
        "maxQueue": q.max_queue,
        "failedTasks": [_failed(f) for f in q.failed],
        "queuedBytes": q.queued_bytes,
        "maxQueueBytes": q.max_queue_bytes,
    }


def submitted(task: QueuedTask, position: int) -> dict[str, Any]:
    """``POST /ab-mcts/auto-pilot/submit``'s data."""
    return {
        "taskId": task.task_id,
        "status": "queued",
        "queuePosition": position,
        "timestamp": now(),
    }


# -- the native bridge (raw bodies) ----------------------------------------------------
def bridge_meta(t0: float) -> dict[str, Any]:
    """The bridge's ``metadata`` member; ``t0`` is the ``time.perf_counter()`` at the start."""
    return {
        "durationMs": (time.perf_counter() - t0) * 1000,
        "timestamp": now(),
        "version": BRIDGE_VERSION,
    }


def bridge_search(
    r: OrchestrationResult, rankings: list[dict[str, Any]], available: Sequence[str]
) -> dict[str, Any]:
    """``POST /ab-mcts-rust/search``'s ``result``: the best path with its plan estimates and
    the available agents' standing (``rankings`` of the result's task type)."""
    best_path = [
        {
            "id": str(s.node_id),
            "agentName": s.agent,
            "agentType": s.agent_type,
            "estimatedCost": st.estimated_cost,
            "estimatedTimeMs": st.estimated_time_ms,
            "confidence": s.average_reward,
        }
        for s, st in zip(r.best_path, r.execution_plan.steps, strict=True)
    ]
    recs = [
        {
            "agentName": row["agent"],
            "confidence": row["statistics"]["successRate"],
            "expectedPerformance": row["performance"],
            "samples": row["samples"],
        }
        for row in rankings
        if row["agent"] in available
    ]
    return {
        "orchestrationId": r.orchestration_id,
        "bestPath": best_path,
        "confidence": r.confidence,
        "expectedReward": best_path[0]["confidence"] if best_path else 0.0,
        "searchStatistics": search_metrics(r.search_metrics),
        "agentRecommendations": recs[:5],
        "executionPlan": execution_plan(r.execution_plan),
    }


def bridge_recommendations(r: OrchestrationResult, limit: int) -> list[dict[str, Any]]:
    """``POST /ab-mcts-rust/recommend``'s ``recommendations``: the first agent of the best
    path, then of each alternative path."""
    first = [r.best_path[0]] if r.best_path else []
    ranked = first + [p[0] for p in r.alternatives if p]
    return [
        {
            "agentName": s.agent,
            "agentType": s.agent_type,
            "confidence": s.average_reward,
            "visits": s.visits,
        }
        for s in ranked[:limit]
    ]


def bridge_feedback(
    session_id: str, agent: str, model: AgentModel, t0: float, *, duplicate: bool = False
) -> dict[str, Any]:
    """``POST /ab-mcts-rust/feedback``'s body; ``duplicate``: already credited, nothing
    changed."""
    return {
        "success": True,
        "message": "Feedback already recorded" if duplicate else "Feedback recorded",
        "sessionId": session_id,
        "agentName": agent,
        "model": model.statistics(),
        "duplicate": duplicate,
        "metadata": bridge_meta(t0),
    }


def bridge_health(version: str, uptime_s: float, persistent: bool) -> dict[str, Any]:
    return {
        "status": "healthy",
        "version": version,
        "uptime_seconds": round(uptime_s, 3),
        "features": {
            "search": True,
            "recommend": True,
            "feedback": True,
            "persistence": persistent,
        },
    }


def bridge_stats(
    s: OrchestratorStatistics, searches: int, feedback_received: int, agent_models: int
) -> dict[str, Any]:
    return {
        "success": True,
        "stats": {
            **statistics(s),
            "searches": searches,
            "feedbackReceived": feedback_received,
            "agentModels": agent_models,
        },
        "metadata": {"timestamp": now(), "version": BRIDGE_VERSION},
    }


def self_test(t: SelfTestResult, test_type: str, agent_count: int, t0: float) -> dict[str, Any]:
    """``POST /ab-mcts-rust/test``'s body."""
    r = t.result
    return {
        "success": True,
        "testType": test_type,
        "agentCount": agent_count,
        "result": {
            "iterations": r.search_metrics.iterations,
            "plannedIterations": t.planned_iterations,
            "timeLimitMs": t.time_limit_s * 1000,
            "withinTimeLimit": t.within_time_limit,
            "bestPath": list(r.execution_path),
            "confidence": r.confidence,
            "searchStatistics": search_metrics(r.search_metrics),
        },
        "metadata": bridge_meta(t0),
    }
