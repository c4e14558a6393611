"""Persistence to files and to the real Redis (through the RedisAdapter fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import NotFoundError, StorageFormatError
from workbench.mcts import ALGORITHMS, ask, search, tell
from workbench.mcts.models import ModelRegistry
from workbench.mcts.orchestrate import SAVED_FORMAT, Orchestrator, SavedOrchestration
from workbench.mcts.storage import (
    RedisStore,
    dumps_search,
    load_models,
    load_search,
    loads_search,
    save_models,
    save_search,
)
from workbench.mcts.tasks import drift_task


def _same(a, b) -> None:
    ta, tb = a.tree, b.tree
    assert ta.size == tb.size and ta.states == tb.states
    np.testing.assert_array_equal(ta.ints[:, : ta.size], tb.ints[:, : tb.size])
    np.testing.assert_array_equal(ta.floats[:, : ta.size], tb.floats[:, : tb.size])
    np.testing.assert_array_equal(a.rng, b.rng)
    assert a.running == b.running and a.finished == b.finished


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_file_roundtrip_continues_exactly(tmp_path, algorithm: str) -> None:
    state = search(drift_task(seed=1), iterations=80, algorithm=algorithm, seed=2).state
    pending = ask(state)
    path = save_search(state, tmp_path / "s")
    loaded = load_search(path)
    _same(state, loaded)
    # both continue identically
    tell(state, pending, (0.1, 0.5))
    tell(loaded, pending.trial_id, (0.1, 0.5))
    a = search(drift_task(seed=9), iterations=40, state=state)
    b = search(drift_task(seed=9), iterations=40, state=loaded)
    _same(a.state, b.state)


def test_bad_data_is_refused(tmp_path) -> None:
    with pytest.raises(StorageFormatError):
        loads_search(b"not an npz")
    state = search({"f": lambda p: (object(), 0.5)}, iterations=3).state
    with pytest.raises(StorageFormatError, match="StateCodec"):
        dumps_search(state)
    with pytest.raises(NotFoundError):
        load_search(tmp_path / "missing.npz")


def test_a_state_saved_in_the_old_tree_layout_is_refused_by_name() -> None:
    """Format 1 held the tree rows before the O(depth log width) sampler; loading one must say
    so, not fail on an array shape."""
    import io

    blob = dumps_search(search(drift_task(seed=1), iterations=20, seed=2).state)
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["version"] = 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with pytest.raises(StorageFormatError, match=r"format 1 is unknown.*reads 2"):
        loads_search(buf.getvalue())


def test_custom_codec() -> None:
    class Codec:
        def encode(self, s):
            return b"" if s is None else repr(s).encode()

        def decode(self, b):
            return None if not b else complex(b.decode())

    state = search({"f": lambda p: (complex(1, 2), 0.5)}, iterations=4).state
    back = loads_search(dumps_search(state, Codec()), Codec())
    assert back.tree.states == state.tree.states


def test_models_file_roundtrip(tmp_path) -> None:
    reg = ModelRegistry()
    reg.update("a", "general", 1.0, 300.0, 50.0)
    back = load_models(save_models(reg, tmp_path / "models.json"))
    assert back.to_dict() == reg.to_dict()


def test_redis_roundtrip(redis_adapter) -> None:
    store = RedisStore(redis_adapter, ttl_s=60)
    state = search(drift_task(seed=1), iterations=200, algorithm="ab-mcts-a").state
    store.save_tree("s1", state)
    key = store.tree_key("s1")
    assert key.endswith("ab-mcts:tree:s1") and key.startswith(redis_adapter.prefix)
    assert 0 < redis_adapter.ttl(key) <= 60
    raw = redis_adapter.get(key)
    assert raw is not None and raw.startswith(b"WBM1") and len(raw) < len(dumps_search(state))
    _same(state, store.load_tree("s1"))
    store.save_result("s1", {"bestAction": "g2", "confidence": 0.8})
    assert store.load_result("s1") == {"bestAction": "g2", "confidence": 0.8}
    reg = ModelRegistry()
    reg.update("a", "t", 0.0)
    store.save_models(reg)
    assert store.load_models().to_dict() == reg.to_dict()
    assert store.delete("s1") == 2
    with pytest.raises(NotFoundError):
        store.load_tree("s1")
    redis_adapter.set(store.result_key("bad"), b"garbage")
    with pytest.raises(StorageFormatError):
        store.load_result("bad")


def test_feedback_finds_orchestrations_saved_in_redis(redis_adapter) -> None:
    from workbench.mcts.orchestrate import OrchestrationOptions

    store = RedisStore(redis_adapter, ttl_s=60)
    first = Orchestrator(store=store)
    r = first.orchestrate(
        {"taskType": "qa"},
        ["a", "b"],
        options=OrchestrationOptions(iterations=50, seed=0, execute=False),
    )
    saved = store.load_result(r.orchestration_id)
    assert saved["format"] == SAVED_FORMAT
    assert saved["best_action"] == r.best_action and saved["task_type"] == "qa"
    other = Orchestrator(store=store)  # another process, or after the record expired
    out = other.feedback(r.orchestration_id, 5)
    assert out.agent == r.best_action and out.task_type == "qa"
    assert out.credited_agents == () and len(other.registry) == 0  # nothing ran
    ran = first.orchestrate(
        {"taskType": "qa"}, ["a", "b"], options=OrchestrationOptions(iterations=50, seed=1)
    )
    last = ran.executed_steps[-1]
    out = other.feedback(ran.orchestration_id, 5)
    assert out.agent == last.agent and out.credited_agents == (last.agent,)
    assert other.registry.get(last.agent, "qa").success.alpha == 2.0
    assert other.registry.pair(last.previous_agent, last.agent, "qa").successes == 1.0
    assert store.load_result(ran.orchestration_id)["credited"] is True
    third = Orchestrator(store=store)  # a restart without the models: the summary remembers
    assert third.feedback(ran.orchestration_id, 1).duplicate and len(third.registry) == 0
    with pytest.raises(NotFoundError):
        other.feedback("never-made", 3)


def test_visualization_after_the_tree_left_memory(redis_adapter) -> None:
    from workbench.mcts.orchestrate import OrchestrationOptions

    store = RedisStore(redis_adapter, ttl_s=60)
    opts = OrchestrationOptions(iterations=300, seed=3, execute=False)
    first = Orchestrator(store=store, persist_trees=True, max_trees=1)
    r = first.orchestrate({}, ["a", "b", "c"], options=opts)
    live = first.visualization(r.orchestration_id)
    first.orchestrate({}, ["a", "b", "c"], options=opts)  # pushes the first tree out of memory
    assert first.visualization(r.orchestration_id) == live  # now read back from Redis
    other = Orchestrator(store=store, persist_trees=True)  # another process
    view = other.visualization(r.orchestration_id)
    assert view == live and view.metrics.total_nodes > 1
    assert sum(n.is_best for n in view.nodes) == len(r.best_path) + 1  # root included
    without = Orchestrator(store=store)  # not persisting trees: only memory counts
    with pytest.raises(NotFoundError):
        without.visualization(r.orchestration_id)
    with pytest.raises(NotFoundError):
        other.visualization("never-made")


FORMAT_1 = Path(__file__).parent / "data" / "saved_orchestration_v1.json"


def test_summaries_saved_before_the_format_was_numbered_still_load(redis_adapter) -> None:
    """A summary as the platform-shaped format 1 wrote it (``ab-mcts:result:<id>``, camelCase,
    no ``format`` member) still serves feedback and the visualization."""
    legacy = json.loads(FORMAT_1.read_text())
    oid = legacy["searchId"]
    store = RedisStore(redis_adapter, ttl_s=60)
    store.save_result(oid, {**legacy, "executedAgent": "c"})  # a fallback ran
    orc = Orchestrator(store=store, persist_trees=True)
    out = orc.feedback(oid, 5)
    assert out.agent == "c" and out.task_type == "qa"
    assert orc.registry.get("c", "qa").success.alpha == 2.0
    view = orc.visualization(oid)
    old = legacy["visualization"]
    assert view.orchestration_id == oid and view.metrics.total_nodes == old["metrics"]["totalNodes"]
    assert [str(n.node_id) for n in view.nodes] == [n["id"] for n in old["nodes"]]
    assert [n.is_best for n in view.nodes] == [n["isBest"] for n in old["nodes"]]
    assert [(str(e.source), str(e.target)) for e in view.edges] == [
        (e["source"], e["target"]) for e in old["edges"]
    ]
    saved = SavedOrchestration.from_dict(legacy)
    assert saved.search_metrics is not None
    assert saved.search_metrics.iterations == legacy["searchMetrics"]["iterations"]
    again = SavedOrchestration.from_dict(json.loads(json.dumps(saved.to_dict())))
    assert again == saved  # format 2 round-trips


def test_unknown_or_corrupt_summaries_are_refused() -> None:
    with pytest.raises(StorageFormatError, match="format 3"):
        SavedOrchestration.from_dict({"format": 3, "orchestration_id": "x"})
    with pytest.raises(StorageFormatError, match="format None"):
        SavedOrchestration.from_dict({"bestAction": "a"})
    with pytest.raises(StorageFormatError, match="corrupt"):
        SavedOrchestration.from_dict({"format": SAVED_FORMAT, "orchestration_id": "x"})
