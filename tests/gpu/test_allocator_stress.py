"""16 threads hammering one allocator: no over-commit, no leak, every grant released once."""

from __future__ import annotations

import random
import threading

from workbench.errors import WaitTimeout
from workbench.gpu import SimulatedBackend, VramAllocator
from workbench.gpu.types import GIB

THREADS = 16
ROUNDS = 400


def test_sixteen_threads_never_overcommit_or_leak() -> None:
    alloc = VramAllocator(SimulatedBackend(devices=2, memory_gib=24), 20 / 24)
    budgets = [alloc.budget(0), alloc.budget(1)]
    violations: list[str] = []
    granted = [0] * THREADS
    timeouts = [0] * THREADS
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def check() -> None:
        for d in range(2):
            if not 0 <= alloc.reserved(d) <= budgets[d]:
                violations.append(f"device {d}: {alloc.reserved(d)}")

    def worker(k: int) -> None:
        rng = random.Random(k)
        try:
            start.wait()
            for _ in range(ROUNDS):
                size = rng.choice([GIB // 2, GIB, 3 * GIB, 7 * GIB, 12 * GIB])
                prio = rng.randint(0, 3)
                try:
                    if rng.random() < 0.5:
                        with alloc.reserve(f"t{k}", size, prio, timeout=0.5) as r:
                            check()
                            assert not r.released
                    else:
                        model = rng.choice(["a", "b", "c"])
                        r, _ = alloc.acquire_model(model, size, keep_alive_s=0.01, timeout=0.5)
                        check()
                        alloc.release_model(r)
                    granted[k] += 1
                except WaitTimeout:
                    timeouts[k] += 1
                if rng.random() < 0.05:
                    alloc.collect()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert not violations, violations[:5]
    assert sum(granted) > THREADS * ROUNDS * 0.9, (sum(granted), sum(timeouts))
    for m in ("a", "b", "c"):
        alloc.unload_model(m)
    assert alloc.reserved(0) == alloc.reserved(1) == 0
    assert alloc.reservations() == [] and alloc.waiting() == 0
    stats = alloc.stats
    assert stats["granted"] == stats["released"]
