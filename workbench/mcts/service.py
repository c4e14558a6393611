"""AB-MCTS assembled for a long-running process (the HTTP service).

:class:`MctsService` owns one :class:`~workbench.mcts.orchestrate.Orchestrator` (agent models
persist across requests; with ``[mcts] persist = "redis"`` they are loaded from Redis at
start-up and saved after every change under ``ab-mcts:models:default``), the request limits,
the feedback log, the counters of the native bridge and the
:class:`~workbench.mcts.autopilot.AutoPilot`.

There is no agent runtime behind the service, so orchestrations execute each step of the plan
with :class:`~workbench.mcts.orchestrate.ModelExecutor` (a prediction from the agent's models);
real outcomes come in as feedback. One change at a time mutates the shared models (an
``asyncio`` lock, held by an orchestration around its worker thread and by each feedback), so
the event loop keeps answering meanwhile.

A feedback either happens whole or changes nothing: its values are checked against the
documented ranges before anything moves (:data:`MAX_EXECUTION_TIME_MS`, :data:`MAX_TOKENS`,
:data:`MAX_NAME_LENGTH`, :data:`MAX_COMMENT_LENGTH`), the model update itself is
all-or-nothing (:meth:`~workbench.mcts.models.AgentModel.update`), and when saving the models
fails the models are put back as they were before the error is raised, so a retry does not
count twice.

If Redis does not answer at start-up the service still starts, and loads the models on first
use: until Redis answers, whatever needs them fails with
:class:`~workbench.errors.BackendUnavailable` (503) rather than saving fresh models over the
stored ones.

Knobs come from the ``[mcts]`` section of the settings (``WORKBENCH_MCTS__<KEY>``), see
:class:`MctsConfig`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.config import Settings, from_section
from workbench.errors import BackendUnavailable, ConfigError, InputError, NotFoundError
from workbench.mcts.autopilot import DEFAULT_MAX_QUEUE_BYTES, MAX_CONTEXT_BYTES, AutoPilot
from workbench.mcts.models import AgentModel, ModelRegistry
from workbench.mcts.orchestrate import (
    MAX_AGENTS,
    FeedbackRecord,
    OrchestrationOptions,
    OrchestrationResult,
    Orchestrator,
    OrchestratorStatistics,
    TreeView,
)
from workbench.mcts.storage import RedisStore

__all__ = [
    "DEFAULT_AGENTS",
    "ITERATIONS_CEILING",
    "MAX_COMMENT_LENGTH",
    "MAX_EXECUTION_TIME_MS",
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "MAX_TOKENS",
    "SELF_TESTS",
    "BatchItemResult",
    "BatchRequest",
    "BatchResult",
    "FeedbackReport",
    "MctsConfig",
    "MctsHealth",
    "MctsMetrics",
    "MctsService",
    "RewardSummary",
    "SelfTestResult",
    "check_name",
]

log = logging.getLogger(__name__)

DEFAULT_AGENTS = ("planner", "retriever", "synthesizer", "orchestrator")
#: The bridge's self-test sizes: iterations and time limit (s) per test type.
SELF_TESTS = {"simple": (50, 1.0), "complex": (200, 3.0), "load": (500, 10.0)}
#: Feedback entries kept for the report (oldest dropped first).
FEEDBACK_LOG_SIZE = 10_000
#: Largest ``[mcts] max_iterations`` (a search's tree holds one node per iteration).
ITERATIONS_CEILING = 1_000_000
#: Longest agent name and task type, characters.
MAX_NAME_LENGTH = 128
#: Largest search seed (seeds are 63-bit).
MAX_SEED = 2**63 - 1
#: Longest execution time an agent's feedback may report, milliseconds (24 hours).
MAX_EXECUTION_TIME_MS = 86_400_000.0
#: Most tokens an agent's feedback may report.
MAX_TOKENS = 100_000_000.0
#: Longest comment of a rating, characters.
MAX_COMMENT_LENGTH = 2000
_PERSIST = ("none", "redis")


@dataclass(frozen=True, slots=True)
class MctsConfig:
    """Knobs of the AB-MCTS service (``[mcts]`` in workbench.toml).

    Attributes:
        max_iterations: Most search iterations one request may ask for (at most
            :data:`ITERATIONS_CEILING`).
        max_agents: Most candidate agents one request may name (at most 100).
        agents: Candidate agents of a request that names none (a list in TOML, or
            comma-separated in ``WORKBENCH_MCTS__AGENTS``).
        persist: ``none`` (models live in the process) or ``redis`` (models, summaries and
            tree views persist in Redis).
        autopilot_max_queue: Most tasks waiting in the auto-pilot queue; a submit beyond
            it gets 409.
        autopilot_max_queue_bytes: Most bytes the auto-pilot's waiting and running tasks may
            hold (64 MiB; see :mod:`workbench.mcts.autopilot` for what a task counts); a
            submit beyond it gets 409. At least 65536, one task of the largest context.
        rust_search_per_min: Requests a minute per client to ``ab-mcts-rust/search`` (0: no
            limit).
        rust_recommend_per_min: The same for ``ab-mcts-rust/recommend``.
        model_decay: Forgetting factor of the agents' success models in (0, 1] (1: none;
            0.95 follows an agent whose quality drifts with a memory of about 20 outcomes of
            its task type; see :mod:`workbench.mcts.models`).
        max_models: Most agent models and most pair models kept (least recently used
            dropped first).
    """

    max_iterations: int = 10_000
    max_agents: int = MAX_AGENTS
    agents: tuple[str, ...] = DEFAULT_AGENTS
    persist: str = "none"
    autopilot_max_queue: int = 1000
    autopilot_max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    rust_search_per_min: float = 100.0
    rust_recommend_per_min: float = 200.0
    model_decay: float = 1.0
    max_models: int = 10_000

    def __post_init__(self) -> None:
        if self.persist == "":
            object.__setattr__(self, "persist", "none")
        checks: tuple[tuple[str, bool, str], ...] = (
            (
                "max_iterations",
                1 <= self.max_iterations <= ITERATIONS_CEILING,
                f"at least 1 and at most {ITERATIONS_CEILING} iterations per request",
            ),
            (
                "max_agents",
                1 <= self.max_agents <= MAX_AGENTS,
                f"between 1 and {MAX_AGENTS} agents (the orchestrator's limit)",
            ),
            ("persist", self.persist in _PERSIST, "none or redis"),
            ("autopilot_max_queue", self.autopilot_max_queue >= 1, "at least 1 queued task"),
            (
                "autopilot_max_queue_bytes",
                self.autopilot_max_queue_bytes >= MAX_CONTEXT_BYTES,
                f"at least {MAX_CONTEXT_BYTES} bytes (one task of the largest context)",
            ),
            (
                "rust_search_per_min",
                math.isfinite(self.rust_search_per_min) and self.rust_search_per_min >= 0,
                "a number of requests a minute >= 0 (0 turns the limit off)",
            ),
            (
                "rust_recommend_per_min",
                math.isfinite(self.rust_recommend_per_min) and self.rust_recommend_per_min >= 0,
                "a number of requests a minute >= 0 (0 turns the limit off)",
            ),
            ("model_decay", 0.0 < self.model_decay <= 1.0, "a number in (0, 1]"),
            ("max_models", self.max_models >= 1, "at least 1 model"),
            (
                "agents",
                1 <= len(self.agents) <= self.max_agents
                and all(isinstance(a, str) and a for a in self.agents)
                and len(set(self.agents)) == len(self.agents),
                f"1..{self.max_agents} unique, non-empty agent names",
            ),
        )
        for key, ok, fix in checks:
            if not ok:
                raise ConfigError(
                    f"invalid setting [mcts] {key}={getattr(self, key)!r}: use {fix}",
                    details={"key": f"mcts.{key}"},
                )

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> MctsConfig:
        """Build from the ``[mcts]`` settings section, refusing unknown keys."""
        values = dict(section)
        if isinstance(values.get("agents"), str):
            values["agents"] = [a.strip() for a in values["agents"].split(",") if a.strip()]
        return from_section(cls, values, "mcts")

    @classmethod
    def from_settings(cls, settings: Settings) -> MctsConfig:
        """Build from the settings' ``[mcts]`` section."""
        return cls.from_section(settings.section("mcts"))


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch.

    Attributes:
        user_request: The request.
        context: Its context (the agents get it as ``metadata``).
        agents: Its candidate agents.
        task_type: Task type whose models are used (``None``: ``general``, or the context's).
    """

    user_request: str
    context: Mapping[str, Any]
    agents: tuple[str, ...]
    task_type: str | None = None


@dataclass(frozen=True)
class BatchItemResult:
    """One request of a batch, done.

    Attributes:
        index: Its place in the batch.
        result: The orchestration (``None`` when it failed).
        error: Why it failed.
        execution_time_ms: Wall time of this request, waiting for its turn included.
    """

    index: int
    result: OrchestrationResult | None
    error: str | None
    execution_time_ms: float


@dataclass(frozen=True)
class BatchResult:
    """Every request of a batch, in the batch's order.

    Attributes:
        batch_id: Id given to the batch (in each request's context as ``batchId``).
        items: One per request.
        total_time_ms: Wall time of the whole batch.
    """

    batch_id: str
    items: tuple[BatchItemResult, ...]
    total_time_ms: float

    @property
    def successful(self) -> int:
        return sum(1 for i in self.items if i.result is not None)

    @property
    def average_confidence(self) -> float | None:
        """Mean confidence of the successful requests (``None`` if none succeeded)."""
        done = [i.result.confidence for i in self.items if i.result is not None]
        return sum(done) / len(done) if done else None


@dataclass(frozen=True)
class RewardSummary:
    """Feedback received for one agent or task type: how much, and its mean reward."""

    count: int
    average_reward: float


@dataclass(frozen=True)
class FeedbackReport:
    """What the feedback log says.

    Attributes:
        total: Feedback entries in the log.
        average_quality: Their mean reward (``None`` when there are none).
        top_performers: The 3 agents of highest mean reward.
        needs_improvement: The 3 agents of lowest mean reward, lowest first.
        by_agent: Per agent, in order of first feedback.
        by_task_type: Per task type, in order of first feedback.
        recommendations: Agents with more than 10 entries and a mean reward below 0.6.
    """

    total: int
    average_quality: float | None
    top_performers: tuple[str, ...]
    needs_improvement: tuple[str, ...]
    by_agent: dict[str, RewardSummary]
    by_task_type: dict[str, RewardSummary]
    recommendations: tuple[str, ...]


@dataclass(frozen=True)
class MctsMetrics:
    """The orchestrator's counters, the feedback received and the agents' standing.

    Attributes:
        statistics: The orchestrator's counters.
        feedback_processed: Feedback entries in the log.
        feedback_aggregations: Distinct (agent, task type) pairs among them.
        rankings: The agents' rows for ``general`` (:meth:`ModelRegistry.rankings`).
        agent_models: Agent models held (every task type).
        recommendations: The orchestrator's advice.
    """

    statistics: OrchestratorStatistics
    feedback_processed: int
    feedback_aggregations: int
    rankings: list[dict[str, Any]]
    agent_models: int
    recommendations: list[str]


@dataclass(frozen=True)
class MctsHealth:
    """Healthy when the success rate is unknown or above 0.5 and no agent's breaker is open.

    Attributes:
        healthy: The verdict.
        circuit_breaker: The worst of the agents' breaker states.
        circuit_breakers: Each agent's breaker state.
        success_rate: The orchestrator's success rate (``None`` before the first).
        active_searches: Searches in flight now (:attr:`MctsService.active_searches`).
    """

    healthy: bool
    circuit_breaker: str
    circuit_breakers: dict[str, str]
    success_rate: float | None
    active_searches: int


@dataclass(frozen=True)
class SelfTestResult:
    """A self-test search over synthetic agents (:meth:`MctsService.self_test`).

    Attributes:
        result: The search (not executed).
        planned_iterations: Iterations the test type asks for.
        time_limit_s: Its time limit, seconds.
        elapsed_s: Wall time of the test, seconds.
    """

    result: OrchestrationResult
    planned_iterations: int
    time_limit_s: float
    elapsed_s: float

    @property
    def within_time_limit(self) -> bool:
        return self.elapsed_s <= self.time_limit_s


@dataclass
class _Counters:
    searches: int = 0
    active: int = 0
    bridge_feedback: int = 0
    started: float = field(default_factory=time.time)


class MctsService:
    """The AB-MCTS orchestrator, its limits, feedback and auto-pilot (see the module docstring).

    Args:
        config: Knobs (default :class:`MctsConfig`).
        settings: The process settings (the Redis URL with ``persist = "redis"``).
        store: Use this store instead of the one ``config.persist`` names.
    """

    def __init__(
        self,
        config: MctsConfig | None = None,
        settings: Settings | None = None,
        *,
        store: RedisStore | None = None,
    ) -> None:
        self.config = config or MctsConfig()
        if store is None and self.config.persist == "redis":
            from workbench.redis_adapter import RedisAdapter

            store = RedisStore(RedisAdapter.from_settings(settings or Settings()))
        self.store = store
        registry = ModelRegistry(decay=self.config.model_decay, max_models=self.config.max_models)
        self._orchestrator = Orchestrator(registry, store=store, persist_trees=store is not None)
        self._models_pending = store is not None
        if store is not None:
            try:
                self._load_models()
            except BackendUnavailable as exc:
                log.warning("agent models not loaded yet (%s); retrying on first use", exc)
        self.feedback_log: collections.deque[FeedbackRecord] = collections.deque(
            maxlen=FEEDBACK_LOG_SIZE
        )
        self._counters = _Counters()
        self.autopilot = AutoPilot(
            self,
            max_queue=self.config.autopilot_max_queue,
            max_queue_bytes=self.config.autopilot_max_queue_bytes,
        )
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Stop the auto-pilot."""
        await self.autopilot.stop()

    # -- state ---------------------------------------------------------------------------
    @property
    def orchestrator(self) -> Orchestrator:
        """The orchestrator, with the persisted models loaded.

        Raises:
            BackendUnavailable: the models persist in Redis, which has not answered yet.
        """
        if self._models_pending:
            self._load_models()
        return self._orchestrator

    def _load_models(self) -> None:
        assert self.store is not None
        with contextlib.suppress(NotFoundError):  # nothing saved yet: keep the priors
            self._orchestrator.registry.restore(self.store.load_models())
        self._models_pending = False

    @property
    def searches(self) -> int:
        """Orchestrations and bridge searches started."""
        return self._counters.searches

    @property
    def active_searches(self) -> int:
        """Searches in flight now: orchestrations, bridge searches and self-tests started
        and not finished (waiting for their turn included)."""
        return self._counters.active

    @property
    def bridge_feedback(self) -> int:
        """Agent rewards received through :meth:`record_reward`."""
        return self._counters.bridge_feedback

    @property
    def persistent(self) -> bool:
        """The models persist beyond this process."""
        return self.store is not None

    def uptime_s(self) -> float:
        return time.time() - self._counters.started

    # -- limits --------------------------------------------------------------------------
    def resolve_agents(self, agents: Any, field: str = "context.agents") -> list[str]:
        """The candidate agents of a request: ``agents`` if given, else (``None`` or an empty
        list) the configured ones.

        Raises:
            InputError: not a list of names, too many, or a name twice (naming ``field``).
        """
        if agents is None or agents == []:
            agents = list(self.config.agents)
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise InputError(f"{field}: must be a list of agent names", details=[{"field": field}])
        self.check_agents(agents, field)
        return agents

    def check_agents(self, agents: Sequence[str], field: str) -> None:
        """Refuse more than ``max_agents`` agents, none, a name twice, or a name that is not
        1..:data:`MAX_NAME_LENGTH` characters (naming ``field``)."""
        limit = self.config.max_agents
        if not 1 <= len(agents) <= limit:
            raise InputError(
                f"{field}: need 1..{limit} agents, got {len(agents)}",
                details=[{"field": field, "message": f"at most {limit} agents"}],
            )
        for i, agent in enumerate(agents):
            check_name(agent, f"{field}.{i}")
        if len(set(agents)) != len(agents):
            raise InputError(f"{field}: agent names must be unique", details=[{"field": field}])

    def task_type_of(self, context: Mapping[str, Any], field: str) -> str | None:
        """The task type a request's context names (``taskType``; ``None`` when it names
        none or an empty one).

        Raises:
            InputError: not a string of 1..:data:`MAX_NAME_LENGTH` characters (naming
                ``field``).
        """
        value = context.get("taskType")
        if value is None or value == "":
            return None
        return check_name(value, field)

    def options(
        self,
        iterations: int | None = None,
        max_depth: int | None = None,
        seed: int | None = None,
        *,
        field: str = "options",
        **knobs: Any,
    ) -> OrchestrationOptions:
        """Search options of a request (500 iterations, or ``max_iterations`` if lower, and
        depth 8 unless given), with ``knobs`` (other :class:`OrchestrationOptions` fields)
        applied.

        Raises:
            InputError: more than ``max_iterations`` iterations (naming ``field``), or a seed
                outside 0..:data:`MAX_SEED`.
        """
        limit = self.config.max_iterations
        if iterations is not None and iterations > limit:
            raise InputError(
                f"{field}: at most {limit} iterations per request, got {iterations}",
                details=[{"field": field, "message": f"must be <= {limit}"}],
            )
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise InputError(
                f"seed: must be in 0..{MAX_SEED}, got {seed}",
                details=[{"field": "seed", "message": f"must be in 0..{MAX_SEED}"}],
            )
        opts = OrchestrationOptions(
            iterations=iterations or min(500, limit),
            max_depth=max_depth or 8,
            seed=seed,
            max_iterations=limit,
        )
        return replace(opts, **knobs) if knobs else opts

    # -- orchestration -------------------------------------------------------------------
    async def run_orchestration(
        self,
        user_request: str,
        context: Mapping[str, Any],
        options: OrchestrationOptions,
        *,
        agents: Sequence[str],
        task_type: str | None = None,
    ) -> OrchestrationResult:
        """Orchestrate one request; ``context`` reaches the agents as its ``metadata``.

        Models learnt from an executed agent are saved (with ``persist = "redis"``).

        Raises:
            InputError: ``task_type`` is not 1..:data:`MAX_NAME_LENGTH` characters.
        """
        ctx: dict[str, Any] = {
            "userRequest": user_request,
            "requestId": str(uuid.uuid4()),
            "metadata": context,
        }
        if task_type is not None:
            ctx["taskType"] = check_name(task_type, "task_type")
        orchestrator = self.orchestrator
        self._counters.searches += 1
        self._counters.active += 1
        try:
            async with self._lock:  # one change at a time to the shared models
                result = await asyncio.to_thread(
                    orchestrator.orchestrate, ctx, list(agents), None, options=options
                )
            if options.execute and options.learn:
                await self.save_models()
        finally:
            self._counters.active -= 1
        return result

    async def orchestrate_batch(
        self,
        requests: Sequence[BatchRequest],
        options: OrchestrationOptions,
        *,
        source: str = "batch",
        concurrency: int = 4,
    ) -> BatchResult:
        """Orchestrate several requests (``concurrency`` at a time); one failure does not
        fail the others. Each context gets ``batchId``, ``batchIndex`` and ``source``."""
        batch_id = str(uuid.uuid4())
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int, item: BatchRequest) -> BatchItemResult:
            ctx = {**item.context, "batchId": batch_id, "batchIndex": i, "source": source}
            s0 = time.perf_counter()
            async with sem:
                try:
                    r = await self.run_orchestration(
                        item.user_request,
                        ctx,
                        options,
                        agents=item.agents,
                        task_type=item.task_type,
                    )
                except InputError:
                    raise
                except Exception as exc:  # one failed item does not fail the batch
                    ms = (time.perf_counter() - s0) * 1000
                    return BatchItemResult(i, None, str(exc), ms)
            return BatchItemResult(i, r, None, (time.perf_counter() - s0) * 1000)

        items = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        return BatchResult(batch_id, tuple(items), (time.perf_counter() - t0) * 1000)

    async def save_models(self) -> None:
        """Save the agent models (with ``persist = "redis"``; a no-op otherwise)."""
        if self.store is not None:
            await asyncio.to_thread(self.store.save_models, self.orchestrator.registry)

    def visualization(self, orchestration_id: str) -> TreeView:
        return self.orchestrator.visualization(orchestration_id)

    def rankings(self, task_type: str = "general") -> list[dict[str, Any]]:
        """The agents with a model for ``task_type``, best expected performance first."""
        return self.orchestrator.registry.rankings(task_type)

    async def reset(self) -> None:
        """Forget orchestrations, agent models and feedback (and save the empty models)."""
        self.orchestrator.reset()
        self.feedback_log.clear()
        await self.save_models()

    # -- feedback ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _changing_models(self) -> AsyncIterator[None]:
        """Hold the models' lock for one change, then save the models; if the change or the
        save fails, the models are put back as they were (only a save can fail after a
        change: the updates themselves are all-or-nothing), and the error propagates."""
        async with self._lock:
            orchestrator = self.orchestrator
            before = orchestrator.registry.to_dict() if self.store is not None else None
            try:
                yield
                await self.save_models()
            except BaseException:
                if before is not None:
                    orchestrator.registry.restore(before)
                raise

    async def feedback(
        self, orchestration_id: str, rating: int, comment: str | None = None
    ) -> FeedbackRecord:
        """Record a user's rating (1..5) of an orchestration, save the models and log it.

        Raises:
            NotFoundError: unknown or expired orchestration.
            InputError: a rating out of range, or a comment longer than
                :data:`MAX_COMMENT_LENGTH`.
            BackendUnavailable: the models could not be saved (nothing was recorded).
        """
        if comment is not None and len(comment) > MAX_COMMENT_LENGTH:
            raise InputError(
                f"comment: at most {MAX_COMMENT_LENGTH} characters, got {len(comment)}",
                details=[{"field": "comment"}],
            )
        async with self._changing_models():
            record = await asyncio.to_thread(
                self.orchestrator.feedback, orchestration_id, rating, comment=comment, mark=False
            )
        if not record.duplicate:  # a repeat changes nothing, the log included
            await asyncio.to_thread(self.orchestrator.mark_credited, orchestration_id)
            self.feedback_log.append(record)
        return record

    async def reward(self, orchestration_id: str, reward: float) -> None:
        """Record a reward in [0, 1] for an orchestration (the auto-pilot's scores) and save
        the models.

        Raises:
            NotFoundError: unknown or expired orchestration.
            InputError: a reward outside [0, 1].
            BackendUnavailable: the models could not be saved (nothing was recorded).
        """
        _check_range("reward", reward, 0.0, 1.0)
        async with self._changing_models():
            record = await asyncio.to_thread(
                self.orchestrator.feedback, orchestration_id, reward=reward, mark=False
            )
        if not record.duplicate:
            await asyncio.to_thread(self.orchestrator.mark_credited, orchestration_id)

    async def record_reward(
        self,
        agent: str,
        task_type: str,
        reward: float,
        latency_ms: float | None = None,
        tokens: float | None = None,
    ) -> AgentModel:
        """An outcome of ``agent`` reported directly (success when ``reward > 0.5``); the
        updated model is saved and returned.

        Raises:
            InputError: ``agent`` or ``task_type`` not 1..:data:`MAX_NAME_LENGTH` characters,
                ``reward`` outside [0, 1], ``latency_ms`` outside
                0..:data:`MAX_EXECUTION_TIME_MS` or ``tokens`` outside 0..:data:`MAX_TOKENS`
                (each named in the error); nothing was recorded.
            BackendUnavailable: the models could not be saved (nothing was recorded).
        """
        _check_outcome(agent, task_type, reward, latency_ms, tokens)
        async with self._changing_models():
            model = self.orchestrator.registry.update(
                agent, task_type, 1.0 if reward > 0.5 else 0.0, latency_ms, tokens
            )
        self._counters.bridge_feedback += 1
        return model

    async def bridge_feedback_once(
        self,
        session_id: str,
        agent: str,
        task_type: str,
        reward: float,
        latency_ms: float | None = None,
        tokens: float | None = None,
        *,
        orchestration_id: str | None = None,
    ) -> tuple[AgentModel, bool]:
        """The native bridge's feedback, credited once: with ``orchestration_id``, as a
        reward of that orchestration (shared with :meth:`feedback`: an id is credited once
        whichever route it came by, to the last step that ran; when nothing ran here, as
        after the bridge's plan-only search whose plan the caller ran, to ``agent``'s model
        on the orchestration's task type, the predecessor being unknown); without, as an
        outcome of ``agent`` (:meth:`record_reward`) credited once per ``(session_id, agent,
        task_type)``. Returns ``agent``'s model and whether this was a repeat (which changes
        nothing).

        Raises:
            NotFoundError: ``orchestration_id`` is unknown or expired.
            InputError: as :meth:`record_reward`.
            BackendUnavailable: the models could not be saved (nothing was recorded).
        """
        _check_outcome(agent, task_type, reward, latency_ms, tokens)
        if orchestration_id is not None:
            async with self._changing_models():
                record = await asyncio.to_thread(
                    self.orchestrator.feedback, orchestration_id, reward=reward, mark=False
                )
                if not record.duplicate and not record.credited_agents:  # nothing ran here
                    self.orchestrator.registry.update(
                        agent, record.task_type, 1.0 if reward > 0.5 else 0.0, latency_ms, tokens
                    )
            if not record.duplicate:
                await asyncio.to_thread(self.orchestrator.mark_credited, orchestration_id)
                self._counters.bridge_feedback += 1
            return self.orchestrator.registry.peek(agent, record.task_type), record.duplicate
        key = f"bridge:{session_id}:{agent}:{task_type}"
        async with self._changing_models():
            registry = self.orchestrator.registry
            if registry.is_credited(key):
                return registry.peek(agent, task_type), True
            model = registry.update(
                agent, task_type, 1.0 if reward > 0.5 else 0.0, latency_ms, tokens
            )
            registry.credit(key)
        self._counters.bridge_feedback += 1
        return model, False

    def feedback_report(self) -> FeedbackReport:
        log_ = list(self.feedback_log)
        by_agent = _summaries((f.agent, f.reward) for f in log_)
        by_task = _summaries((f.task_type, f.reward) for f in log_)
        ranked = sorted(by_agent, key=lambda a: -by_agent[a].average_reward)
        return FeedbackReport(
            total=len(log_),
            average_quality=sum(f.reward for f in log_) / len(log_) if log_ else None,
            top_performers=tuple(ranked[:3]),
            needs_improvement=tuple(list(reversed(ranked))[:3]),
            by_agent=by_agent,
            by_task_type=by_task,
            recommendations=tuple(
                f"{a}: average feedback reward below 0.6"
                for a in ranked
                if by_agent[a].average_reward < 0.6 and by_agent[a].count > 10
            ),
        )

    # -- views ---------------------------------------------------------------------------
    def metrics(self) -> MctsMetrics:
        orchestrator = self.orchestrator
        return MctsMetrics(
            statistics=self.statistics(),
            feedback_processed=len(self.feedback_log),
            feedback_aggregations=len({(f.agent, f.task_type) for f in self.feedback_log}),
            rankings=orchestrator.registry.rankings("general"),
            agent_models=len(orchestrator.registry),
            recommendations=orchestrator.recommendations(),
        )

    def statistics(self) -> OrchestratorStatistics:
        """The orchestrator's counters, with the searches in flight in this service."""
        return replace(self.orchestrator.statistics(), active_searches=self.active_searches)

    def health(self) -> MctsHealth:
        stats = self.statistics()
        rate, breaker = stats.success_rate, stats.circuit_breaker_state
        return MctsHealth(
            healthy=(rate is None or rate > 0.5) and breaker != "OPEN",
            circuit_breaker=breaker,
            circuit_breakers=stats.circuit_breakers,
            success_rate=rate,
            active_searches=stats.active_searches,
        )

    async def self_test(self, test_type: str, agent_count: int) -> SelfTestResult:
        """A search over ``agent_count`` synthetic agents on a private orchestrator (the
        service's models are not touched), sized by :data:`SELF_TESTS`."""
        t0 = time.perf_counter()
        iterations, limit_s = SELF_TESTS[test_type]
        agents = [f"test-agent-{i + 1}" for i in range(agent_count)]
        opts = OrchestrationOptions(iterations=iterations, time_limit_s=limit_s, execute=False)
        self._counters.active += 1
        try:
            r = await asyncio.to_thread(
                Orchestrator().orchestrate, {"taskType": "self-test"}, agents, None, options=opts
            )
        finally:
            self._counters.active -= 1
        return SelfTestResult(r, iterations, limit_s, time.perf_counter() - t0)


def check_name(value: Any, field: str) -> str:
    """``value`` if it is a name of 1..:data:`MAX_NAME_LENGTH` characters (an agent, a task
    type).

    Raises:
        InputError: anything else (naming ``field``).
    """
    if not isinstance(value, str):
        raise InputError(
            f"{field}: must be a string, got {type(value).__name__}",
            details=[{"field": field, "message": "must be a string"}],
        )
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise InputError(
            f"{field}: must be 1..{MAX_NAME_LENGTH} characters, got {len(value)}",
            details=[{"field": field, "message": f"1..{MAX_NAME_LENGTH} characters"}],
        )
    return value


def _check_outcome(
    agent: str, task_type: str, reward: float, latency_ms: float | None, tokens: float | None
) -> None:
    """Validate one reported outcome of ``agent`` (each bad field named in an InputError)."""
    check_name(agent, "agent")
    check_name(task_type, "task_type")
    _check_range("reward", reward, 0.0, 1.0)
    if latency_ms is not None:
        _check_range("latency_ms", latency_ms, 0.0, MAX_EXECUTION_TIME_MS)
    if tokens is not None:
        _check_range("tokens", tokens, 0.0, MAX_TOKENS)


def _check_range(field: str, value: Any, lo: float, hi: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and lo <= value <= hi):
        raise InputError(
            f"{field}: must be a number in [{lo:g}, {hi:g}], got {value!r}",
            details=[{"field": field, "message": f"must be in [{lo:g}, {hi:g}]"}],
        )


def _summaries(pairs: Any) -> dict[str, RewardSummary]:
    rewards: dict[str, list[float]] = {}
    for key, reward in pairs:
        rewards.setdefault(key, []).append(reward)
    return {k: RewardSummary(len(v), sum(v) / len(v)) for k, v in rewards.items()}
