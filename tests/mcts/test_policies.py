"""The algorithm registry and configuration objects."""

from __future__ import annotations

import pytest

from workbench.errors import ConfigError, InputError
from workbench.mcts import ABMCTSA, ALGORITHMS, UCT, get_algorithm, register_algorithm
from workbench.mcts import types as T


def test_names() -> None:
    assert {"uct", "thompson", "ab-mcts-a", "multi-model", "ab-mcts-m"} <= set(ALGORITHMS)
    assert get_algorithm("multi-model").model_choice == "node"
    assert get_algorithm("ab-mcts-a").model_choice == "tree"
    assert get_algorithm("multi-model", model_choice="tree").per_node_actions is False


def test_registry_refuses_duplicates_and_lists_names() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_algorithm("uct", UCT)
    with pytest.raises(InputError, match="ab-mcts-a"):
        get_algorithm("alphazero")
    with pytest.raises(InputError, match="unexpected keyword"):
        get_algorithm("uct", temperature=2)
    with pytest.raises(TypeError):
        ALGORITHMS["x"] = UCT  # type: ignore[index]


def test_validation_and_params() -> None:
    with pytest.raises(ConfigError, match="dist"):
        ABMCTSA(dist="poisson")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prior_nu"):
        ABMCTSA(prior_nu=0)
    with pytest.raises(ConfigError, match="samples_per_action"):
        UCT(samples_per_action=0)
    p = UCT(exploration=2.0, samples_per_action=3).params(4, max_depth=7)
    assert p[T.P_C] == 2.0 and p[T.P_WIDTH] == 12 and p[T.P_MAX_DEPTH] == 7
    algo = get_algorithm("thompson")
    assert algo.dist == "beta" and algo.prior_alpha == 1.0 == algo.prior_beta
    assert get_algorithm(algo, dist="gaussian").dist == "gaussian"
    assert ABMCTSA().to_dict()["name"] == "ab-mcts-a"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_treequest_shaped_verbs(name: str) -> None:
    from workbench.mcts.tasks import drift_task

    algo = get_algorithm(name)
    fns = drift_task(seed=0)
    state = algo.init_tree(list(fns), seed=1)
    for _ in range(10):
        algo.step(state, fns)
    trials = algo.ask_batch(state, 2)
    for t in trials:
        algo.tell(state, t, fns[t.action](t.parent_state))
    t = algo.ask(state)
    node = algo.tell(state, t, (0.0, 0.5))
    assert algo.tell(state, t, (1.0, 0.9)) == node  # idempotent
    assert state.tree.size == 14


def test_pending_knob_and_ab_mcts_m_defaults() -> None:
    from workbench.mcts import ABMCTSM

    assert ABMCTSA().pending == "virtual-loss"
    assert get_algorithm("uct", pending="ignore").pending == "ignore"
    with pytest.raises(ConfigError, match="pending"):
        ABMCTSA(pending="optimistic")  # type: ignore[arg-type]
    assert ABMCTSM().tau_min == 0.3
    assert ABMCTSM().to_dict()["pending"] == "virtual-loss"
