"""Health thresholds -> issues with reasons -> raised/cleared events."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError
from workbench.gpu import (
    DeviceReading,
    HealthThresholds,
    HealthTracker,
    ManualClock,
    Scenario,
    ScenarioStep,
    SimulatedBackend,
    ThrottleReason,
    evaluate,
)
from workbench.gpu.types import GIB


def _rd(**kw: object) -> DeviceReading:
    base: dict[str, object] = {"index": 0, "timestamp": 1.0, "memory_total_bytes": 24 * GIB}
    base.update(kw)
    return DeviceReading(**base)  # type: ignore[arg-type]


def test_a_healthy_reading_has_no_issues() -> None:
    assert evaluate([_rd(temperature_c=60, memory_used_bytes=GIB, ecc_corrected=0)]) == []


def test_missing_fields_are_not_issues() -> None:
    assert evaluate([_rd()]) == []


@pytest.mark.parametrize(
    ("reading", "check", "severity"),
    [
        (dict(temperature_c=85), "temperature", "warning"),
        (dict(temperature_c=95), "temperature", "critical"),
        (dict(throttle_reasons=(ThrottleReason.HW_THERMAL,)), "throttling", "warning"),
        (dict(ecc_corrected=3), "ecc_corrected", "warning"),
        (dict(ecc_uncorrected=1), "ecc_uncorrected", "critical"),
        (dict(memory_used_bytes=int(22 * GIB)), "memory_pressure", "warning"),
        (dict(memory_used_bytes=int(23.8 * GIB)), "memory_pressure", "critical"),
        (dict(available=False, error="gone"), "device_lost", "critical"),
    ],
)
def test_each_threshold(reading: dict[str, object], check: str, severity: str) -> None:
    issues = evaluate([_rd(**reading)])
    assert [(i.check, i.severity) for i in issues] == [(check, severity)]
    assert issues[0].reason


def test_benign_throttle_reasons_are_ignored() -> None:
    reasons = (ThrottleReason.GPU_IDLE, ThrottleReason.SW_POWER_CAP)
    assert evaluate([_rd(throttle_reasons=reasons)]) == []


def test_tracker_emits_raise_and_clear_once() -> None:
    clock = ManualClock()
    steps = (
        ScenarioStep(0, 0, "load", 50),
        ScenarioStep(10, 0, "throttle", 91),
        ScenarioStep(20, 0, "cool"),
        ScenarioStep(30, 1, "fall_off"),
    )
    backend = SimulatedBackend(devices=2, scenario=Scenario("s", steps), clock=clock)
    tracker = HealthTracker()
    seen: list[str] = []
    tracker.add_listener(lambda ev: seen.append(f"{ev.kind}:{ev.issue.check}"))
    for _ in range(8):
        tracker.update([backend.read(0), backend.read(1)])
        clock.advance(5)
    assert seen == [
        "raised:temperature",
        "raised:throttling",
        "cleared:temperature",
        "cleared:throttling",
        "raised:device_lost",
    ]
    status = tracker.status()
    assert status["status"] == "unhealthy" and "lost" in status["reasons"][0]
    assert len(tracker.events()) == 5


def test_severity_change_is_an_event() -> None:
    tracker = HealthTracker()
    tracker.update([_rd(temperature_c=85)])
    events = tracker.update([_rd(temperature_c=95)])
    assert [(e.kind, e.issue.severity) for e in events] == [("raised", "critical")]
    assert tracker.status()["status"] == "unhealthy"
    tracker.update([_rd(temperature_c=50)])
    assert tracker.status() == {"status": "healthy", "reasons": [], "issues": []}


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ConfigError):
        HealthThresholds(temperature_warning_c=95, temperature_critical_c=90)
    with pytest.raises(ConfigError):
        HealthThresholds(memory_warning_fraction=0)


def test_a_lost_device_keeps_its_other_issues_until_it_answers_again() -> None:
    tracker = HealthTracker()
    tracker.update([_rd(ecc_corrected=2)])
    events = tracker.update([_rd(available=False, error="gone")])
    assert [(e.kind, e.issue.check) for e in events] == [("raised", "device_lost")]
    assert {i.check for i in tracker.issues()} == {"ecc_corrected", "device_lost"}
    events = tracker.update([_rd(ecc_corrected=0)])
    assert sorted((e.kind, e.issue.check) for e in events) == [
        ("cleared", "device_lost"),
        ("cleared", "ecc_corrected"),
    ]
