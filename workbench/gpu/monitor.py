"""Sampling GPU readings on a background thread into a bounded ring buffer.

:class:`GpuMonitor` reads every device of a backend ``hz`` times a second (default 2) on a
daemon thread, keeps the last ``capacity`` samples, feeds an optional
:class:`~workbench.gpu.health.HealthTracker` and :class:`PrometheusExporter`, and measures
its own CPU time (:attr:`GpuMonitor.cpu_seconds`) so its overhead is a number, not a claim.

The sampling loop keeps a fixed schedule (the next tick is computed from the previous one,
not from "now") so it does not drift, and skips ticks it overran rather than bursting.
pandas is imported by :meth:`GpuMonitor.to_frame` only and prometheus_client by the
exporter only, so the monitor runs on a bare Python with nvidia-ml-py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError
from workbench.gpu.health import HealthTracker
from workbench.gpu.types import DeviceBackend, DeviceReading, ThrottleReason

if TYPE_CHECKING:
    import pandas as pd

    from workbench.gpu.allocator import VramAllocator

__all__ = ["GpuMonitor", "PrometheusExporter"]

log = logging.getLogger(__name__)


class GpuMonitor:
    """Samples every device of ``backend`` on a background thread.

    Args:
        backend: Device backend (NVML or simulated).
        hz: Samples per second of the background thread (default 2).
        capacity: Samples kept (each sample holds one reading per device); older ones drop.
        health: A tracker fed with every sample (its events say what went wrong).
        exporter: A Prometheus exporter updated with every sample.
        allocator: An allocator whose ledger the exporter publishes alongside.

    Raises:
        ConfigError: ``hz`` not in (0, 1000] or ``capacity`` < 1.
    """

    def __init__(
        self,
        backend: DeviceBackend,
        hz: float = 2.0,
        *,
        capacity: int = 3600,
        health: HealthTracker | None = None,
        exporter: PrometheusExporter | None = None,
        allocator: VramAllocator | None = None,
    ) -> None:
        if not 0 < hz <= 1000:
            raise ConfigError(f"GpuMonitor hz={hz} must be in (0, 1000]")
        if capacity < 1:
            raise ConfigError(f"GpuMonitor capacity={capacity} must be at least 1")
        self.backend = backend
        self.hz = float(hz)
        self.health = health
        self.exporter = exporter
        self.allocator = allocator
        self._devices = range(backend.device_count())
        self._buffer: deque[tuple[DeviceReading, ...]] = deque(maxlen=capacity)
        self._listeners: list[Callable[[list[DeviceReading]], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: CPU seconds spent by the background thread (sampling, health, export).
        self.cpu_seconds = 0.0
        #: Samples taken (by the thread and by direct :meth:`sample` calls).
        self.samples_taken = 0
        #: Ticks skipped because a sample overran its period.
        self.ticks_skipped = 0

    # -- sampling -----------------------------------------------------------------------

    def sample(self) -> list[DeviceReading]:
        """Read every device now, record the sample and return it (one reading per device)."""
        read = self.backend.read
        readings = [read(i) for i in self._devices]
        with self._lock:
            self._buffer.append(tuple(readings))
            self.samples_taken += 1
        if self.health is not None:
            self.health.update(readings)
        if self.exporter is not None:
            self.exporter.update(readings, self.allocator)
        for fn in self._listeners:
            try:
                fn(readings)
            except Exception:
                log.exception("GPU monitor listener failed")
        return readings

    def add_listener(self, fn: Callable[[list[DeviceReading]], None]) -> None:
        """Call ``fn(readings)`` after every sample (on the sampling thread)."""
        self._listeners.append(fn)

    def start(self) -> GpuMonitor:
        """Start the background thread (idempotent); returns self."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpu-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the background thread and wait for it (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> GpuMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        period = 1.0 / self.hz
        cpu0 = time.thread_time()
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # a driver hiccup must not kill the monitor
                log.exception("GPU sample failed")
            self.cpu_seconds = time.thread_time() - cpu0
            next_tick += period
            now = time.monotonic()
            if next_tick < now:
                missed = int((now - next_tick) / period) + 1
                self.ticks_skipped += missed
                next_tick += missed * period
            self._stop.wait(next_tick - now)

    # -- history ------------------------------------------------------------------------

    def latest(self) -> list[DeviceReading] | None:
        """The most recent sample, or None before the first."""
        with self._lock:
            return list(self._buffer[-1]) if self._buffer else None

    def history(self, device: int | None = None) -> list[DeviceReading]:
        """Buffered readings, oldest first, of one device or all."""
        with self._lock:
            samples = list(self._buffer)
        if device is None:
            return [r for s in samples for r in s]
        return [s[device] for s in samples if device < len(s)]

    def to_frame(self) -> pd.DataFrame:
        """The buffer as a pandas DataFrame, one row per (sample, device).

        Columns are the fields of :class:`~workbench.gpu.types.DeviceReading` (processes as a
        count and their total memory), plus ``time`` as a datetime.
        """
        from workbench._optional import require

        pd = require("pandas", purpose="GpuMonitor.to_frame")
        rows: list[dict[str, Any]] = []
        for rd in self.history():
            row = rd.to_dict()
            procs = row.pop("processes")
            row["throttle_reasons"] = ",".join(row["throttle_reasons"])
            row["process_count"] = len(procs)
            row["process_used_bytes"] = sum(p["used_bytes"] or 0 for p in procs)
            rows.append(row)
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame["time"] = pd.to_datetime(frame["timestamp"], unit="s")
        return frame


class PrometheusExporter:
    """Publishes readings as Prometheus gauges with DCGM-exporter-like names.

    DCGM field -> workbench metric (labels ``gpu``, ``uuid``, ``model_name``):
    ``FB_USED`` -> ``workbench_gpu_fb_used_bytes``, ``FB_FREE`` -> ``..._fb_free_bytes``,
    ``GPU_UTIL`` -> ``..._gpu_util_percent``, ``MEM_COPY_UTIL`` -> ``..._mem_copy_util_percent``,
    ``GPU_TEMP`` -> ``..._gpu_temp_celsius``, ``POWER_USAGE`` -> ``..._power_usage_watts``,
    ``SM_CLOCK`` / ``MEM_CLOCK`` -> ``..._sm_clock_mhz`` / ``..._mem_clock_mhz``,
    ``CLOCK_THROTTLE_REASONS`` -> ``..._clock_throttle_reasons`` (NVML bitmask),
    ``ECC_SBE_VOL_TOTAL`` / ``ECC_DBE_VOL_TOTAL`` -> ``..._ecc_sbe_volatile_errors`` /
    ``..._ecc_dbe_volatile_errors``. DCGM reports memory in MiB; workbench in bytes, as the
    name says. Unreported fields are exported as NaN. The allocator's ledger adds
    ``workbench_gpu_vram_reserved_bytes``, ``..._vram_budget_bytes`` and
    ``..._vram_waiting_requests``.
    """

    _FIELDS = (
        ("fb_used_bytes", "memory_used_bytes", "Framebuffer memory used (DCGM FB_USED)."),
        ("fb_free_bytes", "memory_free_bytes", "Framebuffer memory free (DCGM FB_FREE)."),
        ("fb_total_bytes", "memory_total_bytes", "Framebuffer memory total."),
        ("gpu_util_percent", "utilization_pct", "GPU utilisation (DCGM GPU_UTIL)."),
        ("mem_copy_util_percent", "memory_utilization_pct", "Memory utilisation."),
        ("gpu_temp_celsius", "temperature_c", "GPU temperature (DCGM GPU_TEMP)."),
        ("power_usage_watts", "power_w", "Power draw (DCGM POWER_USAGE)."),
        ("sm_clock_mhz", "sm_clock_mhz", "SM clock (DCGM SM_CLOCK)."),
        ("mem_clock_mhz", "memory_clock_mhz", "Memory clock (DCGM MEM_CLOCK)."),
        ("ecc_sbe_volatile_errors", "ecc_corrected", "Volatile single-bit ECC errors."),
        ("ecc_dbe_volatile_errors", "ecc_uncorrected", "Volatile double-bit ECC errors."),
    )
    _LABELS = ("gpu", "uuid", "model_name")

    def __init__(self, backend: DeviceBackend) -> None:
        from workbench import metrics

        self._labels = []
        for i in range(backend.device_count()):
            info = backend.device_info(i)
            self._labels.append((str(i), info.uuid or "", info.name))
        nan = float("nan")
        self._nan = nan
        self._children: list[list[tuple[str, Any]]] = [[] for _ in self._labels]
        for suffix, attr, doc in self._FIELDS:
            g = metrics.gauge(f"workbench_gpu_{suffix}", doc, self._LABELS)
            for i, labels in enumerate(self._labels):
                self._children[i].append((attr, g.labels(*labels)))
        throttle = metrics.gauge(
            "workbench_gpu_clock_throttle_reasons",
            "Active clock-throttle reasons as NVML's bitmask (DCGM CLOCK_THROTTLE_REASONS).",
            self._LABELS,
        )
        up = metrics.gauge("workbench_gpu_device_up", "1 if the device answered.", self._LABELS)
        self._throttle = [throttle.labels(*lb) for lb in self._labels]
        self._up = [up.labels(*lb) for lb in self._labels]
        reserved = metrics.gauge(
            "workbench_gpu_vram_reserved_bytes", "VRAM reserved by the allocator.", ("gpu",)
        )
        budget = metrics.gauge(
            "workbench_gpu_vram_budget_bytes", "VRAM budget of the allocator.", ("gpu",)
        )
        self._reserved = [reserved.labels(lb[0]) for lb in self._labels]
        self._budget = [budget.labels(lb[0]) for lb in self._labels]
        self._waiting = metrics.gauge(
            "workbench_gpu_vram_waiting_requests", "Reservation requests waiting for VRAM."
        )

    def update(self, readings: list[DeviceReading], allocator: VramAllocator | None = None) -> None:
        """Set the gauges from one sample (and the allocator's ledger, if given)."""
        nan = self._nan
        for rd in readings:
            i = rd.index
            if i >= len(self._children):
                continue
            self._up[i].set(1.0 if rd.available else 0.0)
            for attr, child in self._children[i]:
                value = getattr(rd, attr)
                child.set(nan if value is None else value)
            self._throttle[i].set(ThrottleReason.encode(rd.throttle_reasons))
        if allocator is not None:
            for i in range(min(allocator.device_count, len(self._reserved))):
                self._reserved[i].set(allocator.reserved(i))
                self._budget[i].set(allocator.budget(i))
            self._waiting.set(allocator.waiting())
