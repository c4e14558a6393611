"""Studies driven by several processes at once through Redis and PostgreSQL (real servers).

The four-process tests run four OS processes (a spawn-context pool whose tasks meet at a
barrier, so they are necessarily four distinct processes) that each open the study through
the store and ask and tell concurrently. They check that every trial each process told is in
the study exactly once with its outcome, that no two processes were handed the same trial or
the same point, and that a suggestion accounts for the other processes' pending trials.
Barriers and events order the phases; nothing waits for a fixed time.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from workbench.errors import ConflictError, NotFoundError
from workbench.optimize import Optimizer, Real, shared
from workbench.optimize.storage import PostgresStudyStore, RedisStudyStore

PROCESSES = 4
#: Bound on every wait at a barrier or event: a broken synchronisation fails, never hangs.
WAIT_S = 120.0


def objective(params: dict[str, Any]) -> float:
    return (params["x0"] - 0.3) ** 2 + (params["x1"] - 0.6) ** 2


def new_study(name: str, strategy: str, *, completed: int = 0) -> Optimizer:
    opt = Optimizer(
        {"x0": Real(0, 1), "x1": Real(0, 1)}, {"y": "minimize"}, strategy=strategy, name=name
    )
    for i in range(completed):
        params = {"x0": (i + 0.5) / completed, "x1": ((3 * i) % completed + 0.5) / completed}
        opt.tell(params, {"y": objective(params)})
    return opt


def open_store(spec: tuple[str, str, str]) -> Any:
    """A store from a picklable ``(kind, url, prefix or schema)``, as each process opens it."""
    kind, url, where = spec
    if kind == "redis":
        from workbench.redis_adapter import RedisAdapter

        return RedisStudyStore(RedisAdapter(url, prefix=where))
    from workbench.postgres_adapter import PostgresAdapter

    return PostgresStudyStore(PostgresAdapter(url, schema=where, statement_timeout_s=30))


@pytest.fixture(params=["redis", "postgres"])
def spec(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    if request.param == "redis":
        adapter = request.getfixturevalue("redis_adapter")
        yield ("redis", adapter.url, adapter.prefix)
    else:
        yield ("postgres", request.getfixturevalue("postgres_url"), "")  # schema below
        return


@pytest.fixture
def store_spec(request: pytest.FixtureRequest, spec: tuple[str, str, str]) -> tuple[str, ...]:
    if spec[0] == "postgres":
        return (spec[0], spec[1], request.getfixturevalue("postgres_schema"))
    return spec


@pytest.fixture
def store(store_spec: tuple[str, str, str]) -> Iterator[Any]:
    s = open_store(store_spec)
    yield s
    if isinstance(s, PostgresStudyStore):
        s.adapter.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[concurrent.futures.ProcessPoolExecutor, Any]]:
    """Four spawned processes (imports paid once per module) and a manager for barriers."""
    ctx = multiprocessing.get_context("spawn")
    with (
        ctx.Manager() as manager,
        concurrent.futures.ProcessPoolExecutor(PROCESSES, mp_context=ctx) as executor,
    ):
        yield executor, manager


def worker(
    spec: tuple[str, str, str], name: str, rounds: int, barrier: Any, time_limit_s: float | None
) -> dict[str, Any]:
    """One process: ask once; when all have, ask again; tell both; then ``rounds`` free
    ask/tell pairs. Returns what it was handed and told, with attempts per change."""
    store = open_store(spec)
    asked: list[dict[str, Any]] = []
    told: dict[int, float] = {}
    tell_attempts: list[int] = []

    def do_ask() -> Any:
        committed = shared.ask(store, name, 1, time_limit_s=time_limit_s, retries=64)
        trial = committed.value.trials[0]
        asked.append(
            {
                "id": trial.id,
                "params": trial.params,
                "pending_seen": list(committed.value.pending_seen),
                "attempts": committed.attempts,
                "phase": committed.value.info.get("phase"),
            }
        )
        return trial

    def do_tell(trial: Any) -> None:
        y = objective(trial.params)
        committed = shared.tell(store, name, trial.id, {"y": y}, retries=64)
        assert committed.value.status == "completed"
        told[trial.id] = y
        tell_attempts.append(committed.attempts)

    barrier.wait(WAIT_S)  # all four processes hold a task: they are four distinct processes
    first = do_ask()
    barrier.wait(WAIT_S)  # every process has a pending trial now
    second = do_ask()
    barrier.wait(WAIT_S)
    do_tell(first)
    do_tell(second)
    for _ in range(rounds):
        do_tell(do_ask())
    return {"pid": os.getpid(), "asked": asked, "told": told, "tell_attempts": tell_attempts}


def run_four(
    pool: tuple[concurrent.futures.ProcessPoolExecutor, Any],
    spec: tuple[str, ...],
    name: str,
    rounds: int,
    time_limit_s: float | None = None,
) -> list[dict[str, Any]]:
    executor, manager = pool
    barrier = manager.Barrier(PROCESSES)
    futures = [
        executor.submit(worker, spec, name, rounds, barrier, time_limit_s) for _ in range(PROCESSES)
    ]
    return [f.result(timeout=WAIT_S * 3) for f in futures]


def check_study(
    store: Any, name: str, results: list[dict[str, Any]], rounds: int, initial: int = 0
) -> None:
    """The invariants of the module docstring; ``initial`` trials were told before."""
    assert len({r["pid"] for r in results}) == PROCESSES
    final = store.load(name)
    by_id = {t.id: t for t in final.trials}
    asked = [a for r in results for a in r["asked"]]
    ids = [a["id"] for a in asked]
    # No trial lost or given twice: each asked id is unique and the study holds exactly them.
    assert len(ids) == len(set(ids)) == PROCESSES * (rounds + 2)
    assert sorted(ids) == list(range(initial, len(final.trials)))
    assert sorted(by_id) == list(range(len(final.trials)))
    # No two processes handed the same point.
    points = {tuple(sorted(a["params"].items())) for a in asked}
    assert len(points) == len(asked)
    for a in asked:
        assert by_id[a["id"]].params == a["params"]
    # Every tell is in the study, once, with its outcome; nothing is left pending.
    for r in results:
        for tid, y in r["told"].items():
            assert by_id[tid].status == "completed" and by_id[tid].outcomes == {"y": y}
    assert sum(len(r["told"]) for r in results) == len(final.trials) - initial
    assert final.pending == []
    # Each second ask accounted for every process's first (still pending) trial.
    firsts = {r["asked"][0]["id"] for r in results}
    for r in results:
        assert firsts <= set(r["asked"][1]["pending_seen"])


def conflict_rates(results: list[dict[str, Any]]) -> tuple[float, float]:
    asks = [a["attempts"] for r in results for a in r["asked"]]
    tells = [n for r in results for n in r["tell_attempts"]]
    return (sum(asks) - len(asks)) / len(asks), (sum(tells) - len(tells)) / len(tells)


def test_four_processes_ask_and_tell_one_study(pool, store, store_spec) -> None:
    rounds = 6
    store.create(new_study("four", "sobol"))
    results = run_four(pool, store_spec, "four", rounds)
    check_study(store, "four", results, rounds)
    ask_rate, tell_rate = conflict_rates(results)
    print(
        f"\n{store_spec[0]} sobol: {PROCESSES} processes x {rounds + 2} asks; conflicts per "
        f"committed ask {ask_rate:.3f}, per committed tell {tell_rate:.3f}"
    )


def test_four_processes_with_the_default_gp_strategy(pool, store, store_spec) -> None:
    """The model's fit and acquisition run outside any lock; each suggestion is a GP one."""
    store.create(new_study("gp", "default", completed=6))
    results = run_four(pool, store_spec, "gp", 0, time_limit_s=5.0)
    check_study(store, "gp", results, 0, initial=6)
    assert {a["phase"] for r in results for a in r["asked"]} == {"model"}
    ask_rate, _ = conflict_rates(results)
    print(f"\n{store_spec[0]} default GP: conflicts per committed ask {ask_rate:.3f}")


# ----- one process: slow changes, conflicts, bounded retries ------------------------------------


def test_a_slow_change_of_one_study_never_blocks_another(store) -> None:
    """While an ask of A is held inside its change (as a long GP fit would be), B is asked
    and told, and a tell of A commits; A's ask then loses its commit and is redone on the
    state that holds the tell."""
    store.create(new_study("A", "sobol"))
    store.create(new_study("B", "sobol"))
    shared.tell(store, "A", {"x0": 0.5, "x1": 0.5}, {"y": 0.1})
    inside, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow_ask(opt: Optimizer) -> list[Any]:
        seen.append(len(opt.trials))
        if len(seen) == 1:
            inside.set()
            assert release.wait(WAIT_S)
        return opt.ask_batch(1)

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        held = executor.submit(shared.update_study, store, "A", slow_ask, operation="ask")
        assert inside.wait(WAIT_S)
        asked_b = shared.ask(store, "B", 1)
        told_b = shared.tell(store, "B", asked_b.value.trials[0], {"y": 1.0})
        assert (asked_b.attempts, told_b.attempts) == (1, 1)
        told_a = shared.tell(store, "A", {"x0": 0.2, "x1": 0.2}, {"y": 0.2})
        assert told_a.attempts == 1 and not held.done()
        release.set()
        committed = held.result(timeout=WAIT_S)
    assert committed.attempts == 2 and seen == [1, 2]
    assert [t.id for t in committed.value] == [2]
    final = store.load("A")
    assert [t.status for t in final.trials] == ["completed", "completed", "pending"]


def test_retries_are_bounded_and_a_lost_change_writes_nothing(store) -> None:
    store.create(new_study("busy", "sobol"))
    calls = []

    def change_raced_by_a_writer(opt: Optimizer) -> None:
        calls.append(1)
        rival = store.load("busy")
        rival.tell({"x0": 0.1, "x1": len(calls) / 10}, {"y": 0.0})
        store.save(rival)  # another process writes first, every time
        opt.ask_batch(1)

    with pytest.raises(ConflictError, match="3 update attempts") as info:
        shared.update_study(store, "busy", change_raced_by_a_writer, retries=2)
    assert info.value.details == {"study": "busy", "attempts": 3}
    assert len(calls) == 3
    final = store.load("busy")
    assert [t.status for t in final.trials] == ["completed"] * 3  # no pending ask committed
    with pytest.raises(NotFoundError):
        shared.ask(store, "nope", 1)


def test_a_locked_postgres_row_does_not_block_another_study(
    postgres_url: str, postgres_schema: str
) -> None:
    """Row granularity: a transaction holding study A's row lock leaves B writable."""
    from workbench.postgres_adapter import PostgresAdapter

    adapter = PostgresAdapter(postgres_url, schema=postgres_schema, statement_timeout_s=5)
    try:
        s = PostgresStudyStore(adapter)
        s.create(new_study("A", "sobol"))
        s.create(new_study("B", "sobol"))
        with adapter.transaction() as conn:
            conn.execute("SELECT 1 FROM optimize_studies WHERE name = 'A' FOR UPDATE")
            committed = shared.ask(s, "B", 1)  # would raise WaitTimeout if it queued
            assert committed.attempts == 1 and committed.version == 2
    finally:
        adapter.close()


# ----- the service on a shared store ------------------------------------------------------------


def _services(store_spec: tuple[str, ...]) -> tuple[Any, Any]:
    from workbench.config import Settings
    from workbench.optimize.service import OptimizeConfig, OptimizeService

    kind, url, where = store_spec
    if kind == "redis":
        settings = Settings(redis_url=url, redis_prefix=where)
        config = OptimizeConfig(store="redis")
    else:
        settings = Settings(postgres_url=url)
        config = OptimizeConfig(store="postgres", postgres_schema=where)
    return OptimizeService(config, settings), OptimizeService(config, settings)


def test_two_services_share_studies_atomically(store, store_spec) -> None:
    """Two services (two hosts, say) on one store: one create wins, each sees the other's
    pending and told trials, and neither overwrites the other."""
    import asyncio

    one, two = _services(store_spec)
    assert one.shared and two.shared

    async def scenario() -> None:
        await one.create("svc", lambda name: new_study(name, "sobol"))
        with pytest.raises(ConflictError, match="already exists"):
            await two.create("svc", lambda name: new_study(name, "sobol"))
        (first,), _ = await one.ask("svc", 1)
        (second,), _ = await two.ask("svc", 1)
        assert (first.id, second.id) == (0, 1) and first.params != second.params
        assert [t.id for t in (await one.study("svc")).pending] == [0, 1]
        await two.tell("svc", first.id, {"y": 0.25})
        await one.tell("svc", second.id, {"y": 0.5})
        assert (await one.study("svc")).best().trial_id == 0
        assert [t.status for t in (await two.study("svc")).trials] == ["completed"] * 2
        with pytest.raises(NotFoundError, match="trial 7"):
            await one.tell("svc", 7, {"y": 0.0})
        await two.delete("svc")
        with pytest.raises(NotFoundError, match="create it"):
            await one.ask("svc", 1)

    try:
        asyncio.run(scenario())
    finally:
        if isinstance(one.store, PostgresStudyStore):
            one.store.adapter.close()  # both services share this pool
    assert not store.exists("svc")


def test_shared_store_settings_are_validated(postgres_url: str, postgres_schema: str) -> None:
    from workbench.config import Settings
    from workbench.errors import ConfigError
    from workbench.optimize.service import OptimizeConfig, OptimizeService

    for bad in ({"postgres_schema": "Bad-Name"}, {"postgres_schema": ""}, {"update_retries": -1}):
        with pytest.raises(ConfigError) as info:
            OptimizeConfig(store="postgres", **bad)  # type: ignore[arg-type]
        assert info.value.details["key"] == f"optimize.{next(iter(bad))}"
    assert OptimizeConfig(store="postgres").postgres_schema == "workbench_optimize"
    section = {"store": "postgres", "update_retries": "3", "postgres_schema": postgres_schema}
    settings = Settings(postgres_url=postgres_url, sections={"optimize": section})
    config = OptimizeConfig.from_settings(settings)
    assert (config.store, config.update_retries) == ("postgres", 3)
    service = OptimizeService(config, settings)
    assert service.shared and service.store.adapter.schema == postgres_schema
    assert service.store.adapter.schema_version("optimize") == 1  # migrated on first use
    service.store.adapter.close()
    assert not OptimizeService(OptimizeConfig(store="memory")).shared
