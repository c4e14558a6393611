"""GpuMonitor: sampling, the ring buffer, the background thread, pandas and Prometheus."""

from __future__ import annotations

import time

import pytest

from workbench import metrics
from workbench.errors import ConfigError
from workbench.gpu import (
    GpuMonitor,
    HealthTracker,
    ManualClock,
    PrometheusExporter,
    ScenarioStep,
    SimulatedBackend,
    VramAllocator,
)
from workbench.gpu.types import GIB


def test_sample_returns_one_reading_per_device() -> None:
    monitor = GpuMonitor(SimulatedBackend(devices=2, memory_gib=24), hz=2)
    readings = monitor.sample()
    assert [r.index for r in readings] == [0, 1]
    assert monitor.latest() == readings
    assert monitor.hz == 2


def test_ring_buffer_is_bounded() -> None:
    monitor = GpuMonitor(SimulatedBackend(devices=3), capacity=5)
    for _ in range(12):
        monitor.sample()
    assert monitor.samples_taken == 12
    assert len(monitor.history()) == 15
    assert len(monitor.history(device=2)) == 5


def test_background_thread_samples_at_its_rate_and_stops() -> None:
    monitor = GpuMonitor(SimulatedBackend(devices=2), hz=50)
    with monitor:
        time.sleep(0.3)
        assert monitor.running
    assert not monitor.running
    assert 5 <= monitor.samples_taken <= 20
    assert monitor.cpu_seconds >= 0
    taken = monitor.samples_taken
    time.sleep(0.05)
    assert monitor.samples_taken == taken


def test_to_frame_has_a_row_per_device_sample() -> None:
    clock = ManualClock(1_700_000_000)
    backend = SimulatedBackend(devices=2, scenario="steady", clock=clock)
    monitor = GpuMonitor(backend)
    for _ in range(3):
        clock.advance(0.5)
        monitor.sample()
    frame = monitor.to_frame()
    assert len(frame) == 6
    assert {"index", "memory_used_bytes", "temperature_c", "time", "process_count"} <= set(
        frame.columns
    )
    assert frame["utilization_pct"].eq(60).all()


def test_health_tracker_is_fed() -> None:
    clock = ManualClock()
    backend = SimulatedBackend(devices=1, scenario="thermal", clock=clock)
    health = HealthTracker()
    monitor = GpuMonitor(backend, health=health)
    monitor.sample()
    clock.advance(25)
    monitor.sample()
    assert {i.check for i in health.issues()} == {"temperature", "throttling"}


def test_prometheus_export_uses_dcgm_like_names() -> None:
    backend = SimulatedBackend(devices=2, memory_gib=24, scenario="steady")
    alloc = VramAllocator(backend)
    monitor = GpuMonitor(backend, exporter=PrometheusExporter(backend), allocator=alloc)
    with alloc.reserve("w", 2 * GIB, device=1):
        monitor.sample()
        text = metrics.render().decode()
    for name in (
        "workbench_gpu_fb_used_bytes",
        "workbench_gpu_fb_free_bytes",
        "workbench_gpu_gpu_util_percent",
        "workbench_gpu_gpu_temp_celsius",
        "workbench_gpu_power_usage_watts",
        "workbench_gpu_sm_clock_mhz",
        "workbench_gpu_clock_throttle_reasons",
        "workbench_gpu_ecc_dbe_volatile_errors",
        "workbench_gpu_device_up",
        "workbench_gpu_vram_reserved_bytes",
    ):
        assert name in text, name
    labels = 'gpu="1",model_name="Simulated GPU 24GB",uuid="GPU-sim-0001"'
    assert f"workbench_gpu_gpu_util_percent{{{labels}}} 60.0" in text
    line = next(
        x for x in text.splitlines() if x.startswith('workbench_gpu_vram_reserved_bytes{gpu="1"}')
    )
    assert float(line.split()[-1]) == 2 * GIB


def test_lost_device_is_exported_as_down() -> None:
    backend = SimulatedBackend(devices=1, name="Lost GPU")
    exporter = PrometheusExporter(backend)
    backend.apply([ScenarioStep(0, 0, "fall_off")])
    exporter.update([backend.read(0)])
    text = metrics.render().decode()
    line = next(x for x in text.splitlines() if "device_up" in x and "Lost GPU" in x)
    assert line.endswith(" 0.0")


def test_bad_rate_is_refused() -> None:
    with pytest.raises(ConfigError):
        GpuMonitor(SimulatedBackend(), hz=0)
    with pytest.raises(ConfigError):
        GpuMonitor(SimulatedBackend(), capacity=0)
