"""A priority queue of vision jobs over GPU slots, with model residency through the allocator.

:meth:`VisionScheduler.execute_with_model` is the platform's ``executeWithModel`` done for
real: jobs wait in a heap (higher priority first), start when a slot on a device is free,
reserve their model's memory through :class:`~workbench.gpu.allocator.VramAllocator` (which
keeps idle models resident for their keep-alive and evicts the least recently used one when
memory is short), call the caller's ``load`` hook only when the model is not resident, run the
task, and emit events (``queued``, ``started``, ``completed``, ``failed``, ``cancelled``,
``model_loaded``, ``model_unloaded``).

**Aging.** A job's effective priority grows by ``aging_per_s`` for every second it waits:
``effective = priority + aging_per_s * (now - submitted_at)``. Since every queued job ages at
the same rate, the order of two queued jobs never changes with time, so the heap is keyed once
by ``priority - aging_per_s * submitted_at`` and stays O(log n). A job of priority ``p`` is
overtaken by at most the jobs submitted within ``(p_max - p) / aging_per_s`` seconds after it,
so no job starves.

**Slots.** ``slots_per_device`` jobs run at once per device (the platform used one GPU
semaphore permit). A job goes to a free slot on a device where its model is resident if there
is one, else to the device with the most free budget.

**Bounds.** The queue holds at most ``max_queued`` jobs (beyond it ``submit`` raises
:class:`~workbench.errors.CapacityError`). A job that holds a slot but still waits for its
model's memory can be cancelled like a queued one; its wait, and the wait for a load another
job is doing, end after the job's ``timeout``. Tasks run on daemon threads: :meth:`shutdown`
cancels queued and waiting jobs and returns within its ``timeout`` whatever a task does, and a
task stuck in user code never keeps the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from workbench.errors import CapacityError, ConfigError, InputError, NotFoundError, WaitTimeout
from workbench.gpu.allocator import VramAllocator
from workbench.gpu.reservation import AllocatorEvent, ReservationRequest, WaitCancelled
from workbench.gpu.types import GIB

__all__ = [
    "DEFAULT_MODELS",
    "Job",
    "JobContext",
    "ModelSpec",
    "SchedulerEvent",
    "VisionScheduler",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A vision model the scheduler can run.

    Attributes:
        name: Model name (``"sd3b"``).
        kind: ``analysis``, ``generation`` or ``embedding``.
        size_bytes: VRAM it needs once loaded.
        load_time_s: Typical load time (informative; the ``load`` hook does the loading).
        priority: The platform's model priority (informative).
        keep_alive_s: How long it stays resident after its last job.
    """

    name: str
    kind: str
    size_bytes: int
    load_time_s: float = 0.0
    priority: int = 0
    keep_alive_s: float = 300.0

    def __post_init__(self) -> None:
        if self.size_bytes <= 0:
            raise ConfigError(f"model {self.name!r}: size_bytes={self.size_bytes} must be > 0")
        if self.keep_alive_s < 0:
            raise ConfigError(f"model {self.name!r}: keep_alive_s must be >= 0")

    def to_platform(self) -> dict[str, Any]:
        """The platform's ``ModelInfo`` fields (sizes in GB as it declared them)."""
        return {
            "name": self.name,
            "type": self.kind,
            "sizeGB": round(self.size_bytes / GIB, 3),
            "loadTimeMs": int(self.load_time_s * 1000),
            "priority": self.priority,
        }


#: The platform's model table (its "GB" taken as GiB, like its 24 GB device).
DEFAULT_MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("yolo-v8n", "analysis", int(0.006 * GIB), 0.5, 1),
        ModelSpec("clip-vit-b32", "embedding", int(0.4 * GIB), 2.0, 2),
        ModelSpec("sd3b", "generation", int(6.0 * GIB), 15.0, 3),
        ModelSpec("sdxl-refiner", "generation", int(2.5 * GIB), 10.0, 4),
    )
}


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a task receives: its job id, model, device and the ``load`` hook's handle."""

    job_id: str
    model: str
    device: int
    handle: Any


@dataclass(frozen=True, slots=True)
class SchedulerEvent:
    """Something that happened to a job or a model.

    Attributes:
        kind: ``queued``, ``started``, ``completed``, ``failed``, ``cancelled``,
            ``model_loaded``, ``model_unloaded``.
        time: Scheduler-clock time.
        model: Model name.
        job_id: Job concerned (None for model unloads).
        device: Device concerned, if known.
        detail: Extra facts (wait and run seconds, error text, unload reason).
    """

    kind: str
    time: float
    model: str
    job_id: str | None = None
    device: int | None = None
    detail: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": self.time,
            "model": self.model,
            "job_id": self.job_id,
            "device": self.device,
            "detail": dict(self.detail or {}),
        }


class Job:
    """A submitted job; ``future`` resolves to the task's return value."""

    __slots__ = (
        "device",
        "error",
        "finished_at",
        "future",
        "id",
        "model",
        "priority",
        "started_at",
        "status",
        "submitted_at",
        "task",
        "timeout",
    )

    def __init__(
        self,
        jid: str,
        model: str,
        task: Callable[[JobContext], Any],
        priority: int,
        timeout: float | None,
        now: float,
    ) -> None:
        self.id = jid
        self.model = model
        self.task = task
        self.priority = priority
        self.timeout = timeout
        self.status = "queued"
        self.submitted_at = now
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.device: int | None = None
        self.error: str | None = None
        self.future: Future[Any] = Future()

    @property
    def wait_s(self) -> float | None:
        """Seconds between submission and start (None until started)."""
        return None if self.started_at is None else self.started_at - self.submitted_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "priority": self.priority,
            "status": self.status,
            "device": self.device,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wait_s": self.wait_s,
            "error": self.error,
        }


class _Workers:
    """Daemon threads that run job tasks, started as needed up to ``size``.

    Unlike a ``ThreadPoolExecutor``, whose threads the interpreter joins at exit, these
    never keep the process alive: a task stuck in user code cannot turn a SIGTERM into a hang.
    """

    def __init__(self, size: int, prefix: str) -> None:
        self._size = size
        self._prefix = prefix
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a worker thread.

        Raises:
            RuntimeError: the workers were shut down.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the scheduler's workers are shut down")
            self._queue.put(fn)
            if self._idle.acquire(blocking=False) or len(self._threads) >= self._size:
                return
            thread = threading.Thread(
                target=self._loop, name=f"{self._prefix}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _loop(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            try:
                fn()
            except BaseException:
                log.exception("vision worker task failed")
            self._idle.release()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking work; with ``wait``, join the threads for at most ``timeout`` s."""
        with self._lock:
            first = not self._closed
            self._closed = True
            threads = list(self._threads)
        if first:
            for _ in threads:
                self._queue.put(None)
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)


class _Loaded:
    __slots__ = ("error", "handle", "ready")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.handle: Any = None
        self.error: BaseException | None = None


class VisionScheduler:
    """Runs vision jobs on GPU slots with model residency, priorities and aging.

    Args:
        allocator: Where model memory is reserved.
        models: Model table by name (default :data:`DEFAULT_MODELS`).
        slots_per_device: Jobs that run at once on one device.
        load: ``load(spec, device) -> handle``, called when a model becomes resident.
        unload: ``unload(spec, device, handle)``, called when a resident model is evicted or
            its keep-alive ends.
        aging_per_s: Priority points a queued job gains per second of waiting.
        clock: Time source of job and event timestamps, seconds.
        max_events: Events kept in memory.
        max_finished: Finished jobs kept for :meth:`job` lookups.
        pid: Process that holds loaded models' memory (default: this process), recorded on
            their reservations for reconciliation.
        max_queued: Jobs that may wait for a slot (``None``: no limit); ``submit`` refuses
            more with :class:`~workbench.errors.CapacityError`.
    """

    def __init__(
        self,
        allocator: VramAllocator,
        *,
        models: Mapping[str, ModelSpec] | None = None,
        slots_per_device: int = 1,
        load: Callable[[ModelSpec, int], Any] | None = None,
        unload: Callable[[ModelSpec, int, Any], None] | None = None,
        aging_per_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        max_events: int = 10_000,
        max_finished: int = 10_000,
        pid: int | None = None,
        max_queued: int | None = None,
    ) -> None:
        if slots_per_device < 1:
            raise ConfigError(f"slots_per_device={slots_per_device} must be at least 1")
        if max_queued is not None and max_queued < 1:
            raise ConfigError(f"max_queued={max_queued} must be at least 1 (or None)")
        if aging_per_s < 0:
            raise ConfigError(f"aging_per_s={aging_per_s} must be >= 0")
        self.allocator = allocator
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.slots_per_device = slots_per_device
        self.aging_per_s = aging_per_s
        self._load = load
        self._unload = unload
        self._clock = clock
        n = allocator.device_count
        self._free_slots = [slots_per_device] * n
        self._heap: list[tuple[float, int, Job]] = []
        self._jobs: dict[str, Job] = {}
        self._finished: deque[str] = deque()
        self._max_finished = max_finished
        self._events: deque[SchedulerEvent] = deque(maxlen=max_events)
        self._listeners: list[Callable[[SchedulerEvent], None]] = []
        self._loads: dict[int, _Loaded] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pool = _Workers(n * slots_per_device, "vision")
        self.max_queued = max_queued
        self._queued = 0
        # Jobs that hold a slot and have not started their task, with their pending model
        # request (None until it is made); and those of them asked to cancel.
        self._starting: dict[str, ReservationRequest | None] = {}
        self._cancel_starts: set[str] = set()
        self._closed = False
        self.pid = os.getpid() if pid is None else pid
        allocator.add_listener(self._on_allocator_event)

    # -- public API ----------------------------------------------------------------------

    def submit(
        self,
        model: str,
        task: Callable[[JobContext], Any],
        priority: int = 5,
        *,
        timeout: float | None = None,
    ) -> Job:
        """Queue ``task`` to run with ``model`` resident; returns the :class:`Job` at once.

        Args:
            model: A name from the model table.
            task: Called as ``task(JobContext)`` on a worker thread.
            priority: Higher runs first (aging lifts waiting jobs over time).
            timeout: Seconds the job may wait, once it has a slot, for its model's memory
                and for a load of the model another job is doing (``None``: no limit).

        Raises:
            NotFoundError: unknown model (the message lists the known ones).
            CapacityError: ``max_queued`` jobs are already queued.
        """
        spec = self.models.get(model)
        if spec is None:
            raise NotFoundError(
                f"unknown vision model {model!r}; known: {', '.join(sorted(self.models))}"
            )
        if self._closed:
            raise InputError("the scheduler is shut down")
        now = self._clock()
        job = Job(f"vision_job_{next(self._ids)}", model, task, int(priority), timeout, now)
        key = -(job.priority - self.aging_per_s * now)
        with self._lock:
            if self.max_queued is not None and self._queued >= self.max_queued:
                raise CapacityError(
                    f"the vision job queue is full: {self._queued} jobs wait for a slot "
                    f"(max_queued_jobs={self.max_queued}); retry later",
                    details={"queued": self._queued, "max_queued": self.max_queued},
                    retry_after_s=1.0,
                )
            self._jobs[job.id] = job
            self._queued += 1
            heapq.heappush(self._heap, (key, next(self._ids), job))
        self._emit("queued", model, job.id, None, {"priority": job.priority})
        self._dispatch()
        return job

    def execute_with_model(
        self,
        model: str,
        task: Callable[[JobContext], Any],
        priority: int = 5,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``task`` with ``model`` resident and return its result (blocks).

        Raises:
            Whatever the task raised, or the allocator's errors (CapacityError, WaitTimeout).
        """
        return self.submit(model, task, priority, timeout=timeout).future.result()

    async def execute_with_model_async(
        self,
        model: str,
        task: Callable[[JobContext], Any],
        priority: int = 5,
        *,
        timeout: float | None = None,
    ) -> Any:
        """:meth:`execute_with_model` without blocking the event loop."""
        job = self.submit(model, task, priority, timeout=timeout)
        return await asyncio.wrap_future(job.future)

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started its task: queued, or holding a slot while it
        waits for its model's memory (what it holds is released). False if its task started
        or it finished.

        A job past the queue ends shortly after this returns (its wait is woken), with
        status ``cancelled`` and its future cancelled.

        Raises:
            NotFoundError: unknown job id.
        """
        job = self.job(job_id)
        pending = None
        with self._lock:
            queued = job.status == "queued"
            if queued:
                job.status = "cancelled"
                job.finished_at = self._clock()
                self._queued -= 1
                self._retire(job)
            elif job.id in self._starting and job.status == "running":
                self._cancel_starts.add(job.id)
                pending = self._starting[job.id]
            else:
                return False
        if queued:
            job.future.cancel()
            self._emit("cancelled", job.model, job.id, None, None)
        elif pending is not None:
            pending.cancel()  # its _run sees WaitCancelled and finishes the job as cancelled
        return True

    def job(self, job_id: str) -> Job:
        """The job with this id (queued, running or recently finished)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no vision job with id {job_id!r}")
        return job

    def jobs(self) -> list[Job]:
        """Known jobs, in submission order."""
        with self._lock:
            return list(self._jobs.values())

    def queue_length(self) -> int:
        """Jobs waiting for a slot."""
        return self._queued

    @property
    def clock(self) -> Callable[[], float]:
        """The scheduler's time source (of ``Job.started_at`` and event times)."""
        return self._clock

    def running(self) -> int:
        """Jobs holding a slot."""
        return sum(self.slots_per_device - f for f in self._free_slots)

    def events(self) -> list[SchedulerEvent]:
        """Recent events, oldest first."""
        with self._lock:
            return list(self._events)

    def add_listener(self, fn: Callable[[SchedulerEvent], None]) -> None:
        """Call ``fn(event)`` for every event (on the thread that caused it)."""
        self._listeners.append(fn)

    def loaded_models(self) -> list[dict[str, Any]]:
        """Resident models in the platform's ``ModelInfo`` shape plus device and users."""
        out = []
        for r in self.allocator.resident_models():
            spec = self.models.get(r.model or "")
            info: dict[str, Any] = spec.to_platform() if spec else {"name": r.model}
            info.update(
                loaded=True,
                lastUsed=r.last_used,
                device=r.device,
                users=r.refs,
                idleExpiresAt=r.idle_expires_at,
            )
            out.append(info)
        return out

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Cancel queued jobs and jobs waiting for memory, and stop the workers.

        With ``wait``, running tasks are given ``timeout`` seconds (``None``: as long as they
        take) to finish; the workers are daemon threads, so one that does not finish never
        keeps the process from exiting.
        """
        self._closed = True
        with self._lock:
            ids = [j.id for _, _, j in self._heap if j.status == "queued"]
            ids.extend(self._starting)
        for jid in ids:
            self.cancel(jid)
        self._pool.shutdown(wait=wait, timeout=timeout)

    # -- internals -----------------------------------------------------------------------

    def _emit(
        self,
        kind: str,
        model: str,
        job_id: str | None,
        device: int | None,
        detail: Mapping[str, Any] | None,
    ) -> None:
        ev = SchedulerEvent(kind, self._clock(), model, job_id, device, detail)
        with self._lock:
            self._events.append(ev)
        for fn in self._listeners:
            try:
                fn(ev)
            except Exception:
                log.exception("scheduler listener failed on %s", kind)

    def _retire(self, job: Job) -> None:
        """Keep a bounded number of finished jobs (lock held)."""
        self._finished.append(job.id)
        while len(self._finished) > self._max_finished:
            self._jobs.pop(self._finished.popleft(), None)

    def _dispatch(self) -> None:
        started: list[tuple[Job, int]] = []
        with self._lock:
            while self._heap and not self._closed:
                job = self._heap[0][2]
                if job.status != "queued":
                    heapq.heappop(self._heap)
                    continue
                device = self._pick_device(job.model)
                if device < 0:
                    break
                heapq.heappop(self._heap)
                self._queued -= 1
                self._free_slots[device] -= 1
                job.status = "running"
                job.device = device
                job.started_at = self._clock()
                self._starting[job.id] = None
                started.append((job, device))
        for job, device in started:
            try:
                self._pool.submit(functools.partial(self._run, job, device))
            except RuntimeError:  # shut down between the pick and the hand-over
                self._finish(job, device, "cancelled", error=InputError("scheduler shut down"))

    def _pick_device(self, model: str) -> int:
        free = [d for d, n in enumerate(self._free_slots) if n > 0]
        if not free:
            return -1
        resident = {r.device for r in self.allocator.resident_models() if r.model == model}
        for d in free:
            if d in resident:
                return d
        return max(free, key=self.allocator.free)

    def _begin_task(self, job: Job) -> None:
        """Leave the starting phase; raise WaitCancelled if the job was cancelled in it."""
        with self._lock:
            self._starting.pop(job.id, None)
            cancelled = job.id in self._cancel_starts
        if cancelled:
            raise WaitCancelled(f"job {job.id} was cancelled before it started")

    def _run(self, job: Job, device: int) -> None:
        spec = self.models[job.model]
        self._emit("started", job.model, job.id, device, {"wait_s": job.wait_s})
        r = None
        deadline = None
        if job.timeout is not None:
            deadline = (job.started_at or self._clock()) + job.timeout
        try:
            req = self.allocator.model_request(
                spec.name,
                spec.size_bytes,
                keep_alive_s=spec.keep_alive_s,
                priority=job.priority,
                timeout=job.timeout,
                device=device,
                pid=self.pid,
            )
            with self._lock:
                cancelled = job.id in self._cancel_starts
                if not cancelled:
                    self._starting[job.id] = req  # cancel() now cancels this request
            if cancelled:
                raise WaitCancelled(f"job {job.id} was cancelled before it started")
            r = req.acquire()
            handle = self._ensure_loaded(spec, r.id, device, req.fresh, job.id, deadline)
            self._begin_task(job)
            t0 = self._clock()
            result = job.task(JobContext(job.id, spec.name, device, handle))
            run_s = self._clock() - t0
        except BaseException as exc:
            if r is not None:
                self.allocator.release_model(r)
            status = "cancelled" if isinstance(exc, WaitCancelled) else "failed"
            self._finish(job, device, status, error=exc)
            return
        self.allocator.release_model(r)
        self._finish(job, device, "completed", result=result, run_s=run_s)

    def _ensure_loaded(
        self,
        spec: ModelSpec,
        rid: int,
        device: int,
        fresh: bool,
        jid: str,
        deadline: float | None = None,
    ) -> Any:
        with self._lock:
            entry = self._loads.setdefault(rid, _Loaded())
        if fresh:
            t0 = self._clock()
            try:
                entry.handle = self._load(spec, device) if self._load is not None else None
            except BaseException as exc:
                entry.error = exc
                entry.ready.set()
                with contextlib.suppress(NotFoundError):
                    self.allocator.release(rid, force=True)
                with self._lock:
                    self._loads.pop(rid, None)
                raise
            entry.ready.set()
            self._emit("model_loaded", spec.name, jid, device, {"load_s": self._clock() - t0})
        else:
            left = None if deadline is None else max(0.0, deadline - self._clock())
            if not entry.ready.wait(left):
                raise WaitTimeout(
                    f"job {jid}: {spec.name} was still loading after the job's timeout",
                    details={"model": spec.name},
                )
            if entry.error is not None:
                raise entry.error
        return entry.handle

    def _finish(
        self,
        job: Job,
        device: int,
        status: str,
        *,
        result: Any = None,
        error: BaseException | None = None,
        run_s: float | None = None,
    ) -> None:
        with self._lock:
            job.status = status
            job.finished_at = self._clock()
            job.error = None if error is None else f"{type(error).__name__}: {error}"
            self._free_slots[device] += 1
            self._starting.pop(job.id, None)
            self._cancel_starts.discard(job.id)
            self._retire(job)
        detail: dict[str, Any] = {"wait_s": job.wait_s}
        if run_s is not None:
            detail["run_s"] = run_s
        if job.error:
            detail["error"] = job.error
        self._emit(status, job.model, job.id, device, detail)
        if status == "cancelled":
            job.future.cancel()
        elif error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
        self._dispatch()

    def _on_allocator_event(self, ev: AllocatorEvent) -> None:
        r = ev.reservation
        if r.model is None or r.model not in self.models:
            return
        with self._lock:
            entry = self._loads.pop(r.id, None)
        if entry is None or entry.error is not None:
            return  # never loaded, or its load failed: nothing to unload
        if self._unload is not None:
            try:
                self._unload(self.models[r.model], r.device, entry.handle)
            except Exception:
                log.exception("unload hook failed for %s on device %d", r.model, r.device)
        self._emit("model_unloaded", r.model, None, r.device, {"reason": ev.kind})
