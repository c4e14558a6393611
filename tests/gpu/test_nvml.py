"""The NVML adapter over a fake driver: error translation, missing fields, lost devices."""

from __future__ import annotations

import pytest

from workbench.errors import BackendUnavailable
from workbench.gpu import NvmlBackend, ThrottleReason
from workbench.gpu.types import GIB

from .fake_nvml import DRIVER_NOT_LOADED, GPU_IS_LOST, NOT_SUPPORTED, FakeDevice, FakeNvml


def test_init_failure_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="NVML could not be initialised"):
        NvmlBackend(nvml=FakeNvml([FakeDevice()], init_error=DRIVER_NOT_LOADED))


def test_full_reading_converts_units() -> None:
    dev = FakeDevice(throttle=0x40 | 0x4, ecc=(2, 1), processes=[(4242, 3 * GIB)])
    backend = NvmlBackend(nvml=FakeNvml([dev]), pid_visible=lambda pid: True, wallclock=lambda: 7.0)
    rd = backend.read(0)
    assert rd.timestamp == 7.0
    assert rd.power_w == 250.0 and rd.power_limit_w == 700.0
    assert rd.temperature_c == 55.0 and rd.utilization_pct == 40.0
    assert rd.sm_clock_mhz == 1980.0 and rd.memory_clock_mhz == 2619.0
    assert set(rd.throttle_reasons) == {ThrottleReason.HW_THERMAL, ThrottleReason.SW_POWER_CAP}
    assert (rd.ecc_corrected, rd.ecc_uncorrected) == (2, 1)
    assert rd.processes[0].pid == 4242 and rd.processes[0].used_bytes == 3 * GIB
    assert backend.device_info(0).name == "NVIDIA H100 80GB HBM3"  # bytes decoded
    assert backend.driver_version == "580.159.04"


def test_unsupported_fields_are_none_and_not_asked_again() -> None:
    dev = FakeDevice(errors={"ecc": NOT_SUPPORTED, "power": NOT_SUPPORTED, "throttle": 4})
    backend = NvmlBackend(nvml=FakeNvml([dev]))
    first = backend.read(0)
    assert first.available
    assert first.ecc_corrected is None and first.ecc_uncorrected is None
    assert first.power_w is None and first.throttle_reasons == ()
    assert first.memory_used_bytes == dev.used  # the rest still reads
    calls = dict(dev.calls)
    backend.read(0)
    assert dev.calls["ecc"] == calls["ecc"]  # remembered as absent
    assert dev.calls["memory"] == calls["memory"] + 1


def test_lost_device_reads_unavailable_without_raising() -> None:
    good, lost = FakeDevice(), FakeDevice(uuid="GPU-1")
    backend = NvmlBackend(nvml=FakeNvml([good, lost]))
    lost.errors["memory"] = GPU_IS_LOST
    rd = backend.read(1)
    assert not rd.available and "lost" in (rd.error or "")
    assert rd.memory_used_bytes is None
    assert backend.read(0).available
    lost.errors.clear()
    assert backend.read(1).available  # it came back


def test_processes_from_other_namespaces_are_kept_and_marked() -> None:
    hidden = 2**64 - 1  # NVML_VALUE_NOT_AVAILABLE
    dev = FakeDevice(processes=[(1, GIB), (999_999, 2 * GIB), (5, hidden)])
    backend = NvmlBackend(nvml=FakeNvml([dev]), pid_visible=lambda pid: pid == 1)
    procs = {p.pid: p for p in backend.read(0).processes}
    assert procs[1].visible and not procs[999_999].visible
    assert procs[999_999].used_bytes == 2 * GIB
    assert procs[5].used_bytes is None


def test_missing_getter_in_old_binding_is_tolerated() -> None:
    fake = FakeNvml([FakeDevice()])
    fake.nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[assignment,method-assign]
    rd = NvmlBackend(nvml=fake).read(0)
    assert rd.available and rd.throttle_reasons == ()


def test_close_shuts_nvml_down_once() -> None:
    fake = FakeNvml([FakeDevice()])
    backend = NvmlBackend(nvml=fake)
    backend.close()
    backend.close()
    assert fake.shutdowns == 1


def test_throttle_reason_round_trip() -> None:
    names = ThrottleReason.decode(0x1FF)
    assert len(names) == 9
    assert ThrottleReason.encode(names) == 0x1FF
