"""Routes of the parameter optimizer: the platform contract and ask/tell studies."""

from __future__ import annotations

import json
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


def _parameters_restart_scenario(settings: Settings, *, shared: bool = False) -> None:
    """Feedback, then a 'restart': what was learnt is still there, under the study routes too.

    A file store replays the study, so the restarted service suggests the same point; a shared
    store (Redis) also keeps the first suggestion as a pending trial, which every worker and a
    restarted service see, so the point is not handed out again."""
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
        same = {k: again[k] for k in keys} == {k: seen["suggestion"][k] for k in keys}
        assert same is not shared

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
    _parameters_restart_scenario(settings, shared=True)


ADMIN = "admin-token-789"
HA = bearer(ADMIN)


def _app_with(tmp_path: Any, **optimize: Any) -> Any:
    settings = Settings(
        api_token=TOKEN,
        admin_token=ADMIN,
        data_dir=tmp_path,
        sections={"optimize": {"store": "file", **optimize}},
    )
    return create_app(settings, routers=[system.router, routes.router])


def _execution(task: str = "code_generation", **change: Any) -> dict[str, Any]:
    return {
        "taskType": task,
        "parameters": {"temperature": 0.3},
        "latencyMs": 900,
        "success": True,
        "quality": 0.7,
        "cost": 0.001,
        **change,
    }


def test_extreme_values_are_refused_and_never_poison_a_study(tmp_path: Any) -> None:
    async def scenario(client: TestClient) -> None:
        execs = [_execution(parameters={"temperature": 0.1 * i}) for i in range(6)]
        r = await client.post("/api/v1/parameters/feedback", json={"executions": execs}, headers=H)
        assert r.status == 200
        bad = [_execution(latencyMs=1e160)]
        r = await client.post("/api/v1/parameters/feedback", json={"executions": bad}, headers=H)
        assert r.status == 400 and "latencyMs" in await r.text()
        r = await client.post("/api/v1/parameters", json={"taskType": "code_generation"}, headers=H)
        assert r.status == 200, await r.text()
        base = "/api/v1/optimize/extreme"
        space = {"x": {"type": "real", "low": 0, "high": 1}}
        r = await client.post(base, json={"space": space}, headers=H)
        assert r.status == 201
        for y in (1e308, -1e308):
            r = await client.post(
                f"{base}/tell", json={"params": {"x": 0.5}, "outcomes": {"y": y}}, headers=H
            )
            assert r.status == 400 and "outcomes.y" in await r.text()
        for i, y in enumerate((1e12, -1e12, 0.1, 0.2, 0.3, 0.4)):
            r = await client.post(
                f"{base}/tell",
                json={"params": {"x": 0.1 + 0.1 * i}, "outcomes": {"y": y}},
                headers=H,
            )
            assert r.status == 200, await r.text()
        r = await client.post(f"{base}/ask", json={"n": 2}, headers=H)
        assert r.status == 200, await r.text()

    run_with_client(_app_with(tmp_path), scenario)
    # a record an older version accepted and persisted: the task keeps answering after a restart
    path = tmp_path / "optimize" / "studies" / "parameters-code_generation.json"
    doc = json.loads(path.read_text())
    trials = doc["study"]["trials"]
    trials.append({**trials[0], "id": len(trials), "outcomes": {"score": -5e156}})
    path.write_text(json.dumps(doc))

    async def after_restart(client: TestClient) -> None:
        r = await client.post("/api/v1/parameters", json={"taskType": "code_generation"}, headers=H)
        assert r.status == 200, await r.text()
        r = await client.get("/api/v1/parameters/analytics", headers=H)
        task = (await r.json())["taskTypes"]["code_generation"]
        assert task["observations"] == 6 and task["failures"] == 1

    run_with_client(_app_with(tmp_path), after_restart)


def test_malformed_study_requests_are_400_naming_the_field(tmp_path: Any) -> None:
    space = {"x": {"type": "real", "low": 0, "high": 1}}
    emoji = "\U0001f600" * 100
    cases: list[tuple[str, str, Any, str]] = [
        ("post", "/api/v1/optimize/a%00b", {"space": space}, "study"),
        ("post", f"/api/v1/optimize/{emoji}", {"space": space}, "study"),
        ("post", f"/api/v1/optimize/{emoji}/ask", {"n": 1}, "study"),
        ("get", "/api/v1/optimize/a%00b/best", None, "study"),
        ("post", "/api/v1/optimize/s", {"space": {"x": {"type": "real", "low": "abc"}}}, "low"),
        ("post", "/api/v1/optimize/s", {"space": {"x": {"type": "real", "low": 0}}}, "high"),
        ("post", "/api/v1/optimize/s", {"space": {"x": {"type": "spiral"}}}, "space.x"),
        ("post", "/api/v1/optimize/s", {"space": {}}, "space"),
        ("post", "/api/v1/optimize/s", {"space": space, "refPoint": {"y": "NaN"}}, "refPoint"),
        (
            "post",
            "/api/v1/optimize/s",
            {"space": space, "objectives": {"a": "min", "b": "max"}, "refPoint": {"z": 1}},
            "ref_point",
        ),
        (
            "post",
            "/api/v1/optimize/s",
            {"space": space, "outcomeConstraints": {"c": ["<", 1]}},
            "outcomeConstraints",
        ),
        (
            "post",
            "/api/v1/optimize/s",
            {"space": space, "outcomeConstraints": {"c": ["<=", "abc"]}},
            "outcomeConstraints",
        ),
        ("post", "/api/v1/optimize/s", {"space": space, "seed": -1}, "seed"),
        (
            "post",
            "/api/v1/optimize/s",
            {"space": {f"x{i}": space["x"] for i in range(9)}},
            "max_dimensions",
        ),
        (
            "post",
            "/api/v1/optimize/s",
            {"space": {"c": {"type": "categorical", "choices": list("abcdefghi")}}},
            "max_dimensions",
        ),
        ("post", "/api/v1/optimize/ok/ask", {"n": 5}, "max_batch"),
        ("post", "/api/v1/optimize/ok/tell", {"outcomes": {"y": 1}}, "trialId"),
        ("post", "/api/v1/optimize/ok/tell", {"trialId": 0, "outcomes": {"y": 1e308}}, "outcomes"),
    ]

    async def scenario(client: TestClient) -> None:
        r = await client.post("/api/v1/optimize/ok", json={"space": space}, headers=H)
        assert r.status == 201
        r = await client.post("/api/v1/optimize/ok/ask", json={"n": 1}, headers=H)
        assert r.status == 200
        for method, path, body, field in cases:
            kw = {} if body is None else {"json": body}
            r = await getattr(client, method)(path, headers=H, **kw)
            text = await r.text()
            assert r.status == 400, (path, body, r.status, text)
            assert field in text, (path, body, text)
        r = await client.get("/api/v1/optimize/s/best", headers=H)
        assert r.status == 404  # none of the bad definitions created a study

    run_with_client(_app_with(tmp_path, max_dimensions=8, max_batch=4), scenario)


class _Gate:
    """A strategy whose suggestions wait until the test releases them (a slow ask)."""

    name = "gate"

    def __init__(self) -> None:
        import threading

        self.entered = threading.Event()
        self.release = threading.Event()

    def suggest(self, inp: Any, q: int) -> Any:
        from workbench.optimize.strategies import SobolSearch

        self.entered.set()
        self.release.wait(120)
        return SobolSearch().suggest(inp, q)


def test_a_slow_ask_never_delays_other_studies(tmp_path: Any) -> None:
    import asyncio

    space = {"x": {"type": "real", "low": 0, "high": 1}}

    async def scenario(client: TestClient) -> None:
        for name in ("slow", "fast"):
            r = await client.post(f"/api/v1/optimize/{name}", json={"space": space}, headers=H)
            assert r.status == 201
        execs = [_execution(parameters={"temperature": 0.1 * i}) for i in range(6)]
        r = await client.post("/api/v1/parameters/feedback", json={"executions": execs}, headers=H)
        assert r.status == 200
        svc = client.server.app[routes.SERVICE.key]
        gate = _Gate()
        (await svc.study("slow")).strategy = gate
        slow = asyncio.ensure_future(
            client.post("/api/v1/optimize/slow/ask", json={"n": 1}, headers=H)
        )
        try:
            assert await asyncio.to_thread(gate.entered.wait, 60)
            r = await asyncio.wait_for(
                client.post("/api/v1/optimize/fast/ask", json={"n": 2}, headers=H), 30
            )
            assert r.status == 200
            r = await asyncio.wait_for(
                client.post("/api/v1/parameters", json={"taskType": "code_generation"}, headers=H),
                60,
            )
            assert r.status == 200
            assert not slow.done()
        finally:
            gate.release.set()
        r = await slow
        assert r.status == 200

    run_with_client(_app_with(tmp_path), scenario)


def test_ask_time_limit_marks_truncated_trials(tmp_path: Any) -> None:
    async def scenario(client: TestClient) -> None:
        base = "/api/v1/optimize/timed"
        space = {f"x{i}": {"type": "real", "low": 0, "high": 1} for i in range(3)}
        r = await client.post(base, json={"space": space}, headers=H)
        assert r.status == 201
        for i in range(7):
            params = {f"x{j}": (0.13 * (i + 1) * (j + 1)) % 1 for j in range(3)}
            r = await client.post(
                f"{base}/tell", json={"params": params, "outcomes": {"y": float(i)}}, headers=H
            )
            assert r.status == 200
        r = await client.post(f"{base}/ask", json={"n": 3}, headers=H)
        body = (await r.json())["data"]
        assert r.status == 200 and len(body["trials"]) == 3
        assert body["info"]["truncated"] is True

    run_with_client(_app_with(tmp_path, ask_time_limit_s=1e-6), scenario)


def test_admin_deletes_task_types_and_studies(tmp_path: Any) -> None:
    space = {"x": {"type": "real", "low": 0, "high": 1}}

    async def scenario(client: TestClient) -> None:
        for task in ("junk-1", "junk-2"):
            r = await client.post(
                "/api/v1/parameters/feedback", json={"executions": [_execution(task)]}, headers=H
            )
            assert r.status == 200
        r = await client.post(
            "/api/v1/parameters/feedback", json={"executions": [_execution("real")]}, headers=H
        )
        assert r.status == 409
        r = await client.delete("/api/v1/parameters/task-types/junk-1", headers=H)
        assert r.status == 403
        r = await client.delete("/api/v1/parameters/task-types/junk-1", headers=HA)
        assert r.status == 200, await r.text()
        r = await client.delete("/api/v1/parameters/task-types/junk-1", headers=HA)
        assert r.status == 404
        r = await client.delete("/api/v1/parameters/task-types/a%20b", headers=HA)
        assert r.status == 400
        r = await client.post(
            "/api/v1/parameters/feedback", json={"executions": [_execution("real")]}, headers=H
        )
        assert r.status == 200
        r = await client.post("/api/v1/optimize/s1", json={"space": space}, headers=H)
        assert r.status == 201
        r = await client.post("/api/v1/optimize/s2", json={"space": space}, headers=H)
        assert r.status == 409 and "max_studies" in await r.text()
        r = await client.delete("/api/v1/optimize/s1", headers=H)
        assert r.status == 403
        r = await client.delete("/api/v1/optimize/s1", headers=HA)
        assert r.status == 200
        r = await client.get("/api/v1/optimize/s1/best", headers=H)
        assert r.status == 404
        r = await client.post("/api/v1/optimize/s2", json={"space": space}, headers=H)
        assert r.status == 201

    run_with_client(_app_with(tmp_path, max_task_types=2, max_studies=1), scenario)
    assert not (tmp_path / "optimize" / "studies" / "parameters-junk-1.json").exists()
    assert not (tmp_path / "optimize" / "studies" / "s1.json").exists()


#: Request values the optimizer never interprets: any JSON, bounded by the body size limit.
_OPAQUE = {"ParameterRequest.context", "ParameterRequest.metadata", "Feedback.parameters"}


def test_every_optimizer_request_field_is_bounded() -> None:
    from workbench.api.openapi import build_openapi

    models = {
        spec.body.__name__
        for spec in routes.router.routes
        if spec.body is not None and "optimize" in spec.body.__module__
    }
    doc = build_openapi(routes.router.routes)
    schemas = doc["components"]["schemas"]
    unbounded: list[str] = []

    def check(where: str, schema: dict[str, Any], opaque: bool) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            models.add(name)
            return
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for i, sub in enumerate(schema.get(key, [])):
                check(f"{where}[{i}]", sub, opaque)
        kind = schema.get("type")
        if "const" in schema or "enum" in schema or kind in ("boolean", "null"):
            return
        if kind == "string" and "maxLength" not in schema:
            unbounded.append(where)
        if kind in ("number", "integer") and not (
            ("minimum" in schema or "exclusiveMinimum" in schema)
            and ("maximum" in schema or "exclusiveMaximum" in schema)
        ):
            unbounded.append(where)
        if kind == "array":
            if "maxItems" not in schema:
                unbounded.append(where)
            if "items" in schema:
                check(f"{where}[]", schema["items"], opaque)
        if kind == "object" and "properties" not in schema:
            if "maxProperties" not in schema:
                unbounded.append(where)
            names = schema.get("propertyNames", {})
            if "maxLength" not in names and "pattern" not in names:
                unbounded.append(f"{where} (keys)")
            values = schema.get("additionalProperties")
            if isinstance(values, dict) and not opaque:
                check(f"{where}{{}}", values, opaque)
        composed = ("anyOf", "oneOf", "allOf", "const", "enum", "$ref")
        if not kind and not opaque and not any(k in schema for k in composed):
            unbounded.append(f"{where} (any JSON)")

    done: set[str] = set()
    while models - done:
        name = sorted(models - done)[0]
        done.add(name)
        for prop, schema in schemas[name].get("properties", {}).items():
            where = f"{name}.{prop}"
            check(where, schema, where in _OPAQUE)
    assert not unbounded, unbounded


def test_tell_takes_standard_errors_and_best_says_how_it_chose() -> None:
    async def scenario(client: TestClient) -> None:
        base = "/api/v1/optimize/noisy"
        space = {"x": {"type": "real", "low": 0, "high": 1}}
        r = await client.post(
            base, json={"space": space, "objectives": {"y": "maximize"}}, headers=H
        )
        assert r.status == 201
        for x, y in ((0.2, 0.5), (0.2, 0.48), (0.2, 0.52), (0.8, 0.54), (0.79, 0.45), (0.81, 0.45)):
            body = {"params": {"x": x}, "outcomes": {"y": y}, "sem": {"y": 0.02}}
            r = await client.post(f"{base}/tell", json=body, headers=H)
            assert r.status == 200, await r.text()
            assert (await r.json())["data"]["trial"]["sem"] == {"y": 0.02}
        r = await client.get(f"{base}/best", headers=H)
        data = (await r.json())["data"]
        assert data["basis"] == "posterior_mean" and data["params"] == {"x": 0.2}
        assert data["best_observed"]["params"] == {"x": 0.8}
        assert abs(data["posterior_mean"] - 0.5) < 0.02
        for bad in ({"y": -1.0}, {"z": 0.1}):
            body = {"params": {"x": 0.5}, "outcomes": {"y": 0.1}, "sem": bad}
            r = await client.post(f"{base}/tell", json=body, headers=H)
            assert r.status == 400, await r.text()
            assert "sem" in await r.text()

    run_with_client(app(), scenario)
