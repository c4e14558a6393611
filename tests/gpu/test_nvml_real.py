"""Real NVML: runs only where an NVIDIA driver and GPU are present (deselected elsewhere)."""

from __future__ import annotations

import pytest

from workbench.gpu import GpuMonitor, HealthTracker, NvmlBackend, VramAllocator, nvml_available
from workbench.gpu.types import MIB

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    if not nvml_available():
        pytest.skip("no NVML here")
    b = NvmlBackend()
    yield b
    b.close()


def test_every_device_reads(backend: NvmlBackend) -> None:
    assert backend.device_count() >= 1
    for i in range(backend.device_count()):
        info = backend.device_info(i)
        rd = backend.read(i)
        assert rd.available, rd.error
        assert rd.memory_total_bytes == info.memory_total_bytes > 0
        assert rd.memory_used_bytes is not None and rd.memory_used_bytes <= info.memory_total_bytes


def test_monitor_samples_real_devices(backend: NvmlBackend) -> None:
    health = HealthTracker()
    monitor = GpuMonitor(backend, hz=10, health=health)
    for _ in range(3):
        readings = monitor.sample()
    assert len(readings) == backend.device_count()
    assert health.status()["status"] in {"healthy", "degraded", "unhealthy"}


def test_allocator_budgets_follow_real_memory(backend: NvmlBackend) -> None:
    alloc = VramAllocator(backend, budget_fraction=0.5)
    total = backend.device_info(0).memory_total_bytes
    assert alloc.budget(0) == int(total * 0.5)
    with alloc.reserve("t", 64 * MIB) as r:
        assert alloc.reserved(r.device) == 64 * MIB
    alloc.calibrate([backend.read(i) for i in range(backend.device_count())])
    report = alloc.reconcile([backend.read(i) for i in range(backend.device_count())])
    assert all(d["unaccounted_bytes"] is not None for d in report.devices)
