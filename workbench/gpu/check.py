"""Check the GPU subsystem on this machine: ``python -m workbench.gpu.check [--simulated]``.

Runs in well under five minutes with only the standard library, nvidia-ml-py and the source
tree (``PYTHONPATH=/path/to/workbench-checkout``); torch or cupy, if present with CUDA, are
used for real allocations. Steps, each recorded even when it fails:

1. devices: what the backend (NVML, or ``--simulated``) reports, and which fields are missing;
2. monitor: background sampling at ``--hz`` for ``--seconds``; samples, CPU cost, health;
3. allocator: reserve/release decision latency with 1,000 live reservations, and throughput
   with 8 threads contending for the devices;
4. reconcile: real allocations (torch, cupy, or simulated processes) measured through the
   backend and compared with the ledger: matched, used-but-unreserved, reserved-but-unused;
5. enforce: the per-process memory fraction set from a reservation stops a larger allocation
   (torch only);
6. scheduler: a burst of vision jobs over the platform's model table (ledger-only loads).

A readable report goes to stdout and the full results to ``--out`` as JSON. The exit status
is 0 when every step that could run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from workbench.gpu.allocator import VramAllocator, set_torch_memory_fraction
from workbench.gpu.health import HealthTracker
from workbench.gpu.monitor import GpuMonitor
from workbench.gpu.scheduler import DEFAULT_MODELS, VisionScheduler
from workbench.gpu.simulated import SimulatedBackend
from workbench.gpu.types import GIB, MIB, DeviceBackend

__all__ = ["main", "run_checks"]

_FIELDS = (
    "memory_used_bytes",
    "utilization_pct",
    "memory_utilization_pct",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "memory_clock_mhz",
    "ecc_corrected",
    "ecc_uncorrected",
)


class _Step:
    def __init__(self, results: dict[str, Any], name: str) -> None:
        self.results = results
        self.name = name
        self.data: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        self.t0 = time.perf_counter()
        return self.data

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.data["seconds"] = round(time.perf_counter() - self.t0, 3)
        if exc is not None:
            self.data["status"] = "error"
            self.data["error"] = f"{type(exc).__name__}: {exc}"
            self.data["traceback"] = traceback.format_exc(limit=5)
        else:
            self.data.setdefault("status", "pass")
        self.results["steps"][self.name] = self.data
        return True  # keep going: every step is reported


# -- real memory through a framework ----------------------------------------------------


class _Memory:
    """Allocates device memory in this process (torch, cupy, or simulated processes).

    It owns what it allocates (callers hold only keys), so :meth:`free` really drops the
    last reference before the framework's cache is emptied.
    """

    name = "none"

    def __init__(self) -> None:
        self._held: dict[int, Any] = {}
        self._next = 0

    def allocate(self, device: int, nbytes: int) -> int:
        self._next += 1
        self._held[self._next] = self._make(device, nbytes)
        return self._next

    def free(self, key: int) -> None:
        obj = self._held.pop(key)
        self._release(obj)
        del obj  # the last reference: the framework can now return the memory
        self._trim()

    def _make(self, device: int, nbytes: int) -> Any:
        raise NotImplementedError

    def _release(self, obj: Any) -> None:
        """Give back what ``obj`` holds where dropping the reference is not enough."""

    def _trim(self) -> None:
        """Return cached, unreferenced memory to the driver."""

    def enforce(self, reservation: Any) -> float | None:
        return None

    def reset(self, device: int) -> None:
        pass


class _TorchMemory(_Memory):
    name = "torch"

    def __init__(self, torch: Any) -> None:
        super().__init__()
        self.torch = torch

    def _make(self, device: int, nbytes: int) -> Any:
        t = self.torch.empty(nbytes, dtype=self.torch.uint8, device=f"cuda:{device}")
        self.torch.cuda.synchronize(device)
        return t

    def _trim(self) -> None:
        self.torch.cuda.synchronize()
        self.torch.cuda.empty_cache()

    def enforce(self, reservation: Any) -> float | None:
        return set_torch_memory_fraction(reservation, torch_module=self.torch)

    def reset(self, device: int) -> None:
        self.torch.cuda.set_per_process_memory_fraction(1.0, device)
        self.torch.cuda.empty_cache()


class _CupyMemory(_Memory):
    name = "cupy"

    def __init__(self, cupy: Any) -> None:
        super().__init__()
        self.cupy = cupy

    def _make(self, device: int, nbytes: int) -> Any:
        with self.cupy.cuda.Device(device):
            return self.cupy.empty(nbytes, dtype=self.cupy.uint8)

    def _trim(self) -> None:
        self.cupy.get_default_memory_pool().free_all_blocks()


class _SimulatedMemory(_Memory):
    name = "simulated"

    def __init__(self, backend: SimulatedBackend) -> None:
        super().__init__()
        self.backend = backend
        self.pid = os.getpid()

    def _make(self, device: int, nbytes: int) -> Any:
        self.backend.allocate(device, self.pid, nbytes)
        return (device, nbytes)

    def _release(self, obj: Any) -> None:
        device, nbytes = obj
        self.backend.free(device, self.pid, nbytes)


def _framework(backend: DeviceBackend, choice: str = "auto") -> tuple[_Memory, str]:
    """The framework that allocates real memory: torch, else cupy (``choice`` forces one)."""
    if isinstance(backend, SimulatedBackend):
        return _SimulatedMemory(backend), "simulated processes"
    if choice == "none":
        return _Memory(), "none (--framework none)"
    note = "torch not tried"
    if choice in ("auto", "torch"):
        try:
            import torch

            if torch.cuda.is_available():
                return _TorchMemory(torch), f"torch {torch.__version__}"
            note = f"torch {torch.__version__} without CUDA"
        except Exception as exc:  # ImportError, or a broken CUDA install
            note = f"torch unavailable ({type(exc).__name__})"
    if choice in ("auto", "cupy"):
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
            return _CupyMemory(cupy), f"cupy {cupy.__version__}"
        except Exception as exc:
            return _Memory(), f"{note}; cupy unavailable ({type(exc).__name__})"
    return _Memory(), note


# -- steps --------------------------------------------------------------------------------


def _devices(backend: DeviceBackend, data: dict[str, Any]) -> None:
    devices = []
    for i in range(backend.device_count()):
        info = backend.device_info(i).to_dict()
        rd = backend.read(i)
        info["available"] = rd.available
        info["missing_fields"] = [f for f in _FIELDS if getattr(rd, f) is None]
        info["reading"] = rd.to_dict()
        devices.append(info)
    data["devices"] = devices
    data["driver_version"] = getattr(backend, "driver_version", None)
    if not devices:
        data["status"] = "fail"


def _monitor(backend: DeviceBackend, hz: float, seconds: float, data: dict[str, Any]) -> None:
    health = HealthTracker()
    monitor = GpuMonitor(backend, hz=hz, health=health, capacity=10_000)
    t0 = time.perf_counter()
    single = []
    for _ in range(20):
        s = time.perf_counter()
        monitor.sample()
        single.append(time.perf_counter() - s)
    data["sample_latency_ms_median"] = round(statistics.median(single) * 1e3, 4)
    cpu0 = time.thread_time()
    with monitor:
        time.sleep(seconds)
    wall = time.perf_counter() - t0
    data.update(
        hz=hz,
        seconds=round(seconds, 2),
        samples=monitor.samples_taken - 20,
        expected_samples=int(hz * seconds),
        ticks_skipped=monitor.ticks_skipped,
        monitor_cpu_seconds=round(monitor.cpu_seconds, 5),
        cpu_percent_of_one_core=round(100 * monitor.cpu_seconds / seconds, 4),
        health=health.status(),
        main_thread_cpu_s=round(time.thread_time() - cpu0, 4),
        wall_s=round(wall, 3),
    )
    latest = monitor.latest() or []
    data["latest"] = [r.to_dict() for r in latest]
    if data["samples"] < 0.8 * data["expected_samples"]:
        data["status"] = "fail"


def _allocator(backend: DeviceBackend, data: dict[str, Any], quick: bool) -> None:
    alloc = VramAllocator(backend, budget_fraction=0.9)
    n_dev = backend.device_count()
    small = max(1, min(alloc.budget(d) for d in range(n_dev)) // 4000)
    live = [alloc.acquire(f"live-{i}", small) for i in range(1000)]
    n = 20_000 if quick else 100_000
    times = []
    perf = time.perf_counter
    for _ in range(n):
        t = perf()
        r = alloc.acquire("bench", small)
        r.release()
        times.append(perf() - t)
    times.sort()
    data["live_reservations"] = len(live)
    data["pair_us_median"] = round(times[len(times) // 2] * 1e6, 3)
    data["pair_us_p99"] = round(times[int(len(times) * 0.99)] * 1e6, 3)
    data["decisions_per_s"] = round(2 / statistics.fmean(times))
    for r in live:
        r.release()

    threads, per_thread = 8, (2_000 if quick else 10_000)
    contended = VramAllocator(backend, budget_fraction=0.9)
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            contended.acquire("t", small, timeout=5).release()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = perf()
    for th in pool:
        th.join()
    wall = perf() - t0
    data["threads"] = threads
    data["contended_decisions_per_s"] = round(2 * threads * per_thread / wall)
    data["leaked_bytes"] = sum(contended.reserved(d) + alloc.reserved(d) for d in range(n_dev))
    if data["leaked_bytes"]:
        data["status"] = "fail"


def _reconcile(backend: DeviceBackend, memory: _Memory, data: dict[str, Any]) -> None:
    if memory.name == "none":
        data["status"] = "skipped"
        data["reason"] = "no CUDA framework to allocate with (install torch or cupy with CUDA)"
        return
    device = 0
    alloc = VramAllocator(backend, budget_fraction=0.9)
    free = backend.read(device).memory_free_bytes or alloc.budget(device)
    size = int(min(2 * GIB, 0.1 * free)) // MIB * MIB
    tolerance = 1 * GIB if memory.name != "simulated" else 64 * MIB
    warm = memory.allocate(device, MIB)  # create the CUDA context before the baseline
    memory.free(warm)
    time.sleep(0.2)
    alloc.calibrate([backend.read(i) for i in range(backend.device_count())])
    phases: dict[str, Any] = {}

    def measure(label: str) -> dict[str, Any]:
        time.sleep(0.3)  # NVML memory counters lag the allocation slightly
        rep = alloc.reconcile([backend.read(device)], tolerance_bytes=tolerance)
        phases[label] = {
            "unaccounted_bytes": rep.devices[0]["unaccounted_bytes"],
            "reserved_bytes": rep.devices[0]["reserved_bytes"],
            "measured_used_bytes": rep.devices[0]["measured_used_bytes"],
            "findings": [f.kind for f in rep.findings if f.pid is None],
            "process_findings": [(f.kind, f.pid, f.nbytes) for f in rep.findings if f.pid],
        }
        return phases[label]

    r = alloc.acquire("check", size, device=device, pid=os.getpid())
    handle = memory.allocate(device, size)
    matched = measure("reserved_and_used")
    extra = memory.allocate(device, size)
    leaked = measure("used_beyond_reservation")
    memory.free(extra)
    memory.free(handle)
    idle = measure("reserved_but_freed")
    r.release()
    after = measure("released")
    data.update(framework=memory.name, size_bytes=size, tolerance_bytes=tolerance, phases=phases)
    checks = {
        "matched_has_no_device_finding": matched["findings"] == [],
        "unreserved_use_is_flagged": "used_unreserved" in leaked["findings"],
        "unused_reservation_is_flagged": "reserved_unused" in idle["findings"],
        "released_has_no_device_finding": after["findings"] == [],
    }
    data["checks"] = checks
    if not all(checks.values()):
        data["status"] = "fail"


def _enforce(backend: DeviceBackend, memory: _Memory, data: dict[str, Any]) -> None:
    if memory.name != "torch":
        data["status"] = "skipped"
        data["reason"] = "per-process memory fraction is a torch feature"
        return
    torch = memory.torch  # type: ignore[attr-defined]
    alloc = VramAllocator(backend, budget_fraction=0.9)
    total = alloc.device_total(0)
    size = int(min(4 * GIB, 0.05 * total))
    r = alloc.acquire("enforced", size, device=0, pid=os.getpid())
    try:
        fraction = memory.enforce(r)
        data["fraction"] = fraction
        inside = memory.allocate(0, size // 2)
        data["half_reservation_allocated"] = True
        try:
            memory.free(memory.allocate(0, size))
            data["over_reservation_refused"] = False
        except torch.cuda.OutOfMemoryError:
            data["over_reservation_refused"] = True
        memory.free(inside)
    finally:
        memory.reset(0)
        r.release()
    if not data.get("over_reservation_refused"):
        data["status"] = "fail"


def _scheduler(backend: DeviceBackend, data: dict[str, Any]) -> None:
    alloc = VramAllocator(backend)
    sched = VisionScheduler(alloc, slots_per_device=2)
    names = list(DEFAULT_MODELS)
    jobs = [
        sched.submit(names[i % len(names)], lambda ctx: ctx.device, priority=i % 5)
        for i in range(200)
    ]
    for j in jobs:
        j.future.result(60)
    sched.shutdown()
    waits = sorted(j.wait_s or 0.0 for j in jobs)
    kinds: dict[str, int] = {}
    for ev in sched.events():
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
    data.update(
        jobs=len(jobs),
        completed=sum(j.status == "completed" for j in jobs),
        wait_ms_median=round(waits[len(waits) // 2] * 1e3, 3),
        events=kinds,
        resident_after=[m["name"] for m in sched.loaded_models()],
    )
    if data["completed"] != len(jobs):
        data["status"] = "fail"


# -- driver ---------------------------------------------------------------------------------


def run_checks(
    *,
    simulated: bool,
    hz: float = 10.0,
    seconds: float = 5.0,
    quick: bool = False,
    framework: str = "auto",
) -> dict[str, Any]:
    """Run every step and return the results (see the module docstring)."""
    results: dict[str, Any] = {
        "version": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "steps": {},
    }
    backend: DeviceBackend
    if simulated:
        backend = SimulatedBackend(devices=2, memory_gib=24, scenario="steady")
        results["backend"] = "simulated (2 x 24 GiB)"
    else:
        from workbench.gpu._nvml import NvmlBackend

        backend = NvmlBackend()
        results["backend"] = "nvml"
    memory, used = _framework(backend, framework)
    results["framework"] = used
    steps: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("devices", lambda d: _devices(backend, d)),
        ("monitor", lambda d: _monitor(backend, hz, seconds, d)),
        ("allocator", lambda d: _allocator(backend, d, quick)),
        ("reconcile", lambda d: _reconcile(backend, memory, d)),
        ("enforce", lambda d: _enforce(backend, memory, d)),
        ("scheduler", lambda d: _scheduler(backend, d)),
    ]
    for name, fn in steps:
        with _Step(results, name) as data:
            fn(data)
    backend.close()
    statuses = [s["status"] for s in results["steps"].values()]
    results["ok"] = all(s in ("pass", "skipped") for s in statuses)
    return results


def _gib(value: Any) -> str:
    return "n/a" if value is None else f"{value / GIB:.2f} GiB"


def render(results: dict[str, Any]) -> str:
    """A readable report of :func:`run_checks` results."""
    steps = results["steps"]
    lines = [
        f"workbench GPU check: backend {results['backend']}, memory via {results['framework']}",
        f"python {results['host']['python']} on {results['host']['platform']}",
    ]
    for name, data in steps.items():
        lines.append(f"[{data['status'].upper():7}] {name} ({data['seconds']} s)")
        if "error" in data:
            lines.append(f"    {data['error']}")
        if "reason" in data:
            lines.append(f"    {data['reason']}")
    dev = steps.get("devices", {})
    for d in dev.get("devices", []):
        rd = d["reading"]
        lines.append(
            f"  gpu {d['index']}: {d['name']} {_gib(d['memory_total_bytes'])}, "
            f"used {_gib(rd['memory_used_bytes'])}, {rd['temperature_c']} C, "
            f"{rd['power_w']} W, util {rd['utilization_pct']} %, "
            f"missing: {', '.join(d['missing_fields']) or 'none'}"
        )
    mon = steps.get("monitor", {})
    if "samples" in mon:
        lines.append(
            f"  monitor: {mon['samples']}/{mon['expected_samples']} samples at {mon['hz']} Hz, "
            f"{mon['cpu_percent_of_one_core']} % of one core, sample "
            f"{mon['sample_latency_ms_median']} ms, health {mon['health']['status']}"
        )
    al = steps.get("allocator", {})
    if "pair_us_median" in al:
        lines.append(
            f"  allocator: reserve+release {al['pair_us_median']} us median "
            f"(p99 {al['pair_us_p99']} us) with {al['live_reservations']} live, "
            f"{al['decisions_per_s']:,} decisions/s; {al['threads']} threads: "
            f"{al['contended_decisions_per_s']:,} decisions/s"
        )
    rec = steps.get("reconcile", {})
    for phase, p in rec.get("phases", {}).items():
        lines.append(
            f"  reconcile {phase}: reserved {_gib(p['reserved_bytes'])}, measured "
            f"{_gib(p['measured_used_bytes'])}, unaccounted {_gib(p['unaccounted_bytes'])}, "
            f"findings {p['findings'] or 'none'}"
        )
        for kind, pid, nbytes in p["process_findings"]:
            lines.append(f"    pid {pid}: {kind} {_gib(nbytes)}")
    enf = steps.get("enforce", {})
    if "fraction" in enf:
        lines.append(
            f"  enforce: fraction {enf['fraction']:.4f}; over-reservation refused: "
            f"{enf.get('over_reservation_refused')}"
        )
    sch = steps.get("scheduler", {})
    if "jobs" in sch:
        lines.append(
            f"  scheduler: {sch['completed']}/{sch['jobs']} jobs, median wait "
            f"{sch['wait_ms_median']} ms, events {sch['events']}"
        )
    lines.append("RESULT: " + ("PASS" if results["ok"] else "FAIL"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.gpu.check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--simulated", action="store_true", help="use the simulated backend")
    parser.add_argument("--out", help="write the results as JSON to this path")
    parser.add_argument("--hz", type=float, default=10.0, help="monitor rate (default 10)")
    parser.add_argument("--seconds", type=float, default=5.0, help="monitor duration (default 5)")
    parser.add_argument("--quick", action="store_true", help="fewer allocator iterations")
    parser.add_argument(
        "--framework",
        choices=("auto", "torch", "cupy", "none"),
        default="auto",
        help="what allocates real GPU memory (default: torch, else cupy)",
    )
    args = parser.parse_args(argv)
    try:
        results = run_checks(
            simulated=args.simulated,
            hz=args.hz,
            seconds=args.seconds,
            quick=args.quick,
            framework=args.framework,
        )
    except Exception as exc:  # no backend at all: say so and still write the JSON
        results = {"version": 1, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(f"GPU check could not start: {results['error']}", file=sys.stderr)
    else:
        print(render(results))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2, default=str)
    return 0 if results.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
