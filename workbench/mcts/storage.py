"""Save and load search states, search results and agent models: files and Redis.

Formats (every one carries a version and is refused when unknown; nothing is unpickled):

* a search state is an ``.npz`` archive (``allow_pickle=False``) with the tree's arrays, the
  RNG state, a ``meta`` entry holding versioned JSON (algorithm and knobs, generator names,
  trial bookkeeping) and a ``states`` entry holding the user states as JSON, or as bytes of
  a user-supplied :class:`StateCodec` with an offsets array;
* agent models and search results are versioned JSON;
* in Redis each value is ``b"WBM1" + zlib(payload)`` under the platform's keys
  ``ab-mcts:tree:<id>`` and ``ab-mcts:result:<id>`` (plus ``ab-mcts:models``), with a TTL
  (default 3600 s, the platform's). Only known keys are read or deleted: no KEYS scans.
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workbench.errors import NotFoundError, StorageFormatError
from workbench.mcts.models import ModelRegistry
from workbench.mcts.policies import get_algorithm
from workbench.mcts.search import SearchState
from workbench.mcts.tree import Tree

__all__ = [
    "FORMAT_VERSION",
    "SEARCH_FORMAT_VERSION",
    "JsonCodec",
    "KeyValueStore",
    "RedisStore",
    "StateCodec",
    "dumps_search",
    "load_models",
    "load_search",
    "loads_search",
    "save_models",
    "save_search",
]

FORMAT_VERSION = 1  # saved orchestration results
# Saved search states. 2: the tree layout of the O(depth log width) sampler (leaf-pool lists
# and per-node heaps); a state saved in format 1 has the old rows and cannot be continued.
SEARCH_FORMAT_VERSION = 2
_MAGIC = b"WBM1"


class StateCodec(Protocol):
    """Turns user states into bytes and back."""

    def encode(self, state: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """States as JSON (the default; states must be JSON-serialisable)."""

    def encode(self, state: Any) -> bytes:
        return json.dumps(state).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


def dumps_search(state: SearchState, codec: StateCodec | None = None) -> bytes:
    """A search state as ``.npz`` bytes.

    Raises:
        StorageFormatError: a user state cannot be encoded (pass a codec).
    """
    codec = codec or JsonCodec()
    t = state.tree
    size = t.size
    try:
        blobs = [codec.encode(s) for s in t.states]
    except (TypeError, ValueError) as exc:
        raise StorageFormatError(
            f"a user state cannot be encoded ({exc}); pass a StateCodec to save it"
        ) from None
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    meta = {
        "version": SEARCH_FORMAT_VERSION,
        "kind": "search-state",
        "algorithm": state.algorithm.to_dict(),
        "actions": list(t.actions),
        "max_depth": state.max_depth,
        "next_trial_id": state.next_trial_id,
        "running": [[k, n, a] for k, (n, a) in state.running.items()],
        "finished": [[k, v] for k, v in state.finished.items()],
        "codec": type(codec).__name__,
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        ints=t.ints[:, :size],
        floats=t.floats[:, :size],
        action_stats=t.action_stats,
        node_action_stats=t.node_action_stats[:, :size]
        if t.node_action_stats.shape[0]
        else t.node_action_stats,
        header=t.header,
        params=state.params,
        rng=state.rng,
        states=np.frombuffer(b"".join(blobs), dtype=np.uint8),
        offsets=offsets,
    )
    return buf.getvalue()


def loads_search(data: bytes, codec: StateCodec | None = None) -> SearchState:
    """The inverse of :func:`dumps_search`; the state continues exactly where it stopped."""
    codec = codec or JsonCodec()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays["meta"].tobytes())
    except (OSError, ValueError, KeyError) as exc:
        raise StorageFormatError(f"not a saved search state: {exc}") from None
    if meta.get("kind") != "search-state":
        raise StorageFormatError("not a saved search state")
    if meta.get("version") != SEARCH_FORMAT_VERSION:
        raise StorageFormatError(
            f"search state format {meta.get('version')!r} is unknown; this version reads "
            f"{SEARCH_FORMAT_VERSION} (states saved before the tree layout changed cannot be "
            "continued: run the search again)"
        )
    algo_knobs = dict(meta["algorithm"])
    name = algo_knobs.pop("name")
    if name == "ab-mcts-a" and algo_knobs.get("model_choice") == "node":
        name = "multi-model"
    algorithm = get_algorithm(name, **algo_knobs)
    raw = arrays["states"].tobytes()
    off = arrays["offsets"]
    states = [codec.decode(raw[off[i] : off[i + 1]]) for i in range(len(off) - 1)]
    size = int(arrays["header"][0])
    cap = max(size * 2, 64)
    tree = Tree.empty(
        tuple(meta["actions"]), capacity=cap, per_node_actions=algorithm.per_node_actions
    )
    tree.ints[:, :size] = arrays["ints"]
    tree.floats[:, :size] = arrays["floats"]
    tree.action_stats[:] = arrays["action_stats"]
    if tree.node_action_stats.shape[0]:
        tree.node_action_stats[:, :size] = arrays["node_action_stats"]
    tree.header[:] = arrays["header"]
    tree.states = states
    if len(states) != size:
        raise StorageFormatError(f"saved search has {len(states)} states for {size} nodes")
    return SearchState(
        algorithm=algorithm,
        tree=tree,
        params=arrays["params"].astype(np.float64),
        rng=arrays["rng"].astype(np.uint64),
        max_depth=meta["max_depth"],
        running={int(k): (int(n), int(a)) for k, n, a in meta["running"]},
        finished={int(k): int(v) for k, v in meta["finished"]},
        next_trial_id=int(meta["next_trial_id"]),
    )


def save_search(state: SearchState, path: str | Path, codec: StateCodec | None = None) -> Path:
    """Write a search state to ``path`` (``.npz`` is appended if missing)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npz.tmp")
    tmp.write_bytes(dumps_search(state, codec))
    tmp.replace(path)
    return path


def load_search(path: str | Path, codec: StateCodec | None = None) -> SearchState:
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no saved search at {str(path)!r}")
    return loads_search(path.read_bytes(), codec)


def save_models(registry: ModelRegistry, path: str | Path) -> Path:
    """Write agent models as versioned JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(registry.to_dict()))
    tmp.replace(path)
    return path


def load_models(path: str | Path) -> ModelRegistry:
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no saved agent models at {str(path)!r}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise StorageFormatError(f"agent models at {str(path)!r} are not JSON: {exc}") from None
    return ModelRegistry.from_dict(data)


class KeyValueStore(Protocol):
    """The part of :class:`workbench.redis_adapter.RedisAdapter` this module uses."""

    def key(self, *parts: str | int) -> str: ...

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, *, ttl_s: float | None = None) -> None: ...

    def delete(self, *keys: str) -> int: ...


def _pack(payload: bytes) -> bytes:
    return _MAGIC + zlib.compress(payload, 6)


def _unpack(blob: bytes, what: str) -> bytes:
    if not blob.startswith(_MAGIC):
        raise StorageFormatError(f"{what}: unknown value format (expected {_MAGIC!r} header)")
    try:
        return zlib.decompress(blob[len(_MAGIC) :])
    except zlib.error as exc:
        raise StorageFormatError(f"{what}: corrupt compressed value: {exc}") from None


class RedisStore:
    """Search trees, results and agent models in Redis through a ``RedisAdapter``.

    Args:
        adapter: A :class:`~workbench.redis_adapter.RedisAdapter` (or anything with its
            ``key/get/set/delete``).
        ttl_s: Time to live of every value written (``None``: no expiry).
    """

    def __init__(self, adapter: KeyValueStore, *, ttl_s: float | None = 3600.0) -> None:
        self.adapter = adapter
        self.ttl_s = ttl_s

    def tree_key(self, tree_id: str) -> str:
        return self.adapter.key("ab-mcts", "tree", tree_id)

    def result_key(self, search_id: str) -> str:
        return self.adapter.key("ab-mcts", "result", search_id)

    def save_tree(self, tree_id: str, state: SearchState, codec: StateCodec | None = None) -> None:
        self.adapter.set(
            self.tree_key(tree_id), _pack(dumps_search(state, codec)), ttl_s=self.ttl_s
        )

    def load_tree(self, tree_id: str, codec: StateCodec | None = None) -> SearchState:
        blob = self.adapter.get(self.tree_key(tree_id))
        if blob is None:
            raise NotFoundError(f"no search tree {tree_id!r} in Redis (expired or never saved)")
        return loads_search(_unpack(blob, f"tree {tree_id!r}"), codec)

    def save_result(self, search_id: str, result: dict[str, Any]) -> None:
        payload = json.dumps({"version": FORMAT_VERSION, "result": result}).encode()
        self.adapter.set(self.result_key(search_id), _pack(payload), ttl_s=self.ttl_s)

    def load_result(self, search_id: str) -> dict[str, Any]:
        blob = self.adapter.get(self.result_key(search_id))
        if blob is None:
            raise NotFoundError(f"no search result {search_id!r} in Redis")
        doc = json.loads(_unpack(blob, f"result {search_id!r}"))
        if doc.get("version") != FORMAT_VERSION:
            raise StorageFormatError(
                f"result {search_id!r}: unknown version {doc.get('version')!r}"
            )
        return dict(doc["result"])

    def save_models(self, registry: ModelRegistry, name: str = "default") -> None:
        payload = json.dumps(registry.to_dict()).encode()
        self.adapter.set(self.adapter.key("ab-mcts", "models", name), _pack(payload), ttl_s=None)

    def load_models(self, name: str = "default") -> ModelRegistry:
        blob = self.adapter.get(self.adapter.key("ab-mcts", "models", name))
        if blob is None:
            raise NotFoundError(f"no agent models {name!r} in Redis")
        return ModelRegistry.from_dict(json.loads(_unpack(blob, f"models {name!r}")))

    def delete(self, search_id: str) -> int:
        """Delete the tree and result of ``search_id``; returns how many keys existed."""
        return self.adapter.delete(self.tree_key(search_id), self.result_key(search_id))
