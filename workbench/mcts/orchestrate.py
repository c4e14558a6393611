"""Agent orchestration: plan a sequence of agents for a request, run it, learn from it.

Planning. A jitted tree search (:func:`workbench.mcts._plan_kernels.plan_search`) grows a
tree of plans: depth is the position in the plan, a node's children are the agents that may
come next (never one already in the plan unless ``allow_repeats``, and then never the one
just before) and an *end* action that stops the plan. Each iteration selects with the
platform's blend ``0.7 Thompson(Beta) + 0.3 UCB1`` (C = 1.414), expands one untried child,
simulates the plan that ends there step by step (at the steps' expected outcomes, see
:mod:`workbench.mcts._plan_kernels`) and backpropagates its reward discounted by 0.95 per
level; the best plan is the one with the highest simulated reward the search met. A step
succeeds with the probability of the pair model of
(previous agent, agent, task type) in :mod:`workbench.mcts.models` (shrunk toward the agent's
own model), so effects of order are planned for; the plan's outcome is its last step's
success with the steps' summed latency and tokens, scored
``0.5 quality + 0.3 max(0, 1 - ms/target_time_ms) + 0.2 max(0, 1 - tokens/1000)`` - the
same scale, and the same ``target_time_ms``, as the reward of an executed plan.

With ``posterior_sampling`` (the default) the search plans under one draw of every model
from its posterior, taken once per orchestration (Thompson sampling over plans): a pair
never tried is tried now and then, in proportion to the chance that it is the best. Without
it the search plans under the posterior means (no exploration between orchestrations).

Execution. The best plan runs step by step through the caller's *executor* (a real agent,
or :class:`ModelExecutor`, which samples the models); each step gets the request context
with ``plan``, ``step``, ``previousAgent``, ``previousOutput`` and ``previousOutputs`` added,
so an agent sees what the steps before it produced. Each call has a time limit
(``agent_timeout_s``, with bounded concurrency) and each agent its own circuit breaker
(:mod:`workbench.breaker`: 3 consecutive errors or time-outs open it, a probe after
``breaker_reset_s``, 2 successes close it). When a step's agent has an open breaker, the
next-best choice for that position in the tree runs instead (which may be to end the plan
there); a step that raises or times out ends the plan, as a failure. Only errors and
time-outs trip a breaker: an unsuccessful answer is an observation, not an outage.

Learning. Every step that ran updates its agent's model and its pair model
(:meth:`~workbench.mcts.models.ModelRegistry.update_step`). For agents whose quality drifts,
``ModelRegistry(decay=...)`` (``[mcts] model_decay`` in the service) makes the success
posteriors discounted ones, with a memory of about ``1 / (1 - decay)`` outcomes.
:meth:`Orchestrator.feedback` (a user rating 1..5 or a reward) is about the plan's answer: it
is credited to the last step that ran, once per orchestration id (a repeat changes nothing;
the ledger is saved with the models, and the saved summary of the orchestration is marked
credited, so this holds across a restart). When that step's outcome
was already learnt, the feedback *replaces* its success (an exact correction of the
discounted posteriors) instead of adding a second observation of the same outcome; when
nothing ran, nothing is credited.

Bounds: the orchestrations remembered (``max_records``), the trees kept (``max_trees``), the
agent and pair models (``ModelRegistry(max_models=...)``, least recently used dropped) and
the circuit breakers (``max_breakers``: an idle one is dropped for a new agent, and a new
agent beyond that many open breakers is refused with
:class:`~workbench.errors.CapacityError`).

:meth:`Orchestrator.orchestrate_async` is the same with an ``async`` executor; both share
the search (``_search``), the walk over the plan (``_walk``, a generator that yields each
agent call and takes back its outcome) and the learning and bookkeeping (``_finish``). What
they return is in :mod:`workbench.mcts.results`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from workbench.mcts import _plan_kernels
from workbench.mcts._random import rng_seed
from workbench.mcts.models import START, ModelRegistry, agent_type
from workbench.mcts.results import (
    SAVED_FORMAT,
    AgentOutcome,
    ExecutedStep,
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
    "ExecutedStep",
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

#: Label of the action that ends a plan (a tree node, never an agent: agent names are
#: checked against it).
END = "<end>"


@dataclass(frozen=True)
class OrchestrationOptions:
    """Knobs of one orchestration (defaults are the platform orchestrator's).

    Attributes:
        iterations: Search iterations (``maxIterations``).
        max_depth: Longest plan, in steps (``maxDepth``).
        exploration: UCB1 constant C.
        discount: Reward discount per level (``discountFactor``).
        thompson_weight: Weight of the Thompson draw in the selection blend.
        prior_alpha, prior_beta: Beta prior of the in-tree Thompson draws.
        budget: Search budget (``maxBudget``); each simulation spends tokens / 1000.
        time_limit_s: Wall-time limit of the search (``timeLimit``).
        seed: Seed of the search (``None``: a fresh one each time).
        execute: Run the best plan through the executor.
        learn: Update the models with each executed step's outcome.
        target_time_ms: Plan latency at which the speed term of the reward reaches 0 (in
            planning and in the reward of an executed plan alike).
        allow_repeats: Let an agent appear more than once in a plan (never twice in a row).
        posterior_sampling: Plan under one posterior draw of the models per orchestration
            (Thompson sampling over plans); ``False`` plans under the posterior means.
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
    allow_repeats: bool = False
    posterior_sampling: bool = True

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
        if not (math.isfinite(self.target_time_ms) and self.target_time_ms > 0):
            raise InputError(
                f"target_time_ms: must be > 0, got {self.target_time_ms}",
                details={"field": "target_time_ms"},
            )
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
    """An executor that predicts outcomes from the models instead of calling agents (a model
    sample; never sleeps). A step's success comes from the pair model after
    ``context["previousAgent"]`` (the first step's: after :data:`~workbench.mcts.models.START`)."""

    def __init__(self, registry: ModelRegistry, *, seed: int | None = None) -> None:
        self.registry = registry
        self.rng = np.random.default_rng(seed)

    def __call__(self, agent: str, context: Mapping[str, Any]) -> AgentOutcome:
        task_type = _task_type(context)
        model = self.registry.peek(agent, task_type)
        previous = str(context.get("previousAgent") or START)
        p = self.registry.pair_posterior(previous, agent, task_type).sample(self.rng)
        mean, tau = model.latency.sample(self.rng)
        ms = max(float(self.rng.normal(mean, 1.0 / math.sqrt(tau))), 0.0)
        tokens = float(self.rng.exponential(model.expected_usage))
        return AgentOutcome(float(self.rng.random() < p), ms, tokens, response={"predicted": True})


def _task_type(context: Mapping[str, Any]) -> str:
    meta = context.get("metadata") or {}
    value = context.get("taskType") or (meta.get("taskType") if isinstance(meta, Mapping) else None)
    return str(value or "general")


def outcome_reward(outcome: AgentOutcome, target_time_ms: float = 5000.0) -> float:
    """``0.5 quality + 0.3 max(0, 1 - t/target) + 0.2 max(0, 1 - tokens/1000)``: the scale
    the planner simulates (:func:`~workbench.mcts._plan_kernels.plan_reward`)."""
    quality = min(max(float(outcome.success), 0.0), 1.0)
    return float(
        _plan_kernels.plan_reward(quality, outcome.latency_ms, outcome.tokens, target_time_ms)
    )


def plan_outcome(steps: Sequence[ExecutedStep]) -> AgentOutcome | None:
    """The outcome of a plan that ran: its last step's success, response and error, with
    the steps' total latency and tokens (``None`` when no step ran)."""
    if not steps:
        return None
    last = steps[-1].outcome
    return AgentOutcome(
        last.success,
        sum(s.outcome.latency_ms for s in steps),
        sum(s.outcome.tokens for s in steps),
        last.response,
        last.error,
    )


@dataclass
class _Record:
    result: OrchestrationResult
    tree: Tree | None
    feedback: list[dict[str, Any]] = field(default_factory=list)
    credited: bool = False


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
    confidence: float

    @property
    def best_action(self) -> str:
        return self.best[0].agent if self.best else "fallback"


def _send(
    walk: Generator[tuple[str, dict[str, Any]], AgentOutcome | None, None],
    outcome: AgentOutcome | None,
) -> tuple[str, dict[str, Any]] | None:
    """The walk's next call after ``outcome``, or ``None`` when the plan is done."""
    try:
        return walk.send(outcome)
    except StopIteration:
        return None


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
        max_breakers: Most circuit breakers kept when ``breakers`` is not given (see the
            module docstring).
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
        max_breakers: int = 1024,
    ) -> None:
        self.registry = registry if registry is not None else ModelRegistry()
        self.store = store
        self.persist_trees = persist_trees
        self.breakers = (
            breakers
            if breakers is not None
            else BreakerSet(failures=3, reset_s=30.0, successes=2, max_breakers=max_breakers)
        )
        self.limiter = TimeLimiter(max_agent_calls)
        self.max_records = max_records
        self.max_trees = max_trees
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._seed_rng = np.random.default_rng()
        self.total = 0
        self.successful = 0
        self.search_time_s = 0.0
        self._active = 0
        self._active_lock = threading.Lock()

    def _track(self, delta: int) -> None:
        with self._active_lock:
            self._active += delta

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
        """Plan a sequence of agents for ``context`` and run it step by step.

        Args:
            context: The request (``userRequest``, ``metadata{taskType, ...}``, or
                ``taskType`` at the top level; the task type defaults to ``"general"``).
            agents: Candidate agent names (1..100, unique).
            executor: Runs an agent; ``None`` uses :class:`ModelExecutor` (predictions).
            options: Search knobs.
            orchestration_id: Id to use (a uuid4 by default).
            cancel: Stops the search (between chunks of 256 iterations) when set; the best
                plan found so far is still returned and executed.
        """
        self._track(1)
        try:
            plan = self._search(context, agents, options, orchestration_id, cancel)
            steps: list[ExecutedStep] = []
            skipped: list[str] = []
            if plan.opts.execute and plan.best:
                run = (
                    executor
                    if executor is not None
                    else ModelExecutor(self.registry, seed=plan.seed)
                )
                # predictions from the models never block: no thread hop for them
                limit = None if isinstance(run, ModelExecutor) else plan.opts.agent_timeout_s
                walk = self._walk(context, plan, steps, skipped)
                call = next(walk, None)
                while call is not None:
                    agent, ctx = call
                    t_call = time.perf_counter()
                    outcome: AgentOutcome | None
                    try:
                        outcome = self.breakers.get(agent).call(
                            self.limiter.call, run, limit, agent, ctx
                        )
                    except BreakerOpen:
                        outcome = None
                    except Exception as exc:  # an agent failure is an observation
                        outcome = _failed(agent, exc, t_call)
                    call = _send(walk, outcome)
            return self._finish(plan, steps, skipped)
        finally:
            self._track(-1)

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
        self._track(1)
        try:
            plan = self._search(context, agents, options, orchestration_id, cancel)
            steps: list[ExecutedStep] = []
            skipped: list[str] = []
            if plan.opts.execute and plan.best:
                run = (
                    executor
                    if executor is not None
                    else ModelExecutor(self.registry, seed=plan.seed)
                )
                limit = plan.opts.agent_timeout_s
                walk = self._walk(context, plan, steps, skipped)
                call = next(walk, None)
                while call is not None:
                    agent, ctx = call
                    t_call = time.perf_counter()
                    outcome: AgentOutcome | None
                    try:
                        outcome = await self.breakers.get(agent).call_async(
                            self._run_async, run, limit, agent, ctx
                        )
                    except BreakerOpen:
                        outcome = None
                    except Exception as exc:  # an agent failure is an observation
                        outcome = _failed(agent, exc, t_call)
                    call = _send(walk, outcome)
            return self._finish(plan, steps, skipped)
        finally:
            self._track(-1)

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

    def _walk(
        self,
        context: Mapping[str, Any],
        plan: _Plan,
        steps: list[ExecutedStep],
        skipped: list[str],
    ) -> Generator[tuple[str, dict[str, Any]], AgentOutcome | None, None]:
        """The walk over the plan, shared by :meth:`orchestrate` and
        :meth:`orchestrate_async` (which only differ in how they call an agent): yields
        ``(agent, step context)`` for each call to make and takes back its outcome, or
        ``None`` when the agent's breaker refused the call (the next choice for that
        position is tried). Learns each step into ``steps`` and the refused agents into
        ``skipped``; ends when the plan ends, a step fails with an error, or no choice is
        left."""
        node = 0
        while node >= 0:
            ctx = self._step_context(context, plan, steps)
            nxt = -1
            for agent, child in self._choices(plan, node, steps):
                if agent is None:
                    break  # ending the plan here is the best remaining choice
                outcome = yield agent, ctx
                if outcome is None:
                    skipped.append(agent)
                    continue
                steps.append(self._learn(plan, steps, agent, outcome))
                nxt = child if outcome.error is None else -1
                break
            node = nxt

    @staticmethod
    def _step_context(
        context: Mapping[str, Any], plan: _Plan, steps: list[ExecutedStep]
    ) -> dict[str, Any]:
        """The request context of the next step, with what the steps before it produced."""
        outputs = [s.outcome.response for s in steps]
        return {
            **context,
            "plan": [s.agent for s in plan.best],
            "step": len(steps),
            "previousAgent": steps[-1].agent if steps else None,
            "previousOutput": outputs[-1] if outputs else None,
            "previousOutputs": outputs,
        }

    def _choices(
        self, plan: _Plan, node: int, steps: list[ExecutedStep]
    ) -> list[tuple[str | None, int]]:
        """The choices for the next step after tree node ``node``, best first: ``(agent,
        its node)`` for the children the search visited (``(None, ...)`` for ending the plan),
        then, for the first step only, the agents the search never tried (node -1). A node
        of -1 means the plan is no longer in the tree: it ends after that step."""
        tree, end = plan.tree, len(plan.agents)
        if node < 0:
            return []
        ran = {s.agent for s in steps}
        last = steps[-1].agent if steps else None
        kids = [c for c in tree.children(node) if tree.ints[I_VISITS, c] > 0]
        kids.sort(key=lambda c: (-self._mean(tree, c), c))
        k = len(steps)
        if plan.best and k <= len(plan.best) and node == (plan.best[k - 1].node_id if k else 0):
            # still on the best plan: its next step (or its end) comes first
            nxt = plan.best[k].node_id if k < len(plan.best) else None
            first = [
                c
                for c in kids
                if (c == nxt if nxt is not None else int(tree.ints[I_ACTION, c]) == end)
            ]
            if nxt is None and not first:
                return []  # the best plan ends here and its end node was never expanded
            kids = first + [c for c in kids if c not in first]
        out: list[tuple[str | None, int]] = []
        for c in kids:
            action = int(tree.ints[I_ACTION, c])
            if action == end:
                out.append((None, -1))
                continue
            agent = plan.agents[action]
            if agent == last or (agent in ran and not plan.opts.allow_repeats):
                continue
            out.append((agent, c))
        if not steps:
            seen = {a for a, _ in out}
            out += [(a, -1) for a in plan.agents if a not in seen]
        if len(steps) >= plan.opts.max_depth:
            return []
        return out

    def _learn(
        self, plan: _Plan, steps: list[ExecutedStep], agent: str, outcome: AgentOutcome
    ) -> ExecutedStep:
        """One executed step, learnt into the agent's and the pair's models (``learn``)."""
        previous = steps[-1].agent if steps else START
        if not plan.opts.learn:
            return ExecutedStep(agent, previous, outcome)
        try:
            model, pair = self.registry.update_step(
                previous,
                agent,
                plan.task_type,
                min(max(float(outcome.success), 0.0), 1.0),
                outcome.latency_ms,
                outcome.tokens,
            )
        except InputError as exc:  # an outcome the models refuse is kept, not learnt
            logger.warning("outcome of agent %s not learnt: %s", agent, exc)
            return ExecutedStep(agent, previous, outcome)
        return ExecutedStep(
            agent, previous, outcome, model.n, pair.n, self.registry.clock(plan.task_type)
        )

    def _plan_inputs(
        self, agents: list[str], task_type: str, opts: OrchestrationOptions, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``p_succ[n + 1, n]`` (row ``n``: the first step), latency mean and spread and
        mean tokens per agent: one posterior draw (``posterior_sampling``) or the means."""
        n = len(agents)
        index = {a: i for i, a in enumerate(agents)}
        models = [self.registry.peek(a, task_type) for a in agents]
        alpha = np.array([m.success.alpha for m in models])
        beta = np.array([m.success.beta for m in models])
        mean = alpha / (alpha + beta)
        strength = self.registry.pair_strength
        pa = np.broadcast_to(strength * mean, (n + 1, n)).copy()
        pb = np.broadcast_to(strength * (1.0 - mean), (n + 1, n)).copy()
        for prev, agent, rec in self.registry.pairs(task_type):
            j = index.get(agent)
            i = n if prev == START else index.get(prev)
            if i is not None and j is not None:
                pa[i, j] += rec.successes
                pb[i, j] += rec.failures
        mu = np.array([m.latency.mu for m in models])
        kappa = np.array([m.latency.kappa for m in models])
        a = np.array([m.latency.a for m in models])
        b = np.array([m.latency.b for m in models])
        ua = np.array([m.usage_a for m in models])
        ub = np.array([m.usage_b for m in models])
        if opts.posterior_sampling:
            g = np.random.default_rng(seed)
            p_succ = g.beta(pa, pb)
            tau = g.gamma(a, 1.0 / b)
            lat_mu = g.normal(mu, 1.0 / np.sqrt(kappa * tau))
            lat_sd = 1.0 / np.sqrt(tau)
            tok_mean = 1.0 / g.gamma(ua, 1.0 / ub)
        else:
            p_succ = pa / (pa + pb)
            lat_mu = mu
            lat_sd = np.sqrt(b / a)
            tok_mean = ub / (ua - 1.0)
        return p_succ, lat_mu, lat_sd, tok_mean

    def _search(
        self,
        context: Mapping[str, Any],
        agents: Sequence[str],
        options: OrchestrationOptions | None,
        orchestration_id: str | None,
        cancel: CancelToken | None,
    ) -> _Plan:
        """Validate, search and pick the best plan (the part with no agent call)."""
        t0 = time.perf_counter()
        opts = options or OrchestrationOptions()
        agents = list(agents)
        if not 1 <= len(agents) <= MAX_AGENTS:
            raise InputError(
                f"agents: need 1..{MAX_AGENTS} agent names, got {len(agents)}",
                details={"field": "agents"},
            )
        if len(set(agents)) != len(agents) or not all(
            isinstance(a, str) and a and a != END for a in agents
        ):
            raise InputError(f"agents: names must be unique non-empty strings other than {END!r}")
        task_type = _task_type(context)
        oid = orchestration_id or str(uuid.uuid4())
        tree = Tree.empty([*agents, END], capacity=opts.iterations + 1)
        seed = opts.seed if opts.seed is not None else int(self._seed_rng.integers(2**62))
        p_succ, lat_mu, lat_sd, tok_mean = self._plan_inputs(agents, task_type, opts, seed)
        rng = rng_seed(seed)
        deadline = t0 + opts.time_limit_s
        done, budget, chunk = 0, opts.budget, 256
        best_leaf, best_reward = -1, -math.inf
        while done < opts.iterations and budget > 0 and time.perf_counter() < deadline:
            if cancel is not None and cancel.is_set():
                break
            n, budget, best_leaf, best_reward = _plan_kernels.plan_search(
                tree.ints,
                tree.floats,
                tree.header,
                p_succ,
                lat_mu,
                lat_sd,
                tok_mean,
                min(chunk, opts.iterations - done),
                opts.max_depth,
                opts.allow_repeats,
                opts.exploration,
                opts.discount,
                opts.thompson_weight,
                opts.prior_alpha,
                opts.prior_beta,
                opts.target_time_ms,
                budget,
                rng,
                best_leaf,
                best_reward,
            )
            done += int(n)
            if n == 0:
                break
        search_s = time.perf_counter() - t0
        best = self._path_to(tree, int(best_leaf)) if best_leaf > 0 else []
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
            float(best_reward) if best else 0.0,
        )

    def _finish(
        self, plan: _Plan, steps: list[ExecutedStep], skipped: list[str]
    ) -> OrchestrationResult:
        """Count, remember and save the result of a plan that ran (or did not)."""
        opts, task_type, best = plan.opts, plan.task_type, plan.best
        outcome = plan_outcome(steps)
        reward = None if outcome is None else outcome_reward(outcome, opts.target_time_ms)
        executed = steps[-1].agent if steps else None
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
            executed_steps=tuple(steps),
        )
        self._remember(plan.oid, _Record(result, plan.tree))
        self._save(result, credited=False)
        return result

    def _save(self, result: OrchestrationResult, *, credited: bool) -> None:
        if self.store is None:
            return
        summary = SavedOrchestration(
            orchestration_id=result.orchestration_id,
            best_action=result.best_action,
            task_type=result.task_type,
            confidence=result.confidence,
            execution_path=result.execution_path,
            executed_agent=result.executed_agent,
            search_metrics=result.search_metrics,
            recommendations=result.recommendations,
            timestamp=time.time(),
            visualization=self._view_or_none(result.orchestration_id)
            if self.persist_trees
            else None,
            executed_steps=tuple(
                replace(s, outcome=replace(s.outcome, response=None)) for s in result.executed_steps
            ),
            credited=credited,
        )
        try:
            self.store.save_result(result.orchestration_id, summary.to_dict())
        except BackendUnavailable as exc:  # the answer matters more than its copy
            logger.warning("orchestration %s not saved: %s", result.orchestration_id, exc)

    def _view_or_none(self, orchestration_id: str) -> TreeView | None:
        try:
            return self.visualization(orchestration_id)
        except NotFoundError:
            return None

    @staticmethod
    def _mean(tree: Tree, node: int) -> float:
        n = int(tree.ints[I_VISITS, node])
        return float(tree.floats[F_SUM, node]) / n if n else 0.0

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

    def _path_to(self, tree: Tree, leaf: int) -> list[PathStep]:
        """The plan that ends at ``leaf``: the agents from the root down to it (an end node
        left out)."""
        end = len(tree.actions) - 1
        nodes = []
        node = leaf
        while node > 0:
            if int(tree.ints[I_ACTION, node]) != end:
                nodes.append(node)
            node = tree.parent(node)
        return [self._step(tree, n) for n in reversed(nodes)]

    def _greedy_path(self, tree: Tree, start: int) -> tuple[list[PathStep], int]:
        """The plan read greedily from ``start`` (the child with the best mean at each
        level, stopping at an end node), and the node whose mean is the plan's value (the
        end node, or the last step where the search went no deeper)."""
        end = len(tree.actions) - 1
        path: list[PathStep] = [] if start == 0 else [self._step(tree, start)]
        node = start
        while True:
            kids = [c for c in tree.children(node) if tree.ints[I_VISITS, c] > 0]
            if not kids:
                return path, node
            node = max(kids, key=lambda c: (self._mean(tree, c), c))
            if int(tree.ints[I_ACTION, node]) == end:
                return path, node
            path.append(self._step(tree, node))

    def _alternatives(self, tree: Tree, best: list[PathStep]) -> list[list[PathStep]]:
        kids = [self._step(tree, c) for c in tree.children(0) if tree.ints[I_VISITS, c] > 0]
        kids.sort(key=lambda s: -s.average_reward)
        first = best[0].node_id if best else -1
        return [self._greedy_path(tree, s.node_id)[0] for s in kids if s.node_id != first][:3]

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
        previous = START
        for s in best:
            m = self.registry.peek(s.agent, task_type)
            steps.append(
                PlanStep(
                    agent=s.agent,
                    agent_type=s.agent_type,
                    estimated_time_ms=m.latency.mean,
                    estimated_cost=m.expected_usage,
                    confidence=self.registry.pair_posterior(previous, s.agent, task_type).mean,
                )
            )
            previous = s.agent
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
        top = max(agents, key=lambda a: self.registry.peek(a, task_type).success.mean)
        if self.registry.peek(top, task_type).success.mean > 0.7:
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
        mark: bool = True,
    ) -> FeedbackRecord:
        """Record a user rating (1..5, reward = rating/5) or a reward (a value in [0, 1] or
        components ``quality, speed, cost``) of an orchestration's answer.

        It is credited once per orchestration id to the last step that ran (whose answer is
        the plan's), as a success when ``reward > 0.5``: if that step's outcome was learnt at
        execution, the feedback replaces its success; otherwise it is a new observation. A
        repeat (the id is already credited, here or, where the models persist, in an earlier
        process) changes nothing and comes back with ``duplicate``; when nothing ran, nothing
        is credited.

        With ``mark=False`` only the models and their ledger change; the caller saves the
        models and then calls :meth:`mark_credited` (so a failed save, undone by restoring
        the models, leaves the orchestration creditable).

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
        rec = self._records.get(orchestration_id)
        if rec is not None:
            result = rec.result
            task_type, best_action = result.task_type, result.best_action
            steps, credited = result.executed_steps, rec.credited
        else:
            saved = self._saved(orchestration_id)
            task_type, best_action = saved.task_type, saved.best_action
            steps, credited = saved.executed_steps, saved.credited
            if not steps and saved.executed_agent is not None:
                # a summary saved before steps were kept names only the agent that ran
                steps = (ExecutedStep(saved.executed_agent, START, AgentOutcome(0.0, 0.0, 0.0)),)
        agent = steps[-1].agent if steps else best_action
        duplicate = credited or self.registry.is_credited(orchestration_id)
        credited_agents: tuple[str, ...] = ()
        if not duplicate:
            if steps:
                self._credit(steps[-1], task_type, 1.0 if value > 0.5 else 0.0)
                credited_agents = (steps[-1].agent,)
            self.registry.credit(orchestration_id)
            if rec is not None:
                rec.feedback.append({"rating": rating, "reward": value, "comment": comment})
            if mark:
                self.mark_credited(orchestration_id)
        return FeedbackRecord(
            orchestration_id,
            agent,
            task_type,
            rating,
            value,
            comment,
            timestamp,
            credited_agents=credited_agents,
            duplicate=duplicate,
        )

    def mark_credited(self, orchestration_id: str) -> None:
        """Record in memory and in the store that the orchestration's feedback was learnt
        (a repeat is then refused even by a process whose models lack the ledger entry)."""
        rec = self._records.get(orchestration_id)
        if rec is not None:
            rec.credited = True
            self._save(rec.result, credited=True)
            return
        if self.store is None:
            return
        try:
            saved = self._saved(orchestration_id)
            self.store.save_result(orchestration_id, replace(saved, credited=True).to_dict())
        except (BackendUnavailable, NotFoundError) as exc:  # the models' ledger still holds it
            logger.warning("orchestration %s not marked credited: %s", orchestration_id, exc)

    def _credit(self, step: ExecutedStep, task_type: str, success: float) -> None:
        """Replace the learnt success of ``step`` by ``success`` (or add it, if it was not
        learnt or is no longer in the models)."""
        reg = self.registry
        if step.learnt and reg.correct_step(
            step.previous_agent,
            step.agent,
            task_type,
            min(max(float(step.outcome.success), 0.0), 1.0),
            success,
            step.agent_n,
            step.pair_n,
            step.learnt_at if step.learnt_at >= 0 else None,
        ):
            return
        reg.update_step(step.previous_agent, step.agent, task_type, success)

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
            label = "root" if i == 0 else t.actions[int(t.ints[I_ACTION, i])]  # END: "<end>"
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
            active_searches=self._active,
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
