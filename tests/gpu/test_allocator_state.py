"""A hypothesis state machine of VramAllocator.

Rules reserve (without waiting), queue waiting requests on threads, cancel them, release
reservations (twice, to check the second is refused) and use/return resident models.
Invariants after every step: the ledger equals the sum of live reservations and never
exceeds a budget (no over-commit); grants from the queue come out in priority order with no
request skipped while it fits (priorities respected); nothing is released twice; at the end
every reservation is released and the ledger is empty (no leak).
"""

from __future__ import annotations

import threading
import time

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from workbench.errors import CapacityError, WaitTimeout
from workbench.gpu import Reservation, ReservationRequest, SimulatedBackend, VramAllocator
from workbench.gpu.reservation import WaitCancelled

BUDGETS = [100, 60]


class _Queued:
    def __init__(self, req: ReservationRequest, seq: int) -> None:
        self.req = req
        self.seq = seq
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.outcome: str | None = None

    def _run(self) -> None:
        try:
            self.req.acquire()
            self.outcome = "granted"
        except WaitCancelled:
            self.outcome = "cancelled"

    @property
    def granted(self) -> Reservation | None:
        w = self.req._waiter
        return None if w is None else w.result

    @property
    def pending(self) -> bool:
        w = self.req._waiter
        return w is not None and w.result is None and not w.cancelled


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        backend = SimulatedBackend(devices=2, memory_gib=1)
        self.alloc = VramAllocator(backend, budget_bytes=BUDGETS)
        self.held: list[Reservation] = []
        self.models: list[Reservation] = []  # one entry per use of a resident model
        self.queued: list[_Queued] = []
        self.releases = 0
        self.seq = 0

    # -- helpers ---------------------------------------------------------------------

    def _free_and_evictable(self) -> tuple[list[int], list[int]]:
        free = [self.alloc.free(d) for d in range(2)]
        evictable = [0, 0]
        for r in self.alloc.resident_models():
            if r.refs == 0:
                evictable[r.device] += r.nbytes
        return free, evictable

    def _fits(self, nbytes: int, device: int | None) -> bool:
        free, evictable = self._free_and_evictable()
        devices = range(2) if device is None else (device,)
        return any(free[d] + evictable[d] >= nbytes for d in devices)

    def _pending(self) -> list[_Queued]:
        live = [q for q in self.queued if q.pending]
        return sorted(live, key=lambda q: (-q.req.priority, q.seq))

    def _check_grants(self, before: list[_Queued]) -> None:
        """Queued grants are a prefix of the priority order, and the prefix is maximal."""
        flags = [q.granted is not None for q in before]
        if True in flags:
            first_waiting = flags.index(False) if False in flags else len(flags)
            assert all(flags[:first_waiting]) and not any(flags[first_waiting:]), (
                "a queued request was granted before a higher-priority one"
            )
        for q in before:
            if q.granted is not None:
                self.held.append(q.granted)
        still = [q for q in before if q.granted is None and q.pending]
        if still:
            head = still[0]
            assert not self._fits(head.req.nbytes, head.req.device), (
                "the head of the queue fits but was not granted"
            )

    # -- rules -------------------------------------------------------------------------

    @rule(
        nbytes=st.integers(1, 110),
        priority=st.integers(0, 3),
        device=st.none() | st.integers(0, 1),
    )
    def reserve_now(self, nbytes: int, priority: int, device: int | None) -> None:
        limit = max(BUDGETS) if device is None else BUDGETS[device]
        if nbytes > limit:
            try:
                self.alloc.reserve("x", nbytes, priority, device=device)
            except CapacityError:
                return
            raise AssertionError("oversize request was not refused")
        blocked = any(q.req.priority >= priority for q in self._pending())
        fits = self._fits(nbytes, device)
        free_before, _ = self._free_and_evictable()
        try:
            r = self.alloc.acquire("x", nbytes, priority, 0, device=device)
        except WaitTimeout:
            assert blocked or not fits, "refused although it fit and nobody outranked it"
            return
        assert not blocked, "granted past a waiting request of equal or higher priority"
        if device is None and any(f >= nbytes for f in free_before):
            best = min(f for f in free_before if f >= nbytes)
            assert free_before[r.device] == best, "not best fit"
        self.held.append(r)

    @precondition(lambda self: len(self._pending()) < 3)
    @rule(
        nbytes=st.integers(1, 100),
        priority=st.integers(0, 3),
        device=st.none() | st.integers(0, 1),
    )
    def queue(self, nbytes: int, priority: int, device: int | None) -> None:
        if device is not None and nbytes > BUDGETS[device]:
            return
        before = self._pending()
        req = self.alloc.reserve("q", nbytes, priority, None, device=device)
        self.seq += 1
        q = _Queued(req, self.seq)
        q.thread.start()
        deadline = time.monotonic() + 5
        while req._waiter is None and q.outcome is None:
            assert time.monotonic() < deadline
            time.sleep(0.0002)
        if req._waiter is None:  # granted at once
            while req.reservation is None:
                time.sleep(0.0002)
            assert not any(p.req.priority >= priority for p in before)
            self.held.append(req.reservation)
            q.thread.join()
            return
        self.queued.append(q)

    @precondition(lambda self: any(q.pending for q in self.queued))
    @rule(i=st.integers(min_value=0))
    def cancel(self, i: int) -> None:
        pending = self._pending()
        victim = pending[i % len(pending)]
        before = [q for q in pending if q is not victim]
        assert victim.req.cancel()
        self._check_grants(before)

    @precondition(lambda self: self.held)
    @rule(i=st.integers(min_value=0))
    def release(self, i: int) -> None:
        r = self.held.pop(i % len(self.held))
        before = self._pending()
        assert r.release() is True
        self.releases += 1
        assert r.release() is False
        self._check_grants(before)

    @rule(name=st.sampled_from(["m1", "m2", "m3"]), size=st.sampled_from([10, 30, 50]))
    def use_model(self, name: str, size: int) -> None:
        if self._pending():
            return  # a model request would queue behind them; covered by the unit tests
        try:
            r, _ = self.alloc.acquire_model(name, size, keep_alive_s=60, timeout=0)
        except WaitTimeout:
            return
        self.models.append(r)

    @precondition(lambda self: self.models)
    @rule(i=st.integers(min_value=0))
    def return_model(self, i: int) -> None:
        r = self.models.pop(i % len(self.models))
        before = self._pending()
        self.alloc.release_model(r)
        self._check_grants(before)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def ledger_matches_and_never_overcommits(self) -> None:
        expected = [0, 0]
        for r in self.held:
            assert not r.released
            expected[r.device] += r.nbytes
        for r in {id(r): r for r in self.alloc.resident_models()}.values():
            expected[r.device] += r.nbytes
        for d in range(2):
            assert self.alloc.reserved(d) == expected[d]
            assert 0 <= self.alloc.reserved(d) <= BUDGETS[d]

    def teardown(self) -> None:
        for q in self.queued:
            q.req.cancel()
        for q in self.queued:
            q.thread.join(5)
            if q.granted is not None and not q.granted.released and q.granted not in self.held:
                self.held.append(q.granted)
        for r in self.models:
            self.alloc.release_model(r)
        for r in self.held:
            if r.release():
                self.releases += 1
        for m in {r.model for r in self.alloc.resident_models()}:
            self.alloc.unload_model(m or "")
        assert self.alloc.reserved(0) == self.alloc.reserved(1) == 0, "leaked reservations"
        assert self.alloc.reservations() == []
        assert self.alloc.waiting() == 0


AllocatorMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAllocatorStateMachine = AllocatorMachine.TestCase
