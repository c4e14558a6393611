"""Inference-time tree search over Python generate functions.

Two ways to drive a search:

* :func:`search` (and :func:`search_async` for ``async`` generate functions with bounded
  concurrency) runs a whole search and returns a :class:`SearchResult`;
* the caller-driven verbs :func:`init`, :func:`ask`, :func:`ask_batch`, :func:`tell` and
  :func:`step` work on a caller-owned :class:`SearchState` (TreeQuest's shape, always in
  place). Trials asked together may run concurrently: each pending trial adds a virtual
  observation to the posteriors on its path so the next ask goes elsewhere. ``tell`` is
  idempotent (a second tell of the same trial changes nothing and returns the same node).

A generate function is ``f(parent_state or None) -> (state, score)`` with ``score`` in
[0, 1]; the root has no state, so its children are made from ``None``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from workbench import metrics
from workbench.errors import InputError
from workbench.mcts import _kernels
from workbench.mcts._random import rng_seed
from workbench.mcts.policies import Algorithm, get_algorithm
from workbench.mcts.tree import Tree
from workbench.mcts.types import F_SCORE, I_DEPTH

__all__ = [
    "CancelToken",
    "SearchResult",
    "SearchState",
    "Trial",
    "abandon",
    "ask",
    "ask_batch",
    "init",
    "search",
    "search_async",
    "step",
    "tell",
]

logger = logging.getLogger(__name__)

_SEARCHES = metrics.counter(
    "workbench_mcts_searches_total",
    "Searches run, by algorithm and stop reason",
    ["algorithm", "stop_reason"],
)
_CALLS = metrics.counter(
    "workbench_mcts_generate_calls_total", "Generate-function calls made by searches"
)


class CancelToken(Protocol):
    """Anything with ``is_set() -> bool`` (``threading.Event``, ``asyncio.Event``)."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Trial:
    """One expansion to run: call generator ``action`` on ``parent_state``.

    Attributes:
        trial_id: Unique within its search state.
        node: Id of the node to expand (0 is the root).
        action: Name of the generate function to call.
        parent_state: The state of ``node`` (``None`` for the root).
    """

    trial_id: int
    node: int
    action: str
    parent_state: Any


@dataclass(eq=False)
class SearchState:
    """Caller-owned state of a search (mutated in place by the verbs).

    Attributes:
        algorithm: The configuration it runs.
        tree: The tree with arrays and user states.
        params: The kernels' parameter vector.
        rng: ``uint64[4]`` xoshiro256** state; a search replays exactly from its seed.
        max_depth: Deepest depth a generated node may have (``None``: unlimited).
        running: Pending trials: id -> (node, action index).
        finished: Told trials: id -> id of the node they created, for the most recent
            :attr:`MAX_FINISHED` tells only (oldest forgotten first), so a long search keeps
            it bounded; :func:`tell` refuses a trial that is neither pending nor remembered.
        next_trial_id: Id of the next trial.
    """

    algorithm: Algorithm
    tree: Tree
    params: np.ndarray
    rng: np.ndarray
    max_depth: int | None = None
    running: dict[int, tuple[int, int]] = field(default_factory=dict)
    finished: dict[int, int] = field(default_factory=OrderedDict)
    next_trial_id: int = 0

    #: Told trials that ``finished`` remembers (a retried tell comes soon after the first).
    MAX_FINISHED = 4096

    @property
    def actions(self) -> tuple[str, ...]:
        return self.tree.actions


def init(
    actions: list[str] | tuple[str, ...] | Mapping[str, Any],
    *,
    algorithm: str | Algorithm = "ab-mcts-a",
    seed: int = 0,
    max_depth: int | None = None,
    capacity: int = 1024,
    **knobs: Any,
) -> SearchState:
    """A fresh search state over ``actions`` (generator names, or a mapping whose keys are)."""
    algo = get_algorithm(algorithm, **knobs)
    names = tuple(actions.keys()) if isinstance(actions, Mapping) else tuple(actions)
    if max_depth is not None and max_depth < 1:
        raise InputError(f"max_depth: must be >= 1 or None, got {max_depth}")
    if not isinstance(seed, int | np.integer):
        raise InputError(f"seed: must be an integer, got {seed!r}")
    tree = Tree.empty(names, capacity=capacity, per_node_actions=algo.per_node_actions)
    return SearchState(
        algorithm=algo,
        tree=tree,
        params=algo.params(len(names), max_depth=max_depth),
        rng=rng_seed(int(seed)),
        max_depth=max_depth,
    )


def ask(state: SearchState) -> Trial:
    """The next expansion to run (marked pending until told)."""
    return ask_batch(state, 1)[0]


def ask_batch(state: SearchState, batch_size: int) -> list[Trial]:
    """``batch_size`` expansions that may run concurrently.

    Each trial stays pending until it is told or abandoned. How pending trials shape the
    next ask is the algorithm's ``pending`` knob: with ``"virtual-loss"`` (the default)
    each one counts as a pseudo-observation of ``virtual_loss`` on its path, so a batch
    spreads over the tree; with ``"ignore"`` every trial of the batch is drawn from the
    told results alone, trials still pending from earlier asks included (their marks are
    lifted while the batch is drawn and restored after, so ``tell`` and ``abandon`` work the
    same in both modes).
    """
    if batch_size < 1:
        raise InputError(f"batch_size: must be >= 1, got {batch_size}")
    t = state.tree
    out = []
    ignore = state.algorithm.pending == "ignore"
    if ignore:
        for node, _ in state.running.values():
            _kernels.release_pending(t.ints, node)
    for _ in range(batch_size):
        node, act = _kernels.select_expansion(
            t.ints,
            t.floats,
            t.action_stats,
            t.node_action_stats,
            t.header,
            state.params,
            state.rng,
        )
        if ignore:
            _kernels.release_pending(t.ints, node)
        tid = state.next_trial_id
        state.next_trial_id += 1
        state.running[tid] = (int(node), int(act))
        out.append(Trial(tid, int(node), t.actions[act], t.states[node]))
    if ignore:
        for node, _ in state.running.values():
            _kernels.mark_pending(t.ints, node)
    return out


def tell(state: SearchState, trial: Trial | int, result: tuple[Any, float]) -> int:
    """Add the result of a trial to the tree; returns the new node's id.

    Idempotent: telling a trial again returns the node it created and changes nothing, for
    the last :attr:`SearchState.MAX_FINISHED` trials told. An older told trial (or an
    abandoned one) is refused with an ``InputError`` whose ``details["reason"]`` is
    ``"settled"``: trial ids grow with each ask, so an id below ``next_trial_id`` that is not
    pending was told or abandoned before, and telling it again must not add a second node.

    Raises:
        InputError: unknown trial id, a settled trial (see above), or a result that is not
            ``(state, score in [0, 1])``.
    """
    tid = trial.trial_id if isinstance(trial, Trial) else int(trial)
    done = state.finished.get(tid)
    if done is not None:
        return done
    pending = state.running.get(tid)
    if pending is None:
        if 0 <= tid < state.next_trial_id:
            raise InputError(
                f"trial {tid} is settled: it was told or abandoned before, and only the last "
                f"{state.MAX_FINISHED} told trials remember their node; nothing was added",
                details={"field": "trial", "trial_id": tid, "reason": "settled"},
            )
        raise InputError(f"trial {tid} was never asked in this search")
    user_state, score = _check_result(result, state.tree.actions[pending[1]])
    del state.running[tid]
    t = state.tree
    t.reserve(1)
    new = _kernels.add_child(
        t.ints,
        t.floats,
        t.action_stats,
        t.node_action_stats,
        t.header,
        pending[0],
        pending[1],
        score,
        True,
    )
    t.states.append(user_state)
    finished = state.finished
    if not isinstance(finished, OrderedDict):  # given as a dict (a loaded state): same order
        finished = state.finished = OrderedDict(finished)
    finished[tid] = int(new)
    while len(finished) > state.MAX_FINISHED:  # forget the oldest tells, in O(1) each
        finished.popitem(last=False)
    return int(new)


def abandon(state: SearchState, trial: Trial | int) -> None:
    """Forget a pending trial without a result (it failed or was cancelled)."""
    tid = trial.trial_id if isinstance(trial, Trial) else int(trial)
    pending = state.running.pop(tid, None)
    if pending is not None:
        _kernels.release_pending(state.tree.ints, pending[0])


def step(state: SearchState, generate_fns: Mapping[str, Callable[[Any], Any]]) -> int:
    """Ask one trial, run its generate function and tell the result; returns the new node."""
    trial = ask(state)
    try:
        result = generate_fns[trial.action](trial.parent_state)
    except BaseException:
        abandon(state, trial)
        raise
    return tell(state, trial, result)


def _check_result(result: Any, action: str) -> tuple[Any, float]:
    try:
        user_state, score = result
        score = float(score)
    except (TypeError, ValueError):
        raise InputError(
            f"generate function {action!r} must return (state, score), got {result!r:.200}"
        ) from None
    if not 0.0 <= score <= 1.0:  # also rejects NaN
        raise InputError(f"generate function {action!r} returned score {score!r}; use [0, 1]")
    return user_state, score


@dataclass(frozen=True)
class SearchResult:
    """Outcome of :func:`search`.

    Attributes:
        best_score: Highest score of any generated node (``nan`` if none was generated).
        best_state: State of that node (``None`` if none).
        iterations: Generate-function calls made (equals the requested number unless a
            limit or cancellation stopped the search; see ``stop_reason``).
        tree_size: Nodes in the tree, root included.
        depth: Largest node depth.
        generator_counts: Calls per generator name.
        elapsed_s: Wall time of the whole search, seconds.
        generate_s: Of that, time spent inside generate functions, seconds.
        stop_reason: ``"iterations"``, ``"time_limit"``, ``"budget"`` or ``"cancelled"``.
        algorithm: Name of the algorithm.
        seed: Seed of the search.
        state: The search state, to inspect, save or continue.
    """

    best_score: float
    best_state: Any
    iterations: int
    tree_size: int
    depth: int
    generator_counts: dict[str, int]
    elapsed_s: float
    generate_s: float
    stop_reason: str
    algorithm: str
    seed: int
    state: SearchState = field(repr=False)

    @property
    def steps_per_s(self) -> float:
        """Generate-function calls per second of wall time."""
        return self.iterations / self.elapsed_s if self.elapsed_s > 0 else math.inf

    def top_k(self, k: int) -> list[tuple[Any, float]]:
        """The ``k`` best ``(state, score)`` pairs, best first."""
        t = self.state.tree
        return [(t.states[i], float(t.floats[F_SCORE, i])) for i in t.top_nodes(k)]

    def to_dict(self, *, top_k: int = 0) -> dict[str, Any]:
        """JSON-ready summary (states only for ``top_k`` > 0, and only if JSON-able)."""
        out: dict[str, Any] = {
            "best_score": None if math.isnan(self.best_score) else self.best_score,
            "iterations": self.iterations,
            "tree_size": self.tree_size,
            "depth": self.depth,
            "generator_counts": dict(self.generator_counts),
            "elapsed_s": self.elapsed_s,
            "generate_s": self.generate_s,
            "steps_per_s": self.steps_per_s,
            "stop_reason": self.stop_reason,
            "algorithm": self.algorithm,
            "seed": self.seed,
        }
        if top_k:
            out["top_k"] = [{"state": s, "score": v} for s, v in self.top_k(top_k)]
        return out


def _result(
    state: SearchState, seed: int, calls: int, t0: float, gen_s: float, reason: str
) -> SearchResult:
    t = state.tree
    _SEARCHES.labels(state.algorithm.name, reason).inc()
    _CALLS.inc(calls)
    top = t.top_nodes(1)
    best_score = float(t.floats[F_SCORE, top[0]]) if top else math.nan
    return SearchResult(
        best_score=best_score,
        best_state=t.states[top[0]] if top else None,
        iterations=calls,
        tree_size=t.size,
        depth=int(t.ints[I_DEPTH, : t.size].max()),
        generator_counts=t.generator_counts(),
        elapsed_s=time.perf_counter() - t0,
        generate_s=gen_s,
        stop_reason=reason,
        algorithm=state.algorithm.name,
        seed=seed,
        state=state,
    )


class _Limits:
    """Time limit, budget and cancellation checks shared by the sync and async loops."""

    def __init__(
        self,
        actions: tuple[str, ...],
        time_limit_s: float | None,
        budget: float | None,
        costs: Mapping[str, float] | None,
        cancel: CancelToken | None,
        t0: float,
    ) -> None:
        if time_limit_s is not None and not time_limit_s > 0:
            raise InputError(f"time_limit_s: must be > 0 or None, got {time_limit_s}")
        if budget is not None and not budget >= 0:
            raise InputError(f"budget: must be >= 0 or None, got {budget}")
        costs = dict(costs or {})
        unknown = set(costs) - set(actions)
        if unknown:
            raise InputError(f"costs: unknown generators {sorted(unknown)}")
        self.costs = [float(costs.get(a, 1.0)) for a in actions]
        if any(not (math.isfinite(c) and c >= 0) for c in self.costs):
            raise InputError("costs: every cost must be a finite number >= 0")
        self.deadline = None if time_limit_s is None else t0 + time_limit_s
        self.budget = budget
        self.spent = 0.0
        self.cancel = cancel

    def stop(self, action: int) -> str | None:
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return "time_limit"
        if self.budget is not None:
            if self.spent + self.costs[action] > self.budget:
                return "budget"
            self.spent += self.costs[action]
        return None


def search(
    generate_fns: Mapping[str, Callable[[Any], Any]],
    *,
    iterations: int,
    algorithm: str | Algorithm = "ab-mcts-a",
    seed: int = 0,
    batch_size: int = 1,
    max_depth: int | None = None,
    time_limit_s: float | None = None,
    budget: float | None = None,
    costs: Mapping[str, float] | None = None,
    cancel: CancelToken | None = None,
    state: SearchState | None = None,
    **knobs: Any,
) -> SearchResult:
    """Run a search that calls the generate functions ``iterations`` times in total.

    Args:
        generate_fns: Name -> ``f(parent_state or None) -> (state, score in [0, 1])``.
        iterations: Number of generate-function calls (>= 0).
        algorithm: A name from ``ALGORITHMS`` or an :class:`~workbench.mcts.policies.Algorithm`.
        seed: Seed of the search's random numbers (the generate functions own theirs).
        batch_size: Trials asked together before their results are told (they are run
            one after another here; use :func:`search_async` to run them concurrently).
            How the trials of a batch avoid each other is the ``pending`` knob (see
            :func:`ask_batch`); at 4 and 16 the default matches sequential search at equal
            budget (``tests/mcts/test_search.py::test_batch_quality``).
        max_depth: Deepest depth of a generated node (the root is depth 0).
        time_limit_s: Stop asking once this much wall time has passed.
        budget: Stop before a call whose cost would exceed it; ``costs`` gives each
            generator's cost per call (default 1.0).
        cancel: Stop when ``cancel.is_set()``.
        state: Continue this state instead of starting a new one (``algorithm``, ``seed``
            and ``max_depth`` are then taken from it).
        **knobs: Fields of the algorithm's configuration (``exploration``, ``dist``, ...).

    Returns:
        A :class:`SearchResult`; ``result.state`` holds the tree.
    """
    t0 = time.perf_counter()
    if not isinstance(generate_fns, Mapping) or not generate_fns:
        raise InputError("generate_fns: need a non-empty mapping of name -> function")
    for name, fn in generate_fns.items():
        if not callable(fn):
            raise InputError(f"generate_fns[{name!r}] is not callable")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise InputError(f"iterations: must be an integer >= 0, got {iterations!r}")
    if batch_size < 1:
        raise InputError(f"batch_size: must be >= 1, got {batch_size}")
    if state is None:
        state = init(
            generate_fns,
            algorithm=algorithm,
            seed=seed,
            max_depth=max_depth,
            capacity=iterations + 1,
            **knobs,
        )
    elif tuple(generate_fns) != state.actions:
        raise InputError(f"generate_fns: names {list(generate_fns)} differ from the state's")
    limits = _Limits(state.actions, time_limit_s, budget, costs, cancel, t0)
    fns = [generate_fns[a] for a in state.actions]
    state.tree.reserve(iterations)
    if batch_size == 1:
        calls, gen_s, reason = _run_sequential(state, fns, iterations, limits)
    else:
        calls, gen_s, reason = _run_batched(state, fns, iterations, batch_size, limits)
    return _result(state, seed, calls, t0, gen_s, reason)


def _run_sequential(
    state: SearchState, fns: list[Callable[[Any], Any]], iterations: int, limits: _Limits
) -> tuple[int, float, str]:
    """The hot loop: one kernel call per step (tell the last result and select the next)."""
    t = state.tree
    ints, floats, acts, nacts, header = (
        t.ints,
        t.floats,
        t.action_stats,
        t.node_action_stats,
        t.header,
    )
    params, rng, states, names = state.params, state.rng, t.states, t.actions
    tell_and_select = _kernels.tell_and_select
    perf = time.perf_counter
    gen_s = 0.0
    reason = "iterations"
    if iterations == 0:
        return 0, 0.0, reason
    _, node, act = tell_and_select(ints, floats, acts, nacts, header, params, rng, -1, 0, 0.0)
    calls = 0
    # about 12 us per step at 80,000 steps/s: skip the limit checks when none is set, and
    # call the validator only for a result that fails the inline check
    limited = limits.cancel is not None or limits.deadline is not None or limits.budget is not None
    try:
        while True:
            if limited:
                stop = limits.stop(act)
                if stop is not None:
                    reason = stop
                    _kernels.release_pending(ints, node)
                    break
            g0 = perf()
            result = fns[act](states[node])
            gen_s += perf() - g0
            if type(result) is tuple and len(result) == 2 and type(result[1]) is float:
                user_state, score = result
                if not 0.0 <= score <= 1.0:
                    _check_result(result, names[act])
            else:
                user_state, score = _check_result(result, names[act])
            states.append(user_state)
            calls += 1
            if calls == iterations:
                _kernels.add_child(ints, floats, acts, nacts, header, node, act, score, True)
                break
            _, node, act = tell_and_select(
                ints, floats, acts, nacts, header, params, rng, node, act, score
            )
    except BaseException:
        if len(states) > header[0]:  # the failing result was appended but not added
            states.pop()
        if calls < iterations:
            _kernels.release_pending(ints, node)
        raise
    return calls, gen_s, reason


def _run_batched(
    state: SearchState,
    fns: list[Callable[[Any], Any]],
    iterations: int,
    batch_size: int,
    limits: _Limits,
) -> tuple[int, float, str]:
    calls = 0
    gen_s = 0.0
    reason = "iterations"
    index = {name: i for i, name in enumerate(state.actions)}
    while calls < iterations:
        trials = ask_batch(state, min(batch_size, iterations - calls))
        results = []
        for k, trial in enumerate(trials):
            stop = limits.stop(index[trial.action])
            if stop is not None:
                reason = stop
                for rest in trials[k:]:
                    abandon(state, rest)
                break
            g0 = time.perf_counter()
            try:
                results.append((trial, fns[index[trial.action]](trial.parent_state)))
            except BaseException:
                for rest in trials[k:]:
                    abandon(state, rest)
                for done, res in results:
                    tell(state, done, res)
                raise
            gen_s += time.perf_counter() - g0
            calls += 1
        for trial, res in results:
            tell(state, trial, res)
        if reason != "iterations":
            break
    return calls, gen_s, reason


async def search_async(
    generate_fns: Mapping[str, Callable[[Any], Any]],
    *,
    iterations: int,
    concurrency: int = 4,
    algorithm: str | Algorithm = "ab-mcts-a",
    seed: int = 0,
    max_depth: int | None = None,
    time_limit_s: float | None = None,
    budget: float | None = None,
    costs: Mapping[str, float] | None = None,
    cancel: CancelToken | None = None,
    **knobs: Any,
) -> SearchResult:
    """:func:`search` for ``async`` (or plain) generate functions, at most ``concurrency``
    calls in flight. Each finished call is told at once and a new trial asked, so later
    trials see earlier results. When the time limit or ``cancel`` stops the search, calls
    still in flight are cancelled; cancelling the task itself cancels them too.
    """
    t0 = time.perf_counter()
    if concurrency < 1:
        raise InputError(f"concurrency: must be >= 1, got {concurrency}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise InputError(f"iterations: must be an integer >= 0, got {iterations!r}")
    if not isinstance(generate_fns, Mapping) or not generate_fns:
        raise InputError("generate_fns: need a non-empty mapping of name -> function")
    state = init(
        generate_fns,
        algorithm=algorithm,
        seed=seed,
        max_depth=max_depth,
        capacity=iterations + 1,
        **knobs,
    )
    limits = _Limits(state.actions, time_limit_s, budget, costs, cancel, t0)
    index = {name: i for i, name in enumerate(state.actions)}
    gen_s = 0.0

    async def run(trial: Trial) -> tuple[Trial, Any, float]:
        g0 = time.perf_counter()
        out = generate_fns[trial.action](trial.parent_state)
        if inspect.isawaitable(out):
            out = await out
        return trial, out, time.perf_counter() - g0

    in_flight: dict[asyncio.Task[Any], Trial] = {}
    launched = 0
    told = 0
    reason = "iterations"
    try:
        while True:
            while reason == "iterations" and launched < iterations and len(in_flight) < concurrency:
                trial = ask(state)
                stop = limits.stop(index[trial.action])
                if stop is not None:
                    abandon(state, trial)
                    reason = stop
                    break
                in_flight[asyncio.ensure_future(run(trial))] = trial
                launched += 1
            if not in_flight:
                break
            timeout = None
            if limits.deadline is not None:
                timeout = max(limits.deadline - time.perf_counter(), 0.0)
            done, _ = await asyncio.wait(
                in_flight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                trial = in_flight.pop(task)
                try:
                    _, out, dt = task.result()
                except BaseException:
                    abandon(state, trial)
                    raise
                gen_s += dt
                tell(state, trial, out)
                told += 1
            if not done:  # the deadline passed with calls in flight
                reason = "time_limit"
            if reason != "iterations" and in_flight:
                break
    finally:
        for task, trial in in_flight.items():
            task.cancel()
            abandon(state, trial)
    return _result(state, seed, told, t0, gen_s, reason)
