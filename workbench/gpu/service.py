"""One object wiring the GPU subsystem for a long-running process (the HTTP service, the CLI).

:class:`VisionService` owns a backend (NVML where a driver answers, else simulated), a
:class:`~workbench.gpu.allocator.VramAllocator`, a
:class:`~workbench.gpu.scheduler.VisionScheduler`, a :class:`~workbench.gpu.monitor.GpuMonitor`
with health tracking and Prometheus export, and the allocator's janitor thread. It also gives
the platform's view of them (``status``, ``models``) with real numbers, or ``None`` where the
device does not report one.

**External jobs.** Over HTTP the work itself runs in another process (the vision worker), so
a job submitted there is a claim: it queues like any job (at most ``max_queued_jobs`` of
them), holds a slot while it waits for its model's memory (status ``starting``), and once it
holds both its status becomes ``running``; the worker then does the work and reports
``complete``. ``max_run_s`` counts from the slot, the wait for memory included: a job not
completed by then fails, so neither a crashed worker nor a model that never fits holds a slot
for ever. A queued or starting job can be cancelled.

**Reservations over HTTP** (:meth:`VisionService.reserve`): every lease is finite. No lease
means ``max_lease_s``, and a longer one is shortened to it, as a DHCP server grants at most
its maximum lease; the reservation's ``lease_s`` says what was granted. A wait that runs out
is a :class:`~workbench.errors.CapacityError` with a retry time (the server did not fail;
memory was busy), and a wait whose client went away ends without a grant. A reservation is
released or renewed by its owner or the admin; resident models only by the admin.

**Shutdown** (:meth:`VisionService.close`) returns within ``timeout_s`` whatever is in
flight: external jobs are failed, queued and starting jobs cancelled, every allocator waiter
woken and refused, and the scheduler's threads (daemon threads) joined with a timeout.

Knobs come from the ``[gpu]`` section of the settings (``WORKBENCH_GPU__<KEY>``), see
:class:`VisionConfig`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.config import Settings, from_section
from workbench.errors import (
    BackendUnavailable,
    CapacityError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
    WaitTimeout,
)
from workbench.gpu.allocator import VramAllocator
from workbench.gpu.health import HealthEvent, HealthThresholds, HealthTracker
from workbench.gpu.monitor import GpuMonitor, PrometheusExporter
from workbench.gpu.reservation import Reservation, WaitCancelled
from workbench.gpu.scheduler import DEFAULT_MODELS, Job, JobContext, ModelSpec, VisionScheduler
from workbench.gpu.simulated import SimulatedBackend
from workbench.gpu.types import GIB, DeviceBackend

__all__ = [
    "CLOSE_TIMEOUT_S",
    "MAX_LEASE_CEILING_S",
    "VisionConfig",
    "VisionService",
    "make_backend",
]

log = logging.getLogger(__name__)

#: Seconds :meth:`VisionService.close` may take, whatever is in flight.
CLOSE_TIMEOUT_S = 2.0
#: The largest ``[gpu] max_lease_s`` accepted (one day).
MAX_LEASE_CEILING_S = 86_400.0
#: How often a reservation waiter checks whether its client is still there, seconds.
_GONE_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class VisionConfig:
    """Knobs of the vision service (``[gpu]`` in workbench.toml).

    Attributes:
        backend: ``auto`` (NVML if it initialises, else simulated), ``nvml`` or ``simulated``.
        devices: Simulated devices.
        memory_gib: Memory of each simulated device, GiB.
        budget_fraction: Share of each device the allocator may reserve.
        slots_per_device: Concurrent jobs per device.
        monitor_hz: Background sampling rate.
        aging_per_s: Priority gained per second of queueing.
        janitor_interval_s: Period of the allocator's cleanup.
        max_run_s: Longest an external job may hold its slot (waiting for its model's
            memory included) before it fails.
        max_lease_s: Longest lease of a reservation, seconds (default 3600; at most 86,400):
            a reservation asked without a lease gets this one, and longer leases or renewals
            are shortened to it.
        max_queued_jobs: External jobs that may wait for a slot (default 256); more are
            refused with ``CAPACITY_EXCEEDED``.
        keep_alive_s: Idle time a model stays resident (every model of the table).
        temperature_warning_c: Health warning temperature, °C.
        temperature_critical_c: Health critical temperature, °C.
        memory_warning_fraction: Health warning at this used / total memory.
        models: Extra or replaced models: ``{name: {type, size_gb, load_ms, priority,
            keep_alive_s}}`` (``[gpu.models.<name>]`` tables in workbench.toml), added to the
            platform's table.
    """

    backend: str = "auto"
    devices: int = 1
    memory_gib: float = 24.0
    budget_fraction: float = 20 / 24
    slots_per_device: int = 1
    monitor_hz: float = 2.0
    aging_per_s: float = 0.1
    janitor_interval_s: float = 1.0
    max_run_s: float = 600.0
    max_lease_s: float = 3600.0
    max_queued_jobs: int = 256
    keep_alive_s: float = 300.0
    temperature_warning_c: float = 83.0
    temperature_critical_c: float = 90.0
    memory_warning_fraction: float = 0.90
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in {"auto", "nvml", "simulated"}:
            raise ConfigError(f"gpu.backend={self.backend!r}: use auto, nvml or simulated")
        if self.devices < 1 or self.memory_gib <= 0:
            raise ConfigError("gpu.devices must be >= 1 and gpu.memory_gib > 0")
        if not self.max_run_s > 0 or not self.janitor_interval_s > 0:
            raise ConfigError("gpu.max_run_s and gpu.janitor_interval_s must be positive")
        checks = (
            ("budget_fraction", 0 < self.budget_fraction <= 1, "a share of the device in (0, 1]"),
            ("slots_per_device", self.slots_per_device >= 1, "at least 1 concurrent job"),
            ("monitor_hz", 0 < self.monitor_hz <= 100, "a sampling rate in (0, 100] Hz"),
            ("aging_per_s", self.aging_per_s >= 0, "a priority gain >= 0 per second"),
            ("keep_alive_s", self.keep_alive_s >= 0, "a residency time >= 0 s"),
            (
                "max_lease_s",
                0 < self.max_lease_s <= MAX_LEASE_CEILING_S,
                f"a lease in (0, {MAX_LEASE_CEILING_S:g}] s",
            ),
            (
                "max_queued_jobs",
                1 <= self.max_queued_jobs <= 1_000_000,
                "a queue length from 1 to 1,000,000",
            ),
            (
                "memory_warning_fraction",
                0 < self.memory_warning_fraction <= 1,
                "a share of the memory in (0, 1]",
            ),
            (
                "temperature_critical_c",
                self.temperature_critical_c >= self.temperature_warning_c,
                "at least temperature_warning_c",
            ),
        )
        for key, ok, fix in checks:
            if not ok:
                raise ConfigError(
                    f"invalid setting [gpu] {key}={getattr(self, key)!r}: use {fix}",
                    details={"key": f"gpu.{key}"},
                )
        self.model_table()  # validates the extra models
        self.thresholds()

    def thresholds(self) -> HealthThresholds:
        """Health thresholds from the knobs."""
        return HealthThresholds(
            temperature_warning_c=self.temperature_warning_c,
            temperature_critical_c=self.temperature_critical_c,
            memory_warning_fraction=self.memory_warning_fraction,
            memory_critical_fraction=max(0.98, self.memory_warning_fraction),
        )

    def model_table(self) -> dict[str, ModelSpec]:
        """The platform's model table plus ``models``, with ``keep_alive_s`` applied."""
        table = {
            name: replace(spec, keep_alive_s=self.keep_alive_s)
            for name, spec in DEFAULT_MODELS.items()
        }
        for name, raw in self.models.items():
            if not isinstance(raw, Mapping):
                raise ConfigError(f"[gpu.models.{name}] must be a table of model fields")
            unknown = set(raw) - {"type", "size_gb", "load_ms", "priority", "keep_alive_s"}
            if unknown or "size_gb" not in raw:
                raise ConfigError(
                    f"[gpu.models.{name}] needs size_gb and may have type, load_ms, priority, "
                    f"keep_alive_s; got {sorted(raw)}"
                )
            try:
                table[name] = ModelSpec(
                    name,
                    str(raw.get("type", "analysis")),
                    int(float(raw["size_gb"]) * GIB),
                    float(raw.get("load_ms", 0)) / 1000,
                    int(raw.get("priority", 0)),
                    float(raw.get("keep_alive_s", self.keep_alive_s)),
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"[gpu.models.{name}]: {exc}") from None
        return table

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> VisionConfig:
        """Build from the ``[gpu]`` settings section, refusing unknown keys."""
        return from_section(cls, section, "gpu")

    @classmethod
    def from_settings(cls, settings: Settings) -> VisionConfig:
        """Build from the settings' ``[gpu]`` section."""
        return cls.from_section(settings.section("gpu"))


def make_backend(config: VisionConfig) -> DeviceBackend:
    """The configured backend; ``auto`` falls back to simulated where NVML is absent."""
    if config.backend in {"auto", "nvml"}:
        try:
            from workbench.gpu._nvml import NvmlBackend

            return NvmlBackend()
        except (BackendUnavailable, ImportError) as exc:
            if config.backend == "nvml":
                raise BackendUnavailable(f"gpu.backend=nvml but {exc}") from exc
            log.info("no NVML here (%s); using a simulated GPU", exc)
    return SimulatedBackend(devices=config.devices, memory_gib=config.memory_gib)


class _External:
    __slots__ = ("done", "error", "ok", "started")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.started = False
        self.ok = True
        self.error: str | None = None


class VisionService:
    """The GPU subsystem assembled for a service (see the module docstring).

    Args:
        config: Knobs (default :class:`VisionConfig`).
        backend: Use this backend instead of :func:`make_backend`.
        export_metrics: Publish readings as Prometheus gauges.
    """

    def __init__(
        self,
        config: VisionConfig | None = None,
        *,
        backend: DeviceBackend | None = None,
        export_metrics: bool = True,
    ) -> None:
        self.config = config or VisionConfig()
        self.backend = backend or make_backend(self.config)
        self.allocator = VramAllocator(self.backend, self.config.budget_fraction)
        self.scheduler = VisionScheduler(
            self.allocator,
            models=self.config.model_table(),
            slots_per_device=self.config.slots_per_device,
            aging_per_s=self.config.aging_per_s,
            max_queued=self.config.max_queued_jobs,
        )
        self.health = HealthTracker(self.config.thresholds())
        self.health.add_listener(self._on_health)
        exporter = PrometheusExporter(self.backend) if export_metrics else None
        self.monitor = GpuMonitor(
            self.backend,
            self.config.monitor_hz,
            health=self.health,
            exporter=exporter,
            allocator=self.allocator,
        )
        self._external: dict[str, _External] = {}
        self._lock = threading.Lock()
        self._janitor: threading.Event | None = None

    def start(self) -> VisionService:
        """Start sampling and cleanup (takes a first sample so views are never empty)."""
        self.monitor.sample()
        self.monitor.start()
        self._janitor = self.allocator.start_janitor(self.config.janitor_interval_s)
        return self

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop threads, end every job and wait, and release the driver (idempotent).

        Returns within about ``timeout_s`` whatever is in flight (see the module docstring).
        """
        deadline = time.monotonic() + timeout_s
        self.monitor.stop(timeout=min(1.0, timeout_s / 2))
        if self._janitor is not None:
            self._janitor.set()
        for ext in list(self._external.values()):
            ext.ok, ext.error = False, "service shut down"
            ext.done.set()
        self.scheduler.shutdown(wait=False)  # queued and starting jobs are cancelled
        self.allocator.close()  # every other waiter is woken and refused
        self.scheduler.shutdown(wait=True, timeout=max(0.0, deadline - time.monotonic()))
        self.backend.close()

    def _on_health(self, event: HealthEvent) -> None:
        # A device that fell off gets no new reservations until it answers again.
        if event.issue.check == "device_lost":
            online = event.kind == "cleared"
            log.warning("GPU %d %s", event.issue.device, "is back" if online else "was lost")
            self.allocator.set_online(event.issue.device, online)

    # -- views ---------------------------------------------------------------------------

    def readings(self) -> list[Any]:
        return self.monitor.latest() or self.monitor.sample()

    def status(self) -> dict[str, Any]:
        """The platform's ``/vision/status``: GPU metrics (GB), loaded models, queue."""
        readings = self.readings()
        total = sum(self.allocator.device_total(r.index) for r in readings)
        used = [r.memory_used_bytes for r in readings if r.available]
        temps = [r.temperature_c for r in readings if r.temperature_c is not None]
        utils = [r.utilization_pct for r in readings if r.utilization_pct is not None]
        used_total = sum(u for u in used if u is not None) if used else None
        budget = sum(self.allocator.budget(d) for d in range(self.allocator.device_count))
        reserved = sum(self.allocator.reserved(d) for d in range(self.allocator.device_count))
        return {
            "gpuMetrics": {
                "totalVRAM": round(total / GIB, 3),
                "usedVRAM": None if used_total is None else round(used_total / GIB, 3),
                "availableVRAM": None
                if used_total is None
                else round((total - used_total) / GIB, 3),
                "budgetVRAM": round(budget / GIB, 3),
                "reservedVRAM": round(reserved / GIB, 3),
                "temperature": max(temps) if temps else None,
                "utilization": round(sum(utils) / len(utils), 1) if utils else None,
            },
            "loadedModels": self.scheduler.loaded_models(),
            "queueLength": self.scheduler.queue_length(),
            "activeTasks": self.scheduler.running(),
            "backend": self.backend.name,
            "deviceCount": self.backend.device_count(),
            "health": self.health.status()["status"],
        }

    def models(self) -> list[dict[str, Any]]:
        """The model table in the platform's ``ModelInfo`` shape with residency."""
        resident = {m["name"]: m for m in self.scheduler.loaded_models()}
        out = []
        for spec in self.scheduler.models.values():
            info = spec.to_platform()
            live = resident.get(spec.name)
            info["loaded"] = live is not None
            info["lastUsed"] = live["lastUsed"] if live else None
            info["device"] = live["device"] if live else None
            out.append(info)
        return out

    def devices(self) -> list[dict[str, Any]]:
        """Per device: static info, the latest reading and the allocator's ledger."""
        snap = {d["device"]: d for d in self.allocator.snapshot()["devices"]}
        out = []
        for rd in self.readings():
            info = self.backend.device_info(rd.index).to_dict()
            info["reading"] = rd.to_dict()
            info["allocator"] = snap.get(rd.index)
            out.append(info)
        return out

    def metrics(self) -> dict[str, Any]:
        """In-process counters (allocator, scheduler, monitor)."""
        jobs = self.scheduler.jobs()
        by_status: dict[str, int] = {}
        for j in jobs:
            by_status[j.status] = by_status.get(j.status, 0) + 1
        return {
            "allocator": self.allocator.snapshot()["stats"],
            "reservations": len(self.allocator.reservations()),
            "waitingReservations": self.allocator.waiting(),
            "jobs": by_status,
            "queueLength": self.scheduler.queue_length(),
            "monitor": {
                "hz": self.monitor.hz,
                "samples": self.monitor.samples_taken,
                "cpuSeconds": round(self.monitor.cpu_seconds, 6),
                "ticksSkipped": self.monitor.ticks_skipped,
            },
        }

    def health_status(self) -> dict[str, Any]:
        """Health with reasons, plus the recent health events."""
        status = self.health.status()
        status["events"] = [e.to_dict() for e in self.health.events()[-50:]]
        return status

    # -- reservations ----------------------------------------------------------------------

    def lease_for(self, lease_s: float | None) -> float:
        """The lease a reservation gets: ``lease_s`` shortened to ``max_lease_s``, or
        ``max_lease_s`` when none is asked (leases are always finite).

        Raises:
            InputError: ``lease_s`` is not positive (field ``leaseS``).
        """
        limit = self.config.max_lease_s
        if lease_s is None:
            return limit
        if not lease_s > 0:
            raise InputError(
                f"leaseS={lease_s} must be positive (at most {limit:g} s, [gpu] max_lease_s)",
                details={"field": "leaseS"},
            )
        return min(float(lease_s), limit)

    async def reserve(
        self,
        owner: str,
        nbytes: int,
        *,
        priority: int = 0,
        timeout_s: float = 0.0,
        device: int | None = None,
        pid: int | None = None,
        lease_s: float | None = None,
        size_field: str = "nbytes",
        gone: Callable[[], bool] | None = None,
    ) -> Reservation:
        """Reserve VRAM for a remote client, waiting up to ``timeout_s``.

        Args:
            owner: Who holds it; only this owner (or the admin) may release or renew it.
            nbytes: Bytes to reserve.
            priority: Higher is granted first among waiting requests.
            timeout_s: Seconds to wait for memory (0: do not wait).
            device: Device index, or ``None`` for best fit.
            pid: Owning process on this host.
            lease_s: Lease, shortened to ``max_lease_s`` (``None``: ``max_lease_s``).
            size_field: The request field the size came from (named in errors).
            gone: Polled while waiting; once it returns True (the client went away) the
                wait ends and nothing is granted.

        Raises:
            CapacityError: larger than any budget (never fits), or no memory came free within
                ``timeout_s`` (with ``retry_after_s``).
            InputError: a bad device or pid.
            NotFoundError: ``pid`` is not a running process here.
            WaitCancelled: the client went away, or the service is closing.
        """
        lease = self.lease_for(lease_s)
        if pid is not None and not self.allocator.process_alive(pid):
            # It would be released as owner_dead at the next cleanup: say so now.
            raise NotFoundError(
                f"pid={pid} is not a running process on this host; give the pid of the "
                "process that uses the memory, or none (the lease then bounds it)",
                details={"field": "pid"},
            )
        try:
            request = self.allocator.reserve(
                owner, nbytes, priority, timeout_s, device=device, pid=pid, lease_s=lease
            )
        except CapacityError as exc:
            details = dict(exc.details) if isinstance(exc.details, dict) else {}
            raise CapacityError(
                f"{size_field}: {exc.message}", details={**details, "field": size_field}
            ) from None
        try:
            if timeout_s == 0 or gone is None:
                granted = await request.acquire_async()
            else:
                granted = await self._acquire_while_present(request.acquire_async(), gone)
        except WaitTimeout:
            raise CapacityError(
                f"{owner!r} asked for {nbytes / GIB:.2f} GiB of VRAM and none came free within "
                f"timeoutS={timeout_s} s; retry later, wait longer, or ask for less",
                details={"field": "timeoutS", "nbytes": nbytes, "timeout_s": timeout_s},
                retry_after_s=max(1.0, timeout_s),
            ) from None
        if gone is not None and gone():
            granted.release()  # granted as its client left: nobody would ever release it
            raise WaitCancelled(f"the client of {owner!r} went away; nothing was reserved")
        return granted

    @staticmethod
    async def _acquire_while_present(acquire: Any, gone: Callable[[], bool]) -> Reservation:
        task: asyncio.Future[Reservation] = asyncio.ensure_future(acquire)
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_GONE_POLL_S)
                if not task.done() and gone():
                    break
        finally:
            if not task.done():
                # Cancelling runs the allocator's clean-up: the wait ends, nothing is granted
                # (a grant that raced the cancellation is given back).
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise WaitCancelled("the client went away while waiting; nothing was reserved")
        return task.result()

    def _authorize(self, r: Reservation, owner: str | None, admin: bool, action: str) -> None:
        if admin:
            return
        if r.model is not None:
            raise PermissionDenied(
                f"reservation {r.id} holds resident model {r.model!r}; only the admin token "
                f"may {action} it"
            )
        if owner != r.owner:
            named = "no owner was named" if owner is None else f"not {owner!r}"
            raise PermissionDenied(
                f"reservation {r.id} belongs to {r.owner!r} ({named}); {action} it as its "
                "owner (owner=<owner>) or with the admin token",
                details={"field": "owner"},
            )

    def release_reservation(self, reservation_id: int, *, owner: str | None, admin: bool) -> Any:
        """Release a reservation as ``owner`` (or as the admin).

        Raises:
            NotFoundError: no live reservation has this id.
            PermissionDenied: ``owner`` is not its owner and ``admin`` is False, or it is a
                resident model and ``admin`` is False.
            ConflictError: a resident model in use by jobs.
        """
        r = self.allocator.get(reservation_id)
        self._authorize(r, owner, admin, "release")
        return self.allocator.release(reservation_id)

    def renew_reservation(
        self, reservation_id: int, lease_s: float | None, *, owner: str | None, admin: bool
    ) -> Reservation:
        """Extend a reservation's lease from now by ``lease_s`` (default: its own lease).

        Raises:
            NotFoundError, PermissionDenied: as :meth:`release_reservation`.
            InputError: the reservation has no lease (a resident model).
        """
        r = self.allocator.get(reservation_id)
        self._authorize(r, owner, admin, "renew")
        r.renew(None if lease_s is None else self.lease_for(lease_s))
        return r

    # -- external jobs -------------------------------------------------------------------

    def submit_external(self, model: str, priority: int, max_run_s: float | None) -> Job:
        """Queue a job whose work another process does (see the module docstring).

        Raises:
            NotFoundError: unknown model.
            CapacityError: ``max_queued_jobs`` jobs are queued already.
        """
        ext = _External()
        limit = min(max_run_s or self.config.max_run_s, self.config.max_run_s)
        scheduler = self.scheduler

        def task(ctx: JobContext) -> dict[str, Any]:
            ext.started = True  # slot and model memory are held from here on
            started_at = scheduler.job(ctx.job_id).started_at
            spent = 0.0 if started_at is None else scheduler.clock() - started_at
            if not ext.done.wait(max(0.0, limit - spent)):
                raise WaitTimeout(
                    f"job {ctx.job_id} was not completed within {limit} s; its worker is "
                    "presumed gone and its slot was taken back",
                )
            if not ext.ok:
                raise RuntimeError(ext.error or "the worker reported a failure")
            return {"device": ctx.device}

        # The wait for the model's memory counts against the same limit.
        job = scheduler.submit(model, task, priority, timeout=limit)
        with self._lock:
            self._external[job.id] = ext
        job.future.add_done_callback(lambda _: self._external.pop(job.id, None))
        return job

    def job_status(self, job: Job) -> str:
        """A job's status, with ``starting`` for a job that holds a slot but is still waiting
        for its model's memory."""
        ext = self._external.get(job.id)
        if job.status == "running" and ext is not None and not ext.started:
            return "starting"
        return job.status

    def job_view(self, job: Job) -> dict[str, Any]:
        """A job as JSON, with the external status."""
        out = job.to_dict()
        out["status"] = self.job_status(job)
        return out

    def complete_external(self, job_id: str, ok: bool, error: str | None = None) -> Job:
        """Report the end of an external job's work.

        Raises:
            NotFoundError: unknown job.
            ConflictError: the job is not running (a queued or starting job is cancelled
                instead).
        """
        job = self.scheduler.job(job_id)
        ext = self._external.get(job_id)
        status = self.job_status(job)
        if status != "running" or ext is None:
            hint = ""
            if status in ("queued", "starting"):
                hint = f"; cancel it with DELETE .../jobs/{job_id} instead"
            raise ConflictError(
                f"job {job_id} is {status}; only a running job can be completed{hint}"
            )
        ext.ok, ext.error = ok, error
        ext.done.set()
        return job

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job that is queued or starting (waiting for its model's memory); what it
        held (its slot, a grant of memory) is released.

        Raises:
            NotFoundError: unknown job.
            ConflictError: the job is running or finished (a running job ends with
                :meth:`complete_external`).
        """
        job = self.scheduler.job(job_id)
        ext = self._external.get(job.id)
        # A started job's worker holds the slot: it ends by completing.
        if (ext is not None and ext.started) or not self.scheduler.cancel(job.id):
            raise ConflictError(
                f"job {job.id} is {self.job_status(job)}; only queued or starting jobs can be "
                "cancelled (a running job ends with POST .../complete)"
            )
        return job
