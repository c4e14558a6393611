"""The memory tier against a plain reference model, plus its edge cases and a thread smoke test.

The state machine drives :class:`MemoryTier` and an ``OrderedDict`` model with one injected
clock. The model states the tier's documented policy in the plainest terms: an entry costs
``len(key) + len(value) + ENTRY_OVERHEAD``; a write first drops the key's old entry, then the
expired entries among the four least recently used, then evicts least recently used entries
until the new one fits; a read of an expired entry drops it; a live read makes the key the most
recently used. After every step the tier must hold exactly what the model holds, in the same
LRU order, charging the same bytes, never more than its budget.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.cache.conftest import FakeClock
from workbench.cache import Cache
from workbench.cache.memory import ENTRY_OVERHEAD, MemoryTier
from workbench.errors import CapacityError, InputError

BUDGET = 2048
KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f", "gg", "hhh"])
# dyadic steps, so expiry instants are exact and "expires exactly now" happens often
TTLS = st.sampled_from([0.5, 1.0, 1.5, 2.0, 4.0])
STEPS = st.sampled_from([0.25, 0.5, 1.0, 2.0])
# sizes chosen evenly (st.binary favours short values, which would rarely evict): up to a few
# entries fill the budget, and the largest nearly fills it alone
SIZES = st.sampled_from([0, 1, 100, 300, 500, 700, 900, 1500, 1900])
VALUES = st.tuples(SIZES, st.integers(0, 255)).map(lambda t: bytes([t[1]]) * t[0])


def charge(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class MemoryTierMachine(RuleBasedStateMachine):
    """:class:`MemoryTier` against an ``OrderedDict`` of ``key -> (value, expires_at)``."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.tier = MemoryTier(max_bytes=BUDGET, clock=self.clock)
        # least recently used first; expires_at is None for no expiry
        self.model: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self.evictions = 0

    # -- the model's rules ---------------------------------------------------------------------

    def _live(self, key: str) -> bool:
        expires = self.model[key][1]
        return expires is None or expires > self.clock()

    def _model_bytes(self) -> int:
        return sum(charge(k, v) for k, (v, _) in self.model.items())

    def _model_live(self) -> list[str]:
        return [k for k in self.model if self._live(k)]

    # -- rules -----------------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, ttl=st.none() | TTLS)
    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.tier.set(key, value, ttl)
        self.model.pop(key, None)
        for k in list(self.model)[:4]:  # the sweep
            if not self._live(k):
                del self.model[k]
                event("set swept an expired entry")
        evicted = []
        while self._model_bytes() + charge(key, value) > BUDGET:
            lru, _ = self.model.popitem(last=False)
            evicted.append(lru)
        self.evictions += len(evicted)
        if evicted:
            event("set evicted live entries")
        self.model[key] = (value, None if ttl is None else self.clock() + ttl)
        for k in evicted:  # the evicted keys are exactly the model's least recently used
            assert self.tier.peek(k) is None
            assert k not in self.tier

    @rule(key=KEYS, extra=st.integers(min_value=1, max_value=200))
    def set_too_big(self, key: str, extra: int) -> None:
        value = b"x" * (BUDGET - charge(key, b"") + extra)
        before = list(self.tier.live_keys()), self.tier.bytes_used
        with pytest.raises(CapacityError) as exc:
            self.tier.set(key, value)
        assert (exc.value.details or {}).get("field") == "value"
        assert (list(self.tier.live_keys()), self.tier.bytes_used) == before

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        got = self.tier.get(key)
        if key not in self.model:
            assert got is None
        elif self._live(key):
            assert got == self.model[key][0]
            self.model.move_to_end(key)
        else:
            assert got is None
            del self.model[key]
            event("get of an expired entry")

    @rule(key=KEYS)
    def peek_and_ttl(self, key: str) -> None:
        live = key in self.model and self._live(key)
        assert self.tier.peek(key) == (self.model[key][0] if live else None)
        assert (key in self.tier) is live
        ttl = self.tier.ttl(key)
        if live and self.model[key][1] is not None:
            assert ttl == self.model[key][1] - self.clock()  # type: ignore[operator]
        else:
            assert ttl is None

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        existed = key in self.model and self._live(key)
        if key in self.model and not existed:
            event("delete of an expired entry")
        assert self.tier.delete(key) is existed
        self.model.pop(key, None)

    @rule(key=KEYS, ttl=st.none() | TTLS)
    def expire(self, key: str, ttl: float | None) -> None:
        live = key in self.model and self._live(key)
        assert self.tier.expire(key, ttl) is live
        if live:
            value = self.model[key][0]
            # a new expiry keeps the key's place in the LRU order
            self.model[key] = (value, None if ttl is None else self.clock() + ttl)

    @rule(seconds=STEPS)
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def clear(self) -> None:
        assert self.tier.clear() == len(self.model)
        self.model.clear()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def byte_budget_is_never_exceeded(self) -> None:
        assert self.tier.bytes_used <= self.tier.max_bytes

    @invariant()
    def bytes_are_the_sum_of_charged_sizes(self) -> None:
        assert self.tier.bytes_used == self._model_bytes()
        assert len(self.tier) == len(self.model)

    @invariant()
    def same_live_entries_in_the_same_lru_order(self) -> None:
        assert list(self.tier.live_keys()) == self._model_live()

    @invariant()
    def evictions_are_counted(self) -> None:
        assert self.tier.evictions == self.evictions


MemoryTierMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None, derandomize=True
)
TestMemoryTier = MemoryTierMachine.TestCase


# -- unit tests ------------------------------------------------------------------------------------


def test_an_entry_larger_than_the_budget_is_refused_and_nothing_is_evicted() -> None:
    tier = MemoryTier(max_bytes=4096, clock=FakeClock())
    for i in range(10):
        tier.set(f"k{i}", b"v" * 200)
    before = (list(tier.live_keys()), tier.bytes_used, tier.evictions)
    too_big = b"x" * (4096 - charge("k0", b"") + 1)
    with pytest.raises(CapacityError) as exc:
        tier.set("k0", too_big)
    assert "4096" in str(exc.value) and "memory_bytes" in str(exc.value)
    assert exc.value.details["field"] == "value"
    assert (list(tier.live_keys()), tier.bytes_used, tier.evictions) == before
    assert tier.get("k0") == b"v" * 200  # the old value of the key is kept too
    exactly = b"x" * (4096 - charge("big", b""))
    tier.set("big", exactly)  # one byte less fits, by evicting everything else
    assert list(tier.live_keys()) == ["big"]
    assert tier.bytes_used == 4096


def test_budget_and_ttl_are_validated() -> None:
    for bad in (0, 1023, 2048.0, "4096", None):
        with pytest.raises(InputError) as exc:
            MemoryTier(max_bytes=bad)  # type: ignore[arg-type]
        assert exc.value.details["field"] == "max_bytes"
    tier = MemoryTier(max_bytes=4096, clock=FakeClock())
    for ttl in (0, -1.0):
        with pytest.raises(InputError) as exc:
            tier.set("k", b"v", ttl)
        assert exc.value.details["field"] == "ttl"
    assert len(tier) == 0 and tier.bytes_used == 0


def test_an_overwrite_replaces_the_old_expiry() -> None:
    clock = FakeClock()
    tier = MemoryTier(max_bytes=4096, clock=clock)
    tier.set("k", b"old", 1.0)
    tier.set("k", b"new")
    clock.advance(5.0)
    assert tier.get("k") == b"new"  # the first write's timer must not delete the second
    tier.set("k", b"short", 1.0)
    clock.advance(1.0)
    assert tier.get("k") is None
    assert tier.expirations == 1


def test_an_expired_entry_is_neither_live_nor_reported_deleted() -> None:
    clock = FakeClock()
    tier = MemoryTier(max_bytes=4096, clock=clock)
    tier.set("k", b"v", 1.0)
    clock.advance(1.0)
    assert "k" not in tier and tier.peek("k") is None and tier.ttl("k") is None
    assert tier.expire("k", 10.0) is False
    assert tier.delete("k") is False
    assert len(tier) == 0 and tier.bytes_used == 0


def test_expired_entries_free_their_budget_on_the_next_writes() -> None:
    clock = FakeClock()
    tier = MemoryTier(max_bytes=4096, clock=clock)
    for i in range(8):
        tier.set(f"k{i}", b"v" * 100, 1.0)
    tier.set("fresh", b"f")
    clock.advance(2.0)
    for i in range(3):
        tier.set(f"n{i}", b"n")
    assert len(tier) == 4 and tier.evictions == 0 and tier.expirations == 8
    assert tier.bytes_used == charge("fresh", b"f") + 3 * charge("n0", b"n")


class _ReorderedOnIteration(OrderedDict):  # type: ignore[type-arg]
    """A dict that a lock-free reader reorders (``move_to_end``, as ``MemoryTier.get`` does)
    right after an iterator over it is made: the interleaving two bytecodes apart that broke
    a write during a Redis outage with ``RuntimeError: OrderedDict mutated during iteration``."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        it = super().__iter__()
        if len(self) > 1:
            self.move_to_end(next(super().__iter__()))
        return it


def test_a_reader_reordering_during_a_writes_sweep_does_not_fail_the_write() -> None:
    clock = FakeClock()
    tier = MemoryTier(max_bytes=4096, clock=clock)
    for i in range(4):
        tier.set(f"k{i}", b"v", 1.0)
    tier._data = _ReorderedOnIteration(tier._data)
    tier.set("new", b"n")  # raised RuntimeError before
    assert tier.get("new") == b"n" and len(tier) == 5
    held = dict(tier._data)
    assert tier.bytes_used == sum(entry[3] for entry in held.values())


def test_threads_keep_the_byte_count_exact() -> None:
    """Eight threads writing, reading, expiring and deleting over a small budget: afterwards
    the byte count equals the sum of what the tier holds and never exceeded the budget."""
    clock = FakeClock()
    tier = MemoryTier(max_bytes=8192, clock=clock)
    errors: list[BaseException] = []
    over_budget: list[int] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(3000):
                key = f"k{rng.randrange(40)}"
                op = rng.random()
                if op < 0.5:
                    tier.set(key, bytes(rng.randrange(400)), rng.choice([None, 0.5, 2.0]))
                elif op < 0.8:
                    tier.get(key)
                elif op < 0.9:
                    tier.delete(key)
                elif op < 0.95:
                    tier.expire(key, 1.0)
                else:
                    clock.advance(0.1)
                used = tier.bytes_used
                if used > tier.max_bytes:
                    over_budget.append(used)
        except BaseException as exc:  # reported below, with the thread's seed
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert over_budget == []
    held: dict[str, Any] = dict(tier._data)
    assert tier.bytes_used == sum(entry[3] for entry in held.values())
    assert all(entry[3] == charge(k, entry[0]) for k, entry in held.items())


def test_memory_cache_incr_is_atomic_across_threads() -> None:
    cache = Cache(url=None, namespace="incr")
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(2000):
            cache.incr("n")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert cache.get("n") == 8000
