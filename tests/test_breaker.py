"""workbench.breaker: the circuit breaker adapter and the per-call time limiter."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from workbench import metrics
from workbench.breaker import Breaker, BreakerOpen, BreakerSet, TimeLimiter
from workbench.errors import CapacityError, InputError, WaitTimeout


def fail() -> None:
    raise RuntimeError("backend down")


def ok() -> str:
    return "ok"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tripped(name: str, *, reset_s: float, successes: int) -> tuple[Breaker, FakeClock]:
    """A breaker opened by one failure, on a clock the test moves."""
    clock = FakeClock()
    b = Breaker(name, failures=1, reset_s=reset_s, successes=successes, clock=clock)
    with pytest.raises(RuntimeError):
        b.call(fail)
    return b, clock


def test_opens_after_consecutive_failures_and_refuses_without_calling() -> None:
    clock = FakeClock()
    b = Breaker("agent-x", failures=3, reset_s=30, clock=clock)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            b.call(fail)
    assert b.call(ok) == "ok" and b.failures == 0  # a success resets the consecutive count
    for _ in range(3):
        with pytest.raises(RuntimeError, match="backend down"):  # the tripping call too
            b.call(fail)
    assert b.state == "OPEN" and b.retry_in_s() == 30
    clock.now += 12.5
    assert b.state == "OPEN" and b.retry_in_s() == 17.5
    called = []
    with pytest.raises(BreakerOpen, match="'agent-x' is open after 3") as info:
        b.call(called.append, 1)
    assert called == [] and info.value.http_status == 503
    assert info.value.details["breaker"] == "agent-x"
    text = metrics.render().decode()
    assert 'workbench_breaker_state{name="agent-x"} 2.0' in text


def test_half_open_probes_close_after_two_successes_or_reopen_on_a_failure() -> None:
    b, clock = tripped("probe", reset_s=30, successes=2)
    clock.now += 29.9
    with pytest.raises(BreakerOpen):
        b.call(ok)
    clock.now += 0.1
    assert b.state == "HALF_OPEN" and b.retry_in_s() == 0
    assert b.call(ok) == "ok"
    assert b.state == "HALF_OPEN"  # one success is not enough
    assert b.call(ok) == "ok"
    assert b.state == "CLOSED"
    with pytest.raises(RuntimeError):
        b.call(fail)
    clock.now += 30
    b.call(ok)
    with pytest.raises(RuntimeError):
        b.call(fail)  # a failure while half-open re-opens it at once
    assert b.state == "OPEN"
    with pytest.raises(BreakerOpen):
        b.call(ok)


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(InputError) as info:
        Breaker("x", failures=0)
    assert info.value.details == {"field": "failures"}
    with pytest.raises(InputError, match="reset_s"):
        BreakerSet(reset_s=0)


def test_breaker_set_is_bounded_and_reports_the_worst_state() -> None:
    s = BreakerSet(failures=1, reset_s=30, max_breakers=2)
    assert s.worst() == "CLOSED"
    a = s.get("a")
    assert s.get("a") is a
    with pytest.raises(RuntimeError):
        a.call(fail)
    s.get("b")
    assert s.worst() == "OPEN" and s.states() == {"a": "OPEN", "b": "CLOSED"}
    s.get("c")  # room is made by dropping the closed "b", never the open "a"
    assert set(s.states()) == {"a", "c"}
    with pytest.raises(RuntimeError):
        s.get("c").call(fail)
    with pytest.raises(CapacityError, match="max_breakers=2"):
        s.get("d")
    s.clear()
    assert s.states() == {} and s.worst() == "CLOSED"


def test_time_limiter_abandons_a_late_call_and_bounds_stuck_ones() -> None:
    limiter = TimeLimiter(max_concurrent=1)
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"wait gave no result within 0\.05 s"):
        limiter.call(release.wait, 0.05)
    assert time.monotonic() - t0 < 2
    # the stuck call still holds the only slot: the next call times out waiting for it
    with pytest.raises(WaitTimeout, match="call slots are held"):
        limiter.call(ok, 0.05)
    release.set()
    assert limiter.call(ok, 5) == "ok"  # the slot came back when the stuck call returned
    with pytest.raises(RuntimeError, match="backend down"):
        limiter.call(fail, 5)
    here = threading.current_thread()
    assert limiter.call(threading.current_thread, None) is here  # no limit: caller's thread
    assert limiter.call(threading.current_thread, 5) is not here
    with pytest.raises(InputError, match="max_concurrent"):
        TimeLimiter(0)


def test_a_time_out_counts_against_the_breaker() -> None:
    b = Breaker("slow-agent", failures=2, reset_s=30)
    limiter = TimeLimiter(4)
    release = threading.Event()
    try:
        for _ in range(2):
            with pytest.raises(WaitTimeout):
                b.call(limiter.call, release.wait, 0.02)
        assert b.state == "OPEN"
    finally:
        release.set()


def test_half_open_lets_one_probe_through_at_a_time() -> None:
    b, clock = tripped("one-probe", reset_s=5, successes=1)
    clock.now += 5
    started, release = threading.Event(), threading.Event()

    def slow_probe() -> str:
        started.set()
        release.wait(10)
        return "probed"

    results: list[str] = []
    probe = threading.Thread(target=lambda: results.append(b.call(slow_probe)))
    probe.start()
    assert started.wait(10)
    with pytest.raises(BreakerOpen):
        b.call(ok)  # the probe is in flight: everyone else is still refused
    release.set()
    probe.join(10)
    assert results == ["probed"] and b.state == "CLOSED"


def test_an_interrupted_call_is_not_a_verdict() -> None:
    b = Breaker("interrupted", failures=1, reset_s=5)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        b.call(interrupted)
    assert b.state == "CLOSED" and b.failures == 0


class BreakerMachine(RuleBasedStateMachine):
    """The breaker against a reference model, over random sequences of successes, failures,
    clock steps and operator actions (single-threaded: one call completes before the next)."""

    FAILURES, RESET, SUCCESSES = 3, 10.0, 2

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.b = Breaker(
            "machine",
            failures=self.FAILURES,
            reset_s=self.RESET,
            successes=self.SUCCESSES,
            clock=self.clock,
        )
        self.mode = "closed"
        self.streak = 0  # consecutive failures while closed
        self.probe_ok = 0  # successful probes since the cool-down ended
        self.opened = 0.0

    def model_state(self) -> str:
        if self.mode == "open" and self.clock.now - self.opened >= self.RESET:
            return "HALF_OPEN"
        return {"closed": "CLOSED", "open": "OPEN", "half": "HALF_OPEN"}[self.mode]

    @rule(ok=st.booleans())
    def call(self, ok: bool) -> None:
        expected = self.model_state()
        if expected == "OPEN":
            with pytest.raises(BreakerOpen):
                self.b.call(lambda: None)
            return
        if expected == "HALF_OPEN" and self.mode == "open":
            self.mode, self.probe_ok = "half", 0
        if ok:
            self.b.call(lambda: None)
            if self.mode == "half":
                self.probe_ok += 1
                if self.probe_ok == self.SUCCESSES:
                    self.mode, self.streak = "closed", 0
            else:
                self.streak = 0
        else:
            with pytest.raises(RuntimeError):
                self.b.call(fail)
            self.streak += 1
            if self.mode == "half" or self.streak >= self.FAILURES:
                self.mode, self.opened = "open", self.clock.now

    @rule(dt=st.floats(min_value=0.0, max_value=15.0))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def operator_open(self) -> None:
        self.b.open()
        self.mode, self.opened = "open", self.clock.now

    @rule()
    def operator_close(self) -> None:
        self.b.close()
        self.mode, self.streak = "closed", 0

    @invariant()
    def same_state(self) -> None:
        assert self.b.state == self.model_state()


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, derandomize=True
)


def test_call_async_counts_failures_and_not_cancellations() -> None:
    import asyncio

    b = Breaker("async", failures=2, reset_s=30)

    async def boom() -> None:
        raise RuntimeError("backend down")

    async def fine() -> str:
        return "ok"

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await b.call_async(boom)
        assert b.failures == 1
        task = asyncio.ensure_future(b.call_async(asyncio.sleep, 60))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert b.failures == 1 and b.state == "CLOSED"  # a cancellation is no verdict
        assert await b.call_async(fine) == "ok" and b.failures == 0
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await b.call_async(boom)
        with pytest.raises(BreakerOpen):
            await b.call_async(fine)

    asyncio.run(scenario())
