"""The one adapter of nvidia-ml-py (``pynvml``): real devices behind :class:`DeviceBackend`.

Only this module imports ``pynvml`` and only here are ``NVMLError`` values translated:

- failing to initialise NVML (no driver, no library, no device) raises
  :class:`~workbench.errors.BackendUnavailable` from the constructor;
- a field the device or driver does not support (``NOT_SUPPORTED``, ``NO_PERMISSION``,
  ``FUNCTION_NOT_FOUND`` on older drivers, ``NO_DATA``...) becomes ``None`` in the reading,
  and is remembered so it is not queried again on every sample;
- a device that fell off the bus (``GPU_IS_LOST``, ``GPU_NOT_FOUND``, ``RESET_REQUIRED``,
  ``UNKNOWN``) gives a reading with ``available=False`` and the reason in ``error``.

Processes reported by the driver may live in another pid namespace (containers): their pids
are kept and marked ``visible=False`` instead of being dropped, so reconciliation can still
count their memory as "used but not reserved".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from workbench.errors import BackendUnavailable, InputError
from workbench.gpu.types import DeviceInfo, DeviceReading, ProcessUsage, ThrottleReason

__all__ = ["NvmlBackend", "nvml_available"]

log = logging.getLogger(__name__)

# NVML return codes (stable across driver versions; duplicated so tests need no pynvml).
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_NO_DATA = 21
_ARGUMENT_VERSION_MISMATCH = 25
_DEPRECATED = 26
_NOT_READY = 27
_GPU_NOT_FOUND = 28
_UNKNOWN = 999
#: The field is not there on this device or driver: stop asking.
_FIELD_ABSENT = {_NOT_SUPPORTED, _NO_PERMISSION, _FUNCTION_NOT_FOUND, _DEPRECATED}
#: The device itself is gone.
_DEVICE_LOST = {_GPU_IS_LOST, _GPU_NOT_FOUND, _RESET_REQUIRED, _UNKNOWN}


def _load_pynvml() -> ModuleType:
    from workbench._optional import require

    return require("pynvml", purpose="reading NVIDIA GPUs (install nvidia-ml-py)")


def nvml_available() -> bool:
    """Whether NVML initialises here (a driver and at least one device); never raises."""
    try:
        backend = NvmlBackend()
    except (BackendUnavailable, ImportError):
        return False
    backend.close()
    return True


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _pid_visible(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


class _DeviceLost(Exception):
    pass


class NvmlBackend:
    """Real NVIDIA devices through NVML.

    Args:
        nvml: The ``pynvml`` module to use (tests pass a fake); default imports it.
        pid_visible: Whether a pid exists in this namespace (injected for tests).
        wallclock: Source of reading timestamps.

    Raises:
        BackendUnavailable: NVML could not be initialised (no driver, no library).
    """

    name = "nvml"

    def __init__(
        self,
        *,
        nvml: ModuleType | None = None,
        pid_visible: Callable[[int], bool] = _pid_visible,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._nvml = nvml if nvml is not None else _load_pynvml()
        self._error_cls: type[BaseException] = getattr(self._nvml, "NVMLError", Exception)
        self._pid_visible = pid_visible
        self._wallclock = wallclock
        self._absent: set[tuple[int, str]] = set()
        self._closed = False
        try:
            self._nvml.nvmlInit()
        except self._error_cls as exc:
            raise BackendUnavailable(
                f"NVML could not be initialised ({exc}); is an NVIDIA driver installed "
                "and a GPU visible? Use SimulatedBackend where there is none.",
                details={"nvml_error": _code(exc)},
            ) from exc
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._infos = [self._read_info(i) for i in range(count)]
        except self._error_cls as exc:
            self.close()
            raise BackendUnavailable(f"NVML could not enumerate devices: {exc}") from exc
        try:
            self.driver_version: str | None = _text(self._nvml.nvmlSystemGetDriverVersion())
        except (self._error_cls, AttributeError):
            self.driver_version = None

    # -- DeviceBackend -------------------------------------------------------------------

    def device_count(self) -> int:
        return len(self._handles)

    def device_info(self, index: int) -> DeviceInfo:
        self._check_index(index)
        return self._infos[index]

    def read(self, index: int) -> DeviceReading:
        self._check_index(index)
        now = self._wallclock()
        try:
            return self._read(index, now)
        except _DeviceLost as lost:
            return DeviceReading(index=index, timestamp=now, available=False, error=str(lost))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except self._error_cls as exc:  # already shut down elsewhere: nothing to release
            log.debug("nvmlShutdown: %s", exc)

    # -- internals -----------------------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self._handles):
            raise InputError(
                f"device index {index} is out of range; this machine has "
                f"{len(self._handles)} NVML device(s)",
                details={"field": "device"},
            )

    def _read_info(self, i: int) -> DeviceInfo:
        h = self._handles[i]
        mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
        name = self._field(i, "name", self._nvml.nvmlDeviceGetName, h)
        uuid = self._field(i, "uuid", self._nvml.nvmlDeviceGetUUID, h)
        return DeviceInfo(
            index=i,
            name=_text(name) if name is not None else f"NVIDIA GPU {i}",
            uuid=_text(uuid) if uuid is not None else None,
            memory_total_bytes=int(mem.total),
        )

    def _field(self, i: int, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call one NVML getter; ``None`` when unsupported, :class:`_DeviceLost` when lost."""
        if (i, key) in self._absent:
            return None
        try:
            return fn(*args)
        except self._error_cls as exc:
            code = _code(exc)
            if code in _DEVICE_LOST:
                raise _DeviceLost(f"device {i} is lost ({exc}; NVML code {code})") from exc
            if code in _FIELD_ABSENT:
                self._absent.add((i, key))
                log.debug("NVML field %s unsupported on device %d: %s", key, i, exc)
            else:
                log.debug("NVML field %s failed on device %d: %s", key, i, exc)
            return None
        except (AttributeError, TypeError) as exc:  # function missing in an old binding
            self._absent.add((i, key))
            log.debug("NVML binding lacks %s: %s", key, exc)
            return None

    def _read(self, i: int, now: float) -> DeviceReading:
        nv = self._nvml
        h = self._handles[i]
        f = self._field
        mem = f(i, "memory", nv.nvmlDeviceGetMemoryInfo, h)
        util = f(i, "utilization", nv.nvmlDeviceGetUtilizationRates, h)
        temp = f(i, "temperature", nv.nvmlDeviceGetTemperature, h, 0)  # NVML_TEMPERATURE_GPU
        power = f(i, "power", nv.nvmlDeviceGetPowerUsage, h)
        limit = f(i, "power_limit", nv.nvmlDeviceGetEnforcedPowerLimit, h)
        sm_clock = f(i, "sm_clock", nv.nvmlDeviceGetClockInfo, h, 1)  # NVML_CLOCK_SM
        mem_clock = f(i, "mem_clock", nv.nvmlDeviceGetClockInfo, h, 2)  # NVML_CLOCK_MEM
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        mask = f(i, "throttle", reasons_fn, h) if reasons_fn is not None else None
        # error type 0/1 = corrected/uncorrected, counter type 0 = volatile
        ecc_c = f(i, "ecc_corrected", nv.nvmlDeviceGetTotalEccErrors, h, 0, 0)
        ecc_u = f(i, "ecc_uncorrected", nv.nvmlDeviceGetTotalEccErrors, h, 1, 0)
        procs = f(i, "processes", nv.nvmlDeviceGetComputeRunningProcesses, h)
        return DeviceReading(
            index=i,
            timestamp=now,
            available=True,
            memory_total_bytes=_int_attr(mem, "total"),
            memory_used_bytes=_int_attr(mem, "used"),
            memory_free_bytes=_int_attr(mem, "free"),
            utilization_pct=_float_attr(util, "gpu"),
            memory_utilization_pct=_float_attr(util, "memory"),
            temperature_c=float(temp) if temp is not None else None,
            power_w=power / 1000.0 if power is not None else None,
            power_limit_w=limit / 1000.0 if limit is not None else None,
            sm_clock_mhz=float(sm_clock) if sm_clock is not None else None,
            memory_clock_mhz=float(mem_clock) if mem_clock is not None else None,
            throttle_reasons=ThrottleReason.decode(int(mask)) if mask is not None else (),
            ecc_corrected=int(ecc_c) if ecc_c is not None else None,
            ecc_uncorrected=int(ecc_u) if ecc_u is not None else None,
            processes=self._processes(procs),
        )

    def _processes(self, procs: Any) -> tuple[ProcessUsage, ...]:
        if not procs:
            return ()
        out = []
        for p in procs:
            pid = getattr(p, "pid", None)
            if pid is None:
                continue
            used = getattr(p, "usedGpuMemory", None)
            # NVML reports NVML_VALUE_NOT_AVAILABLE (ULL max) where memory is hidden.
            if used is not None and (used < 0 or used >= 2**63):
                used = None
            out.append(ProcessUsage(int(pid), used, self._pid_visible(int(pid))))
        return tuple(out)


def _int_attr(obj: Any, name: str) -> int | None:
    value = getattr(obj, name, None) if obj is not None else None
    return int(value) if value is not None else None


def _float_attr(obj: Any, name: str) -> float | None:
    value = getattr(obj, name, None) if obj is not None else None
    return float(value) if value is not None else None
