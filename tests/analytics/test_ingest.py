"""BufferedWriter against real embedded stores.

The failing store is a real one: a second SQLite connection holds the write lock
(``BEGIN IMMEDIATE``), so the writer's transactions fail after the store's busy timeout until
the lock is released, as they would behind another writing process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.analytics.conftest import NOW, random_log
from workbench.analytics import AnalyticsStore
from workbench.analytics.ingest import (
    BufferedWriter,
    DeadLetterItem,
    JsonlDeadLetter,
    WriterConfig,
    jsonable_records,
)
from workbench.analytics.records import validate
from workbench.errors import CapacityError, ConfigError, ConflictError, StorageFormatError
from workbench.metrics import REGISTRY


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)  # polling a background thread's progress, with a deadline


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[AnalyticsStore]:
    store = AnalyticsStore(f"duckdb:///{tmp_path / 'a.duckdb'}", clock=lambda: NOW)
    yield store
    store.close()


class SqliteLock:
    """A second connection that holds (or releases) the write lock of a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def hold(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.con.execute("ROLLBACK")


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[AnalyticsStore, SqliteLock]]:
    path = tmp_path / "a.db"
    store = AnalyticsStore(f"sqlite:///{path}", clock=lambda: NOW, busy_timeout_s=0.05)
    lock = SqliteLock(path)
    lock.hold()
    yield store, lock
    if lock.con.in_transaction:
        lock.release()
    lock.con.close()
    store.close()


def test_flushes_by_size_and_leaves_the_rest_until_flush(
    duck: AnalyticsStore, tmp_path: Path
) -> None:
    writer = BufferedWriter(
        duck, max_records=1000, flush_records=100, flush_interval_s=60.0, name="size"
    )
    try:
        got = writer.submit(random_log(250, seed=1))
        assert (got.accepted, got.rejected) == (250, [])
        wait_for(lambda: writer.buffered <= 50)
        assert writer.buffered == 50  # two full batches went; 50 wait for the 60 s interval
        assert duck.count() == 200
        stats = writer.flush(timeout_s=10)
        assert duck.count() == 250
        assert (stats.committed, stats.buffered, stats.dead_lettered) == (250, 0, 0)
    finally:
        writer.close()


def test_flushes_a_partial_batch_once_the_interval_has_passed(duck: AnalyticsStore) -> None:
    writer = BufferedWriter(duck, flush_records=10_000, flush_interval_s=0.3, name="time")
    try:
        start = time.monotonic()
        writer.submit(random_log(5, seed=2))
        wait_for(lambda: duck.count() == 5)
        assert time.monotonic() - start >= 0.3
    finally:
        writer.close()


def test_submit_returns_rejections_at_once_and_buffers_only_valid_records(
    duck: AnalyticsStore,
) -> None:
    records = random_log(6, seed=3).to_dict("records")
    records[1]["latency_ms"] = float("nan")
    records[4]["task_type"] = "no spaces allowed"
    records.append(dict(records[0]))  # a duplicate id in the batch
    with BufferedWriter(duck, name="validation") as writer:
        got = writer.submit(records)
        assert got.accepted == 4
        assert [(r.index, r.field) for r in got.rejected] == [
            (1, "latency_ms"),
            (4, "task_type"),
            (6, "execution_id"),
        ]
        writer.flush(timeout_s=10)
        assert writer.stats().rejected == 3
    assert sorted(duck.frame(columns=["execution_id"])["execution_id"]) == sorted(
        records[i]["execution_id"] for i in (0, 2, 3, 5)
    )


def test_back_pressure_while_the_store_is_locked_then_everything_once(
    locked_sqlite: tuple[AnalyticsStore, SqliteLock],
) -> None:
    store, lock = locked_sqlite
    log = random_log(400, seed=4)
    writer = BufferedWriter(
        store,
        max_records=300,
        flush_records=100,
        flush_interval_s=0.02,
        max_retries=10_000,
        backoff_s=(0.01, 0.05),
        name="pressure",
    )
    try:
        for k in range(3):
            writer.submit(log.iloc[100 * k : 100 * (k + 1)], timeout_s=0)
        wait_for(lambda: writer.stats().failed_attempts >= 3)
        start = time.monotonic()
        with pytest.raises(CapacityError, match="max_records=300") as info:
            writer.submit(log.iloc[300:], timeout_s=0.2)
        assert time.monotonic() - start >= 0.2
        assert info.value.retry_after_s is not None
        assert writer.buffered == 300
        assert store.count() == 0
        lock.release()
        writer.submit(log.iloc[300:], timeout_s=10)  # room comes back once writes succeed
        writer.submit(log.iloc[:50], timeout_s=10)  # a replay
        stats = writer.flush(timeout_s=20)
        assert store.count() == 400
        assert (stats.committed, stats.duplicates, stats.dead_lettered) == (400, 50, 0)
        assert stats.peak_buffered == 300
    finally:
        writer.close()


def _dead_letter_total() -> float:
    return (
        REGISTRY.get_sample_value(
            "workbench_analytics_dead_letter_records_total", {"source": "writer"}
        )
        or 0.0
    )


def test_dead_letter_after_max_retries_then_replay(
    locked_sqlite: tuple[AnalyticsStore, SqliteLock], tmp_path: Path
) -> None:
    store, lock = locked_sqlite
    dead = JsonlDeadLetter(tmp_path / "dead.jsonl")
    log = random_log(150, seed=5)
    before = _dead_letter_total()
    writer = BufferedWriter(
        store,
        flush_records=100,
        max_retries=2,
        backoff_s=(0.01, 0.02),
        dead_letter=dead,
        name="dead",
    )
    try:
        writer.submit(log)
        stats = writer.flush(timeout_s=20)
    finally:
        writer.close()
    assert (stats.committed, stats.dead_lettered, stats.failed_attempts) == (0, 150, 6)
    assert _dead_letter_total() - before == 150
    items = list(dead.items())
    assert len(items) == 150
    assert {i["source"] for i in items} == {"writer"}
    assert all("not committed after 3 attempts" in i["reason"] for i in items)
    lock.release()
    replay = store.ingest(list(dead.records()))
    assert (replay.accepted, replay.rejected) == (150, [])
    stored = store.frame().set_index("execution_id").sort_index()
    expected = validate(log).frame.set_index("execution_id").sort_index()
    for column in ("timestamp", "latency_ms", "parameter_hash", "success", "prompt_tokens"):
        assert stored[column].tolist() == expected[column].tolist()


def test_backoff_is_exponential_with_jitter_and_capped(
    locked_sqlite: tuple[AnalyticsStore, SqliteLock], tmp_path: Path
) -> None:
    store, _ = locked_sqlite
    delays: list[float] = []
    writer = BufferedWriter(
        store,
        max_retries=6,
        backoff_s=(0.1, 0.8),
        sleep=delays.append,
        seed=7,
        dead_letter=JsonlDeadLetter(tmp_path / "dead.jsonl"),
        name="backoff",
    )
    with writer:
        writer.submit(random_log(3, seed=6))
        writer.flush(timeout_s=20)
    caps = [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]
    assert len(delays) == len(caps)
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule


def test_records_the_store_refuses_later_go_to_the_dead_letter(tmp_path: Path) -> None:
    store = AnalyticsStore(f"duckdb:///{tmp_path / 'a.duckdb'}", clock=lambda: NOW, max_models=1)
    dead = JsonlDeadLetter(tmp_path / "dead.jsonl")
    log = random_log(40, seed=8)  # two models; the store admits one
    try:
        with BufferedWriter(store, dead_letter=dead, name="refused") as writer:
            assert writer.submit(log).accepted == 40
            stats = writer.flush(timeout_s=10)
        first_model = log["model"].iloc[0]
        kept = int((log["model"] == first_model).sum())
        assert store.count() == kept
        assert (stats.committed, stats.dead_lettered) == (kept, 40 - kept)
        items = list(dead.items())
        assert {i["record"]["model"] for i in items} == {
            m for m in log["model"] if m != first_model
        }
        assert all(i["reason"].startswith("the store refused model") for i in items)
    finally:
        store.close()


def test_close_drains_and_then_refuses(duck: AnalyticsStore) -> None:
    writer = BufferedWriter(duck, flush_interval_s=60.0, name="close")
    writer.submit(random_log(30, seed=9))
    stats = writer.close()
    assert duck.count() == 30 and stats.committed == 30
    with pytest.raises(ConflictError, match="closed"):
        writer.submit(random_log(1, seed=10))
    assert writer.close().committed == 30  # idempotent


def test_close_with_a_timeout_dead_letters_what_is_left(
    locked_sqlite: tuple[AnalyticsStore, SqliteLock], tmp_path: Path
) -> None:
    store, _ = locked_sqlite
    dead = JsonlDeadLetter(tmp_path / "dead.jsonl")
    writer = BufferedWriter(
        store, flush_records=10, max_retries=10_000, backoff_s=(0.05, 0.1), dead_letter=dead
    )
    writer.submit(random_log(35, seed=11))
    start = time.monotonic()
    stats = writer.close(timeout_s=0.5)
    assert time.monotonic() - start < 5
    assert (stats.committed, stats.dead_lettered, stats.buffered) == (0, 35, 0)
    assert dead.count() == 35


def test_threads_submitting_at_once_lose_nothing_and_stay_in_bound(duck: AnalyticsStore) -> None:
    writer = BufferedWriter(duck, max_records=200, flush_records=64, flush_interval_s=0.01)
    peak: list[int] = []

    def produce(k: int) -> None:
        for b in range(10):
            writer.submit(random_log(50, seed=100 + 10 * k + b, prefix=f"t{k}"), timeout_s=30)
            peak.append(writer.buffered)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = writer.close(timeout_s=30)
    assert duck.count() == 2000
    assert (stats.submitted, stats.committed, stats.duplicates) == (2000, 2000, 0)
    assert max(peak) <= 200 and stats.peak_buffered <= 200


def test_batches_that_can_never_fit_and_bad_configs_are_refused(duck: AnalyticsStore) -> None:
    with BufferedWriter(duck, max_records=10, flush_records=5) as writer:
        with pytest.raises(CapacityError, match="can never fit"):
            writer.submit(random_log(11, seed=12))
        assert writer.buffered == 0
    for bad in (
        {"flush_records": 0},
        {"max_records": 10, "flush_records": 11},
        {"flush_interval_s": 0.0},
        {"max_retries": -1},
        {"backoff_s": (1.0, 0.5)},
        {"name": ""},
    ):
        with pytest.raises(ConfigError):
            WriterConfig(**bad)  # type: ignore[arg-type]


def test_jsonl_dead_letter_round_trip_and_version_check(tmp_path: Path) -> None:
    dead = JsonlDeadLetter(tmp_path / "sub" / "dead.jsonl", clock=lambda: 0.0)
    rows = jsonable_records(validate(random_log(2, seed=13)).frame)
    dead.write([DeadLetterItem("writer", "why", rows[0]), DeadLetterItem("stream", "raw", "x")])
    items = list(dead.items())
    assert items[0]["at"] == "1970-01-01T00:00:00.000000Z"
    assert [i["source"] for i in items] == ["writer", "stream"]
    assert list(dead.records()) == [rows[0]]
    with dead.path.open("a") as f:
        f.write(json.dumps({"v": 99, "record": {}}) + "\n")
    with pytest.raises(StorageFormatError, match="version 99"):
        list(dead.items())
