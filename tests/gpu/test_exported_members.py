"""The public surface of workbench.gpu, pinned: a change here is a deliberate API change."""

from __future__ import annotations

import subprocess
import sys

import workbench.gpu as gpu

PUBLIC = [
    "DEFAULT_MODELS",
    "GIB",
    "MIB",
    "SCENARIOS",
    "AllocatorEvent",
    "DeviceBackend",
    "DeviceInfo",
    "DeviceReading",
    "GpuMonitor",
    "HealthEvent",
    "HealthIssue",
    "HealthThresholds",
    "HealthTracker",
    "Job",
    "JobContext",
    "ManualClock",
    "ModelSpec",
    "NvmlBackend",
    "ProcessUsage",
    "PrometheusExporter",
    "ReconcileFinding",
    "ReconcileReport",
    "Reservation",
    "ReservationRequest",
    "Scenario",
    "ScenarioStep",
    "SchedulerEvent",
    "SimulatedBackend",
    "ThrottleReason",
    "VisionScheduler",
    "VramAllocator",
    "WaitCancelled",
    "evaluate",
    "nvml_available",
    "set_torch_memory_fraction",
]


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_exported_members() -> None:
    assert list(gpu.__all__) == sorted(gpu.__all__, key=_isort_key), "__all__ must be sorted"
    assert sorted(gpu.__all__) == sorted(PUBLIC)
    for name in gpu.__all__:
        assert hasattr(gpu, name)


def test_the_stable_contract_imports() -> None:
    from workbench.gpu import GpuMonitor, SimulatedBackend, VramAllocator  # noqa: F401


def test_import_stays_light() -> None:
    """The check script must run with only numpy and nvidia-ml-py: nothing heavy on import."""
    code = (
        "import sys, workbench.gpu, workbench.gpu.check;"
        "heavy = {'pandas', 'prometheus_client', 'scipy', 'numba', 'redis', 'torch', 'pynvml',"
        " 'aiohttp', 'pydantic', 'plotly', 'numpy'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
