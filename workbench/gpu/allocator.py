"""VRAM budgets, reservations, model residency and cleanup across devices.

:class:`VramAllocator` keeps a ledger of device memory promised to owners (workers, jobs,
resident models) against a per-device budget, so that what runs on a GPU fits before it
starts instead of failing with an out-of-memory error halfway.

Decisions (all under one lock, O(devices) each, no big per-call objects):

- **Placement** is best fit: the device whose free budget is smallest but still large
  enough, so large holes stay open for large requests. A request may name a device.
- **Oversize** requests (larger than every allowed device's budget) are refused at once with
  :class:`~workbench.errors.CapacityError`; they could never be granted.
- **Priorities**: a request that does not fit waits in a queue ordered by priority (higher
  first), then arrival. Grants are strictly in that order: a request is granted at once only
  if no waiting request has a priority at least as high, and a waiting head that does not
  fit blocks those behind it (no back-filling). This keeps large, important requests from
  being starved by a stream of small ones, at the price of some idle memory while the head
  waits; the waits are bounded by ``timeout`` and can be cancelled.
- **Residency** (:meth:`VramAllocator.acquire_model`): a model stays reserved after its last
  user leaves, for ``keep_alive_s``, so the next job skips the load. Idle resident models are
  evicted when a request would otherwise not fit, and unloaded by :meth:`collect` when their
  keep-alive ends. The eviction order is **least recently used** by default: with one
  keep-alive per model table (the usual set-up, as in Ollama) LRU and "shortest remaining
  keep-alive" pick the same victim, and LRU stays sensible when a caller gives a model a very
  long keep-alive to pin it. ``eviction="expiry"`` picks the model whose keep-alive ends
  first instead.
- **Cleanup** (:meth:`collect`): reservations whose owner process died (``pid``) or whose
  lease expired (``lease_s``, renewable with :meth:`Reservation.renew`) are released. A
  reservation whose owner cannot be checked is logged once and kept until its lease ends; it
  never stops the cleanup of the others.
- **Shutdown** (:meth:`close`): every waiting request is woken and refused, and no new
  request waits, so no thread stays blocked in the allocator once its owner is closing.
- **Reconciliation** (:meth:`reconcile`) compares the ledger with measured usage and flags
  reserved-but-unused and used-but-unreserved memory (:mod:`workbench.gpu.reconcile`).

The reservation objects live in :mod:`workbench.gpu.reservation`; every decision on them is
made here, under the allocator's lock. Listeners (evictions, expiries, cleanups) are called
after the lock is released and before any waiter the freed memory went to is woken, so an
unload hook finishes before the next load into that memory starts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from workbench.errors import (
    CapacityError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    WaitTimeout,
)
from workbench.gpu.reconcile import ReconcileReport, reconcile_ledger
from workbench.gpu.reservation import (
    AllocatorEvent,
    Reservation,
    ReservationRequest,
    WaitCancelled,
    _Waiter,
)
from workbench.gpu.types import GIB, MIB, DeviceBackend, DeviceReading

__all__ = ["PID_MAX", "VramAllocator", "set_torch_memory_fraction"]

log = logging.getLogger(__name__)

#: Default share of each device's memory the allocator may promise (20 GiB of 24).
DEFAULT_BUDGET_FRACTION = 20 / 24
#: Largest process id a reservation may name: the range of ``pid_t`` (a signed 32-bit int).
PID_MAX = 2**31 - 1
_EVICTION_POLICIES = ("lru", "expiry")


def _pid_alive(pid: int) -> bool:
    # os.kill(0 or a negative pid) signals a process group, and a pid past pid_t's range
    # raises OverflowError: neither can be the process a reservation names.
    if not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class VramAllocator:
    """Per-device VRAM budgets with reservations, priorities, residency and cleanup.

    Args:
        backend: Device backend; read once for device count and memory totals.
        budget_fraction: Share of each device's memory that may be reserved (default
            20/24: 20 GiB of a 24 GiB device, the platform's budget).
        budget_bytes: Absolute budget per device (an int for all, or one per device);
            overrides ``budget_fraction``.
        eviction: ``"lru"`` (default) or ``"expiry"`` (see the module docstring).
        clock: Monotonic time source in seconds (leases, keep-alive).
        pid_alive: Whether a process id is alive (injected for tests).

    Raises:
        ConfigError: a budget outside (0, total] or an unknown eviction policy.
    """

    def __init__(
        self,
        backend: DeviceBackend,
        budget_fraction: float | None = None,
        *,
        budget_bytes: int | Sequence[int] | None = None,
        eviction: str = "lru",
        clock: Callable[[], float] = time.monotonic,
        pid_alive: Callable[[int], bool] = _pid_alive,
    ) -> None:
        n = backend.device_count()
        self.backend = backend
        self._totals = [backend.device_info(i).memory_total_bytes for i in range(n)]
        if budget_bytes is not None:
            budgets = (
                [int(budget_bytes)] * n if isinstance(budget_bytes, int) else list(budget_bytes)
            )
            if len(budgets) != n:
                raise ConfigError(f"budget_bytes has {len(budgets)} entries for {n} devices")
        else:
            frac = DEFAULT_BUDGET_FRACTION if budget_fraction is None else budget_fraction
            if not 0 < frac <= 1:
                raise ConfigError(
                    f"budget_fraction={frac} must be in (0, 1]; 20/24 leaves 4 GiB of 24 free"
                )
            budgets = [int(t * frac) for t in self._totals]
        for i, (b, t) in enumerate(zip(budgets, self._totals, strict=True)):
            if not 0 < b <= t:
                raise ConfigError(f"budget of device {i} ({b} bytes) must be in (0, {t}]")
        if eviction not in _EVICTION_POLICIES:
            raise ConfigError(
                f"eviction={eviction!r} is unknown; use one of {', '.join(_EVICTION_POLICIES)}"
            )
        self.eviction = eviction
        self._budget = budgets
        self._max_budget = max(budgets)
        self._used = [0] * n
        self._evictable = [0] * n
        self._online = [True] * n
        self._devices = range(n)
        self._res: dict[int, Reservation] = {}
        self._models: dict[str, list[Reservation]] = {}
        self._idle: list[dict[int, Reservation]] = [{} for _ in range(n)]
        self._heap: list[_Waiter] = []
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._clock = clock
        self._pid_alive = pid_alive
        self._listeners: list[Callable[[AllocatorEvent], None]] = []
        self._pending_events: list[AllocatorEvent] = []
        self._unchecked_pids: set[int] = set()  # reservation ids whose pid check failed
        self._closed = False
        self._baseline: list[int] = [0] * n
        self.stats = {
            "granted": 0,
            "granted_after_wait": 0,
            "released": 0,
            "timeouts": 0,
            "cancelled": 0,
            "refused": 0,
            "evicted": 0,
            "expired": 0,
            "owner_dead": 0,
            "lease_expired": 0,
            "model_hits": 0,
        }

    # -- public API ----------------------------------------------------------------------

    @property
    def device_count(self) -> int:
        return len(self._budget)

    def budget(self, device: int) -> int:
        """Bytes that may be reserved on ``device``."""
        return self._budget[device]

    def device_total(self, device: int) -> int:
        """Memory of ``device`` in bytes, as the backend reported it."""
        return self._totals[device]

    def reserved(self, device: int) -> int:
        """Bytes reserved on ``device`` (resident idle models included)."""
        return self._used[device]

    def free(self, device: int) -> int:
        """Budget bytes not reserved on ``device``."""
        return self._budget[device] - self._used[device]

    def waiting(self) -> int:
        """Number of requests queued for memory."""
        with self._lock:
            return sum(1 for w in self._heap if not w.cancelled)

    def reserve(
        self,
        owner: str,
        nbytes: int,
        priority: int = 0,
        timeout: float | None = None,
        *,
        device: int | None = None,
        pid: int | None = None,
        lease_s: float | None = None,
    ) -> ReservationRequest:
        """A context manager (sync or async) that reserves ``nbytes`` for ``owner``.

        ``with alloc.reserve("worker-1", 2 * GIB) as r:`` waits until the memory fits,
        yields a :class:`Reservation` (``r.device``, ``r.nbytes``) and releases it on exit.

        Args:
            owner: Who holds the memory (shown in listings and findings).
            nbytes: Bytes to reserve (> 0).
            priority: Higher is granted first among waiting requests.
            timeout: Seconds to wait for memory; ``None`` waits forever, 0 never waits.
            device: Put it on this device; ``None`` lets best-fit choose.
            pid: Owning process (1 to :data:`PID_MAX`); released by :meth:`collect` when it
                exits.
            lease_s: Lease length; released by :meth:`collect` unless renewed in time.

        Raises:
            CapacityError: ``nbytes`` exceeds every allowed device's budget (at call time).
            InputError: ``nbytes`` <= 0, a bad device index, a negative timeout or a pid out
                of range.
            WaitTimeout: (on enter) the memory did not free up within ``timeout``.
            WaitCancelled: (on enter) :meth:`ReservationRequest.cancel` was called, or the
                allocator was closed while the request waited.
        """
        self._validate(owner, nbytes, timeout, device, lease_s, pid)
        return ReservationRequest(self, owner, nbytes, priority, timeout, device, pid, lease_s)

    def acquire(
        self,
        owner: str,
        nbytes: int,
        priority: int = 0,
        timeout: float | None = None,
        *,
        device: int | None = None,
        pid: int | None = None,
        lease_s: float | None = None,
    ) -> Reservation:
        """Reserve and return a :class:`Reservation` the caller must release (same args as
        :meth:`reserve`)."""
        return self.reserve(
            owner, nbytes, priority, timeout, device=device, pid=pid, lease_s=lease_s
        ).acquire()

    def acquire_model(
        self,
        model: str,
        nbytes: int,
        *,
        keep_alive_s: float = 300.0,
        priority: int = 0,
        timeout: float | None = None,
        device: int | None = None,
        pid: int | None = None,
    ) -> tuple[Reservation, bool]:
        """Use a resident model, reserving its memory first if it is not resident.

        Returns:
            ``(reservation, newly_reserved)``; load the model when ``newly_reserved`` is
            True. Hand the reservation back with :meth:`release_model` when done.
        """
        req = self.model_request(
            model,
            nbytes,
            keep_alive_s=keep_alive_s,
            priority=priority,
            timeout=timeout,
            device=device,
            pid=pid,
        )
        r = req.acquire()
        return r, req.fresh

    def model_request(
        self,
        model: str,
        nbytes: int,
        *,
        keep_alive_s: float = 300.0,
        priority: int = 0,
        timeout: float | None = None,
        device: int | None = None,
        pid: int | None = None,
    ) -> ReservationRequest:
        """A request for model residency (see :meth:`acquire_model`); ``pid`` is the process
        that holds the model's memory (for reconciliation and dead-owner cleanup)."""
        if keep_alive_s < 0:
            raise InputError(f"keep_alive_s={keep_alive_s} must be >= 0")
        owner = f"model:{model}"
        self._validate(owner, nbytes, timeout, device, None, pid)
        return ReservationRequest(
            self, owner, nbytes, priority, timeout, device, pid, None, model, keep_alive_s
        )

    def release_model(self, r: Reservation) -> None:
        """A user of a resident model is done: it stays loaded for its keep-alive."""
        self._release_model_or_plain(r)

    def resident_models(self) -> list[Reservation]:
        """Resident model reservations (in use or idle)."""
        with self._lock:
            return [r for rs in self._models.values() for r in rs]

    def unload_model(self, model: str) -> int:
        """Release idle resident copies of ``model`` now; returns how many were released."""
        events: list[AllocatorEvent] = []
        notify: list[_Waiter] = []
        with self._lock:
            for r in list(self._models.get(model, ())):
                if r.refs == 0:
                    self._drop(r)
                    events.append(AllocatorEvent("expired", r, self._clock()))
            self._grant_waiters(notify)
        self._after(notify, events)
        return len(events)

    def get(self, reservation_id: int) -> Reservation:
        """The live reservation with this id.

        Raises:
            NotFoundError: no live reservation has it.
        """
        r = self._res.get(reservation_id)
        if r is None:
            raise NotFoundError(f"no live reservation with id {reservation_id}")
        return r

    def release(self, reservation_id: int, *, force: bool = False) -> Reservation:
        """Release the live reservation with this id and return it.

        A resident model's reservation is released only while no job uses it (its loader
        is told through a ``released`` event and unloads it), unless ``force``.

        Raises:
            NotFoundError: no live reservation has it (unknown or already released).
            ConflictError: it is a resident model in use and ``force`` is False.
        """
        r = self.get(reservation_id)
        if r.model is not None and r.refs > 0 and not force:
            raise ConflictError(
                f"reservation {reservation_id} holds model {r.model!r}, in use by {r.refs} "
                "job(s); it becomes idle when they finish and is unloaded after its keep-alive"
            )
        if not self._release(r, "released"):
            raise NotFoundError(f"reservation {reservation_id} was already released")
        return r

    def reservations(self) -> list[Reservation]:
        """Live reservations, oldest first."""
        with self._lock:
            return list(self._res.values())

    def set_online(self, device: int, online: bool) -> None:
        """Take a device out of (or back into) placement, e.g. when it fell off the bus.

        Existing reservations stay; :meth:`collect` or their owners release them.
        """
        self._check_device(device)
        notify: list[_Waiter] = []
        with self._lock:
            self._online[device] = online
            if online:
                self._grant_waiters(notify)
        self._after(notify, [])

    def add_listener(self, fn: Callable[[AllocatorEvent], None]) -> None:
        """Call ``fn(event)`` (outside the lock) for evictions, expiries and cleanups."""
        self._listeners.append(fn)

    def collect(self) -> list[AllocatorEvent]:
        """Release expired idle models, expired leases and reservations of dead owners.

        Call it periodically (:meth:`start_janitor` does). Returns what it released.
        """
        now = self._clock()
        events: list[AllocatorEvent] = []
        notify: list[_Waiter] = []
        with self._lock:
            pids: dict[int, bool | None] = {}
            for r in list(self._res.values()):
                kind = None
                idle_until = r.idle_expires_at
                if r.refs == 0 and idle_until is not None and idle_until <= now:
                    kind = "expired"
                elif r.lease_expires_at is not None and r.lease_expires_at <= now:
                    kind = "lease_expired"
                elif r.pid is not None:
                    if r.pid not in pids:
                        pids[r.pid] = self._check_pid(r)
                    if pids[r.pid] is False:
                        kind = "owner_dead"
                if kind is not None:
                    self._drop(r)
                    self.stats[kind] += 1
                    events.append(AllocatorEvent(kind, r, now))
            if self._unchecked_pids:
                self._unchecked_pids &= self._res.keys()
            if events:
                self._grant_waiters(notify)
        self._after(notify, events)
        return events

    def _check_pid(self, r: Reservation) -> bool | None:
        """Whether ``r``'s owner process is alive; ``None`` when it cannot be told (lock held).

        A failing check keeps the reservation (its lease still ends it) and is logged once
        per reservation, so one bad entry neither stops the cleanup nor floods the log.
        """
        assert r.pid is not None
        try:
            return self._pid_alive(r.pid)
        except Exception as exc:
            if r.id not in self._unchecked_pids:
                self._unchecked_pids.add(r.id)
                log.warning(
                    "cannot tell whether pid %d of reservation %d (%r) is alive (%s: %s); "
                    "keeping it until its lease ends",
                    r.pid,
                    r.id,
                    r.owner,
                    type(exc).__name__,
                    exc,
                )
            return None

    def process_alive(self, pid: int) -> bool:
        """Whether process ``pid`` runs (as :meth:`collect` would judge it); False for a pid
        outside 1 to :data:`PID_MAX` or one that cannot be checked."""
        try:
            return 0 < pid <= PID_MAX and self._pid_alive(pid)
        except Exception:
            return False

    def close(self) -> None:
        """Wake and refuse every waiting request, and let no new request wait (idempotent).

        Granted reservations stay as they are; immediate grants still succeed. Waiters raise
        :class:`WaitCancelled`.
        """
        with self._lock:
            self._closed = True
            woken = [w for w in self._heap if not w.cancelled and w.result is None]
            for w in woken:
                w.cancelled = True
            self.stats["cancelled"] += len(woken)
            self._heap.clear()
        for w in woken:
            w.wake()

    def start_janitor(self, interval_s: float = 1.0) -> threading.Event:
        """Run :meth:`collect` every ``interval_s`` on a daemon thread; set the returned
        event to stop it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.collect()
                except Exception:  # keep cleaning; a listener bug must not stop it
                    log.exception("allocator janitor failed")

        threading.Thread(target=loop, name="vram-janitor", daemon=True).start()
        return stop

    def calibrate(self, readings: Iterable[DeviceReading]) -> None:
        """Record current measured usage as the baseline (memory in use before, or outside,
        the allocator's promises: driver reserve, display, other tenants)."""
        with self._lock:
            for rd in readings:
                if rd.available and rd.memory_used_bytes is not None:
                    self._baseline[rd.index] = max(0, rd.memory_used_bytes - self._used[rd.index])

    def reconcile(
        self, readings: Iterable[DeviceReading], *, tolerance_bytes: int = 256 * MIB
    ) -> ReconcileReport:
        """Compare the ledger with measured memory (see :class:`ReconcileReport`).

        Per device, measured - baseline - reserved beyond ``tolerance_bytes`` is flagged as
        ``used_unreserved`` (positive) or ``reserved_unused`` (negative). Where the driver
        reports per-process memory and reservations carry a ``pid``, each process's usage
        is compared with its reservations, and processes with memory but no reservation
        are flagged (pids from another container namespace included).
        """
        with self._lock:
            held = list(self._res.values())
            used = list(self._used)
            baseline = list(self._baseline)
        return reconcile_ledger(readings, held, used, baseline, tolerance_bytes)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state: per-device budget, reserved, free, evictable, models; counts."""
        with self._lock:
            devices = [
                {
                    "device": d,
                    "online": self._online[d],
                    "total_bytes": self._totals[d],
                    "budget_bytes": self._budget[d],
                    "reserved_bytes": self._used[d],
                    "free_bytes": self._budget[d] - self._used[d],
                    "evictable_bytes": self._evictable[d],
                    "models": sorted(
                        r.model
                        for rs in self._models.values()
                        for r in rs
                        if r.device == d and r.model
                    ),
                }
                for d in self._devices
            ]
            return {
                "devices": devices,
                "reservations": len(self._res),
                "waiting": sum(1 for w in self._heap if not w.cancelled),
                "stats": dict(self.stats),
                "eviction": self.eviction,
            }

    # -- internals: validation -----------------------------------------------------------

    def _check_device(self, device: int) -> None:
        if not 0 <= device < len(self._budget):
            raise InputError(
                f"device={device} is out of range; this allocator has {len(self._budget)} "
                "device(s)",
                details={"field": "device"},
            )

    def _validate(
        self,
        owner: str,
        nbytes: int,
        timeout: float | None,
        device: int | None,
        lease_s: float | None,
        pid: int | None,
    ) -> None:
        if nbytes <= 0:
            raise InputError(f"nbytes={nbytes} must be positive", details={"field": "nbytes"})
        if pid is not None and not 0 < pid <= PID_MAX:
            raise InputError(
                f"pid={pid} is not a process id; use 1 to {PID_MAX}, or no pid",
                details={"field": "pid"},
            )
        if timeout is not None and timeout < 0:
            raise InputError(f"timeout={timeout} must be >= 0 or None")
        if lease_s is not None and not lease_s > 0:
            raise InputError(f"lease_s={lease_s} must be positive or None")
        limit = self._max_budget
        if device is not None:
            self._check_device(device)
            limit = self._budget[device]
        if nbytes > limit:
            with self._lock:
                self.stats["refused"] += 1
            where = f"device {device}" if device is not None else "any device"
            raise CapacityError(
                f"{owner!r} asked for {nbytes / GIB:.2f} GiB, more than the "
                f"{limit / GIB:.2f} GiB budget of {where}; it can never fit. Ask for less, "
                "or raise budget_fraction",
                details={"field": "nbytes", "nbytes": nbytes, "budget_bytes": limit},
            )

    # -- internals: the decision (called with the lock held) ------------------------------

    def _place(self, nbytes: int, device: int | None) -> int:
        """Best-fit device for ``nbytes``, evicting idle models if needed; -1 if none."""
        budget, used, online = self._budget, self._used, self._online
        if device is not None:
            if online[device] and budget[device] - used[device] >= nbytes:
                return device
            candidates: Iterable[int] = (device,)
        else:
            best, best_left = -1, -1
            for d in self._devices:
                left = budget[d] - used[d] - nbytes
                if left >= 0 and online[d] and (best < 0 or left < best_left):
                    best, best_left = d, left
            if best >= 0:
                return best
            candidates = self._devices
        # Nothing fits as is: evict idle resident models on the best-fitting device.
        best, best_left = -1, -1
        for d in candidates:
            left = budget[d] - used[d] + self._evictable[d] - nbytes
            if left >= 0 and online[d] and (best < 0 or left < best_left):
                best, best_left = d, left
        if best < 0:
            return -1
        self._evict_for(best, nbytes)
        return best

    def _evict_for(self, d: int, nbytes: int) -> None:
        idle = self._idle[d]
        key = (
            (lambda r: r.last_used)
            if self.eviction == "lru"
            else (lambda r: r.idle_expires_at or 0.0)
        )
        now = self._clock()
        for victim in sorted(idle.values(), key=key):
            if self._budget[d] - self._used[d] >= nbytes:
                break
            self._drop(victim)
            self.stats["evicted"] += 1
            self._pending_events.append(AllocatorEvent("evicted", victim, now))

    def _grant(
        self,
        owner: str,
        nbytes: int,
        priority: int,
        device: int,
        pid: int | None,
        lease_s: float | None,
        model: str | None,
        keep_alive_s: float,
    ) -> Reservation:
        r = Reservation(
            self, next(self._ids), owner, device, nbytes, priority, pid, self._clock(), lease_s
        )
        self._used[device] += nbytes
        self._res[r.id] = r
        if model is not None:
            r.model = model
            r.refs = 1
            r.keep_alive_s = keep_alive_s
            self._models.setdefault(model, []).append(r)
        self.stats["granted"] += 1
        return r

    def _share_model(self, model: str, device: int | None) -> Reservation | None:
        """A resident copy of ``model`` to share (prefer one in use, then most recent)."""
        copies = self._models.get(model)
        if not copies:
            return None
        for r in copies:
            if (device is None or r.device == device) and self._online[r.device]:
                if r.refs == 0:
                    del self._idle[r.device][r.id]
                    self._evictable[r.device] -= r.nbytes
                    r.idle_expires_at = None
                r.refs += 1
                self.stats["model_hits"] += 1
                return r
        return None

    def _drop(self, r: Reservation) -> None:
        """Return ``r``'s memory to the budget (lock held; ``r`` must be live)."""
        r._released = True
        self._used[r.device] -= r.nbytes
        del self._res[r.id]
        if r.model is not None:
            if self._idle[r.device].pop(r.id, None) is not None:
                self._evictable[r.device] -= r.nbytes
            copies = self._models[r.model]
            copies.remove(r)
            if not copies:
                del self._models[r.model]
        self.stats["released"] += 1

    def _head(self) -> _Waiter | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _grant_waiters(self, notify: list[_Waiter]) -> None:
        """Grant queued requests in priority order while the head fits."""
        heap = self._heap
        while True:
            w = self._head()
            if w is None:
                return
            r = self._share_model(w.model, w.device) if w.model is not None else None
            if r is None:
                d = self._place(w.nbytes, w.device)
                if d < 0:
                    return
                r = self._grant(
                    w.owner, w.nbytes, w.priority, d, w.pid, w.lease_s, w.model, w.keep_alive_s
                )
                w.fresh = True
            heapq.heappop(heap)
            w.result = r
            self.stats["granted_after_wait"] += 1
            notify.append(w)

    # -- internals: acquire / release ----------------------------------------------------

    def _take_events(self) -> list[AllocatorEvent]:
        """Evictions recorded by :meth:`_place` since the last call (lock held)."""
        events = self._pending_events
        if events:
            self._pending_events = []
        return events

    def _try_now(self, req: ReservationRequest) -> Reservation | None:
        """Grant immediately if allowed (lock held)."""
        head = self._head()
        if head is not None and head.priority >= req.priority:
            return None
        if req.model is not None:
            r = self._share_model(req.model, req.device)
            if r is not None:
                return r
        d = self._place(req.nbytes, req.device)
        if d < 0:
            return None
        req.fresh = True
        return self._grant(
            req.owner,
            req.nbytes,
            req.priority,
            d,
            req.pid,
            req.lease_s,
            req.model,
            req.keep_alive_s,
        )

    def _acquire(self, req: ReservationRequest) -> Reservation:
        w: _Waiter | None = None
        with self._lock:
            r = self._try_now(req)
            if r is None:
                if req.timeout == 0:
                    self.stats["timeouts"] += 1
                elif self._closed or req._cancelled:
                    raise self._refusal(req)
                else:
                    w = _Waiter(req, next(self._seq))
                    w.event = threading.Event()
                    heapq.heappush(self._heap, w)
                    req._waiter = w
            events = self._take_events()
        if events:
            self._after([], events)
        if r is not None:
            return r
        if w is None:
            raise self._timeout_error(req)
        assert w.event is not None
        w.event.wait(req.timeout)
        return self._finish_wait(req, w)

    async def _acquire_async(self, req: ReservationRequest) -> Reservation:
        loop = asyncio.get_running_loop()
        with self._lock:
            r = self._try_now(req)
            w: _Waiter | None = None
            if r is None and req.timeout != 0:
                if self._closed or req._cancelled:
                    raise self._refusal(req)
                w = _Waiter(req, next(self._seq))
                w.loop = loop
                w.async_future = loop.create_future()
                heapq.heappush(self._heap, w)
                req._waiter = w
            elif r is None:
                self.stats["timeouts"] += 1
            events = self._take_events()
        if events:
            self._after([], events)
        if r is not None:
            return r
        if w is None:
            raise self._timeout_error(req)
        assert w.async_future is not None
        try:
            await asyncio.wait({w.async_future}, timeout=req.timeout)
        except asyncio.CancelledError:
            with self._lock:
                granted = w.result
                if granted is None:
                    w.cancelled = True
                    self.stats["cancelled"] += 1
            if granted is not None:
                self._release_model_or_plain(granted)
            else:
                self._regrant()
            raise
        return self._finish_wait(req, w)

    def _finish_wait(self, req: ReservationRequest, w: _Waiter) -> Reservation:
        with self._lock:
            r = w.result
            was_cancelled = w.cancelled
            if r is None and not was_cancelled:
                w.cancelled = True
                self.stats["timeouts"] += 1
        if r is not None:
            req.fresh = w.fresh
            return r
        # The head may have been this waiter: those behind it may fit now.
        self._regrant()
        if was_cancelled:
            raise self._refusal(req)
        raise self._timeout_error(req)

    def _refusal(self, req: ReservationRequest) -> WaitCancelled:
        if self._closed:
            return WaitCancelled(
                f"reservation request of {req.owner!r} was refused: the allocator is closed "
                "(the service is shutting down)"
            )
        return WaitCancelled(f"reservation request of {req.owner!r} was cancelled")

    def _timeout_error(self, req: ReservationRequest) -> WaitTimeout:
        return WaitTimeout(
            f"{req.owner!r} waited {req.timeout} s for {req.nbytes / GIB:.2f} GiB of VRAM "
            "without getting it; raise the timeout, lower the request, or free memory",
            details={"nbytes": req.nbytes, "timeout": req.timeout},
        )

    def _regrant(self) -> None:
        notify: list[_Waiter] = []
        with self._lock:
            self._grant_waiters(notify)
            events = self._take_events()
        self._after(notify, events)

    def _cancel(self, req: ReservationRequest) -> bool:
        with self._lock:
            w = req._waiter
            if w is None:
                req._cancelled = True  # not waiting yet: it never will
                return False
            if w.result is not None or w.cancelled:
                return False
            w.cancelled = True
            self.stats["cancelled"] += 1
        w.wake()
        self._regrant()
        return True

    def _release(self, r: Reservation, why: str) -> bool:
        notify: list[_Waiter] = []
        with self._lock:
            if r._released:
                return False
            self._drop(r)
            if self._heap:
                self._grant_waiters(notify)
                events = self._take_events()
            else:
                events = []
            if r.model is not None:
                # A resident model released outright (not by its users): tell the listeners,
                # so whoever loaded it unloads it.
                events.append(AllocatorEvent(why, r, self._clock()))
        if notify or events:
            self._after(notify, events)
        return True

    def _release_model_or_plain(self, r: Reservation) -> None:
        if r.model is None:
            self._release(r, "released")
            return
        notify: list[_Waiter] = []
        events: list[AllocatorEvent] = []
        with self._lock:
            if r._released or r.refs <= 0:
                return
            r.refs -= 1
            now = self._clock()
            r.last_used = now
            if r.refs == 0:
                if r.keep_alive_s <= 0:
                    self._drop(r)
                    events.append(AllocatorEvent("expired", r, now))
                else:
                    r.idle_expires_at = now + r.keep_alive_s
                    self._idle[r.device][r.id] = r
                    self._evictable[r.device] += r.nbytes
                if self._heap:
                    self._grant_waiters(notify)
                    events.extend(self._take_events())
        self._after(notify, events)

    def _renew(self, r: Reservation, lease_s: float | None) -> float:
        with self._lock:
            if r._released:
                raise ConflictError(f"reservation {r.id} was already released; reserve again")
            length = lease_s if lease_s is not None else r.lease_s
            if length is None or not length > 0:
                raise InputError(f"reservation {r.id} has no lease; pass lease_s > 0")
            r.lease_s = length
            r.lease_expires_at = self._clock() + length
            return r.lease_expires_at

    def _after(self, notify: list[_Waiter], events: list[AllocatorEvent]) -> None:
        # Listeners first: an evicted model's unload hook must finish before the waiter that
        # its memory went to starts loading into it.
        for ev in events:
            for fn in self._listeners:
                try:
                    fn(ev)
                except Exception:
                    log.exception("allocator listener failed on %s", ev.kind)
        for w in notify:
            w.wake()


def set_torch_memory_fraction(
    reservation: Reservation, *, cuda_device: int | None = None, torch_module: Any = None
) -> float:
    """Cap this process's PyTorch CUDA allocator at the reservation's share of the device.

    The caching allocator then raises an out-of-memory error when the process grows past its
    reservation, instead of starving its neighbours.

    Args:
        reservation: A live reservation of this process.
        cuda_device: CUDA index of the device if it differs from the NVML index (it does when
            ``CUDA_VISIBLE_DEVICES`` reorders or hides devices).
        torch_module: The ``torch`` module (tests pass a fake); default imports it.

    Returns:
        The fraction set, in (0, 1].
    """
    if torch_module is None:
        from workbench._optional import require

        torch_module = require("torch", purpose="enforcing a VRAM reservation")
    total = reservation._alloc.device_total(reservation.device)
    fraction = min(1.0, reservation.nbytes / total)
    device = reservation.device if cuda_device is None else cuda_device
    torch_module.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction
