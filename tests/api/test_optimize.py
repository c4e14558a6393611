"""Routes of the parameter optimizer: the platform contract and ask/tell studies."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.conftest import bearer, run_with_client
from workbench.api import optimize as routes
from workbench.api import system
from workbench.api.app import create_app
from workbench.config import Settings

TOKEN = "api-token-123"
H = bearer(TOKEN)


def app() -> Any:
    settings = Settings(api_token=TOKEN, sections={"optimize": {"store": "memory"}})
    return create_app(settings, routers=[system.router, routes.router])


def test_parameters_contract() -> None:
    async def scenario(client: TestClient) -> None:
        r = await client.get("/api/v1/parameters/health")
        assert r.status == 200 and (await r.json())["status"] == "healthy"
        r = await client.post("/api/v1/parameters", json={"taskType": "code_generation"})
        assert r.status == 401
        r = await client.post(
            "/api/v1/parameters",
            json={
                "task_type": "code_generation",
                "prompt": "write a parser",
                "constraints": {"maxTokensLimit": 1000},
            },
            headers=H,
        )
        body = await r.json()
        assert r.status == 200, body
        assert body["temperature"] == 0.2 and body["max_tokens"] == 1000  # the profile, clipped
        execs = [
            {
                "taskType": "code_generation",
                "parameters": {"temperature": 0.1 + 0.05 * i, "maxTokens": 500 + 100 * i},
                "latencyMs": 800 + 10 * i,
                "success": i != 3,
                "quality": 0.5 + 0.03 * i,
                "cost": 0.001,
            }
            for i in range(7)
        ]
        r = await client.post("/api/v1/parameters/feedback", json={"executions": execs}, headers=H)
        assert (await r.json())["accepted"] == 7
        r = await client.post("/api/v1/parameters", json={"taskType": "code_generation"}, headers=H)
        body = await r.json()
        assert "Bayesian" in body["reasoning"][0] and 0 < body["confidence"] < 0.2
        r = await client.get("/api/v1/parameters/analytics", headers=H)
        a = await r.json()
        assert a["taskTypes"]["code_generation"]["observations"] == 6
        assert a["taskTypes"]["code_generation"]["failures"] == 1
        r = await client.post(
            "/api/v1/parameters/feedback",
            json={"executions": [{"taskType": "x", "parameters": {}, "latencyMs": -1}]},
            headers=H,
        )
        assert r.status == 400

    run_with_client(app(), scenario)


def test_study_ask_tell_best_pareto() -> None:
    async def scenario(client: TestClient) -> None:
        base = "/api/v1/optimize/s1"
        r = await client.post(f"{base}/ask", json={"n": 1}, headers=H)
        assert r.status == 404
        space = {
            "x": {"type": "real", "low": 0, "high": 1},
            "m": {"type": "categorical", "choices": ["a", "b"]},
        }
        r = await client.post(
            base, json={"space": space, "objectives": {"y": "minimize", "c": "minimize"}}, headers=H
        )
        assert r.status == 201
        r = await client.post(base, json={"space": space}, headers=H)
        assert r.status == 409
        r = await client.post(f"{base}/ask", json={"n": 3}, headers=H)
        trials = (await r.json())["data"]["trials"]
        assert len(trials) == 3
        for t in trials:
            x = t["params"]["x"]
            r = await client.post(
                f"{base}/tell",
                json={"trialId": t["id"], "outcomes": {"y": x, "c": 1 - x}},
                headers=H,
            )
            assert r.status == 200
        r = await client.post(
            f"{base}/tell",
            json={"params": {"x": 3, "m": "a"}, "outcomes": {"y": 1, "c": 1}},
            headers=H,
        )
        err = await r.json()
        assert r.status == 400 and err["error"]["code"] == "VALIDATION_ERROR"
        assert "x" in err["error"]["message"]
        r = await client.get(f"{base}/best", headers=H)
        assert (await r.json())["data"]["value"] == min(t["params"]["x"] for t in trials)
        r = await client.get(f"{base}/pareto", headers=H)
        assert len((await r.json())["data"]["trials"]) == 3

    run_with_client(app(), scenario)


def _persisted_app(settings: Settings) -> Any:
    return create_app(settings, routers=[system.router, routes.router])


def _restart_scenario(settings: Settings) -> None:
    """Create a study, ask and tell, then 'restart' (a new app on the same store)."""
    space = {"x": {"type": "real", "low": 0, "high": 1}}
    base = "/api/v1/optimize/persisted"
    state: dict[str, Any] = {}

    async def first(client: TestClient) -> None:
        r = await client.post(
            base, json={"space": space, "objectives": {"y": "minimize"}, "seed": 3}, headers=H
        )
        assert r.status == 201
        r = await client.post(f"{base}/ask", json={"n": 2}, headers=H)
        trials = (await r.json())["data"]["trials"]
        r = await client.post(
            f"{base}/tell", json={"trialId": trials[0]["id"], "outcomes": {"y": 0.25}}, headers=H
        )
        assert r.status == 200
        state["pending"] = trials[1]["id"]

    async def second(client: TestClient) -> None:
        r = await client.get(f"{base}/best", headers=H)
        assert r.status == 200 and (await r.json())["data"]["value"] == 0.25
        # the trial still pending before the restart can be told now
        r = await client.post(
            f"{base}/tell", json={"trialId": state["pending"], "outcomes": {"y": 0.1}}, headers=H
        )
        assert r.status == 200
        r = await client.get(f"{base}/best", headers=H)
        assert (await r.json())["data"]["value"] == 0.1
        r = await client.post(base, json={"space": space}, headers=H)
        assert r.status == 409  # the stored study blocks a duplicate after a restart

    run_with_client(_persisted_app(settings), first)
    run_with_client(_persisted_app(settings), second)


def test_studies_survive_a_restart_in_files(tmp_path: Any) -> None:
    _restart_scenario(Settings(api_token=TOKEN, data_dir=tmp_path))
    assert (tmp_path / "optimize" / "studies" / "persisted.json").is_file()


def test_studies_survive_a_restart_in_redis(redis_adapter: Any) -> None:
    settings = Settings(
        api_token=TOKEN,
        redis_url=redis_adapter.url,
        redis_prefix=redis_adapter.prefix,
        sections={"optimize": {"store": "redis"}},
    )
    _restart_scenario(settings)
    assert redis_adapter.exists(redis_adapter.key("optimize", "study", "persisted"))


def test_unknown_store_is_a_config_error() -> None:
    import pytest

    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimize\.store"):
        create_app(
            Settings(sections={"optimize": {"store": "s3"}}),
            routers=[system.router, routes.router],
        )


def _parameters_restart_scenario(settings: Settings) -> None:
    """Feedback, then a 'restart': what was learnt is still there, under the study routes too."""
    execs = [
        {
            "taskType": "data_analysis",
            "parameters": {"temperature": 0.2 + 0.1 * i},
            "latencyMs": 500,
            "success": True,
            "quality": 0.6 + 0.05 * i,
            "cost": 0.0,
        }
        for i in range(4)
    ]
    seen: dict[str, Any] = {}

    async def first(client: TestClient) -> None:
        r = await client.post("/api/v1/parameters/feedback", json={"executions": execs}, headers=H)
        assert r.status == 200, await r.text()
        r = await client.post("/api/v1/parameters", json={"taskType": "data_analysis"}, headers=H)
        seen["suggestion"] = await r.json()
        r = await client.post(
            "/api/v1/optimize/parameters-mine",
            json={"space": {"x": {"type": "real", "low": 0, "high": 1}}},
            headers=H,
        )
        body = await r.json()
        assert r.status == 400, body
        assert body["error"]["code"] == "VALIDATION_ERROR" and "parameters-" in str(body)
        r = await client.post(
            "/api/v1/parameters/feedback",
            json={"executions": [{**execs[0], "taskType": "a b"}]},
            headers=H,
        )
        assert r.status == 400 and "taskType" in await r.text()

    async def second(client: TestClient) -> None:
        r = await client.get("/api/v1/parameters/analytics", headers=H)
        task = (await r.json())["taskTypes"]["data_analysis"]
        assert task["observations"] == 4 and task["bestScore"] is not None
        r = await client.get("/api/v1/optimize/parameters-data_analysis/best", headers=H)
        assert r.status == 200 and (await r.json())["data"]["value"] == task["bestScore"]
        r = await client.get("/api/v1/optimize/parameters-unseen/best", headers=H)
        assert r.status == 404
        r = await client.post("/api/v1/parameters", json={"taskType": "data_analysis"}, headers=H)
        again = await r.json()
        assert "Bayesian" in again["reasoning"][0]
        keys = ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty")
        assert {k: again[k] for k in keys} == {k: seen["suggestion"][k] for k in keys}

    run_with_client(_persisted_app(settings), first)
    run_with_client(_persisted_app(settings), second)


def test_parameter_learning_survives_a_restart_in_files(tmp_path: Any) -> None:
    _parameters_restart_scenario(Settings(api_token=TOKEN, data_dir=tmp_path))
    assert (tmp_path / "optimize" / "studies" / "parameters-data_analysis.json").is_file()


def test_parameter_learning_survives_a_restart_in_redis(redis_adapter: Any) -> None:
    settings = Settings(
        api_token=TOKEN,
        redis_url=redis_adapter.url,
        redis_prefix=redis_adapter.prefix,
        sections={"optimize": {"store": "redis"}},
    )
    _parameters_restart_scenario(settings)
