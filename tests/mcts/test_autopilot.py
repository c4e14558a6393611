"""The auto-pilot: priority order, bounded queue, retries, automatic feedback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from workbench.errors import CapacityError
from workbench.mcts.autopilot import AutoPilot
from workbench.mcts.orchestrate import OrchestrationOptions, OrchestrationResult, Orchestrator


class Host:
    """Runs orchestrations on a private orchestrator; fails the requests named in ``fail``."""

    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.orchestrator = Orchestrator()
        self.fail = set(fail)
        self.ran: list[str] = []
        self.rewards: list[tuple[str, float]] = []

    def options(self) -> OrchestrationOptions:
        return OrchestrationOptions(iterations=20, seed=0)

    async def run_orchestration(
        self,
        user_request: str,
        context: Mapping[str, Any],
        options: OrchestrationOptions,
        *,
        agents: Sequence[str],
        task_type: str | None = None,
    ) -> OrchestrationResult:
        self.ran.append(user_request)
        assert context["userId"] == "auto-pilot"
        if user_request in self.fail:
            raise RuntimeError(f"{user_request} failed")
        return self.orchestrator.orchestrate({}, list(agents), options=options)

    def reward(self, orchestration_id: str, reward: float) -> None:
        self.rewards.append((orchestration_id, reward))


async def _drain(ap: AutoPilot, done: Any) -> None:
    ap.start()
    for _ in range(500):
        if done():
            break
        await asyncio.sleep(0.01)
    await ap.stop()


def test_highest_priority_first_and_positions() -> None:
    async def run() -> None:
        host = Host()
        ap = AutoPilot(host, batch_size=1)
        _, p1 = ap.submit("low", {}, 1, agents=["a"])
        _, p2 = ap.submit("high", {}, 9, agents=["a"])
        _, p3 = ap.submit("mid", {}, 5, agents=["a"])
        assert (p1, p2, p3) == (1, 1, 2)
        assert [t.user_request for t in ap.queue_status().tasks] == ["high", "mid", "low"]
        await _drain(ap, lambda: ap.metrics.successful_requests == 3)
        assert host.ran == ["high", "mid", "low"] and not ap.active

    asyncio.run(run())


def test_a_full_queue_refuses_and_failures_are_retried_then_kept() -> None:
    async def run() -> None:
        host = Host(fail={"t0"})
        ap = AutoPilot(host, max_queue=2)
        ap.submit("t0", {}, 5, agents=["a", "b"])
        ap.submit("t1", {}, 5, agents=["a", "b"])
        with pytest.raises(CapacityError, match="autopilot_max_queue=2"):
            ap.submit("t2", {}, 5, agents=["a"])
        await _drain(ap, lambda: len(ap.failed) == 1 and ap.metrics.successful_requests == 1)
        assert host.ran.count("t0") == 3 and host.ran.count("t1") == 1
        (failed,) = ap.queue_status().failed
        assert failed.user_request == "t0" and failed.failures == 3 and "failed" in failed.error
        m = ap.metrics
        assert (m.total_requests, m.failed_requests, m.abandoned_tasks) == (4, 3, 1)
        assert m.average_response_time_ms is not None
        assert ap.recommendations() == [
            "More than 20% of auto-pilot tasks failed: check the agents"
        ]

    asyncio.run(run())


def test_automatic_feedback_only_for_good_scores() -> None:
    """Score = mean of the speed, token and path-length terms; recorded at >= 0.7. A clock
    that jumps 20 s per call makes the speed term 0, so only the other two count."""
    ticks = iter(range(0, 10_000, 20))

    async def run(clock: Any) -> tuple[Host, AutoPilot]:
        host = Host()
        ap = AutoPilot(host, clock=clock)
        ap.submit("q", {}, 1, agents=["a", "b"])
        await _drain(ap, lambda: ap.metrics.successful_requests == 1)
        return host, ap

    fast_host, fast = asyncio.run(run(lambda: 0.0))
    assert fast.metrics.auto_feedbacks == 1 and fast_host.rewards[0][1] >= 0.7
    slow_host, slow = asyncio.run(run(lambda: float(next(ticks))))
    assert slow.metrics.auto_feedbacks == 0 and slow_host.rewards == []
