"""The AB-MCTS service: its ``[mcts]`` config, limits, orchestration, feedback and views."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest

from workbench.config import Settings, load_settings
from workbench.errors import BackendUnavailable, ConfigError, InputError, NotFoundError
from workbench.mcts.models import ModelRegistry
from workbench.mcts.service import (
    DEFAULT_AGENTS,
    BatchRequest,
    MctsConfig,
    MctsService,
)

AGENTS = ["planner", "retriever", "synthesizer"]


def test_config_defaults_are_the_documented_knobs() -> None:
    c = MctsConfig()
    assert (c.max_iterations, c.max_agents, c.agents, c.persist) == (
        10_000,
        100,
        DEFAULT_AGENTS,
        "none",
    )
    assert (c.autopilot_max_queue, c.rust_search_per_min, c.rust_recommend_per_min) == (
        1000,
        100.0,
        200.0,
    )
    assert c.autopilot_max_queue_bytes == 64 * 1024 * 1024


def test_config_from_the_environment() -> None:
    env = {
        "WORKBENCH_MCTS__MAX_ITERATIONS": "50000",
        "WORKBENCH_MCTS__AGENTS": "planner, coder,reviewer",
        "WORKBENCH_MCTS__RUST_SEARCH_PER_MIN": "0",
        "WORKBENCH_MCTS__PERSIST": "redis",
    }
    c = MctsConfig.from_settings(load_settings(env=env, toml_path=None))
    assert c.max_iterations == 50_000 and c.agents == ("planner", "coder", "reviewer")
    assert c.rust_search_per_min == 0 and c.persist == "redis"


@pytest.mark.parametrize(
    ("section", "key", "fix"),
    [
        ({"max_iterations": 0}, "max_iterations", "at least 1"),
        ({"max_agents": 500}, "max_agents", "between 1 and 100"),
        ({"agents": ["a", "a"]}, "agents", "unique"),
        ({"agents": ["a", "b", "c"], "max_agents": 2}, "agents", "1..2"),
        ({"persist": "s3"}, "persist", "none or redis"),
        ({"max_iterations": 2_000_000}, "max_iterations", "at most 1000000"),
        ({"autopilot_max_queue_bytes": 1000}, "autopilot_max_queue_bytes", "at least 65536"),
        ({"rust_recommend_per_min": float("inf")}, "rust_recommend_per_min", ">= 0"),
        ({"max_iterations": 1.5}, "max_iterations", "expected a int"),
        ({"agents": 3}, "agents", "expected a tuple"),
        ({"iterations": 10}, "iterations", "unknown [mcts] setting"),
        ({"model_decay": 0.0}, "model_decay", "(0, 1]"),
        ({"model_decay": 1.5}, "model_decay", "(0, 1]"),
        ({"max_models": 0}, "max_models", "at least 1"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(section: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        MctsConfig.from_section(section)
    assert fix in info.value.message and "[mcts]" in info.value.message
    assert info.value.details["key"] == f"mcts.{key}"


def test_limits_name_the_request_field() -> None:
    svc = MctsService(MctsConfig(max_iterations=100, max_agents=3, agents=("x", "y")))
    assert svc.resolve_agents(None) == ["x", "y"] == svc.resolve_agents([])
    with pytest.raises(InputError, match=r"context\.agents: must be a list"):
        svc.resolve_agents("x")
    with pytest.raises(InputError, match=r"availableAgents: need 1\.\.3 agents, got 4"):
        svc.resolve_agents(["a", "b", "c", "d"], "availableAgents")
    with pytest.raises(InputError, match="unique"):
        svc.check_agents(["a", "a"], "agents")
    with pytest.raises(InputError, match=r"options\.maxIterations: at most 100 iterations"):
        svc.options(101, field="options.maxIterations")
    opts = svc.options(None, None, 3, exploration=0.5, execute=False)
    # the default of 500 iterations is capped by a lower limit
    assert (opts.iterations, opts.max_depth, opts.seed, opts.max_iterations) == (100, 8, 3, 100)
    assert MctsService().options().iterations == 500
    assert opts.exploration == 0.5 and opts.execute is False


def test_orchestration_feedback_report_and_reset() -> None:
    svc = MctsService()

    async def run() -> None:
        opts = svc.options(300, seed=1)
        r = await svc.run_orchestration(
            "q", {"taskType": "qa"}, opts, agents=AGENTS, task_type="qa"
        )
        assert r.task_type == "qa" and r.outcome is not None and svc.searches == 1
        rec = await svc.feedback(r.orchestration_id, 4, "fine")
        assert rec.agent == r.executed_agent and rec.reward == pytest.approx(0.8)
        report = svc.feedback_report()
        assert report.total == 1 and report.average_quality == pytest.approx(0.8)
        assert report.top_performers == (rec.agent,) and report.by_task_type["qa"].count == 1
        # 300 iterations grow every plan of distinct agents out of 3, with its end nodes:
        # 1 + 3 + 9 + 12 + 6 nodes
        assert svc.visualization(r.orchestration_id).metrics.total_nodes == 31
        with pytest.raises(NotFoundError):
            await svc.feedback("unknown", 3)
        m = svc.metrics()
        assert m.feedback_processed == 1 and m.feedback_aggregations == 1
        assert m.statistics.total_orchestrations == 1 and m.agent_models >= 1
        assert svc.health().healthy is (r.outcome.success >= 0.5)
        await svc.reset()
        assert svc.feedback_report().total == 0 and len(svc.orchestrator.registry) == 0

    asyncio.run(run())


def test_a_batch_keeps_order_and_isolates_failures() -> None:
    svc = MctsService()
    calls = 0
    real = svc.run_orchestration

    async def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if args[0] == "bad":
            raise RuntimeError("agent runtime gone")
        return await real(*args, **kwargs)

    svc.run_orchestration = flaky  # type: ignore[method-assign]
    requests = [BatchRequest(q, {}, tuple(AGENTS)) for q in ("a", "bad", "c")]
    out = asyncio.run(svc.orchestrate_batch(requests, svc.options(30, seed=0)))
    assert [i.index for i in out.items] == [0, 1, 2] and calls == 3
    assert out.successful == 2 and out.items[1].error == "agent runtime gone"
    assert out.average_confidence == pytest.approx(
        sum(i.result.confidence for i in out.items if i.result) / 2
    )


def test_bridge_reward_and_self_test_leave_the_service_models_alone() -> None:
    svc = MctsService()
    model = asyncio.run(svc.record_reward("coder", "code", 0.9, 300.0, 120.0))
    assert model.n == 1 and model.success.alpha == 2.0 and svc.bridge_feedback == 1
    before = len(svc.orchestrator.registry)
    t = asyncio.run(svc.self_test("simple", 4))
    assert t.planned_iterations == 50 == t.result.search_metrics.iterations
    assert t.within_time_limit and len(svc.orchestrator.registry) == before
    assert not svc.persistent and svc.uptime_s() >= 0


def test_redis_persistence_loads_at_startup(redis_adapter) -> None:
    from workbench.mcts.models import ModelRegistry
    from workbench.mcts.storage import RedisStore

    store = RedisStore(redis_adapter)
    saved = ModelRegistry()
    saved.update("planner", "general", 1.0)
    store.save_models(saved)
    svc = MctsService(MctsConfig(persist="redis"), Settings(), store=store)
    assert svc.persistent and svc.orchestrator.registry.get("planner").n == 1


def test_feedback_is_credited_once_across_routes_and_restarts(redis_adapter) -> None:
    """One orchestration id is learnt once, whether its feedback comes as a rating, as the
    native bridge's reward, or again after a restart (the models and summaries in Redis)."""
    from workbench.mcts.storage import RedisStore

    store = RedisStore(redis_adapter, ttl_s=60)
    config = MctsConfig(persist="redis", model_decay=0.95, max_models=50)
    svc = MctsService(config, Settings(), store=store)
    assert svc.orchestrator.registry.decay == 0.95

    async def first() -> tuple[str, str]:
        r = await svc.run_orchestration("q", {}, svc.options(60, seed=2), agents=AGENTS)
        rec = await svc.feedback(r.orchestration_id, 5)
        assert not rec.duplicate and rec.credited_agents == (r.executed_agent,)
        again = await svc.feedback(r.orchestration_id, 1)
        assert again.duplicate and again.credited_agents == ()
        _, dup = await svc.bridge_feedback_once(
            "s", r.executed_agent or "", "general", 0.0, orchestration_id=r.orchestration_id
        )
        assert dup and len(svc.feedback_log) == 1
        return r.orchestration_id, r.executed_agent or ""

    oid, agent = asyncio.run(first())
    saved = store.load_models().to_dict()
    restarted = MctsService(config, Settings(), store=store)
    assert restarted.orchestrator.registry.decay == 0.95  # settings kept, contents loaded

    async def second() -> None:
        assert (await restarted.feedback(oid, 1)).duplicate
        model, dup = await restarted.bridge_feedback_once(
            "s", agent, "general", 0.0, orchestration_id=oid
        )
        assert dup and model.n >= 1
        assert restarted.orchestrator.registry.to_dict() == saved
        # without an id, the bridge credits an agent once per session, agent and task type
        _, dup = await restarted.bridge_feedback_once("s2", agent, "general", 0.9)
        assert not dup
        _, dup = await restarted.bridge_feedback_once("s2", agent, "general", 0.9)
        assert dup
        with pytest.raises(NotFoundError):
            await restarted.bridge_feedback_once("s", agent, "general", 0.5, orchestration_id="x")
        # the bridge's plan-only search: nothing ran here, the caller ran an agent of the plan
        opts = restarted.options(40, seed=3, execute=False)
        plan = await restarted.run_orchestration("q", {}, opts, agents=AGENTS, task_type="code")
        ran = plan.best_action
        model, dup = await restarted.bridge_feedback_once(
            "s3", ran, "general", 0.9, 250.0, 40.0, orchestration_id=plan.orchestration_id
        )
        assert not dup and model is restarted.orchestrator.registry.get(ran, "code")
        assert model.n == 1 and model.success.alpha == 2.0 and model.latency.mu != 1000.0
        assert (await restarted.feedback(plan.orchestration_id, 1)).duplicate
        assert restarted.orchestrator.registry.get(ran, "code").n == 1

    asyncio.run(second())


class FlakyStore:
    """An in-memory model and result store whose saves fail while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = False
        self.models: dict[str, Any] | None = None
        self.results: dict[str, dict[str, Any]] = {}

    def _check(self) -> None:
        if self.failing:
            raise BackendUnavailable("store unavailable")

    def load_models(self) -> ModelRegistry:
        if self.models is None:
            raise NotFoundError("no models saved")
        return ModelRegistry.from_dict(self.models)

    def save_models(self, registry: ModelRegistry) -> None:
        self._check()
        self.models = registry.to_dict()

    def save_result(self, search_id: str, result: dict[str, Any]) -> None:
        self._check()
        self.results[search_id] = result

    def load_result(self, search_id: str) -> dict[str, Any]:
        if search_id not in self.results:
            raise NotFoundError(search_id)
        return self.results[search_id]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("coder", "code", 0.9, 1e200, 10.0), "latency_ms"),
        (("coder", "code", 0.9, -1.0, 10.0), "latency_ms"),
        (("coder", "code", 0.9, math.inf, 10.0), "latency_ms"),
        (("coder", "code", 0.9, 300.0, 1e300), "tokens"),
        (("coder", "code", 0.9, 300.0, math.nan), "tokens"),
        (("coder", "code", 1.5, 300.0, 10.0), "reward"),
        (("coder", "code", math.nan, 300.0, 10.0), "reward"),
        (("", "code", 0.9, 300.0, 10.0), "agent"),
        (("x" * 129, "code", 0.9, 300.0, 10.0), "agent"),
        (("coder", "", 0.9, 300.0, 10.0), "task_type"),
    ],
)
def test_a_refused_bridge_reward_changes_nothing(args: tuple[Any, ...], field: str) -> None:
    svc = MctsService()
    with pytest.raises(InputError, match=field) as info:
        asyncio.run(svc.record_reward(*args))
    assert info.value.details[0]["field"] == field
    assert len(svc.orchestrator.registry) == 0 and svc.bridge_feedback == 0


def test_a_failed_save_puts_the_models_back() -> None:
    """A model change whose save fails answers the failure and leaves the models (and the
    feedback log) as they were, so the client can retry without counting twice."""
    store = FlakyStore()
    svc = MctsService(MctsConfig(persist="redis"), store=store)  # type: ignore[arg-type]

    async def run() -> None:
        await svc.record_reward("coder", "code", 0.9, 300.0, 10.0)
        r = await svc.run_orchestration("q", {}, svc.options(30, seed=0), agents=AGENTS)
        before = svc.orchestrator.registry.to_dict()
        store.failing = True
        with pytest.raises(BackendUnavailable):
            await svc.record_reward("coder", "code", 0.9, 300.0, 10.0)
        with pytest.raises(BackendUnavailable):
            await svc.feedback(r.orchestration_id, 5)
        with pytest.raises(BackendUnavailable):
            await svc.reward(r.orchestration_id, 0.9)
        assert svc.orchestrator.registry.to_dict() == before
        assert svc.bridge_feedback == 1 and len(svc.feedback_log) == 0
        store.failing = False
        await svc.feedback(r.orchestration_id, 5)
        assert len(svc.feedback_log) == 1 and store.models == svc.orchestrator.registry.to_dict()

    asyncio.run(run())


def test_searches_in_flight_are_counted() -> None:
    svc = MctsService()
    started, release = threading.Event(), threading.Event()
    orchestrator = svc.orchestrator
    real = orchestrator.orchestrate

    def held(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(10)
        return real(*args, **kwargs)

    orchestrator.orchestrate = held  # type: ignore[method-assign]

    async def run() -> None:
        opts = svc.options(20, seed=0)
        task = asyncio.create_task(svc.run_orchestration("q", {}, opts, agents=AGENTS))
        for _ in range(500):
            if started.is_set():
                break
            await asyncio.sleep(0.01)
        assert svc.active_searches == 1 == svc.health().active_searches
        assert svc.statistics().active_searches == 1 == svc.metrics().statistics.active_searches
        release.set()
        await task
        assert svc.active_searches == 0 == svc.health().active_searches

    asyncio.run(run())


def test_names_and_seeds_are_bounded() -> None:
    svc = MctsService()
    with pytest.raises(InputError, match="availableAgents"):
        svc.check_agents(["x" * 129], "availableAgents")
    with pytest.raises(InputError, match="availableAgents"):
        svc.check_agents([""], "availableAgents")
    for seed in (-1, 2**63):
        with pytest.raises(InputError, match="seed"):
            svc.options(10, seed=seed)
    assert svc.options(10, seed=2**63 - 1).seed == 2**63 - 1
