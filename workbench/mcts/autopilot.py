"""The auto-pilot: requests orchestrated in the background, highest priority first.

Tasks wait in a bounded priority queue and are run a batch at a time (five by default) by
one loop on the event loop, through the host's ``run_orchestration`` (the
:class:`~workbench.mcts.service.MctsService`). Each finished task gets an automatic feedback
score, the mean of ``1 - t/10000 ms``, ``1 - tokens/5000`` and ``1 - agents/10`` (the
steps that ran; the planned ones when nothing ran), recorded
as a reward when it is at least 0.7; a reward the host refuses (the orchestration expired,
the store is down) is logged and not counted, and the run still counts as successful. A
failed task is queued again with priority -1 until it has failed 3 times; then it is kept
(the last 100) with its error, never dropped silently. Stopping the auto-pilot cancels the
batch in flight: its tasks are kept the same way, with the error ``cancelled``.

The queue is bounded twice, and a submit beyond either bound raises
:class:`~workbench.errors.CapacityError` (409) rather than dropping work later:

* at most ``max_queue`` tasks (``[mcts] autopilot_max_queue``, 1000);
* at most ``max_queue_bytes`` bytes (``[mcts] autopilot_max_queue_bytes``, 64 MiB), counted
  over the tasks waiting or running: each task counts its context's compact UTF-8 JSON, its
  request and agent names in UTF-8, and :data:`TASK_OVERHEAD_BYTES`.

A task keeps its context as that JSON (:attr:`QueuedTask.context_json`, parsed again when it
runs), so the memory it holds is close to the bytes counted; as parsed Python objects a
context takes several times its JSON size. A context larger than ``max_context_bytes``
(:data:`MAX_CONTEXT_BYTES`, 64 KiB) is refused with :class:`~workbench.errors.InputError`
(400).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from workbench.errors import CapacityError, InputError
from workbench.mcts.orchestrate import OrchestrationOptions, OrchestrationResult

__all__ = [
    "CANCELLED",
    "DEFAULT_MAX_QUEUE_BYTES",
    "MAX_CONTEXT_BYTES",
    "TASK_OVERHEAD_BYTES",
    "AutoPilot",
    "AutoPilotHost",
    "AutoPilotMetrics",
    "FailedTask",
    "QueueStatus",
    "QueuedTask",
    "encode_context",
]

log = logging.getLogger(__name__)

#: Failures after which a task is given up and kept in :attr:`AutoPilot.failed`.
MAX_FAILURES = 3
#: Smallest automatic score recorded as a reward.
FEEDBACK_THRESHOLD = 0.7
#: Largest context of one submit, bytes of compact UTF-8 JSON (64 KiB).
MAX_CONTEXT_BYTES = 64 * 1024
#: Default budget of the bytes held by queued and running tasks (64 MiB).
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
#: Bytes counted per task besides its context, request and agent names: the task object,
#: its id, timestamp and queue entry (measured at about 600 bytes; rounded up).
TASK_OVERHEAD_BYTES = 1024
#: Error of the tasks a stop cancelled in the middle of their run.
CANCELLED = "cancelled: the auto-pilot was stopped while the task ran"


def encode_context(context: Mapping[str, Any], field: str = "context") -> bytes:
    """``context`` as compact UTF-8 JSON (the form a queued task keeps, and whose length the
    limits count).

    Raises:
        InputError: ``context`` is not JSON (naming ``field``).
    """
    try:
        text = json.dumps(context, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InputError(
            f"{field}: must be a JSON object ({exc})",
            details=[{"field": field, "message": "must be a JSON object"}],
        ) from None


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

    async def reward(self, orchestration_id: str, reward: float) -> None: ...


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A request waiting for (or retried by) the auto-pilot.

    Attributes:
        task_id: Id given at submit.
        user_request: The request to orchestrate.
        context_json: The request's context (metadata given to the agents) as compact UTF-8
            JSON; :attr:`context` parses it.
        agents: Candidate agents.
        task_type: Task type whose models are used (``None``: from the context, else
            ``general``).
        priority: Priority given at submit (higher runs first).
        failures: Failed runs so far.
        submitted_at: When it was submitted (UTC).
        size_bytes: Bytes it counts against the queue's budget (see the module docstring).
    """

    task_id: str
    user_request: str
    context_json: bytes
    agents: tuple[str, ...]
    task_type: str | None
    priority: int
    failures: int
    submitted_at: datetime
    size_bytes: int = field(default=0, compare=False)

    @property
    def context(self) -> dict[str, Any]:
        """The context, parsed from :attr:`context_json` (a new dict on each access)."""
        value: dict[str, Any] = json.loads(self.context_json)
        return value


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
        processing: Tasks running now (0 whenever the auto-pilot is stopped).
        tasks: The first 50 waiting tasks, in the order they will run.
        max_queue: Largest number of waiting tasks.
        failed: The last 20 tasks given up, oldest first.
        queued_bytes: Bytes counted for the tasks waiting or running.
        max_queue_bytes: Budget of :attr:`queued_bytes`.
    """

    queued: int
    processing: int
    tasks: tuple[QueuedTask, ...]
    max_queue: int
    failed: tuple[FailedTask, ...]
    queued_bytes: int = 0
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AutoPilot:
    """Priority queue of requests orchestrated in the background (see the module docstring).

    Args:
        host: Runs the orchestrations and records the rewards.
        batch_size: Tasks run concurrently per batch.
        max_queue: Largest number of waiting tasks.
        max_queue_bytes: Budget of the bytes counted for the tasks waiting or running.
        max_context_bytes: Largest context of one submit, bytes of compact UTF-8 JSON.
        clock: Monotonic clock of the response times, seconds.
    """

    def __init__(
        self,
        host: AutoPilotHost,
        *,
        batch_size: int = 5,
        max_queue: int = 1000,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_context_bytes: int = MAX_CONTEXT_BYTES,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        sizes = {
            "batch_size": batch_size,
            "max_queue": max_queue,
            "max_queue_bytes": max_queue_bytes,
            "max_context_bytes": max_context_bytes,
        }
        bad = {k: v for k, v in sizes.items() if v < 1}
        if bad:
            raise ValueError(f"{bad} must be >= 1")
        self.host = host
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_context_bytes = max_context_bytes
        self.clock = clock
        self.failed: collections.deque[FailedTask] = collections.deque(maxlen=100)
        self._queue: list[tuple[int, int, QueuedTask]] = []
        self._counter = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._running: dict[str, QueuedTask] = {}
        self._held_bytes = 0
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
            InputError: the context is not JSON, or larger than ``max_context_bytes``.
            CapacityError: the queue holds ``max_queue`` tasks already, or this task's bytes
                would take it past ``max_queue_bytes``.
        """
        context_json = encode_context(context)
        if len(context_json) > self.max_context_bytes:
            raise InputError(
                f"context: {len(context_json)} bytes of JSON, at most {self.max_context_bytes}"
                " for an auto-pilot task; send a smaller context",
                details=[
                    {"field": "context", "message": f"at most {self.max_context_bytes} bytes"}
                ],
            )
        if len(self._queue) >= self.max_queue:
            raise CapacityError(
                f"the auto-pilot queue is full ({len(self._queue)} tasks, "
                f"mcts.autopilot_max_queue={self.max_queue}); retry when it drains",
                details={"queued": len(self._queue), "maxQueue": self.max_queue},
            )
        agents = tuple(agents)
        size = (
            len(context_json)
            + len(user_request.encode(errors="replace"))
            + sum(len(a.encode(errors="replace")) for a in agents)
            + TASK_OVERHEAD_BYTES
        )
        if size > self.max_queue_bytes:
            raise CapacityError(
                f"this task needs {size} bytes, more than the whole auto-pilot budget "
                f"(mcts.autopilot_max_queue_bytes={self.max_queue_bytes}); send a smaller "
                "context or request, or raise the budget",
                details={"taskBytes": size, "maxQueueBytes": self.max_queue_bytes},
            )
        if self._held_bytes + size > self.max_queue_bytes:
            raise CapacityError(
                f"the auto-pilot queue holds {self._held_bytes} bytes of tasks and this one "
                f"needs {size} (mcts.autopilot_max_queue_bytes={self.max_queue_bytes}); "
                "retry when it drains",
                details={
                    "queuedBytes": self._held_bytes,
                    "taskBytes": size,
                    "maxQueueBytes": self.max_queue_bytes,
                },
            )
        task = QueuedTask(
            task_id=str(uuid.uuid4()),
            user_request=user_request,
            context_json=context_json,
            agents=agents,
            task_type=task_type,
            priority=priority,
            failures=0,
            submitted_at=_utcnow(),
            size_bytes=size,
        )
        entry = (-priority, next(self._counter), task)
        heapq.heappush(self._queue, entry)
        self._held_bytes += size
        self._wake.set()
        position = 1 + sum(1 for e in self._queue if e[:2] < entry[:2])
        return task, position

    def start(self) -> None:
        """Start the background loop (on the running event loop); no-op when running."""
        if not self.active:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; the tasks of a batch in flight are cancelled and kept in
        :attr:`failed` (error :data:`CANCELLED`), queued tasks stay queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._cancel_running()

    def queue_status(self) -> QueueStatus:
        waiting = sorted(self._queue, key=lambda e: e[:2])
        return QueueStatus(
            queued=len(self._queue),
            processing=len(self._running),
            tasks=tuple(e[2] for e in waiting[:50]),
            max_queue=self.max_queue,
            failed=tuple(self.failed)[-20:],
            queued_bytes=self._held_bytes,
            max_queue_bytes=self.max_queue_bytes,
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
            # Counted as running here rather than inside _run: a run cancelled before its
            # first step never executes any of its own code.
            self._running.update((task.task_id, task) for task in batch)
            try:
                await asyncio.gather(*(self._run(task) for task in batch))
            finally:
                self._cancel_running()  # only a cancelled batch leaves any

    def _cancel_running(self) -> None:
        """Keep the tasks still counted as running as cancelled, and release their bytes."""
        for task in list(self._running.values()):
            self._give_up(task, CANCELLED)

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
        tokens = r.outcome.tokens if r.outcome else 0.0
        score = (
            max(0.0, 1 - ms / 10_000)
            + max(0.0, 1 - tokens / 5000)
            + max(0.0, 1 - len(r.executed_steps or r.best_path) / 10)
        ) / 3
        prev = self._metrics.average_response_time_ms
        self._metrics = replace(
            self._metrics,
            successful_requests=self._metrics.successful_requests + 1,
            average_response_time_ms=ms if prev is None else 0.9 * prev + 0.1 * ms,
        )
        if score >= FEEDBACK_THRESHOLD:
            try:
                await self.host.reward(r.orchestration_id, score)
            except asyncio.CancelledError:
                self._done(task)  # it ran: not one of the cancelled runs
                raise
            except Exception as exc:  # the run stands; only its automatic feedback is lost
                log.warning(
                    "auto-pilot task %s: reward %.3f of orchestration %s not recorded: %s",
                    task.task_id,
                    score,
                    r.orchestration_id,
                    exc,
                )
            else:
                self._count(auto_feedbacks=1)
        self._done(task)

    def _failed(self, task: QueuedTask, exc: Exception) -> None:
        self._count(failed_requests=1)
        if task.failures < MAX_FAILURES:
            self._running.pop(task.task_id, None)  # back in the queue; its bytes stay held
            heapq.heappush(self._queue, (1, next(self._counter), task))
            return
        self._count(abandoned_tasks=1)
        self._give_up(task, str(exc))

    def _give_up(self, task: QueuedTask, error: str) -> None:
        self.failed.append(
            FailedTask(task.task_id, task.user_request, task.failures, error, _utcnow())
        )
        self._done(task)

    def _done(self, task: QueuedTask) -> None:
        """``task`` leaves the auto-pilot: it no longer runs nor holds bytes."""
        if self._running.pop(task.task_id, None) is not None:
            self._held_bytes -= task.size_bytes

    def _count(self, **increments: int) -> None:
        m = self._metrics
        self._metrics = replace(m, **{k: getattr(m, k) + v for k, v in increments.items()})
