"""Deterministic scripted scenarios of the simulated backend."""

from __future__ import annotations

import pytest

from workbench.errors import CapacityError, ConfigError
from workbench.gpu import (
    SCENARIOS,
    ManualClock,
    Scenario,
    ScenarioStep,
    SimulatedBackend,
    ThrottleReason,
)
from workbench.gpu.types import GIB, MIB


def test_defaults_match_the_contract() -> None:
    backend = SimulatedBackend(devices=2, memory_gib=24)
    assert backend.device_count() == 2
    assert backend.device_info(1).memory_total_bytes == 24 * GIB
    rd = backend.read(0)
    assert rd.memory_used_bytes == 0 and rd.utilization_pct == 0
    assert rd.throttle_reasons == (ThrottleReason.GPU_IDLE,)


def test_processes_hold_memory_and_oom_like_cuda() -> None:
    backend = SimulatedBackend(devices=1, memory_gib=1)
    backend.allocate(0, 10, 600 * MIB)
    assert backend.read(0).memory_used_bytes == 600 * MIB
    with pytest.raises(CapacityError, match="out of memory"):
        backend.allocate(0, 11, 600 * MIB)
    backend.free(0, 10, 100 * MIB)
    assert backend.read(0).processes[0].used_bytes == 500 * MIB
    backend.free(0, 10)
    assert backend.read(0).processes == ()


def test_leak_grows_linearly_and_stays() -> None:
    clock = ManualClock()
    backend = SimulatedBackend(devices=1, scenario="leak", clock=clock)
    clock.advance(10)
    assert backend.read(0).memory_used_bytes == 0
    clock.advance(5)
    assert backend.read(0).memory_used_bytes == 5 * 64 * MIB
    backend.apply([ScenarioStep(0, 0, "leak", 0)])
    clock.advance(100)
    assert backend.read(0).memory_used_bytes == 5 * 64 * MIB


def test_thermal_throttling_then_cooling() -> None:
    clock = ManualClock()
    backend = SimulatedBackend(devices=1, scenario="thermal", clock=clock)
    assert backend.read(0).temperature_c == pytest.approx(30 + 0.4 * 95)
    clock.advance(20)
    hot = backend.read(0)
    assert hot.temperature_c == 92 and ThrottleReason.HW_THERMAL in hot.throttle_reasons
    assert hot.sm_clock_mhz is not None and hot.sm_clock_mhz < 1980
    clock.advance(40)
    assert backend.read(0).throttle_reasons == ()


def test_ecc_and_fall_off() -> None:
    clock = ManualClock()
    backend = SimulatedBackend(
        devices=2,
        clock=clock,
        scenario=Scenario(
            "mix",
            (
                ScenarioStep(1, 0, "ecc", 2),
                ScenarioStep(2, 0, "ecc_uncorrected", 1),
                ScenarioStep(3, 1, "fall_off"),
                ScenarioStep(4, 1, "recover"),
            ),
        ),
    )
    clock.advance(2.5)
    rd = backend.read(0)
    assert (rd.ecc_corrected, rd.ecc_uncorrected) == (2, 1)
    clock.advance(1)
    assert not backend.read(1).available
    clock.advance(1)
    assert backend.read(1).available


def test_replays_exactly() -> None:
    def run() -> list[tuple[object, ...]]:
        clock = ManualClock()
        backend = SimulatedBackend(devices=2, scenario="steady", clock=clock)
        out = []
        for _ in range(5):
            clock.advance(1.5)
            out.extend(tuple(r.to_dict().values()) for r in map(backend.read, range(2)))
        return out

    assert run() == run()


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        SimulatedBackend(devices=0)
    with pytest.raises(ConfigError):
        SimulatedBackend(memory_gib=0)
    with pytest.raises(ConfigError, match="built-in"):
        SimulatedBackend(scenario="nope")
    with pytest.raises(ConfigError, match="names device"):
        SimulatedBackend(devices=1, scenario=Scenario("x", (ScenarioStep(0, 3, "load", 1),)))
    with pytest.raises(ConfigError, match="unknown scenario action"):
        ScenarioStep(0, 0, "explode")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_builtin_scenario_runs(name: str) -> None:
    clock = ManualClock()
    backend = SimulatedBackend(devices=2, scenario=name, clock=clock)
    for _ in range(8):
        clock.advance(10)
        for i in range(2):
            backend.read(i)
