"""Redis Streams ingestion against the real Redis (a unique key prefix, deleted afterwards).

The reliability test kills a consumer process with SIGKILL between the store's commit and
its XACK (the worst moment: the records are stored but still pending), then lets a second
consumer claim the dead one's entries: the store must hold every record exactly once.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.analytics.conftest import NOW
from workbench.analytics import AnalyticsStore
from workbench.analytics.streams import (
    ConsumeReport,
    StreamConsumer,
    StreamDeadLetter,
    decode_entry,
    encode_entry,
    publish,
)
from workbench.errors import InputError, StorageFormatError, WaitTimeout
from workbench.redis_adapter import RedisAdapter

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
_SETS = [
    {"temperature": 0.1, "max_tokens": 256},
    {"temperature": 0.7, "max_tokens": 512},
    {"temperature": 1.0, "top_p": 0.9, "stop": ["\n\n"]},
]


def make_records(n: int, prefix: str, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` valid records with ids ``<prefix>-<i>`` (plain dicts: cheap to build)."""
    rng = random.Random(seed)
    return [
        {
            "execution_id": f"{prefix}-{i}",
            "timestamp": 1_700_000_000 + i,
            "task_type": ("code", "chat", "summarize")[i % 3],
            "model": ("gpt-4o", "llama3:8b")[i % 2],
            "parameters": _SETS[i % 3],
            "latency_ms": 100.0 + rng.random() * 900,
            "success": rng.random() < 0.8,
            "quality": rng.random() if i % 4 else None,
            "prompt_tokens": i % 1000,
        }
        for i in range(n)
    ]


def _child(spec_json: str) -> None:
    """A consumer or a direct ingester in its own process (see the tests below)."""
    spec = json.loads(spec_json)
    store = AnalyticsStore(spec["store_url"], clock=lambda: NOW, **spec.get("store_options", {}))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    if spec["kind"] == "direct":
        total = ConsumeReport()
        for prefix, start, end in spec["chunks"]:
            report = store.ingest(make_records(end, prefix)[start:])
            total += ConsumeReport(accepted=report.accepted, duplicates=report.duplicates)
        print(json.dumps(total.to_dict()), flush=True)
        return
    adapter = RedisAdapter(spec["redis_url"], prefix=spec["prefix_key"])
    commits = 0

    def on_commit(report: Any) -> None:
        nonlocal commits
        commits += 1
        if commits == spec.get("freeze_after_commits", -1):
            print(f"frozen {report.accepted}", flush=True)
            threading.Event().wait()  # stored, not acknowledged: wait for SIGKILL here

    consumer = StreamConsumer(
        adapter,
        store,
        stream=spec["stream"],
        group="g",
        consumer=spec["consumer"],
        batch=spec["batch"],
        block_ms=200,
        on_commit=on_commit,
    )
    total = ConsumeReport()
    while True:
        got = consumer.run_once()
        total += got
        if got.entries == 0:
            break
    print(json.dumps(total.to_dict()), flush=True)


def _spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    code = "import sys; from tests.analytics.test_streams import _child; _child(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(spec)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """The child's next stdout line, or fail with its stderr."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            proc.kill()
            raise AssertionError(f"child printed nothing within {timeout_s} s")
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"child exited with {proc.returncode}:\n{err[-3000:]}")
    return line.strip()


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


@pytest.mark.slow
def test_consumer_killed_mid_batch_loses_nothing_and_stores_nothing_twice(
    redis_adapter: RedisAdapter, redis_url: str, tmp_path: Path
) -> None:
    n, batch = 100_000, 100  # entries of 10 records: 1,000 records per read
    records = make_records(n, "k")
    ids = publish(redis_adapter, "exec", records, per_entry=10)
    assert len(ids) == n // 10 and redis_adapter.xlen(redis_adapter.key("exec")) == n // 10
    store_url = f"duckdb:///{tmp_path / 'a.duckdb'}"
    child = _spawn(
        {
            "kind": "consumer",
            "store_url": store_url,
            "redis_url": redis_url,
            "prefix_key": redis_adapter.prefix,
            "stream": "exec",
            "consumer": "first",
            "batch": batch,
            "freeze_after_commits": 30,
        }
    )
    try:
        assert _line(child) == "ready"
        _go(child)
        assert _line(child) == "frozen 1000"  # its 30th batch is committed, not acknowledged
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    key = redis_adapter.key("exec")
    pending = redis_adapter.xpending(key, "g")
    assert pending["consumers"] == {"first": batch}

    store = AnalyticsStore(store_url, clock=lambda: NOW)
    try:
        assert store.count() == 30_000  # some, not all
        second = StreamConsumer(
            redis_adapter,
            store,
            stream="exec",
            group="g",
            consumer="second",
            batch=batch,
            block_ms=50,
            claim_idle_ms=200,
        )
        total = ConsumeReport()
        deadline = time.monotonic() + 60
        while store.count() < n or second.pending()["pending"]:
            assert time.monotonic() < deadline, f"not drained in time: {total}"
            total += second.run_once()
        assert store.count() == n
        stored = store.frame(columns=["execution_id"])["execution_id"]
        assert stored.is_unique and set(stored) == {r["execution_id"] for r in records}
        assert total.claimed == batch  # the dead consumer's entries, taken over
        assert (total.accepted, total.duplicates) == (70_000, 1000)  # the frozen batch again
        assert redis_adapter.xpending(key, "g")["pending"] == 0
    finally:
        store.close()


def test_malformed_entries_and_refused_records_are_dead_lettered_once(
    redis_adapter: RedisAdapter, tmp_path: Path
) -> None:
    key = redis_adapter.key("exec")
    good = make_records(3, "m")
    hostile = dict(good[0], execution_id="x'); DROP TABLE executions; --")
    bad_latency = dict(good[1], execution_id="m-bad", latency_ms=float("nan"))
    bad_task = dict(good[2], execution_id="m-task", task_type="'; DELETE FROM executions; --")
    publish(redis_adapter, "exec", [*good, hostile, bad_latency, bad_task])
    redis_adapter.xadd(key, {"v": "2", "codec": "json", "records": "[]"})
    redis_adapter.xadd(key, {"v": "1", "codec": "json", "records": b"\xff not json"})
    redis_adapter.xadd(key, {"v": "1", "codec": "json", "records": b'{"a": 1}'})
    store = AnalyticsStore(f"duckdb:///{tmp_path / 'a.duckdb'}", clock=lambda: NOW)
    try:
        consumer = StreamConsumer(
            redis_adapter, store, stream="exec", group="g", consumer="c", block_ms=10
        )
        got = consumer.run_once()
        assert (got.entries, got.malformed, got.accepted, got.rejected) == (9, 3, 4, 2)
        assert consumer.pending()["pending"] == 0
        assert consumer.run_once() == ConsumeReport()  # nothing is retried
        stored = set(store.frame(columns=["execution_id"])["execution_id"])
        assert stored == {"m-0", "m-1", "m-2", hostile["execution_id"]}  # verbatim
        dead = StreamDeadLetter(redis_adapter, "exec:dead-letter").items()
        reasons = sorted(d["reason"] for d in dead)
        assert len(dead) == 5
        assert sum("version" in r for r in reasons) == 1
        assert sum("not JSON" in r for r in reasons) == 1
        assert sum("array of objects" in r for r in reasons) == 1
        assert sum("latency_ms" in r for r in reasons) == 1
        assert sum("task_type" in r for r in reasons) == 1
        refused = [json.loads(d["record"]) for d in dead if "store refused" in d["reason"]]
        assert {r["execution_id"] for r in refused} == {"m-bad", "m-task"}
    finally:
        store.close()


def test_an_unavailable_store_leaves_the_batch_pending_for_the_next_call(
    redis_adapter: RedisAdapter, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    store = AnalyticsStore(f"sqlite:///{path}", clock=lambda: NOW, busy_timeout_s=0.05)
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        publish(redis_adapter, "exec", make_records(50, "u"), per_entry=5)
        consumer = StreamConsumer(
            redis_adapter, store, stream="exec", group="g", consumer="c", block_ms=10
        )
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
        with pytest.raises(WaitTimeout):  # the lock is held past the busy timeout
            consumer.run_once()
        assert consumer.pending()["consumers"] == {"c": 10}
        lock.execute("ROLLBACK")
        got = consumer.run_once()  # its own pending entries first
        assert (got.entries, got.accepted, got.claimed) == (10, 50, 0)
        assert consumer.pending()["pending"] == 0 and store.count() == 50
    finally:
        lock.close()
        store.close()


def test_publish_bounds_the_stream_and_refuses_what_it_cannot_encode(
    redis_adapter: RedisAdapter,
) -> None:
    publish(redis_adapter, "bounded", make_records(3000, "b"), maxlen=500)
    length = redis_adapter.xlen(redis_adapter.key("bounded"))
    assert 500 <= length < 3000  # MAXLEN ~ keeps at least the bound, trims whole nodes
    with pytest.raises(InputError, match="record 1 cannot be published"):
        publish(redis_adapter, "bad", [make_records(1, "x")[0], {"execution_id": object()}])
    assert redis_adapter.xlen(redis_adapter.key("bad")) == 0
    with pytest.raises(InputError, match="per_entry"):
        publish(redis_adapter, "bad", [], per_entry=0)
    fields = encode_entry(make_records(2, "e"))
    assert decode_entry(fields) == json.loads(json.dumps(make_records(2, "e")))
    with pytest.raises(StorageFormatError, match="version"):
        decode_entry({**fields, "v": b"9"})


@pytest.mark.postgres
@pytest.mark.slow
def test_four_processes_into_one_postgresql_lose_nothing_and_duplicate_nothing(
    redis_adapter: RedisAdapter, redis_url: str, postgres_url: str, postgres_schema: str
) -> None:
    n_stream, n_direct = 10_000, 10_000
    streamed = make_records(n_stream, "s")
    publish(redis_adapter, "exec", streamed, per_entry=10)
    options = {"schema": postgres_schema}
    parent = AnalyticsStore(postgres_url, clock=lambda: NOW, **options)  # migrates once
    # Two consumers of one group read the stream while two direct ingesters write every "d"
    # record (in opposite orders), the first also the first 2,500 streamed records.
    chunks = [["d", i, i + 1000] for i in range(0, n_direct, 1000)]
    specs: list[dict[str, Any]] = [
        {
            "kind": "consumer",
            "consumer": f"c{k}",
            "batch": 50,
            "stream": "exec",
            "prefix_key": redis_adapter.prefix,
            "redis_url": redis_url,
        }
        for k in range(2)
    ]
    specs += [
        {"kind": "direct", "chunks": [*chunks, ["s", 0, 2500]]},
        {"kind": "direct", "chunks": chunks[::-1]},
    ]
    children = []
    try:
        for spec in specs:
            children.append(_spawn({**spec, "store_url": postgres_url, "store_options": options}))
        for child in children:
            assert _line(child) == "ready"
        for child in children:
            _go(child)
        results = [json.loads(_line(child, timeout_s=120)) for child in children]
        for child in children:
            assert child.wait(30) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    try:
        assert parent.count() == n_stream + n_direct
        ids = parent.frame(columns=["execution_id"])["execution_id"]
        assert ids.is_unique
        assert sum(r["accepted"] for r in results) == n_stream + n_direct  # each once
        assert sum(r["duplicates"] for r in results) == n_direct + 2500  # every overlap
        assert results[0]["entries"] + results[1]["entries"] == n_stream // 10
        assert redis_adapter.xpending(redis_adapter.key("exec"), "g")["pending"] == 0
    finally:
        parent.close()


def test_run_consumes_until_stopped_and_claims_from_a_consumer_that_went_away(
    redis_adapter: RedisAdapter, tmp_path: Path
) -> None:
    store = AnalyticsStore(f"duckdb:///{tmp_path / 'a.duckdb'}", clock=lambda: NOW)
    try:
        publish(redis_adapter, "exec", make_records(30, "r"), per_entry=3)
        key = redis_adapter.key("exec")
        redis_adapter.xgroup_create(key, "g")
        taken = redis_adapter.xreadgroup(key, "g", "gone", count=4)  # read, never acked
        assert len(taken) == 4
        consumer = StreamConsumer(
            redis_adapter,
            store,
            stream="exec",
            group="g",
            consumer="live",
            block_ms=20,
            claim_idle_ms=100,
        )
        stop = threading.Event()
        result: list[ConsumeReport] = []
        worker = threading.Thread(target=lambda: result.append(consumer.run(stop)))
        worker.start()
        deadline = time.monotonic() + 20
        while store.count() < 30 or consumer.pending()["pending"]:
            assert time.monotonic() < deadline, "not drained in time"
            time.sleep(0.02)  # polling the consumer thread's progress, with a deadline
        stop.set()
        worker.join(10)
        assert not worker.is_alive()
        (total,) = result
        assert (total.entries, total.accepted, total.claimed) == (10, 30, 4)
    finally:
        store.close()


def test_adapter_stream_calls_report_groups_claims_and_trimmed_entries(
    redis_adapter: RedisAdapter,
) -> None:
    key = redis_adapter.key("raw")
    assert redis_adapter.xgroup_create(key, "g") is True  # MKSTREAM: the stream is created
    assert redis_adapter.xgroup_create(key, "g") is False  # BUSYGROUP is not an error
    ids = redis_adapter.xadd_many(key, [{"n": str(i)} for i in range(5)], chunk=2)
    assert [f for _, f in redis_adapter.xrange(key)] == [{"n": str(i).encode()} for i in range(5)]
    got = redis_adapter.xreadgroup(key, "g", "a", count=3)
    assert [e for e, _ in got] == ids[:3]
    assert redis_adapter.xpending(key, "g") == {
        "pending": 3,
        "min": ids[0],
        "max": ids[2],
        "consumers": {"a": 3},
    }
    assert redis_adapter.xack(key, "g", ids[0]) == 1
    assert redis_adapter.xtrim(key, 0, approximate=False) == 5
    assert redis_adapter.xlen(key) == 0
    assert redis_adapter.xreadgroup(key, "g", "a", count=10, entry_id="0") == [
        (ids[1], {}),
        (ids[2], {}),
    ]  # pending but trimmed: no fields
    cursor, claimed, deleted = redis_adapter.xautoclaim(key, "g", "b", min_idle_ms=0)
    assert (cursor, claimed, deleted) == ("0-0", [], ids[1:3])
    assert redis_adapter.xpending(key, "g")["pending"] == 0
