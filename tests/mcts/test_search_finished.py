"""SearchState.finished stays bounded, and tell stays idempotent without ever adding a node
twice: a recent trial told again returns its node, an older one is refused as settled."""

from __future__ import annotations

import pytest

from workbench.errors import InputError
from workbench.mcts import abandon, ask, ask_batch, init, search, tell
from workbench.mcts.search import SearchState
from workbench.mcts.storage import dumps_search, loads_search
from workbench.mcts.tasks import drift_task

CAP = SearchState.MAX_FINISHED


def test_a_long_search_keeps_the_map_at_its_cap() -> None:
    r = search(drift_task(seed=0), iterations=100_000, batch_size=4, seed=0)
    state = r.state
    assert r.tree_size == 100_001 and state.next_trial_id == 100_000
    assert len(state.finished) == CAP
    # the most recent tells are the ones remembered
    assert sorted(state.finished) == list(range(100_000 - CAP, 100_000))
    assert all(state.tree.parent(n) >= 0 for n in state.finished.values())


def _told(n: int) -> tuple[SearchState, list[int]]:
    state = init(["a", "b"], seed=0)
    nodes = []
    for _ in range(n):
        (t,) = ask_batch(state, 1)
        nodes.append(tell(state, t, (t.trial_id, 0.5)))
    return state, nodes


def test_repeat_tells_recent_and_old() -> None:
    state, nodes = _told(CAP + 10)
    size = state.tree.size
    # recent: a no-op that answers the node it made
    assert tell(state, CAP + 9, ("again", 0.9)) == nodes[-1]
    assert tell(state, 10, ("again", 0.9)) == nodes[10]  # the oldest one still kept
    assert state.tree.size == size and state.tree.states[nodes[-1]] == CAP + 9
    # old: refused, nothing added
    for tid in (0, 9):
        with pytest.raises(InputError, match="settled") as err:
            tell(state, tid, ("again", 0.9))
        assert err.value.details["reason"] == "settled"
        assert err.value.details["trial_id"] == tid
    assert state.tree.size == size and len(state.finished) == CAP
    with pytest.raises(InputError, match="never asked"):
        tell(state, CAP + 10, ("x", 0.5))
    with pytest.raises(InputError, match="never asked"):
        tell(state, -1, ("x", 0.5))


def test_an_abandoned_trial_is_settled_too() -> None:
    state = init(["a"], seed=0)
    t = ask(state)
    abandon(state, t)
    with pytest.raises(InputError, match="settled"):
        tell(state, t, ("late", 0.5))
    assert state.tree.size == 1


def test_a_loaded_state_keeps_the_cap_and_the_order() -> None:
    state, nodes = _told(CAP + 3)
    back = loads_search(dumps_search(state))
    assert list(back.finished.items()) == list(state.finished.items())
    (t,) = ask_batch(back, 1)
    new = tell(back, t, ("next", 0.4))
    assert len(back.finished) == CAP and next(iter(back.finished)) == 4
    assert tell(back, t, ("next", 0.4)) == new and tell(back, CAP + 2, ("x", 0.1)) == nodes[-1]
    with pytest.raises(InputError, match="settled"):
        tell(back, 3, ("x", 0.1))
