"""Adaptive-branching Monte Carlo tree search (AB-MCTS) and agent orchestration.

* inference-time search over generate functions: :func:`search`, the caller-driven verbs
  :func:`init` / :func:`ask` / :func:`ask_batch` / :func:`tell` / :func:`step`, and
  :func:`search_async` for ``async`` generate functions with bounded concurrency;
* the algorithms' registry :data:`ALGORITHMS` (``"uct"``, ``"thompson"``, ``"ab-mcts-a"``,
  ``"multi-model"``, ``"ab-mcts-m"``) and their configuration objects;
* agent orchestration: :func:`orchestrate`, :func:`feedback` and :class:`Orchestrator`;
* a bounded picture of a tree (nodes, best path, wider-vs-deeper decisions over time):
  :func:`tree_graph` / :class:`TreeGraph`, plotted by :mod:`workbench.reports.mcts_figures`;
* jitted environments in :mod:`workbench.mcts.tasks`, persistence in
  :mod:`workbench.mcts.storage`.

Example::

    from workbench.mcts import search
    result = search({"model_a": f, "model_b": g}, iterations=100, algorithm="ab-mcts-a")
    result.top_k(3)  # [(state, score), ...] best first
"""

from workbench.mcts.graph import TreeGraph, tree_graph
from workbench.mcts.models import ModelRegistry
from workbench.mcts.orchestrate import (
    AgentOutcome,
    ExecutedStep,
    OrchestrationOptions,
    OrchestrationResult,
    Orchestrator,
    feedback,
    orchestrate,
)
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
from workbench.mcts.warmup import warmup

__all__ = [
    "ABMCTSA",
    "ABMCTSM",
    "ALGORITHMS",
    "UCT",
    "AgentOutcome",
    "Algorithm",
    "ExecutedStep",
    "ModelRegistry",
    "OrchestrationOptions",
    "OrchestrationResult",
    "Orchestrator",
    "SearchResult",
    "SearchState",
    "ThompsonMCTS",
    "Tree",
    "TreeGraph",
    "Trial",
    "abandon",
    "ask",
    "ask_batch",
    "feedback",
    "get_algorithm",
    "init",
    "orchestrate",
    "register_algorithm",
    "search",
    "search_async",
    "step",
    "tell",
    "tree_graph",
    "warmup",
]
