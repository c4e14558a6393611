"""The AB-MCTS routes: shapes, validation, limits, admin, feedback, auto-pilot, raw routes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import bearer, run_with_client
from workbench.api import mcts as mcts_api
from workbench.api import mcts_bridge
from workbench.api.app import create_app
from workbench.config import Settings
from workbench.errors import ConfigError
from workbench.mcts.models import ModelRegistry
from workbench.mcts.service import MctsConfig, MctsService
from workbench.testing import free_port, redis_answers

ADMIN = "admin-token-456"
AGENTS = ["planner", "retriever", "synthesizer"]


def _app(**sections: Any):
    return create_app(Settings(admin_token=ADMIN, sections={"mcts": sections} if sections else {}))


def test_orchestrate_feedback_visualization_models() -> None:
    async def scenario(client: TestClient) -> None:
        body = {
            "userRequest": "summarise",
            "context": {"agents": AGENTS, "taskType": "qa"},
            "options": {"maxIterations": 300, "visualize": True, "seed": 1},
        }
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
        assert r.status == 200, await r.text()
        doc = await r.json()
        assert doc["success"] is True and doc["metadata"]["message"] == "Orchestration completed"
        data = doc["data"]
        assert data["bestAction"] in AGENTS and data["searchMetrics"]["iterations"] == 300
        assert data["response"]["data"] == {"predicted": True}
        assert data["visualization"]["metrics"]["totalNodes"] == 301
        oid = data["orchestrationId"]

        r = await client.post(
            "/api/v1/ab-mcts/feedback", json={"orchestrationId": oid, "rating": 5}
        )
        assert (await r.json())["data"]["rating"] == 5
        r = await client.get(f"/api/v1/ab-mcts/visualization/{oid}")
        assert (await r.json())["data"]["nodes"]
        r = await client.get("/api/v1/ab-mcts/visualization/unknown")
        assert r.status == 404 and (await r.json())["error"]["code"] == "NOT_FOUND"
        r = await client.get("/api/v1/ab-mcts/models", params={"taskType": "qa"})
        models = (await r.json())["data"]
        assert models["taskType"] == "qa" and models["rankings"][0]["agent"] in AGENTS
        for path in ("metrics", "report", "health"):
            r = await client.get(f"/api/v1/ab-mcts/{path}")
            assert r.status == 200, path
        report = (await (await client.get("/api/v1/ab-mcts/report")).json())["data"]
        assert report["summary"]["totalFeedbacks"] == 1
        health = (await (await client.get("/api/v1/ab-mcts/health")).json())["data"]
        assert health["circuitBreaker"] == "CLOSED"
        assert health["status"] == ("healthy" if health["successRate"] > 0.5 else "degraded")
        orchestrator = client.app[mcts_api.SERVICE.key].orchestrator
        orchestrator.breakers.get("coder").open()
        health = (await (await client.get("/api/v1/ab-mcts/health")).json())["data"]
        assert health["status"] == "degraded" and health["circuitBreaker"] == "OPEN"
        assert health["circuitBreakers"]["coder"] == "OPEN"

    run_with_client(_app(), scenario)


def test_validation_and_limits() -> None:
    async def scenario(client: TestClient) -> None:
        r = await client.post("/api/v1/ab-mcts/orchestrate", json={"userRequest": ""})
        err = await r.json()
        assert r.status == 400 and err["error"]["code"] == "VALIDATION_ERROR"
        assert "userRequest" in str(err["error"])
        too_many = {"userRequest": "x", "context": {"agents": [f"a{i}" for i in range(101)]}}
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=too_many)
        assert r.status == 400 and "agents" in str(await r.json())
        big = {"userRequest": "x", "options": {"maxIterations": 10_001}}
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=big)
        assert r.status == 400 and "maxIterations" in str(await r.json())
        r = await client.post(
            "/api/v1/ab-mcts/feedback", json={"orchestrationId": "x", "rating": 9}
        )
        assert r.status == 400 and "rating" in str(await r.json())
        r = await client.post(
            "/api/v1/ab-mcts/feedback", json={"orchestrationId": "x", "rating": 3}
        )
        assert r.status == 404
        r = await client.post("/api/v1/ab-mcts/reset")
        assert r.status == 403
        r = await client.post("/api/v1/ab-mcts/reset", headers=bearer(ADMIN))
        assert r.status == 200 and (await r.json())["data"]["message"]

    run_with_client(_app(), scenario)


def test_configured_iteration_limit() -> None:
    async def scenario(client: TestClient) -> None:
        body = {"userRequest": "x", "options": {"maxIterations": 20_000, "seed": 0}}
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
        assert r.status == 200, await r.text()

    run_with_client(_app(max_iterations=50_000), scenario)


def test_batch() -> None:
    async def scenario(client: TestClient) -> None:
        body = {
            "requests": [{"userRequest": f"q{i}"} for i in range(3)],
            "options": {"maxIterations": 50},
        }
        r = await client.post("/api/v1/ab-mcts/orchestrate/batch", json=body)
        data = (await r.json())["data"]
        assert data["summary"]["total"] == 3 == data["summary"]["successful"]
        assert [x["index"] for x in data["results"]] == [0, 1, 2]

    run_with_client(_app(), scenario)


def test_auto_pilot() -> None:
    async def scenario(client: TestClient) -> None:
        r = await client.post(
            "/api/v1/ab-mcts/auto-pilot/submit", json={"userRequest": "low", "priority": 1}
        )
        assert r.status == 200 and (await r.json())["data"]["status"] == "queued"
        await client.post(
            "/api/v1/ab-mcts/auto-pilot/submit", json={"userRequest": "high", "priority": 9}
        )
        st = (await (await client.get("/api/v1/ab-mcts/auto-pilot/status")).json())["data"]
        assert st["active"] is False and st["queue"]["queued"] == 2
        assert st["queue"]["queuedTasks"][0]["userRequest"] == "high"
        await client.post("/api/v1/ab-mcts/auto-pilot/start")
        for _ in range(200):
            m = (await (await client.get("/api/v1/ab-mcts/auto-pilot/metrics")).json())["data"]
            if m["performance"]["successfulRequests"] == 2:
                break
            await asyncio.sleep(0.02)
        assert m["performance"]["successfulRequests"] == 2 and m["queue"]["queued"] == 0
        r = await client.post("/api/v1/ab-mcts/auto-pilot/stop")
        assert (await r.json())["data"]["status"] == "stopped"

    run_with_client(_app(), scenario)


def test_auto_pilot_queue_is_bounded_and_keeps_abandoned_tasks() -> None:
    async def scenario(client: TestClient) -> None:
        submit = "/api/v1/ab-mcts/auto-pilot/submit"
        for i in range(2):
            r = await client.post(submit, json={"userRequest": f"t{i}"})
            assert r.status == 200
        r = await client.post(submit, json={"userRequest": "one too many"})
        body = await r.json()
        assert r.status == 409 and body["error"]["code"] == "CAPACITY_EXCEEDED"
        assert "autopilot_max_queue=2" in body["error"]["message"]

        calls = []

        async def broken(*args: Any, **kwargs: Any) -> Any:
            calls.append(args[0])
            raise RuntimeError("orchestrator unavailable")

        client.app[mcts_api.SERVICE.key].run_orchestration = broken
        await client.post("/api/v1/ab-mcts/auto-pilot/start")
        for _ in range(500):
            st = (await (await client.get("/api/v1/ab-mcts/auto-pilot/status")).json())["data"]
            if len(st["queue"]["failedTasks"]) == 2:
                break
            await asyncio.sleep(0.01)
        failed = st["queue"]["failedTasks"]
        assert sorted(f["userRequest"] for f in failed) == ["t0", "t1"]
        assert all(f["failures"] == 3 and "unavailable" in f["error"] for f in failed)
        assert sorted(calls) == ["t0"] * 3 + ["t1"] * 3  # retried, then kept, not dropped
        assert st["metrics"]["abandonedTasks"] == 2 and st["queue"]["queued"] == 0
        await client.post("/api/v1/ab-mcts/auto-pilot/stop")

    run_with_client(_app(autopilot_max_queue=2), scenario)


def test_rust_routes_raw_shapes() -> None:
    ctx = {
        "task": "write code",
        "contextData": {"taskType": "code"},
        "executionContext": {"sessionId": "s1"},
    }

    async def scenario(client: TestClient) -> None:
        body = {
            "context": ctx,
            "availableAgents": AGENTS,
            "options": {"maxIterations": 200, "seed": 3},
        }
        r = await client.post("/api/v1/ab-mcts-rust/search", json=body)
        doc = await r.json()
        assert r.status == 200 and doc["success"] is True and "data" not in doc
        res = doc["result"]
        assert res["bestPath"] and res["bestPath"][0]["agentName"] in AGENTS
        assert doc["metadata"]["version"] == "rust-0.1.0"
        assert set(res["executionPlan"]) >= {"steps", "totalEstimatedTimeMs", "riskAssessment"}
        body = {"context": ctx, "availableAgents": AGENTS, "maxRecommendations": 2}
        doc = await (await client.post("/api/v1/ab-mcts-rust/recommend", json=body)).json()
        assert 1 <= len(doc["recommendations"]) <= 2
        fb = {
            "sessionId": "s1",
            "agentName": "planner",
            "taskType": "code",
            "reward": {
                "value": 0.9,
                "components": {"quality": 1, "speed": 0.8, "cost": 0.7},
                "metadata": {"tokensUsed": 120, "executionTimeMs": 300},
            },
        }
        doc = await (await client.post("/api/v1/ab-mcts-rust/feedback", json=fb)).json()
        assert doc["success"] and doc["model"]["samples"] == 1
        r = await client.post(
            "/api/v1/ab-mcts-rust/search", json={"context": ctx, "availableAgents": []}
        )
        assert r.status == 400 and "availableAgents" in str(await r.json())
        r = await client.post(
            "/api/v1/ab-mcts-rust/search",
            json={"context": {**ctx, "task": ""}, "availableAgents": AGENTS},
        )
        assert r.status == 400 and "task" in str(await r.json())
        h = await (await client.get("/api/v1/ab-mcts-rust/health")).json()
        assert h["status"] == "healthy" and h["features"]["feedback"] is True
        s = await (await client.get("/api/v1/ab-mcts-rust/stats")).json()
        assert s["stats"]["searches"] == 2 and s["stats"]["feedbackReceived"] == 1
        models_before = len(client.app[mcts_api.SERVICE.key].orchestrator.registry)
        for test_type, planned in (("simple", 50), ("complex", 200), ("load", 500)):
            r = await client.post(
                "/api/v1/ab-mcts-rust/test", json={"testType": test_type, "agentCount": 7}
            )
            t = await r.json()
            assert r.status == 200 and t["success"] and t["testType"] == test_type
            assert t["result"]["iterations"] == planned == t["result"]["plannedIterations"]
            assert t["result"]["withinTimeLimit"] is True
            assert set(t["result"]["bestPath"]) <= {f"test-agent-{i}" for i in range(1, 8)}
        assert len(client.app[mcts_api.SERVICE.key].orchestrator.registry) == models_before
        r = await client.post("/api/v1/ab-mcts-rust/test", json={"agentCount": 21})
        assert r.status == 400 and "agentCount" in await r.text()
        r = await client.post("/api/v1/ab-mcts-rust/test", json={"testType": "huge"})
        assert r.status == 400 and "testType" in await r.text()

    run_with_client(_app(), scenario)


def test_rust_search_is_rate_limited_per_client() -> None:
    ctx = {"task": "t", "executionContext": {"sessionId": "s"}}
    body = {"context": ctx, "availableAgents": AGENTS, "options": {"maxIterations": 10}}

    async def scenario(client: TestClient) -> None:
        for _ in range(2):
            r = await client.post("/api/v1/ab-mcts-rust/search", json=body)
            assert r.status == 200
        r = await client.post("/api/v1/ab-mcts-rust/search", json=body)
        assert r.status == 429 and "Retry-After" in r.headers
        assert (await r.json())["error"]["code"] == "RATE_LIMITED"
        r = await client.post(
            "/api/v1/ab-mcts-rust/recommend", json={"context": ctx, "availableAgents": AGENTS}
        )
        assert r.status == 200  # its own limit (the default 200 a minute)

    run_with_client(_app(rust_search_per_min=2), scenario)


def test_models_persist_in_redis(redis_adapter, redis_url: str) -> None:
    from workbench.mcts.storage import RedisStore

    settings = Settings(
        redis_url=redis_url,
        redis_prefix=redis_adapter.prefix,
        sections={"mcts": {"persist": "redis"}},
    )

    async def scenario(client: TestClient) -> None:
        body = {"userRequest": "x", "context": {"agents": AGENTS}, "options": {"maxIterations": 20}}
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
        assert r.status == 200

    run_with_client(create_app(settings), scenario)
    reg = RedisStore(redis_adapter).load_models()
    assert len(reg) >= 1


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"max_iterations": -1}, "max_iterations"),
        ({"max_iteration": 5}, "max_iteration"),  # unknown key
        ({"max_agents": "many"}, "max_agents"),  # wrong type
        ({"max_agents": 101}, "max_agents"),
        ({"persist": "disk"}, "persist"),
        ({"agents": []}, "agents"),
        ({"autopilot_max_queue": 0}, "autopilot_max_queue"),
        ({"rust_search_per_min": -1}, "rust_search_per_min"),
        ({"rust_recommend_per_min": "fast"}, "rust_recommend_per_min"),
    ],
)
def test_a_bad_mcts_setting_refuses_to_make_the_app(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        create_app(Settings(sections={"mcts": section}))
    assert "[mcts]" in info.value.message
    assert info.value.details["key"] == f"mcts.{key}"


def test_the_service_is_built_at_startup_and_shared_by_both_routers() -> None:
    assert mcts_api.router.service is mcts_bridge.router.service is mcts_api.SERVICE
    app = create_app(Settings(sections={"mcts": {"agents": "planner, coder", "max_agents": 5}}))
    assert mcts_api.SERVICE.key not in app  # built at start-up, not when the app is made
    assert mcts_api.SERVICE.config_of(app) == MctsConfig(agents=("planner", "coder"), max_agents=5)

    async def scenario(client: TestClient) -> None:
        service = client.app[mcts_api.SERVICE.key]
        assert isinstance(service, MctsService) and service.config.agents == ("planner", "coder")
        fb = {
            "sessionId": "s",
            "agentName": "coder",
            "taskType": "qa",
            "reward": {"value": 1, "components": {"quality": 1, "speed": 1, "cost": 1}},
        }
        r = await client.post("/api/v1/ab-mcts-rust/feedback", json=fb)
        assert r.status == 200
        models = (await (await client.get("/api/v1/ab-mcts/models?taskType=qa")).json())["data"]
        assert [(m["agent"], m["samples"]) for m in models["rankings"]] == [("coder", 1)]
        body = {"userRequest": "x", "options": {"maxIterations": 30, "seed": 0}}
        data = (await (await client.post("/api/v1/ab-mcts/orchestrate", json=body)).json())["data"]
        assert set(data["executionPath"]) <= {"planner", "coder"}  # the configured agents
        stats = await (await client.get("/api/v1/ab-mcts-rust/stats")).json()
        assert stats["stats"]["searches"] == 1 and stats["stats"]["feedbackReceived"] == 1
        r = await client.post(
            "/api/v1/ab-mcts/orchestrate",
            json={"userRequest": "x", "context": {"agents": [f"a{i}" for i in range(6)]}},
        )
        assert r.status == 400 and "at most 5 agents" in await r.text()

    run_with_client(app, scenario)


def test_a_ready_made_service_serves_both_routers() -> None:
    service = MctsService(MctsConfig(max_iterations=40))
    app = create_app(Settings(), services={"mcts": service})

    async def scenario(client: TestClient) -> None:
        assert client.app[mcts_api.SERVICE.key] is service
        body = {"userRequest": "x", "options": {"maxIterations": 41}}
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
        assert r.status == 400 and "at most 40 iterations" in await r.text()
        ctx = {"task": "t", "executionContext": {"sessionId": "s"}}
        search = {"context": ctx, "availableAgents": AGENTS, "options": {"maxIterations": 41}}
        r = await client.post("/api/v1/ab-mcts-rust/search", json=search)
        assert r.status == 400 and "at most 40" in await r.text()
        assert service.searches == 0

    run_with_client(app, scenario)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_models_load_once_redis_answers_when_it_was_down_at_startup() -> None:
    """The service starts without Redis; routes that need the models answer 503 until it
    answers, then the stored models are loaded (never overwritten by fresh ones)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings = Settings(redis_url=url, redis_timeout_s=0.5, sections={"mcts": {"persist": "redis"}})
    body = {"userRequest": "x", "context": {"agents": AGENTS}, "options": {"maxIterations": 20}}

    async def scenario(client: TestClient) -> None:
        service = client.app[mcts_api.SERVICE.key]
        r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
        assert r.status == 503 and (await r.json())["error"]["code"] == "BACKEND_UNAVAILABLE"
        with tempfile.TemporaryDirectory() as workdir:
            args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
            proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
            try:
                for _ in range(200):
                    if redis_answers(url, timeout_s=0.2):
                        break
                    await asyncio.sleep(0.05)  # polling a child process's readiness
                stored = ModelRegistry()
                stored.update("planner", "general", 1.0)
                assert service.store is not None
                service.store.save_models(stored)
                r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
                assert r.status == 200, await r.text()
                assert service.store.load_models().get("planner").n >= 1  # kept, then saved
                samples = sum(m.n for _, m in service.orchestrator.registry)
                assert samples == 2  # the stored observation and this orchestration's
            finally:
                proc.terminate()
                proc.wait(timeout=10)

    run_with_client(create_app(settings), scenario)
