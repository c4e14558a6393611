"""Circuit breakers and per-call time limits for calls into things that can break.

- :class:`Breaker`: ``failures`` consecutive failures open it; after ``reset_s`` one call at a
  time is let through as a probe (half-open); ``successes`` successful probes close it and a
  failed probe re-opens it. The platform's state names (``CLOSED``, ``OPEN``, ``HALF_OPEN``)
  and its defaults for agent execution (3 failures, 2 successes). A refused call raises
  :class:`BreakerOpen`, a :class:`~workbench.errors.BackendUnavailable` (HTTP 503) naming the
  breaker and when it lets a probe through.
- :class:`SlidingWindowBreaker`: resilience4j's rate-based breaker, for the cache and the LLM
  router, where a busy backend sees many calls at once and consecutive counts say little: the
  failure rate and the slow-call rate of a sliding window (the last N calls, or the last T
  seconds in one-second buckets) open it once the window holds enough calls; the wait honours
  a backend's Retry-After (capped); ``half_open_calls`` probes decide between closing and
  opening again. The same states, refusal error and state gauge as :class:`Breaker`.
- :class:`BreakerSet`: breakers by name, created on first use and bounded in number, with the
  worst state as one summary (what a ``/health`` route reports); a ``factory`` makes it hold
  sliding-window breakers instead.
- :class:`TimeLimiter`: a per-call time limit with bounded concurrency. A synchronous call
  cannot be interrupted in Python, so a call past its limit is abandoned (its thread finishes
  in the background), counted as a failure and reported as
  :class:`~workbench.errors.WaitTimeout`.

Only exceptions count as failures: a call that returns a poor result is a result, not an
outage.

Why not pybreaker (the maintained Python breaker, considered first): it counts consecutive
failures only, with no failure-rate window and no slow-call rule, so it cannot be the cache's
and the router's breaker; it reads the wall clock (``datetime.now``) with no way to inject
one, so tests would have to sleep or reach into its storage, and a wall-clock step would open
or close breakers; and while half-open it lets every concurrent call through, where the probes
should be a bounded few (as Akka's and resilience4j's breakers do). The state machines are
small; here they run on an injected monotonic clock and each is checked against a plain
reference model by a hypothesis state-machine test.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast, overload

from workbench import metrics
from workbench.errors import BackendUnavailable, CapacityError, InputError, WaitTimeout

__all__ = ["Breaker", "BreakerOpen", "BreakerSet", "SlidingWindowBreaker", "TimeLimiter"]

T = TypeVar("T")
AnyBreaker = TypeVar("AnyBreaker", bound="Breaker | SlidingWindowBreaker")

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
_SEVERITY = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

_STATE = metrics.gauge(
    "workbench_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", ["name"]
)
_REJECTED = metrics.counter(
    "workbench_breaker_rejected_total", "Calls refused by an open circuit breaker", ["name"]
)


class BreakerOpen(BackendUnavailable):
    """A call was refused because its circuit breaker is open."""

    code = "CIRCUIT_OPEN"


def _check_settings(name: str, failures: int, reset_s: float, successes: int) -> None:
    if failures < 1 or successes < 1:
        raise InputError(
            f"breaker {name!r}: failures and successes must be >= 1, "
            f"got {failures} and {successes}",
            details={"field": "failures" if failures < 1 else "successes"},
        )
    if not reset_s > 0:
        raise InputError(
            f"breaker {name!r}: reset_s must be > 0, got {reset_s}", details={"field": "reset_s"}
        )


class Breaker:
    """One circuit breaker (thread-safe).

    Args:
        name: What it protects (an agent, a backend); shown in errors and metrics.
        failures: Consecutive failures that open it (``failureThreshold``).
        reset_s: Seconds it stays open before a half-open probe (the cool-down).
        successes: Successful probes that close it again (``successThreshold``).
        clock: Monotonic seconds (injected by tests; ``time.monotonic`` by default).
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = 3,
        reset_s: float = 30.0,
        successes: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_settings(name, failures, reset_s, successes)
        self.name = name
        self.failure_threshold = int(failures)
        self.success_threshold = int(successes)
        self.reset_s = float(reset_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0  # consecutive, while closed; the count that opened it, while open
        self._successes = 0  # successful probes while half-open
        self._opened_at = 0.0
        self._probing = False
        _STATE.labels(name).set(0)

    def _set(self, state: str) -> None:
        self._state = state
        _STATE.labels(self.name).set(_SEVERITY[state])

    @property
    def state(self) -> str:
        """``CLOSED``, ``OPEN`` or ``HALF_OPEN`` (an open breaker past its cool-down reads
        ``HALF_OPEN``: its next call is the probe)."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_s:
                return HALF_OPEN
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def _admit(self) -> bool:
        """Whether a call may go ahead now; True marks it as the probe when half-open."""
        with self._lock:
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.reset_s:
                    return False
                self._set(HALF_OPEN)
                self._successes = 0
            if self._state == HALF_OPEN:
                if self._probing:
                    return False
                self._probing = True
            return True

    def _record(self, ok: bool | None) -> None:
        """``ok``: the call succeeded, failed, or (``None``) was interrupted (not counted)."""
        with self._lock:
            probe = self._state == HALF_OPEN
            if probe:
                self._probing = False
            if ok is None:
                return
            if ok:
                if probe:
                    self._successes += 1
                    if self._successes >= self.success_threshold:
                        self._set(CLOSED)
                        self._failures = 0
                else:
                    self._failures = 0
                return
            self._failures += 1
            if probe or self._failures >= self.failure_threshold:
                self._set(OPEN)
                self._opened_at = self._clock()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` through the breaker.

        Raises:
            BreakerOpen: the breaker is open and its cool-down has not passed, or it is
                half-open and another call is the probe.
            Exception: whatever ``fn`` raised (counted as a failure).
        """
        if not self._admit():
            raise self._refusal()
        try:
            result = fn(*args, **kwargs)
        except Exception:
            self._record(False)
            raise
        except BaseException:  # interrupted (KeyboardInterrupt, cancellation): no verdict
            self._record(None)
            raise
        self._record(True)
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` through the breaker (same rules as :meth:`call`; a
        cancelled call is no verdict)."""
        if not self._admit():
            raise self._refusal()
        try:
            result = await fn(*args, **kwargs)
        except Exception:
            self._record(False)
            raise
        except BaseException:
            self._record(None)
            raise
        self._record(True)
        return result

    def _refusal(self) -> BreakerOpen:
        _REJECTED.labels(self.name).inc()
        wait = self.retry_in_s()
        return BreakerOpen(
            f"circuit breaker {self.name!r} is open after {self._failures} consecutive "
            f"failures; it lets a probe through in {wait:.1f} s",
            details={"breaker": self.name, "retryInS": round(wait, 3)},
        )

    def open(self) -> None:
        """Open it now (an operator taking a backend out)."""
        with self._lock:
            self._set(OPEN)
            self._opened_at = self._clock()
            self._probing = False

    def close(self) -> None:
        """Close it now and forget the failures."""
        with self._lock:
            self._set(CLOSED)
            self._failures = self._successes = 0
            self._probing = False


_FAILED, _SLOW = 1, 2  # bits of one outcome in a count window
_MAX_CALLS = 1_000_000  # most outcomes a count window holds, most ``min_calls``
_MAX_S = 86_400.0  # longest window, wait or slow-call limit: a day


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _invalid(name: str, field: str, value: object, valid: str) -> InputError:
    shown = value if value is None or isinstance(value, int | float | str) else repr(value)
    return InputError(
        f"breaker {name!r}: {field} must be {valid}, got {value!r}",
        details={"field": field, "value": shown, "valid": valid},
    )


def _int_in(name: str, field: str, value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _invalid(name, field, value, f"an integer in [{lo}, {hi}]")
    return value


def _seconds(name: str, field: str, value: Any) -> float:
    """A number of seconds in ``(0, _MAX_S]``."""
    if not _is_number(value) or not 0.0 < value <= _MAX_S:  # NaN fails the comparison
        raise _invalid(name, field, value, f"a number of seconds in (0, {_MAX_S:g}]")
    return float(value)


def _rate(name: str, field: str, value: Any) -> float:
    if not _is_number(value) or not 0.0 < value <= 1.0:
        raise _invalid(name, field, value, "a fraction in (0, 1]")
    return float(value)


def _hint(name: str, value: Any) -> float | None:
    """A Retry-After given by a caller: None or seconds >= 0 (infinity is capped later)."""
    if value is not None and not (_is_number(value) and value >= 0):
        raise _invalid(name, "retry_after_s", value, "None or a number of seconds >= 0")
    return None if value is None else float(value)


def _retry_hint(exc: BaseException) -> float | None:
    """The ``retry_after_s`` an exception carries, when it is a usable number of seconds."""
    value: Any = getattr(exc, "retry_after_s", None)
    if _is_number(value) and value >= 0:  # NaN fails the comparison
        return float(value)
    return None


class _CountWindow:
    """The last ``size`` outcomes: a ring of one byte each (bit 0 failed, bit 1 slow)."""

    def __init__(self, size: int) -> None:
        self._ring = bytearray(size)
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        """Nothing ages out of a count window."""

    def add(self, failed: bool, slow: bool, now: float) -> None:
        if self.calls == len(self._ring):
            old = self._ring[self._next]
            self.failures -= old & _FAILED
            self.slow -= (old & _SLOW) >> 1
        else:
            self.calls += 1
        self._ring[self._next] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        self._next = (self._next + 1) % len(self._ring)
        self.failures += failed
        self.slow += slow

    def clear(self) -> None:
        # Slots are read only once rewritten, so the ring itself need not be zeroed.
        self._next = self.calls = self.failures = self.slow = 0


class _TimeWindow:
    """The outcomes of the last ``ceil(window_s)`` clock seconds, one bucket per second.

    A bucket holds the calls whose clock reading has the same integer part, so the window at
    ``now`` is the current second plus the ``ceil(window_s) - 1`` before it (as resilience4j's
    time-based window is): between ``ceil(window_s) - 1`` and ``ceil(window_s)`` seconds.
    """

    def __init__(self, window_s: float) -> None:
        self.seconds = math.ceil(window_s)
        self._buckets: deque[list[int]] = deque()  # [second, calls, failures, slow]
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        oldest_out = math.floor(now) - self.seconds
        while self._buckets and self._buckets[0][0] <= oldest_out:
            _, calls, failures, slow = self._buckets.popleft()
            self.calls -= calls
            self.failures -= failures
            self.slow -= slow

    def add(self, failed: bool, slow: bool, now: float) -> None:
        self.expire(now)
        second = math.floor(now)
        if self._buckets and self._buckets[-1][0] >= second:  # >: a clock that stepped back
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = self.slow = 0


class SlidingWindowBreaker:
    """A circuit breaker on the failure and slow-call rates of a sliding window (thread-safe).

    Closed, each reported call goes into the window (the last ``size`` calls, or the calls of
    the last ``window_s`` seconds); once it holds ``min_calls`` calls, a failure rate at or
    above ``failure_rate`` or a slow-call rate at or above ``slow_rate`` opens the breaker.
    Open, calls are refused for ``open_s`` (longer when the failure that opened it carried a
    Retry-After, up to ``max_open_s``); then the first :meth:`try_acquire` makes it half-open
    and ``half_open_calls`` probes are let through. When all of them have reported it closes
    with an empty window if their failure rate is below ``failure_rate`` and their slow rate
    below ``slow_rate``, and opens again otherwise. It re-opens *as soon as that verdict is
    certain*, without waiting for the other probes: with 3 probes and ``failure_rate=0.5`` the
    second failed probe re-opens it, and with ``failure_rate <= 1/3`` the first one does.

    Reports are not tied to permissions (as in resilience4j): every :meth:`try_acquire` that
    returned True must be followed by exactly one of :meth:`on_success`, :meth:`on_failure`
    or :meth:`on_ignored`. Reports that arrive while it is open carry no verdict (the window
    that opened it is kept, for the refusal message), except that a failure's Retry-After
    lengthens the wait to that many seconds from its arrival, never past ``max_open_s`` after
    the opening. While half-open, reports beyond the probes let through are dropped,
    and an ignored probe frees its slot for another, so a half-open breaker is never stuck.

    Args:
        name: What it protects; shown in errors and metrics.
        window: ``"count"`` (the last ``size`` calls) or ``"time"`` (the last ``window_s``
            seconds, in one-second buckets).
        size: Calls in a count window, in [1, 1e6]; memory is one byte a call.
        window_s: Seconds in a time window, in (0, 86400]; at most ``ceil(window_s)`` buckets.
        min_calls: Calls the window must hold before any verdict; at most ``size`` for a count
            window.
        failure_rate: Failed fraction of the window that opens it, in (0, 1].
        slow_call_s: A call that took longer than this is slow (``None``: no slow-call rule).
            Failed calls can be slow too.
        slow_rate: Slow fraction of the window that opens it, in (0, 1].
        open_s: Seconds it stays open before the probes.
        max_open_s: Longest a Retry-After keeps it open (from the opening), at least
            ``open_s``.
        half_open_calls: Probes let through while half-open (and at most this many at once).
        clock: Monotonic seconds (injected by tests; ``time.monotonic`` by default).
    """

    def __init__(
        self,
        name: str,
        *,
        window: str = "count",
        size: int = 100,
        window_s: float = 60.0,
        min_calls: int = 10,
        failure_rate: float = 0.5,
        slow_call_s: float | None = None,
        slow_rate: float = 1.0,
        open_s: float = 30.0,
        max_open_s: float = 300.0,
        half_open_calls: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise _invalid(str(name), "name", name, "a non-empty string")
        if window not in ("count", "time"):
            raise _invalid(name, "window", window, "'count' or 'time'")
        self.name = name
        self.window = window
        self.size = _int_in(name, "size", size, 1, _MAX_CALLS)
        self.window_s = _seconds(name, "window_s", window_s)
        self.min_calls = _int_in(
            name, "min_calls", min_calls, 1, self.size if window == "count" else _MAX_CALLS
        )
        self.failure_rate = _rate(name, "failure_rate", failure_rate)
        self.slow_call_s = (
            None if slow_call_s is None else _seconds(name, "slow_call_s", slow_call_s)
        )
        self.slow_rate = _rate(name, "slow_rate", slow_rate)
        self.open_s = _seconds(name, "open_s", open_s)
        self.max_open_s = _seconds(name, "max_open_s", max_open_s)
        if self.max_open_s < self.open_s:
            raise _invalid(
                name, "max_open_s", max_open_s, f"seconds in [open_s={self.open_s:g}, {_MAX_S:g}]"
            )
        self.half_open_calls = _int_in(name, "half_open_calls", half_open_calls, 1, _MAX_CALLS)
        if not callable(clock):
            raise _invalid(name, "clock", clock, "a callable returning monotonic seconds")
        self._clock = clock
        self._lock = threading.Lock()
        self._window: _CountWindow | _TimeWindow = (
            _CountWindow(self.size) if window == "count" else _TimeWindow(self.window_s)
        )
        self._state = CLOSED
        self._opened_at = self._open_until = 0.0
        self._opened = (0, 0, 0)  # (calls, failures, slow) of the window that opened it
        self._by_operator = False
        self._admitted = 0  # probes let through in this half-open spell, not ignored
        self._probes = [0, 0, 0]  # (calls, failures, slow) the probes reported
        _STATE.labels(name).set(0)

    # -- state ---------------------------------------------------------------------------

    def _set(self, state: str) -> None:
        self._state = state
        _STATE.labels(self.name).set(_SEVERITY[state])

    def _too_bad(self, calls: int, failures: int, slow: int) -> bool:
        if failures / calls >= self.failure_rate:
            return True
        return self.slow_call_s is not None and slow / calls >= self.slow_rate

    def _honour(self, now: float, retry_after_s: float | None) -> None:
        """Wait at least ``retry_after_s`` from now, but never past ``max_open_s`` after the
        opening; at the opening this is ``min(max(open_s, retry_after_s), max_open_s)``."""
        if retry_after_s is not None:
            latest = min(now + retry_after_s, self._opened_at + self.max_open_s)
            self._open_until = max(self._open_until, latest)

    def _trip(self, now: float, counts: tuple[int, int, int], retry_after_s: float | None) -> None:
        self._set(OPEN)
        self._opened_at, self._open_until = now, now + self.open_s
        self._honour(now, retry_after_s)
        self._opened = counts
        self._window.clear()
        self._admitted, self._probes = 0, [0, 0, 0]

    def _effective(self, now: float) -> str:
        if self._state == OPEN and now >= self._open_until:
            return HALF_OPEN
        return self._state

    @property
    def state(self) -> str:
        """``CLOSED``, ``OPEN`` or ``HALF_OPEN`` (an open breaker past its wait reads
        ``HALF_OPEN``: its next calls are the probes)."""
        with self._lock:
            return self._effective(self._clock())

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets probes through (0 when not open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def snapshot(self) -> dict[str, Any]:
        """The state and the counts behind it: the sliding window while closed, the window
        that opened it while open, the probes' reports while half-open. Rates are 0.0 for an
        empty window."""
        with self._lock:
            now = self._clock()
            state = self._effective(now)
            if state == CLOSED:
                self._window.expire(now)
                calls, failures, slow = self._window.calls, self._window.failures, self._window.slow
            elif state == OPEN:
                calls, failures, slow = self._opened
            elif self._state == HALF_OPEN:
                calls, failures, slow = self._probes
            else:  # past its wait, no probe yet
                calls = failures = slow = 0
            return {
                "state": state,
                "calls": calls,
                "failures": failures,
                "slow": slow,
                "failure_rate": failures / calls if calls else 0.0,
                "slow_rate": slow / calls if calls else 0.0,
                "retry_in_s": max(0.0, self._open_until - now) if state == OPEN else 0.0,
            }

    # -- permissions and reports ---------------------------------------------------------

    def try_acquire(self) -> bool:
        """Permission for one call now; False while open before the wait has passed, or
        while half-open with every probe out. A refusal is counted in
        ``workbench_breaker_rejected_total``."""
        with self._lock:
            if self._state == OPEN:
                if self._clock() < self._open_until:
                    _REJECTED.labels(self.name).inc()
                    return False
                self._set(HALF_OPEN)
                self._admitted, self._probes = 0, [0, 0, 0]
            if self._state == HALF_OPEN:
                if self._admitted >= self.half_open_calls:
                    _REJECTED.labels(self.name).inc()
                    return False
                self._admitted += 1
            return True

    def _duration(self, duration_s: Any) -> float:
        if not _is_number(duration_s) or not 0.0 <= duration_s < math.inf:
            raise _invalid(self.name, "duration_s", duration_s, "a finite number of seconds >= 0")
        return float(duration_s)

    def _record(self, failed: bool, duration_s: float, retry_after_s: float | None) -> None:
        slow = self.slow_call_s is not None and duration_s > self.slow_call_s
        with self._lock:
            now = self._clock()
            if self._state == OPEN:  # a call admitted before it opened, reporting late
                self._honour(now, retry_after_s)
                return
            if self._state == HALF_OPEN:
                p = self._probes
                if p[0] >= self._admitted:  # not one of the probes
                    return
                p[0], p[1], p[2] = p[0] + 1, p[1] + failed, p[2] + slow
                if self._too_bad(self.half_open_calls, p[1], p[2]):  # cannot close any more
                    self._trip(now, (p[0], p[1], p[2]), retry_after_s)
                elif p[0] == self.half_open_calls:
                    self._set(CLOSED)
                    self._window.clear()
                    self._by_operator = False
                return
            w = self._window
            w.add(failed, slow, now)
            if w.calls >= self.min_calls and self._too_bad(w.calls, w.failures, w.slow):
                self._by_operator = False
                self._trip(now, (w.calls, w.failures, w.slow), retry_after_s)

    def on_success(self, duration_s: float) -> None:
        """Report a permitted call that succeeded after ``duration_s`` seconds."""
        self._record(False, self._duration(duration_s), None)

    def on_failure(self, duration_s: float, *, retry_after_s: float | None = None) -> None:
        """Report a permitted call that failed after ``duration_s`` seconds; ``retry_after_s``
        is the backend's Retry-After, if it sent one (honoured when this failure opens the
        breaker or arrives while it is open, within ``[open_s, max_open_s]``)."""
        self._record(True, self._duration(duration_s), _hint(self.name, retry_after_s))

    def on_ignored(self) -> None:
        """Release a permission with no verdict (a cancelled call, a client error); a
        half-open probe's slot goes to the next caller."""
        with self._lock:
            if self._state == HALF_OPEN and self._admitted > self._probes[0]:
                self._admitted -= 1

    def _elapsed(self, start: float) -> float:
        return max(0.0, self._clock() - start)  # an injected clock may step back

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` through the breaker, timed with its clock.

        Raises:
            BreakerOpen: the breaker refused the call (``fn`` was not called).
            Exception: whatever ``fn`` raised (a failure; its ``retry_after_s``, if any, is the
                Retry-After hint). A ``BaseException`` that is not an ``Exception`` is no
                verdict.
        """
        if not self.try_acquire():
            raise self._refusal()
        start = self._clock()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.on_failure(self._elapsed(start), retry_after_s=_retry_hint(exc))
            raise
        except BaseException:
            self.on_ignored()
            raise
        self.on_success(self._elapsed(start))
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` through the breaker (same rules as :meth:`call`; a
        cancelled call is no verdict)."""
        if not self.try_acquire():
            raise self._refusal()
        start = self._clock()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self.on_failure(self._elapsed(start), retry_after_s=_retry_hint(exc))
            raise
        except BaseException:
            self.on_ignored()
            raise
        self.on_success(self._elapsed(start))
        return result

    def _refusal(self) -> BreakerOpen:
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._open_until - now) if self._state == OPEN else 0.0
            calls, failures, slow = self._opened
            fr = failures / calls if calls else 0.0
            sr = slow / calls if calls else 0.0
            if self._state != OPEN:
                text = f"is half-open with all {self.half_open_calls} probes out; retry shortly"
            elif self._by_operator:
                text = f"was opened by an operator; it lets probes through in {wait:.1f} s"
            else:
                slow_text = ""
                if self.slow_call_s is not None:
                    slow_text = f" and {slow} slower than {self.slow_call_s:g} s ({sr:.0%})"
                text = (
                    f"is open: {failures} of {calls} calls failed ({fr:.0%}){slow_text}; "
                    f"it lets probes through in {wait:.1f} s"
                )
        return BreakerOpen(
            f"circuit breaker {self.name!r} {text}",
            details={
                "breaker": self.name,
                "retryInS": round(wait, 3),
                "failureRate": round(fr, 4),
                "slowRate": round(sr, 4),
            },
            retry_after_s=wait if wait > 0 else None,
        )

    # -- operator ------------------------------------------------------------------------

    def open(self, retry_after_s: float | None = None) -> None:
        """Open it now (an operator taking a backend out), for ``open_s`` or, given
        ``retry_after_s``, for that long within ``[open_s, max_open_s]``."""
        retry_after_s = _hint(self.name, retry_after_s)
        with self._lock:
            now = self._clock()
            self._window.expire(now)
            w = self._window
            self._by_operator = True
            self._trip(now, (w.calls, w.failures, w.slow), retry_after_s)

    def close(self) -> None:
        """Close it now with an empty window."""
        with self._lock:
            self._set(CLOSED)
            self._window.clear()
            self._by_operator = False
            self._admitted, self._probes = 0, [0, 0, 0]


class BreakerSet(Generic[AnyBreaker]):
    """Breakers by name, created on first use with the same settings.

    Args:
        max_breakers: Most breakers held (names come from callers; the set must not grow
            without bound). Closed breakers are dropped oldest first to make room; when every
            breaker held is open or half-open, a new name raises
            :class:`~workbench.errors.CapacityError`.
        failures, reset_s, successes, clock: Settings of each breaker (see :class:`Breaker`),
            when there is no ``factory``.
        factory: Builds the breaker for a name (for example
            ``lambda name: SlidingWindowBreaker(name, window="time")``); it must return a new
            breaker with that name. ``None``: a :class:`Breaker` from the settings above.
    """

    @overload
    def __init__(
        self: BreakerSet[Breaker],
        *,
        failures: int = ...,
        reset_s: float = ...,
        successes: int = ...,
        max_breakers: int = ...,
        clock: Callable[[], float] = ...,
        factory: None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: BreakerSet[AnyBreaker],
        *,
        failures: int = ...,
        reset_s: float = ...,
        successes: int = ...,
        max_breakers: int = ...,
        clock: Callable[[], float] = ...,
        factory: Callable[[str], AnyBreaker],
    ) -> None: ...

    def __init__(
        self,
        *,
        failures: int = 3,
        reset_s: float = 30.0,
        successes: int = 2,
        max_breakers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        factory: Callable[[str], AnyBreaker] | None = None,
    ) -> None:
        _check_settings("*", failures, reset_s, successes)
        if factory is not None and not callable(factory):
            raise InputError(
                f"factory must be None or a callable taking a breaker name, got {factory!r}",
                details={"field": "factory"},
            )
        self.failures, self.reset_s, self.successes = failures, reset_s, successes
        self.clock = clock
        self.max_breakers = int(max_breakers)
        self.factory = factory
        self._breakers: OrderedDict[str, AnyBreaker] = OrderedDict()
        self._lock = threading.Lock()

    def _build(self, name: str) -> AnyBreaker:
        if self.factory is None:
            return cast(
                AnyBreaker,
                Breaker(
                    name,
                    failures=self.failures,
                    reset_s=self.reset_s,
                    successes=self.successes,
                    clock=self.clock,
                ),
            )
        b = self.factory(name)
        if not isinstance(b, Breaker | SlidingWindowBreaker) or b.name != name:
            raise InputError(
                f"factory: must return a Breaker or SlidingWindowBreaker named {name!r}, got {b!r}",
                details={"field": "factory"},
            )
        return b

    def get(self, name: str) -> AnyBreaker:
        with self._lock:
            b = self._breakers.get(name)
            if b is not None:
                self._breakers.move_to_end(name)
                return b
            if len(self._breakers) >= self.max_breakers:
                idle = next((k for k, v in self._breakers.items() if v.state == CLOSED), None)
                if idle is None:
                    raise CapacityError(
                        f"{len(self._breakers)} circuit breakers are open or half-open "
                        f"(max_breakers={self.max_breakers})",
                        details={"field": "max_breakers"},
                    )
                del self._breakers[idle]
                _STATE.remove(idle)
            b = self._build(name)
            self._breakers[name] = b
            return b

    def states(self) -> dict[str, str]:
        with self._lock:  # get() reorders under the lock; copy under it too
            held = list(self._breakers.items())
        return {name: b.state for name, b in held}

    def worst(self) -> str:
        """``OPEN`` if any breaker is open, else ``HALF_OPEN`` if any is, else ``CLOSED``."""
        return max(self.states().values(), key=_SEVERITY.__getitem__, default=CLOSED)

    def clear(self) -> None:
        with self._lock:
            for name in self._breakers:
                _STATE.remove(name)
            self._breakers.clear()


class TimeLimiter:
    """Per-call time limits for synchronous calls, with at most ``max_concurrent`` at once.

    Each limited call runs on its own daemon thread and holds one of ``max_concurrent`` slots
    until it really returns, so calls that hang keep their slots: the number of stuck threads
    is bounded, and once every slot is stuck new calls time out waiting for one (which a
    breaker counts, as it should). Daemon threads never hold up interpreter exit, which a
    ``ThreadPoolExecutor`` (joined at exit) would do for a call that never returns.
    """

    def __init__(self, max_concurrent: int = 8) -> None:
        if max_concurrent < 1:
            raise InputError(
                f"max_concurrent: must be >= 1, got {max_concurrent}",
                details={"field": "max_concurrent"},
            )
        self.max_concurrent = int(max_concurrent)
        self._slots = threading.BoundedSemaphore(self.max_concurrent)

    def call(self, fn: Callable[..., T], timeout_s: float | None, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, waiting at most ``timeout_s`` seconds for it (``None``: no
        limit; it then runs in the caller's thread).

        Raises:
            WaitTimeout: no result within ``timeout_s`` (waiting for a free slot counts). The
                call itself goes on in the background until it returns.
            Exception: whatever ``fn`` raised.
        """
        if timeout_s is None:
            return fn(*args, **kwargs)
        name = getattr(fn, "__name__", "call")
        deadline = time.monotonic() + timeout_s
        if not self._slots.acquire(timeout=timeout_s):
            raise WaitTimeout(
                f"{name}: all {self.max_concurrent} call slots are held by calls still running "
                f"after {timeout_s:g} s",
                details={"timeoutS": timeout_s},
            )
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the waiting caller
                box["error"] = exc
            finally:
                self._slots.release()
                done.set()

        threading.Thread(target=work, name=f"wb-limited-{name}", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise WaitTimeout(
                f"{name} gave no result within {timeout_s:g} s", details={"timeoutS": timeout_s}
            )
        if "error" in box:
            raise box["error"]
        return box["value"]
