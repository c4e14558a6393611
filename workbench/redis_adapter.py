"""The one module through which workbench talks to Redis.

Every subsystem that stores something in Redis (search trees, optimizer studies, the cache)
goes through :class:`RedisAdapter`: one connection pool per URL, one key prefix, one socket
timeout, and one place where redis-py's exceptions become
:class:`~workbench.errors.BackendUnavailable`. Values are bytes in and bytes out; callers own
their serialisation (versioned JSON, ``.npz``, zlib).

Keys are ``<prefix><part>:<part>...``. The default prefix is empty so the platform's key names
(``ab-mcts:tree:<id>``) are kept exactly; tests and shared servers set one.

State shared by several worker processes (or several hosts) needs updates that are atomic on
the server, not read-modify-write in Python. The adapter offers three, in rising order of
speed:

- :meth:`RedisAdapter.cas`: optimistic read-modify-write of one key with WATCH/MULTI/EXEC and
  any Python update function; retried on a conflicting write, bounded, then a
  :class:`~workbench.errors.ConflictError`. Good for rarely contended keys.
- :meth:`RedisAdapter.set_if_version`: a versioned compare-and-set in one Lua script. The value
  and its version live together in one hash (fields ``value`` and ``version``) rather than in a
  companion key, so they expire, are deleted and map to a cluster slot as one key.
  :meth:`RedisAdapter.set_versioned` is its unconditional write (the version still rises, so
  a conditional writer that read the old value is refused).
- :meth:`RedisAdapter.take_token`: a token bucket in one Lua script, timed by the Redis server's
  clock (``TIME``) so that workers on hosts with skewed clocks share one limit.

:meth:`RedisAdapter.script` registers any other Lua script (EVALSHA, loaded again on NOSCRIPT).

Streams (``xadd``/``xadd_many`` with ``MAXLEN ~``, ``xgroup_create``, ``xreadgroup``,
``xack``, ``xautoclaim``, ``xpending``, ``xlen``, ``xrange``, ``xtrim``) serve consumer groups
such as :class:`workbench.analytics.streams.StreamConsumer`.

Redis Cluster: ``RedisAdapter(url, cluster=True)`` talks to a cluster through redis-py's
``RedisCluster``, ``url`` naming one startup node (the others are discovered). Single-key
calls, :meth:`RedisAdapter.scan` (every master is scanned), multi-key
:meth:`RedisAdapter.delete` (split by slot), :meth:`RedisAdapter.pipeline` (split by node) and
scripts on one key work unchanged. A script or transaction over several keys needs them in one
hash slot: put the shared part in a ``{hash tag}`` (:meth:`RedisAdapter.hash_slot` says where a
key lands). A prefix holding a hash tag puts every key of the adapter in one slot, on one node.
Slots that are not served (a master died and its replica is not promoted yet) are
:class:`~workbench.errors.BackendUnavailable`, like an unreachable server.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import redis
from redis import exceptions as redis_errors
from redis.cluster import RedisCluster
from redis.crc import key_slot

from workbench.config import Settings, load_settings
from workbench.errors import BackendUnavailable, ConflictError, InputError

__all__ = ["FastCommands", "RedisAdapter", "RedisScript"]

logger = logging.getLogger(__name__)

RedisScript = Callable[..., Any]
"""A registered Lua script: ``run(keys=(), args=())`` returns the script's reply."""

# KEYS[1]: a hash {value, version}. ARGV: value, expected version, ttl in ms (0: keep expiry).
# Returns the new version, or nil (false) when the stored version is not the expected one.
_SET_IF_VERSION = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[2]) then
  return false
end
local version = current + 1
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'version', version)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return version
"""

# KEYS[1]: a hash {value, version}. ARGV: value, ttl in ms (0: keep expiry). Writes
# unconditionally and returns the new version (the old one plus one; 1 for a new key).
_SET_VERSIONED = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'value', ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return version
"""

# KEYS[1]: a hash {tokens, ts}. ARGV: rate per second, burst, now in seconds ('' for the
# server's clock). Returns {1 if a token was taken else 0, retry-after seconds as a string}
# (Lua numbers become integers in replies, so fractions travel as text).
_TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local retry_after = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_after = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%.17g', ts))
local full_in_ms = math.ceil((burst - tokens) / rate * 1000)
redis.call('PEXPIRE', KEYS[1], math.max(1, full_in_ms))
return {allowed, string.format('%.17g', retry_after)}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_fields(fields: Mapping[str, bytes | str]) -> dict[Any, Any]:
    return dict(fields)


def _fields(raw: Any) -> dict[str, bytes] | None:
    """A stream entry's fields with text names; None for an entry trimmed meanwhile."""
    if raw is None:
        return None
    return {_text(k): v if isinstance(v, bytes) else str(v).encode() for k, v in raw.items()}


_pools: dict[tuple[str, float], redis.ConnectionPool] = {}
_pools_lock = threading.Lock()
_fast_commands: dict[int, FastCommands] = {}  # by id() of the pool they draw from (pools live on)


def _pool(url: str, timeout_s: float) -> redis.ConnectionPool:
    """Share one pool per (URL, timeout) in the process: pools are expensive, clients cheap."""
    key = (url, timeout_s)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = redis.ConnectionPool.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                max_connections=64,
            )
            _pools[key] = pool
        return pool


_clusters: dict[tuple[str, float], RedisCluster] = {}


def _cluster(url: str, timeout_s: float) -> RedisCluster:
    """Share one cluster client per (URL, timeout): each holds a pool per node and the slot map.

    Building one connects to the startup node to learn the slot map, under the lock, so that
    concurrent first calls build it once.
    """
    key = (url, timeout_s)
    with _pools_lock:
        client = _clusters.get(key)
        if client is None:
            client = RedisCluster.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=30,
                max_connections=64,
            )
            _clusters[key] = client
        return client


class RedisAdapter:
    """A prefixed, pooled Redis client whose failures are workbench errors.

    Args:
        url: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: Prepended to every key built with :meth:`key`.
        timeout_s: Connect and read timeout of each call, seconds.
        cluster: ``url`` is a startup node of a Redis Cluster; :attr:`client` is then a
            ``redis.cluster.RedisCluster`` (shared per URL and timeout), built at once, so an
            unreachable cluster is a :class:`~workbench.errors.BackendUnavailable` here.
    """

    def __init__(
        self, url: str, *, prefix: str = "", timeout_s: float = 2.0, cluster: bool = False
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise InputError(f"Redis url {url!r} must start with redis://, rediss:// or unix://")
        if timeout_s <= 0:
            raise InputError(f"Redis timeout_s={timeout_s!r} must be positive")
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.cluster = cluster
        self.client: redis.Redis | RedisCluster
        if cluster:
            with self.errors():
                self.client = _cluster(url, timeout_s)
        else:
            self.client = redis.Redis(connection_pool=_pool(url, timeout_s))
        self._scripts: dict[str, RedisScript] = {}
        self._fast: FastCommands | None = None
        self._scripts_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RedisAdapter:
        """An adapter for ``settings.redis_url`` (default: :func:`load_settings`)."""
        s = settings or load_settings()
        return cls(s.redis_url, prefix=s.redis_prefix, timeout_s=s.redis_timeout_s)

    def __repr__(self) -> str:
        return f"RedisAdapter({self._safe_url()!r}, prefix={self.prefix!r})"

    def _safe_url(self) -> str:
        # Never show a password in messages or logs.
        if "@" in self.url:
            scheme, _, rest = self.url.partition("://")
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url

    def key(self, *parts: str | int) -> str:
        """The full key for ``parts``: the prefix, then the parts joined by ``:``."""
        if not parts:
            raise InputError("RedisAdapter.key() needs at least one part")
        return self.prefix + ":".join(str(p) for p in parts)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Translate redis-py errors raised inside the block into workbench errors.

        A :class:`~workbench.errors.BackendUnavailable` says in ``details["kind"]`` what
        happened: ``unreachable`` (connection refused, reset or timed out; a cluster without
        a master for the slot), ``refused`` (Redis answered with an error, such as a wrong
        type: the caller's mistake) or ``error``.
        """
        try:
            yield
        except (
            redis_errors.ClusterCrossSlotError,
            redis_errors.CrossSlotTransactionError,
        ) as exc:
            raise InputError(
                f"keys of one Redis Cluster command, script or transaction must share a hash "
                f"slot ({exc}); put their common part in a {{hash tag}}",
                details={"url": self._safe_url()},
            ) from exc
        except (
            redis_errors.ClusterError,  # ClusterDownError, MasterDownError
            redis_errors.TryAgainError,
            redis_errors.AskError,  # MovedError too: a redirection redis-py did not follow
            redis_errors.RedisClusterException,  # SlotNotCoveredError, no node reachable
        ) as exc:
            if "must map to the same key slot" in str(exc):  # redis-py refused, client side
                raise InputError(
                    f"keys of one Redis Cluster command or script must share a hash slot "
                    f"({exc}); put their common part in a {{hash tag}}",
                    details={"url": self._safe_url()},
                ) from exc
            raise BackendUnavailable(
                f"Redis Cluster at {self._safe_url()} does not serve the request ({exc}); "
                "retry once its failover completes, or check CLUSTER INFO",
                details={"url": self._safe_url(), "kind": "unreachable"},
            ) from exc
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise BackendUnavailable(
                f"Redis at {self._safe_url()} is unreachable ({exc}); start it or set "
                "WORKBENCH_REDIS_URL",
                details={"url": self._safe_url(), "kind": "unreachable"},
            ) from exc
        except redis_errors.ResponseError as exc:
            if str(exc).startswith("CLUSTERDOWN"):
                raise BackendUnavailable(
                    f"Redis Cluster at {self._safe_url()} is down ({exc}); retry once its "
                    "failover completes, or check CLUSTER INFO",
                    details={"url": self._safe_url(), "kind": "unreachable"},
                ) from exc
            raise BackendUnavailable(
                f"Redis at {self._safe_url()} refused a command: {exc}",
                details={"url": self._safe_url(), "kind": "refused"},
            ) from exc
        except redis_errors.RedisError as exc:
            raise BackendUnavailable(
                f"Redis error at {self._safe_url()}: {exc}",
                details={"url": self._safe_url(), "kind": "error"},
            ) from exc

    def fast(self) -> FastCommands:
        """Commands on pinned connections, for the hot path of a single-node client.

        redis-py's ``execute_command`` checks a connection out of the pool, wraps the call in
        its retry machinery and parses the reply through callbacks on every call; on this
        machine that costs more than the loopback round trip itself (a GET loop ran at 13,700/s
        through it and 25,800/s on one connection with ``send_command``/``read_response``).
        :class:`FastCommands` keeps idle connections in a lock-free stack taken from the same
        pool, sends a command or a pipeline of commands and returns the raw replies. Not for
        a cluster (use :attr:`client`).
        """
        if self.cluster:
            raise InputError("RedisAdapter.fast() is for a single node; use .client on a cluster")
        fast = self._fast
        if fast is None:
            pool = self.client.connection_pool  # type: ignore[union-attr]
            with _pools_lock:  # one per pool: adapters of one URL share its idle connections
                fast = _fast_commands.get(id(pool))
                if fast is None:
                    fast = _fast_commands[id(pool)] = FastCommands(self)
            self._fast = fast
        return fast

    def async_client(self) -> Any:
        """A new ``redis.asyncio.Redis`` for this URL and timeout, for code on an event loop.

        asyncio connection pools belong to one event loop, so each caller (an app's startup
        hook, say) creates its own and closes it with ``await client.aclose()``; wrap calls
        in :meth:`errors` like the synchronous ones. With ``cluster=True`` it is a
        ``redis.asyncio.cluster.RedisCluster``, which connects on its first command.
        """
        import redis.asyncio as aredis

        if self.cluster:
            from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

            return AsyncRedisCluster.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
        return aredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
        )

    @staticmethod
    def hash_slot(key: str | bytes) -> int:
        """The Redis Cluster hash slot (0..16383) of the full ``key``.

        CRC16 of the key, or of its ``{hash tag}`` (the text between the first ``{`` and the
        next ``}``, when not empty), modulo 16384: redis-py's ``key_slot``. Keys with the same
        tag share a slot, so scripts and transactions may use them together.
        """
        return key_slot(key.encode() if isinstance(key, str) else bytes(key))

    def pipeline(self) -> Any:
        """A non-transactional pipeline: commands are queued and sent together on execute.

        Use it to batch many independent reads and writes (one round trip per node rather
        than per command); it is not atomic. On a cluster, redis-py splits it by node and
        returns the replies in the order of the commands. Wrap ``execute()`` in
        :meth:`errors` so failures become workbench errors::

            pipe = adapter.pipeline()
            for key in keys:
                pipe.get(key)
            with adapter.errors():
                values = pipe.execute()

        For atomic updates use :meth:`cas`, :meth:`set_if_version` or :meth:`script`.
        """
        return self.client.pipeline(transaction=False)

    def reset_connections(self) -> None:
        """Close every pooled connection of this URL; the next calls open fresh ones.

        After a Redis restart each pooled connection would otherwise fail once (reset by
        peer) before it reconnects; a caller that has just seen the server come back calls
        this first, so recovery is not undone by a stale socket.
        """
        client: Any = self.client
        if self._fast is not None:
            self._fast.reset()
        with contextlib.suppress(Exception):  # closing sockets that may already be dead
            if self.cluster:
                client.disconnect_connection_pools()
            else:
                client.connection_pool.disconnect()

    def ping(self) -> float:
        """Round-trip time of one PING, in seconds (on a cluster: to every node)."""
        with self.errors():
            start = time.perf_counter()
            self.client.ping()
            return time.perf_counter() - start

    def get(self, key: str) -> bytes | None:
        """The value at ``key`` (a full key from :meth:`key`), or ``None``."""
        with self.errors():
            value: Any = self.client.get(key)
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl_s`` seconds when given."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(
                f"RedisAdapter.set value must be bytes, got {type(value).__name__}; "
                "serialise it first"
            )
        if ttl_s is not None and ttl_s <= 0:
            raise InputError(f"ttl_s={ttl_s!r} must be positive or None")
        with self.errors():
            if ttl_s is None:
                self.client.set(key, value)
            else:
                self.client.set(key, value, px=max(1, int(ttl_s * 1000)))

    def delete(self, *keys: str) -> int:
        """Delete ``keys``; returns how many existed."""
        if not keys:
            return 0
        with self.errors():
            return int(self.client.delete(*keys))

    def exists(self, key: str) -> bool:
        with self.errors():
            return bool(self.client.exists(key))

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` if it has no expiry or does not exist."""
        with self.errors():
            ms = int(self.client.pttl(key))
        return None if ms < 0 else ms / 1000.0

    def scan(self, pattern: str = "*", *, count: int = 500, unique: bool = True) -> Iterator[str]:
        """Keys under this adapter's prefix matching ``pattern`` (SCAN, never KEYS).

        The pattern is relative to the prefix; yielded keys are full keys. On a cluster
        every master is scanned (redis-py's ``RedisCluster.scan_iter`` keeps one cursor per
        master). SCAN itself may return a key more than once (when a keyspace's hash table
        is resized between two rounds); with ``unique`` (the default) each key is yielded
        once, at the cost of remembering every key yielded. ``unique=False`` streams in
        constant memory for callers that do not mind repeats (deletion, say).
        """
        seen: set[str] = set()
        with self.errors():
            for raw in self.client.scan_iter(match=self.prefix + pattern, count=count):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                if unique:
                    if key in seen:
                        continue
                    seen.add(key)
                yield key

    def delete_prefixed(self, pattern: str = "*") -> int:
        """Delete every key under the prefix matching ``pattern``; returns how many.

        Streams the scan (``unique=False``): a key SCAN repeats is deleted already, and
        deleting it again counts nothing.
        """
        if not self.prefix and pattern == "*":
            raise InputError("refusing to delete every key of a Redis without a prefix")
        deleted = 0
        batch: set[str] = set()
        for key in self.scan(pattern, unique=False):
            batch.add(key)
            if len(batch) >= 500:
                deleted += self.delete(*batch)
                batch.clear()
        return deleted + self.delete(*batch)

    # -- streams: append-only logs read by consumer groups ---------------------------------
    #
    # Entry ids are returned as text ("1700000000000-0"), field names as text, field values
    # as bytes. ``maxlen`` trims with ``MAXLEN ~`` (approximate: Redis drops whole macro
    # nodes, so the stream keeps at least ``maxlen`` entries and a little more, cheaply).

    def xadd(
        self, stream: str, fields: Mapping[str, bytes | str], *, maxlen: int | None = None
    ) -> str:
        """Append one entry to ``stream`` (a full key); returns its id."""
        with self.errors():
            entry = self.client.xadd(stream, _as_fields(fields), maxlen=maxlen, approximate=True)
        return _text(entry)

    def xadd_many(
        self,
        stream: str,
        entries: Sequence[Mapping[str, bytes | str]],
        *,
        maxlen: int | None = None,
        chunk: int = 1000,
    ) -> list[str]:
        """Append ``entries`` in order, ``chunk`` per pipelined round trip; returns the ids."""
        ids: list[str] = []
        for start in range(0, len(entries), chunk):
            pipe = self.client.pipeline(transaction=False)
            for fields in entries[start : start + chunk]:
                pipe.xadd(stream, _as_fields(fields), maxlen=maxlen, approximate=True)
            with self.errors():
                ids.extend(_text(e) for e in pipe.execute())
        return ids

    def xgroup_create(self, stream: str, group: str, *, entry_id: str = "0") -> bool:
        """Create consumer ``group`` on ``stream`` (MKSTREAM: the stream too, if absent),
        delivering entries after ``entry_id``; False when the group already exists."""
        with self.errors():
            try:
                self.client.xgroup_create(stream, group, id=entry_id, mkstream=True)
            except redis_errors.ResponseError as exc:
                if str(exc).startswith("BUSYGROUP"):
                    return False
                raise
        return True

    def xreadgroup(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int,
        block_ms: int | None = None,
        entry_id: str = ">",
    ) -> list[tuple[str, dict[str, bytes] | None]]:
        """Read up to ``count`` entries as ``consumer`` of ``group``.

        ``entry_id=">"`` gives entries never delivered to the group (waiting up to
        ``block_ms`` for one); ``"0"`` re-reads this consumer's own pending entries, where
        an entry trimmed from the stream meanwhile comes back with ``None`` fields.
        """
        with self.errors():
            reply: Any = self.client.xreadgroup(
                group, consumer, {stream: entry_id}, count=count, block=block_ms
            )
        if not reply:
            return []
        _, entries = reply[0]
        return [(_text(eid), _fields(raw)) for eid, raw in entries]

    def xack(self, stream: str, group: str, *entry_ids: str) -> int:
        """Acknowledge ``entry_ids`` (drop them from the group's pending list); returns how
        many were pending."""
        if not entry_ids:
            return 0
        with self.errors():
            return int(self.client.xack(stream, group, *entry_ids))

    def xautoclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int,
        start: str = "0-0",
        count: int = 100,
    ) -> tuple[str, list[tuple[str, dict[str, bytes] | None]], list[str]]:
        """Take over pending entries idle for at least ``min_idle_ms`` (XAUTOCLAIM).

        Returns:
            ``(next_start, claimed, deleted)``: the cursor for the next call (``"0-0"``
            when the pending list was scanned to its end), the claimed entries, and the ids
            of pending entries no longer in the stream (Redis drops them from the list).
        """
        with self.errors():
            reply: Any = self.client.xautoclaim(
                stream, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count
            )
        cursor, entries = reply[0], reply[1]
        deleted = [_text(e) for e in reply[2]] if len(reply) > 2 else []
        claimed = [(_text(eid), _fields(raw)) for eid, raw in entries]
        return _text(cursor), claimed, deleted

    def xpending(self, stream: str, group: str) -> dict[str, Any]:
        """The pending summary of ``group``: ``{"pending": n, "min": id, "max": id,
        "consumers": {name: n}}`` (ids ``None`` when nothing is pending)."""
        with self.errors():
            reply: Any = self.client.xpending(stream, group)
        consumers = {_text(c["name"]): int(c["pending"]) for c in (reply.get("consumers") or [])}
        low, high = reply.get("min"), reply.get("max")
        return {
            "pending": int(reply.get("pending") or 0),
            "min": None if low is None else _text(low),
            "max": None if high is None else _text(high),
            "consumers": consumers,
        }

    def xlen(self, stream: str) -> int:
        """Number of entries in ``stream`` (0 when it does not exist)."""
        with self.errors():
            return int(self.client.xlen(stream))

    def xrange(
        self, stream: str, *, count: int | None = None
    ) -> list[tuple[str, dict[str, bytes]]]:
        """The entries of ``stream`` from its start, at most ``count`` (``None``: all)."""
        with self.errors():
            reply: Any = self.client.xrange(stream, count=count)
        return [(_text(eid), _fields(raw) or {}) for eid, raw in reply]

    def xtrim(self, stream: str, maxlen: int, *, approximate: bool = True) -> int:
        """Trim ``stream`` to about ``maxlen`` entries (``MAXLEN ~``); returns how many went."""
        with self.errors():
            return int(self.client.xtrim(stream, maxlen=maxlen, approximate=approximate))

    # -- atomic updates for state shared across processes ----------------------------------

    def script(self, source: str) -> RedisScript:
        """Register the Lua ``source`` and return a function that runs it.

        The script is sent once and then run by its SHA1 (EVALSHA); a server that lost it
        (restart, SCRIPT FLUSH) gets it again transparently. Registrations are cached per
        adapter, so calling this on every request costs a dict lookup.

        Returns:
            ``run(keys=(), args=())``: runs the script with full keys (from :meth:`key`) and
            arguments, returning its reply. Errors, the script's own included, are translated
            like every other call (a script error is a
            :class:`~workbench.errors.BackendUnavailable` naming the Lua error).
        """
        if not isinstance(source, str) or not source.strip():
            raise InputError("RedisAdapter.script needs the Lua source as a non-empty str")
        with self._scripts_lock:
            run = self._scripts.get(source)
            if run is None:
                registered = self.client.register_script(source)

                def run(keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
                    with self.errors():
                        return registered(keys=list(keys), args=list(args))

                self._scripts[source] = run
        return run

    def eval_script(self, source: str, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        """Run the Lua ``source`` once with ``keys`` and ``args`` (registered and cached as by
        :meth:`script`); returns its reply."""
        return self.script(source)(keys, args)

    def cas(
        self,
        key: str,
        update: Callable[[bytes | None], bytes | None],
        *,
        retries: int = 32,
        ttl_s: float | None = None,
    ) -> bytes | None:
        """Replace the value at ``key`` by ``update(current)``, atomically.

        Optimistic: the key is WATCHed, read, and written in MULTI/EXEC; when another client
        wrote it in between, ``update`` is called again on the fresh value (after a short
        random pause, so contending workers spread out). ``update`` may therefore run more
        than once and must not have side effects.

        Args:
            key: A full key (from :meth:`key`).
            update: Gets the current value (``None`` when absent) and returns the new one;
                ``None`` deletes the key.
            retries: How many conflicting writes to tolerate before giving up.
            ttl_s: Expire the new value after this many seconds; ``None`` keeps the key's
                current expiry.

        Returns:
            The value written (``None`` when the key was deleted).

        Raises:
            ConflictError: The key changed under every one of ``1 + retries`` attempts.
        """
        if retries < 0:
            raise InputError(f"cas retries={retries!r} must be >= 0")
        if ttl_s is not None and ttl_s <= 0:
            raise InputError(f"ttl_s={ttl_s!r} must be positive or None")
        with self.errors(), self.client.pipeline(transaction=True) as pipe:
            for attempt in range(retries + 1):
                try:
                    pipe.watch(key)
                    raw: Any = pipe.get(key)
                    new = update(None if raw is None else bytes(raw))
                    if new is not None and not isinstance(new, bytes | bytearray | memoryview):
                        raise InputError(
                            f"cas update for {key!r} returned {type(new).__name__}; return "
                            "bytes or None"
                        )
                    pipe.multi()
                    if new is None:
                        pipe.delete(key)
                    elif ttl_s is None:
                        pipe.set(key, new, keepttl=True)
                    else:
                        pipe.set(key, new, px=max(1, int(ttl_s * 1000)))
                    pipe.execute()
                    return None if new is None else bytes(new)
                except redis_errors.WatchError:
                    time.sleep(random.uniform(0.0, min(0.05, 0.0005 * 2**attempt)))
                finally:
                    pipe.reset()
        raise ConflictError(
            f"Redis key {key!r} changed under each of {retries + 1} compare-and-swap attempts; "
            "raise retries or spread writers over more keys",
            details={"key": key, "attempts": retries + 1},
        )

    def get_versioned(self, key: str) -> tuple[bytes | None, int]:
        """The value and version stored at ``key`` by :meth:`set_if_version`.

        Returns:
            ``(value, version)``; ``(None, 0)`` when the key does not exist.
        """
        with self.errors():
            reply: Any = self.client.hmget(key, ["value", "version"])
        value, version = reply
        return (None if value is None else bytes(value)), (0 if version is None else int(version))

    def set_if_version(
        self, key: str, value: bytes, expected_version: int, *, ttl_s: float | None = None
    ) -> int | None:
        """Store ``value`` at ``key`` only if its version is still ``expected_version``.

        The key holds a hash with fields ``value`` and ``version`` (read it with
        :meth:`get_versioned`, not :meth:`get`). A key that does not exist has version 0, so
        ``expected_version=0`` creates it.

        Args:
            key: A full key (from :meth:`key`).
            value: The new value.
            expected_version: The version the caller read and based ``value`` on.
            ttl_s: Expire the key after this many seconds; ``None`` keeps its expiry.

        Returns:
            The new version (``expected_version + 1``), or ``None`` when the stored version
            differs (someone else wrote first: read again and retry).
        """
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(
                f"set_if_version value must be bytes, got {type(value).__name__}; serialise it"
            )
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise InputError(f"expected_version={expected_version!r} must be an int")
        if expected_version < 0:
            raise InputError(f"expected_version={expected_version!r} must be >= 0")
        if ttl_s is not None and ttl_s <= 0:
            raise InputError(f"ttl_s={ttl_s!r} must be positive or None")
        ttl_ms = 0 if ttl_s is None else max(1, int(ttl_s * 1000))
        reply = self.script(_SET_IF_VERSION)([key], [bytes(value), expected_version, ttl_ms])
        return None if reply is None else int(reply)

    def set_versioned(self, key: str, value: bytes, *, ttl_s: float | None = None) -> int:
        """Store ``value`` at ``key`` whatever its version, and bump the version.

        The write of a single owner, or a deliberate overwrite, on a key that others update
        with :meth:`set_if_version`: every such writer that read the old version is then
        refused and reads again, so no conditional update is based on a value this call
        replaced.

        Args:
            key: A full key (from :meth:`key`), holding a hash as :meth:`set_if_version`
                writes it (or absent).
            value: The new value.
            ttl_s: Expire the key after this many seconds; ``None`` keeps its expiry.

        Returns:
            The new version (1 for a key that did not exist).
        """
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(
                f"set_versioned value must be bytes, got {type(value).__name__}; serialise it"
            )
        if ttl_s is not None and ttl_s <= 0:
            raise InputError(f"ttl_s={ttl_s!r} must be positive or None")
        ttl_ms = 0 if ttl_s is None else max(1, int(ttl_s * 1000))
        return int(self.script(_SET_VERSIONED)([key], [bytes(value), ttl_ms]))

    def take_token(
        self, key: str, rate_per_s: float, burst: float, now: float | None = None
    ) -> tuple[bool, float]:
        """Take one token from the bucket at ``key``, atomically across every client.

        The bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a new bucket
        starts full. The key expires once the bucket would be full again, so idle clients
        leave nothing behind.

        Args:
            key: A full key (from :meth:`key`), one per limited client.
            rate_per_s: Tokens added per second (the sustained rate).
            burst: Bucket capacity (requests admitted at once after a quiet period), >= 1.
            now: The time in seconds on a caller-chosen clock (tests drive time with it);
                ``None`` uses the Redis server's clock, shared by all workers.

        Returns:
            ``(allowed, retry_after_s)``: whether a token was taken, and when not, the seconds
            until one will be available (0.0 when allowed).
        """
        if not rate_per_s > 0:
            raise InputError(f"take_token rate_per_s={rate_per_s!r} must be positive")
        if not burst >= 1:
            raise InputError(f"take_token burst={burst!r} must be at least 1")
        reply = self.script(_TAKE_TOKEN)(
            [key],
            [repr(float(rate_per_s)), repr(float(burst)), "" if now is None else repr(float(now))],
        )
        allowed, retry_after = reply
        return bool(int(allowed)), float(retry_after)


class FastCommands:
    """Raw commands on pinned connections of one adapter's pool (see :meth:`RedisAdapter.fast`).

    Each call pops an idle connection from a stack (``collections.deque`` pops and appends are
    atomic, so threads share it without a lock), or checks a new one out of the pool when the
    stack is empty; after the reply it goes back on the stack. A connection that fails is
    disconnected and returned to the pool, never reused as it was. Replies are raw: bytes,
    ints, lists, ``None``.
    """

    def __init__(self, adapter: RedisAdapter) -> None:
        self.adapter = adapter
        client: Any = adapter.client
        self._pool = client.connection_pool
        self._idle: collections.deque[Any] = collections.deque()
        #: Idle connections kept; the pool's other connections stay for ordinary calls.
        self.max_idle = 16

    def _run(self, send: Callable[[Any], Any]) -> Any:
        """``send(connection)`` on an idle connection, or a fresh one from the pool.

        A reused connection whose server went away since (a restart) fails at once with a
        connection error, not a timeout; such a call is sent once more on a fresh connection,
        which is what redis-py's pool does when it checks a connection out. Only the commands
        this class is used for (reads, SET/MSET, DEL, PUBLISH: idempotent) are sent through it.
        A timeout is never retried (the server may be hanging: a retry would double the wait).
        """
        try:
            conn = self._idle.pop()
            reused = True
        except IndexError:
            with self.adapter.errors():
                conn = self._pool.get_connection()
            reused = False
        while True:
            try:
                with self.adapter.errors():
                    reply = send(conn)
            except BackendUnavailable as exc:
                if (exc.details or {}).get("kind") == "refused":
                    self._idle.append(conn)  # Redis answered: the connection is fine
                    raise
                self._drop(conn)
                stale = reused and not isinstance(exc.__cause__, redis_errors.TimeoutError)
                if not stale:
                    raise
                with self.adapter.errors():
                    conn = self._pool.get_connection()
                reused = False
                continue
            except BaseException:
                self._drop(conn)
                raise
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:  # more concurrent callers than usual: give the surplus back to the pool
                self._pool.release(conn)
            return reply

    def _drop(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.disconnect()
        with contextlib.suppress(Exception):
            self._pool.release(conn)

    def command(self, *args: Any) -> Any:
        """Send one command; its raw reply."""

        def send(conn: Any) -> Any:
            conn.send_command(*args)
            return conn.read_response()

        return self._run(send)

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write and read every reply (not a transaction). An error
        reply of one command is raised after all replies are read, so the connection stays in
        step."""

        def send(conn: Any) -> list[Any]:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            first_error: BaseException | None = None
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis_errors.ResponseError as exc:
                    first_error = first_error or exc
                    replies.append(None)
            if first_error is not None:
                raise first_error
            return replies

        result: list[Any] = self._run(send)
        return result

    def reset(self) -> None:
        """Forget the idle connections (after a server restart)."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            self._drop(conn)
