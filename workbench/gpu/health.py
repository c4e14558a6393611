"""Health checks of GPU readings: thresholds -> issues with reasons -> raised/cleared events.

:func:`evaluate` is a pure function of readings and :class:`HealthThresholds`.
:class:`HealthTracker` remembers which issues are active and emits an event when one appears
or clears, so a monitor sampling at 2 Hz reports a throttling episode once, not twice a
second. Checks:

- ``device_lost``: the device could not be read (critical);
- ``temperature``: core temperature at or above the warning / critical threshold;
- ``throttling``: a thermal, power-brake or hardware-slowdown clock reason is active
  (power capping and idle clocks are normal and ignored);
- ``ecc_uncorrected`` (critical) and ``ecc_corrected`` (warning): volatile ECC error counts;
- ``memory_pressure``: used / total at or above the warning / critical fraction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from workbench.errors import ConfigError
from workbench.gpu.types import DeviceReading, ThrottleReason

__all__ = ["HealthEvent", "HealthIssue", "HealthThresholds", "HealthTracker", "evaluate"]

_BAD_THROTTLE = (
    ThrottleReason.SW_THERMAL,
    ThrottleReason.HW_THERMAL,
    ThrottleReason.HW_SLOWDOWN,
    ThrottleReason.HW_POWER_BRAKE,
)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Limits of the health checks.

    Attributes:
        temperature_warning_c: Core temperature of a warning, °C.
        temperature_critical_c: Core temperature of a critical issue, °C.
        memory_warning_fraction: Used / total memory of a warning.
        memory_critical_fraction: Used / total memory of a critical issue.
        ecc_corrected_warning: Volatile corrected ECC errors of a warning.
        ecc_uncorrected_critical: Volatile uncorrected ECC errors of a critical issue.
        throttle_reasons: Clock-throttle reasons that count as a problem.
    """

    temperature_warning_c: float = 83.0
    temperature_critical_c: float = 90.0
    memory_warning_fraction: float = 0.90
    memory_critical_fraction: float = 0.98
    ecc_corrected_warning: int = 1
    ecc_uncorrected_critical: int = 1
    throttle_reasons: tuple[str, ...] = _BAD_THROTTLE

    def __post_init__(self) -> None:
        if not self.temperature_warning_c <= self.temperature_critical_c:
            raise ConfigError("temperature_warning_c must be <= temperature_critical_c")
        if not 0 < self.memory_warning_fraction <= self.memory_critical_fraction <= 1:
            raise ConfigError(
                "memory fractions must satisfy 0 < warning <= critical <= 1 "
                f"(got {self.memory_warning_fraction}, {self.memory_critical_fraction})"
            )
        if self.ecc_corrected_warning < 1 or self.ecc_uncorrected_critical < 1:
            raise ConfigError("ECC thresholds must be at least 1 error")


@dataclass(frozen=True, slots=True)
class HealthIssue:
    """One failed check.

    Attributes:
        device: Device index.
        check: ``device_lost``, ``temperature``, ``throttling``, ``ecc_corrected``,
            ``ecc_uncorrected`` or ``memory_pressure``.
        severity: ``warning`` or ``critical``.
        reason: Human-readable reason with the value and the threshold.
        value: Measured value (None for ``device_lost``).
        threshold: The threshold crossed.
    """

    device: int
    check: str
    severity: str
    reason: str
    value: Any = None
    threshold: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """An issue appeared (``raised``), changed severity (``raised``) or went away
    (``cleared``) at ``time`` (the reading's timestamp)."""

    kind: str
    issue: HealthIssue
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "time": self.time, **self.issue.to_dict()}


def evaluate(
    readings: Iterable[DeviceReading], thresholds: HealthThresholds | None = None
) -> list[HealthIssue]:
    """Issues of ``readings`` under ``thresholds`` (default thresholds if None)."""
    t = thresholds or HealthThresholds()
    issues: list[HealthIssue] = []
    add = issues.append
    for rd in readings:
        d = rd.index
        if not rd.available:
            add(HealthIssue(d, "device_lost", "critical", rd.error or f"device {d} is lost"))
            continue
        temp = rd.temperature_c
        if temp is not None and temp >= t.temperature_warning_c:
            crit = temp >= t.temperature_critical_c
            limit = t.temperature_critical_c if crit else t.temperature_warning_c
            add(
                HealthIssue(
                    d,
                    "temperature",
                    "critical" if crit else "warning",
                    f"device {d} at {temp:.0f} °C (threshold {limit:.0f} °C)",
                    temp,
                    limit,
                )
            )
        bad = [r for r in rd.throttle_reasons if r in t.throttle_reasons]
        if bad:
            add(
                HealthIssue(
                    d,
                    "throttling",
                    "warning",
                    f"device {d} clocks throttled: {', '.join(bad)}",
                    bad,
                    list(t.throttle_reasons),
                )
            )
        if rd.ecc_uncorrected is not None and rd.ecc_uncorrected >= t.ecc_uncorrected_critical:
            add(
                HealthIssue(
                    d,
                    "ecc_uncorrected",
                    "critical",
                    f"device {d} has {rd.ecc_uncorrected} uncorrected ECC error(s) since driver "
                    "load; drain it and reset",
                    rd.ecc_uncorrected,
                    t.ecc_uncorrected_critical,
                )
            )
        if rd.ecc_corrected is not None and rd.ecc_corrected >= t.ecc_corrected_warning:
            add(
                HealthIssue(
                    d,
                    "ecc_corrected",
                    "warning",
                    f"device {d} has {rd.ecc_corrected} corrected ECC error(s) since driver load",
                    rd.ecc_corrected,
                    t.ecc_corrected_warning,
                )
            )
        used, total = rd.memory_used_bytes, rd.memory_total_bytes
        if used is not None and total:
            frac = used / total
            if frac >= t.memory_warning_fraction:
                crit = frac >= t.memory_critical_fraction
                limit = t.memory_critical_fraction if crit else t.memory_warning_fraction
                add(
                    HealthIssue(
                        d,
                        "memory_pressure",
                        "critical" if crit else "warning",
                        f"device {d} memory {frac:.0%} used (threshold {limit:.0%})",
                        round(frac, 4),
                        limit,
                    )
                )
    return issues


class HealthTracker:
    """Active issues over time, with events on change.

    Args:
        thresholds: Limits of the checks.
        max_events: Events kept for :meth:`events` (oldest dropped).
    """

    def __init__(self, thresholds: HealthThresholds | None = None, *, max_events: int = 1000):
        from collections import deque

        self.thresholds = thresholds or HealthThresholds()
        self._active: dict[tuple[int, str], HealthIssue] = {}
        self._events: deque[HealthEvent] = deque(maxlen=max_events)
        self._listeners: list[Callable[[HealthEvent], None]] = []
        self._lock = threading.Lock()

    def add_listener(self, fn: Callable[[HealthEvent], None]) -> None:
        """Call ``fn(event)`` for every raised or cleared issue."""
        self._listeners.append(fn)

    def update(self, readings: list[DeviceReading]) -> list[HealthEvent]:
        """Evaluate ``readings``; return (and record) the events they cause."""
        issues = evaluate(readings, self.thresholds)
        now = max((r.timestamp for r in readings), default=0.0)
        # A lost device reports nothing, so its other issues are unknown, not cleared.
        seen_devices = {r.index for r in readings if r.available}
        current = {(i.device, i.check): i for i in issues}
        events: list[HealthEvent] = []
        with self._lock:
            for key, issue in current.items():
                old = self._active.get(key)
                if old is None or old.severity != issue.severity:
                    events.append(HealthEvent("raised", issue, now))
            for key, old in list(self._active.items()):
                if key not in current and (key[0] in seen_devices or key[1] == "device_lost"):
                    events.append(HealthEvent("cleared", old, now))
                    del self._active[key]
            self._active.update(current)
            self._events.extend(events)
        for ev in events:
            for fn in self._listeners:
                fn(ev)
        return events

    def issues(self) -> list[HealthIssue]:
        """Issues active now."""
        with self._lock:
            return list(self._active.values())

    def events(self) -> list[HealthEvent]:
        """Recent events, oldest first."""
        with self._lock:
            return list(self._events)

    def status(self) -> dict[str, Any]:
        """``{"status": healthy|degraded|unhealthy, "reasons": [...], "issues": [...]}``."""
        issues = self.issues()
        if any(i.severity == "critical" for i in issues):
            status = "unhealthy"
        elif issues:
            status = "degraded"
        else:
            status = "healthy"
        return {
            "status": status,
            "reasons": [i.reason for i in issues],
            "issues": [i.to_dict() for i in issues],
        }
