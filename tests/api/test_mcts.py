"""The AB-MCTS routes: shapes, validation, limits, admin, feedback, auto-pilot, raw routes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
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
        # every plan of distinct agents out of 3, with its end nodes: 1 + 3 + 9 + 12 + 6
        assert data["visualization"]["metrics"]["totalNodes"] == 31
        path = data["executionPath"]
        assert len(set(path)) == len(path) and data["executedPath"] == path
        assert [s["agentName"] for s in data["steps"]] == path
        assert data["steps"][0]["previousAgent"] is None
        assert data["resourcesUsed"]["agents"] == sorted(path)
        oid = data["orchestrationId"]

        r = await client.post(
            "/api/v1/ab-mcts/feedback", json={"orchestrationId": oid, "rating": 5}
        )
        fb = (await r.json())["data"]
        assert fb["rating"] == 5 and fb["duplicate"] is False
        assert fb["creditedAgents"] == [path[-1]]
        registry = client.app[mcts_api.SERVICE.key].orchestrator.registry
        before = registry.to_dict()
        for route, repeat in (
            ("/api/v1/ab-mcts/feedback", {"orchestrationId": oid, "rating": 1}),
            (
                "/api/v1/ab-mcts-rust/feedback",
                {
                    "sessionId": "s",
                    "agentName": path[-1],
                    "taskType": "qa",
                    "orchestrationId": oid,
                    "reward": {
                        "value": 0.1,
                        "components": {"quality": 0, "speed": 0, "cost": 0},
                    },
                },
            ),
        ):
            r = await client.post(route, json=repeat)
            assert r.status == 200, await r.text()
            doc = await r.json()
            assert doc.get("data", doc)["duplicate"] is True, route
        assert registry.to_dict() == before  # a repeat changes nothing
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


def test_rust_feedback_with_the_search_id_is_credited_once() -> None:
    """The bridge's search plans without running; its caller runs the agent and sends the
    reward with the search's orchestrationId: learnt once, whichever feedback route repeats."""
    ctx = {"task": "t", "contextData": {"taskType": "code"}, "executionContext": {"sessionId": "s"}}

    async def scenario(client: TestClient) -> None:
        body = {"context": ctx, "availableAgents": AGENTS, "options": {"seed": 1}}
        res = (await (await client.post("/api/v1/ab-mcts-rust/search", json=body)).json())["result"]
        oid, agent = res["orchestrationId"], res["bestPath"][0]["agentName"]
        fb = {
            "sessionId": "s",
            "agentName": agent,
            "orchestrationId": oid,
            "reward": {"value": 0.9, "components": {"quality": 1, "speed": 1, "cost": 1}},
        }
        first = await (await client.post("/api/v1/ab-mcts-rust/feedback", json=fb)).json()
        assert first["duplicate"] is False and first["model"]["samples"] == 1
        again = await (await client.post("/api/v1/ab-mcts-rust/feedback", json=fb)).json()
        assert again["duplicate"] is True and again["model"]["samples"] == 1
        r = await client.post(
            "/api/v1/ab-mcts/feedback", json={"orchestrationId": oid, "rating": 1}
        )
        assert (await r.json())["data"]["duplicate"] is True
        models = (await (await client.get("/api/v1/ab-mcts/models?taskType=code")).json())["data"]
        assert [m["samples"] for m in models["rankings"] if m["agent"] == agent] == [1]
        r = await client.post(
            "/api/v1/ab-mcts-rust/feedback", json={**fb, "orchestrationId": "never-made"}
        )
        assert r.status == 404

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
                steps = len((await r.json())["data"]["steps"])
                assert service.store.load_models().get("planner").n >= 1  # kept, then saved
                samples = sum(m.n for _, m in service.orchestrator.registry)
                assert samples == 1 + steps >= 2  # the stored observation and this plan's steps
            finally:
                proc.terminate()
                proc.wait(timeout=10)

    run_with_client(create_app(settings), scenario)


def _bridge_feedback(**metadata: Any) -> dict[str, Any]:
    return {
        "sessionId": "s1",
        "agentName": "planner",
        "taskType": "code",
        "reward": {
            "value": 0.9,
            "components": {"quality": 1, "speed": 0.8, "cost": 0.7},
            "metadata": {"tokensUsed": 120, "executionTimeMs": 300, **metadata},
        },
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_bridge_feedback(executionTimeMs=1e200), "reward.metadata.executionTimeMs"),
        (_bridge_feedback(executionTimeMs=86_400_001), "reward.metadata.executionTimeMs"),
        (_bridge_feedback(tokensUsed=1e300), "reward.metadata.tokensUsed"),
        (_bridge_feedback(apiCallsMade=10**30), "reward.metadata.apiCallsMade"),
        (
            _bridge_feedback(agentPerformance={f"a{i}": i for i in range(101)}),
            "reward.metadata.agentPerformance",
        ),
        ({**_bridge_feedback(), "agentName": "x" * 129}, "agentName"),
        ({**_bridge_feedback(), "agentName": ""}, "agentName"),
        ({**_bridge_feedback(), "taskType": ""}, "taskType"),
        ({**_bridge_feedback(), "sessionId": "s" * 257}, "sessionId"),
    ],
)
def test_a_refused_bridge_feedback_changes_nothing(body: dict[str, Any], field: str) -> None:
    """Out-of-range feedback is a 400 naming the field, and no model moves (the agent's
    success count used to be updated before a huge execution time answered 500)."""

    async def scenario(client: TestClient) -> None:
        r = await client.post("/api/v1/ab-mcts-rust/feedback", json=body)
        err = await r.json()
        assert r.status == 400, err
        assert err["error"]["code"] == "VALIDATION_ERROR"
        assert field in {d["field"] for d in err["error"]["details"]}
        service = client.app[mcts_api.SERVICE.key]
        assert len(service.orchestrator.registry) == 0 and service.bridge_feedback == 0
        r = await client.post("/api/v1/ab-mcts-rust/feedback", json=_bridge_feedback())
        assert r.status == 200 and (await r.json())["model"]["samples"] == 1

    run_with_client(_app(), scenario)


def _sized_context(approx_bytes: int) -> dict[str, Any]:
    return {"taskType": "qa", "notes": ["abcdefghij"] * (approx_bytes // 13)}


def test_auto_pilot_queue_is_bounded_in_bytes() -> None:
    async def scenario(client: TestClient) -> None:
        submit = "/api/v1/ab-mcts/auto-pilot/submit"
        r = await client.post(submit, json={"userRequest": "x", "context": _sized_context(70_000)})
        err = await r.json()
        assert r.status == 400 and err["error"]["details"][0]["field"] == "context"
        assert "65536" in err["error"]["message"]
        ctx = _sized_context(60_000)
        for i in range(2):
            r = await client.post(submit, json={"userRequest": f"t{i}", "context": ctx})
            assert r.status == 200, await r.text()
        r = await client.post(submit, json={"userRequest": "t2", "context": ctx})
        err = await r.json()
        assert r.status == 409 and err["error"]["code"] == "CAPACITY_EXCEEDED"
        assert "autopilot_max_queue_bytes=131072" in err["error"]["message"]
        st = (await (await client.get("/api/v1/ab-mcts/auto-pilot/status")).json())["data"]
        queue = st["queue"]
        assert queue["queued"] == 2 and queue["maxQueueBytes"] == 131_072
        assert 120_000 <= queue["queuedBytes"] <= 131_072

    run_with_client(_app(autopilot_max_queue_bytes=131_072), scenario)


def test_auto_pilot_status_after_a_stop_in_the_middle_of_a_batch() -> None:
    async def scenario(client: TestClient) -> None:
        service = client.app[mcts_api.SERVICE.key]
        hold = asyncio.Event()

        async def held(*args: Any, **kwargs: Any) -> Any:
            await hold.wait()
            raise AssertionError("never released")

        service.run_orchestration = held
        await client.post("/api/v1/ab-mcts/auto-pilot/submit", json={"userRequest": "slow"})
        await client.post("/api/v1/ab-mcts/auto-pilot/start")
        for _ in range(500):
            st = (await (await client.get("/api/v1/ab-mcts/auto-pilot/status")).json())["data"]
            if st["queue"]["processing"] == 1:
                break
            await asyncio.sleep(0.01)
        assert st["active"] is True and st["queue"]["processing"] == 1
        await client.post("/api/v1/ab-mcts/auto-pilot/stop")
        st = (await (await client.get("/api/v1/ab-mcts/auto-pilot/status")).json())["data"]
        assert st["active"] is False and st["queue"]["processing"] == 0
        assert [f["userRequest"] for f in st["queue"]["failedTasks"]] == ["slow"]

    run_with_client(_app(), scenario)


_CTX = {"task": "t", "executionContext": {"sessionId": "s"}}
_DEEP: dict[str, Any] = {}
_node = _DEEP
for _ in range(20):
    _node["a"] = {}
    _node = _node["a"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("orchestrate", {"userRequest": "x" * 10_001}, "userRequest"),
        ("orchestrate", {"userRequest": "x", "context": {"deep": _DEEP}}, "context"),
        ("orchestrate", {"userRequest": "x", "context": _sized_context(70_000)}, "context"),
        (
            "orchestrate",
            {"userRequest": "x", "context": {f"k{i}": i for i in range(257)}},
            "context",
        ),
        ("orchestrate", {"userRequest": "x", "context": {"taskType": "t" * 129}}, "taskType"),
        ("orchestrate", {"userRequest": "x", "context": {"taskType": ["qa"]}}, "taskType"),
        ("orchestrate", {"userRequest": "x", "context": {"agents": ["a" * 129]}}, "agents"),
        ("orchestrate", {"userRequest": "x", "context": {"agents": {}}}, "context.agents"),
        ("orchestrate", {"userRequest": "x", "options": {"seed": 10**30}}, "options.seed"),
        ("orchestrate", {"userRequest": "x", "options": {"seed": -5}}, "options.seed"),
        ("orchestrate", {"userRequest": "x", "options": {"maxIterations": 10**30}}, "maxIter"),
        (
            "orchestrate/batch",
            {"requests": [{"userRequest": "x", "context": {"deep": _DEEP}}]},
            "requests.0.context",
        ),
        ("feedback", {"orchestrationId": "x" * 129, "rating": 3}, "orchestrationId"),
        ("feedback", {"orchestrationId": "x", "rating": 3, "comment": "c" * 2001}, "comment"),
        ("auto-pilot/submit", {"userRequest": "x", "priority": 10**30}, "priority"),
        ("auto-pilot/submit", {"userRequest": "x", "priority": -1}, "priority"),
        ("auto-pilot/submit", {"userRequest": "x", "context": {"deep": _DEEP}}, "context"),
        ("auto-pilot/submit", {"userRequest": ""}, "userRequest"),
    ],
)
def test_platform_request_fields_are_bounded(path: str, body: dict[str, Any], field: str) -> None:
    async def scenario(client: TestClient) -> None:
        r = await client.post(f"/api/v1/ab-mcts/{path}", json=body)
        err = await r.json()
        assert r.status == 400, err
        assert any(field in d["field"] for d in err["error"]["details"]), err

    run_with_client(_app(), scenario)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("search", {"context": {**_CTX, "task": "t" * 10_001}, "availableAgents": AGENTS}, "task"),
        (
            "search",
            {"context": {**_CTX, "requirements": ["r"] * 101}, "availableAgents": AGENTS},
            "context.requirements",
        ),
        (
            "search",
            {"context": {**_CTX, "constraints": ["c" * 1001]}, "availableAgents": AGENTS},
            "context.constraints.0",
        ),
        (
            "search",
            {"context": {**_CTX, "contextData": {"deep": _DEEP}}, "availableAgents": AGENTS},
            "context.contextData",
        ),
        (
            "search",
            {"context": {**_CTX, "contextData": {"taskType": 7}}, "availableAgents": AGENTS},
            "taskType",
        ),
        (
            "search",
            {
                "context": {**_CTX, "executionContext": {"sessionId": "s", "budget": 1e308}},
                "availableAgents": AGENTS,
            },
            "context.executionContext.budget",
        ),
        (
            "search",
            {
                "context": {**_CTX, "userPreferences": {"maxCost": -1}},
                "availableAgents": AGENTS,
            },
            "context.userPreferences.maxCost",
        ),
        ("search", {"context": _CTX, "availableAgents": ["a" * 129]}, "availableAgents.0"),
        ("search", {"context": _CTX, "availableAgents": ["a", "a"]}, "availableAgents"),
        ("search", {"context": _CTX, "availableAgents": [""]}, "availableAgents.0"),
        (
            "search",
            {"context": _CTX, "availableAgents": [f"a{i}" for i in range(5000)]},
            "availableAgents",
        ),
        (
            "search",
            {"context": _CTX, "availableAgents": AGENTS, "options": {"seed": 10**30}},
            "options.seed",
        ),
        (
            "search",
            {"context": _CTX, "availableAgents": AGENTS, "options": {"explorationConstant": 1e308}},
            "options.explorationConstant",
        ),
        (
            "search",
            {"context": _CTX, "availableAgents": AGENTS, "options": {"checkpointInterval": -1}},
            "options.checkpointInterval",
        ),
        (
            "recommend",
            {"context": {**_CTX, "executionContext": {"sessionId": ""}}, "availableAgents": AGENTS},
            "context.executionContext.sessionId",
        ),
    ],
)
def test_bridge_request_fields_are_bounded(path: str, body: dict[str, Any], field: str) -> None:
    async def scenario(client: TestClient) -> None:
        r = await client.post(f"/api/v1/ab-mcts-rust/{path}", json=body)
        err = await r.json()
        assert r.status == 400, err
        assert any(field in d["field"] for d in err["error"]["details"]), err

    run_with_client(_app(), scenario)


def test_hostile_but_valid_requests_never_answer_5xx() -> None:
    """Unicode, maxima and odd-but-valid values are answered (200) or refused (4xx)."""
    many = [f"agent-{i}" for i in range(100)]
    maxima = {"maxIterations": 10_000, "maxDepth": 50, "timeLimitMs": 300_000, "seed": 2**63 - 1}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("ab-mcts/orchestrate", {"userRequest": "\u00e9\u4e2d\U0001f600\u0000"}),
        (
            "ab-mcts/orchestrate",
            {"userRequest": "x", "context": {"taskType": None, "agents": None}},
        ),
        (
            "ab-mcts/orchestrate",
            {
                "userRequest": "x",
                "context": {"agents": many, "taskType": "\U0001f600"},
                "options": {"maxIterations": 10_000, "maxDepth": 50, "seed": 2**63 - 1},
            },
        ),
        ("ab-mcts-rust/search", {"context": _CTX, "availableAgents": many, "options": maxima}),
        ("ab-mcts-rust/recommend", {"context": _CTX, "availableAgents": ["\u00e9\u0000"]}),
        ("ab-mcts-rust/test", {"testType": "load", "agentCount": 20}),
        ("ab-mcts/feedback", {"orchestrationId": "\U0001f600", "rating": 5}),
        ("ab-mcts/auto-pilot/submit", {"userRequest": "\U0001f600", "priority": 100}),
        (
            "ab-mcts-rust/feedback",
            {
                **_bridge_feedback(executionTimeMs=86_400_000, tokensUsed=100_000_000),
                "agentName": "\U0001f600",
            },
        ),
    ]

    async def scenario(client: TestClient) -> None:
        for path, body in cases:
            r = await client.post(f"/api/v1/{path}", json=body)
            assert r.status < 500, (path, await r.text())
        r = await client.get("/api/v1/ab-mcts/models", params={"taskType": "t" * 5000})
        assert r.status == 200 and (await r.json())["data"]["rankings"] == []  # read only
        for path in ("ab-mcts/metrics", "ab-mcts/report", "ab-mcts-rust/stats"):
            r = await client.get(f"/api/v1/{path}")
            assert r.status == 200, path

    run_with_client(_app(), scenario)


def test_health_routes_are_public_and_reveal_nothing_sensitive() -> None:
    token, secret = "api-token-123456", "do-not-leak-7f3a"
    app = create_app(Settings(api_token=token, admin_token=ADMIN))
    routes = [
        "/health",
        "/api/v1/ab-mcts/health",
        "/api/v1/ab-mcts-rust/health",
        "/api/v1/parameters/health",
        "/api/v1/vision/health",
    ]

    async def scenario(client: TestClient) -> None:
        service = client.app[mcts_api.SERVICE.key]
        orchestrator = service.orchestrator
        real = orchestrator.orchestrate
        started, release = threading.Event(), threading.Event()

        def held(*args: Any, **kwargs: Any) -> Any:
            started.set()
            release.wait(10)
            return real(*args, **kwargs)

        orchestrator.orchestrate = held
        body = {
            "userRequest": f"summarise {secret}",
            "context": {"password": secret},
            "options": {"maxIterations": 20},
        }
        pending = asyncio.ensure_future(
            client.post("/api/v1/ab-mcts/orchestrate", json=body, headers=bearer(token))
        )
        for _ in range(500):
            if started.is_set():
                break
            await asyncio.sleep(0.01)
        r = await client.get("/api/v1/ab-mcts/health")
        assert r.status == 200 and (await r.json())["data"]["activeSearches"] == 1
        release.set()
        assert (await pending).status == 200
        r = await client.post("/api/v1/ab-mcts/auto-pilot/submit", json=body, headers=bearer(token))
        assert r.status == 200
        for path in routes:
            r = await client.get(path)  # no token
            text = await r.text()
            assert r.status in (200, 503), (path, text)
            assert secret not in text and token not in text and ADMIN not in text, path
        health = (await (await client.get("/api/v1/ab-mcts/health")).json())["data"]
        assert health["activeSearches"] == 0
        r = await client.get("/api/v1/ab-mcts/metrics")
        assert r.status == 401  # the other routes still need the token

    run_with_client(app, scenario)


def test_the_openapi_document_states_the_bounds() -> None:
    """What the service refuses, the document says it refuses (so a schema-driven client
    or fuzzer stays within the bounds)."""

    async def scenario(client: TestClient) -> None:
        schemas = (await (await client.get("/openapi.json")).json())["components"]["schemas"]
        orchestrate = schemas["OrchestrateBody"]["properties"]
        assert orchestrate["userRequest"]["maxLength"] == 10_000
        context = orchestrate["context"]
        assert context["maxProperties"] == 256 and "65536 bytes" in context["description"]
        assert context["properties"]["agents"]["uniqueItems"] is True
        assert context["properties"]["taskType"]["maxLength"] == 128
        assert schemas["SubmitBody"]["properties"]["priority"]["maximum"] == 100
        assert schemas["RustOptions"]["properties"]["maxIterations"]["maximum"] == 10_000
        assert schemas["RustOptions"]["properties"]["seed"]["anyOf"][0]["maximum"] == 2**63 - 1
        search = schemas["RustSearchBody"]["properties"]["availableAgents"]
        assert search["uniqueItems"] is True and search["items"]["maxLength"] == 128
        meta = schemas["RewardMetadata"]["properties"]
        assert meta["executionTimeMs"]["maximum"] == 86_400_000
        assert meta["tokensUsed"]["maximum"] == 100_000_000
        assert meta["apiCallsMade"]["maximum"] == 1_000_000

    run_with_client(_app(), scenario)
