"""Circuit breakers and per-call time limits for calls into things that can break.

- :class:`Breaker`: ``failures`` consecutive failures open it; after ``reset_s`` one call at a
  time is let through as a probe (half-open); ``successes`` successful probes close it and a
  failed probe re-opens it. The platform's state names (``CLOSED``, ``OPEN``, ``HALF_OPEN``)
  and its defaults for agent execution (3 failures, 2 successes). A refused call raises
  :class:`BreakerOpen`, a :class:`~workbench.errors.BackendUnavailable` (HTTP 503) naming the
  breaker and when it lets a probe through.
- :class:`BreakerSet`: breakers by name, created on first use and bounded in number, with the
  worst state as one summary (what a ``/health`` route reports).
- :class:`TimeLimiter`: a per-call time limit with bounded concurrency. A synchronous call
  cannot be interrupted in Python, so a call past its limit is abandoned (its thread finishes
  in the background), counted as a failure and reported as
  :class:`~workbench.errors.WaitTimeout`.

Only exceptions count as failures: a call that returns a poor result is a result, not an
outage.

Why not pybreaker (the maintained Python breaker, considered first): it reads the wall clock
(``datetime.now``) with no way to inject one, so tests would have to sleep or reach into its
storage, and a wall-clock step would open or close breakers; and while half-open it lets every
concurrent call through, where a probe should be one call (as Akka's and resilience4j's
breakers do). The state machine is small; here it runs on an injected monotonic clock and is
checked against a reference model by a hypothesis state-machine test.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from workbench import metrics
from workbench.errors import BackendUnavailable, CapacityError, InputError, WaitTimeout

__all__ = ["Breaker", "BreakerOpen", "BreakerSet", "TimeLimiter"]

T = TypeVar("T")

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


class BreakerSet:
    """Breakers by name, created on first use with the same settings.

    Args:
        max_breakers: Most breakers held (names come from callers; the set must not grow
            without bound). Closed breakers are dropped oldest first to make room; when every
            breaker held is open or half-open, a new name raises
            :class:`~workbench.errors.CapacityError`.
        failures, reset_s, successes, clock: Settings of each breaker (see :class:`Breaker`).
    """

    def __init__(
        self,
        *,
        failures: int = 3,
        reset_s: float = 30.0,
        successes: int = 2,
        max_breakers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_settings("*", failures, reset_s, successes)
        self.failures, self.reset_s, self.successes = failures, reset_s, successes
        self.clock = clock
        self.max_breakers = int(max_breakers)
        self._breakers: OrderedDict[str, Breaker] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> Breaker:
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
            b = Breaker(
                name,
                failures=self.failures,
                reset_s=self.reset_s,
                successes=self.successes,
                clock=self.clock,
            )
            self._breakers[name] = b
            return b

    def states(self) -> dict[str, str]:
        return {name: b.state for name, b in list(self._breakers.items())}

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
