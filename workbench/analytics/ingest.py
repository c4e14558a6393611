"""In-process buffered ingestion: a bounded buffer flushed to the store by a background thread.

:class:`BufferedWriter` lets a request handler hand over records and return at once, while one
thread writes them to an :class:`~workbench.analytics.store.AnalyticsStore` in batches:

- **Validate first.** :meth:`BufferedWriter.submit` runs
  :func:`~workbench.analytics.records.validate` in the caller's thread and returns the
  rejections at once; only valid records enter the buffer, so a flush never fails on one bad
  record.
- **Flush by size or by time.** A batch of ``flush_records`` is written as soon as it is
  queued; fewer are written once the oldest has waited ``flush_interval_s``, or at once on
  :meth:`~BufferedWriter.flush` and :meth:`~BufferedWriter.close`.
- **Bounded memory, back-pressure.** The buffer holds at most ``max_records`` records, the
  batch being written included. A caller that would overflow it waits up to ``timeout_s`` for
  room, then gets a :class:`~workbench.errors.CapacityError` with ``retry_after_s``: the buffer
  never grows past its bound, however long the store is away.
- **Retries, then a dead letter.** A failed write is retried with exponential back-off and
  jitter (``backoff_s=(first, cap)``: attempt ``k`` waits ``min(cap, first * 2**k)`` times a
  uniform factor in [0.5, 1]), ``max_retries`` times. A batch still failing then goes to the
  dead letter, as do records the store refuses at write time (its cardinality bounds, which
  only the store can check). An :class:`~workbench.errors.InputError` or
  :class:`~workbench.errors.StorageFormatError` from the store is not retried: it would fail
  the same way again.

The dead letter is a JSON Lines file (:class:`JsonlDeadLetter`), not a table of the store: the
batches that reach it are mostly those the store could not take while it was away, and a
table in that same store would be away too. By default it lies next to an embedded store's
file (``analytics.duckdb`` -> ``analytics.dead-letter.jsonl``), else at
``<data dir>/analytics-dead-letter.jsonl``. Each line is one record with why it was refused::

    {"v": 1, "at": "2024-05-01T12:00:00.000000Z", "source": "writer",
     "reason": "not committed after 9 attempts: ...", "record": {"execution_id": ...}}

``record`` holds the validated record with an ISO 8601 timestamp, so
``store.ingest(list(JsonlDeadLetter(path).records()))`` replays the file (idempotently:
records that did reach the store are counted as duplicates). Anything that implements
:class:`DeadLetter` (``write(items)``) may replace it.

Every record handed to :meth:`~BufferedWriter.submit` and accepted ends in exactly one place:
the store or the dead letter; :meth:`~BufferedWriter.close` drains the buffer before it
returns, and on its timeout dead-letters what is left rather than dropping it.

Metrics (label ``writer``, the writer's ``name``): ``workbench_analytics_buffered_records``
(gauge), ``workbench_analytics_flushed_records_total`` (records the store committed or already
held), ``workbench_analytics_flush_failures_total`` (failed write attempts) and
``workbench_analytics_dead_letter_records_total`` (label ``source``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.analytics.records import Rejection, validate
from workbench.errors import (
    CapacityError,
    ConfigError,
    ConflictError,
    InputError,
    StorageFormatError,
    WaitTimeout,
)

__all__ = [
    "BufferedWriter",
    "DeadLetter",
    "DeadLetterItem",
    "JsonlDeadLetter",
    "Submitted",
    "WriterConfig",
    "WriterStats",
    "jsonable_records",
]

logger = logging.getLogger(__name__)

DEAD_LETTER_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BUFFERED = metrics.gauge(
    "workbench_analytics_buffered_records",
    "Records held by a buffered writer (queued or being written)",
    ["writer"],
)
FLUSHED = metrics.counter(
    "workbench_analytics_flushed_records_total",
    "Records a buffered writer handed to the store that it committed or already held",
    ["writer"],
)
FLUSH_FAILURES = metrics.counter(
    "workbench_analytics_flush_failures_total",
    "Failed attempts of a buffered writer to write a batch to the store",
    ["writer"],
)
DEAD_LETTERED = metrics.counter(
    "workbench_analytics_dead_letter_records_total",
    "Records sent to a dead letter instead of the store",
    ["source"],
)


# -- the dead letter ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterItem:
    """One record that did not reach the store.

    Attributes:
        source: What sent it: ``"writer"`` (:class:`BufferedWriter`) or ``"stream"``.
        reason: Why it was not stored.
        record: The record as JSON-compatible values (a dict), or the undecodable payload as
            text for a malformed stream entry.
        ref: Where it came from, when known (a stream entry id), else ``""``.
    """

    source: str
    reason: str
    record: Any
    ref: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


class DeadLetter(Protocol):
    """Where records go that cannot be stored (see :class:`JsonlDeadLetter`)."""

    def write(self, items: Sequence[DeadLetterItem]) -> None:
        """Keep ``items`` durably; raise when that is impossible."""
        ...


class JsonlDeadLetter:
    """A JSON Lines dead letter: one versioned line per record, appended and fsynced.

    Thread-safe within a process; lines are appended with ``O_APPEND`` one write per batch,
    so several processes may share a file.

    Args:
        path: The file (created with its folder on the first write).
        clock: Wall-clock seconds since the epoch for the ``at`` field.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlDeadLetter({str(self.path)!r})"

    def write(self, items: Sequence[DeadLetterItem]) -> None:
        """Append ``items`` and fsync; an ``OSError`` propagates."""
        if not items:
            return
        at = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines = []
        for item in items:
            line = {"v": DEAD_LETTER_VERSION, "at": at, **item.to_dict()}
            lines.append(json.dumps(line, ensure_ascii=False, allow_nan=False, default=str))
        data = ("\n".join(lines) + "\n").encode("utf-8", errors="backslashreplace")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

    def items(self) -> Iterator[dict[str, Any]]:
        """Every line as a dict (``v``, ``at``, ``source``, ``reason``, ``record``, ``ref``).

        Raises:
            StorageFormatError: a line is not JSON or has a version this code does not know.
        """
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError as exc:
                    raise StorageFormatError(
                        f"dead letter {self.path} line {number} is not JSON ({exc})"
                    ) from None
                if not isinstance(item, dict) or item.get("v") != DEAD_LETTER_VERSION:
                    raise StorageFormatError(
                        f"dead letter {self.path} line {number} has version "
                        f"{item.get('v') if isinstance(item, dict) else None!r}; this version "
                        f"reads {DEAD_LETTER_VERSION}"
                    )
                yield item

    def records(self) -> Iterator[dict[str, Any]]:
        """The records (the ``record`` of each line that holds a mapping), for a replay."""
        for item in self.items():
            if isinstance(item.get("record"), dict):
                yield item["record"]

    def count(self) -> int:
        """Number of lines."""
        return sum(1 for _ in self.items())


def default_dead_letter(store: Any) -> JsonlDeadLetter:
    """The dead letter next to ``store``'s file (``<stem>.dead-letter.jsonl``), or in the
    settings' data dir for a store without one (PostgreSQL)."""
    url = getattr(store, "url", None)
    if isinstance(url, str):
        for scheme in ("duckdb:///", "sqlite:///"):
            if url.startswith(scheme) and url[len(scheme) :] not in ("", ":memory:"):
                p = Path(url[len(scheme) :])
                return JsonlDeadLetter(p.with_name(p.stem + ".dead-letter.jsonl"))
    from workbench.config import load_settings

    return JsonlDeadLetter(load_settings().data_dir / "analytics-dead-letter.jsonl")


def jsonable_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Validated rows as JSON-compatible dicts that :func:`validate` accepts again.

    ``timestamp`` (int64 microseconds) becomes ISO 8601 text in UTC, NaN becomes ``None``,
    numpy scalars become Python numbers; the computed ``parameter_hash`` is kept (it is
    checked, not trusted, on the way back in).
    """
    rows: list[dict[str, Any]] = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
            elif isinstance(value, np.generic):
                row[key] = value.item()
        ts = row.get("timestamp")
        if isinstance(ts, int):
            row["timestamp"] = (_EPOCH + timedelta(microseconds=ts)).isoformat()
    return rows


# -- configuration and results -----------------------------------------------------------------


@dataclass(frozen=True)
class WriterConfig:
    """How a :class:`BufferedWriter` buffers and flushes.

    Attributes:
        max_records: Bound of the buffer (queued plus being written), records.
        flush_records: Records per write to the store (at most ``max_records``).
        flush_interval_s: Longest time a record waits in the buffer before a write starts.
        max_retries: Retries of a failed write before its batch goes to the dead letter.
        backoff_s: ``(first, cap)`` seconds of the exponential back-off between retries.
        name: The ``writer`` label of the metrics.
    """

    max_records: int = 50_000
    flush_records: int = 5_000
    flush_interval_s: float = 1.0
    max_retries: int = 8
    backoff_s: tuple[float, float] = (0.05, 5.0)
    name: str = "default"

    def __post_init__(self) -> None:
        for field_name in ("max_records", "flush_records", "max_retries"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"BufferedWriter {field_name}={value!r} must be an int")
        if self.max_records < 1:
            raise ConfigError(f"BufferedWriter max_records={self.max_records} must be >= 1")
        if not 1 <= self.flush_records <= self.max_records:
            raise ConfigError(
                f"BufferedWriter flush_records={self.flush_records} must lie in "
                f"1..max_records={self.max_records}"
            )
        if self.max_retries < 0:
            raise ConfigError(f"BufferedWriter max_retries={self.max_retries} must be >= 0")
        if not (math.isfinite(self.flush_interval_s) and self.flush_interval_s > 0):
            raise ConfigError(
                f"BufferedWriter flush_interval_s={self.flush_interval_s!r} must be a positive "
                "number of seconds"
            )
        if len(self.backoff_s) != 2:
            raise ConfigError(f"BufferedWriter backoff_s={self.backoff_s!r} must be (first, cap)")
        first, cap = self.backoff_s
        if not (0 < first <= cap and math.isfinite(cap)):
            raise ConfigError(
                f"BufferedWriter backoff_s={self.backoff_s!r} must be (first, cap) seconds with "
                "0 < first <= cap"
            )
        if not self.name or len(self.name) > 64:
            raise ConfigError(f"BufferedWriter name={self.name!r} must be 1..64 characters")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        first, cap = self.backoff_s
        return min(cap, first * 2.0 ** min(attempt, 60)) * rng.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Submitted:
    """What :meth:`BufferedWriter.submit` did with a batch.

    Attributes:
        accepted: Records that passed validation and are now buffered.
        rejected: The refused records, with their index in the batch and the reason.
    """

    accepted: int
    rejected: list[Rejection]

    def to_dict(self) -> dict[str, Any]:
        """``{"accepted", "rejected": [{"index", "field", "reason"}]}``."""
        return {"accepted": self.accepted, "rejected": [r.to_dict() for r in self.rejected]}


@dataclass(frozen=True)
class WriterStats:
    """Counters of a :class:`BufferedWriter` since it started (all in records).

    Attributes:
        buffered: Held now (queued or being written); never above ``max_records``.
        submitted: Accepted by :meth:`~BufferedWriter.submit`.
        rejected: Refused by validation in :meth:`~BufferedWriter.submit`.
        committed: Newly stored by the store.
        duplicates: Already in the store (a replay), so not stored again.
        dead_lettered: Sent to the dead letter (write failures and store refusals).
        failed_attempts: Failed writes (each batch attempt counts once).
        peak_buffered: The most ever held at once.
    """

    buffered: int
    submitted: int
    rejected: int
    committed: int
    duplicates: int
    dead_lettered: int
    failed_attempts: int
    peak_buffered: int

    def to_dict(self) -> dict[str, int]:
        """The fields as a dict."""
        return asdict(self)


# -- the writer --------------------------------------------------------------------------------


class BufferedWriter:
    """Buffer records in memory and write them to ``store`` from a background thread.

    Args:
        store: Anything with ``ingest(records) -> IngestReport`` (an ``AnalyticsStore``).
        max_records, flush_records, flush_interval_s, max_retries, backoff_s, name: See
            :class:`WriterConfig`; or pass ``config``.
        dead_letter: Where unstorable records go (default: :func:`default_dead_letter`).
        sleep: ``sleep(seconds)`` between retries; the default wakes early on
            :meth:`close` once its timeout has passed.
        clock: Monotonic seconds, for the flush interval.
        seed: Seed of the back-off jitter.
    """

    def __init__(
        self,
        store: Any,
        *,
        max_records: int = 50_000,
        flush_records: int = 5_000,
        flush_interval_s: float = 1.0,
        max_retries: int = 8,
        backoff_s: tuple[float, float] = (0.05, 5.0),
        name: str = "default",
        config: WriterConfig | None = None,
        dead_letter: DeadLetter | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.config = config or WriterConfig(
            max_records=max_records,
            flush_records=flush_records,
            flush_interval_s=flush_interval_s,
            max_retries=max_retries,
            backoff_s=tuple(backoff_s),  # type: ignore[arg-type]
            name=name,
        )
        self.store = store
        self.dead_letter: DeadLetter = (
            dead_letter if dead_letter is not None else default_dead_letter(store)
        )
        self._clock = clock
        self._rng = random.Random(seed)
        self._abandon = threading.Event()
        self._sleep = sleep if sleep is not None else self._abandon.wait
        self._cond = threading.Condition()
        self._queue: deque[tuple[float, pd.DataFrame]] = deque()
        self._queued = 0
        self._inflight = 0
        self._submitted = 0
        self._settled = 0
        self._flush_target = 0
        self._closing = False
        self._counts = {
            "rejected": 0,
            "committed": 0,
            "duplicates": 0,
            "dead_lettered": 0,
            "failed_attempts": 0,
            "peak_buffered": 0,
        }
        label = self.config.name
        self._gauge = BUFFERED.labels(writer=label)
        self._flushed = FLUSHED.labels(writer=label)
        self._failures = FLUSH_FAILURES.labels(writer=label)
        self._gauge.set(0)
        self._thread = threading.Thread(
            target=self._run, name=f"analytics-writer-{label}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"BufferedWriter({self.store!r}, name={self.config.name!r})"

    def __enter__(self) -> BufferedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Records held now (queued or being written)."""
        with self._cond:
            return self._queued + self._inflight

    def stats(self) -> WriterStats:
        """The counters (a consistent snapshot)."""
        with self._cond:
            return WriterStats(
                buffered=self._queued + self._inflight, submitted=self._submitted, **self._counts
            )

    def submit(self, records: Any, timeout_s: float | None = None) -> Submitted:
        """Validate ``records`` and buffer the valid ones.

        Args:
            records: What :func:`~workbench.analytics.records.validate` takes (dicts, a
                DataFrame, an Arrow table).
            timeout_s: How long to wait for room when the buffer is full; ``None`` waits as
                long as it takes, ``0`` not at all.

        Returns:
            How many were buffered and which were refused (index and reason), at once.

        Raises:
            CapacityError: No room for the valid records within ``timeout_s`` (nothing of
                the batch was buffered; retry after ``retry_after_s``), or the batch holds
                more valid records than ``max_records`` and can never fit.
            ConflictError: The writer is closed.
            InputError: ``records`` is not a batch :func:`validate` accepts.
        """
        if timeout_s is not None and not timeout_s >= 0:
            raise InputError(f"submit timeout_s={timeout_s!r} must be >= 0 or None")
        checked = validate(records)
        frame = checked.frame
        n = len(frame)
        bound = self.config.max_records
        with self._cond:
            self._counts["rejected"] += len(checked.rejected)
        if n > bound:
            raise CapacityError(
                f"a batch of {n} valid records can never fit a BufferedWriter of "
                f"max_records={bound}; split it or raise max_records",
                details={"records": n, "max_records": bound},
            )
        if n == 0:
            self._check_open()
            return Submitted(0, checked.rejected)
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            while True:
                self._check_open()
                if self._queued + self._inflight + n <= bound:
                    break
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    raise CapacityError(
                        f"the BufferedWriter {self.config.name!r} holds "
                        f"{self._queued + self._inflight} of max_records={bound} records and "
                        f"{n} more did not fit within timeout_s={timeout_s}; the store is "
                        "slow or away: retry later, or raise max_records",
                        details={"buffered": self._queued + self._inflight, "max_records": bound},
                        retry_after_s=self.config.flush_interval_s,
                    )
                self._cond.wait(remaining)
            frame = frame.reset_index(drop=True)
            self._queue.append((self._clock(), frame))
            self._queued += n
            self._submitted += n
            held = self._queued + self._inflight
            self._counts["peak_buffered"] = max(self._counts["peak_buffered"], held)
            self._gauge.set(held)
            self._cond.notify_all()
        return Submitted(n, checked.rejected)

    def _check_open(self) -> None:
        if self._closing:
            raise ConflictError(
                f"the BufferedWriter {self.config.name!r} is closed; create a new one"
            )

    def flush(self, timeout_s: float | None = None) -> WriterStats:
        """Write everything submitted so far and wait until it is settled: committed by the
        store, or (after the retries) in the dead letter; ``stats()`` says which.

        Raises:
            WaitTimeout: Not settled within ``timeout_s`` (the writes go on).
        """
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            target = self._submitted
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            while self._settled < target:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(
                        f"BufferedWriter {self.config.name!r}: {target - self._settled} records "
                        f"were not written within timeout_s={timeout_s}; the store is slow or "
                        "away (the writer keeps retrying)",
                        details={"pending": target - self._settled},
                    )
                self._cond.wait(remaining)
        return self.stats()

    def close(self, timeout_s: float | None = None) -> WriterStats:
        """Refuse new records, write the buffered ones, stop the thread.

        With ``timeout_s``, records still unwritten when it passes go to the dead letter
        (the write in progress finishes its attempt first). Idempotent.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self.flush(timeout_s)
        except WaitTimeout:
            logger.warning(
                "BufferedWriter %r: closing before %d records were written; they go to %r",
                self.config.name,
                self.buffered,
                self.dead_letter,
            )
            self._abandon.set()
        with self._cond:
            self._flush_target = max(self._flush_target, self._submitted)
            self._cond.notify_all()
        self._thread.join()
        return self.stats()

    # -- the background thread ---------------------------------------------------------------

    def _due(self) -> float | None:
        """0 when a batch should be written now, else seconds until one is due (None: idle)."""
        if not self._queued:
            return None
        if (
            self._queued >= self.config.flush_records
            or self._flush_target > self._settled
            or self._closing
        ):
            return 0.0
        oldest = self._queue[0][0]
        return max(0.0, oldest + self.config.flush_interval_s - self._clock())

    def _take(self) -> pd.DataFrame:
        """Pop up to ``flush_records`` queued records as one frame (under the lock)."""
        want = self.config.flush_records
        parts: list[pd.DataFrame] = []
        taken = 0
        while self._queue and taken < want:
            at, frame = self._queue[0]
            room = want - taken
            if len(frame) <= room:
                self._queue.popleft()
                parts.append(frame)
                taken += len(frame)
            else:
                parts.append(frame.iloc[:room])
                self._queue[0] = (at, frame.iloc[room:])
                taken += room
        self._queued -= taken
        self._inflight = taken
        if len(parts) == 1:
            return parts[0]
        return pd.concat(parts, ignore_index=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    due = self._due()
                    if due == 0.0:
                        break
                    if due is None and self._closing and self._settled >= self._submitted:
                        return
                    self._cond.wait(due)
                batch = self._take()
            try:
                self._write(batch)
            except Exception:  # the thread must survive anything; the records are accounted
                logger.exception("BufferedWriter %r: writing a batch failed", self.config.name)
            with self._cond:
                self._settled += self._inflight
                self._inflight = 0
                self._gauge.set(self._queued)
                self._cond.notify_all()

    def _write(self, batch: pd.DataFrame) -> None:
        """Write one batch: retried, then dead-lettered; store refusals dead-lettered."""
        records = _for_ingest(batch)
        last: Exception | None = None
        attempts = 0
        for attempt in range(self.config.max_retries + 1):
            if self._abandon.is_set():
                break
            attempts += 1
            try:
                report = self.store.ingest(records)
            except (InputError, StorageFormatError) as exc:  # would fail the same way again
                self._count("failed_attempts", 1)
                self._failures.inc()
                last = exc
                break
            except Exception as exc:  # any store failure is retried (BackendUnavailable first)
                self._count("failed_attempts", 1)
                self._failures.inc()
                last = exc
                logger.warning(
                    "BufferedWriter %r: writing %d records failed (attempt %d of %d): %s",
                    self.config.name,
                    len(batch),
                    attempt + 1,
                    self.config.max_retries + 1,
                    exc,
                )
                if attempt < self.config.max_retries:
                    self._sleep(self.config.backoff(attempt, self._rng))
                continue
            refused = list(report.rejected)
            self._count("committed", int(report.accepted))
            self._count("duplicates", int(report.duplicates))
            self._flushed.inc(int(report.accepted) + int(report.duplicates))
            if refused:
                rows = jsonable_records(batch.iloc[[r.index for r in refused]])
                self._to_dead_letter(
                    [
                        DeadLetterItem("writer", f"the store refused {r.field}: {r.reason}", row)
                        for r, row in zip(refused, rows, strict=True)
                    ]
                )
            return
        if last is None:
            reason = "the writer was closed before the records were written"
        else:
            reason = f"not committed after {attempts} attempts: {type(last).__name__}: {last}"
        self._to_dead_letter(
            [DeadLetterItem("writer", reason, row) for row in jsonable_records(batch)]
        )

    def _count(self, key: str, n: int) -> None:
        with self._cond:
            self._counts[key] += n

    def _to_dead_letter(self, items: list[DeadLetterItem]) -> None:
        try:
            self.dead_letter.write(items)
        except Exception:  # nowhere left to put them: say so as loudly as we can
            logger.exception(
                "BufferedWriter %r: %d records could not be written to the dead letter %r and "
                "are lost",
                self.config.name,
                len(items),
                self.dead_letter,
            )
            return
        self._count("dead_lettered", len(items))
        DEAD_LETTERED.labels(source="writer").inc(len(items))


def _for_ingest(batch: pd.DataFrame) -> pd.DataFrame:
    """A validated batch as ``store.ingest`` input: the timestamp as datetime64 (UTC),
    because validation reads plain integers as epoch seconds."""
    out = batch.copy(deep=False)
    out["timestamp"] = batch["timestamp"].to_numpy(dtype=np.int64).view("datetime64[us]")
    return out
