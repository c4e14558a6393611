"""The memory tier: an LRU of encoded values with a byte budget and per-entry TTLs.

It holds the *encoded* value (the bytes a Redis would hold), so its byte budget is the real
size of what it keeps and no caller ever shares a mutable object with another: every read of
a container decodes a fresh copy. Exactly immutable scalars (``str``, ``bytes``, ``int``,
``float``, ``bool``, ``None``) are kept decoded beside their bytes too, so reading one costs no
decode.

The size charged for an entry is ``len(key) + len(encoded value) + ENTRY_OVERHEAD``; a write
that would exceed ``max_bytes`` evicts least recently used entries first, and a single entry
larger than the whole budget is refused with a :class:`~workbench.errors.CapacityError`
(nothing is evicted for it). Expired entries are dropped when read and swept a few at a time
on every write, so they never hold budget for long. An overwrite replaces the old entry and its
expiry together (the platform's mock let an old timer delete a newer value).

Reads take no lock (single dict operations are atomic in CPython); writes, deletes and
evictions hold one lock, so the byte count is exact under threads. The clock is injected
(``time.monotonic`` by default) so tests drive TTLs without sleeping.

Why not ``cachetools.TLRUCache`` (considered): it charges sizes through a callback on the
decoded value, so its budget cannot be the encoded size without encoding twice, and its TTL is
one function for all entries rather than a value per write.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from workbench.errors import CapacityError, InputError

__all__ = ["ENTRY_OVERHEAD", "MISSING", "MemoryTier"]

ENTRY_OVERHEAD = 96
"""Bytes charged per entry on top of its key and value (dict slot, tuple, floats)."""

_INF = float("inf")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Returned by :meth:`MemoryTier.get_value` for a key it does not hold."""

_SCALARS = (str, bytes, int, float, bool, type(None))


class MemoryTier:
    """An LRU of encoded values with a byte budget and per-entry TTLs (thread-safe).

    Args:
        max_bytes: Byte budget (see the module docstring for what an entry costs).
        clock: Monotonic seconds.
    """

    def __init__(
        self, *, max_bytes: int = 100 * 2**20, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 1024:
            raise InputError(
                f"max_bytes: must be an int >= 1024, got {max_bytes!r}",
                details={"field": "max_bytes"},
            )
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (encoded, expires_at, decoded scalar or MISSING, charged size)
        self._data: OrderedDict[str, tuple[bytes, float, Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0
        self.expirations = 0

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The encoded value at ``key``, or ``None`` (absent or expired); marks it recently used."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] != _INF and entry[1] <= self._clock():
            self._expire(key, entry)
            return None
        try:
            self._data.move_to_end(key)
        except KeyError:  # deleted by another thread just now
            return None
        return entry[0]

    def get_entry(self, key: str) -> tuple[bytes, Any] | None:
        """``(encoded, decoded scalar or MISSING)`` at ``key``, or ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] != _INF and entry[1] <= self._clock():
            self._expire(key, entry)
            return None
        try:
            self._data.move_to_end(key)
        except KeyError:
            return None
        return entry[0], entry[2]

    def peek(self, key: str) -> bytes | None:
        """Like :meth:`get` but without touching the LRU order."""
        entry = self._data.get(key)
        if entry is None or (entry[1] != _INF and entry[1] <= self._clock()):
            return None
        return entry[0]

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` when it has no TTL or is absent."""
        entry = self._data.get(key)
        if entry is None or entry[1] == _INF:
            return None
        left = entry[1] - self._clock()
        return left if left > 0 else None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.peek(key) is not None

    def __len__(self) -> int:
        return len(self._data)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def live_keys(self) -> Iterator[str]:
        """Live keys, least recently used first (a snapshot)."""
        now = self._clock()
        # list(dict) is one C call that allocates nothing the garbage collector tracks, so no
        # Python code (a finaliser) can run and let a reader reorder the dict while it copies;
        # list(dict.items()) allocates a tuple per entry and gives no such guarantee.
        for key in list(self._data):
            entry = self._data.get(key)
            if entry is not None and (entry[1] == _INF or entry[1] > now):
                yield key

    # -- writes ------------------------------------------------------------------------------

    def set(
        self, key: str, encoded: bytes, ttl_s: float | None = None, value: Any = MISSING
    ) -> None:
        """Store ``encoded`` at ``key`` for ``ttl_s`` seconds (``None``: no expiry).

        ``value`` is the decoded value, kept only when it is an immutable scalar.

        Raises:
            CapacityError: the entry alone is larger than the budget.
        """
        size = len(key) + len(encoded) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            raise CapacityError(
                f"value: {len(encoded)} encoded bytes do not fit the memory tier's budget of "
                f"{self.max_bytes} bytes; raise memory_bytes or store a smaller value",
                details={"field": "value", "bytes": len(encoded), "maxBytes": self.max_bytes},
            )
        if ttl_s is not None and not ttl_s > 0:
            raise InputError(
                f"ttl: must be > 0 seconds or None, got {ttl_s!r}", details={"field": "ttl"}
            )
        expires = _INF if ttl_s is None else self._clock() + ttl_s
        kept = value if type(value) in _SCALARS else MISSING
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[3]
            self._sweep(4)
            while self._bytes + size > self.max_bytes and self._data:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= dropped[3]
                self.evictions += 1
            self._data[key] = (encoded, expires, kept, size)
            self._bytes += size

    def expire(self, key: str, ttl_s: float | None) -> bool:
        """Give ``key`` a new TTL (``None``: no expiry); False when it is absent."""
        with self._lock:
            entry = self._data.get(key)
            now = self._clock()
            if entry is None or (entry[1] != _INF and entry[1] <= now):
                return False
            expires = _INF if ttl_s is None else now + ttl_s
            self._data[key] = (entry[0], expires, entry[2], entry[3])
            return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it held a live value."""
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return False
            self._bytes -= entry[3]
            return entry[1] == _INF or entry[1] > self._clock()

    def clear(self) -> int:
        """Drop everything; returns how many entries were held."""
        with self._lock:
            n = len(self._data)
            self._data.clear()
            self._bytes = 0
            return n

    def delete_prefix(self, prefix: str) -> int:
        """Drop every key starting with ``prefix``; returns how many."""
        with self._lock:
            doomed = [k for k in list(self._data) if k.startswith(prefix)]  # a C-level copy
            for k in doomed:
                self._bytes -= self._data.pop(k)[3]
            return len(doomed)

    def _expire(self, key: str, entry: tuple[bytes, float, Any, int]) -> None:
        with self._lock:
            if self._data.get(key) is entry:
                del self._data[key]
                self._bytes -= entry[3]
                self.expirations += 1

    def _sweep(self, n: int) -> None:
        """Drop expired entries among the ``n`` least recently used (lock held).

        Readers reorder the dict without the lock (``move_to_end``). The keys are drained by
        one C-level call (``list(islice(...))``), never by a Python loop over the live dict,
        but a reader can still run between creating the iterator and draining it (they are
        two bytecodes); the iterator then raises ``RuntimeError`` and this write sweeps
        nothing: the sweep is opportunistic and the next write does it."""
        if not self._data:
            return
        try:
            oldest = list(itertools.islice(self._data, n))
        except RuntimeError:  # reordered by a reader after the iterator was made
            return
        now = self._clock()
        for key in oldest:
            entry = self._data.get(key)
            if entry is not None and entry[1] != _INF and entry[1] <= now:
                del self._data[key]
                self._bytes -= entry[3]
                self.expirations += 1
