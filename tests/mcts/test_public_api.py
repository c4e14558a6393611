"""The public surface of workbench.mcts, pinned, and the weight of its import path."""

from __future__ import annotations

import subprocess
import sys

import workbench.mcts as mcts

PUBLIC = [
    "ABMCTSA",
    "ABMCTSM",
    "ALGORITHMS",
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
    "UCT",
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


def test_exported_members() -> None:
    assert sorted(mcts.__all__) == sorted(PUBLIC)
    for name in mcts.__all__:
        assert hasattr(mcts, name)


def test_import_path_stays_light() -> None:
    """scipy's heavy parts, pandas, plotly, torch and aiohttp (the HTTP layer: the service and
    the auto-pilot are domain code) stay out of ``import workbench.mcts`` and a first search
    (Numba itself imports the top-level ``scipy`` package to check its version; peak memory
    is the benchmark's business)."""
    code = (
        "import sys, workbench.mcts as m, workbench.mcts.tasks, workbench.mcts.storage\n"
        "import workbench.mcts.service, workbench.mcts.autopilot\n"
        "m.search({'a': lambda p: (0, 0.5)}, iterations=10)\n"
        "names = ('scipy.stats', 'scipy.special', 'pandas', 'plotly', 'torch', 'aiohttp',\n"
        "         'pydantic', 'workbench.api')\n"
        "heavy = [x for x in names if x in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
