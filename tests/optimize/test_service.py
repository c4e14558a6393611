"""The optimizer service's configuration: every ``[optimize]`` knob is validated."""

from __future__ import annotations

from typing import Any

import pytest

from workbench.config import Settings
from workbench.errors import ConfigError
from workbench.optimize.service import OptimizeConfig


@pytest.mark.parametrize(
    "bad",
    [
        {"max_dimensions": 0},
        {"max_dimensions": 100_000},
        {"max_batch": 0},
        {"max_batch": 65},
        {"ask_time_limit_s": 0.0},
        {"ask_time_limit_s": float("nan")},
        {"ask_time_limit_s": float("inf")},
        {"max_task_types": 0},
        {"task_type_expire_idle_s": -1.0},
        {"task_type_expire_below": -1},
        {"max_studies": 0},
    ],
)
def test_knobs_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        OptimizeConfig(**bad)
    assert info.value.details["key"] == f"optimize.{next(iter(bad))}"


def test_defaults_and_settings() -> None:
    config = OptimizeConfig()
    assert (config.max_dimensions, config.max_batch, config.ask_time_limit_s) == (64, 64, 10.0)
    assert (config.max_task_types, config.max_studies) == (256, 1024)
    settings = Settings(sections={"optimize": {"max_batch": "8", "ask_time_limit_s": "2.5"}})
    config = OptimizeConfig.from_settings(settings)
    assert (config.max_batch, config.ask_time_limit_s) == (8, 2.5)


def _record(task: str, temperature: float) -> dict[str, Any]:
    return {
        "task_type": task,
        "parameters": {"temperature": temperature},
        "latency_ms": 500.0,
        "success": True,
        "quality": 0.5 + temperature / 4,
        "cost": 0.0,
    }


def test_feedback_batches_sharing_task_types_run_concurrently_without_deadlock() -> None:
    import asyncio

    from workbench.optimize.service import OptimizeService

    svc = OptimizeService(OptimizeConfig(store="memory"))

    async def main() -> list[dict[str, int]]:
        batches = [
            [_record(a, 0.1 * i), _record(b, 0.1 * i)]
            for i, (a, b) in enumerate([("a", "b"), ("b", "a"), ("b", "c"), ("c", "a")])
        ]
        return await asyncio.wait_for(asyncio.gather(*(svc.observe(b) for b in batches)), 60)

    counts = asyncio.run(main())
    assert [sum(c.values()) for c in counts] == [2, 2, 2, 2]
    assert {t: len(o.trials) for t, o in svc.learner.tasks().items()} == {"a": 3, "b": 3, "c": 2}


def test_a_request_waits_for_a_busy_study_only_lock_wait_s() -> None:
    """A queue of requests on one study never makes a request wait without bound."""
    import asyncio
    import time

    import pytest

    from workbench.errors import CapacityError
    from workbench.optimize.service import OptimizeConfig, OptimizeService

    async def scenario() -> None:
        svc = OptimizeService(OptimizeConfig(store="memory", lock_wait_s=0.2))
        async with svc.locked(["s"]):
            t0 = time.perf_counter()
            with pytest.raises(CapacityError, match="busy") as info:
                async with svc.locked(["s"]):
                    pass
            assert 0.15 < time.perf_counter() - t0 < 1.0
            assert info.value.retry_after_s == 1.0
            async with svc.locked(["other"]):
                pass  # another study is not held up
        async with svc.locked(["s"]):
            pass  # released after the refusal too

    asyncio.run(scenario())
