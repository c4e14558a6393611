"""Adaptive-branching Monte Carlo tree search (AB-MCTS) and agent orchestration.

Inference-time search over generate functions (``search``, the ask/tell verbs, the async
helper), the algorithms' registry (``ALGORITHMS``), and the tree they share. The jitted
environments live in :mod:`workbench.mcts.tasks`, agent orchestration in
:mod:`workbench.mcts.orchestrate`, persistence in :mod:`workbench.mcts.storage`.

Example::

    from workbench.mcts import search
    result = search({"model_a": f, "model_b": g}, iterations=100, algorithm="ab-mcts-a")
    result.top_k(3)  # [(state, score), ...] best first
"""

from workbench.mcts.policies import (
    ABMCTSA,
    ABMCTSM,
    ALGORITHMS,
    UCT,
    Algorithm,
    ThompsonMCTS,
    get_algorithm,
    register_algorithm,
)
from workbench.mcts.search import (
    SearchResult,
    SearchState,
    Trial,
    abandon,
    ask,
    ask_batch,
    init,
    search,
    search_async,
    step,
    tell,
)
from workbench.mcts.tree import Tree

__all__ = [
    "ABMCTSA",
    "ABMCTSM",
    "ALGORITHMS",
    "UCT",
    "Algorithm",
    "SearchResult",
    "SearchState",
    "ThompsonMCTS",
    "Tree",
    "Trial",
    "abandon",
    "ask",
    "ask_batch",
    "get_algorithm",
    "init",
    "register_algorithm",
    "search",
    "search_async",
    "step",
    "tell",
]
