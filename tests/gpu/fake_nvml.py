"""A fake ``pynvml`` module: per-device values, injectable NVML errors, no driver needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NOT_SUPPORTED = 3
GPU_IS_LOST = 15
DRIVER_NOT_LOADED = 9


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeDevice:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-fake-0"
    total: int = 80 * 1024**3
    used: int = 1024**3
    util: int = 40
    mem_util: int = 20
    temp: int = 55
    power_mw: int = 250_000
    limit_mw: int = 700_000
    sm_clock: int = 1980
    mem_clock: int = 2619
    throttle: int = 0
    ecc: tuple[int, int] = (0, 0)
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    #: getter name -> NVML error code it raises
    errors: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


class FakeNvml:
    """Stands in for the ``pynvml`` module."""

    NVMLError = NVMLError

    def __init__(self, devices: list[FakeDevice], *, init_error: int | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.shutdowns = 0

    def _get(self, fn: str, handle: int) -> FakeDevice:
        dev = self.devices[handle]
        dev.calls[fn] = dev.calls.get(fn, 0) + 1
        if fn in dev.errors:
            raise NVMLError(dev.errors[fn])
        return dev

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return self._get("name", h).name.encode()

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._get("uuid", h).uuid

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        d = self._get("memory", h)
        return SimpleNamespace(total=d.total, used=d.used, free=d.total - d.used)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        d = self._get("utilization", h)
        return SimpleNamespace(gpu=d.util, memory=d.mem_util)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._get("temperature", h).temp

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._get("power", h).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self._get("power_limit", h).limit_mw

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        d = self._get("clock", h)
        return d.sm_clock if kind == 1 else d.mem_clock

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._get("throttle", h).throttle

    def nvmlDeviceGetTotalEccErrors(self, h: int, error_type: int, counter: int) -> int:
        return self._get("ecc", h).ecc[error_type]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        d = self._get("processes", h)
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in d.processes]
