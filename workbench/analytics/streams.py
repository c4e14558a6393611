"""Execution records over Redis Streams: a producer and a consumer group that stores them.

Delivery is at-least-once and the store is idempotent (the execution id is its key), so each
record is stored exactly once however often it is delivered:

1. :func:`publish` appends records to a stream (``XADD``, pipelined), ``per_entry`` records
   per entry, trimming with ``MAXLEN ~ maxlen`` (default :data:`DEFAULT_MAXLEN`: about a
   million entries are kept; Redis trims whole macro nodes, so a little more). Size the bound
   to outlast the longest consumer outage: an entry trimmed before a consumer read it is lost
   to the group (:class:`StreamConsumer` dead-letters the ids it finds trimmed from its
   pending list).
2. :class:`StreamConsumer` reads with ``XREADGROUP``, ingests every record of the batch in one
   :meth:`~workbench.analytics.store.AnalyticsStore.ingest` call, and acknowledges (``XACK``)
   the entries only after that call returned, i.e. after the commit. A consumer killed
   anywhere in between leaves its entries pending; they are delivered again, and records that
   were committed already count as duplicates, not twice.
3. Pending entries of a dead consumer are taken over with ``XAUTOCLAIM`` once idle for
   ``claim_idle_ms``: when a consumer starts, and every ``claim_every_s`` after. A consumer
   restarted under its old name reads its own pending entries first (``XREADGROUP ... 0``).
4. An entry that cannot be decoded (unknown version or codec, not JSON, not a list of
   objects) and a record the store refuses are acknowledged and written to the dead letter
   with the reason, never retried forever. A store that is away (the ingest raises) leaves the
   batch pending; it is read again on the next call.

Entry format (version 1), fields: ``v`` = ``1``, ``codec`` = ``json``, ``records`` = a JSON
array of record objects (timestamps as ISO 8601 text, NaN as null). The default dead letter
is the stream ``<stream>:dead-letter`` (fields ``v``, ``source``, ``reason``, ``ref`` (the
entry id), ``record`` (JSON, or the raw payload as text)), bounded at
:data:`DEAD_LETTER_MAXLEN` entries.

Stream names are relative to the adapter's prefix (``adapter.key(stream)`` is the key).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd

from workbench import metrics
from workbench.analytics.ingest import DeadLetter, DeadLetterItem
from workbench.errors import ConfigError, InputError, StorageFormatError
from workbench.redis_adapter import RedisAdapter

__all__ = [
    "DEAD_LETTER_MAXLEN",
    "DEFAULT_MAXLEN",
    "ENTRY_VERSION",
    "ConsumeReport",
    "StreamConsumer",
    "StreamDeadLetter",
    "decode_entry",
    "encode_entry",
    "publish",
]

logger = logging.getLogger(__name__)

ENTRY_VERSION = b"1"
DEFAULT_MAXLEN = 1_000_000
DEAD_LETTER_MAXLEN = 100_000
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

STREAM_ENTRIES = metrics.counter(
    "workbench_analytics_stream_entries_total",
    "Stream entries a consumer finished, by outcome (stored, malformed, claimed, trimmed)",
    ["outcome"],
)
STREAM_RECORDS = metrics.counter(
    "workbench_analytics_stream_records_total",
    "Records a stream consumer handed to the store, by outcome (accepted, duplicate, rejected)",
    ["outcome"],
)


# -- the entry format --------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON-serialisable")


def encode_entry(records: Sequence[Mapping[str, Any]], *, first: int = 0) -> dict[str, bytes]:
    """The stream entry fields of ``records`` (see the module docstring).

    Args:
        records: The records of one entry.
        first: The index of ``records[0]`` in the caller's batch, for messages.

    Raises:
        InputError: A value is not JSON-serialisable (the message names the record).
    """
    items = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError(f"record {first + i} must be a mapping, got {type(record).__name__}")
        items.append(record if type(record) is dict else dict(record))
    try:
        payload = orjson.dumps(items, default=_default, option=_OPTIONS)
    except TypeError as exc:
        for i, record in enumerate(items):  # find the record that fails, for the message
            try:
                orjson.dumps(record, default=_default, option=_OPTIONS)
            except TypeError as inner:
                raise InputError(f"record {first + i} cannot be published: {inner}") from None
        raise InputError(f"records cannot be published: {exc}") from None
    return {"v": ENTRY_VERSION, "codec": b"json", "records": payload}


class _Malformed(Exception):
    """An entry that can never be decoded (internal)."""


def decode_entry(fields: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """The records of one entry.

    Raises:
        StorageFormatError: The entry has another version or codec, or is not a JSON array
            of objects.
    """
    try:
        return _decode(fields)
    except _Malformed as exc:
        raise StorageFormatError(str(exc)) from None


def _decode(fields: Mapping[str, bytes]) -> list[dict[str, Any]]:
    version = fields.get("v")
    if version != ENTRY_VERSION:
        raise _Malformed(
            f"entry version {version!r} is not {ENTRY_VERSION!r}, the one this code reads"
        )
    codec = fields.get("codec")
    if codec != b"json":
        raise _Malformed(f"entry codec {codec!r} is not b'json'")
    raw = fields.get("records")
    if raw is None:
        raise _Malformed("entry has no 'records' field")
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Malformed(f"entry 'records' is not JSON ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise _Malformed("entry 'records' is not a JSON array of objects")
    return items


def publish(
    adapter: RedisAdapter,
    stream: str,
    records: Sequence[Mapping[str, Any]] | pd.DataFrame,
    *,
    per_entry: int = 1,
    maxlen: int | None = DEFAULT_MAXLEN,
    chunk: int = 1000,
) -> list[str]:
    """Append ``records`` to ``stream``, ``per_entry`` records per entry, pipelined.

    Args:
        adapter: The Redis adapter (``adapter.key(stream)`` is the stream's key).
        stream: The stream name.
        records: Mappings or a DataFrame (one record per row).
        per_entry: Records per stream entry (1: an entry per record).
        maxlen: ``MAXLEN ~`` bound of the stream; ``None`` never trims.
        chunk: Entries per pipelined round trip.

    Returns:
        The entry ids, in order.

    Raises:
        InputError: A bad argument, or a record that is not JSON-serialisable (nothing of
            the batch was sent).
    """
    if isinstance(per_entry, bool) or not isinstance(per_entry, int) or per_entry < 1:
        raise InputError(f"publish per_entry={per_entry!r} must be an integer >= 1")
    if maxlen is not None and (isinstance(maxlen, bool) or maxlen < 1):
        raise InputError(f"publish maxlen={maxlen!r} must be an integer >= 1 or None")
    if isinstance(records, pd.DataFrame):
        records = records.to_dict("records")
    entries = [
        encode_entry(records[start : start + per_entry], first=start)
        for start in range(0, len(records), per_entry)
    ]
    return adapter.xadd_many(adapter.key(stream), entries, maxlen=maxlen, chunk=chunk)


class StreamDeadLetter:
    """A dead letter kept in a Redis stream (bounded at ``maxlen`` entries, ``MAXLEN ~``)."""

    def __init__(
        self, adapter: RedisAdapter, stream: str, *, maxlen: int = DEAD_LETTER_MAXLEN
    ) -> None:
        self.adapter = adapter
        self.stream = stream
        self.maxlen = maxlen

    def __repr__(self) -> str:
        return f"StreamDeadLetter({self.adapter.key(self.stream)!r})"

    def write(self, items: Sequence[DeadLetterItem]) -> None:
        """Append one entry per item."""
        entries: list[Mapping[str, bytes | str]] = []
        for item in items:
            record = item.record
            text = record if isinstance(record, str) else json.dumps(record, default=str)
            entries.append(
                {
                    "v": b"1",
                    "source": item.source,
                    "reason": item.reason,
                    "ref": item.ref,
                    "record": text.encode("utf-8", errors="backslashreplace"),
                }
            )
        self.adapter.xadd_many(self.adapter.key(self.stream), entries, maxlen=self.maxlen)

    def items(self) -> list[dict[str, Any]]:
        """Every entry as a dict (``source``, ``reason``, ``ref``, ``record``), oldest first."""
        return [
            {k: v.decode("utf-8", errors="replace") for k, v in fields.items()}
            for _, fields in self.adapter.xrange(self.adapter.key(self.stream))
        ]


# -- the consumer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumeReport:
    """What a consumer did (one :meth:`StreamConsumer.run_once`, or summed by ``run``).

    Attributes:
        entries: Stream entries finished (acknowledged).
        records: Records decoded from them.
        accepted: Records the store newly committed.
        duplicates: Records the store already held (redeliveries, replays).
        rejected: Records the store refused (now in the dead letter).
        malformed: Entries that could not be decoded (now in the dead letter).
        claimed: Entries taken over from other consumers with XAUTOCLAIM.
        trimmed: Pending entries found trimmed from the stream before they were processed.
    """

    entries: int = 0
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    malformed: int = 0
    claimed: int = 0
    trimmed: int = 0

    def __add__(self, other: ConsumeReport) -> ConsumeReport:
        return ConsumeReport(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def to_dict(self) -> dict[str, int]:
        """The fields as a dict."""
        return asdict(self)


@dataclass
class _Batch:
    ids: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the entry id of each record
    dead: list[DeadLetterItem] = field(default_factory=list)
    decoded: int = 0  # entries whose records were handed to the store
    malformed: int = 0
    claimed: int = 0
    trimmed: int = 0


class StreamConsumer:
    """One consumer of a consumer group that writes what it reads to an analytics store.

    Args:
        adapter: The Redis adapter.
        store: Anything with ``ingest(records) -> IngestReport`` (an ``AnalyticsStore``).
        stream: The stream name (relative to the adapter's prefix).
        group: The consumer group (created with MKSTREAM if missing, reading from the
            stream's start).
        consumer: This consumer's name, unique within the group.
        batch: Most entries read (and ingested in one call) at a time.
        block_ms: How long a read waits for new entries (0: not at all).
        claim_idle_ms: Take over another consumer's pending entries idle at least this long;
            longer than the slowest batch takes, or live consumers lose entries to each other
            (harmlessly: the store deduplicates, but work is done twice).
        claim_every_s: Seconds between XAUTOCLAIM scans (default ``claim_idle_ms / 2``).
        dead_letter: Where malformed entries and refused records go (default: the stream
            ``<stream>:dead-letter``).
        on_commit: Called with each batch's ``IngestReport`` after the store committed and
            before the entries are acknowledged (progress reporting).
        clock: Monotonic seconds (when to claim).
    """

    def __init__(
        self,
        adapter: RedisAdapter,
        store: Any,
        *,
        stream: str,
        group: str,
        consumer: str,
        batch: int = 1000,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        claim_every_s: float | None = None,
        dead_letter: DeadLetter | None = None,
        on_commit: Callable[[Any], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value, lo in (("batch", batch, 1), ("block_ms", block_ms, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(f"StreamConsumer {name}={value!r} must be an integer >= {lo}")
        if isinstance(claim_idle_ms, bool) or not isinstance(claim_idle_ms, int):
            raise ConfigError(f"StreamConsumer claim_idle_ms={claim_idle_ms!r} must be an int")
        if claim_idle_ms < 1:
            raise ConfigError(f"StreamConsumer claim_idle_ms={claim_idle_ms} must be >= 1")
        for name, text in (("stream", stream), ("group", group), ("consumer", consumer)):
            if not isinstance(text, str) or not text:
                raise ConfigError(f"StreamConsumer {name}={text!r} must be a non-empty string")
        self.adapter = adapter
        self.store = store
        self.stream = stream
        self.key = adapter.key(stream)
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_idle_ms / 2000 if claim_every_s is None else claim_every_s
        self.dead_letter: DeadLetter = (
            dead_letter
            if dead_letter is not None
            else StreamDeadLetter(adapter, f"{stream}:dead-letter")
        )
        self.on_commit = on_commit
        self._clock = clock
        self._group_ready = False
        self._own_pending = True  # read our own pending entries first (a restart)
        self._next_claim = -float("inf")
        self._claim_cursor = "0-0"

    def __repr__(self) -> str:
        return f"StreamConsumer({self.key!r}, group={self.group!r}, consumer={self.consumer!r})"

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing."""
        if not self._group_ready:
            self.adapter.xgroup_create(self.key, self.group, entry_id="0")
            self._group_ready = True

    def pending(self) -> dict[str, Any]:
        """The group's pending summary (``XPENDING``)."""
        self.ensure_group()
        return self.adapter.xpending(self.key, self.group)

    def run_once(self) -> ConsumeReport:
        """Claim idle entries when due, read one batch, store it, acknowledge it.

        Returns:
            What was done (all zeros when nothing arrived within ``block_ms``).

        Raises:
            BackendUnavailable: Redis or the store is away; the batch stays pending and is
                read again by the next call.
        """
        self.ensure_group()
        batch = _Batch()
        if self._clock() >= self._next_claim:
            self._claim(batch)
        if not batch.ids:
            self._read(batch)
        return self._finish(batch)

    def run(self, stop: threading.Event, *, error_backoff_s: float = 1.0) -> ConsumeReport:
        """Call :meth:`run_once` until ``stop`` is set; failures are logged and retried
        after ``error_backoff_s``. Returns the summed report."""
        total = ConsumeReport()
        while not stop.is_set():
            try:
                total += self.run_once()
            except Exception as exc:  # Redis or the store away: the batch stays pending
                logger.warning("%r: %s; retrying in %.1f s", self, exc, error_backoff_s)
                stop.wait(error_backoff_s)
        return total

    # -- steps -------------------------------------------------------------------------------

    def _claim(self, batch: _Batch) -> None:
        """XAUTOCLAIM up to ``batch`` idle entries, continuing the scan where it stopped."""
        cursor, claimed, deleted = self.adapter.xautoclaim(
            self.key,
            self.group,
            self.consumer,
            min_idle_ms=self.claim_idle_ms,
            start=self._claim_cursor,
            count=self.batch,
        )
        self._claim_cursor = cursor
        if cursor == "0-0":  # scanned to the end: rest until the next period
            self._next_claim = self._clock() + self.claim_every_s
        for entry_id in deleted:  # Redis dropped them from the pending list already
            batch.trimmed += 1
            batch.dead.append(DeadLetterItem("stream", _TRIMMED, None, entry_id))
        if claimed:
            logger.info("%r: claimed %d idle entries", self, len(claimed))
        batch.claimed = len(claimed)
        self._take(batch, claimed)

    def _read(self, batch: _Batch) -> None:
        if self._own_pending:
            entries = self.adapter.xreadgroup(
                self.key, self.group, self.consumer, count=self.batch, entry_id="0"
            )
            if entries:
                self._take(batch, entries)
                return
            self._own_pending = False
        entries = self.adapter.xreadgroup(
            self.key,
            self.group,
            self.consumer,
            count=self.batch,
            block_ms=self.block_ms or None,
            entry_id=">",
        )
        self._take(batch, entries)

    def _take(self, batch: _Batch, entries: list[tuple[str, dict[str, bytes] | None]]) -> None:
        for entry_id, fields in entries:
            batch.ids.append(entry_id)
            if not fields:  # trimmed from the stream while pending
                batch.trimmed += 1
                batch.dead.append(DeadLetterItem("stream", _TRIMMED, None, entry_id))
                continue
            try:
                records = _decode(fields)
            except _Malformed as exc:
                batch.malformed += 1
                raw = {k: v.decode("utf-8", errors="backslashreplace") for k, v in fields.items()}
                batch.dead.append(DeadLetterItem("stream", str(exc), raw, entry_id))
                continue
            batch.decoded += 1
            batch.records.extend(records)
            batch.sources.extend([entry_id] * len(records))

    def _finish(self, batch: _Batch) -> ConsumeReport:
        accepted = duplicates = rejected = 0
        if batch.records:
            try:
                report = self.store.ingest(batch.records)
            except (InputError, StorageFormatError) as exc:  # the batch as a whole, forever
                reason = f"the store refused the batch: {exc}"
                batch.dead.extend(
                    DeadLetterItem("stream", reason, r, s)
                    for r, s in zip(batch.records, batch.sources, strict=True)
                )
                rejected = len(batch.records)
            except Exception:
                self._own_pending = True  # unacknowledged: read them again next time
                raise
            else:
                accepted, duplicates = int(report.accepted), int(report.duplicates)
                for r in report.rejected:
                    reason = f"the store refused {r.field}: {r.reason}"
                    record = batch.records[r.index]
                    batch.dead.append(
                        DeadLetterItem("stream", reason, record, batch.sources[r.index])
                    )
                rejected = len(report.rejected)
                if self.on_commit is not None:
                    self.on_commit(report)
        if batch.dead:
            try:
                self.dead_letter.write(batch.dead)
            except Exception:
                self._own_pending = True
                raise
        if batch.ids:
            self.adapter.xack(self.key, self.group, *batch.ids)
        for outcome, n in (
            ("stored", batch.decoded),
            ("malformed", batch.malformed),
            ("claimed", batch.claimed),
            ("trimmed", batch.trimmed),
        ):
            if n:
                STREAM_ENTRIES.labels(outcome=outcome).inc(n)
        for outcome, n in (
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("rejected", rejected),
        ):
            if n:
                STREAM_RECORDS.labels(outcome=outcome).inc(n)
        return ConsumeReport(
            entries=len(batch.ids),
            records=len(batch.records),
            accepted=accepted,
            duplicates=duplicates,
            rejected=rejected,
            malformed=batch.malformed,
            claimed=batch.claimed,
            trimmed=batch.trimmed,
        )


_TRIMMED = (
    "the entry was trimmed from the stream before it was processed; raise the stream's MAXLEN "
    "bound above the longest consumer outage"
)
