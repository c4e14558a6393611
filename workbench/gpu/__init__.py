"""GPU resources: device monitors (NVML or simulated), a VRAM allocator and a job scheduler.

``import workbench.gpu`` needs only the standard library: pynvml, pandas, prometheus_client
and torch are imported where they are used.
"""

from workbench.gpu._nvml import NvmlBackend, nvml_available
from workbench.gpu.allocator import VramAllocator, set_torch_memory_fraction
from workbench.gpu.health import HealthEvent, HealthIssue, HealthThresholds, HealthTracker, evaluate
from workbench.gpu.monitor import GpuMonitor, PrometheusExporter
from workbench.gpu.reconcile import ReconcileFinding, ReconcileReport
from workbench.gpu.reservation import (
    AllocatorEvent,
    Reservation,
    ReservationRequest,
    WaitCancelled,
)
from workbench.gpu.scheduler import (
    DEFAULT_MODELS,
    Job,
    JobContext,
    ModelSpec,
    SchedulerEvent,
    VisionScheduler,
)
from workbench.gpu.simulated import SCENARIOS, ManualClock, Scenario, ScenarioStep, SimulatedBackend
from workbench.gpu.types import (
    GIB,
    MIB,
    DeviceBackend,
    DeviceInfo,
    DeviceReading,
    ProcessUsage,
    ThrottleReason,
)

__all__ = [
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
