"""A stream of vision jobs on a simulated 24 GiB GPU (the notebook's and the demo's workload).

:func:`run_vision_workload` drives a :class:`~workbench.gpu.scheduler.VisionScheduler` over a
:class:`~workbench.gpu.simulated.SimulatedBackend`: jobs for a mix of vision models arrive at
random (seeded) times with random priorities; the ``load`` hook makes the simulated process
really hold the model's memory on the device (so the monitor measures it) and waits a scaled
load time; the task keeps the device busy for a scaled run time; ``unload`` frees the memory.
Other tenants reserve VRAM directly now and then. Time is scaled (``time_scale`` real seconds
per simulated second) so hundreds of jobs take seconds.

It records the VRAM timeline (measured and reserved), every job's queue wait, every scheduler
and allocator event, and checks the ledger against the budget at every event. The model table
extends the platform's with larger generation models (sizes illustrative, in GiB) so that the
20 GiB budget forces evictions.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from workbench.gpu.allocator import VramAllocator
from workbench.gpu.monitor import GpuMonitor
from workbench.gpu.reservation import AllocatorEvent
from workbench.gpu.scheduler import DEFAULT_MODELS, JobContext, ModelSpec, VisionScheduler
from workbench.gpu.simulated import SimulatedBackend
from workbench.gpu.types import GIB

__all__ = ["WORKLOAD_MODELS", "WorkloadResult", "run_vision_workload"]

#: Model table of the workload: the platform's four plus larger generation models.
WORKLOAD_MODELS: dict[str, ModelSpec] = {
    **{k: v for k, v in DEFAULT_MODELS.items()},
    "sdxl-base": ModelSpec("sdxl-base", "generation", int(7.0 * GIB), 20.0, 3),
    "flux-schnell": ModelSpec("flux-schnell", "generation", int(12.0 * GIB), 30.0, 3),
    "sam-vit-h": ModelSpec("sam-vit-h", "analysis", int(2.5 * GIB), 6.0, 2),
}
#: Relative arrival rates of the models and their mean simulated run time in seconds.
_MIX = {
    "yolo-v8n": (30, 0.5),
    "clip-vit-b32": (20, 0.8),
    "sam-vit-h": (12, 2.0),
    "sd3b": (10, 6.0),
    "sdxl-refiner": (10, 4.0),
    "sdxl-base": (10, 8.0),
    "flux-schnell": (8, 10.0),
}


@dataclass
class WorkloadResult:
    """What happened.

    Attributes:
        timeline: Samples ``{t, used_gib, reserved_gib, budget_gib, queue}`` (t in seconds
            of simulated time).
        jobs: One dict per job (model, priority, status, wait_s and run_s in simulated s).
        events: Scheduler and allocator events with simulated times.
        budget_bytes: The allocator's budget.
        overcommits: Ledger checks that found reserved > budget (must be 0).
        checks: Number of ledger checks made.
        leftover_reserved_bytes: Reserved after everything was released (must be 0).
        leftover_used_bytes: Device memory still held by simulated processes (must be 0).
        wall_s: Real seconds the run took.
    """

    timeline: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    budget_bytes: int = 0
    overcommits: int = 0
    checks: int = 0
    leftover_reserved_bytes: int = 0
    leftover_used_bytes: int = 0
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Headline numbers."""
        waits = sorted(j["wait_s"] for j in self.jobs if j["wait_s"] is not None)
        done = sum(j["status"] == "completed" for j in self.jobs)
        kinds: dict[str, int] = {}
        for e in self.events:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        return {
            "jobs": len(self.jobs),
            "completed": done,
            "wait_s_median": waits[len(waits) // 2] if waits else None,
            "wait_s_max": waits[-1] if waits else None,
            "peak_reserved_gib": max((s["reserved_gib"] for s in self.timeline), default=0.0),
            "peak_used_gib": max((s["used_gib"] for s in self.timeline), default=0.0),
            "budget_gib": self.budget_bytes / GIB,
            "loads": kinds.get("model_loaded", 0),
            "unloads": kinds.get("model_unloaded", 0),
            "evictions": kinds.get("evicted", 0),
            "overcommits": self.overcommits,
            "ledger_checks": self.checks,
            "leftover_reserved_bytes": self.leftover_reserved_bytes,
            "leftover_used_bytes": self.leftover_used_bytes,
            "wall_s": round(self.wall_s, 3),
        }


def run_vision_workload(
    n_jobs: int = 200,
    *,
    seed: int = 0,
    memory_gib: float = 24.0,
    arrival_rate_per_s: float = 0.25,
    time_scale: float = 0.005,
    keep_alive_s: float = 30.0,
    aging_per_s: float = 0.2,
    tenant_every: int = 15,
) -> WorkloadResult:
    """Run ``n_jobs`` vision jobs on one simulated GPU and return what happened.

    Args:
        n_jobs: Jobs to submit.
        seed: Seed of arrivals, models, priorities and durations.
        memory_gib: Device memory (the budget is 20/24 of it).
        arrival_rate_per_s: Mean job arrivals per simulated second.
        time_scale: Real seconds per simulated second.
        keep_alive_s: Simulated seconds an idle model stays resident.
        aging_per_s: Priority gained per simulated second of queueing.
        tenant_every: Every this many jobs, another tenant reserves 3 GiB for a while.
    """
    rng = random.Random(seed)
    scale = time_scale
    backend = SimulatedBackend(devices=1, memory_gib=memory_gib)
    alloc = VramAllocator(backend, 20 / 24)
    pid = os.getpid()
    models = {
        name: ModelSpec(
            s.name, s.kind, s.size_bytes, s.load_time_s, s.priority, keep_alive_s * scale
        )
        for name, s in WORKLOAD_MODELS.items()
    }
    result = WorkloadResult(budget_bytes=alloc.budget(0))
    t0 = time.monotonic()
    lock = threading.Lock()

    def sim_now() -> float:
        return (time.monotonic() - t0) / scale

    def check_ledger() -> None:
        with lock:
            result.checks += 1
            if alloc.reserved(0) > alloc.budget(0):
                result.overcommits += 1

    def load(spec: ModelSpec, device: int) -> str:
        backend.allocate(device, pid, spec.size_bytes)
        time.sleep(spec.load_time_s * scale * 0.2)
        return spec.name

    def unload(spec: ModelSpec, device: int, handle: Any) -> None:
        backend.free(device, pid, spec.size_bytes)

    sched = VisionScheduler(
        alloc, models=models, load=load, unload=unload, aging_per_s=aging_per_s / scale, pid=pid
    )

    def on_sched(ev: Any) -> None:
        check_ledger()
        with lock:
            result.events.append({**ev.to_dict(), "time": sim_now()})

    def on_alloc(ev: AllocatorEvent) -> None:
        check_ledger()
        with lock:
            result.events.append(
                {
                    "kind": ev.kind,
                    "time": sim_now(),
                    "model": ev.reservation.model,
                    "owner": ev.reservation.owner,
                    "nbytes": ev.reservation.nbytes,
                }
            )

    sched.add_listener(on_sched)
    alloc.add_listener(on_alloc)

    def sample(readings: list[Any]) -> None:
        rd = readings[0]
        with lock:
            result.timeline.append(
                {
                    "t": sim_now(),
                    "used_gib": (rd.memory_used_bytes or 0) / GIB,
                    "reserved_gib": alloc.reserved(0) / GIB,
                    "budget_gib": alloc.budget(0) / GIB,
                    "queue": sched.queue_length(),
                }
            )

    monitor = GpuMonitor(backend, hz=min(200.0, max(5.0, 1 / (scale * 2))))
    monitor.add_listener(sample)
    names = list(_MIX)
    weights = [_MIX[n][0] for n in names]

    def task_for(run_s: float) -> Any:
        def task(ctx: JobContext) -> None:
            backend.set_load(ctx.device, 90)
            time.sleep(run_s * scale)
            backend.set_load(ctx.device, 0)

        return task

    tenants: list[Any] = []
    jobs = []
    monitor.start()
    try:
        for k in range(n_jobs):
            time.sleep(rng.expovariate(arrival_rate_per_s) * scale)
            name = rng.choices(names, weights)[0]
            run_s = rng.expovariate(1 / _MIX[name][1])
            priority = rng.choice([0, 1, 3, 5, 5, 7, 9])
            jobs.append(sched.submit(name, task_for(run_s), priority))
            if tenant_every and k % tenant_every == tenant_every - 1:
                tenants.append(_tenant(alloc, rng.uniform(5, 20) * scale, check_ledger))
        for job in jobs:
            job.future.result(120)
        for t in tenants:
            t.join(30)
    finally:
        sched.shutdown()
        time.sleep(keep_alive_s * scale * 1.5)
        alloc.collect()
        for name in list(models):
            alloc.unload_model(name)
        monitor.sample()
        monitor.stop()
    result.wall_s = time.monotonic() - t0
    result.leftover_reserved_bytes = alloc.reserved(0)
    result.leftover_used_bytes = backend.read(0).memory_used_bytes or 0
    for job in jobs:
        d = job.to_dict()
        result.jobs.append(
            {
                "id": d["id"],
                "model": d["model"],
                "priority": d["priority"],
                "status": d["status"],
                "wait_s": None if d["wait_s"] is None else d["wait_s"] / scale,
                "run_s": None
                if d["finished_at"] is None or d["started_at"] is None
                else (d["finished_at"] - d["started_at"]) / scale,
            }
        )
    result.events.sort(key=lambda e: e["time"])
    return result


def _tenant(alloc: VramAllocator, hold_s: float, check: Any) -> threading.Thread:
    """Another tenant reserving 3 GiB (waits its turn at priority 4) for ``hold_s``."""

    def run() -> None:
        with alloc.reserve("tenant", 3 * GIB, priority=4, timeout=60):
            check()
            time.sleep(hold_s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
