"""What an orchestration returns and keeps: results, feedback, tree views and saved summaries.

Domain results of :mod:`workbench.mcts.orchestrate` as frozen dataclasses with snake_case
``to_dict()``; the platform's camelCase shapes are built in the API layer
(:mod:`workbench.api.mcts_wire`). :class:`SavedOrchestration` is the versioned summary kept
in Redis under ``ab-mcts:result:<id>`` (format :data:`SAVED_FORMAT`; format 1, written by
earlier versions, still loads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from workbench.errors import StorageFormatError

__all__ = [
    "SAVED_FORMAT",
    "AgentOutcome",
    "ExecutedStep",
    "ExecutionPlan",
    "FeedbackRecord",
    "OrchestrationResult",
    "OrchestratorStatistics",
    "PathStep",
    "PlanStep",
    "SavedOrchestration",
    "SearchMetrics",
    "TreeEdgeView",
    "TreeNodeView",
    "TreeView",
    "TreeViewMetrics",
    "json_safe",
]


@dataclass(frozen=True)
class AgentOutcome:
    """What running an agent produced.

    Attributes:
        success: 1/True on success, 0/False on failure (fractions allowed).
        latency_ms: Wall time of the agent, milliseconds.
        tokens: Tokens (or other resource units) used.
        response: The agent's answer (opaque).
        error: Error message when the agent failed with an exception.
    """

    success: float
    latency_ms: float
    tokens: float = 0.0
    response: Any = None
    error: str | None = None


@dataclass(frozen=True)
class ExecutedStep:
    """One step of a plan that ran.

    Attributes:
        agent: The agent.
        previous_agent: The agent before it (``""`` for the first step).
        outcome: What it produced.
        agent_n, pair_n: The ``n`` of the agent's and of the pair's model just after this
            outcome was learnt (locating it for a later correction by feedback); -1 when it
            was not learnt.
        learnt_at: The task type's discount clock just after it was learnt (the weight of a
            later correction is ``decay ** ticks since``); -1 when not learnt.
    """

    agent: str
    previous_agent: str
    outcome: AgentOutcome
    agent_n: int = -1
    pair_n: int = -1
    learnt_at: int = -1

    @property
    def learnt(self) -> bool:
        return self.agent_n >= 0

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "agent": self.agent,
            "previous_agent": self.previous_agent,
            "success": o.success,
            "latency_ms": o.latency_ms,
            "tokens": o.tokens,
            "error": o.error,
            "agent_n": self.agent_n,
            "pair_n": self.pair_n,
            "learnt_at": self.learnt_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExecutedStep:
        err = d.get("error")
        outcome = AgentOutcome(
            float(d["success"]),
            float(d["latency_ms"]),
            float(d["tokens"]),
            None,
            None if err is None else str(err),
        )
        return cls(
            str(d["agent"]),
            str(d["previous_agent"]),
            outcome,
            int(d["agent_n"]),
            int(d["pair_n"]),
            int(d.get("learnt_at", -1)),
        )


@dataclass(frozen=True)
class PathStep:
    """One node of a path: the agent, its visits and mean (discounted) reward.

    Attributes:
        node_id: Index of the node in the search tree.
        agent: The agent run at this step.
        agent_type: The agent's platform type (:func:`~workbench.mcts.models.agent_type`).
        depth: Depth of the node (the first agent is at depth 1).
        visits: Visits of the node during the search.
        average_reward: Mean discounted reward under the node.
    """

    node_id: int
    agent: str
    agent_type: str
    depth: int
    visits: int
    average_reward: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchMetrics:
    """What one orchestration search did.

    Attributes:
        nodes_explored: Nodes added to the tree (the root not counted).
        iterations: Iterations run (fewer than asked when the budget, the time limit or a
            cancel stopped the search).
        time_elapsed_ms: Wall time of the search, milliseconds.
        average_depth: Mean depth of the tree's nodes.
        branching_factor: Mean number of children of the nodes that have any.
        budget_left: Search budget left (never negative).
    """

    nodes_explored: int
    iterations: int
    time_elapsed_ms: float
    average_depth: float
    branching_factor: float
    budget_left: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchMetrics:
        return cls(
            int(d["nodes_explored"]),
            int(d["iterations"]),
            float(d["time_elapsed_ms"]),
            float(d["average_depth"]),
            float(d["branching_factor"]),
            float(d["budget_left"]),
        )


@dataclass(frozen=True)
class PlanStep:
    """One agent of an execution plan, with what its models expect of it.

    Attributes:
        agent: The agent.
        agent_type: Its platform type.
        estimated_time_ms: Posterior mean latency, milliseconds.
        estimated_cost: Expected resource usage (tokens).
        confidence: Posterior mean success rate.
    """

    agent: str
    agent_type: str
    estimated_time_ms: float
    estimated_cost: float
    confidence: float


@dataclass(frozen=True)
class ExecutionPlan:
    """The best path as a plan: per-step estimates, totals and a risk level.

    Attributes:
        steps: One step per agent of the best path, first to last.
        total_estimated_time_ms: Sum of the steps' estimated times.
        total_estimated_cost: Sum of the steps' estimated costs.
        risk_assessment: ``low`` (confidence > 0.7), ``medium`` (> 0.4) or ``high``.
    """

    steps: tuple[PlanStep, ...]
    total_estimated_time_ms: float
    total_estimated_cost: float
    risk_assessment: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OrchestrationResult:
    """Outcome of :meth:`Orchestrator.orchestrate`.

    Attributes:
        orchestration_id: Id to send feedback for and to fetch the visualization.
        task_type: Task type whose models were used and updated.
        best_path: Agents from the first to the last of the best plan (distinct unless
            ``allow_repeats``).
        best_action: The plan's first agent (``"fallback"`` if none).
        confidence: The best plan's simulated reward (its expected reward under the models
            the search planned with).
        alternatives: Up to three other paths, best first.
        search_metrics: What the search did.
        execution_plan: The best path with its estimates.
        recommendations: Human-readable advice (platform rules).
        outcome: What the executed plan produced (``None`` if nothing ran): its last step's
            success, response and error, the steps' total latency and tokens.
        reward: Reward of that outcome (the planning scale).
        total_time_s: Wall time of search plus execution.
        executed_agent: The last agent that ran (whose answer is ``outcome``; ``None`` if
            nothing ran).
        skipped_agents: Candidates not called because their breaker was open, in order.
        executed_steps: The steps that ran, in order (the plan as executed: a step whose
            agent's breaker was open is taken by the next-best agent for that position).
    """

    orchestration_id: str
    task_type: str
    best_path: tuple[PathStep, ...]
    best_action: str
    confidence: float
    alternatives: tuple[tuple[PathStep, ...], ...]
    search_metrics: SearchMetrics
    execution_plan: ExecutionPlan
    recommendations: tuple[str, ...]
    outcome: AgentOutcome | None
    reward: float | None
    total_time_s: float
    executed_agent: str | None = None
    skipped_agents: tuple[str, ...] = ()
    executed_steps: tuple[ExecutedStep, ...] = ()

    @property
    def execution_path(self) -> tuple[str, ...]:
        """The agents of the best path, first to last."""
        return tuple(s.agent for s in self.best_path)

    @property
    def executed_path(self) -> tuple[str, ...]:
        """The agents that ran, first to last."""
        return tuple(s.agent for s in self.executed_steps)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (an agent's response that is not JSON becomes its
        ``repr``)."""
        out = self.outcome
        return {
            "orchestration_id": self.orchestration_id,
            "task_type": self.task_type,
            "best_path": [s.to_dict() for s in self.best_path],
            "best_action": self.best_action,
            "confidence": self.confidence,
            "alternatives": [[s.to_dict() for s in p] for p in self.alternatives],
            "search_metrics": self.search_metrics.to_dict(),
            "execution_plan": self.execution_plan.to_dict(),
            "execution_path": list(self.execution_path),
            "recommendations": list(self.recommendations),
            "outcome": None
            if out is None
            else {
                "success": out.success,
                "latency_ms": out.latency_ms,
                "tokens": out.tokens,
                "response": json_safe(out.response),
                "error": out.error,
            },
            "reward": self.reward,
            "total_time_s": self.total_time_s,
            "executed_agent": self.executed_agent,
            "skipped_agents": list(self.skipped_agents),
            "executed_path": list(self.executed_path),
            "executed_steps": [s.to_dict() for s in self.executed_steps],
        }


@dataclass(frozen=True)
class FeedbackRecord:
    """A rating or reward recorded for an orchestration (:meth:`Orchestrator.feedback`).

    Attributes:
        orchestration_id: The orchestration rated.
        agent: The last agent that ran (``best_action`` when nothing ran).
        task_type: The task type of that model.
        rating: The user's rating (1..5), or ``None`` when a reward was given.
        reward: The reward in [0, 1] (``rating / 5`` for a rating).
        comment: The user's comment.
        timestamp: When it was recorded, seconds since the epoch.
        credited_agents: The agents whose models learnt from it (empty when nothing ran or
            for a duplicate).
        duplicate: The orchestration had already been credited: nothing changed.
    """

    orchestration_id: str
    agent: str
    task_type: str
    rating: float | None
    reward: float
    comment: str | None
    timestamp: float
    credited_agents: tuple[str, ...] = ()
    duplicate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TreeNodeView:
    """A node of an orchestration's tree view.

    Attributes:
        node_id: Index in the tree (0 is the root).
        label: The node's agent (``"root"`` for the root).
        score: Mean reward under the node.
        visits: Visits of the node.
        depth: Depth of the node.
        is_leaf: The node has no children.
        is_best: The node is on the best path (the root always is).
    """

    node_id: int
    label: str
    score: float
    visits: int
    depth: int
    is_leaf: bool
    is_best: bool


@dataclass(frozen=True)
class TreeEdgeView:
    """A parent-child edge of a tree view, weighted by the child's visits."""

    source: int
    target: int
    weight: int
    label: str


@dataclass(frozen=True)
class TreeViewMetrics:
    """Shape of the whole tree behind a view.

    Attributes:
        total_nodes: Nodes of the tree, the root included.
        max_depth: Depth of the deepest node.
        avg_branching_factor: Mean number of children of the nodes that have any.
        exploration_rate: Share of the non-root nodes visited at most once.
    """

    total_nodes: int
    max_depth: int
    avg_branching_factor: float
    exploration_rate: float


@dataclass(frozen=True)
class TreeView:
    """Nodes, edges and metrics of one orchestration's tree (:meth:`Orchestrator.visualization`).

    Attributes:
        orchestration_id: The orchestration.
        nodes: The most visited nodes (at most ``max_nodes``) plus the best path, by index.
        edges: The edges between kept nodes.
        metrics: Shape of the whole tree.
    """

    orchestration_id: str
    nodes: tuple[TreeNodeView, ...]
    edges: tuple[TreeEdgeView, ...]
    metrics: TreeViewMetrics

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TreeView:
        """The inverse of :meth:`to_dict`."""
        return cls(
            str(d["orchestration_id"]),
            tuple(TreeNodeView(**n) for n in d["nodes"]),
            tuple(TreeEdgeView(**e) for e in d["edges"]),
            TreeViewMetrics(**d["metrics"]),
        )

    @classmethod
    def _from_format_1(cls, d: Mapping[str, Any]) -> TreeView:
        """A view saved by format 1 of :class:`SavedOrchestration` (the platform's keys)."""
        m = d["metrics"]
        return cls(
            str(d["orchestrationId"]),
            tuple(
                TreeNodeView(
                    int(n["id"]),
                    str(n["label"]),
                    float(n["score"]),
                    int(n["visits"]),
                    int(n["depth"]),
                    bool(n["isLeaf"]),
                    bool(n["isBest"]),
                )
                for n in d["nodes"]
            ),
            tuple(
                TreeEdgeView(int(e["source"]), int(e["target"]), int(e["weight"]), str(e["label"]))
                for e in d["edges"]
            ),
            TreeViewMetrics(
                int(m["totalNodes"]),
                int(m["maxDepth"]),
                float(m["avgBranchingFactor"]),
                float(m["explorationRate"]),
            ),
        )


#: Version of the orchestration summaries written to a :class:`ResultStore`.
SAVED_FORMAT = 2


@dataclass(frozen=True)
class SavedOrchestration:
    """What a :class:`ResultStore` keeps of an orchestration, so that feedback (and, with
    ``persist_trees``, the visualization) works after it left memory or in another process.

    Saved as versioned JSON (``format``: :data:`SAVED_FORMAT`); summaries written before the
    format was numbered (format 1, the platform's camelCase keys) still load.

    Attributes:
        orchestration_id: The orchestration.
        best_action: The first agent of the best path (``"fallback"`` if none).
        task_type: The task type whose models were used.
        confidence: Mean reward under the last node of the best path.
        execution_path: The agents of the best path.
        executed_agent: The agent that ran (``None`` if nothing ran).
        search_metrics: What the search did (``None`` where a summary lacks them).
        recommendations: The advice given.
        timestamp: When it was saved, seconds since the epoch.
        visualization: The tree view (saved with ``persist_trees`` only).
        executed_steps: The steps that ran (responses are not kept).
        credited: Feedback for it has been learnt (a repeat changes nothing).
    """

    orchestration_id: str
    best_action: str
    task_type: str
    confidence: float
    execution_path: tuple[str, ...]
    executed_agent: str | None
    search_metrics: SearchMetrics | None
    recommendations: tuple[str, ...]
    timestamp: float
    visualization: TreeView | None = None
    executed_steps: tuple[ExecutedStep, ...] = ()
    credited: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": SAVED_FORMAT,
            "orchestration_id": self.orchestration_id,
            "best_action": self.best_action,
            "task_type": self.task_type,
            "confidence": self.confidence,
            "execution_path": list(self.execution_path),
            "executed_agent": self.executed_agent,
            "search_metrics": None
            if self.search_metrics is None
            else self.search_metrics.to_dict(),
            "recommendations": list(self.recommendations),
            "timestamp": self.timestamp,
            "executed_steps": [s.to_dict() for s in self.executed_steps],
            "credited": self.credited,
        }
        if self.visualization is not None:
            out["visualization"] = self.visualization.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SavedOrchestration:
        """Read a saved summary of format 2, or of format 1 (no ``format`` member).

        Raises:
            StorageFormatError: an unknown format, or a corrupt summary.
        """
        fmt = d.get("format", 1 if "searchId" in d else None)
        try:
            if fmt == SAVED_FORMAT:
                metrics, view = d.get("search_metrics"), d.get("visualization")
                return cls(
                    str(d["orchestration_id"]),
                    str(d["best_action"]),
                    str(d["task_type"]),
                    float(d["confidence"]),
                    tuple(str(a) for a in d["execution_path"]),
                    None if d["executed_agent"] is None else str(d["executed_agent"]),
                    None if metrics is None else SearchMetrics.from_dict(metrics),
                    tuple(str(r) for r in d["recommendations"]),
                    float(d["timestamp"]),
                    None if view is None else TreeView.from_dict(view),
                    tuple(ExecutedStep.from_dict(s) for s in d.get("executed_steps", ())),
                    bool(d.get("credited", False)),
                )
            if fmt == 1:
                return cls._from_format_1(d)
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageFormatError(f"saved orchestration is corrupt: {exc!r}") from None
        raise StorageFormatError(
            f"saved orchestration has format {fmt!r}; this version reads 1 and {SAVED_FORMAT}"
        )

    @classmethod
    def _from_format_1(cls, d: Mapping[str, Any]) -> SavedOrchestration:
        m, view, executed = d.get("searchMetrics"), d.get("visualization"), d.get("executedAgent")
        return cls(
            str(d["searchId"]),
            str(d["bestAction"]),
            str(d["taskType"]),
            float(d.get("confidence", 0.0)),
            tuple(str(a) for a in d.get("executionPath", ())),
            None if executed is None else str(executed),
            None
            if m is None
            else SearchMetrics(
                int(m["nodesExplored"]),
                int(m["iterations"]),
                float(m["timeElapsed"]),
                float(m["averageDepth"]),
                float(m["branchingFactor"]),
                float(m["budgetLeft"]),
            ),
            tuple(str(r) for r in d.get("recommendations", ())),
            float(d.get("timestamp", 0.0)),
            None if view is None else TreeView._from_format_1(view),
        )


@dataclass(frozen=True)
class OrchestratorStatistics:
    """Counters of an :class:`Orchestrator` since it was made (or reset).

    Attributes:
        total_orchestrations: Orchestrations run.
        successful_orchestrations: Of those, how many executed an agent that succeeded.
        success_rate: ``successful / total`` (``None`` before the first).
        average_search_time_ms: Mean wall time of a search (``None`` before the first).
        cached_results: Orchestrations remembered for feedback.
        active_searches: Orchestrations in progress now (searching or executing).
        circuit_breaker_state: The worst of the agents' breaker states.
        circuit_breakers: Each agent's breaker state.
    """

    total_orchestrations: int
    successful_orchestrations: int
    success_rate: float | None
    average_search_time_ms: float | None
    cached_results: int
    active_searches: int
    circuit_breaker_state: str
    circuit_breakers: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def json_safe(x: Any) -> Any:
    """``x`` where it is JSON-ready (None, str, number, bool, list, dict), else its ``repr``."""
    return x if _jsonable(x) else repr(x)


def _jsonable(x: Any) -> bool:
    return x is None or isinstance(x, str | int | float | bool | list | dict)
