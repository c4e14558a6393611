"""A BufferedWriter rides out a PostgreSQL restart: nothing lost, nothing twice, bounded.

The server is a throwaway one the test starts itself (``initdb``/``pg_ctl``, through
``runuser -u postgres --`` under root, on a free port), never the shared one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.analytics.conftest import NOW, random_log
from workbench.analytics import AnalyticsStore
from workbench.analytics.ingest import BufferedWriter, JsonlDeadLetter
from workbench.errors import CapacityError
from workbench.testing import throwaway_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BOUND = 2000


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)  # polling the writer's and the producer's progress, with a deadline


class Producer:
    """Submits batches of 100 new records without pause; a refused batch is offered again."""

    def __init__(self, writer: BufferedWriter) -> None:
        self.writer = writer
        self.accepted_ids: list[str] = []
        self.refusals = 0
        self.largest_buffer = 0
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        k = 0
        try:
            while not self.stop.is_set():
                batch = random_log(100, seed=k, prefix="pg")
                try:
                    got = self.writer.submit(batch, timeout_s=0.05)
                except CapacityError:
                    self.refusals += 1
                    continue  # back-pressure: the caller keeps the batch and offers it again
                finally:
                    self.largest_buffer = max(self.largest_buffer, self.writer.buffered)
                assert got.accepted == 100
                self.accepted_ids.extend(batch["execution_id"])
                k += 1
        except BaseException as exc:  # handed to the test thread
            self.failure = exc


def test_buffered_writer_survives_a_postgresql_restart(tmp_path: Path) -> None:
    dead = JsonlDeadLetter(tmp_path / "dead.jsonl")
    with throwaway_postgres() as server:
        store = AnalyticsStore(server.url, clock=lambda: NOW)
        writer = BufferedWriter(
            store,
            max_records=BOUND,
            flush_records=500,
            flush_interval_s=0.02,
            max_retries=1000,
            backoff_s=(0.05, 0.5),
            dead_letter=dead,
            name="pg-restart",
        )
        producer = Producer(writer)
        try:
            producer.thread.start()
            wait_for(lambda: store.count() >= 3000, 30, "ingesting before the stop")
            server.stop()
            stopped_at = len(producer.accepted_ids)
            wait_for(lambda: writer.stats().failed_attempts >= 1, 30, "a failed write")
            wait_for(lambda: producer.refusals >= 3, 30, "back-pressure while stopped")
            assert writer.buffered <= BOUND
            assert len(producer.accepted_ids) - stopped_at <= BOUND  # no growth past the bound
            server.start()
            resumed_at = len(producer.accepted_ids)
            wait_for(lambda: len(producer.accepted_ids) >= resumed_at + 3000, 60, "ingesting again")
            producer.stop.set()
            producer.thread.join(30)
            assert producer.failure is None
            stats = writer.flush(timeout_s=60)
            submitted = producer.accepted_ids
            assert store.count() == len(submitted)
            stored = store.frame(columns=["execution_id"])["execution_id"]
            assert stored.is_unique and set(stored) == set(submitted)
            assert stats.committed == len(submitted)  # each stored once (replays: duplicates)
            assert (stats.dead_lettered, dead.count()) == (0, 0)
            assert stats.failed_attempts >= 1
            assert producer.largest_buffer <= BOUND and stats.peak_buffered <= BOUND
        finally:
            producer.stop.set()
            writer.close(timeout_s=10)
            store.close()
