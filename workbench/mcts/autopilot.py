"""The auto-pilot: requests orchestrated in the background, highest priority first.

Tasks wait in a bounded priority queue and are run a batch at a time (five by default) by
one loop on the event loop, through the host's ``run_orchestration`` (the
:class:`~workbench.mcts.service.MctsService`). Each finished task gets an automatic feedback
score, the mean of ``1 - t/10000 ms``, ``1 - tokens/5000`` and ``1 - agents/10``, recorded
as a reward when it is at least 0.7. A failed task is queued again with priority -1 until it
has failed 3 times; then it is kept (the last 100) with its error, never dropped silently.

The queue holds at most ``max_queue`` tasks (``[mcts] autopilot_max_queue``): a submit beyond
it raises :class:`~workbench.errors.CapacityError` (409) rather than dropping work later.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from workbench.errors import CapacityError
from workbench.mcts.orchestrate import OrchestrationOptions, OrchestrationResult

__all__ = [
    "AutoPilot",
    "AutoPilotHost",
    "AutoPilotMetrics",
    "FailedTask",
    "QueueStatus",
    "QueuedTask",
]

#: Failures after which a task is given up and kept in :attr:`AutoPilot.failed`.
MAX_FAILURES = 3
#: Smallest automatic score recorded as a reward.
FEEDBACK_THRESHOLD = 0.7


class AutoPilotHost(Protocol):
    """What the auto-pilot needs of the service that runs its tasks."""

    def options(self) -> OrchestrationOptions: ...

    async def run_orchestration(
        self,
        user_request: str,
        context: Mapping[str, Any],
        options: OrchestrationOptions,
        *,
        agents: Sequence[str],
        task_type: str | None = None,
    ) -> OrchestrationResult: ...

    def reward(self, orchestration_id: str, reward: float) -> None: ...


@dataclass(frozen=True)
class QueuedTask:
    """A request waiting for (or retried by) the auto-pilot.

    Attributes:
        task_id: Id given at submit.
        user_request: The request to orchestrate.
        context: The request's context (metadata given to the agents).
        agents: Candidate agents.
        task_type: Task type whose models are used (``None``: from the context, else
            ``general``).
        priority: Priority given at submit (higher runs first).
        failures: Failed runs so far.
        submitted_at: When it was submitted (UTC).
    """

    task_id: str
    user_request: str
    context: Mapping[str, Any]
    agents: tuple[str, ...]
    task_type: str | None
    priority: int
    failures: int
    submitted_at: datetime


@dataclass(frozen=True)
class FailedTask:
    """A task given up after :data:`MAX_FAILURES` failed runs.

    Attributes:
        task_id: Its id.
        user_request: Its request.
        failures: Failed runs.
        error: The last error.
        failed_at: When it was given up (UTC).
    """

    task_id: str
    user_request: str
    failures: int
    error: str
    failed_at: datetime


@dataclass(frozen=True)
class AutoPilotMetrics:
    """Counters of the auto-pilot since the service started.

    Attributes:
        total_requests: Runs started (retries count again).
        successful_requests: Runs that finished.
        failed_requests: Runs that failed.
        average_response_time_ms: Exponential mean (weight 0.1) of a successful run's wall
            time, milliseconds (``None`` before the first).
        auto_feedbacks: Runs whose automatic score was recorded as a reward.
        abandoned_tasks: Tasks given up.
    """

    total_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0
    average_response_time_ms: float | None = None
    auto_feedbacks: int = 0
    abandoned_tasks: int = 0


@dataclass(frozen=True)
class QueueStatus:
    """The auto-pilot's queue now.

    Attributes:
        queued: Tasks waiting.
        processing: Tasks of the batch running now.
        tasks: The first 50 waiting tasks, in the order they will run.
        max_queue: Largest number of waiting tasks.
        failed: The last 20 tasks given up, oldest first.
    """

    queued: int
    processing: int
    tasks: tuple[QueuedTask, ...]
    max_queue: int
    failed: tuple[FailedTask, ...]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AutoPilot:
    """Priority queue of requests orchestrated in the background (see the module docstring).

    Args:
        host: Runs the orchestrations and records the rewards.
        batch_size: Tasks run concurrently per batch.
        max_queue: Largest number of waiting tasks.
        clock: Monotonic clock of the response times, seconds.
    """

    def __init__(
        self,
        host: AutoPilotHost,
        *,
        batch_size: int = 5,
        max_queue: int = 1000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError(f"batch_size={batch_size} and max_queue={max_queue} must be >= 1")
        self.host = host
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.clock = clock
        self.failed: collections.deque[FailedTask] = collections.deque(maxlen=100)
        self._queue: list[tuple[int, int, QueuedTask]] = []
        self._counter = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._processing = 0
        self._metrics = AutoPilotMetrics()

    @property
    def active(self) -> bool:
        """The background loop is running."""
        return self._task is not None and not self._task.done()

    @property
    def metrics(self) -> AutoPilotMetrics:
        return self._metrics

    def submit(
        self,
        user_request: str,
        context: Mapping[str, Any],
        priority: int,
        *,
        agents: Sequence[str],
        task_type: str | None = None,
    ) -> tuple[QueuedTask, int]:
        """Queue a request; returns the task and its place in the queue (1 runs next).

        Raises:
            CapacityError: the queue is full.
        """
        if len(self._queue) >= self.max_queue:
            raise CapacityError(
                f"the auto-pilot queue is full ({len(self._queue)} tasks, "
                f"mcts.autopilot_max_queue={self.max_queue}); retry when it drains",
                details={"queued": len(self._queue), "maxQueue": self.max_queue},
            )
        task = QueuedTask(
            task_id=str(uuid.uuid4()),
            user_request=user_request,
            context=dict(context),
            agents=tuple(agents),
            task_type=task_type,
            priority=priority,
            failures=0,
            submitted_at=_utcnow(),
        )
        entry = (-priority, next(self._counter), task)
        heapq.heappush(self._queue, entry)
        self._wake.set()
        position = 1 + sum(1 for e in self._queue if e[:2] < entry[:2])
        return task, position

    def start(self) -> None:
        """Start the background loop (on the running event loop); no-op when running."""
        if not self.active:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; a batch in flight is cancelled, queued tasks stay queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def queue_status(self) -> QueueStatus:
        waiting = sorted(self._queue, key=lambda e: e[:2])
        return QueueStatus(
            queued=len(self._queue),
            processing=self._processing,
            tasks=tuple(e[2] for e in waiting[:50]),
            max_queue=self.max_queue,
            failed=tuple(self.failed)[-20:],
        )

    def recommendations(self) -> list[str]:
        """Advice from the counters."""
        m = self._metrics
        if m.total_requests and m.failed_requests / m.total_requests > 0.2:
            return ["More than 20% of auto-pilot tasks failed: check the agents"]
        return []

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            n = min(self.batch_size, len(self._queue))
            batch = [heapq.heappop(self._queue)[2] for _ in range(n)]
            self._processing = len(batch)
            await asyncio.gather(*(self._run(task) for task in batch))
            self._processing = 0

    async def _run(self, task: QueuedTask) -> None:
        t0 = self.clock()
        self._count(total_requests=1)
        try:
            context = {**task.context, "userId": "auto-pilot"}
            r = await self.host.run_orchestration(
                task.user_request,
                context,
                self.host.options(),
                agents=task.agents,
                task_type=task.task_type,
            )
        except Exception as exc:
            self._failed(replace(task, failures=task.failures + 1), exc)
            return
        ms = (self.clock() - t0) * 1000
        prev = self._metrics.average_response_time_ms
        self._metrics = replace(
            self._metrics,
            successful_requests=self._metrics.successful_requests + 1,
            average_response_time_ms=ms if prev is None else 0.9 * prev + 0.1 * ms,
        )
        tokens = r.outcome.tokens if r.outcome else 0.0
        score = (
            max(0.0, 1 - ms / 10_000)
            + max(0.0, 1 - tokens / 5000)
            + max(0.0, 1 - len(r.best_path) / 10)
        ) / 3
        if score >= FEEDBACK_THRESHOLD:
            self.host.reward(r.orchestration_id, score)
            self._count(auto_feedbacks=1)

    def _failed(self, task: QueuedTask, exc: Exception) -> None:
        self._count(failed_requests=1)
        if task.failures < MAX_FAILURES:
            heapq.heappush(self._queue, (1, next(self._counter), task))
            return
        self._count(abandoned_tasks=1)
        self.failed.append(
            FailedTask(task.task_id, task.user_request, task.failures, str(exc), _utcnow())
        )

    def _count(self, **increments: int) -> None:
        m = self._metrics
        self._metrics = replace(m, **{k: getattr(m, k) + v for k, v in increments.items()})
