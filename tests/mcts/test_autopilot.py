"""The auto-pilot: priority order, bounded queue, retries, automatic feedback."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from workbench.errors import CapacityError, InputError, NotFoundError
from workbench.mcts.autopilot import MAX_CONTEXT_BYTES, AutoPilot
from workbench.mcts.orchestrate import (
    AgentOutcome,
    OrchestrationOptions,
    OrchestrationResult,
    Orchestrator,
)


class Host:
    """Runs orchestrations on a private orchestrator; fails the requests named in ``fail``."""

    def __init__(self, fail: Sequence[str] = (), executor: Any = None) -> None:
        self.orchestrator = Orchestrator()
        self.executor = executor  # None: the models' predictions
        self.fail = set(fail)
        self.ran: list[str] = []
        self.contexts: list[dict[str, Any]] = []
        self.rewards: list[tuple[str, float]] = []
        self.hold: asyncio.Event | None = None  # runs wait for it when set

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
        self.contexts.append(dict(context))
        assert context["userId"] == "auto-pilot"
        if self.hold is not None:
            await self.hold.wait()
        if user_request in self.fail:
            raise RuntimeError(f"{user_request} failed")
        return self.orchestrator.orchestrate({}, list(agents), self.executor, options=options)

    async def reward(self, orchestration_id: str, reward: float) -> None:
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


async def _until(done: Any) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)


def test_processing_counts_running_tasks_and_is_0_once_stopped() -> None:
    """Stopping in the middle of a batch leaves nothing processing; the cancelled tasks are
    kept with the tasks given up rather than lost."""

    async def run() -> None:
        host = Host()
        host.hold = asyncio.Event()
        ap = AutoPilot(host, batch_size=2)
        for q in ("a", "b", "c"):
            ap.submit(q, {}, 5, agents=["x"])
        ap.start()
        await _until(lambda: ap.queue_status().processing == 2)
        assert ap.queue_status().processing == 2 and ap.queue_status().queued == 1
        await ap.stop()
        status = ap.queue_status()
        assert not ap.active and status.processing == 0 and status.queued == 1
        assert sorted(f.user_request for f in status.failed) == ["a", "b"]
        assert all("stopped" in f.error for f in status.failed)
        host.hold.set()
        ap.start()
        await _until(lambda: ap.metrics.successful_requests == 1)
        await ap.stop()
        assert ap.queue_status().processing == 0 and ap.queue_status().queued_bytes == 0

    asyncio.run(run())


def test_a_failed_automatic_feedback_does_not_stop_the_loop() -> None:
    class ExpiringHost(Host):
        def reward(self, orchestration_id: str, reward: float) -> Any:  # fails when called
            self.rewards.append((orchestration_id, reward))
            raise NotFoundError(f"orchestration {orchestration_id!r} is unknown or expired")

    async def run() -> None:
        # fast, cheap steps: scores >= 0.7 whatever the plan's length
        host = ExpiringHost(executor=lambda agent, ctx: AgentOutcome(1.0, 10.0, 50.0))
        ap = AutoPilot(host, batch_size=1, clock=lambda: 0.0)
        ap.submit("first", {}, 5, agents=["a", "b"])
        ap.submit("second", {}, 1, agents=["a", "b"])
        await _drain(ap, lambda: ap.metrics.successful_requests == 2)
        m = ap.metrics
        assert host.ran == ["first", "second"] and m.successful_requests == 2
        assert len(host.rewards) == 2  # both tried, neither recorded
        assert m.auto_feedbacks == 0 and m.failed_requests == 0
        assert ap.queue_status().processing == 0

    asyncio.run(run())


def _context(approx_bytes: int, seed: int = 0) -> dict[str, Any]:
    """A context of many small members (the kind that costs most as Python objects), of
    about ``approx_bytes`` bytes of JSON."""
    items: list[dict[str, Any]] = []
    size = 32
    while size < approx_bytes:
        item = {"k": len(items) + seed, "v": "ab"}
        items.append(item)
        size += len(json.dumps(item, separators=(",", ":"))) + 1
    return {"taskType": "qa", "items": items}


def _json_size(context: Mapping[str, Any]) -> int:
    return len(json.dumps(context, separators=(",", ":"), ensure_ascii=False).encode())


def test_contexts_are_bounded_by_size_and_the_queue_by_bytes() -> None:
    host = Host()
    ap = AutoPilot(host, max_queue=100, max_queue_bytes=3 * 60_000)
    big = _context(MAX_CONTEXT_BYTES + 100)
    assert _json_size(big) > MAX_CONTEXT_BYTES
    with pytest.raises(InputError, match="context") as info:
        ap.submit("too big", big, 5, agents=["a"])
    assert info.value.details[0]["field"] == "context"
    with pytest.raises(InputError, match="context"):
        ap.submit("not JSON", {"x": object()}, 5, agents=["a"])
    ctx = _context(55_000)
    for i in range(3):
        task, _ = ap.submit(f"t{i}", ctx, 5, agents=["a", "b"])
        assert task.context == ctx and task.size_bytes >= _json_size(ctx)
    held = ap.queue_status().queued_bytes
    assert 3 * _json_size(ctx) <= held <= 3 * 60_000
    with pytest.raises(CapacityError, match="autopilot_max_queue_bytes") as full:
        ap.submit("one too many", ctx, 5, agents=["a"])
    assert full.value.details["queuedBytes"] == held
    ap.submit("small", {}, 5, agents=["a"])  # a small one still fits
    assert ap.queue_status().queued == 4

    async def run() -> None:
        await _drain(ap, lambda: ap.metrics.successful_requests == 4)

    asyncio.run(run())
    assert ap.queue_status().queued_bytes == 0
    assert host.contexts[0] == {**ctx, "userId": "auto-pilot"}  # parsed back when run


def test_queued_memory_is_close_to_the_bytes_accounted() -> None:
    """Each queued task costs about its accounted bytes, not the several times more that the
    parsed context would take as Python objects."""
    ap = AutoPilot(Host(), max_queue=1000, max_queue_bytes=64 * 1024 * 1024)
    agents = [f"agent-{i}" for i in range(10)]
    contexts = [_context(60_000, seed=i) for i in range(20)]  # made before tracing starts
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i, ctx in enumerate(contexts):
            ap.submit(f"request {i}", ctx, 5, agents=agents)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    accounted = ap.queue_status().queued_bytes
    assert accounted >= 20 * 60_000
    assert used <= 1.25 * accounted, (used, accounted)


def test_a_task_larger_than_the_whole_budget_says_it_never_fits() -> None:
    ap = AutoPilot(Host(), max_queue_bytes=2048)
    with pytest.raises(CapacityError, match="more than the whole auto-pilot budget"):
        ap.submit("x" * 1500, {}, 5, agents=["a"])
    assert ap.queue_status().queued_bytes == 0
