"""Compile (or load from Numba's cache) every kernel on a tiny input, so that the first real
search is fast. Call it at service start-up or at the top of a benchmark."""

from __future__ import annotations

import time

__all__ = ["warmup"]


def warmup(*, jitted_tasks: bool = False) -> float:
    """Run each algorithm, the orchestration search and (optionally) the jitted path once.

    Returns the seconds it took (about 0.2 s with a warm Numba cache).
    """
    from workbench.mcts.orchestrate import OrchestrationOptions, Orchestrator
    from workbench.mcts.policies import ALGORITHMS
    from workbench.mcts.search import ask_batch, init, search, tell

    t0 = time.perf_counter()

    def gen(parent: object) -> tuple[int, float]:
        return 0, 0.5

    for name in ALGORITHMS:
        search({"a": gen, "b": gen}, iterations=4, algorithm=name)
        state = init(["a"], algorithm=name)
        for trial in ask_batch(state, 2):
            tell(state, trial, (0, 0.5))
    Orchestrator().orchestrate({}, ["a", "b"], options=OrchestrationOptions(iterations=4, seed=0))
    if jitted_tasks:
        from workbench.mcts import tasks

        for task in (tasks.random_walk(3, 2), tasks.beta_generators(depth=2)):
            for algo in ("uct", "thompson"):
                tasks.run(task, 4, algorithm=algo)
    return time.perf_counter() - t0
