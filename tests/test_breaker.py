"""workbench.breaker: the circuit breaker adapter and the per-call time limiter."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from workbench import metrics
from workbench.breaker import Breaker, BreakerOpen, BreakerSet, SlidingWindowBreaker, TimeLimiter
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
    called: list[int] = []
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


# -- SlidingWindowBreaker ----------------------------------------------------------------


class RetryLater(RuntimeError):
    """A backend error that carries a Retry-After, as the HTTP transport's errors do."""

    def __init__(self, retry_after_s: float | None) -> None:
        super().__init__("busy")
        self.retry_after_s = retry_after_s


def raise_retry_later(retry_after_s: float | None) -> None:
    raise RetryLater(retry_after_s)


def report(b: SlidingWindowBreaker, outcomes: str, duration_s: float = 0.0) -> None:
    """``outcomes``: one letter a call, ``S`` success, ``F`` failure (each acquired first)."""
    for o in outcomes:
        assert b.try_acquire()
        if o == "S":
            b.on_success(duration_s)
        else:
            b.on_failure(duration_s)


def opened(name: str, **kw: Any) -> tuple[SlidingWindowBreaker, FakeClock]:
    """A sliding-window breaker opened by two failures (``min_calls=2``), on a test clock."""
    clock = FakeClock()
    b = SlidingWindowBreaker(
        name, clock=clock, **({"min_calls": 2, "open_s": 10.0, "half_open_calls": 3} | kw)
    )
    report(b, "FF")
    assert b.state == "OPEN"
    return b, clock


def test_count_window_opens_on_the_rate_of_the_last_size_calls() -> None:
    b = SlidingWindowBreaker("count", size=4, min_calls=4, failure_rate=0.5, clock=FakeClock())
    report(b, "FFF")
    assert b.state == "CLOSED"  # 100% failed, but only 3 calls: no verdict before min_calls
    b = SlidingWindowBreaker("count", size=4, min_calls=4, failure_rate=0.5, clock=FakeClock())
    report(b, "FSSS")
    assert b.snapshot()["failure_rate"] == 0.25
    report(b, "SF")  # the first F has left the ring: S S S F
    snap = b.snapshot()
    assert b.state == "CLOSED" and (snap["calls"], snap["failures"]) == (4, 1)
    report(b, "F")  # S S F F: 2 of 4 is the threshold (opens at >=); 3 of 7 overall is not
    snap = b.snapshot()
    assert b.state == "OPEN"
    assert (snap["calls"], snap["failures"], snap["failure_rate"]) == (4, 2, 0.5)


def test_time_window_forgets_calls_older_than_window_s_by_whole_seconds() -> None:
    def build() -> tuple[SlidingWindowBreaker, FakeClock]:
        clock = FakeClock()
        b = SlidingWindowBreaker("timed", window="time", window_s=10, min_calls=3, clock=clock)
        clock.now = 1000.2
        report(b, "FF")
        return b, clock

    b, clock = build()
    clock.now = 1009.9  # second 1000 is still one of the last 10 (1000..1009)
    report(b, "S")
    assert b.state == "OPEN"  # 2 of 3 failed
    b, clock = build()
    clock.now = 1010.0  # second 1000 has left the window (1001..1010)
    assert b.snapshot()["calls"] == 0
    report(b, "SFS")
    assert b.state == "CLOSED" and b.snapshot()["calls"] == 3  # 1 of 3 failed; 3 of 5 in all
    # memory: at most ceil(window_s) buckets, however long it runs
    b = SlidingWindowBreaker("timed", window="time", window_s=2.5, min_calls=3, clock=clock)
    for _ in range(200):
        clock.now += 0.5
        report(b, "S")
        assert len(b._window._buckets) <= 3  # type: ignore[union-attr]
    # now = 1110.0: seconds 1108 and 1109 hold two calls each, the current one its first
    assert b.snapshot()["calls"] == 5


def test_slow_calls_open_it_at_the_slow_rate() -> None:
    clock = FakeClock()
    b = SlidingWindowBreaker(
        "slow", min_calls=4, slow_call_s=2.0, slow_rate=0.5, failure_rate=1.0, clock=clock
    )
    report(b, "SS", duration_s=2.0)  # exactly the limit is not slow
    report(b, "S", duration_s=2.5)
    assert b.state == "CLOSED" and b.snapshot()["slow"] == 1
    report(b, "F", duration_s=9.0)  # a failed call can be slow too: 2 of 4 slow
    assert b.state == "OPEN"
    with pytest.raises(BreakerOpen, match=r"2 slower than 2 s \(50%\)") as info:
        b.call(ok)
    assert info.value.details["slowRate"] == 0.5 and info.value.details["failureRate"] == 0.25
    b = SlidingWindowBreaker("no-slow", min_calls=2, clock=clock)  # no slow-call rule
    report(b, "SSSS", duration_s=1e6)
    assert b.state == "CLOSED" and b.snapshot()["slow"] == 0


def test_call_times_the_call_with_the_breaker_clock() -> None:
    clock = FakeClock()
    b = SlidingWindowBreaker("timed-call", min_calls=2, slow_call_s=1.0, slow_rate=0.5, clock=clock)

    def takes(seconds: float) -> str:
        clock.now += seconds
        return "done"

    assert b.call(takes, 0.5) == "done" and b.snapshot()["slow"] == 0
    assert b.call(takes, seconds=1.5) == "done"
    assert b.state == "OPEN" and b.snapshot()["slow"] == 1  # 1 of 2 calls took 1.5 s


def test_retry_after_is_honoured_and_capped() -> None:
    for hint, wait in [(None, 10.0), (2.0, 10.0), (30.0, 30.0), (1000.0, 60.0)]:
        clock = FakeClock()
        b = SlidingWindowBreaker("ra", min_calls=1, open_s=10, max_open_s=60, clock=clock)
        assert b.try_acquire()
        b.on_failure(0.1, retry_after_s=hint)
        assert b.state == "OPEN" and b.retry_in_s() == wait, hint
        clock.now += wait - 0.001
        assert not b.try_acquire()
        clock.now += 0.001
        assert b.try_acquire() and b.state == "HALF_OPEN"
    # a late failure carrying Retry-After while open lengthens the wait, never shortens it
    b, clock = opened("late", max_open_s=60)
    clock.now += 5
    b.on_failure(0.0, retry_after_s=1.0)
    assert b.retry_in_s() == 5.0
    b.on_failure(0.0, retry_after_s=40.0)
    assert b.retry_in_s() == 40.0 and b.snapshot()["calls"] == 2  # and no verdict while open
    b.on_failure(0.0, retry_after_s=100.0)  # capped: open at most max_open_s since it opened
    assert b.retry_in_s() == 55.0
    # call() takes the hint from the exception; an unusable one is no hint
    clock = FakeClock()
    b = SlidingWindowBreaker("hinted", min_calls=1, open_s=10, max_open_s=60, clock=clock)
    with pytest.raises(RetryLater):
        b.call(raise_retry_later, 25.0)
    assert b.retry_in_s() == 25.0
    b = SlidingWindowBreaker("nan-hint", min_calls=1, open_s=10, clock=clock)
    with pytest.raises(RetryLater):
        b.call(raise_retry_later, float("nan"))
    assert b.retry_in_s() == 10.0
    b.open(retry_after_s=45)  # an operator may give one too
    assert b.retry_in_s() == 45.0
    with pytest.raises(BreakerOpen, match="opened by an operator"):
        b.call(ok)


def test_refusal_names_the_breaker_the_rates_and_the_wait() -> None:
    b, clock = opened("llm-a")
    clock.now += 2.5
    called: list[int] = []
    with pytest.raises(BreakerOpen, match=r"'llm-a' is open: 2 of 2 calls failed \(100%\)") as e:
        b.call(called.append, 1)
    assert called == [] and e.value.http_status == 503 and e.value.retry_after_s == 7.5
    assert e.value.details == {
        "breaker": "llm-a",
        "retryInS": 7.5,
        "failureRate": 1.0,
        "slowRate": 0.0,
    }
    text = metrics.render().decode()
    assert 'workbench_breaker_state{name="llm-a"} 2.0' in text
    assert 'workbench_breaker_rejected_total{name="llm-a"} 1.0' in text


def test_half_open_admits_at_most_half_open_calls_probes() -> None:
    b, clock = opened("probes", open_s=10.0, half_open_calls=3)
    clock.now += 9.999
    assert not b.try_acquire() and b.state == "OPEN"
    clock.now += 0.001
    assert b.state == "HALF_OPEN" and b.retry_in_s() == 0.0
    assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(BreakerOpen, match="half-open with all 3 probes out"):
        b.call(ok)
    b.on_success(0.0)
    assert not b.try_acquire()  # a reported probe does not free a slot: 3 probes in all
    assert b.snapshot() | {"retry_in_s": None} == {
        "state": "HALF_OPEN",
        "calls": 1,
        "failures": 0,
        "slow": 0,
        "failure_rate": 0.0,
        "slow_rate": 0.0,
        "retry_in_s": None,
    }


def test_half_open_lets_exactly_half_open_calls_threads_through() -> None:
    b, clock = opened("racing", half_open_calls=3)
    clock.now += 10
    gate = threading.Barrier(8)
    granted: list[bool] = []

    def contender() -> None:
        gate.wait(10)
        granted.append(b.try_acquire())

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(granted) == [False] * 5 + [True] * 3


def test_probes_close_it_with_an_empty_window() -> None:
    b, clock = opened("closing", half_open_calls=3, failure_rate=0.5)
    clock.now += 10
    for _ in range(3):
        assert b.try_acquire()
    b.on_failure(0.0)  # 1 of 3 failed: below 0.5 whatever the others report
    b.on_success(0.0)
    assert b.state == "HALF_OPEN"
    b.on_success(0.0)
    assert b.state == "CLOSED" and b.snapshot()["calls"] == 0
    report(b, "F")
    assert b.state == "CLOSED"  # 1 call: below min_calls=2 in the new window
    assert b.try_acquire()  # a late report after closing goes into the new window
    b.on_success(0.0)
    assert b.snapshot()["calls"] == 2


def test_probes_reopen_it_as_soon_as_closing_is_out_of_reach() -> None:
    """The rule chosen for a failed probe: re-open the moment the probes' failure (or slow)
    rate over ``half_open_calls`` has reached the threshold, without waiting for the rest."""
    b, clock = opened("reopen", half_open_calls=3, failure_rate=0.5, open_s=10.0)
    clock.now += 10
    for _ in range(3):
        assert b.try_acquire()
    b.on_failure(0.0)
    assert b.state == "HALF_OPEN"  # 1 of 3: it may still close
    clock.now += 1
    b.on_failure(0.0)  # 2 of 3 >= 0.5 whatever the third says: open again, a fresh wait
    assert b.state == "OPEN" and b.retry_in_s() == 10.0
    b.on_success(0.0)  # the third probe, reporting late: no verdict
    assert b.state == "OPEN" and b.snapshot()["calls"] == 2
    with pytest.raises(BreakerOpen, match=r"2 of 2 calls failed"):
        b.call(ok)
    # with failure_rate <= 1/3 a single failed probe re-opens it at once
    b, clock = opened("reopen-1", half_open_calls=3, failure_rate=0.3)
    clock.now += 10
    assert b.try_acquire()
    b.on_failure(0.0, retry_after_s=20.0)  # and its Retry-After sets the fresh wait
    assert b.state == "OPEN" and b.retry_in_s() == 20.0
    # slow probes re-open it too
    b, clock = opened("reopen-slow", half_open_calls=2, slow_call_s=1.0, slow_rate=0.5)
    clock.now += 10
    assert b.try_acquire()
    b.on_success(3.0)
    assert b.state == "OPEN"


def test_an_ignored_probe_frees_its_slot() -> None:
    b, clock = opened("ignored", half_open_calls=2)
    clock.now += 10
    assert b.try_acquire() and b.try_acquire() and not b.try_acquire()
    b.on_ignored()  # a cancelled probe
    b.on_ignored()  # and a client error
    b.on_ignored()  # one too many: nothing to free, nothing goes negative
    with pytest.raises(KeyboardInterrupt):  # call() treats an interruption as ignored
        b.call(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    report(b, "S")
    assert b.state == "HALF_OPEN"
    assert b.try_acquire() and not b.try_acquire()  # one probe reported, one out
    b.on_success(0.0)
    assert b.state == "CLOSED"
    b.on_ignored()  # closed: no effect
    assert b.state == "CLOSED" and b.snapshot()["calls"] == 0


def test_reports_beyond_the_probes_are_dropped_while_half_open() -> None:
    b, clock = opened("stale", half_open_calls=2)
    clock.now += 10
    assert b.try_acquire()
    b.on_failure(0.0)  # probe 1 of 2 failed: 1/2 >= 0.5 re-opens
    assert b.state == "OPEN"
    clock.now += 10
    assert b.try_acquire()
    b.on_success(0.0)
    b.on_failure(0.0)  # a call admitted while closed, reporting now: not a probe
    assert b.state == "HALF_OPEN" and b.snapshot()["calls"] == 1


def test_operator_open_and_close() -> None:
    clock = FakeClock()
    b = SlidingWindowBreaker("ops", open_s=10, max_open_s=30, clock=clock)
    report(b, "SF")
    b.open()
    assert b.state == "OPEN" and b.retry_in_s() == 10.0 and b.snapshot()["calls"] == 2
    b.open(retry_after_s=math.inf)  # capped
    assert b.retry_in_s() == 30.0
    b.close()
    assert b.state == "CLOSED" and b.snapshot()["calls"] == 0 and b.try_acquire()
    assert 'workbench_breaker_state{name="ops"} 0.0' in metrics.render().decode()


def test_call_async_counts_failures_and_frees_cancelled_probes() -> None:
    import asyncio

    b, clock = opened("async-sliding", half_open_calls=1, open_s=10.0, max_open_s=60.0)
    clock.now += 10

    async def fine() -> str:
        return "ok"

    async def busy() -> None:
        raise RetryLater(45.0)

    async def scenario() -> None:
        task = asyncio.ensure_future(b.call_async(asyncio.sleep, 60))
        await asyncio.sleep(0)
        with pytest.raises(BreakerOpen, match="all 1 probes out"):
            await b.call_async(fine)  # the sleeping probe holds the only slot
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert b.state == "HALF_OPEN"  # the cancelled probe was no verdict and freed its slot
        assert await b.call_async(fine) == "ok"
        assert b.state == "CLOSED"
        for _ in range(2):
            with pytest.raises(RetryLater):
                await b.call_async(busy)
        assert b.state == "OPEN" and b.retry_in_s() == 45.0
        with pytest.raises(BreakerOpen):
            await b.call_async(fine)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("window", "sliding"),
        ("size", 0),
        ("size", 2.5),
        ("size", True),
        ("window_s", 0),
        ("window_s", math.nan),
        ("min_calls", 0),
        ("min_calls", 101),  # more than the count window holds
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("slow_call_s", -1.0),
        ("slow_rate", math.inf),
        ("open_s", "30"),
        ("max_open_s", 29.0),  # below open_s
        ("half_open_calls", 0),
        ("clock", 5.0),
    ],
)
def test_sliding_window_settings_are_validated(field: str, value: Any) -> None:
    args: dict[str, Any] = {"name": "v"} | {field: value}
    with pytest.raises(InputError, match=field) as info:
        SlidingWindowBreaker(args.pop("name"), **args)
    assert info.value.details["field"] == field and info.value.details["valid"]


def test_sliding_window_reports_are_validated() -> None:
    b = SlidingWindowBreaker("reports", window="time", min_calls=200)  # min_calls may exceed
    for bad in (-1.0, math.nan, math.inf, "1"):
        with pytest.raises(InputError, match="duration_s"):
            b.on_success(bad)  # type: ignore[arg-type]
    for hint in (-1.0, math.nan, "5"):
        with pytest.raises(InputError, match="retry_after_s"):
            b.on_failure(0.0, retry_after_s=hint)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="retry_after_s"):
            b.open(retry_after_s=hint)  # type: ignore[arg-type]
    assert b.snapshot()["calls"] == 0


def test_breaker_set_builds_sliding_window_breakers_with_a_factory() -> None:
    clock = FakeClock()
    s = BreakerSet(
        max_breakers=2,
        factory=lambda name: SlidingWindowBreaker(name, min_calls=1, open_s=5, clock=clock),
    )
    a = s.get("set-a")
    assert isinstance(a, SlidingWindowBreaker) and s.get("set-a") is a
    with pytest.raises(RuntimeError):
        a.call(fail)
    s.get("set-b")
    assert s.worst() == "OPEN" and s.states() == {"set-a": "OPEN", "set-b": "CLOSED"}
    s.get("set-c")  # the closed "set-b" makes room
    assert set(s.states()) == {"set-a", "set-c"}
    clock.now += 5
    assert s.worst() == "HALF_OPEN"
    assert isinstance(BreakerSet().get("plain"), Breaker)  # no factory: as before
    wrong = BreakerSet(factory=lambda name: SlidingWindowBreaker(name + "-x"))
    with pytest.raises(InputError, match="factory"):
        wrong.get("named")
    with pytest.raises(InputError, match="factory"):
        BreakerSet(factory="sliding")  # type: ignore[call-overload]


class SlidingWindowModel:
    """The plain reference: every reported outcome kept with its time, the window re-scanned
    on each question, the half-open probes kept as a list."""

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.mode = "CLOSED"
        self.outcomes: list[tuple[float, bool, bool]] = []  # (time, failed, slow)
        self.opened: list[tuple[float, bool, bool]] = []  # the outcomes that opened it
        self.since = self.until = 0.0  # when it opened, until when it stays open
        self.admitted = 0
        self.probes: list[tuple[float, bool, bool]] = []

    def window(self, now: float) -> list[tuple[float, bool, bool]]:
        if self.kw["window"] == "count":
            return self.outcomes[-self.kw["size"] :]
        seconds = math.ceil(self.kw["window_s"])
        return [o for o in self.outcomes if math.floor(o[0]) > math.floor(now) - seconds]

    def bad(self, outcomes: list[tuple[float, bool, bool]], calls: int) -> bool:
        failed = sum(o[1] for o in outcomes)
        slow = sum(o[2] for o in outcomes)
        return failed / calls >= self.kw["failure_rate"] or slow / calls >= self.kw["slow_rate"]

    def trip(self, now: float, outcomes: list[Any], retry_after_s: float | None) -> None:
        wait = self.kw["open_s"]
        if retry_after_s is not None:  # the rule as written for the failure that opens it
            wait = min(max(wait, retry_after_s), self.kw["max_open_s"])
        self.mode, self.since, self.until, self.opened = "OPEN", now, now + wait, list(outcomes)
        self.outcomes, self.probes, self.admitted = [], [], 0

    def state(self, now: float) -> str:
        return "HALF_OPEN" if self.mode == "OPEN" and now >= self.until else self.mode

    def acquire(self, now: float) -> bool:
        if self.mode == "OPEN":
            if now < self.until:
                return False
            self.mode, self.probes, self.admitted = "HALF_OPEN", [], 0
        if self.mode == "HALF_OPEN":
            if self.admitted == self.kw["half_open_calls"]:
                return False
            self.admitted += 1
        return True

    def report(self, now: float, failed: bool, duration_s: float, retry_after_s: Any) -> None:
        outcome = (now, failed, duration_s > self.kw["slow_call_s"])
        if self.mode == "OPEN":
            if retry_after_s is not None:  # from now, within max_open_s of the opening
                latest = min(now + retry_after_s, self.since + self.kw["max_open_s"])
                self.until = max(self.until, latest)
        elif self.mode == "HALF_OPEN":
            if len(self.probes) < self.admitted:
                self.probes.append(outcome)
                if self.bad(self.probes, self.kw["half_open_calls"]):
                    self.trip(now, self.probes, retry_after_s)
                elif len(self.probes) == self.kw["half_open_calls"]:
                    self.mode, self.outcomes = "CLOSED", []
        else:
            self.outcomes.append(outcome)
            w = self.window(now)
            if len(w) >= self.kw["min_calls"] and self.bad(w, len(w)):
                self.trip(now, w, retry_after_s)

    def ignored(self) -> None:
        if self.mode == "HALF_OPEN" and self.admitted > len(self.probes):
            self.admitted -= 1

    def snapshot(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        seen = {"CLOSED": self.window(now), "OPEN": self.opened}.get(state, [])
        if self.mode == "HALF_OPEN":
            seen = self.probes
        calls, failed, slow = len(seen), sum(o[1] for o in seen), sum(o[2] for o in seen)
        return {
            "state": state,
            "calls": calls,
            "failures": failed,
            "slow": slow,
            "failure_rate": failed / calls if calls else 0.0,
            "slow_rate": slow / calls if calls else 0.0,
            "retry_in_s": max(0.0, self.until - now) if state == "OPEN" else 0.0,
        }


DURATIONS = st.sampled_from([0.0, 0.2, 0.5, 1.0, 1.5, 30.0])  # slow_call_s=1.0: 1.0 is not
OUTCOMES = st.sampled_from(["ok", "ok", "failed", "ignored"])
HINTS = st.sampled_from([None, 0.0, 1.5, 4.0, 7.5, 1e9])  # open_s=3, max_open_s=8
STEPS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 3.0]), st.floats(min_value=0.0, max_value=6.0))


class SlidingWindowMachine(RuleBasedStateMachine):
    """The sliding-window breaker against :class:`SlidingWindowModel` over random sequences
    of permissions, successes, failures (with and without Retry-After, fast and slow),
    ignored calls, unmatched late reports, clock steps and operator actions."""

    SETTINGS: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        kw = {
            "min_calls": 3,
            "failure_rate": 0.5,
            "slow_call_s": 1.0,
            "slow_rate": 0.6,
            "open_s": 3.0,
            "max_open_s": 8.0,
            "half_open_calls": 3,
        } | self.SETTINGS
        self.b = SlidingWindowBreaker(f"machine-{kw['window']}", clock=self.clock, **kw)
        self.model = SlidingWindowModel(**kw)

    @rule()
    def acquire(self) -> None:
        assert self.b.try_acquire() == self.model.acquire(self.clock.now)

    @rule(duration=DURATIONS)
    def succeed(self, duration: float) -> None:
        self.b.on_success(duration)
        self.model.report(self.clock.now, False, duration, None)

    @rule(duration=DURATIONS, hint=HINTS)
    def fail(self, duration: float, hint: float | None) -> None:
        self.b.on_failure(duration, retry_after_s=hint)
        self.model.report(self.clock.now, True, duration, hint)

    @rule()
    def ignore(self) -> None:
        self.b.on_ignored()
        self.model.ignored()

    def finish(self, outcome: str, duration: float, hint: float | None) -> None:
        now = self.clock.now
        if outcome == "ignored":
            self.b.on_ignored()
            self.model.ignored()
        elif outcome == "ok":
            self.b.on_success(duration)
            self.model.report(now, False, duration, None)
        else:
            self.b.on_failure(duration, retry_after_s=hint)
            self.model.report(now, True, duration, hint)

    @rule(outcome=OUTCOMES, duration=DURATIONS, hint=HINTS)
    def permitted_call(self, outcome: str, duration: float, hint: float | None) -> None:
        """A permission and its report in one step, the way callers use it."""
        permitted = self.model.acquire(self.clock.now)
        assert self.b.try_acquire() == permitted
        if permitted:
            self.finish(outcome, duration, hint)

    @rule(calls=st.lists(st.tuples(OUTCOMES, DURATIONS, HINTS), min_size=2, max_size=4))
    def concurrent_calls(self, calls: list[tuple[str, float, float | None]]) -> None:
        """Several permissions taken at once, then reported in order (the half-open limit)."""
        permitted = [self.model.acquire(self.clock.now) for _ in calls]
        assert [self.b.try_acquire() for _ in calls] == permitted
        for call, ok_ in zip(calls, permitted, strict=True):
            if ok_:
                self.finish(*call)

    @rule(dt=STEPS)
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule(hint=HINTS, close=st.booleans())
    def operator(self, hint: float | None, close: bool) -> None:
        now = self.clock.now
        if close:
            self.b.close()
            self.model.mode, self.model.outcomes, self.model.probes = "CLOSED", [], []
            self.model.admitted = 0
        else:
            self.b.open(retry_after_s=hint)
            self.model.trip(now, self.model.window(now), hint)

    @invariant()
    def same_state_and_counts(self) -> None:
        assert self.b.snapshot() == self.model.snapshot(self.clock.now)
        assert self.b.state == self.model.state(self.clock.now)


class CountWindowMachine(SlidingWindowMachine):
    SETTINGS: ClassVar[dict[str, Any]] = {"window": "count", "size": 5}


class TimeWindowMachine(SlidingWindowMachine):
    SETTINGS: ClassVar[dict[str, Any]] = {
        "window": "time",
        "window_s": 4.5,
        "half_open_calls": 2,
        "failure_rate": 0.4,
    }


MACHINE_SETTINGS = settings(
    max_examples=100, stateful_step_count=50, deadline=None, derandomize=True
)
TestCountWindowMachine = CountWindowMachine.TestCase
TestCountWindowMachine.settings = MACHINE_SETTINGS
TestTimeWindowMachine = TimeWindowMachine.TestCase
TestTimeWindowMachine.settings = MACHINE_SETTINGS
