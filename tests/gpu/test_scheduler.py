"""VisionScheduler: priorities with aging, slots, residency hooks, events, failures, cancel."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures import wait as futures_wait
from typing import Any

import pytest

from workbench.errors import ConfigError, InputError, NotFoundError
from workbench.gpu import (
    DEFAULT_MODELS,
    JobContext,
    ManualClock,
    ModelSpec,
    SimulatedBackend,
    VisionScheduler,
    VramAllocator,
)
from workbench.gpu.types import GIB


def _scheduler(devices: int = 1, **kw: Any) -> tuple[VisionScheduler, SimulatedBackend]:
    backend = SimulatedBackend(devices=devices, memory_gib=24)
    return VisionScheduler(VramAllocator(backend), **kw), backend


def _blocker(sched: VisionScheduler, model: str = "yolo-v8n") -> threading.Event:
    """Occupy the only slot until the returned event is set."""
    gate = threading.Event()
    started = threading.Event()

    def task(ctx: JobContext) -> None:
        started.set()
        gate.wait(10)

    sched.submit(model, task, priority=100)
    assert started.wait(5)
    return gate


def test_execute_with_model_runs_the_task_with_its_context() -> None:
    sched, _ = _scheduler()
    ctx = sched.execute_with_model("clip-vit-b32", lambda c: c)
    assert ctx.model == "clip-vit-b32" and ctx.device == 0 and ctx.job_id.startswith("vision_job_")
    kinds = [e.kind for e in sched.events()]
    assert kinds == ["queued", "started", "model_loaded", "completed"]
    sched.shutdown()


def test_the_platform_model_table_is_the_default() -> None:
    assert set(DEFAULT_MODELS) == {"yolo-v8n", "clip-vit-b32", "sd3b", "sdxl-refiner"}
    assert DEFAULT_MODELS["sd3b"].to_platform() == {
        "name": "sd3b",
        "type": "generation",
        "sizeGB": 6.0,
        "loadTimeMs": 15000,
        "priority": 3,
    }


def test_unknown_model_is_not_found() -> None:
    sched, _ = _scheduler()
    with pytest.raises(NotFoundError, match="known: clip-vit-b32"):
        sched.submit("gpt-5", lambda c: None)
    sched.shutdown()


def test_priority_orders_waiting_jobs() -> None:
    sched, _ = _scheduler(aging_per_s=0)
    gate = _blocker(sched)
    order: list[int] = []
    jobs = [
        sched.submit("yolo-v8n", lambda c, p=p: order.append(p), priority=p)
        for p in (1, 7, 3, 7, 5)
    ]
    assert sched.queue_length() == 5
    gate.set()
    for j in jobs:
        j.future.result(5)
    assert order == [7, 7, 5, 3, 1]
    sched.shutdown()


def test_aging_lets_an_old_low_priority_job_overtake() -> None:
    clock = ManualClock()
    sched, _ = _scheduler(aging_per_s=0.1, clock=clock)
    gate = _blocker(sched)
    order: list[str] = []
    old = sched.submit("yolo-v8n", lambda c: order.append("old-low"), priority=0)
    clock.advance(100)  # +10 priority points
    new = sched.submit("yolo-v8n", lambda c: order.append("new-high"), priority=5)
    gate.set()
    old.future.result(5)
    new.future.result(5)
    assert order == ["old-low", "new-high"]
    sched.shutdown()


def test_no_starvation_under_a_stream_of_urgent_jobs() -> None:
    clock = ManualClock()
    sched, _ = _scheduler(aging_per_s=1.0, clock=clock)
    gate = _blocker(sched)
    order: list[str] = []
    low = sched.submit("yolo-v8n", lambda c: order.append("low"), priority=0)
    urgent = []
    for k in range(20):
        clock.advance(1)
        urgent.append(sched.submit("yolo-v8n", lambda c, k=k: order.append(f"u{k}"), priority=5))
    gate.set()
    low.future.result(5)
    for j in urgent:
        j.future.result(5)
    # low (0 at t=0) outranks urgent jobs submitted at t > 5: u0..u4 (t=1..5) may pass it.
    assert order.index("low") <= 5
    sched.shutdown()


def test_slots_per_device_bound_concurrency() -> None:
    sched, _ = _scheduler(devices=2, slots_per_device=2)
    running = 0
    peak = 0
    lock = threading.Lock()

    def task(ctx: JobContext) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.1)  # long enough for all four slots to fill, even on a busy machine
        with lock:
            running -= 1

    jobs = [sched.submit("yolo-v8n", task) for _ in range(12)]
    for j in jobs:
        j.future.result(5)
    assert peak == 4
    sched.shutdown()


def test_models_load_once_stay_resident_and_are_evicted_with_unload() -> None:
    calls: list[str] = []
    backend = SimulatedBackend(devices=1, memory_gib=24)
    models = {
        "big": ModelSpec("big", "generation", 12 * GIB, keep_alive_s=600),
        "other": ModelSpec("other", "generation", 10 * GIB, keep_alive_s=600),
    }

    def load(spec: ModelSpec, device: int) -> str:
        backend.allocate(device, 1, spec.size_bytes)
        calls.append(f"load {spec.name}")
        return f"handle-{spec.name}"

    def unload(spec: ModelSpec, device: int, handle: Any) -> None:
        backend.free(device, 1, spec.size_bytes)
        calls.append(f"unload {spec.name} {handle}")

    sched = VisionScheduler(VramAllocator(backend), models=models, load=load, unload=unload)
    assert sched.execute_with_model("big", lambda c: c.handle) == "handle-big"
    assert sched.execute_with_model("big", lambda c: c.handle) == "handle-big"
    assert calls == ["load big"]
    assert [m["name"] for m in sched.loaded_models()] == ["big"]
    sched.execute_with_model("other", lambda c: None)  # 12 + 10 > 20: big is evicted
    assert calls == ["load big", "unload big handle-big", "load other"]
    kinds = [e.kind for e in sched.events() if e.kind.startswith("model")]
    assert kinds == ["model_loaded", "model_unloaded", "model_loaded"]
    assert backend.read(0).memory_used_bytes == 10 * GIB
    sched.shutdown()


def test_a_failing_task_fails_its_job_only() -> None:
    sched, _ = _scheduler()

    def boom(ctx: JobContext) -> None:
        raise RuntimeError("bad image")

    job = sched.submit("yolo-v8n", boom)
    with pytest.raises(RuntimeError, match="bad image"):
        job.future.result(5)
    assert job.status == "failed" and "bad image" in (job.error or "")
    assert sched.execute_with_model("yolo-v8n", lambda c: 42) == 42  # slot was released
    assert sched.events()[3].kind == "failed"
    sched.shutdown()


def test_a_failing_load_releases_the_memory() -> None:
    def load(spec: ModelSpec, device: int) -> None:
        raise OSError("weights missing")

    sched, _ = _scheduler(load=load)
    with pytest.raises(OSError, match="weights missing"):
        sched.execute_with_model("sd3b", lambda c: None)
    assert sched.allocator.reserved(0) == 0
    assert sched.loaded_models() == []
    sched.shutdown()


def test_cancel_a_queued_job() -> None:
    sched, _ = _scheduler()
    gate = _blocker(sched)
    job = sched.submit("yolo-v8n", lambda c: None)
    assert sched.cancel(job.id)
    assert job.status == "cancelled" and job.future.cancelled()
    assert not sched.cancel(job.id)
    gate.set()
    with pytest.raises(NotFoundError):
        sched.job("vision_job_999")
    sched.shutdown()


def test_async_execute() -> None:
    sched, _ = _scheduler()

    async def main() -> list[int]:
        return await asyncio.gather(
            *(sched.execute_with_model_async("yolo-v8n", lambda c, i=i: i, i) for i in range(5))
        )

    assert sorted(asyncio.run(main())) == [0, 1, 2, 3, 4]
    sched.shutdown()


def test_job_dicts_are_json_ready() -> None:
    import json

    sched, _ = _scheduler()
    job = sched.submit("yolo-v8n", lambda c: None)
    job.future.result(5)
    d = job.to_dict()
    json.dumps(d)
    json.dumps([e.to_dict() for e in sched.events()])
    assert d["status"] == "completed" and d["wait_s"] is not None
    sched.shutdown()


def test_shutdown_cancels_queued_jobs_and_refuses_new_ones() -> None:
    sched, _ = _scheduler()
    gate = _blocker(sched)
    queued = sched.submit("yolo-v8n", lambda c: None)
    threading.Timer(0.05, gate.set).start()
    sched.shutdown(wait=True)
    assert queued.status == "cancelled" and queued.future.cancelled()
    with pytest.raises(InputError, match="shut down"):
        sched.submit("yolo-v8n", lambda c: None)


def test_releasing_an_idle_model_by_id_unloads_it() -> None:
    unloaded: list[str] = []
    sched, _ = _scheduler(unload=lambda spec, d, h: unloaded.append(spec.name))
    sched.execute_with_model("clip-vit-b32", lambda c: None)
    (r,) = sched.allocator.resident_models()
    sched.allocator.release(r.id)
    assert unloaded == ["clip-vit-b32"]
    assert [e.detail for e in sched.events() if e.kind == "model_unloaded"] == [
        {"reason": "released"}
    ]
    sched.shutdown()


def test_the_queue_is_bounded() -> None:
    from workbench.errors import CapacityError

    sched, _ = _scheduler(max_queued=2)
    gate = _blocker(sched)
    queued = [sched.submit("yolo-v8n", lambda c: None) for _ in range(2)]
    with pytest.raises(CapacityError, match="queue") as info:
        sched.submit("yolo-v8n", lambda c: None)
    assert info.value.retry_after_s is not None
    assert sched.cancel(queued[0].id)
    sched.submit("yolo-v8n", lambda c: None)  # a cancelled job frees its place
    gate.set()
    sched.shutdown()
    with pytest.raises(ConfigError):
        _scheduler(max_queued=0)


def _fill(sched: VisionScheduler) -> Any:
    """Reserve the whole budget of device 0, so no model fits until it is released."""
    return sched.allocator.acquire("tenant", sched.allocator.budget(0))


def test_a_job_waiting_for_its_model_memory_can_be_cancelled() -> None:
    sched, _ = _scheduler()
    tenant = _fill(sched)
    ran: list[int] = []
    job = sched.submit("yolo-v8n", lambda c: ran.append(1))
    deadline = time.monotonic() + 5
    while sched.allocator.waiting() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert job.status == "running"  # holds the slot, waits for memory
    assert sched.cancel(job.id)
    with pytest.raises(CancelledError):
        job.future.result(2)
    assert job.status == "cancelled" and sched.running() == 0
    assert sched.allocator.waiting() == 0
    tenant.release()
    sched.execute_with_model("yolo-v8n", lambda c: None, timeout=2)  # the slot is free again
    assert ran == []
    sched.shutdown()


def test_shutdown_wakes_a_job_waiting_for_memory() -> None:
    sched, _ = _scheduler()
    _fill(sched)
    job = sched.submit("yolo-v8n", lambda c: None)  # no timeout: would wait for ever
    deadline = time.monotonic() + 5
    while sched.allocator.waiting() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    sched.shutdown(wait=False)
    futures_wait([job.future], timeout=2)
    assert job.future.done() and job.status == "cancelled"


def test_shutdown_returns_in_bounded_time_past_a_stuck_task() -> None:
    sched, _ = _scheduler()
    stuck = threading.Event()
    started = threading.Event()
    sched.submit("yolo-v8n", lambda c: (started.set(), stuck.wait(30)))
    assert started.wait(5)
    t0 = time.monotonic()
    sched.shutdown(wait=True, timeout=0.5)
    assert time.monotonic() - t0 < 1.5
    # What is still running cannot keep the process from exiting.
    workers = [t for t in threading.enumerate() if t.name.startswith("vision")]
    assert workers and all(t.daemon for t in workers)
    stuck.set()
