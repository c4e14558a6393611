"""The AB-MCTS service: its ``[mcts]`` config, limits, orchestration, feedback and views."""

from __future__ import annotations

import asyncio

import pytest

from workbench.config import Settings, load_settings
from workbench.errors import ConfigError, InputError, NotFoundError
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
        ({"rust_recommend_per_min": float("inf")}, "rust_recommend_per_min", ">= 0"),
        ({"max_iterations": 1.5}, "max_iterations", "expected a int"),
        ({"agents": 3}, "agents", "expected a tuple"),
        ({"iterations": 10}, "iterations", "unknown [mcts] setting"),
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
        opts = svc.options(80, seed=1)
        r = await svc.run_orchestration(
            "q", {"taskType": "qa"}, opts, agents=AGENTS, task_type="qa"
        )
        assert r.task_type == "qa" and r.outcome is not None and svc.searches == 1
        rec = await svc.feedback(r.orchestration_id, 4, "fine")
        assert rec.agent == r.executed_agent and rec.reward == pytest.approx(0.8)
        report = svc.feedback_report()
        assert report.total == 1 and report.average_quality == pytest.approx(0.8)
        assert report.top_performers == (rec.agent,) and report.by_task_type["qa"].count == 1
        assert svc.visualization(r.orchestration_id).metrics.total_nodes == 81
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
