"""Contract tests every device backend must pass (simulated and NVML over a fake driver)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workbench.errors import InputError
from workbench.gpu import (
    DeviceBackend,
    DeviceInfo,
    DeviceReading,
    GpuMonitor,
    NvmlBackend,
    SimulatedBackend,
    VramAllocator,
)
from workbench.gpu.types import GIB

from .fake_nvml import FakeDevice, FakeNvml


def _simulated() -> DeviceBackend:
    return SimulatedBackend(devices=2, memory_gib=24)


def _nvml() -> DeviceBackend:
    fake = FakeNvml([FakeDevice(uuid="GPU-a"), FakeDevice(uuid="GPU-b", total=24 * GIB)])
    return NvmlBackend(nvml=fake)


BACKENDS: dict[str, Callable[[], DeviceBackend]] = {"simulated": _simulated, "nvml": _nvml}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> DeviceBackend:
    return BACKENDS[request.param]()


def test_is_a_device_backend(backend: DeviceBackend) -> None:
    assert isinstance(backend, DeviceBackend)
    assert backend.device_count() == 2


def test_device_info(backend: DeviceBackend) -> None:
    for i in range(backend.device_count()):
        info = backend.device_info(i)
        assert isinstance(info, DeviceInfo)
        assert info.index == i
        assert info.memory_total_bytes > 0
        assert info.name
        assert set(info.to_dict()) == {"index", "name", "uuid", "memory_total_bytes"}


def test_read_reports_consistent_memory(backend: DeviceBackend) -> None:
    for i in range(backend.device_count()):
        rd = backend.read(i)
        assert isinstance(rd, DeviceReading)
        assert rd.available and rd.index == i
        assert rd.memory_total_bytes == backend.device_info(i).memory_total_bytes
        assert rd.memory_used_bytes is not None and rd.memory_free_bytes is not None
        assert rd.memory_used_bytes + rd.memory_free_bytes == rd.memory_total_bytes
        d = rd.to_dict()
        assert isinstance(d["processes"], list) and isinstance(d["throttle_reasons"], list)


@pytest.mark.parametrize("bad", [-1, 2, 99])
def test_out_of_range_index_is_an_input_error(backend: DeviceBackend, bad: int) -> None:
    with pytest.raises(InputError, match="out of range"):
        backend.read(bad)
    with pytest.raises(InputError):
        backend.device_info(bad)


def test_close_is_idempotent(backend: DeviceBackend) -> None:
    backend.close()
    backend.close()


def test_monitor_and_allocator_work_on_it(backend: DeviceBackend) -> None:
    readings = GpuMonitor(backend).sample()
    assert [r.index for r in readings] == [0, 1]
    alloc = VramAllocator(backend, budget_fraction=0.5)
    with alloc.reserve("w", GIB) as r:
        assert alloc.reserved(r.device) == GIB
    assert alloc.reserved(0) == alloc.reserved(1) == 0
