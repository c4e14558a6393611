"""VisionService wiring and its [gpu] configuration."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from workbench.errors import (
    CapacityError,
    ConfigError,
    ConflictError,
    InputError,
    PermissionDenied,
    WaitTimeout,
    WorkbenchError,
)
from workbench.gpu import SimulatedBackend
from workbench.gpu.service import VisionConfig, VisionService, make_backend


def test_config_from_section_coerces_and_refuses_unknown_keys() -> None:
    cfg = VisionConfig.from_section({"devices": "2", "memory_gib": 16, "backend": "simulated"})
    assert cfg.devices == 2 and cfg.memory_gib == 16.0
    with pytest.raises(ConfigError, match="unknown"):
        VisionConfig.from_section({"gpus": 2})
    with pytest.raises(ConfigError):
        VisionConfig.from_section({"devices": "two"})
    with pytest.raises(ConfigError):
        VisionConfig(backend="cuda")


def test_auto_backend_falls_back_to_simulated_without_nvml() -> None:
    from workbench.gpu import nvml_available

    backend = make_backend(VisionConfig(devices=3))
    if not nvml_available():
        assert isinstance(backend, SimulatedBackend) and backend.device_count() == 3
    backend.close()


def test_service_views_and_external_jobs() -> None:
    service = VisionService(
        VisionConfig(backend="simulated", monitor_hz=50, max_run_s=0.2),
        backend=SimulatedBackend(devices=1, memory_gib=24),
        export_metrics=False,
    ).start()
    try:
        assert service.status()["gpuMetrics"]["totalVRAM"] == 24.0
        assert [m["loaded"] for m in service.models()] == [False] * 4
        job = service.submit_external("clip-vit-b32", 5, None)
        with pytest.raises(Exception, match="not completed within"):
            job.future.result(5)  # nobody completed it: max_run_s ended it
        assert service.job_status(job) == "failed"
        with pytest.raises(ConflictError):
            service.complete_external(job.id, True)
        assert service.models()[1]["loaded"] is True  # resident for its keep-alive
        assert service.metrics()["jobs"] == {"failed": 1}
    finally:
        service.close()


def test_models_and_thresholds_from_config() -> None:
    cfg = VisionConfig.from_section(
        {
            "keep_alive_s": 60,
            "temperature_warning_c": 70,
            "models": {"sam-vit-h": {"type": "analysis", "size_gb": 2.5, "load_ms": 6000}},
        }
    )
    table = cfg.model_table()
    assert table["sam-vit-h"].size_bytes == int(2.5 * 1024**3)
    assert table["sam-vit-h"].load_time_s == 6.0 and table["sam-vit-h"].keep_alive_s == 60
    assert table["sd3b"].keep_alive_s == 60
    assert cfg.thresholds().temperature_warning_c == 70
    with pytest.raises(ConfigError, match="size_gb"):
        VisionConfig(models={"x": {"type": "analysis"}})
    with pytest.raises(ConfigError):
        VisionConfig(models={"x": {"size_gb": "big"}})


def test_a_lost_device_is_taken_out_of_placement_until_it_returns() -> None:
    from workbench.gpu import ScenarioStep

    backend = SimulatedBackend(devices=2, memory_gib=24)
    service = VisionService(
        VisionConfig(backend="simulated"), backend=backend, export_metrics=False
    )
    service.monitor.sample()
    backend.apply([ScenarioStep(0, 0, "fall_off")])
    service.monitor.sample()
    with service.allocator.reserve("w", 1024**3) as r:
        assert r.device == 1
    assert service.allocator.snapshot()["devices"][0]["online"] is False
    backend.apply([ScenarioStep(0, 0, "recover")])
    service.monitor.sample()
    assert service.allocator.snapshot()["devices"][0]["online"] is True
    service.close()


def _service(**config: Any) -> VisionService:
    cfg = VisionConfig(backend="simulated", monitor_hz=20, **config)
    return VisionService(
        cfg, backend=SimulatedBackend(devices=1, memory_gib=24), export_metrics=False
    ).start()


def _wait(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def test_new_knobs_are_validated() -> None:
    cfg = VisionConfig()
    assert cfg.max_lease_s == 3600 and cfg.max_queued_jobs == 256
    for bad in ({"max_lease_s": 0}, {"max_lease_s": 86_401}, {"max_queued_jobs": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            VisionConfig(**bad)


def test_max_run_s_covers_the_wait_for_model_memory() -> None:
    service = _service(max_run_s=0.3)
    try:
        tenant = service.allocator.acquire("tenant", service.allocator.budget(0))
        job = service.submit_external("clip-vit-b32", 5, None)
        _wait(lambda: service.job_status(job) == "starting")
        with pytest.raises(WaitTimeout, match=r"0\.3 s"):
            job.future.result(3)
        assert service.job_status(job) == "failed"
        assert service.allocator.waiting() == 0 and service.scheduler.running() == 0
        tenant.release()
    finally:
        service.close()


def test_a_starting_job_can_be_cancelled_and_holds_nothing_after() -> None:
    service = _service()
    try:
        tenant = service.allocator.acquire("tenant", service.allocator.budget(0))
        job = service.submit_external("clip-vit-b32", 5, None)
        _wait(lambda: service.job_status(job) == "starting")
        assert service.cancel_job(job.id) is job
        _wait(lambda: job.future.done(), 2)
        assert service.job_status(job) == "cancelled"
        assert service.allocator.waiting() == 0 and service.scheduler.running() == 0
        tenant.release()
        assert service.allocator.reserved(0) == 0  # no model memory was left behind
        running = service.submit_external("yolo-v8n", 5, None)
        _wait(lambda: service.job_status(running) == "running")
        with pytest.raises(ConflictError, match="complete"):
            service.cancel_job(running.id)
    finally:
        service.close()


def test_close_returns_quickly_with_a_stuck_job_and_a_reservation_waiter() -> None:
    service = _service()
    service.allocator.acquire("tenant", service.allocator.budget(0))
    job = service.submit_external("sd3b", 5, None)
    _wait(lambda: service.job_status(job) == "starting")
    waiter_done = threading.Event()

    def waiter() -> None:
        try:
            service.allocator.acquire("waiter", 1024**3, timeout=None)
        except WorkbenchError:
            waiter_done.set()

    threading.Thread(target=waiter, daemon=True).start()
    _wait(lambda: service.allocator.waiting() == 2)
    t0 = time.monotonic()
    service.close()
    assert time.monotonic() - t0 < 3
    assert waiter_done.wait(1) and job.future.done()
    workers = [t for t in threading.enumerate() if t.name.startswith("vision")]
    assert all(t.daemon or not t.is_alive() for t in workers)


def test_the_job_queue_is_bounded() -> None:
    service = _service(max_queued_jobs=2)
    try:
        first = service.submit_external("sd3b", 5, None)
        _wait(lambda: service.job_status(first) == "running")
        for _ in range(2):
            service.submit_external("sd3b", 5, None)
        with pytest.raises(CapacityError, match="max_queued_jobs"):
            service.submit_external("sd3b", 5, None)
    finally:
        service.close()


def test_reservations_are_released_and_renewed_by_their_owner_or_an_admin() -> None:
    service = _service()
    try:
        r = service.allocator.acquire("alice", 1024**3, lease_s=60)
        for owner in (None, "bob"):
            with pytest.raises(PermissionDenied, match="alice"):
                service.release_reservation(r.id, owner=owner, admin=False)
            with pytest.raises(PermissionDenied):
                service.renew_reservation(r.id, 30, owner=owner, admin=False)
        service.renew_reservation(r.id, 30, owner="alice", admin=False)
        service.renew_reservation(r.id, 30, owner=None, admin=True)
        assert service.renew_reservation(r.id, 7200, owner="alice", admin=False).lease_s == 3600
        assert service.release_reservation(r.id, owner="alice", admin=False) is r
        job = service.submit_external("yolo-v8n", 5, None)
        _wait(lambda: service.job_status(job) == "running")
        service.complete_external(job.id, True)
        job.future.result(2)
        (model,) = service.allocator.resident_models()
        with pytest.raises(PermissionDenied, match="admin"):
            service.release_reservation(model.id, owner=model.owner, admin=False)
        service.release_reservation(model.id, owner=None, admin=True)
        assert service.allocator.resident_models() == []
    finally:
        service.close()


def test_leases_are_always_finite() -> None:
    service = _service(max_lease_s=120)

    async def main() -> None:
        r = await service.reserve("w", 1024**3, lease_s=None)
        assert r.lease_expires_at is not None and r.lease_s == 120
        assert (await service.reserve("w", 1024**3, lease_s=86_400)).lease_s == 120
        assert (await service.reserve("w", 1024**3, lease_s=60)).lease_s == 60
        with pytest.raises(InputError, match="leaseS") as info:
            await service.reserve("w", 1024**3, lease_s=0)
        assert info.value.details == {"field": "leaseS"}

    try:
        asyncio.run(main())
    finally:
        service.close()


def test_a_wait_that_runs_out_is_a_capacity_error_with_retry_after() -> None:
    service = _service()

    async def main() -> None:
        await service.reserve("a", 15 * 1024**3)
        with pytest.raises(CapacityError, match="within") as info:
            await service.reserve("b", 10 * 1024**3, timeout_s=0.05)
        assert info.value.retry_after_s is not None and info.value.retry_after_s >= 1

    try:
        asyncio.run(main())
    finally:
        service.close()
