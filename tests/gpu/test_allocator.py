"""VramAllocator: placement, refusals, waits, priorities, residency, cleanup, reconciliation."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from workbench.errors import (
    CapacityError,
    ConfigError,
    InputError,
    NotFoundError,
    WaitTimeout,
    WorkbenchError,
)
from workbench.gpu import (
    AllocatorEvent,
    ManualClock,
    SimulatedBackend,
    VramAllocator,
    WaitCancelled,
    set_torch_memory_fraction,
)
from workbench.gpu.types import GIB, DeviceReading, ProcessUsage


def _alloc(devices: int = 2, **kw: Any) -> VramAllocator:
    return VramAllocator(SimulatedBackend(devices=devices, memory_gib=24), 20 / 24, **kw)


def _wait_until(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_contract_reserve_context_manager() -> None:
    alloc = _alloc()
    assert alloc.budget(0) == 20 * GIB
    with alloc.reserve("worker", 6 * GIB) as r:
        assert r.nbytes == 6 * GIB and r.device in (0, 1)
        assert alloc.reserved(r.device) == 6 * GIB
    assert alloc.reserved(0) == alloc.reserved(1) == 0
    assert r.released


def test_best_fit_keeps_the_big_hole_open() -> None:
    alloc = _alloc()
    a = alloc.acquire("a", 12 * GIB)  # -> device 0 (both empty: lowest index)
    b = alloc.acquire("b", 4 * GIB)  # fits both; device 0 has the smaller hole
    assert (a.device, b.device) == (0, 0)
    c = alloc.acquire("c", 19 * GIB)  # only device 1 can hold it now
    assert c.device == 1
    for r in (a, b, c):
        r.release()


def test_named_device() -> None:
    alloc = _alloc()
    with alloc.reserve("x", GIB, device=1) as r:
        assert r.device == 1
    with pytest.raises(InputError, match="out of range"):
        alloc.reserve("x", GIB, device=5)


def test_oversize_is_refused_at_once() -> None:
    alloc = _alloc()
    with pytest.raises(CapacityError, match="can never fit"):
        alloc.reserve("huge", 21 * GIB)
    assert alloc.stats["refused"] == 1


@pytest.mark.parametrize("nbytes", [0, -5])
def test_non_positive_size_is_an_input_error(nbytes: int) -> None:
    with pytest.raises(InputError, match="nbytes"):
        _alloc().reserve("x", nbytes)


def test_timeout_error_is_both_workbench_and_builtin_timeout() -> None:
    alloc = _alloc(devices=1)
    held = alloc.acquire("a", 15 * GIB)
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout) as info, alloc.reserve("b", 10 * GIB, timeout=0.05):
        pass
    assert time.monotonic() - t0 >= 0.04
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, WorkbenchError)
    with pytest.raises(TimeoutError):
        alloc.acquire("c", 10 * GIB, timeout=0)
    assert alloc.waiting() == 0
    held.release()
    assert alloc.reserved(0) == 0


def test_waiter_is_granted_on_release() -> None:
    alloc = _alloc(devices=1)
    held = alloc.acquire("a", 15 * GIB)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(alloc.acquire("b", 10 * GIB, timeout=5)))
    t.start()
    _wait_until(lambda: alloc.waiting() == 1)
    held.release()
    t.join(5)
    assert got and got[0].nbytes == 10 * GIB
    got[0].release()


def test_priorities_grant_higher_first_and_no_barging() -> None:
    alloc = _alloc(devices=1)
    held = alloc.acquire("blocker", 20 * GIB)
    grants: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker(name: str, prio: int) -> None:
        r = alloc.acquire(name, 8 * GIB, priority=prio, timeout=10)
        with lock:  # ids are handed out in grant order; wake-up order is up to the OS
            grants.append((r.id, name))
        time.sleep(0.01)
        r.release()

    threads = []
    for name, prio in [("low", 0), ("high", 9), ("mid", 5), ("mid2", 5)]:
        t = threading.Thread(target=worker, args=(name, prio))
        t.start()
        threads.append(t)
        _wait_until(lambda: alloc.waiting() == len(threads))
    # A new low-priority request that would fit must not jump the queue.
    with pytest.raises(WaitTimeout):
        alloc.acquire("barger", GIB, priority=0, timeout=0)
    held.release()
    for t in threads:
        t.join(10)
    # high and mid fit together (16 of 20 GiB); mid2 then low as memory frees.
    assert [name for _, name in sorted(grants)] == ["high", "mid", "mid2", "low"]


def test_higher_priority_request_is_granted_past_lower_waiters() -> None:
    alloc = _alloc(devices=1)
    held = alloc.acquire("a", 15 * GIB)
    req = alloc.reserve("big", 10 * GIB, priority=0, timeout=5)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            req.acquire()
        except WaitCancelled as exc:
            outcome.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    _wait_until(lambda: alloc.waiting() == 1)
    with alloc.reserve("urgent", 2 * GIB, priority=1, timeout=0) as r:
        assert r.nbytes == 2 * GIB
    req.cancel()
    t.join()
    assert outcome
    held.release()


def test_timed_out_head_unblocks_those_behind() -> None:
    alloc = _alloc(devices=1)
    held = alloc.acquire("a", 12 * GIB)
    errors: list[BaseException] = []

    def head() -> None:
        try:
            alloc.acquire("head", 10 * GIB, priority=5, timeout=0.1)
        except WaitTimeout as exc:
            errors.append(exc)

    got: list[Any] = []
    t1 = threading.Thread(target=head)
    t1.start()
    _wait_until(lambda: alloc.waiting() == 1)
    t2 = threading.Thread(target=lambda: got.append(alloc.acquire("small", 4 * GIB, timeout=5)))
    t2.start()
    t1.join(5)
    t2.join(5)
    assert errors and got, "the small request should be granted once the head gave up"
    got[0].release()
    held.release()


def test_cancel_a_waiting_request() -> None:
    alloc = _alloc(devices=1)
    held = alloc.acquire("a", 20 * GIB)
    req = alloc.reserve("b", GIB, timeout=10)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            with req:
                pass
        except WaitCancelled as exc:
            raised.append(exc)

    t = threading.Thread(target=run)
    t.start()
    _wait_until(lambda: alloc.waiting() == 1)
    assert req.cancel()
    t.join(5)
    assert raised and alloc.waiting() == 0
    assert not req.cancel()
    held.release()
    assert alloc.reserved(0) == 0


def test_release_exactly_once() -> None:
    alloc = _alloc()
    r = alloc.acquire("a", GIB)
    assert r.release() is True
    assert r.release() is False
    assert alloc.reserved(r.device) == 0
    with pytest.raises(NotFoundError):
        alloc.release(r.id)
    r2 = alloc.acquire("b", GIB)
    assert alloc.get(r2.id) is r2
    assert alloc.release(r2.id) is r2
    assert alloc.stats["released"] == 2


def test_async_reserve_waits_without_blocking_the_loop() -> None:
    alloc = _alloc(devices=1)

    async def main() -> list[str]:
        log: list[str] = []
        held = alloc.acquire("a", 15 * GIB)

        async def waiter() -> None:
            async with alloc.reserve("b", 10 * GIB, timeout=5) as r:
                log.append(f"granted {r.nbytes // GIB}")

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.01)
        log.append("loop free")
        held.release()
        await task
        with pytest.raises(WaitTimeout):
            held2 = alloc.acquire("c", 15 * GIB)
            try:
                async with alloc.reserve("d", 10 * GIB, timeout=0.02):
                    pass
            finally:
                held2.release()
        return log

    assert asyncio.run(main()) == ["loop free", "granted 10"]
    assert alloc.reserved(0) == 0 and alloc.waiting() == 0


def test_async_task_cancellation_leaves_nothing_behind() -> None:
    alloc = _alloc(devices=1)

    async def main() -> None:
        held = alloc.acquire("a", 20 * GIB)
        task = asyncio.create_task(alloc.reserve("b", GIB).acquire_async())
        await asyncio.sleep(0.01)
        assert alloc.waiting() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert alloc.waiting() == 0
        held.release()

    asyncio.run(main())
    assert alloc.reserved(0) == 0


def test_residency_shares_keeps_alive_and_expires() -> None:
    clock = ManualClock()
    alloc = _alloc(devices=1, clock=clock)
    r1, fresh1 = alloc.acquire_model("sd3b", 6 * GIB, keep_alive_s=60)
    r2, fresh2 = alloc.acquire_model("sd3b", 6 * GIB, keep_alive_s=60)
    assert fresh1 and not fresh2 and r1 is r2 and r1.refs == 2
    assert alloc.reserved(0) == 6 * GIB
    alloc.release_model(r1)
    alloc.release_model(r2)
    assert alloc.reserved(0) == 6 * GIB  # idle but resident
    clock.advance(30)
    r3, fresh3 = alloc.acquire_model("sd3b", 6 * GIB, keep_alive_s=60)
    assert r3 is r1 and not fresh3  # a hit: no reload
    alloc.release_model(r3)
    clock.advance(59)
    assert alloc.collect() == []
    clock.advance(2)
    events = alloc.collect()
    assert [e.kind for e in events] == ["expired"] and alloc.reserved(0) == 0


def test_idle_models_are_evicted_least_recently_used_first() -> None:
    clock = ManualClock()
    alloc = _alloc(devices=1, clock=clock)
    evicted: list[str] = []
    alloc.add_listener(lambda ev: evicted.append(ev.reservation.model or ""))
    for name in ("a", "b", "c"):
        r, _ = alloc.acquire_model(name, 6 * GIB, keep_alive_s=600)
        clock.advance(1)
        alloc.release_model(r)
    r, _ = alloc.acquire_model("a", 6 * GIB)  # touch a: b is now least recently used
    alloc.release_model(r)
    big = alloc.acquire("job", 8 * GIB, timeout=0)  # 18 + 8 > 20: one model must go
    assert evicted == ["b"]
    assert alloc.stats["evicted"] == 1
    big.release()


def test_expiry_policy_evicts_shortest_keep_alive() -> None:
    clock = ManualClock()
    alloc = _alloc(devices=1, clock=clock, eviction="expiry")
    evicted: list[str] = []
    alloc.add_listener(lambda ev: evicted.append(ev.reservation.model or ""))
    ra, _ = alloc.acquire_model("long", 10 * GIB, keep_alive_s=1000)
    rb, _ = alloc.acquire_model("short", 6 * GIB, keep_alive_s=10)
    alloc.release_model(rb)  # released first: LRU would pick it too, so release long first
    clock.advance(1)
    alloc.release_model(ra)
    alloc.acquire("job", 8 * GIB, timeout=0).release()
    assert evicted == ["short"]


def test_models_in_use_are_never_evicted() -> None:
    alloc = _alloc(devices=1)
    r, _ = alloc.acquire_model("m", 15 * GIB)
    with pytest.raises(WaitTimeout):
        alloc.acquire("job", 8 * GIB, timeout=0)
    alloc.release_model(r)
    alloc.acquire("job", 8 * GIB, timeout=0).release()


def test_collect_releases_dead_owners_and_expired_leases() -> None:
    clock = ManualClock()
    alive = {100: True, 200: True}
    alloc = _alloc(clock=clock, pid_alive=lambda pid: alive[pid])
    a = alloc.acquire("w100", GIB, pid=100)
    b = alloc.acquire("w200", GIB, pid=200)
    leased = alloc.acquire("lease", GIB, lease_s=10)
    clock.advance(5)
    assert leased.renew() == 15
    alive[100] = False
    events = alloc.collect()
    assert [(e.kind, e.reservation.owner) for e in events] == [("owner_dead", "w100")]
    assert a.released and not b.released
    clock.advance(11)
    assert [e.kind for e in alloc.collect()] == ["lease_expired"]
    with pytest.raises(Exception, match="already released"):
        leased.renew()
    b.release()
    assert alloc.reserved(0) + alloc.reserved(1) == 0


def test_collect_wakes_waiters() -> None:
    clock = ManualClock()
    alloc = _alloc(devices=1, clock=clock)
    alloc.acquire("lease", 20 * GIB, lease_s=1)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(alloc.acquire("next", GIB, timeout=5)))
    t.start()
    _wait_until(lambda: alloc.waiting() == 1)
    clock.advance(2)
    alloc.collect()
    t.join(5)
    assert got


def test_offline_device_gets_no_new_reservations() -> None:
    alloc = _alloc()
    alloc.set_online(0, False)
    with alloc.reserve("x", GIB) as r:
        assert r.device == 1
    with pytest.raises(WaitTimeout):
        alloc.acquire("x", GIB, device=0, timeout=0)
    alloc.set_online(0, True)
    alloc.acquire("x", GIB, device=0, timeout=0).release()


def _reading(device: int, used: int, procs: tuple[ProcessUsage, ...] = ()) -> DeviceReading:
    return DeviceReading(
        index=device,
        timestamp=0,
        memory_total_bytes=24 * GIB,
        memory_used_bytes=used,
        memory_free_bytes=24 * GIB - used,
        processes=procs,
    )


def test_reconcile_flags_both_directions() -> None:
    alloc = _alloc()
    alloc.calibrate([_reading(0, GIB), _reading(1, 0)])  # 1 GiB of driver/display on dev 0
    a = alloc.acquire("worker-a", 4 * GIB, device=0, pid=10)
    b = alloc.acquire("worker-b", 4 * GIB, device=1, pid=20)
    procs0 = (ProcessUsage(10, 1 * GIB), ProcessUsage(30, 3 * GIB))
    report = alloc.reconcile([_reading(0, 5 * GIB, procs0), _reading(1, 4 * GIB)])
    kinds = {(f.kind, f.device, f.pid) for f in report.findings}
    assert ("reserved_unused", 0, 10) in kinds  # reserved 4, uses 1
    assert ("used_unreserved", 0, 30) in kinds  # pid 30 never reserved
    assert not any(f.device == 1 for f in report.findings)  # device 1 matches exactly
    assert report.devices[0]["baseline_bytes"] == GIB
    assert not report.ok and report.to_dict()["findings"]
    assert report.devices[0]["per_process"] is True
    leak = alloc.reconcile([_reading(0, 5 * GIB), _reading(1, 7 * GIB)])
    assert [(f.kind, f.device) for f in leak.findings] == [("used_unreserved", 1)]
    a.release()
    b.release()


def test_reconcile_in_a_container_falls_back_to_device_level() -> None:
    alloc = _alloc(devices=1)
    r = alloc.acquire("worker", 4 * GIB, pid=10)  # our namespace's pid
    host_view = (ProcessUsage(91234, 4 * GIB, visible=False),)  # the same process, host pid
    report = alloc.reconcile([_reading(0, 4 * GIB, host_view)])
    assert report.ok and report.devices[0]["per_process"] is False
    leak = alloc.reconcile([_reading(0, 6 * GIB, host_view)])
    assert [(f.kind, f.pid) for f in leak.findings] == [("used_unreserved", None)]
    r.release()


def test_set_torch_memory_fraction_uses_the_reservation_share() -> None:
    calls: list[tuple[float, int]] = []
    fake_torch = SimpleNamespace(
        cuda=SimpleNamespace(set_per_process_memory_fraction=lambda f, d: calls.append((f, d)))
    )
    alloc = _alloc()
    with alloc.reserve("w", 6 * GIB, device=1) as r:
        frac = set_torch_memory_fraction(r, torch_module=fake_torch)
        set_torch_memory_fraction(r, torch_module=fake_torch, cuda_device=0)
    assert frac == pytest.approx(6 / 24)
    assert calls == [(frac, 1), (frac, 0)]


def test_snapshot_and_events_are_json_ready() -> None:
    import json

    clock = ManualClock()
    alloc = _alloc(clock=clock)
    seen: list[AllocatorEvent] = []
    alloc.add_listener(seen.append)
    r, _ = alloc.acquire_model("clip", GIB, keep_alive_s=1)
    alloc.release_model(r)
    clock.advance(2)
    alloc.collect()
    snap = alloc.snapshot()
    json.dumps(snap)
    json.dumps([e.to_dict() for e in seen])
    assert snap["devices"][0]["budget_bytes"] == 20 * GIB and snap["stats"]["expired"] == 1


def test_bad_configuration_is_refused() -> None:
    backend = SimulatedBackend(devices=2)
    with pytest.raises(ConfigError):
        VramAllocator(backend, 1.5)
    with pytest.raises(ConfigError):
        VramAllocator(backend, budget_bytes=[GIB])
    with pytest.raises(ConfigError):
        VramAllocator(backend, eviction="random")
    alloc = VramAllocator(backend, budget_bytes=[GIB, 2 * GIB])
    assert (alloc.budget(0), alloc.budget(1)) == (GIB, 2 * GIB)


def test_resident_model_release_by_id_respects_users_and_tells_listeners() -> None:
    from workbench.errors import ConflictError

    alloc = _alloc(devices=1)
    seen: list[str] = []
    alloc.add_listener(lambda ev: seen.append(ev.kind))
    r, _ = alloc.acquire_model("m", GIB)
    with pytest.raises(ConflictError, match="in use"):
        alloc.release(r.id)
    with r:  # leaving the block is its user leaving, not the end of the residency
        pass
    assert not r.released and r.refs == 0 and alloc.reserved(0) == GIB
    alloc.release(r.id)
    assert seen == ["released"] and alloc.reserved(0) == 0


def test_collect_goes_on_past_a_pid_that_cannot_be_checked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()

    def pid_alive(pid: int) -> bool:
        if pid == 7:
            raise OverflowError("signed integer is greater than maximum")
        return pid != 200

    alloc = _alloc(clock=clock, pid_alive=pid_alive)
    bad = alloc.acquire("bad", GIB, pid=7, lease_s=30)
    dead = alloc.acquire("dead", GIB, pid=200)
    leased = alloc.acquire("lease", GIB, lease_s=1)
    clock.advance(2)
    with caplog.at_level("WARNING", logger="workbench.gpu.allocator"):
        kinds = sorted((e.kind, e.reservation.owner) for e in alloc.collect())
        for _ in range(5):
            alloc.collect()
    assert kinds == [("lease_expired", "lease"), ("owner_dead", "dead")]
    assert dead.released and leased.released and not bad.released
    failures = [r for r in caplog.records if "pid 7" in r.getMessage()]
    assert len(failures) == 1 and not any(r.exc_info for r in failures)
    clock.advance(30)  # its lease still bounds it
    assert [e.reservation.owner for e in alloc.collect()] == ["bad"]


def test_pids_outside_the_pid_range_are_refused_and_never_signalled() -> None:
    from workbench.gpu.allocator import PID_MAX, _pid_alive

    alloc = _alloc()
    for pid in (0, -1, PID_MAX + 1, 99999999999999999999):
        with pytest.raises(InputError, match="pid") as info:
            alloc.reserve("w", GIB, pid=pid)
        assert info.value.details == {"field": "pid"}
        assert _pid_alive(pid) is False
    with alloc.reserve("w", GIB, pid=PID_MAX):
        pass


def test_close_wakes_every_waiter_and_refuses_new_waits() -> None:
    alloc = _alloc(devices=1)
    alloc.acquire("holder", 20 * GIB)
    errors: list[BaseException] = []

    def wait_forever() -> None:
        try:
            alloc.acquire("waiter", GIB, timeout=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wait_forever, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    _wait_until(lambda: alloc.waiting() == 3)

    async def async_waiter() -> BaseException | None:
        try:
            await alloc.reserve("async", GIB, timeout=None).acquire_async()
        except WaitCancelled as exc:
            return exc
        return None

    async def main() -> BaseException | None:
        task = asyncio.ensure_future(async_waiter())
        while alloc.waiting() < 4:
            await asyncio.sleep(0.001)
        alloc.close()
        return await asyncio.wait_for(task, 2)

    assert isinstance(asyncio.run(main()), WaitCancelled)
    for t in threads:
        t.join(2)
        assert not t.is_alive()
    assert len(errors) == 3 and all(isinstance(e, WaitCancelled) for e in errors)
    assert alloc.waiting() == 0
    with pytest.raises(WaitCancelled, match="closed"):
        alloc.acquire("late", GIB, timeout=5)
