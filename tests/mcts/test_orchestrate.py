"""Agent orchestration: contract, limits, planning sequences, learning from outcomes, feedback.

The plan-search kernel is compared with a plain-Python twin (``naive_plan_search`` below)
that consumes random numbers in the same order.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from tests.mcts import naive
from workbench.errors import InputError, NotFoundError
from workbench.mcts import _plan_kernels
from workbench.mcts._random import rng_seed
from workbench.mcts.models import START, ModelRegistry
from workbench.mcts.orchestrate import (
    END,
    AgentOutcome,
    OrchestrationOptions,
    Orchestrator,
    default_orchestrator,
    feedback,
    orchestrate,
)

AGENTS = ["planner", "retriever", "synthesizer", "coder", "personal-assistant"]
TRUE_P = {
    "planner": 0.3,
    "retriever": 0.5,
    "synthesizer": 0.9,
    "coder": 0.4,
    "personal-assistant": 0.2,
}


def executor(seed: int = 0):
    rng = np.random.default_rng(seed)

    def run(agent: str, context: object) -> AgentOutcome:
        return AgentOutcome(float(rng.random() < TRUE_P.get(agent, 0.5)), 800.0, 200.0)

    return run


def test_result_shape_and_determinism() -> None:
    orc = Orchestrator()
    opts = OrchestrationOptions(iterations=300, seed=3, execute=False)
    a = orc.orchestrate({"userRequest": "hi"}, AGENTS, options=opts)
    b = Orchestrator().orchestrate({"userRequest": "hi"}, AGENTS, options=opts)
    assert [s.agent for s in a.best_path] == [s.agent for s in b.best_path]
    assert a.best_action in AGENTS and 0 <= a.confidence <= 1
    # a complete plan (an end node, or a node at max_depth) is re-simulated, not expanded
    assert a.search_metrics.iterations == 300 and 0 < a.search_metrics.nodes_explored <= 300
    d = json.loads(json.dumps(a.to_dict()))  # JSON-ready
    assert set(d) >= {
        "orchestration_id",
        "best_action",
        "confidence",
        "search_metrics",
        "execution_plan",
        "recommendations",
        "alternatives",
    }
    assert d["execution_plan"]["risk_assessment"] in {"low", "medium", "high"}
    assert d["execution_path"] == [s.agent for s in a.best_path] == list(a.execution_path)
    assert len(a.alternatives) <= 3 and a.outcome is None
    for path in (a.best_path, *a.alternatives):  # a plan: distinct agents, one per level
        assert all(s.depth == i + 1 for i, s in enumerate(path))
        names = [s.agent for s in path]
        assert len(names) == len(set(names)) and END not in names


def test_limits() -> None:
    orc = Orchestrator()
    with pytest.raises(InputError, match="agents"):
        orc.orchestrate({}, [f"a{i}" for i in range(101)])
    with pytest.raises(InputError, match="iterations"):
        OrchestrationOptions(iterations=10_001)
    assert OrchestrationOptions(iterations=20_000, max_iterations=50_000).iterations == 20_000
    with pytest.raises(InputError):
        orc.orchestrate({}, ["a", "a"])
    r = orc.orchestrate({}, ["a", "b"], options=OrchestrationOptions(iterations=10_000, budget=1))
    assert r.search_metrics.iterations < 10_000 and r.search_metrics.budget_left == 0


def test_siblings_are_distinct_agents() -> None:
    orc = Orchestrator()
    r = orc.orchestrate({}, AGENTS, options=OrchestrationOptions(iterations=2000, seed=1))
    tree = orc._records[r.orchestration_id].tree
    assert tree is not None
    for node in range(tree.size):
        acts = [int(tree.ints[5, c]) for c in tree.children(node)]
        assert len(acts) == len(set(acts))


def test_learns_the_best_agent_from_outcomes() -> None:
    """After 150 orchestrations with real outcomes, the best agent (success 0.9 vs <= 0.5)
    is chosen in at least 40 of the last 50 (seeded; deterministic)."""
    orc = Orchestrator()
    run = executor(0)
    picks = [
        orc.orchestrate(
            {"taskType": "qa"}, AGENTS, run, options=OrchestrationOptions(iterations=200, seed=i)
        ).best_action
        for i in range(150)
    ]
    assert Counter(picks[-50:])["synthesizer"] >= 40
    ranks = orc.registry.rankings("qa")
    assert ranks[0]["agent"] == "synthesizer"


def test_model_executor_and_speed() -> None:
    orc = Orchestrator()
    opts = OrchestrationOptions(iterations=1000, seed=0)
    orc.orchestrate({}, AGENTS, options=opts)
    t0 = time.perf_counter()
    r = orc.orchestrate({}, AGENTS, options=opts)
    assert time.perf_counter() - t0 < 0.5  # generous: the benchmark measures the real figure
    assert r.outcome is not None and r.reward is not None
    assert r.outcome.response == {"predicted": True}


def test_failing_executor_is_an_observation() -> None:
    def boom(agent: str, ctx: object) -> AgentOutcome:
        raise RuntimeError("agent down")

    orc = Orchestrator()
    r = orc.orchestrate({}, ["a", "b"], boom, options=OrchestrationOptions(iterations=50, seed=0))
    assert r.outcome is not None and r.outcome.success == 0 and r.outcome.error == "agent down"
    assert orc.registry.get(r.best_action).success.beta == 2.0


def test_feedback_and_visualization() -> None:
    orc = Orchestrator()
    r = orc.orchestrate({"taskType": "t"}, AGENTS, options=OrchestrationOptions(iterations=100))
    last = r.executed_steps[-1]
    assert last.learnt and r.executed_agent == last.agent
    before = orc.registry.get(last.agent, "t").success.alpha
    out = orc.feedback(r.orchestration_id, 5)
    # the learnt success of the last step is replaced by the rating's, not added to
    after = orc.registry.get(last.agent, "t").success.alpha
    assert out.reward == 1.0 and after == pytest.approx(before + 1.0 - last.outcome.success)
    assert out.credited_agents == (last.agent,) and not out.duplicate
    models = orc.registry.to_dict()
    again = orc.feedback(r.orchestration_id, reward={"quality": 0.2, "speed": 0.1, "cost": 0.0})
    assert again.duplicate and again.credited_agents == () and orc.registry.to_dict() == models
    with pytest.raises(InputError):
        orc.feedback(r.orchestration_id, 6)
    with pytest.raises(InputError):
        orc.feedback(r.orchestration_id)
    with pytest.raises(NotFoundError):
        orc.feedback("nope", 3)
    viz = orc.visualization(r.orchestration_id)
    assert viz.metrics.total_nodes == r.search_metrics.nodes_explored + 1
    assert any(n.is_best for n in viz.nodes)
    assert {e.target for e in viz.edges} <= {n.node_id for n in viz.nodes}
    assert orc.statistics().total_orchestrations == 1
    orc.reset()
    assert orc.statistics().total_orchestrations == 0 and len(orc.registry) == 0


def test_bounded_records() -> None:
    orc = Orchestrator(max_records=5, max_trees=2)
    ids = [
        orc.orchestrate({}, ["a"], options=OrchestrationOptions(iterations=5)).orchestration_id
        for _ in range(8)
    ]
    with pytest.raises(NotFoundError):
        orc.get(ids[0])
    assert orc.get(ids[-1]).orchestration_id == ids[-1]
    with pytest.raises(NotFoundError):
        orc.visualization(ids[-3])
    orc.visualization(ids[-1])


def test_module_functions() -> None:
    r = orchestrate({}, ["x", "y"], options=OrchestrationOptions(iterations=20))
    assert feedback(r.orchestration_id, 3).reward == pytest.approx(0.6)
    assert default_orchestrator().get(r.orchestration_id) is r


def test_cancel_and_metrics() -> None:
    import threading

    from workbench import metrics

    ev = threading.Event()
    ev.set()
    r = Orchestrator().orchestrate(
        {}, ["a", "b"], options=OrchestrationOptions(iterations=5000), cancel=ev
    )
    assert r.search_metrics.iterations == 0 and r.best_action == "fallback"
    text = metrics.render().decode()
    assert "workbench_mcts_orchestrations_total" in text
    assert "workbench_mcts_searches_total" in text


def test_open_breaker_falls_back_to_the_next_best_agent() -> None:
    opts = OrchestrationOptions(iterations=200, seed=4)
    calls: list[str] = []

    def run(agent: str, ctx: object) -> AgentOutcome:
        calls.append(agent)
        return AgentOutcome(1.0, 100.0, 10.0)

    orc = Orchestrator()
    plan = orc.orchestrate({}, AGENTS, run, options=replace(opts, execute=False))
    assert calls == [] and plan.executed_agent is None
    orc.breakers.get(plan.best_action).open()
    r = orc.orchestrate({}, AGENTS, run, options=opts)  # same seed: the same search
    assert r.best_action == plan.best_action
    assert r.skipped_agents[0] == plan.best_action
    assert calls and calls[0] != plan.best_action and r.executed_path == tuple(calls)
    assert r.executed_agent == calls[-1] and plan.best_action not in calls
    assert r.to_dict()["executed_agent"] == r.executed_agent
    # the executed agents' models learnt, the skipped one's did not
    assert all(orc.registry.get(a).success.alpha == 2.0 for a in calls)
    assert orc.registry.get(plan.best_action).success.alpha == 1.0
    assert orc.statistics().circuit_breaker_state == "OPEN"
    assert any("Circuit breakers open" in s for s in orc.recommendations())
    fb = orc.feedback(r.orchestration_id, 5)
    assert fb.agent == r.executed_agent


def test_failing_agents_trip_their_breakers_until_nothing_runs() -> None:
    calls: list[str] = []

    def down(agent: str, ctx: object) -> AgentOutcome:
        calls.append(agent)
        raise RuntimeError("agent down")

    orc = Orchestrator()
    opts = OrchestrationOptions(iterations=50, seed=1)
    for _ in range(6):  # 3 failures open each of the 2 breakers
        orc.orchestrate({}, ["a", "b"], down, options=opts)
    assert Counter(calls) == {"a": 3, "b": 3}
    r = orc.orchestrate({}, ["a", "b"], down, options=opts)
    assert len(calls) == 6  # nothing was called
    assert r.outcome is None and r.executed_agent is None
    assert set(r.skipped_agents) == {"a", "b"}
    assert orc.statistics().circuit_breakers == {"a": "OPEN", "b": "OPEN"}


def test_agent_time_limit() -> None:
    release = threading.Event()

    def hangs(agent: str, ctx: object) -> AgentOutcome:
        release.wait()
        return AgentOutcome(1.0, 1.0)

    orc = Orchestrator()
    try:
        opts = OrchestrationOptions(iterations=50, seed=0, agent_timeout_s=0.05)
        t0 = time.perf_counter()
        r = orc.orchestrate({}, ["a", "b"], hangs, options=opts)
        assert time.perf_counter() - t0 < 5
        assert r.outcome is not None and r.outcome.success == 0
        assert "no result within 0.05 s" in (r.outcome.error or "")
        assert orc.breakers.get(r.executed_agent or "").failures == 1
    finally:
        release.set()
    with pytest.raises(InputError, match="agent_timeout_s"):
        OrchestrationOptions(agent_timeout_s=0)


def test_orchestrate_async_matches_the_sync_path_and_runs_concurrently() -> None:
    opts = OrchestrationOptions(iterations=300, seed=9)
    in_flight = {"now": 0, "max": 0}

    async def agent_call(agent: str, ctx: object) -> AgentOutcome:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.01)  # an LLM call in flight, so the others can start
        in_flight["now"] -= 1
        return AgentOutcome(float(TRUE_P[agent] > 0.35), 120.0, 50.0)

    def agent_call_sync(agent: str, ctx: object) -> AgentOutcome:
        return AgentOutcome(float(TRUE_P[agent] > 0.35), 120.0, 50.0)

    a = asyncio.run(Orchestrator().orchestrate_async({}, AGENTS, agent_call, options=opts))
    s = Orchestrator().orchestrate({}, AGENTS, agent_call_sync, options=opts)
    assert [p.agent for p in a.best_path] == [p.agent for p in s.best_path]
    assert a.executed_agent == s.executed_agent and a.outcome == s.outcome

    orc = Orchestrator()

    async def many() -> list:
        return await asyncio.gather(
            *(
                orc.orchestrate_async(
                    {"taskType": "qa"},
                    AGENTS,
                    agent_call,
                    options=OrchestrationOptions(iterations=100, seed=i),
                )
                for i in range(12)
            )
        )

    results = asyncio.run(many())
    assert in_flight["max"] > 1  # the agent calls overlapped
    assert orc.total == 12 and all(r.outcome is not None for r in results)
    told = sum(m.n for (_, task), m in orc.registry if task == "qa")
    steps = sum(len(r.executed_steps) for r in results)
    assert told == steps >= 12  # every step's outcome was learnt exactly once
    assert orc.registry.clock("qa") == steps


def test_orchestrate_async_time_limit_cancels_the_call() -> None:
    cancelled = []

    async def hangs(agent: str, ctx: object) -> AgentOutcome:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(agent)
            raise
        return AgentOutcome(1.0, 1.0)

    orc = Orchestrator()
    opts = OrchestrationOptions(iterations=50, seed=0, agent_timeout_s=0.05)
    r = asyncio.run(orc.orchestrate_async({}, ["a", "b"], hangs, options=opts))
    assert r.outcome is not None and r.outcome.success == 0
    assert "no result within 0.05 s" in (r.outcome.error or "")
    assert cancelled == [r.executed_agent]
    assert orc.breakers.get(r.executed_agent or "").failures == 1


def test_orchestrate_async_breaker_fallback_and_thread_for_plain_executors() -> None:
    threads = []

    def plain(agent: str, ctx: object) -> AgentOutcome:
        threads.append(threading.current_thread())
        return AgentOutcome(1.0, 10.0)

    opts = OrchestrationOptions(iterations=100, seed=2)
    orc = Orchestrator()
    plan = orc.orchestrate({}, AGENTS, options=replace(opts, execute=False))
    orc.breakers.get(plan.best_action).open()
    r = asyncio.run(orc.orchestrate_async({}, AGENTS, plain, options=opts))
    assert r.skipped_agents[0] == plan.best_action
    assert r.executed_path and plan.best_action not in r.executed_path
    assert threads and threads[0] is not threading.main_thread()


# --- planning sequences ---------------------------------------------------------------------
def naive_plan_search(
    n_agents: int,
    p_succ: list[list[float]],
    lat_mu: list[float],
    lat_sd: list[float],
    tok_mean: list[float],
    iterations: int,
    max_depth: int,
    allow_repeats: bool,
    c: float,
    gamma: float,
    w: float,
    prior_a: float,
    prior_b: float,
    target_ms: float,
    seed: int,
) -> tuple[list[tuple[int, int, int, float]], int, float]:
    """Plain-Python twin of ``plan_search``: a list-of-dicts tree, statistics recomputed from
    each node's list of backed-up rewards. Returns ``(parent, action, visits, sum)`` per node,
    the node where the best simulated plan ends and its reward."""
    rng = naive.Rng(seed)
    end = n_agents
    nodes: list[dict] = [{"parent": -1, "action": -1, "depth": 0, "kids": [], "rewards": []}]
    best_leaf, best_reward = -1, -math.inf

    def allowed(plan: list[int], a: int) -> bool:
        return (not plan or plan[-1] != a) if allow_repeats else a not in plan

    for _ in range(iterations):
        node, plan, leaf = 0, [], -1
        while leaf < 0:
            nd = nodes[node]
            if nd["action"] == end or nd["depth"] >= max_depth:
                leaf = node
                break
            prev = plan[-1] if plan else n_agents
            n_allowed = (1 if nd["depth"] > 0 else 0) + sum(
                allowed(plan, a) for a in range(n_agents)
            )
            if len(nd["kids"]) < n_allowed:
                tried = {nodes[k]["action"] for k in nd["kids"]}
                if nd["depth"] > 0 and end not in tried:
                    best = end
                else:
                    best, best_val = -1, -1.0
                    for a in range(n_agents):
                        if a not in tried and allowed(plan, a):
                            v = p_succ[prev][a] + 1e-9 * rng.uniform()
                            if v > best_val:
                                best, best_val = a, v
                nodes.append(
                    {
                        "parent": node,
                        "action": best,
                        "depth": nd["depth"] + 1,
                        "kids": [],
                        "rewards": [],
                    }
                )
                nd["kids"].insert(0, len(nodes) - 1)  # the kernel's newest-first sibling list
                if best != end:
                    plan.append(best)
                leaf = len(nodes) - 1
                break
            parent_n = float(len(nd["rewards"]))
            best, best_val = -1, -math.inf
            for k in nd["kids"]:
                n, s = float(len(nodes[k]["rewards"])), sum(nodes[k]["rewards"])
                ts = rng.beta(prior_a + s, prior_b + max(n - s, 0.0))
                val = w * ts + (1 - w) * naive.ucb_score(n, s, parent_n, c)
                if val > best_val or best < 0:
                    best, best_val = k, val
            node = best
            if nodes[node]["action"] != end:
                plan.append(nodes[node]["action"])
        prev, ms, tokens, quality = n_agents, 0.0, 0.0, 0.0
        for a in plan:  # the expected step outcomes
            quality = p_succ[prev][a]
            z = lat_mu[a] / lat_sd[a]
            ms += lat_mu[a] * stats.norm.cdf(z) + lat_sd[a] * stats.norm.pdf(z)
            tokens += tok_mean[a]
            prev = a
        r = 0.5 * quality + 0.3 * max(0.0, 1 - ms / target_ms) + 0.2 * max(0.0, 1 - tokens / 1000)
        if r > best_reward:
            best_leaf, best_reward = leaf, r
        p = leaf
        while p >= 0:
            nodes[p]["rewards"].append(r)
            r *= gamma
            p = nodes[p]["parent"]
    tree = [(d["parent"], d["action"], len(d["rewards"]), sum(d["rewards"])) for d in nodes]
    return tree, best_leaf, best_reward


@pytest.mark.parametrize("allow_repeats", [False, True])
def test_plan_search_kernel_matches_its_naive_twin(allow_repeats: bool) -> None:
    from workbench.mcts.tree import Tree

    g = np.random.default_rng(7)
    n = 4
    p_succ = g.uniform(0.05, 0.95, size=(n + 1, n))
    lat_mu, lat_sd, tok = g.uniform(100, 900, n), g.uniform(10, 200, n), g.uniform(50, 400, n)
    args = (150, 3, allow_repeats, 1.414, 0.95, 0.7, 1.0, 1.0, 5000.0)
    tree = Tree.empty([*map(str, range(n)), END], capacity=151)
    state = (tree.ints, tree.floats, tree.header, p_succ, lat_mu, lat_sd, tok)
    done, _, leaf, reward = _plan_kernels.plan_search(
        *state, *args, 1e9, rng_seed(11), -1, -math.inf
    )
    ref, ref_leaf, ref_reward = naive_plan_search(
        n, p_succ.tolist(), lat_mu.tolist(), lat_sd.tolist(), tok.tolist(), *args, 11
    )
    assert leaf == ref_leaf and reward == pytest.approx(ref_reward, rel=1e-12)
    got = [
        (int(tree.ints[0, i]), int(tree.ints[5, i]), int(tree.ints[6, i]), float(tree.floats[1, i]))
        for i in range(tree.size)
    ]
    assert done == 150 and len(got) == len(ref)
    for (gp, ga, gv, gs), (rp, ra, rv, rs) in zip(got, ref, strict=True):
        assert (gp, ga, gv) == (rp, ra, rv) and gs == pytest.approx(rs, rel=1e-9)


@pytest.mark.parametrize(("mu", "sd"), [(500.0, 100.0), (50.0, 200.0), (-300.0, 100.0)])
def test_expected_latency_is_the_mean_of_the_clipped_normal(mu: float, sd: float) -> None:
    numeric = stats.norm(mu, sd).expect(lambda x: max(x, 0.0), lb=mu - 12 * sd, ub=mu + 12 * sd)
    assert _plan_kernels.expected_latency(mu, sd) == pytest.approx(numeric, rel=1e-7, abs=1e-9)
    assert _plan_kernels.expected_latency(mu, 0.0) == max(mu, 0.0)


def pair_platform(seed: int):
    """``b`` succeeds 95% right after ``a`` and 5% otherwise; every other step 10%."""
    rng = np.random.default_rng(seed)

    def run(agent: str, ctx: dict) -> AgentOutcome:
        p = (
            0.95
            if (agent == "b" and ctx["previousAgent"] == "a")
            else 0.05
            if agent == "b"
            else 0.1
        )
        return AgentOutcome(float(rng.random() < p), 300.0, 100.0, response=f"{agent} done")

    return run


def test_the_planner_learns_an_order_effect() -> None:
    """Neither ``a`` nor ``b`` works alone, ``a`` then ``b`` does: after 120 seeded rounds the
    planner runs ``a, b`` in at least 15 of the last 20 (deterministic; the notebook measures
    the regret with its error rates)."""
    orc = Orchestrator()
    run = pair_platform(0)
    agents = ["a", "b", "c", "d"]
    results = [
        orc.orchestrate(
            {"taskType": "qa"}, agents, run, options=OrchestrationOptions(iterations=300, seed=i)
        )
        for i in range(120)
    ]
    assert sum(r.executed_path == ("a", "b") for r in results[-20:]) >= 15
    assert orc.registry.pair_posterior("a", "b", "qa").mean > 0.8
    alone = orc.registry.pair(START, "b", "qa")  # b as a first step: its own record is poor
    assert alone.n >= 3 and alone.successes / alone.n < 0.3
    assert orc.registry.pair_posterior(START, "b", "qa").mean < 0.5


def test_steps_run_in_order_and_see_the_previous_outputs() -> None:
    seen: list[dict] = []

    def run(agent: str, ctx: dict) -> AgentOutcome:
        seen.append(dict(ctx))
        return AgentOutcome(1.0, 10.0, 5.0, response=f"out-{agent}")

    reg = ModelRegistry()
    for _ in range(30):  # teach the models that y answers well after x, and nothing else does
        reg.update_step("x", "y", "general", 1.0, 10.0, 5.0)
        for prev, agent in ((START, "x"), (START, "y"), (START, "z"), ("x", "z"), ("y", "x")):
            reg.update_step(prev, agent, "general", 0.0, 10.0, 5.0)
    orc = Orchestrator(reg)
    opts = OrchestrationOptions(iterations=2000, seed=0, posterior_sampling=False)
    r = orc.orchestrate({"userRequest": "q"}, ["x", "y", "z"], run, options=opts)
    assert r.execution_path == r.executed_path == ("x", "y")
    assert [c["step"] for c in seen] == [0, 1]
    assert [c["previousAgent"] for c in seen] == [None, "x"]
    assert seen[0]["previousOutputs"] == [] and seen[0]["previousOutput"] is None
    assert seen[1]["previousOutputs"] == ["out-x"] and seen[1]["previousOutput"] == "out-x"
    assert all(c["userRequest"] == "q" and c["plan"] == ["x", "y"] for c in seen)
    assert r.outcome is not None and r.outcome.latency_ms == 20.0 and r.outcome.tokens == 10.0
    assert r.outcome.response == "out-y" and r.executed_agent == "y"
    assert r.reward == pytest.approx(0.5 + 0.3 * (1 - 20 / 5000) + 0.2 * (1 - 10 / 1000))
    # each step was learnt per agent and per pair
    assert [s.previous_agent for s in r.executed_steps] == [START, "x"]
    assert reg.pair("x", "y").n == 31 and reg.pair(START, "x").n == 31
    assert reg.get("x").n == 61 and reg.get("y").n == 61  # 60 taught, 1 executed


def test_a_failing_step_ends_the_plan() -> None:
    calls: list[str] = []

    def run(agent: str, ctx: dict) -> AgentOutcome:
        calls.append(agent)
        raise RuntimeError("down")

    reg = ModelRegistry()
    for _ in range(30):
        reg.update_step(START, "x", "general", 0.0)
        reg.update_step(START, "y", "general", 0.0)
        reg.update_step("x", "y", "general", 1.0)
    opts = OrchestrationOptions(iterations=2000, seed=0, posterior_sampling=False)
    r = Orchestrator(reg).orchestrate({}, ["x", "y"], run, options=opts)
    assert r.execution_path == ("x", "y") and calls == ["x"] and r.executed_path == ("x",)
    assert r.outcome is not None and r.outcome.success == 0 and r.outcome.error == "down"


def test_repeats_only_where_allowed() -> None:
    for allow in (False, True):
        opts = OrchestrationOptions(iterations=3000, seed=1, execute=False, allow_repeats=allow)
        orc = Orchestrator()
        r = orc.orchestrate({}, ["a", "b"], options=opts)
        tree = orc._records[r.orchestration_id].tree
        assert tree is not None
        depths = tree.ints[4, : tree.size]
        # without repeats a plan of 2 agents has at most 2 steps (+ the end node)
        assert (depths.max() <= 3) if not allow else (depths.max() > 3)
        for node in range(1, tree.size):  # never the same agent twice in a row
            parent = tree.parent(node)
            if parent > 0:
                assert tree.ints[5, node] != tree.ints[5, parent]


def test_target_time_is_one_scale_for_planning_and_reward() -> None:
    """A fast agent and a slow one that succeed alike: with a tight latency target the
    planner picks the fast one, and the executed plan's reward uses that same target."""
    reg = ModelRegistry()
    for _ in range(50):
        reg.update_step(START, "fast", "general", 1.0, 100.0, 10.0)
        reg.update_step(START, "slow", "general", 1.0, 3000.0, 10.0)
    opts = OrchestrationOptions(iterations=500, seed=0, target_time_ms=4000.0)
    r = Orchestrator(reg).orchestrate({}, ["slow", "fast"], options=opts)
    assert r.best_action == "fast"
    assert r.outcome is not None
    assert r.reward == pytest.approx(
        0.5 * r.outcome.success
        + 0.3 * max(0, 1 - r.outcome.latency_ms / 4000)
        + 0.2 * max(0, 1 - r.outcome.tokens / 1000)
    )


def test_active_searches_is_measured() -> None:
    orc = Orchestrator()
    during: list[int] = []

    def run(agent: str, ctx: object) -> AgentOutcome:
        during.append(orc.statistics().active_searches)
        return AgentOutcome(1.0, 1.0)

    orc.orchestrate({}, ["a"], run, options=OrchestrationOptions(iterations=10, seed=0))
    assert during == [1] and orc.statistics().active_searches == 0


class DictStore:
    """An in-memory ResultStore (JSON round trip, as Redis keeps it)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def save_result(self, search_id: str, result: dict) -> None:
        self.data[search_id] = json.dumps(result)

    def load_result(self, search_id: str) -> dict:
        if search_id not in self.data:
            raise NotFoundError(search_id)
        return json.loads(self.data[search_id])


def test_feedback_is_idempotent_and_survives_a_restart() -> None:
    store = DictStore()
    orc = Orchestrator(store=store)
    opts = OrchestrationOptions(iterations=50, seed=0)
    r1 = orc.orchestrate({}, AGENTS, executor(1), options=opts)
    r2 = orc.orchestrate({}, AGENTS, executor(2), options=opts)
    assert orc.feedback(r1.orchestration_id, 5).credited_agents == (r1.executed_agent,)
    saved_models = orc.registry.to_dict()
    # a restart: a new process with the saved models and the store, the records gone
    orc2 = Orchestrator(ModelRegistry.from_dict(json.loads(json.dumps(saved_models))), store=store)
    assert orc2.feedback(r1.orchestration_id, 1).duplicate  # credited before the restart
    assert orc2.registry.to_dict() == saved_models
    fb = orc2.feedback(r2.orchestration_id, 1)  # never credited: learnt once, from the store
    last = r2.executed_steps[-1]
    model = orc2.registry.get(last.agent)
    assert not fb.duplicate and fb.credited_agents == (last.agent,)
    assert orc2.feedback(r2.orchestration_id, 5).duplicate
    assert orc2.registry.get(last.agent) == model
    # the saved summary says so too, for a process whose models did not keep the ledger
    orc3 = Orchestrator(store=store)
    assert orc3.feedback(r2.orchestration_id, 5).duplicate and len(orc3.registry) == 0


def test_feedback_when_nothing_ran_credits_nothing() -> None:
    orc = Orchestrator()
    r = orc.orchestrate({}, AGENTS, options=OrchestrationOptions(iterations=50, execute=False))
    fb = orc.feedback(r.orchestration_id, 5)
    assert fb.credited_agents == () and not fb.duplicate and len(orc.registry) == 0
    assert orc.feedback(r.orchestration_id, 5).duplicate


def test_breakers_and_models_are_bounded() -> None:
    orc = Orchestrator(ModelRegistry(max_models=4), max_breakers=3)
    opts = OrchestrationOptions(iterations=20, seed=0)
    for i in range(10):
        orc.orchestrate({"taskType": f"t{i}"}, [f"agent{i}"], executor(i), options=opts)
    assert len(orc.registry) == 4 and len(orc.breakers.states()) == 3


def test_feedback_replaces_the_learnt_outcome_of_the_last_step() -> None:
    """A rating is about an outcome already learnt: it replaces it, never adds a second."""
    orc = Orchestrator()
    opts = OrchestrationOptions(iterations=50, seed=0)
    r = orc.orchestrate({}, AGENTS, lambda a, c: AgentOutcome(1.0, 10.0, 5.0), options=opts)
    last = r.executed_steps[-1]
    model = orc.registry.get(last.agent)
    alpha, beta, n = model.success.alpha, model.success.beta, model.n
    pair = orc.registry.pair(last.previous_agent, last.agent)
    s, f = pair.successes, pair.failures
    fb = orc.feedback(r.orchestration_id, 1)  # reward 0.2: the answer was a failure
    assert fb.credited_agents == (last.agent,) and fb.agent == last.agent
    assert (model.success.alpha, model.success.beta, model.n) == (alpha - 1, beta + 1, n)
    assert (pair.successes, pair.failures) == (s - 1, f + 1)
    for s_ in r.executed_steps[:-1]:  # the steps before the answer keep their outcomes
        assert orc.registry.get(s_.agent).success.alpha == 2.0
