"""A simulated multi-GPU machine with deterministic, scripted behaviour.

:class:`SimulatedBackend` stands in for NVML wherever no GPU exists (tests, notebooks, the
demo, CI). Every reading is a pure function of the injected clock, the scenario script and
the memory that simulated processes hold, so a test replays exactly: no random numbers.

Device model (per device):

- memory used = driver reserve + memory of simulated processes + external (unreserved)
  memory + leaked memory (a leak grows linearly from its start);
- utilisation is set by the scenario (``load`` steps) or :meth:`SimulatedBackend.set_load`;
- temperature = 30 °C + 0.4 °C per percent of utilisation, unless a ``throttle`` step pins
  it; power = idle + (limit - idle) * utilisation; SM clocks drop to half while thermally
  throttled and to idle clocks at 0 % utilisation (reason ``gpu_idle``, as real GPUs report);
- ``ecc`` steps add volatile ECC errors; ``fall_off`` makes the device unreadable
  (``available=False``, like NVML's ``GPU_IS_LOST``) until a ``recover`` step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from workbench.errors import ConfigError, InputError
from workbench.gpu.types import GIB, MIB, DeviceInfo, DeviceReading, ProcessUsage, ThrottleReason

__all__ = ["SCENARIOS", "ManualClock", "Scenario", "ScenarioStep", "SimulatedBackend"]

_ACTIONS = (
    "load",  # value: utilisation percent
    "external_memory",  # value: bytes held by a process the allocator does not know
    "leak",  # value: bytes per second of unreserved growth (0 stops; leaked bytes stay)
    "throttle",  # value: temperature in °C; thermal throttling on
    "cool",  # throttling off; temperature follows load again
    "ecc",  # value: corrected (single-bit) errors to add
    "ecc_uncorrected",  # value: uncorrected (double-bit) errors to add
    "fall_off",  # the device stops answering
    "recover",  # the device answers again
)


class ManualClock:
    """A clock that moves only when told to (for tests and notebooks).

    Args:
        start: Initial time in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise InputError(f"cannot move a clock backwards (seconds={seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        """A drop-in for ``time.sleep`` that advances this clock instead of waiting."""
        self.advance(max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class ScenarioStep:
    """One scripted event.

    Attributes:
        at_s: Seconds after the backend's start when the step applies.
        device: Device index it applies to.
        action: One of ``load``, ``external_memory``, ``leak``, ``throttle``, ``cool``,
            ``ecc``, ``ecc_uncorrected``, ``fall_off``, ``recover``.
        value: The action's argument (see the module docstring); ignored by some actions.
    """

    at_s: float
    device: int
    action: str
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ConfigError(
                f"unknown scenario action {self.action!r}; known: {', '.join(_ACTIONS)}"
            )
        if self.at_s < 0:
            raise ConfigError(f"scenario step at_s={self.at_s} must be >= 0")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, ordered script of :class:`ScenarioStep` (sorted by time on construction)."""

    name: str
    steps: tuple[ScenarioStep, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(sorted(self.steps, key=lambda s: s.at_s)))


def _steady(devices: int) -> Scenario:
    return Scenario("steady", tuple(ScenarioStep(0, d, "load", 60) for d in range(devices)))


def _leak(devices: int) -> Scenario:
    return Scenario("leak", (ScenarioStep(0, 0, "load", 50), ScenarioStep(10, 0, "leak", 64 * MIB)))


def _thermal(devices: int) -> Scenario:
    return Scenario(
        "thermal",
        (
            ScenarioStep(0, 0, "load", 95),
            ScenarioStep(20, 0, "throttle", 92),
            ScenarioStep(60, 0, "cool"),
        ),
    )


def _ecc(devices: int) -> Scenario:
    return Scenario(
        "ecc", (ScenarioStep(5, 0, "ecc", 3), ScenarioStep(15, 0, "ecc_uncorrected", 1))
    )


def _fall_off(devices: int) -> Scenario:
    d = devices - 1
    return Scenario("fall_off", (ScenarioStep(10, d, "fall_off"), ScenarioStep(40, d, "recover")))


#: Built-in scenarios by name: ``SCENARIOS[name](devices) -> Scenario``.
SCENARIOS: dict[str, Callable[[int], Scenario]] = {
    "steady": _steady,
    "leak": _leak,
    "thermal": _thermal,
    "ecc": _ecc,
    "fall_off": _fall_off,
}


class _Device:
    __slots__ = (
        "ecc_c",
        "ecc_u",
        "external",
        "leak_rate",
        "leak_since",
        "leaked",
        "lost",
        "procs",
        "temp_pin",
        "util",
    )

    def __init__(self) -> None:
        self.util = 0.0
        self.external = 0
        self.leak_rate = 0.0
        self.leak_since = 0.0
        self.leaked = 0.0
        self.temp_pin: float | None = None
        self.ecc_c = 0
        self.ecc_u = 0
        self.lost = False
        self.procs: dict[int, int] = {}


class SimulatedBackend:
    """N simulated GPUs with configurable memory and a scripted scenario.

    Args:
        devices: Number of devices.
        memory_gib: Framebuffer of each device, GiB (a float is fine).
        scenario: A :class:`Scenario`, the name of a built-in one (:data:`SCENARIOS`), or
            ``None`` for idle devices.
        clock: Time source in seconds (a :class:`ManualClock` in tests); readings are
            timestamped with it and scenario steps fire by it.
        name: Product name reported by :meth:`device_info`.
        driver_reserved_bytes: Memory each device shows as used with no process on it.
        power_limit_w: Board power limit; idle power is a tenth of it.

    Raises:
        ConfigError: ``devices`` < 1, ``memory_gib`` <= 0, an unknown scenario name, or a
            step naming a device that does not exist.
    """

    def __init__(
        self,
        devices: int = 1,
        memory_gib: float = 24,
        *,
        scenario: Scenario | str | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "Simulated GPU 24GB",
        driver_reserved_bytes: int = 0,
        power_limit_w: float = 350.0,
    ) -> None:
        if devices < 1:
            raise ConfigError(f"SimulatedBackend devices={devices} must be at least 1")
        if not memory_gib > 0:
            raise ConfigError(f"SimulatedBackend memory_gib={memory_gib} must be positive")
        if isinstance(scenario, str):
            if scenario not in SCENARIOS:
                raise ConfigError(
                    f"unknown scenario {scenario!r}; built-in: {', '.join(sorted(SCENARIOS))}"
                )
            scenario = SCENARIOS[scenario](devices)
        self.name = "simulated"
        self.scenario = scenario or Scenario("idle")
        for step in self.scenario.steps:
            if not 0 <= step.device < devices:
                raise ConfigError(
                    f"scenario step {step} names device {step.device}; there are {devices}"
                )
        self._clock = clock
        self._t0 = clock()
        self._total = int(memory_gib * GIB)
        self._reserved = int(driver_reserved_bytes)
        self._power_limit = float(power_limit_w)
        self._devices = [_Device() for _ in range(devices)]
        self._infos = [
            DeviceInfo(index=i, name=name, uuid=f"GPU-sim-{i:04d}", memory_total_bytes=self._total)
            for i in range(devices)
        ]
        self._next_step = 0
        self._lock = threading.Lock()

    # -- DeviceBackend -------------------------------------------------------------------

    def device_count(self) -> int:
        return len(self._devices)

    def device_info(self, index: int) -> DeviceInfo:
        self._check(index)
        return self._infos[index]

    def read(self, index: int) -> DeviceReading:
        self._check(index)
        with self._lock:
            now = self._clock()
            self._advance(now)
            dev = self._devices[index]
            if dev.lost:
                return DeviceReading(
                    index=index,
                    timestamp=now,
                    available=False,
                    error=f"device {index} is lost (simulated fall off the bus)",
                )
            leaked = dev.leaked + (dev.leak_rate * (now - dev.leak_since) if dev.leak_rate else 0)
            procs = sum(dev.procs.values())
            used = min(self._total, self._reserved + procs + dev.external + int(leaked))
            util = dev.util
            throttled = dev.temp_pin is not None
            temp = dev.temp_pin if throttled else 30.0 + 0.4 * util
            idle_w = self._power_limit / 10
            if util <= 0:
                reasons: tuple[str, ...] = (ThrottleReason.GPU_IDLE,)
                sm = 345.0
            elif throttled:
                reasons = (ThrottleReason.SW_THERMAL, ThrottleReason.HW_THERMAL)
                sm = 990.0
            else:
                reasons = ()
                sm = 1980.0
            return DeviceReading(
                index=index,
                timestamp=now,
                available=True,
                memory_total_bytes=self._total,
                memory_used_bytes=used,
                memory_free_bytes=self._total - used,
                utilization_pct=util,
                memory_utilization_pct=util * 0.5,
                temperature_c=temp,
                power_w=idle_w + (self._power_limit - idle_w) * util / 100.0,
                power_limit_w=self._power_limit,
                sm_clock_mhz=sm,
                memory_clock_mhz=2619.0 if util > 0 else 1593.0,
                throttle_reasons=reasons,
                ecc_corrected=dev.ecc_c,
                ecc_uncorrected=dev.ecc_u,
                processes=tuple(ProcessUsage(pid, b, True) for pid, b in dev.procs.items()),
            )

    def close(self) -> None:
        """Nothing to release."""

    # -- simulation controls -------------------------------------------------------------

    def set_load(self, index: int, utilization_pct: float) -> None:
        """Set a device's utilisation (percent, 0-100)."""
        self._check(index)
        with self._lock:
            self._devices[index].util = max(0.0, min(100.0, float(utilization_pct)))

    def allocate(self, index: int, pid: int, nbytes: int) -> None:
        """Make process ``pid`` hold ``nbytes`` more on device ``index`` (a model load).

        Raises:
            CapacityError: the device has less free memory than ``nbytes`` (like a CUDA OOM).
        """
        from workbench.errors import CapacityError

        self._check(index)
        reading = self.read(index)
        free = reading.memory_free_bytes or 0
        if nbytes > free:
            raise CapacityError(
                f"simulated out of memory on device {index}: {nbytes} bytes asked, {free} free"
            )
        with self._lock:
            procs = self._devices[index].procs
            procs[pid] = procs.get(pid, 0) + int(nbytes)

    def free(self, index: int, pid: int, nbytes: int | None = None) -> None:
        """Release ``nbytes`` (default: all) that ``pid`` holds on device ``index``."""
        self._check(index)
        with self._lock:
            procs = self._devices[index].procs
            held = procs.get(pid, 0)
            left = 0 if nbytes is None else max(0, held - int(nbytes))
            if left:
                procs[pid] = left
            else:
                procs.pop(pid, None)

    def apply(self, steps: Iterable[ScenarioStep]) -> None:
        """Apply steps immediately, ignoring their ``at_s`` (interactive use)."""
        with self._lock:
            now = self._clock()
            for step in steps:
                self._check(step.device)
                self._apply(step, now)

    # -- internals -----------------------------------------------------------------------

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self._devices):
            raise InputError(
                f"device index {index} is out of range; the simulated backend has "
                f"{len(self._devices)} device(s)",
                details={"field": "device"},
            )

    def _advance(self, now: float) -> None:
        steps = self.scenario.steps
        elapsed = now - self._t0
        while self._next_step < len(steps) and steps[self._next_step].at_s <= elapsed:
            step = steps[self._next_step]
            self._apply(step, self._t0 + step.at_s)
            self._next_step += 1

    def _apply(self, step: ScenarioStep, at: float) -> None:
        dev = self._devices[step.device]
        action = step.action
        if action == "load":
            dev.util = max(0.0, min(100.0, float(step.value)))
        elif action == "external_memory":
            dev.external = int(step.value)
        elif action == "leak":
            if dev.leak_rate:
                dev.leaked += dev.leak_rate * (at - dev.leak_since)
            dev.leak_rate = float(step.value)
            dev.leak_since = at
        elif action == "throttle":
            dev.temp_pin = float(step.value)
        elif action == "cool":
            dev.temp_pin = None
        elif action == "ecc":
            dev.ecc_c += int(step.value)
        elif action == "ecc_uncorrected":
            dev.ecc_u += int(step.value)
        elif action == "fall_off":
            dev.lost = True
        elif action == "recover":
            dev.lost = False
