"""Agent orchestration: choose which agent acts next for a request, learning from outcomes.

A jitted search (``_kernels.orchestrate_search``) grows a tree of agent sequences. Each
iteration selects with the platform's blend ``0.7 Thompson(Beta) + 0.3 UCB1`` (C = 1.414),
expands one agent not yet tried at that node (never a duplicate), predicts its outcome from
the agent's Bayesian models (:mod:`workbench.mcts.models`; no sleeping, no real call) and
backpropagates ``0.5 quality + 0.3 speed + 0.2 cost`` discounted by 0.95 per level. The best
path's first agent is then run through the caller's *executor* (a real agent, or
:class:`ModelExecutor`, which samples the models), and the observed outcome updates that
agent's models, which persist across searches (and to files or Redis through
:mod:`workbench.mcts.storage`). :meth:`Orchestrator.feedback` turns a user rating (1..5) or
reward components into another observation.

Executing an agent is guarded as the platform expects of a production orchestrator: each call
has a time limit (``agent_timeout_s``, with bounded concurrency) and each agent its own
circuit breaker (:mod:`workbench.breaker`: 3 consecutive errors or time-outs open it, a probe
after ``breaker_reset_s``, 2 successes close it). An agent whose breaker is open is not called;
the next-best first agent of the search runs instead (the fallback), and when every candidate
is open nothing runs and the result says why. Only errors and time-outs trip a breaker: an
unsuccessful answer is an observation for the models, not an outage.

:meth:`Orchestrator.orchestrate_async` is the same with an ``async`` executor; both share
the search (``_search``) and the learning and bookkeeping (``_finish``). What they return
is in :mod:`workbench.mcts.results` (re-exported here).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from workbench import metrics
from workbench.breaker import BreakerOpen, BreakerSet, TimeLimiter
from workbench.errors import (
    BackendUnavailable,
    InputError,
    NotFoundError,
    WaitTimeout,
)
from workbench.mcts import _kernels
from workbench.mcts._random import rng_seed
from workbench.mcts.models import ModelRegistry, agent_type
from workbench.mcts.results import (
    SAVED_FORMAT,
    AgentOutcome,
    ExecutionPlan,
    FeedbackRecord,
    OrchestrationResult,
    OrchestratorStatistics,
    PathStep,
    PlanStep,
    SavedOrchestration,
    SearchMetrics,
    TreeEdgeView,
    TreeNodeView,
    TreeView,
    TreeViewMetrics,
    json_safe,
)
from workbench.mcts.search import CancelToken
from workbench.mcts.tree import Tree
from workbench.mcts.types import F_SUM, I_ACTION, I_DEPTH, I_N_CHILDREN, I_VISITS

__all__ = [
    "SAVED_FORMAT",
    "AgentOutcome",
    "ExecutionPlan",
    "Executor",
    "FeedbackRecord",
    "ModelExecutor",
    "OrchestrationOptions",
    "OrchestrationResult",
    "Orchestrator",
    "OrchestratorStatistics",
    "PathStep",
    "PlanStep",
    "ResultStore",
    "SavedOrchestration",
    "SearchMetrics",
    "TreeEdgeView",
    "TreeNodeView",
    "TreeView",
    "TreeViewMetrics",
    "feedback",
    "json_safe",
    "orchestrate",
]

logger = logging.getLogger(__name__)

_ORCHESTRATIONS = metrics.counter(
    "workbench_mcts_orchestrations_total", "Agent orchestrations run, by outcome", ["outcome"]
)
_SEARCH_SECONDS = metrics.histogram(
    "workbench_mcts_orchestration_search_seconds", "Wall time of orchestration searches"
)

#: Largest number of agents and iterations one request may ask for (platform limits).
MAX_AGENTS = 100
MAX_ITERATIONS = 10_000


@dataclass(frozen=True)
class OrchestrationOptions:
    """Knobs of one orchestration (defaults are the platform orchestrator's).

    Attributes:
        iterations: Search iterations (``maxIterations``).
        max_depth: Longest agent sequence (``maxDepth``).
        exploration: UCB1 constant C.
        discount: Reward discount per level (``discountFactor``).
        thompson_weight: Weight of the Thompson draw in the selection blend.
        prior_alpha, prior_beta: Beta prior of the in-tree Thompson draws.
        budget: Search budget (``maxBudget``); each simulation spends tokens / 1000.
        time_limit_s: Wall-time limit of the search (``timeLimit``).
        seed: Seed of the search (``None``: a fresh one each time).
        execute: Run the best agent through the executor.
        learn: Update the agent's models with the executed outcome.
        target_time_ms: Latency at which an executed outcome's speed term reaches 0.
        agent_timeout_s: Time limit of one agent call (``None``: none, and the executor runs in
            the caller's thread); a call past it is a failed outcome and counts for the
            agent's breaker.
        max_iterations: Largest ``iterations`` accepted.
    """

    iterations: int = 500
    max_depth: int = 8
    exploration: float = 1.414
    discount: float = 0.95
    thompson_weight: float = 0.7
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    budget: float = 5000.0
    time_limit_s: float = 20.0
    seed: int | None = None
    execute: bool = True
    learn: bool = True
    target_time_ms: float = 5000.0
    agent_timeout_s: float | None = 30.0
    max_iterations: int = MAX_ITERATIONS

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= self.max_iterations:
            raise InputError(
                f"iterations: must be in 1..{self.max_iterations}, got {self.iterations}",
                details={"field": "iterations"},
            )
        if not 1 <= self.max_depth <= 50:
            raise InputError(f"max_depth: must be in 1..50, got {self.max_depth}")
        if not 0.0 <= self.discount <= 1.0:
            raise InputError(f"discount: must be in [0, 1], got {self.discount}")
        if not 0.0 <= self.thompson_weight <= 1.0:
            raise InputError(f"thompson_weight: must be in [0, 1], got {self.thompson_weight}")
        if not (self.exploration >= 0 and self.budget > 0 and self.time_limit_s > 0):
            raise InputError("exploration >= 0, budget > 0 and time_limit_s > 0 are required")
        if not (self.prior_alpha > 0 and self.prior_beta > 0):
            raise InputError("prior_alpha and prior_beta: must be positive")
        if self.agent_timeout_s is not None and not self.agent_timeout_s > 0:
            raise InputError(
                f"agent_timeout_s: must be > 0 or None, got {self.agent_timeout_s}",
                details={"field": "agent_timeout_s"},
            )


class ResultStore(Protocol):
    """Where orchestration summaries are kept beyond this process (a ``RedisStore``)."""

    def save_result(self, search_id: str, result: dict[str, Any]) -> None: ...

    def load_result(self, search_id: str) -> dict[str, Any]: ...


class Executor(Protocol):
    """Runs one agent on a request context."""

    def __call__(self, agent: str, context: Mapping[str, Any]) -> AgentOutcome: ...


class ModelExecutor:
    """An executor that predicts outcomes from the agents' models instead of calling them
    (a model sample; never sleeps)."""

    def __init__(self, registry: ModelRegistry, *, seed: int | None = None) -> None:
        self.registry = registry
        self.rng = np.random.default_rng(seed)

    def __call__(self, agent: str, context: Mapping[str, Any]) -> AgentOutcome:
        model = self.registry.get(agent, _task_type(context))
        p = model.success.sample(self.rng)
        mean, tau = model.latency.sample(self.rng)
        ms = max(float(self.rng.normal(mean, 1.0 / math.sqrt(tau))), 0.0)
        tokens = float(self.rng.exponential(model.expected_usage))
        return AgentOutcome(float(self.rng.random() < p), ms, tokens, response={"predicted": True})


def _task_type(context: Mapping[str, Any]) -> str:
    meta = context.get("metadata") or {}
    value = context.get("taskType") or (meta.get("taskType") if isinstance(meta, Mapping) else None)
    return str(value or "general")


def outcome_reward(outcome: AgentOutcome, target_time_ms: float = 5000.0) -> float:
    """``0.5 quality + 0.3 max(0, 1 - t/target) + 0.2 max(0, 1 - tokens/1000)``."""
    quality = min(max(float(outcome.success), 0.0), 1.0)
    speed = max(0.0, 1.0 - outcome.latency_ms / target_time_ms)
    cost = max(0.0, 1.0 - outcome.tokens / 1000.0)
    return 0.5 * quality + 0.3 * speed + 0.2 * cost


@dataclass
class _Record:
    result: OrchestrationResult
    tree: Tree | None
    feedback: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Plan:
    """A finished search, before the agent runs."""

    t0: float
    opts: OrchestrationOptions
    oid: str
    task_type: str
    agents: list[str]
    tree: Tree
    seed: int
    done: int
    budget: float
    search_s: float
    best: list[PathStep]
    alternatives: list[list[PathStep]]

    @property
    def best_action(self) -> str:
        return self.best[0].agent if self.best else "fallback"

    @property
    def confidence(self) -> float:
        return self.best[-1].average_reward if self.best else 0.0


def _failed(agent: str, exc: BaseException, t_call: float) -> AgentOutcome:
    logger.warning("agent %s failed: %s", agent, exc)
    return AgentOutcome(0.0, (time.perf_counter() - t_call) * 1000.0, 0.0, None, str(exc))


def _is_async(fn: Any) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    call = type(fn).__call__ if not inspect.isfunction(fn) and callable(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class Orchestrator:
    """Stateful facade: agent models, recent orchestrations (bounded) and statistics.

    Args:
        registry: Agent models (a fresh one with the priors if omitted).
        max_records: Orchestrations remembered for feedback (oldest dropped first).
        max_trees: Of those, how many keep their tree for visualization.
        store: Where results are also saved (``save_result`` / ``load_result``, e.g. a
            :class:`~workbench.mcts.storage.RedisStore` under ``ab-mcts:result:<id>``), so
            feedback finds an orchestration after it left memory or in another process.
        persist_trees: Save each orchestration's tree view (at most 500 nodes) with its
            summary in ``store``, so :meth:`visualization` answers after the tree left memory
            (or in another process); costs about a millisecond and a few kB per orchestration.
        breakers: Per-agent circuit breakers (default: 3 failures open, 30 s cool-down,
            2 successes close, as the platform's orchestrator).
        max_agent_calls: Agent calls under a time limit that may run at once (a call past its
            limit keeps its slot until it returns; see :class:`~workbench.breaker.TimeLimiter`).
    """

    def __init__(
        self,
        registry: ModelRegistry | None = None,
        *,
        max_records: int = 1000,
        max_trees: int = 64,
        store: ResultStore | None = None,
        persist_trees: bool = False,
        breakers: BreakerSet | None = None,
        max_agent_calls: int = 8,
    ) -> None:
        self.registry = registry if registry is not None else ModelRegistry()
        self.store = store
        self.persist_trees = persist_trees
        self.breakers = (
            breakers if breakers is not None else BreakerSet(failures=3, reset_s=30.0, successes=2)
        )
        self.limiter = TimeLimiter(max_agent_calls)
        self.max_records = max_records
        self.max_trees = max_trees
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._seed_rng = np.random.default_rng()
        self.total = 0
        self.successful = 0
        self.search_time_s = 0.0

    # -- search ------------------------------------------------------------------------
    def orchestrate(
        self,
        context: Mapping[str, Any],
        agents: Sequence[str],
        executor: Executor | Callable[[str, Mapping[str, Any]], AgentOutcome] | None = None,
        *,
        options: OrchestrationOptions | None = None,
        orchestration_id: str | None = None,
        cancel: CancelToken | None = None,
    ) -> OrchestrationResult:
        """Search agent sequences for ``context`` and run the best next agent.

        Args:
            context: The request (``userRequest``, ``metadata{taskType, ...}``, or
                ``taskType`` at the top level; the task type defaults to ``"general"``).
            agents: Candidate agent names (1..100, unique).
            executor: Runs an agent; ``None`` uses :class:`ModelExecutor` (predictions).
            options: Search knobs.
            orchestration_id: Id to use (a uuid4 by default).
            cancel: Stops the search (between chunks of 256 iterations) when set; the best
                path found so far is still returned and executed.
        """
        plan = self._search(context, agents, options, orchestration_id, cancel)
        outcome: AgentOutcome | None = None
        executed: str | None = None
        skipped: list[str] = []
        if plan.opts.execute and plan.best:
            run = executor if executor is not None else ModelExecutor(self.registry, seed=plan.seed)
            # predictions from the models never block: no thread hop for them
            limit = None if isinstance(run, ModelExecutor) else plan.opts.agent_timeout_s
            for agent in self._candidates(plan.tree, plan.best_action):
                t_call = time.perf_counter()
                try:
                    outcome = self.breakers.get(agent).call(
                        self.limiter.call, run, limit, agent, context
                    )
                except BreakerOpen:
                    skipped.append(agent)
                    continue
                except Exception as exc:  # an agent failure is an observation, not a crash
                    outcome = _failed(agent, exc, t_call)
                executed = agent
                break
        return self._finish(plan, outcome, executed, skipped)

    async def orchestrate_async(
        self,
        context: Mapping[str, Any],
        agents: Sequence[str],
        executor: Callable[[str, Mapping[str, Any]], Any] | None = None,
        *,
        options: OrchestrationOptions | None = None,
        orchestration_id: str | None = None,
        cancel: CancelToken | None = None,
    ) -> OrchestrationResult:
        """:meth:`orchestrate` for an ``async`` executor (``async def run(agent, context) ->
        AgentOutcome``, e.g. an LLM call), awaited under ``agent_timeout_s`` (cancelled when
        it overruns) and the agent's breaker. A plain function executor runs on a worker
        thread under the same :class:`~workbench.breaker.TimeLimiter` as :meth:`orchestrate`.

        The search itself runs inline (a few milliseconds for the default 500 iterations);
        orchestrations awaited concurrently on one event loop share the models safely, since
        each search and each model update runs without an ``await`` inside it.
        """
        plan = self._search(context, agents, options, orchestration_id, cancel)
        outcome: AgentOutcome | None = None
        executed: str | None = None
        skipped: list[str] = []
        if plan.opts.execute and plan.best:
            run = executor if executor is not None else ModelExecutor(self.registry, seed=plan.seed)
            limit = plan.opts.agent_timeout_s
            for agent in self._candidates(plan.tree, plan.best_action):
                t_call = time.perf_counter()
                try:
                    outcome = await self.breakers.get(agent).call_async(
                        self._run_async, run, limit, agent, context
                    )
                except BreakerOpen:
                    skipped.append(agent)
                    continue
                except Exception as exc:  # an agent failure is an observation, not a crash
                    outcome = _failed(agent, exc, t_call)
                executed = agent
                break
        return self._finish(plan, outcome, executed, skipped)

    async def _run_async(
        self, run: Callable[..., Any], limit: float | None, agent: str, context: Mapping[str, Any]
    ) -> AgentOutcome:
        if isinstance(run, ModelExecutor):
            return run(agent, context)
        if not _is_async(run):
            return await asyncio.to_thread(self.limiter.call, run, limit, agent, context)
        try:
            out = await asyncio.wait_for(run(agent, context), limit)
        except TimeoutError:
            raise WaitTimeout(
                f"agent {agent!r} gave no result within {limit:g} s",
                details={"agent": agent, "timeoutS": limit},
            ) from None
        if not isinstance(out, AgentOutcome):
            raise TypeError(f"executor returned {type(out).__name__}, not AgentOutcome")
        return out

    def _search(
        self,
        context: Mapping[str, Any],
        agents: Sequence[str],
        options: OrchestrationOptions | None,
        orchestration_id: str | None,
        cancel: CancelToken | None,
    ) -> _Plan:
        """Validate, search and pick the best path (the part with no agent call)."""
        t0 = time.perf_counter()
        opts = options or OrchestrationOptions()
        agents = list(agents)
        if not 1 <= len(agents) <= MAX_AGENTS:
            raise InputError(
                f"agents: need 1..{MAX_AGENTS} agent names, got {len(agents)}",
                details={"field": "agents"},
            )
        if len(set(agents)) != len(agents) or not all(isinstance(a, str) and a for a in agents):
            raise InputError("agents: names must be unique non-empty strings")
        task_type = _task_type(context)
        oid = orchestration_id or str(uuid.uuid4())
        tree = Tree.empty(agents, capacity=opts.iterations + 1)
        params = np.array(
            [self.registry.get(a, task_type).kernel_params() for a in agents], dtype=np.float64
        )
        seed = opts.seed if opts.seed is not None else int(self._seed_rng.integers(2**62))
        rng = rng_seed(seed)
        deadline = t0 + opts.time_limit_s
        done, budget, chunk = 0, opts.budget, 256
        while done < opts.iterations and budget > 0 and time.perf_counter() < deadline:
            if cancel is not None and cancel.is_set():
                break
            n, budget = _kernels.orchestrate_search(
                tree.ints,
                tree.floats,
                tree.header,
                params,
                min(chunk, opts.iterations - done),
                opts.max_depth,
                opts.exploration,
                opts.discount,
                opts.thompson_weight,
                opts.prior_alpha,
                opts.prior_beta,
                budget,
                rng,
            )
            done += int(n)
            if n == 0:
                break
        search_s = time.perf_counter() - t0
        best = self._greedy_path(tree, 0)
        return _Plan(
            t0,
            opts,
            oid,
            task_type,
            agents,
            tree,
            seed,
            done,
            float(budget),
            search_s,
            best,
            self._alternatives(tree, best),
        )

    def _finish(
        self,
        plan: _Plan,
        outcome: AgentOutcome | None,
        executed: str | None,
        skipped: list[str],
    ) -> OrchestrationResult:
        """Learn from the executed outcome, count, remember and save the result."""
        opts, task_type, best = plan.opts, plan.task_type, plan.best
        reward: float | None = None
        if outcome is not None and executed is not None:
            reward = outcome_reward(outcome, opts.target_time_ms)
            if opts.learn:
                self.registry.update(
                    executed,
                    task_type,
                    min(max(float(outcome.success), 0.0), 1.0),
                    outcome.latency_ms,
                    outcome.tokens,
                )
        self.total += 1
        self.successful += int(outcome is not None and outcome.success >= 0.5)
        _ORCHESTRATIONS.labels("executed" if outcome is not None else "planned").inc()
        _SEARCH_SECONDS.observe(plan.search_s)
        self.search_time_s += plan.search_s
        confidence = plan.confidence
        result = OrchestrationResult(
            orchestration_id=plan.oid,
            task_type=task_type,
            best_path=tuple(best),
            best_action=plan.best_action,
            confidence=confidence,
            alternatives=tuple(tuple(p) for p in plan.alternatives),
            search_metrics=self._metrics(plan.tree, plan.done, plan.search_s, plan.budget),
            execution_plan=self._plan(best, task_type, confidence),
            recommendations=tuple(self._advice(best, plan.agents, task_type)),
            outcome=outcome,
            reward=reward,
            total_time_s=time.perf_counter() - plan.t0,
            executed_agent=executed,
            skipped_agents=tuple(skipped),
        )
        self._remember(plan.oid, _Record(result, plan.tree))
        if self.store is not None:
            summary = SavedOrchestration(
                orchestration_id=plan.oid,
                best_action=plan.best_action,
                task_type=task_type,
                confidence=confidence,
                execution_path=result.execution_path,
                executed_agent=executed,
                search_metrics=result.search_metrics,
                recommendations=result.recommendations,
                timestamp=time.time(),
                visualization=self.visualization(plan.oid) if self.persist_trees else None,
            )
            try:
                self.store.save_result(plan.oid, summary.to_dict())
            except BackendUnavailable as exc:  # the answer matters more than its copy
                logger.warning("orchestration %s not saved: %s", plan.oid, exc)
        return result

    def _candidates(self, tree: Tree, best_action: str) -> list[str]:
        """Agents to try, in order: the best action, then the other first agents the search
        visited (best mean reward first), then the agents it never tried at the root."""
        kids = [self._step(tree, c) for c in tree.children(0) if tree.ints[I_VISITS, c] > 0]
        kids.sort(key=lambda s: (-s.average_reward, s.node_id))
        order = [best_action] + [s.agent for s in kids if s.agent != best_action]
        return order + [a for a in tree.actions if a not in order]

    def _step(self, tree: Tree, node: int) -> PathStep:
        n = int(tree.ints[I_VISITS, node])
        agent = tree.actions[int(tree.ints[I_ACTION, node])]
        return PathStep(
            node,
            agent,
            agent_type(agent),
            int(tree.ints[I_DEPTH, node]),
            n,
            float(tree.floats[F_SUM, node]) / n if n else 0.0,
        )

    def _greedy_path(self, tree: Tree, start: int) -> list[PathStep]:
        path: list[PathStep] = [] if start == 0 else [self._step(tree, start)]
        node = start
        while True:
            kids = [c for c in tree.children(node) if tree.ints[I_VISITS, c] > 0]
            if not kids:
                return path
            node = max(kids, key=lambda c: (self._step(tree, c).average_reward, c))
            path.append(self._step(tree, node))

    def _alternatives(self, tree: Tree, best: list[PathStep]) -> list[list[PathStep]]:
        kids = [self._step(tree, c) for c in tree.children(0) if tree.ints[I_VISITS, c] > 0]
        kids.sort(key=lambda s: -s.average_reward)
        first = best[0].node_id if best else -1
        return [self._greedy_path(tree, s.node_id) for s in kids if s.node_id != first][:3]

    def _metrics(self, tree: Tree, done: int, search_s: float, budget: float) -> SearchMetrics:
        size = tree.size
        kids = tree.ints[I_N_CHILDREN, :size]
        internal = kids[kids > 0]
        return SearchMetrics(
            nodes_explored=size - 1,
            iterations=done,
            time_elapsed_ms=search_s * 1000.0,
            average_depth=float(tree.ints[I_DEPTH, :size].mean()),
            branching_factor=float(internal.mean()) if internal.size else 0.0,
            budget_left=max(float(budget), 0.0),
        )

    def _plan(self, best: list[PathStep], task_type: str, confidence: float) -> ExecutionPlan:
        steps = []
        for s in best:
            m = self.registry.get(s.agent, task_type)
            steps.append(
                PlanStep(
                    agent=s.agent,
                    agent_type=s.agent_type,
                    estimated_time_ms=m.latency.mean,
                    estimated_cost=m.expected_usage,
                    confidence=m.success.mean,
                )
            )
        risk = "low" if confidence > 0.7 else "medium" if confidence > 0.4 else "high"
        return ExecutionPlan(
            steps=tuple(steps),
            total_estimated_time_ms=sum(s.estimated_time_ms for s in steps),
            total_estimated_cost=sum(s.estimated_cost for s in steps),
            risk_assessment=risk,
        )

    def _advice(self, best: list[PathStep], agents: list[str], task_type: str) -> list[str]:
        out = []
        if best:
            leaf = best[-1]
            if leaf.average_reward > 0.8:
                out.append(f"High confidence path with {best[0].agent}")
            if leaf.average_reward < 0.5:
                out.append("Consider expanding search: best path reward is below 0.5")
            if leaf.visits < 10:
                out.append("Low sample size on the best path; results may be unreliable")
        top = max(agents, key=lambda a: self.registry.get(a, task_type).success.mean)
        if self.registry.get(top, task_type).success.mean > 0.7:
            out.append(f"{top} shows consistent high performance")
        return out

    def _remember(self, oid: str, record: _Record) -> None:
        self._records[oid] = record
        self._records.move_to_end(oid)
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)
        with_trees = [r for r in self._records.values() if r.tree is not None]
        for r in with_trees[: max(len(with_trees) - self.max_trees, 0)]:
            r.tree = None

    # -- feedback and views ------------------------------------------------------------
    def get(self, orchestration_id: str) -> OrchestrationResult:
        rec = self._records.get(orchestration_id)
        if rec is None:
            raise NotFoundError(f"orchestration {orchestration_id!r} is unknown or expired")
        return rec.result

    def feedback(
        self,
        orchestration_id: str,
        rating: float | None = None,
        *,
        reward: float | Mapping[str, float] | None = None,
        comment: str | None = None,
    ) -> FeedbackRecord:
        """Record a user rating (1..5, reward = rating/5) or a reward (a value in [0, 1] or
        components ``quality, speed, cost``) for an orchestration's executed agent.

        The agent's success model gets ``reward > 0.5``; the stored tree's best path gets
        the reward backpropagated.

        Raises:
            NotFoundError: the orchestration id is unknown (or expired).
            InputError: neither or both of rating and reward, or values out of range.
        """
        if (rating is None) == (reward is None):
            raise InputError("feedback: give exactly one of rating (1..5) or reward")
        if rating is not None:
            if not 1 <= float(rating) <= 5:
                raise InputError(
                    f"rating: must be in 1..5, got {rating}", details={"field": "rating"}
                )
            value = float(rating) / 5.0
        elif isinstance(reward, Mapping):
            try:
                value = (
                    0.5 * float(reward["quality"])
                    + 0.3 * float(reward["speed"])
                    + 0.2 * float(reward["cost"])
                )
            except KeyError as exc:
                raise InputError(f"reward: missing component {exc}") from None
        else:
            value = float(reward)  # type: ignore[arg-type]
        if not 0.0 <= value <= 1.0:
            raise InputError(f"reward: must be in [0, 1], got {value}", details={"field": "reward"})
        timestamp = time.time()
        entry = {"rating": rating, "reward": value, "comment": comment, "timestamp": timestamp}
        rec = self._records.get(orchestration_id)
        if rec is None:
            saved = self._saved(orchestration_id)
            agent = saved.executed_agent or saved.best_action
            if agent != "fallback":
                self.registry.update(agent, saved.task_type, 1.0 if value > 0.5 else 0.0)
            return FeedbackRecord(
                orchestration_id,
                agent,
                saved.task_type,
                rating,
                value,
                comment,
                timestamp,
            )
        result = rec.result
        agent = result.executed_agent or result.best_action
        if agent != "fallback":
            self.registry.update(agent, result.task_type, 1.0 if value > 0.5 else 0.0)
        if rec.tree is not None and result.best_path:
            t = rec.tree
            r = value
            for step in reversed(result.best_path):
                t.ints[I_VISITS, step.node_id] += 1
                t.floats[F_SUM, step.node_id] += r
                r *= 0.95
        rec.feedback.append(entry)
        return FeedbackRecord(
            orchestration_id,
            agent,
            result.task_type,
            rating,
            value,
            comment,
            timestamp,
        )

    def _saved(self, orchestration_id: str) -> SavedOrchestration:
        if self.store is None:
            raise NotFoundError(f"orchestration {orchestration_id!r} is unknown or expired")
        try:
            return SavedOrchestration.from_dict(self.store.load_result(orchestration_id))
        except NotFoundError:
            raise NotFoundError(
                f"orchestration {orchestration_id!r} is unknown or expired"
            ) from None

    def visualization(self, orchestration_id: str, *, max_nodes: int = 500) -> TreeView:
        """Nodes, edges and metrics of one orchestration's tree.

        From memory for the last ``max_trees`` orchestrations; with ``persist_trees``, older
        ones (or ones from another process) come from the store, as saved (500 nodes at most).
        """
        rec = self._records.get(orchestration_id)
        if rec is None or rec.tree is None:
            if self.persist_trees and self.store is not None:
                saved = self._saved(orchestration_id).visualization
                if saved is not None:
                    return saved
            raise NotFoundError(f"no tree kept for orchestration {orchestration_id!r}")
        t = rec.tree
        size = t.size
        visits = t.ints[I_VISITS, :size]
        best_ids = {s.node_id for s in rec.result.best_path} | {0}
        order = np.argsort(-visits, kind="stable")[:max_nodes]
        keep = set(int(i) for i in order) | best_ids
        nodes, edges = [], []
        means = t.mean_values()
        for i in sorted(keep):
            parent = t.parent(i)
            if i != 0 and parent not in keep:
                continue
            label = "root" if i == 0 else t.actions[int(t.ints[I_ACTION, i])]
            nodes.append(
                TreeNodeView(
                    node_id=i,
                    label=label,
                    score=float(means[i]),
                    visits=int(visits[i]),
                    depth=int(t.ints[I_DEPTH, i]),
                    is_leaf=int(t.ints[I_N_CHILDREN, i]) == 0,
                    is_best=i in best_ids,
                )
            )
            if i != 0:
                edges.append(
                    TreeEdgeView(source=int(parent), target=i, weight=int(visits[i]), label=label)
                )
        kids = t.ints[I_N_CHILDREN, :size]
        internal = kids[kids > 0]
        return TreeView(
            orchestration_id=orchestration_id,
            nodes=tuple(nodes),
            edges=tuple(edges),
            metrics=TreeViewMetrics(
                total_nodes=size,
                max_depth=int(t.ints[I_DEPTH, :size].max()),
                avg_branching_factor=float(internal.mean()) if internal.size else 0.0,
                exploration_rate=float((visits[1:] <= 1).mean()) if size > 1 else 0.0,
            ),
        )

    def statistics(self) -> OrchestratorStatistics:
        """Counters since the orchestrator was made (or reset)."""
        return OrchestratorStatistics(
            total_orchestrations=self.total,
            successful_orchestrations=self.successful,
            success_rate=self.successful / self.total if self.total else None,
            average_search_time_ms=self.search_time_s / self.total * 1000.0 if self.total else None,
            cached_results=len(self._records),
            active_searches=0,
            circuit_breaker_state=self.breakers.worst(),
            circuit_breakers=self.breakers.states(),
        )

    def recommendations(self, task_type: str = "general") -> list[str]:
        out = []
        rate = self.successful / self.total if self.total else None
        if rate is not None and rate < 0.8:
            out.append("Success rate is below 80%: increase exploration or iterations")
        open_ = sorted(a for a, st in self.breakers.states().items() if st == "OPEN")
        if open_:
            out.append(f"Circuit breakers open for {', '.join(open_)}: check their health")
        for row in self.registry.rankings(task_type):
            if row["samples"] >= 5 and row["statistics"]["successRate"] < 0.5:
                out.append(f"{row['agent']} succeeds under 50% on {task_type}: retrain or replace")
        return out

    def reset(self) -> None:
        """Forget orchestrations, statistics and every agent model."""
        self._records.clear()
        self.registry.clear()
        self.breakers.clear()
        self.total = self.successful = 0
        self.search_time_s = 0.0


_default: Orchestrator | None = None


def default_orchestrator() -> Orchestrator:
    """The process-wide orchestrator used by :func:`orchestrate` and :func:`feedback`."""
    global _default
    if _default is None:
        _default = Orchestrator()
    return _default


def orchestrate(
    context: Mapping[str, Any],
    agents: Sequence[str],
    executor: Executor | Callable[[str, Mapping[str, Any]], AgentOutcome] | None = None,
    *,
    options: OrchestrationOptions | None = None,
) -> OrchestrationResult:
    """:meth:`Orchestrator.orchestrate` on the process-wide orchestrator."""
    return default_orchestrator().orchestrate(context, agents, executor, options=options)


def feedback(
    orchestration_id: str,
    rating: float | None = None,
    *,
    reward: float | Mapping[str, float] | None = None,
) -> FeedbackRecord:
    """:meth:`Orchestrator.feedback` on the process-wide orchestrator."""
    return default_orchestrator().feedback(orchestration_id, rating, reward=reward)
