"""The cache's core: keys, serialisation, TTLs, tiers and the outage journal, with no I/O.

:class:`~workbench.cache.cache.Cache` (synchronous) and
:class:`~workbench.cache.aio.AsyncCache` (asyncio) are thin shells around one
:class:`CacheCore`: the core decides which tier serves a call, encodes and decodes values,
keeps the memory tier and the outage journal, and says which Redis commands to send; the shells
only send them. So neither path pays for the other and no rule is written twice.

Tiers and modes:

- ``memory``: no Redis at all (``url=None`` or ``"memory://"``); the memory tier is the cache.
- ``redis``: every call goes to Redis. ``two_tier=True`` puts the memory tier in front:
  reads are served locally for up to ``local_ttl_s`` and every write or delete is published on
  the namespace's invalidation channel, so other processes drop their local copy.
- ``fallback``: Redis is failing and its breaker is open: reads and writes go to the memory
  tier and callers see no exception (``strict=True`` raises instead). Every write and delete
  made meanwhile is kept in the :class:`OutageJournal`.

What is guaranteed on recovery (tested with two processes in ``tests/cache/``):

1. Before a process reads from Redis again, it replays its journal: each key deleted during
   the outage is deleted in Redis, and each key written is written again (``outage_writes =
   "replay"``, the default) or deleted (``"drop"``). So no key this process deleted or
   overwrote during the outage is read stale from Redis afterwards.
2. Then it empties its memory tier, so a copy held locally before or during the outage is
   never served once Redis is back.
3. A process whose invalidation subscription drops (two-tier mode) empties its memory tier
   when the subscription comes back, so it never serves a copy whose invalidation it missed.
4. The journal is bounded (``max_journal`` keys). If it overflows, recovery deletes the whole
   namespace in Redis (SCAN, never KEYS) rather than risk a stale read: misses, not lies.

Not guaranteed: during an outage each process sees only its own memory tier; when two
processes write one key during an outage, the later replay wins; a process that dies during an
outage loses its journal (its outage writes, which Redis never had).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.cache.memory import MISSING, MemoryTier
from workbench.cache.serializers import FORMAT_VERSION, Serializer, by_ident, get_serializer
from workbench.errors import BackendUnavailable, InputError

__all__ = ["CacheConfig", "CacheCore", "Fallback", "OutageJournal"]

logger = logging.getLogger(__name__)

_MSGPACK = get_serializer("msgpack")
#: The platform's degraded threshold for a Redis round trip, milliseconds.
DEGRADED_LATENCY_MS = 100.0
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_INT = re.compile(rb"^-?[0-9]{1,20}$")
_GLOB_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class CacheConfig:
    """Settings of one cache (a namespace on one backend).

    Attributes:
        namespace: Keys are ``<prefix><namespace>:<key>``; letters, digits, ``_.-``, 1-64.
        prefix: Put before the namespace (the HTTP service uses ``cache:``).
        serializer: ``msgpack`` (default), ``json`` or ``pickle`` (trusted namespaces only).
        trusted: Allow the pickle serializer (never for values from the network).
        default_ttl_s: TTL of a write that names none; 0 means no expiry.
        max_key_length: Longest key (characters) accepted.
        max_value_bytes: Largest encoded value accepted.
        memory_bytes: Byte budget of the memory tier.
        two_tier: Serve reads from the memory tier in front of Redis.
        local_ttl_s: How long a read-through copy stays in the memory tier (two-tier).
        strict: Raise :class:`~workbench.errors.BackendUnavailable` instead of falling back.
        outage_writes: ``replay`` (write them to Redis on recovery) or ``drop`` (delete those
            keys in Redis on recovery).
        max_journal: Keys the outage journal holds before it overflows (see the module doc).
        timeout_s: Redis connect and command timeout.
        open_s: How long the breaker stays open before a recovery attempt.
        window: Calls in the breaker's sliding window.
        min_calls: Calls before the window's failure rate counts.
        failure_rate: Failure rate over the window that opens the breaker. A connection
            error or timeout opens it at once (the connection is gone; the next call would
            wait for the same timeout).
    """

    namespace: str = "default"
    prefix: str = ""
    serializer: str = "msgpack"
    trusted: bool = False
    default_ttl_s: float = 0.0
    max_key_length: int = 512
    max_value_bytes: int = 8 * 2**20
    memory_bytes: int = 100 * 2**20
    two_tier: bool = False
    local_ttl_s: float = 300.0
    strict: bool = False
    outage_writes: str = "replay"
    max_journal: int = 100_000
    timeout_s: float = 0.5
    open_s: float = 1.0
    window: int = 50
    min_calls: int = 10
    failure_rate: float = 0.5

    def __post_init__(self) -> None:
        def bad(field: str, msg: str) -> InputError:
            return InputError(f"{field}: {msg}", details={"field": field})

        if not isinstance(self.namespace, str) or not _NAMESPACE.match(self.namespace):
            raise bad(
                "namespace", f"{self.namespace!r} must be 1-64 letters, digits or _.- characters"
            )
        if not isinstance(self.prefix, str) or len(self.prefix) > 64:
            raise bad("prefix", "must be a str of at most 64 characters")
        ser = get_serializer(self.serializer)
        if ser.trusted_only and not self.trusted:
            raise bad(
                "serializer",
                f"{self.serializer!r} runs code when it decodes; it needs trusted=True and must "
                "never hold values from the network",
            )
        checks: list[tuple[str, float, float, float]] = [
            ("default_ttl_s", self.default_ttl_s, 0.0, 10 * 365 * 86400.0),
            ("max_key_length", self.max_key_length, 1, 65536),
            ("max_value_bytes", self.max_value_bytes, 1, 512 * 2**20),
            ("memory_bytes", self.memory_bytes, 1024, 2**40),
            ("local_ttl_s", self.local_ttl_s, 0.001, 86400.0),
            ("max_journal", self.max_journal, 1, 10**8),
            ("timeout_s", self.timeout_s, 0.001, 60.0),
            ("open_s", self.open_s, 0.001, 3600.0),
            ("window", self.window, 1, 10**6),
            ("min_calls", self.min_calls, 1, 10**6),
            ("failure_rate", self.failure_rate, 1e-9, 1.0),
        ]
        for field, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(field, f"must be a number, got {value!r}")
            if not (math.isfinite(value) and lo <= value <= hi):
                raise bad(field, f"{value!r} is outside [{lo:g}, {hi:g}]")
        if self.outage_writes not in ("replay", "drop"):
            raise bad("outage_writes", f"{self.outage_writes!r}: use 'replay' or 'drop'")

    @property
    def key_prefix(self) -> str:
        """What every full key of this cache starts with."""
        return f"{self.prefix}{self.namespace}:"

    @property
    def channel(self) -> str:
        """The pub/sub channel of this namespace's invalidations."""
        return f"{self.prefix}__invalidate__:{self.namespace}"


# Journal operations, each a tuple whose first item is the kind:
#   ("set", payload, expires_at_wall | None) ("del",) ("hset", field, payload) ("hdel", field)
#   ("incr", amount) ("expire", ttl_s | None)
Op = tuple[Any, ...]


class OutageJournal:
    """What a process wrote and deleted while Redis was out, by key, bounded.

    A ``set`` or ``del`` replaces what the key held before in the journal; hash, counter and
    expiry operations append. :meth:`plan` turns it into Redis commands; :meth:`commit` drops
    the keys whose commands were sent. Thread-safe.
    """

    def __init__(self, max_keys: int, *, wall: Callable[[], float] = time.time) -> None:
        self.max_keys = max_keys
        self._wall = wall
        self._ops: OrderedDict[str, list[Op]] = OrderedDict()
        self._seqs: dict[str, int] = {}  # key -> sequence number of its last record
        self._planned: dict[str, int] = {}  # key -> sequence number when last planned
        self._seq = 0
        self._lock = threading.Lock()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._ops)

    def record(self, key: str, op: Op) -> None:
        with self._lock:
            self._seq += 1
            self._seqs[key] = self._seq
            if op[0] in ("set", "del"):
                self._ops.pop(key, None)
                self._ops[key] = [op]
            else:
                self._ops.setdefault(key, []).append(op)
            if len(self._ops) > self.max_keys:
                self.overflowed = True
                self._ops.clear()
                self._seqs.clear()

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._ops)

    def plan(self, policy: str, limit: int = 500) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """Up to ``limit`` keys with the Redis commands that replay them (``policy``
        ``replay``) or invalidate them (``drop``); deletes are replayed under both."""
        out: list[tuple[str, list[tuple[Any, ...]]]] = []
        now = self._wall()
        with self._lock:
            for key, ops in self._ops.items():
                if len(out) >= limit:
                    break
                self._planned[key] = self._seqs[key]
                cmds: list[tuple[Any, ...]]
                if policy == "drop" or (ops[0][0] == "del" and len(ops) == 1):
                    cmds = [("DEL", key)]
                else:
                    cmds = []
                    for op in ops:
                        kind = op[0]
                        if kind == "set":
                            expires = op[2]
                            if expires is None:
                                cmds.append(("SET", key, op[1]))
                            elif expires > now:
                                cmds.append(
                                    ("SET", key, op[1], "PX", max(1, int((expires - now) * 1000)))
                                )
                            else:
                                cmds.append(("DEL", key))
                        elif kind == "del":
                            cmds.append(("DEL", key))
                        elif kind == "hset":
                            cmds.append(("HSET", key, op[1], op[2]))
                        elif kind == "hdel":
                            cmds.append(("HDEL", key, op[1]))
                        elif kind == "incr":
                            cmds.append(("INCRBY", key, op[1]))
                        elif kind == "expire":
                            if op[1] is None:
                                cmds.append(("PERSIST", key))
                            else:
                                cmds.append(("PEXPIRE", key, max(1, int(op[1] * 1000))))
                out.append((key, cmds))
        return out

    def commit(self, keys: list[str]) -> None:
        """Forget ``keys`` (their planned commands reached Redis), except a key recorded again
        since it was planned: its newer operations are still to be sent."""
        with self._lock:
            for key in keys:
                if self._planned.pop(key, None) == self._seqs.get(key):
                    self._ops.pop(key, None)
                    self._seqs.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._ops.clear()
            self._seqs.clear()
            self._planned.clear()
            self.overflowed = False


class CacheCore:
    """Keys, encoding, TTLs, the memory tier and the outage journal of one cache.

    Args:
        config: The validated settings.
        clock: Monotonic seconds, for TTLs in the memory tier.
        wall: Wall-clock seconds, for TTLs replayed after an outage.
    """

    def __init__(
        self,
        config: CacheConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.serializer: Serializer = get_serializer(config.serializer)
        self._header = self.serializer.header
        self._dumps = self.serializer.dumps
        self.prefix = config.key_prefix
        self.memory = MemoryTier(max_bytes=config.memory_bytes, clock=clock)
        self.journal = OutageJournal(config.max_journal, wall=wall)
        self.clock = clock
        self.wall = wall
        self.default_ttl_s: float | None = config.default_ttl_s or None
        self._lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------------

    def key(self, key: str) -> str:
        """The full key of ``key`` (validated)."""
        if type(key) is not str:
            raise InputError(
                f"key: must be a str, got {type(key).__name__}", details={"field": "key"}
            )
        if not key or len(key) > self.config.max_key_length:
            raise InputError(
                f"key: length {len(key)} is outside 1..{self.config.max_key_length}",
                details={"field": "key"},
            )
        return self.prefix + key

    def local_key(self, full: str) -> str:
        """``key`` of a full key (the inverse of :meth:`key`)."""
        return full[len(self.prefix) :]

    # -- values -------------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """The tagged bytes of ``value``.

        Raises:
            InputError: the serializer cannot encode it, or it is larger than
                ``max_value_bytes`` once encoded.
        """
        data = self._header + self._dumps(value)
        if len(data) > self.config.max_value_bytes:
            raise InputError(
                f"value: {len(data)} bytes once encoded, more than max_value_bytes="
                f"{self.config.max_value_bytes}",
                details={"field": "value", "bytes": len(data)},
            )
        return data

    def decode(self, data: bytes) -> Any:
        """The value of tagged bytes (or of a Redis integer written by ``incr``).

        Raises:
            InputError: another format version, an unknown serializer, a serializer this
                namespace may not run, or bytes the serializer rejects.
        """
        if len(data) >= 2 and data[0] == FORMAT_VERSION:
            ser = self.serializer if data[1] == self._header[1] else by_ident(data[1])
            if ser is None:
                raise InputError(
                    f"value: written by an unknown serializer (id {data[1]}); known: "
                    "msgpack, json, pickle",
                    details={"field": "value"},
                )
            if ser.trusted_only and not self.config.trusted:
                raise InputError(
                    f"value: written with {ser.name!r}, which this namespace may not decode "
                    "(it is not trusted)",
                    details={"field": "value"},
                )
            try:
                return ser.loads(data[2:])
            except Exception as exc:
                raise InputError(
                    f"value: corrupt {ser.name} data ({exc})", details={"field": "value"}
                ) from None
        if _INT.match(data):
            return int(data)
        raise InputError(
            f"value: not written by this cache (format byte {data[:1]!r}; this reader knows "
            f"format {FORMAT_VERSION})",
            details={"field": "value"},
        )

    def ttl(self, ttl: float | None) -> float | None:
        """The TTL to use for a write: ``ttl`` validated, or the default."""
        if ttl is None:
            return self.default_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise InputError(
                f"ttl: must be a positive number of seconds or None, got {ttl!r}",
                details={"field": "ttl"},
            )
        if not math.isfinite(ttl) or ttl > 10 * 365 * 86400:
            raise InputError(f"ttl: {ttl!r} is more than ten years", details={"field": "ttl"})
        return float(ttl)

    @staticmethod
    def px(ttl_s: float | None) -> int | None:
        return None if ttl_s is None else max(1, int(ttl_s * 1000))

    # -- the memory tier ----------------------------------------------------------------------

    def local_get(self, full: str, default: Any) -> Any:
        """The value at ``full`` in the memory tier, or ``default``."""
        entry = self.memory.get_entry(full)
        if entry is None:
            return default
        if entry[1] is not MISSING:
            return entry[1]
        return self.decode(entry[0])

    def local_set(self, full: str, data: bytes, ttl_s: float | None, value: Any = MISSING) -> None:
        self.memory.set(full, data, ttl_s, value)

    def read_through_ttl(self, remote_ttl_s: float | None) -> float:
        """TTL of a two-tier local copy: ``local_ttl_s``, never past the Redis expiry."""
        local = self.config.local_ttl_s
        return local if remote_ttl_s is None else min(local, remote_ttl_s)

    # -- outages ------------------------------------------------------------------------------

    def journal_set(self, full: str, data: bytes, ttl_s: float | None) -> None:
        expires = None if ttl_s is None else self.wall() + ttl_s
        self.journal.record(full, ("set", data, expires))

    def journal_delete(self, full: str) -> None:
        self.journal.record(full, ("del",))

    # Writes served by the memory tier during an outage: each changes the memory tier and
    # records the change in the outage journal, so recovery sends it to Redis. The sync shell
    # runs them under Fallback.write_local; the async shell (one event loop) calls them.

    def fallback_set(self, items: Sequence[tuple[str, bytes, Any]], ttl_s: float | None) -> None:
        """``items`` of ``(full key, encoded value, value)``."""
        for full, data, value in items:
            self.local_set(full, data, ttl_s, value)
            self.journal_set(full, data, ttl_s)

    def fallback_delete(self, fulls: Sequence[str]) -> int:
        """How many of ``fulls`` the memory tier held."""
        n = 0
        for full in fulls:
            n += self.memory.delete(full)
            self.journal_delete(full)
        return n

    def fallback_incr(self, full: str, amount: int) -> int:
        value = self.local_incr(full, amount)
        self.journal.record(full, ("incr", amount))
        return value

    def fallback_expire(self, full: str, ttl_s: float | None) -> bool:
        done = self.memory.expire(full, ttl_s)
        self.journal.record(full, ("expire", ttl_s))
        return done

    def fallback_hset(self, full: str, fld: str, data: bytes) -> None:
        self.local_hash_update(full, lambda h: h.__setitem__(fld, data))
        self.journal.record(full, ("hset", fld, data))

    def fallback_hdel(self, full: str, fld: str) -> bool:
        """Whether the field was there."""
        existed = self.local_hdel(full, fld)
        self.journal.record(full, ("hdel", fld))
        return existed

    def recovery_plan(self) -> tuple[bool, list[tuple[str, list[tuple[Any, ...]]]]]:
        """``(flush_namespace, [(key, commands)])`` to send before reads resume from Redis."""
        if self.journal.overflowed:
            return True, []
        return False, self.journal.plan(self.config.outage_writes)

    def recovered(self) -> None:
        """Redis has the journal: forget it and empty the memory tier."""
        self.journal.clear()
        self.memory.clear()

    # -- memory-tier operations shared by both shells ----------------------------------------

    def local_many(self, keys: list[str], fulls: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        get = self.local_get
        for k, full in zip(keys, fulls, strict=True):
            value = get(full, MISSING)
            if value is not MISSING:
                out[k] = value
        return out

    def decode_many(self, keys: list[str], values: list[bytes | None]) -> dict[str, Any]:
        decode = self.decode
        return {k: decode(d) for k, d in zip(keys, values, strict=True) if d is not None}

    def local_incr(self, full: str, amount: int) -> int:
        with self._lock:
            entry = self.memory.get(full)
            if entry is not None and not _INT.match(entry):
                # as Redis: a counter is a key made by incr, not a value set to an int
                raise InputError(
                    f"key: {self.local_key(full)!r} holds a value, not a counter; counters "
                    "are created by incr",
                    details={"field": "key"},
                )
            current = 0 if entry is None else int(entry)
            value = current + amount
            self.memory.set(full, str(value).encode(), self.memory.ttl(full), value)
            return value

    @staticmethod
    def local_pattern(pattern: str) -> str:
        """A Redis glob as an :func:`fnmatch.fnmatchcase` pattern: fnmatch has no backslash
        escapes, so ``\\*`` (a literal ``*`` to Redis, and to :meth:`Cache.delete_prefix`)
        becomes ``[*]``."""
        return _GLOB_ESCAPE.sub(
            lambda m: f"[{m.group(1)}]" if m.group(1) in "*?[]\\" else m.group(1), pattern
        )

    def field(self, field: str) -> str:
        if type(field) is not str or not field or len(field) > self.config.max_key_length:
            raise InputError(
                f"field: must be a non-empty str of at most {self.config.max_key_length} chars",
                details={"field": "field"},
            )
        return field

    def local_hash(self, full: str) -> dict[str, bytes]:
        data = self.memory.get(full)
        if data is None:
            return {}
        value = self.decode(data)
        if not isinstance(value, dict):
            raise InputError(
                f"key: {self.local_key(full)!r} holds a value, not a hash",
                details={"field": "key"},
            )
        return value

    def local_hash_update(self, full: str, update: Callable[[dict[str, bytes]], Any]) -> None:
        """Apply ``update`` to the memory tier's copy of the hash at ``full`` (the fields
        hold encoded values; the hash is stored msgpack-encoded)."""
        with self._lock:
            h = self.local_hash(full)
            update(h)
            data = _MSGPACK.header + _MSGPACK.dumps(h)
            self.memory.set(full, data, self.memory.ttl(full))

    def local_hdel(self, full: str, fld: str) -> bool:
        """Remove ``fld`` from the memory tier's hash at ``full``; whether it was there."""
        box: list[bool] = []
        self.local_hash_update(full, lambda h: box.append(h.pop(fld, None) is not None))
        return bool(box and box[0])

    # -- reports and invalidation messages shared by both shells ------------------------------

    def stats_report(self, counters: Any, mode: str, breaker: Any | None) -> dict[str, Any]:
        """What ``stats()`` returns: counters, the memory tier's size, the journal and the
        breaker's window (``breaker`` is ``None`` for the memory backend)."""
        mem = self.memory
        out: dict[str, Any] = {
            "namespace": self.config.namespace,
            "mode": mode,
            **counters.to_dict(),
            "hit_rate": counters.hits / max(1, counters.hits + counters.misses),
            "memory": {
                "items": len(mem),
                "bytes": mem.bytes_used,
                "max_bytes": mem.max_bytes,
                "evictions": mem.evictions,
                "expirations": mem.expirations,
            },
            "journal": {"keys": len(self.journal), "overflowed": self.journal.overflowed},
        }
        if breaker is not None:
            out["breaker"] = breaker.snapshot()
        return out

    @staticmethod
    def health_report(latency_ms: float | None, up: bool, mode: str) -> dict[str, Any]:
        """What ``health()`` returns, with the platform's degraded thresholds: a Redis round
        trip over :data:`DEGRADED_LATENCY_MS`, or the fallback active (``latency_ms`` is
        ``None`` for the memory backend)."""
        reasons: list[str] = []
        if latency_ms is not None:
            if not up:
                reasons.append("Redis is out; serving from the memory tier")
            elif latency_ms > DEGRADED_LATENCY_MS:
                reasons.append(f"Redis round trip {latency_ms:.1f} ms > {DEGRADED_LATENCY_MS} ms")
        return {
            "healthy": not reasons,
            "latency_ms": round(latency_ms or 0.0, 3),
            "mode": mode,
            "degraded": bool(reasons),
            "reasons": reasons,
        }

    def apply_invalidation(self, own_id: str, data: Any) -> bool:
        """Apply an invalidation message (``<sender>|<kind>|<key>``: ``k`` one key, ``p`` a
        prefix, anything else everything) to the memory tier; False for this cache's own."""
        text = data.decode() if isinstance(data, bytes) else str(data)
        sender, _, rest = text.partition("|")
        kind, _, key = rest.partition("|")
        if sender == own_id:
            return False
        if kind == "k":
            self.memory.delete(key)
        elif kind == "p":
            self.memory.delete_prefix(key)
        else:
            self.memory.clear()
        return True

    @staticmethod
    def check_amount(amount: int) -> int:
        if isinstance(amount, bool) or not isinstance(amount, int) or abs(amount) > 2**62:
            raise InputError("amount: must be an int within ±2**62", details={"field": "amount"})
        return amount


class Fallback:
    """When to use Redis, when the memory tier, and when to attempt recovery (no I/O).

    Both shells ask :meth:`route` before a Redis call and report the outcome with
    :meth:`succeeded` or :meth:`failed`; a ``"recover"`` route means the shell should PING,
    send :meth:`CacheCore.recovery_plan`, and report :meth:`recovered` or
    :meth:`recovery_failed`. A connection error or timeout opens the breaker at once; other
    failures count in its sliding window; a Redis error *answer* (a wrong type) is the
    caller's mistake, not an outage.

    Args:
        core: The cache's core (its config and memory tier).
        breaker: The sliding-window breaker around Redis.
        counters: Where outages and recoveries are counted.
    """

    def __init__(self, core: CacheCore, breaker: Any, counters: Any) -> None:
        self.core = core
        self.breaker = breaker
        self.counters = counters
        self.up = True
        self._recovering = threading.Lock()
        #: Held by a synchronous recovery from its PING to :meth:`recovered`, and by every
        #: memory-tier write made in fallback (:meth:`write_local`): no outage write can slip
        #: between the last journal batch sent and the memory tier being emptied.
        self.lock = threading.RLock()

    def route(self) -> str:
        """``redis``, ``local`` (serve from memory) or ``recover`` (this caller holds the
        recovery and must report its end)."""
        br = self.breaker
        if self.up:
            if br.try_acquire():
                return "redis"
            self.up = False
            return self._local()
        if br.state == "OPEN" or not self._recovering.acquire(blocking=False):
            return self._local()
        if self.up:  # another caller recovered meanwhile
            self._recovering.release()
            return self.route()
        if not br.try_acquire():
            self._recovering.release()
            return self._local()
        return "recover"

    def _local(self) -> str:
        if self.core.config.strict:
            raise BackendUnavailable(
                f"cache {self.core.config.namespace}: Redis is out (strict mode); next "
                f"attempt in {self.breaker.retry_in_s():.1f} s",
                details={"retryInS": round(self.breaker.retry_in_s(), 3)},
            )
        return "local"

    def write_local(self, write: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Run a fallback write ``write(*args)`` (one of the ``CacheCore.fallback_*``) unless
        Redis came back meanwhile: ``(False, None)`` means the caller must send it to Redis
        instead; ``(True, result)`` that it was served locally."""
        with self.lock:
            if self.up:
                return False, None
            return True, write(*args)

    def succeeded(self, elapsed_s: float) -> None:
        self.breaker.on_success(elapsed_s)

    def failed(self, exc: BackendUnavailable, elapsed_s: float, op: str) -> None:
        """Account for a failed call; returns when the call should be served locally.

        Raises:
            InputError: Redis answered with an error (a wrong type): the caller's mistake.
            BackendUnavailable: strict mode.
        """
        self.counters.errors += 1
        text = str(exc)
        kind = (exc.details or {}).get("kind") or (
            "unreachable"
            if "unreachable" in text
            else "refused"
            if "refused a command" in text and ("WRONGTYPE" in text or "not an integer" in text)
            else "error"
        )
        br = self.breaker
        if kind == "refused":
            br.on_ignored()
            raise InputError(
                f"Redis refused {op} on this key ({exc}); the key holds another type",
                details={"field": "key"},
            ) from exc
        br.on_failure(elapsed_s)
        if kind == "unreachable":
            br.open()
        if br.state == "OPEN" and self.up:
            self.up = False
            self.counters.outages += 1
            logger.warning(
                "cache %s: Redis is out (%s); serving from the memory tier",
                self.core.config.namespace,
                exc,
            )
        if self.core.config.strict:
            raise exc

    def recovered(self, replayed: int) -> None:
        """The journal reached Redis: empty the memory tier, close, serve from Redis."""
        self.core.recovered()
        self.breaker.on_success(0.0)
        self.breaker.close()
        self.counters.recoveries += 1
        self.counters.replayed += replayed
        self.up = True
        self._recovering.release()
        logger.warning(
            "cache %s: Redis is back; %d journaled keys replayed",
            self.core.config.namespace,
            replayed,
        )

    def recovery_failed(self, exc: BaseException) -> None:
        self.breaker.on_failure(0.0)
        self.breaker.open()
        self._recovering.release()
        logger.info("cache %s: recovery failed (%s)", self.core.config.namespace, exc)
        if self.core.config.strict and isinstance(exc, BackendUnavailable):
            raise exc
