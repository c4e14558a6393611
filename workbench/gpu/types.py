"""Shared types of the GPU subsystem: device readings, the backend interface, units.

Every quantity carries its unit in its name (``*_bytes``, ``*_c``, ``*_w``, ``*_mhz``,
``*_pct``). A field is ``None`` when the device or driver does not report it: workbench never
fabricates a number (the platform's manager made up temperatures and utilisation).

This module imports only the standard library, so ``python -m workbench.gpu.check`` runs on a
bare system Python with numpy and nvidia-ml-py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "GIB",
    "MIB",
    "DeviceBackend",
    "DeviceInfo",
    "DeviceReading",
    "ProcessUsage",
    "ThrottleReason",
]

#: Bytes in a gibibyte and a mebibyte.
GIB = 1024**3
MIB = 1024**2


class ThrottleReason:
    """Names of clock-throttle reasons (NVML's ``nvmlClocksEventReason*`` bits).

    ``gpu_idle`` and ``applications_clocks`` are benign; the health checks treat the thermal,
    power-brake and hardware-slowdown reasons as problems.
    """

    GPU_IDLE = "gpu_idle"
    APPLICATIONS_CLOCKS = "applications_clocks"
    SW_POWER_CAP = "sw_power_cap"
    HW_SLOWDOWN = "hw_slowdown"
    SYNC_BOOST = "sync_boost"
    SW_THERMAL = "sw_thermal_slowdown"
    HW_THERMAL = "hw_thermal_slowdown"
    HW_POWER_BRAKE = "hw_power_brake_slowdown"
    DISPLAY_CLOCKS = "display_clocks"

    #: NVML bit -> name, in bit order.
    BITS: tuple[tuple[int, str], ...] = (
        (0x1, GPU_IDLE),
        (0x2, APPLICATIONS_CLOCKS),
        (0x4, SW_POWER_CAP),
        (0x8, HW_SLOWDOWN),
        (0x10, SYNC_BOOST),
        (0x20, SW_THERMAL),
        (0x40, HW_THERMAL),
        (0x80, HW_POWER_BRAKE),
        (0x100, DISPLAY_CLOCKS),
    )

    @classmethod
    def decode(cls, mask: int) -> tuple[str, ...]:
        """Names of the bits set in an NVML throttle-reason mask."""
        return tuple(name for bit, name in cls.BITS if mask & bit)

    @classmethod
    def encode(cls, names: tuple[str, ...] | list[str]) -> int:
        """The NVML mask of a sequence of reason names (unknown names are ignored)."""
        lookup = {name: bit for bit, name in cls.BITS}
        mask = 0
        for name in names:
            mask |= lookup.get(name, 0)
        return mask


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """GPU memory of one process as the driver reports it.

    Attributes:
        pid: Process id in the driver's namespace. Inside a container it may name no process
            visible here (``visible`` is then False).
        used_bytes: Device memory the process holds; ``None`` where the driver hides it
            (Windows WDDM, some vGPU and MIG set-ups).
        visible: Whether ``pid`` exists in this process's pid namespace.
    """

    pid: int
    used_bytes: int | None
    visible: bool = True


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Static facts of one device.

    Attributes:
        index: Device index as the backend numbers devices (NVML order).
        name: Product name (``"NVIDIA H100 80GB HBM3"``).
        uuid: Stable device id (``"GPU-..."``); ``None`` if unreported.
        memory_total_bytes: Framebuffer size in bytes.
    """

    index: int
    name: str
    uuid: str | None
    memory_total_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One sample of one device. Every measured field is optional (``None`` = not reported).

    Attributes:
        index: Device index.
        timestamp: Wall-clock time of the sample, seconds since the epoch.
        available: False when the device could not be read (fallen off the bus, lost);
            ``error`` then says why and the measured fields are ``None``.
        memory_total_bytes: Framebuffer size.
        memory_used_bytes: Framebuffer in use (by every process, plus driver reserve).
        memory_free_bytes: Framebuffer free.
        utilization_pct: Percent of time a kernel ran over the driver's last sample period.
        memory_utilization_pct: Percent of time device memory was read or written.
        temperature_c: Core temperature, degrees Celsius.
        power_w: Board power draw, watts.
        power_limit_w: Enforced power limit, watts.
        sm_clock_mhz: Streaming-multiprocessor clock, MHz.
        memory_clock_mhz: Memory clock, MHz.
        throttle_reasons: Active clock-throttle reasons (:class:`ThrottleReason` names).
        ecc_corrected: Volatile single-bit (corrected) ECC error count since driver load.
        ecc_uncorrected: Volatile double-bit (uncorrected) ECC error count since driver load.
        processes: Compute processes on the device with their memory.
        error: Why the device or some field could not be read, else ``None``.
    """

    index: int
    timestamp: float
    available: bool = True
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    utilization_pct: float | None = None
    memory_utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    processes: tuple[ProcessUsage, ...] = field(default=())
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (processes as a list of dicts)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "processes"}
        out["throttle_reasons"] = list(self.throttle_reasons)
        out["processes"] = [asdict(p) for p in self.processes]
        return out


@runtime_checkable
class DeviceBackend(Protocol):
    """What the monitor and the allocator need from a device backend.

    Implementations: :class:`~workbench.gpu.simulated.SimulatedBackend` and
    :class:`~workbench.gpu._nvml.NvmlBackend`. ``read`` never raises for a lost device: it
    returns a reading with ``available=False``.
    """

    name: str

    def device_count(self) -> int:
        """Number of devices."""
        ...

    def device_info(self, index: int) -> DeviceInfo:
        """Static facts of device ``index``."""
        ...

    def read(self, index: int) -> DeviceReading:
        """A fresh reading of device ``index``."""
        ...

    def close(self) -> None:
        """Release driver resources (idempotent)."""
        ...
