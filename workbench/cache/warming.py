"""Cache warming: preload a cache at start, and refresh hot keys before they expire.

:func:`warm` loads ``(key, value)`` items with ``set_many`` in batches from any of:

- a mapping, or an iterable of ``(key, value)`` pairs or ``(key, value, ttl)`` triples;
- a loader: a callable with no arguments returning one of those (a generator streams);
- a manifest file: ``*.jsonl`` / ``*.ndjson`` hold one ``{"key": ..., "value": ..., "ttl": ...}``
  object per line (``ttl`` optional; blank lines ignored); ``*.json`` (or a file that parses as
  one JSON document) holds one object mapping keys to values.

An item that cannot be stored (a key that is not a str or too long, a value the namespace's
serializer refuses or too large, a bad ttl, a malformed manifest line) is reported in
:attr:`WarmReport.bad` with its line (manifest) or 1-based position (iterables) and never stops
the warm; each batch is written whole or, when it holds a bad item, item by item, so nothing
good is lost and nothing bad is half-written. A tqdm progress bar is drawn on stderr when
``progress=True``, or when ``progress`` is None, stderr is a terminal and the warm is large.

:class:`RefreshAhead` reads through a loader and reloads *hot* keys in the background once a
read finds them past ``refresh_fraction`` of their TTL, so popular keys never expire under load.
"""

from __future__ import annotations

import heapq
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from workbench.errors import InputError

__all__ = ["BadItem", "RefreshAhead", "WarmReport", "warm"]

logger = logging.getLogger(__name__)

#: Items above which a warm draws a progress bar by itself (when stderr is a terminal).
PROGRESS_THRESHOLD = 10_000
#: Bad items a report lists (all are counted in ``bad_total``).
MAX_BAD_LISTED = 1_000
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class BadItem:
    """One item a warm could not store.

    Attributes:
        line: The manifest line (1-based), or the item's 1-based position in an iterable.
        key: Its key, when it had a readable one.
        reason: Why it was refused.
    """

    line: int
    key: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "key": self.key, "reason": self.reason}


@dataclass(frozen=True)
class WarmReport:
    """What :func:`warm` did.

    Attributes:
        loaded: Items written to the cache.
        skipped: Items left alone because their key was present (``skip_existing=True``).
        bad: The first :data:`MAX_BAD_LISTED` items that could not be stored.
        bad_total: How many items could not be stored.
        seconds: Wall time of the warm.
    """

    loaded: int
    skipped: int
    bad: tuple[BadItem, ...]
    bad_total: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "skipped": self.skipped,
            "bad": [b.to_dict() for b in self.bad],
            "bad_total": self.bad_total,
            "seconds": self.seconds,
        }


# An item as read from a source: (position, key, value, ttl or None) or a BadItem.
_Item = tuple[int, Any, Any, Any]


def _from_iterable(items: Iterable[Any]) -> Iterator[_Item | BadItem]:
    for pos, item in enumerate(items, start=1):
        if isinstance(item, tuple | list) and len(item) in (2, 3):
            yield pos, item[0], item[1], item[2] if len(item) == 3 else None
        else:
            yield BadItem(pos, None, "not a (key, value) pair or (key, value, ttl) triple")


def _from_jsonl(path: Path) -> Iterator[_Item | BadItem]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield BadItem(lineno, None, f"not JSON ({exc})")
                continue
            if not isinstance(obj, dict) or "key" not in obj or "value" not in obj:
                yield BadItem(lineno, None, 'not an object with "key" and "value"')
                continue
            unknown = set(obj) - {"key", "value", "ttl"}
            if unknown:
                yield BadItem(
                    lineno,
                    _as_key(obj["key"]),
                    f"unknown fields {sorted(unknown)} (known: key, value, ttl)",
                )
                continue
            yield lineno, obj["key"], obj["value"], obj.get("ttl")


def _as_key(key: Any) -> str | None:
    return key if isinstance(key, str) else None


def _from_path(path: Path) -> tuple[Iterator[_Item | BadItem], int | None]:
    if not path.is_file():
        raise InputError(f"manifest: {str(path)!r} is not a file", details={"field": "manifest"})
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return _from_jsonl(path), None
    data = path.read_bytes()
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if path.suffix.lower() == ".json":
            raise InputError(
                f"manifest: {str(path)!r} is not JSON ({exc}); name a JSON-lines manifest *.jsonl",
                details={"field": "manifest"},
            ) from None
        return _from_jsonl(path), None
    if not isinstance(obj, dict):
        raise InputError(
            f"manifest: {str(path)!r} holds a JSON {type(obj).__name__}; a JSON manifest is "
            "one object mapping keys to values (or use JSON lines, *.jsonl)",
            details={"field": "manifest"},
        )
    return _from_iterable(obj.items()), len(obj)


def _open_source(source: Any) -> tuple[Iterator[_Item | BadItem], int | None]:
    if isinstance(source, str | os.PathLike):
        return _from_path(Path(source))
    if callable(source) and not isinstance(source, Mapping):
        source = source()
    if isinstance(source, Mapping):
        return _from_iterable(source.items()), len(source)
    if isinstance(source, Iterable) and not isinstance(source, str | bytes):
        total = len(source) if isinstance(source, Sized) else None
        return _from_iterable(source), total
    raise InputError(
        f"source: a {type(source).__name__}; pass a mapping, an iterable of (key, value), a "
        "loader function returning one, or a manifest path",
        details={"field": "source"},
    )


def _want_progress(progress: bool | None, total: int | None) -> bool:
    if progress is not None:
        return bool(progress)
    return total is not None and total > PROGRESS_THRESHOLD and sys.stderr.isatty()


def warm(
    cache: Any,
    source: Any,
    *,
    ttl: float | None = None,
    batch: int = 500,
    progress: bool | None = None,
    skip_existing: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> WarmReport:
    """Preload ``cache`` from ``source`` (see the module docstring for the sources).

    Args:
        cache: A :class:`~workbench.cache.Cache`.
        source: A mapping, an iterable of pairs or triples, a loader, or a manifest path.
        ttl: TTL of items that name none (``None``: the cache's default).
        batch: Items per ``set_many`` call (1..100,000).
        progress: Draw a progress bar (``None``: when stderr is a terminal and the source
            holds more than :data:`PROGRESS_THRESHOLD` items).
        skip_existing: Leave keys already in the cache as they are.
        clock: Seconds, for :attr:`WarmReport.seconds`.

    Returns:
        A :class:`WarmReport`.

    Raises:
        InputError: an unusable source, manifest, ``ttl`` or ``batch``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 100_000:
        raise InputError(
            f"batch: must be an int in 1..100000, got {batch!r}", details={"field": "batch"}
        )
    default_ttl = cache.core.ttl(ttl)
    start = clock()
    items, total = _open_source(source)
    loaded = skipped = bad_total = 0
    bad: list[BadItem] = []

    def refuse(item: BadItem) -> None:
        nonlocal bad_total
        bad_total += 1
        if len(bad) < MAX_BAD_LISTED:
            bad.append(item)

    # pending writes grouped by TTL: ttl -> {key: (position, value)}
    pending: dict[float | None, dict[str, tuple[int, Any]]] = {}
    n_pending = 0

    def flush() -> None:
        nonlocal loaded, skipped, n_pending
        for ttl_s, group in pending.items():
            if skip_existing:
                present = cache.get_many(list(group))
                skipped += len(present)
                for k in present:
                    del group[k]
            if not group:
                continue
            try:
                cache.set_many({k: v for k, (_, v) in group.items()}, ttl=ttl_s)
                loaded += len(group)
            except InputError:
                for k, (pos, v) in group.items():  # find the bad ones; keep the rest
                    try:
                        cache.set(k, v, ttl=ttl_s)
                        loaded += 1
                    except InputError as exc:
                        refuse(BadItem(pos, k, exc.message))
        pending.clear()
        n_pending = 0

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        desc=f"warm {cache.namespace}",
        unit="key",
        disable=not _want_progress(progress, total),
    )
    try:
        for item in items:
            bar.update(1)
            if isinstance(item, BadItem):
                refuse(item)
                continue
            pos, key, value, item_ttl = item
            try:
                cache.core.key(key)
                ttl_s = default_ttl if item_ttl is None else cache.core.ttl(item_ttl)
            except InputError as exc:
                refuse(BadItem(pos, _as_key(key), exc.message))
                continue
            group = pending.setdefault(ttl_s, {})
            if key in group:
                n_pending -= 1
            group[key] = (pos, value)
            n_pending += 1
            if n_pending >= batch:
                flush()
        flush()
    finally:
        bar.close()
    bad.sort(key=lambda b: b.line)
    report = WarmReport(loaded, skipped, tuple(bad), bad_total, clock() - start)
    logger.info(
        "cache %s: warmed %d keys (%d skipped, %d bad) in %.2f s",
        cache.namespace,
        loaded,
        skipped,
        bad_total,
        report.seconds,
    )
    return report


class RefreshAhead:
    """Read-through access to ``cache`` that reloads hot keys before they expire.

    Each :meth:`get` counts a hit for its key (in a bounded counter: past ``max_tracked`` keys, the
    least counted half is forgotten; every ``10 * max_tracked`` reads all counts are halved, so they
    follow the recent load). A key is *hot* when it is among the ``top_k`` most counted (the hot set
    is recomputed every ``recount_every`` reads). A read of a hot key older than ``refresh_fraction
    * ttl`` (its age is known from this process's load, or from the cache's TTL) reloads it in the
    background, once: further reads while the reload runs start none. A miss loads the key
    synchronously.

    Args:
        cache: A :class:`~workbench.cache.Cache`.
        loader: ``loader(key) -> value``.
        ttl: TTL of the values loaded, seconds.
        refresh_fraction: Fraction of ``ttl`` after which a hot key is reloaded (0 < f < 1).
        top_k: How many keys count as hot.
        max_tracked: Keys the hit counter holds.
        recount_every: Reads between recomputations of the hot set.
        clock: Monotonic seconds (use the cache's clock so both agree on ages).
        workers: Threads of the background reloads.
    """

    def __init__(
        self,
        cache: Any,
        loader: Callable[[str], Any],
        *,
        ttl: float,
        refresh_fraction: float = 0.8,
        top_k: int = 100,
        max_tracked: int = 10_000,
        recount_every: int = 100,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 2,
    ) -> None:
        if not callable(loader):
            raise InputError("loader: must be callable as loader(key)", details={"field": "loader"})
        self.ttl = cache.core.ttl(ttl)
        if self.ttl is None:
            raise InputError("ttl: refresh-ahead needs a ttl", details={"field": "ttl"})
        if not (isinstance(refresh_fraction, float | int) and 0 < refresh_fraction < 1):
            raise InputError(
                f"refresh_fraction: must be in (0, 1), got {refresh_fraction!r}",
                details={"field": "refresh_fraction"},
            )
        for name, value in (
            ("top_k", top_k),
            ("max_tracked", max_tracked),
            ("recount_every", recount_every),
            ("workers", workers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**7:
                raise InputError(
                    f"{name}: must be an int in 1..1e7, got {value!r}", details={"field": name}
                )
        if max_tracked < top_k:
            raise InputError(
                "max_tracked: must be at least top_k", details={"field": "max_tracked"}
            )
        self.cache = cache
        self.loader = loader
        self.refresh_fraction = float(refresh_fraction)
        self.top_k = top_k
        self.max_tracked = max_tracked
        self.recount_every = recount_every
        self._clock = clock
        self._counts: dict[str, float] = {}
        self._hot: frozenset[str] = frozenset()
        self._reads_since_recount = 0
        self._reads = 0
        self._loaded_at: dict[str, float] = {}
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="wb-refresh-ahead"
        )
        self._pending: set[Future[None]] = set()
        self.refreshes = 0
        self.loads = 0
        self.errors = 0

    # -- hit counting -------------------------------------------------------------------------

    def _count(self, key: str) -> bool:
        """Count a read of ``key``; True when it is hot."""
        with self._lock:
            counts = self._counts
            counts[key] = counts.get(key, 0.0) + 1.0
            if len(counts) > self.max_tracked:
                keep = heapq.nlargest(
                    max(1, self.max_tracked // 2), counts.items(), key=lambda kv: kv[1]
                )
                self._counts = counts = dict(keep)
                self._loaded_at = {k: t for k, t in self._loaded_at.items() if k in counts}
            self._reads += 1
            if self._reads % (10 * self.max_tracked) == 0:  # age: follow the recent load
                self._counts = counts = {k: c / 2 for k, c in counts.items()}
            self._reads_since_recount += 1
            if self._reads_since_recount >= self.recount_every or not self._hot:
                top = heapq.nlargest(self.top_k, counts.items(), key=lambda kv: kv[1])
                self._hot = frozenset(k for k, _ in top)
                self._reads_since_recount = 0
            return key in self._hot

    def hot_keys(self) -> list[str]:
        """The current hot set, most counted first."""
        with self._lock:
            return sorted(self._hot, key=lambda k: -self._counts.get(k, 0.0))

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value at ``key``, loaded (and stored) on a miss; a hot key past
        ``refresh_fraction`` of its TTL is reloaded in the background."""
        hot = self._count(key)
        value = self.cache.get(key, _ABSENT)
        if value is _ABSENT:
            return self._load(key)
        if hot:
            age = self._age(key)
            if age is not None and age >= self.refresh_fraction * self.ttl:
                self._schedule(key)
        return value

    def _age(self, key: str) -> float | None:
        loaded = self._loaded_at.get(key)
        if loaded is None:
            remaining = self.cache.ttl(key)
            if remaining is None:
                return None
            loaded = self._clock() - (self.ttl - remaining)
            with self._lock:
                if key in self._counts:
                    self._loaded_at[key] = loaded
        return self._clock() - loaded

    def _load(self, key: str) -> Any:
        value = self.loader(key)
        self.cache.set(key, value, ttl=self.ttl)
        with self._lock:
            self.loads += 1
            if key in self._counts:
                self._loaded_at[key] = self._clock()
        return value

    def _schedule(self, key: str) -> None:
        with self._lock:
            if key in self._inflight:
                return
            self._inflight.add(key)

        def reload() -> None:
            try:
                self._load(key)
                with self._lock:
                    self.refreshes += 1
            except Exception:
                with self._lock:
                    self.errors += 1
                logger.exception("refresh-ahead of %r failed; the key expires as usual", key)
            finally:
                with self._lock:
                    self._inflight.discard(key)

        future = self._executor.submit(reload)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    # -- lifecycle ----------------------------------------------------------------------------

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait for the background reloads; True when none is left."""
        pending = list(self._pending)
        if not pending:
            return True
        _, not_done = wait_futures(pending, timeout=timeout_s)
        return not not_done

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "loads": self.loads,
                "refreshes": self.refreshes,
                "errors": self.errors,
                "tracked": len(self._counts),
                "hot": len(self._hot),
            }

    def close(self) -> None:
        """Stop the reload pool (waits for running reloads)."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> RefreshAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Absent:
    __slots__ = ()


_ABSENT: Any = _Absent()
