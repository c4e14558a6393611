"""The platform routes over real loopback HTTP: fake backends behind a router.

In-process routers (``run_router``) serve the fast-coordinator routes; the admin reload is
tested on ``workbench router serve`` in a subprocess, since it reloads the file the process
was started with.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.router.test_server import backend_entry, dead_url, fakes, wait_for
from workbench.router.config import RouterConfig
from workbench.router.fake_backend import FakeBackendServer
from workbench.router.platform import (
    MAX_BENCHMARK_REQUESTS,
    MAX_SUPPORTING_TASKS,
    PREFIX,
    TimingReservoir,
    target_model,
)
from workbench.router.platform_openapi import openapi_document
from workbench.router.rules import RuleContext, decide
from workbench.router.server import SERVICE, run_router
from workbench.testing import ServeProcess

API = "platform-api-token-0123"
ADMIN = "platform-admin-token-0123"
CODE = "implement a function that parses the config and debug the code"
SIMPLE = "hi there"
ANALYSIS = "explain and analyze in a detailed, comprehensive way " + "why markets move. " * 30
CHAT_PATH = "/v1/chat/completions"
#: Knobs of the fake behind the ``code``-tagged backend (it serves model ``c``).
CODER: dict[str, Any] = {"models": ("c",)}


@pytest.fixture(autouse=True)
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No tokens unless a test sets them, and no stray workbench.toml."""
    empty = tmp_path / "workbench.toml"
    empty.write_text("")
    monkeypatch.setenv("WORKBENCH_CONFIG", str(empty))
    monkeypatch.delenv("WORKBENCH_API_TOKEN", raising=False)
    monkeypatch.delenv("WORKBENCH_ADMIN_TOKEN", raising=False)


def entries(fast: FakeBackendServer, code: FakeBackendServer) -> list[dict[str, Any]]:
    """A ``fast``-tagged backend serving ``m`` and a ``code``-tagged one serving ``c``."""
    return [
        {**backend_entry(fast, "fast-a"), "tags": ["fast"]},
        {**backend_entry(code, "code-b"), "models": ["c"], "tags": ["code"]},
    ]


@contextmanager
def router(backends: list[dict[str, Any]], **settings: Any) -> Iterator[Any]:
    settings.setdefault("strategy", "round-robin")
    config = RouterConfig.from_mapping({"router": settings, "backends": backends}, environ={})
    thread = run_router(config)
    try:
        yield thread
    finally:
        thread.stop()


def post(url: str, route: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{url}{PREFIX}/{route}", json=body, timeout=30, **kw)


def data(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["success"] is True and "timestamp" in doc["metadata"], doc
    return dict(doc["data"])


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert doc["success"] is False and set(doc["error"]) >= {"code", "message", "field"}, doc
    return dict(doc["error"])


def test_decisions_follow_the_rule_table_on_the_users_text() -> None:
    with fakes({}, CODER) as (f, g), router(entries(f, g)) as thread:
        seen = {}
        for text in (CODE, SIMPLE, ANALYSIS):
            got = data(post(thread.url, "routing-decision", {"userRequest": text}))
            d, meta = got["decision"], got["metadata"]
            want = decide(text)
            assert d["targetService"] == want.target and d["rule"] == want.rule
            assert d["complexity"] == want.complexity
            assert d["estimatedTokens"] == want.estimated_tokens
            assert d["priority"] == want.priority and d["confidence"] == want.confidence
            assert d["shouldUseLocal"] == (want.target in ("lfm2", "ollama"))
            assert want.rule in d["reasoning"] and isinstance(d["reasoning"], str)
            assert meta["coordinator"] == "fast-llm" and meta["timestamp"].endswith("Z")
            seen[text] = d
        # A code request and a simple one go to different targets, models and backends.
        assert seen[CODE]["targetService"] == "lm-studio" and seen[CODE]["model"] == "c"
        assert seen[CODE]["backend"] == "code-b" and seen[CODE]["modelSource"] == "tag 'code'"
        assert seen[SIMPLE]["targetService"] == "lfm2" and seen[SIMPLE]["model"] == "m"
        assert seen[SIMPLE]["backend"] == "fast-a"
        assert seen[ANALYSIS]["targetService"] == "anthropic"
        assert seen[ANALYSIS]["complexity"] == "complex"
        # The context counts: high urgency makes the simple rule win outright, priority 1.
        urgent = {"userRequest": SIMPLE, "context": {"urgency": "high", "taskType": "qa"}}
        d = data(post(thread.url, "routing-decision", urgent))["decision"]
        assert d == {**d, "targetService": "lfm2", "priority": 1, "confidence": 1.2}
        assert f.stats.requests[CHAT_PATH] == g.stats.requests[CHAT_PATH] == 0


def test_execution_times_are_measured() -> None:
    with fakes({}, CODER) as (f, g), router(entries(f, g)) as thread:
        times = []
        for i in range(20):
            meta = data(post(thread.url, "routing-decision", {"userRequest": f"hello {i}"}))[
                "metadata"
            ]
            ms = meta["executionTimeMs"]
            assert ms > 0 and re.fullmatch(r"[0-9]+\.[0-9]{3}ms", meta["executionTime"])
            assert meta["executionTime"] == f"{ms:.3f}ms"
            times.append(ms)
        # Nanosecond clock readings of 20 separate decisions: all equal would mean a constant.
        assert len(set(times)) > 1
        status = data(httpx.get(f"{thread.url}{PREFIX}/status"))["coordinator"]
        rt = status["routingTime"]
        assert rt["decisions"] == rt["samples"] == 20
        assert min(times) <= rt["medianMs"] <= rt["p95Ms"] <= max(times)


def test_execute_forwards_through_the_proxy_and_feedback_counts_once() -> None:
    with fakes({}, {**CODER, "completion_tokens": 5}) as (f, g), router(entries(f, g)) as thread:
        got = data(post(thread.url, "execute", {"userRequest": CODE, "maxTokens": 64}))
        meta = got["metadata"]
        assert got["response"].startswith("f1 says")
        assert meta["serviceUsed"] == "code-b" and meta["model"] == "c"
        assert meta["routingDecision"]["targetService"] == "lm-studio"
        assert meta["tokensUsed"] > 5 and meta["coordinator"] == "fast-llm"
        assert meta["executionTimeMs"] >= meta["routingTimeMs"] > 0
        # The backend got the user's text itself, not a routing prompt built around it.
        body = g.stats.last_body
        assert body["messages"] == [{"role": "user", "content": CODE}]
        assert body["model"] == "c" and body["max_tokens"] == 64
        rid = meta["requestId"]
        assert g.stats.last_headers["x-request-id"] == rid
        service = thread.app[SERVICE]

        def posterior() -> tuple[float, float]:
            arm = thread.call(lambda: service.router.learner.snapshot())["c"]["code-b"]
            return arm["alpha"], arm["beta"]

        before = posterior()
        fb = {"requestId": rid, "rating": 5}
        assert data(post(thread.url, "feedback", fb)) == {"requestId": rid, "counted": True}
        counted = posterior()
        assert counted[0] > before[0]  # a rating of 5 is evidence of success
        again = data(post(thread.url, "feedback", {**fb, "rating": 1}))
        assert again["counted"] is False and "already" in again["reason"]
        assert posterior() == counted  # the second post taught nothing
        err = error(post(thread.url, "feedback", {"requestId": "never-seen", "success": True}), 404)
        assert err["field"] == "requestId" and "never-seen" in err["message"]
        # The client's request id is kept.
        got = data(
            post(thread.url, "execute", {"userRequest": SIMPLE}, headers={"x-request-id": "r-7"})
        )
        assert got["metadata"]["requestId"] == "r-7" and got["metadata"]["serviceUsed"] == "fast-a"


def test_execute_failures_use_the_proxys_retries_and_answer_in_the_envelope() -> None:
    with (
        fakes({"error_rate": 1.0}, CODER) as (f, g),
        router(entries(f, g), retries=2) as thread,
    ):
        resp = post(thread.url, "execute", {"userRequest": SIMPLE})
        err = error(resp, 502)
        assert err["code"] == "UPSTREAM_FAILED" and "failed" in err["message"]
        assert err["details"]["metadata"]["routingDecision"]["model"] == "m"
        assert f.stats.requests[CHAT_PATH] == 3  # the proxy's first attempt and two retries
        assert g.stats.requests[CHAT_PATH] == 0


def test_coordinate_agents_runs_every_task_and_bounds_them() -> None:
    with fakes({}, CODER) as (f, g), router(entries(f, g)) as thread:
        body = {"primaryTask": SIMPLE, "supportingTasks": [CODE, "thanks"]}
        got = data(post(thread.url, "coordinate-agents", body))
        assert got["primary"]["success"] and got["primary"]["response"].startswith("f0 says")
        assert [s["success"] for s in got["supporting"]] == [True, True]
        assert got["supporting"][0]["metadata"]["serviceUsed"] == "code-b"
        coordination = got["coordination"]
        assert coordination["fastDecisions"] == 3 and coordination["succeeded"] == 3
        assert coordination["servicesUsed"] == ["code-b", "fast-a"]
        assert coordination["totalExecutionTimeMs"] > 0
        assert coordination["totalExecutionTime"].endswith("ms")
        ids = {r["metadata"]["requestId"] for r in [got["primary"], *got["supporting"]]}
        assert len(ids) == 3  # each task can be given feedback of its own
        # The primary task is scored as urgent and exact (the platform's context).
        assert (
            got["primary"]["metadata"]["routingDecision"]["priority"]
            == decide(SIMPLE, RuleContext(urgency="high", requires_accuracy=True)).priority
        )
        assert f.stats.requests[CHAT_PATH] + g.stats.requests[CHAT_PATH] == 3
        too_many = {"primaryTask": "x", "supportingTasks": ["y"] * (MAX_SUPPORTING_TASKS + 1)}
        err = error(post(thread.url, "coordinate-agents", too_many), 400)
        assert err["field"] == "supportingTasks" and str(MAX_SUPPORTING_TASKS) in err["message"]
        assert data(post(thread.url, "coordinate-agents", {"primaryTask": "x"}))["supporting"] == []


def test_status_reports_measured_figures_and_real_availability() -> None:
    with (
        fakes({}) as (f,),
        router(
            [{**backend_entry(f, "good"), "tags": ["fast"]}, backend_entry(dead_url(), "dead")],
            probe_interval_s=0.05,
        ) as thread,
    ):
        url = f"{thread.url}{PREFIX}/status"
        first = data(httpx.get(url))
        assert first["coordinator"]["routingTime"] == {
            "decisions": 0,
            "samples": 0,
            "medianMs": None,
            "p95Ms": None,
        }

        def dead_state() -> str:
            return str(data(httpx.get(url))["backends"]["dead"]["state"])

        wait_for(lambda: dead_state() == "unhealthy")
        data(post(thread.url, "execute", {"userRequest": SIMPLE}))
        got = data(httpx.get(url))
        coordinator = got["coordinator"]
        assert coordinator["status"] == "degraded" and coordinator["availableBackends"] == 1
        assert got["backends"]["good"]["available"] and not got["backends"]["dead"]["available"]
        assert got["backends"]["good"]["requests"] == 1 and got["backends"]["dead"]["requests"] == 0
        assert coordinator["requestsServed"]["byRoute"]["execute"] == 1
        assert coordinator["requestsServed"]["byRoute"]["status"] >= 2
        assert coordinator["routingTime"]["decisions"] == 1
        assert coordinator["uptimeSeconds"] > first["coordinator"]["uptimeSeconds"] > 0
        assert got["lfm2"]["model"] == "m" and got["lfm2"]["available"] is True
        assert got["targets"]["lm-studio"]["modelSource"] == "default"


def test_benchmark_times_each_decision_without_calling_a_backend() -> None:
    with fakes({}, CODER) as (f, g), router(entries(f, g)) as thread:
        requests = [
            SIMPLE,
            {"userRequest": CODE},
            {"userRequest": SIMPLE, "context": {"urgency": "high"}},
        ]
        got = data(post(thread.url, "benchmark", {"testRequests": requests}))
        results = got["benchmark"]["results"]
        assert [r["decision"]["targetService"] for r in results] == ["lfm2", "lm-studio", "lfm2"]
        assert results[2]["decision"]["priority"] == 1
        assert all(r["routingTimeMs"] > 0 for r in results)
        summary = got["benchmark"]["summary"]
        assert summary["count"] == got["metadata"]["testCount"] == 3
        assert summary["minMs"] <= summary["medianMs"] <= summary["maxMs"]
        assert summary["totalMs"] == pytest.approx(sum(r["routingTimeMs"] for r in results))
        assert f.stats.requests[CHAT_PATH] == g.stats.requests[CHAT_PATH] == 0
        err = error(post(thread.url, "benchmark", {"testRequests": []}), 400)
        assert err["field"] == "testRequests"
        many = {"testRequests": ["x"] * (MAX_BENCHMARK_REQUESTS + 1)}
        assert error(post(thread.url, "benchmark", many), 400)["field"] == "testRequests"


@pytest.mark.parametrize("route", ["lfm2/quick", "optimize", "auto-tune"])
def test_routes_without_an_implementation_answer_501(route: str) -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a")]) as thread:
        err = error(post(thread.url, route, {"userRequest": "x"}), 501)
        assert err["code"] == "NOT_IMPLEMENTED" and len(err["message"]) > 40


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("routing-decision", {}, "userRequest"),
        ("routing-decision", {"userRequest": None}, "userRequest"),
        ("routing-decision", {"userRequest": 3}, "userRequest"),
        ("routing-decision", {"userRequest": ""}, "userRequest"),
        ("routing-decision", {"userRequest": "x" * 32_001}, "userRequest"),
        ("routing-decision", {"userRequest": "x", "context": []}, "context"),
        (
            "routing-decision",
            {"userRequest": "x", "context": {"urgency": "now"}},
            "context.urgency",
        ),
        (
            "routing-decision",
            {"userRequest": "x", "context": {"requiresCreativity": "yes"}},
            "context.requiresCreativity",
        ),
        ("routing-decision", {"userRequest": "x", "context": {"taskType": 5}}, "context.taskType"),
        ("execute", {"userRequest": "x", "maxTokens": 0}, "maxTokens"),
        ("execute", {"userRequest": "x", "maxTokens": 1.5}, "maxTokens"),
        ("execute", {"userRequest": "x", "temperature": 2.5}, "temperature"),
        ("execute", {"userRequest": "x", "temperature": True}, "temperature"),
        ("coordinate-agents", {"supportingTasks": []}, "primaryTask"),
        ("coordinate-agents", {"primaryTask": "x", "supportingTasks": "y"}, "supportingTasks"),
        (
            "coordinate-agents",
            {"primaryTask": "x", "supportingTasks": ["y", 2]},
            "supportingTasks[1]",
        ),
        ("benchmark", {"testRequests": "x"}, "testRequests"),
        ("benchmark", {"testRequests": [{"context": {}}]}, "testRequests[0].userRequest"),
        ("benchmark", {"testRequests": ["ok", 7]}, "testRequests[1]"),
        ("feedback", {"success": True}, "requestId"),
        ("feedback", {"requestId": "r"}, "quality"),
        ("feedback", {"requestId": "r", "quality": 1.5}, "quality"),
        ("feedback", {"requestId": "r", "rating": 0}, "rating"),
        ("feedback", {"requestId": "r", "success": "true"}, "success"),
    ],
)
def test_bad_fields_answer_400_naming_them(route: str, body: dict[str, Any], field: str) -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a")]) as thread:
        err = error(post(thread.url, route, body), 400)
        assert err["field"] == field and err["code"] == "VALIDATION_ERROR", err
        assert f.stats.requests[CHAT_PATH] == 0


def test_bodies_are_json_objects_of_bounded_size() -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a")]) as thread:
        url = f"{thread.url}{PREFIX}/routing-decision"
        json_type = {"content-type": "application/json"}
        assert error(httpx.post(url, content=b"{nope", headers=json_type), 400)["field"] == "body"
        assert error(httpx.post(url, content=b"[1]", headers=json_type), 400)["field"] == "body"
        assert error(httpx.post(url, content=b"", headers=json_type), 400)["field"] == "body"
        plain = httpx.post(
            url, content=b'{"userRequest": "x"}', headers={"content-type": "text/plain"}
        )
        assert error(plain, 415)["field"] == "Content-Type"
        # A body of many chunks is read whole, up to the limit.
        padded = json.dumps({"userRequest": "x", "pad": "y" * 1_500_000}).encode()
        assert data(httpx.post(url, content=padded, headers=json_type))["decision"]
        big = json.dumps({"userRequest": "x", "pad": "y" * (2 * 1024 * 1024)}).encode()
        assert error(httpx.post(url, content=big, headers=json_type), 413)["field"] == "body"
        err = error(httpx.get(url), 405)
        assert httpx.get(url).headers["allow"] == "POST" and "POST" in err["message"]
        assert error(httpx.get(f"{thread.url}{PREFIX}/route"), 404)["code"] == "NOT_FOUND"


def test_api_token_guards_the_platform_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_API_TOKEN", API)
    monkeypatch.setenv("WORKBENCH_ADMIN_TOKEN", ADMIN)
    with fakes({}) as (f,), router([backend_entry(f, "a")]) as thread:
        body = {"userRequest": "x"}
        err = error(post(thread.url, "routing-decision", body), 401)
        assert err["code"] == "UNAUTHORIZED"
        wrong = {"Authorization": "Bearer wrong-token-123"}
        assert post(thread.url, "routing-decision", body, headers=wrong).status_code == 401
        assert httpx.get(f"{thread.url}{PREFIX}/status").status_code == 401
        assert post(thread.url, "optimize", {}).status_code == 401  # auth before the 501
        for token in (API, ADMIN):
            ok = {"Authorization": f"Bearer {token}"}
            assert data(post(thread.url, "routing-decision", body, headers=ok))["decision"]
        # The document is public, like /health.
        assert httpx.get(f"{thread.url}/openapi.json").status_code == 200
        # The admin route wants the admin token itself.
        reload_url = f"{thread.url}/admin/reload"
        assert error(httpx.post(reload_url), 401)["code"] == "UNAUTHORIZED"
        api = httpx.post(reload_url, headers={"Authorization": f"Bearer {API}"})
        assert "admin token" in error(api, 403)["message"]
        admin = httpx.post(reload_url, headers={"Authorization": f"Bearer {ADMIN}"})
        assert "not started from a config file" in error(admin, 409)["message"]


def test_without_a_token_only_loopback_names_are_served() -> None:
    with fakes({}) as (f,), router([backend_entry(f, "a")]) as thread:
        body = {"userRequest": "x"}
        assert data(post(thread.url, "routing-decision", body))["decision"]
        localhost = {"Host": f"localhost:{thread.port}"}
        assert data(post(thread.url, "routing-decision", body, headers=localhost))["decision"]
        rebound = post(thread.url, "routing-decision", body, headers={"Host": "evil.example"})
        assert "loopback" in error(rebound, 403)["message"]
        err = error(httpx.post(f"{thread.url}/admin/reload"), 403)
        assert "WORKBENCH_ADMIN_TOKEN" in err["message"]


def test_without_a_token_the_client_keys_are_wanted_as_on_v1() -> None:
    with fakes({}) as (f,):
        doc = {"router": {"client_keys_env": ["CK"]}, "backends": [backend_entry(f, "a")]}
        thread = run_router(RouterConfig.from_mapping(doc, environ={"CK": "client-key-1"}))
        try:
            body = {"userRequest": "x"}
            assert error(post(thread.url, "execute", body), 401)["code"] == "UNAUTHORIZED"
            ok = {"Authorization": "Bearer client-key-1"}
            assert data(post(thread.url, "execute", body, headers=ok))["response"]
            assert f.stats.requests[CHAT_PATH] == 1
        finally:
            thread.stop()


def test_openapi_document_is_valid_and_served() -> None:
    doc = openapi_document()
    validate(doc)
    assert {p for p in doc["paths"] if p.startswith(PREFIX)} == {
        f"{PREFIX}/{r}"
        for r in (
            "routing-decision",
            "execute",
            "coordinate-agents",
            "status",
            "benchmark",
            "feedback",
            "lfm2/quick",
            "optimize",
            "auto-tune",
        )
    }
    assert "/admin/reload" in doc["paths"]
    with fakes({}) as (f,), router([backend_entry(f, "a")]) as thread:
        assert httpx.get(f"{thread.url}/openapi.json").json() == doc


def test_target_model_prefers_names_only_tagged_backends_serve() -> None:
    def config(*backends: dict[str, Any]) -> RouterConfig:
        return RouterConfig.from_mapping({"backends": list(backends)}, environ={})

    url = "http://127.0.0.1:9/v1"
    shared = config(
        {"name": "plain", "url": url, "models": ["m"]},
        {"name": "coder", "url": url, "models": ["m"], "aliases": ["coder-only"], "tags": ["code"]},
    )
    assert target_model(shared, "lm-studio") == ("coder-only", "tag 'code'")
    assert target_model(shared, "lfm2") == ("m", "default")
    # Earlier tags of the target win: lfm2 wants fast before small.
    tiers = config(
        {"name": "s", "url": url, "models": ["small-m"], "tags": ["small"]},
        {"name": "f", "url": url, "models": ["fast-m"], "tags": ["fast"]},
    )
    assert target_model(tiers, "lfm2") == ("fast-m", "tag 'fast'")
    mixed = config(
        {"name": "a", "url": url, "models": ["m"], "tags": ["code"]},
        {"name": "b", "url": url, "models": ["m"]},
    )
    assert target_model(mixed, "lm-studio") == ("m", "tag 'code'")


def test_timing_reservoir_is_bounded_and_exact_while_small() -> None:
    reservoir = TimingReservoir(4)
    assert reservoir.summary() == {"decisions": 0, "samples": 0, "medianMs": None, "p95Ms": None}
    for x in (1.0, 2.0, 3.0):
        reservoir.add(x)
    assert reservoir.quantile(0.5) == 2.0 and reservoir.quantile(1.0) == 3.0
    for x in range(1000):
        reservoir.add(float(x))
    summary = reservoir.summary()
    assert summary["decisions"] == 1003 and summary["samples"] == 4
    with pytest.raises(ValueError, match="size"):
        TimingReservoir(0)


# -- the admin reload, on `workbench router serve` -----------------------------------------


def _write(config: Path, fake: FakeBackendServer | str, name: str) -> None:
    url = fake if isinstance(fake, str) else fake.openai_url
    config.write_text(f'[[backends]]\nname = "{name}"\nurl = "{url}"\nmodels = ["m"]\n')


@contextmanager
def served(config: Path, tmp_path: Path, workers: int = 1) -> Iterator[ServeProcess]:
    import os

    env = dict(os.environ, WORKBENCH_ADMIN_TOKEN=ADMIN, WORKBENCH_LOG_LEVEL="WARNING")
    env.pop("WORKBENCH_API_TOKEN", None)
    cmd = [sys.executable, "-m", "workbench.cli", "router", "serve", "--config", str(config)]
    cmd += ["--port", "{port}", "--workers", str(workers)]
    with ServeProcess(args=cmd, env=env, log=tmp_path / "router.log") as proc:
        proc.wait_ready(["/health"], every_worker=False, timeout_s=30)
        yield proc


ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_admin_reload_keeps_a_request_in_flight_and_refuses_a_bad_file(tmp_path: Path) -> None:
    with fakes({"latency_ms": 1500}, {}) as (slow, fresh):
        config = tmp_path / "router.toml"
        _write(config, slow, "slow")
        with served(config, tmp_path) as proc:
            got: list[httpx.Response] = []

            def in_flight() -> None:
                got.append(
                    httpx.post(
                        proc.url(CHAT_PATH),
                        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                        timeout=30,
                    )
                )

            client = threading.Thread(target=in_flight)
            client.start()
            wait_for(lambda: slow.stats.requests[CHAT_PATH] == 1)
            _write(config, fresh, "fresh")
            resp = httpx.post(proc.url("/admin/reload"), headers=ADMIN_AUTH, timeout=30)
            done = data(resp)
            assert done["reloaded"] == "this-process" and done["backends"] == ["fresh"]
            assert done["reloads"] == 1
            execute = httpx.post(
                proc.url(f"{PREFIX}/execute"), json={"userRequest": "x"}, timeout=30
            )
            assert data(execute)["metadata"]["serviceUsed"] == "fresh"
            client.join(30)
            # The request that was in flight across the reload finished on the old backend.
            assert (
                got
                and got[0].status_code == 200
                and got[0].headers["x-workbench-backend"] == "slow"
            )
            config.write_text("[[backends]]\nname = 'broken'\n")
            err = error(httpx.post(proc.url("/admin/reload"), headers=ADMIN_AUTH, timeout=30), 409)
            assert err["code"] == "CONFIG_INVALID" and err["field"] == "backends[0].models"
            execute = httpx.post(
                proc.url(f"{PREFIX}/execute"), json={"userRequest": "x"}, timeout=30
            )
            assert data(execute)["metadata"]["serviceUsed"] == "fresh"  # the old config is kept
            status = data(httpx.get(proc.url(f"{PREFIX}/status")))["coordinator"]
            assert (
                status["reloads"] == 1 and status["requestsServed"]["byRoute"]["admin/reload"] == 2
            )
            assert proc.stop() == 0, proc.output()


def test_admin_reload_reaches_every_worker(tmp_path: Path) -> None:
    with fakes({}, {}) as (a, b):
        config = tmp_path / "router.toml"
        _write(config, a, "a")
        with served(config, tmp_path, workers=2) as proc:
            chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}

            def served_by() -> set[str]:
                return {
                    httpx.post(proc.url(CHAT_PATH), json=chat).headers["x-workbench-backend"]
                    for _ in range(12)
                }

            assert served_by() == {"a"}
            _write(config, b, "b")
            resp = httpx.post(proc.url("/admin/reload"), headers=ADMIN_AUTH, timeout=30)
            assert resp.status_code == 202, resp.text
            assert resp.json()["data"]["reloaded"] == "all-workers"
            wait_for(lambda: served_by() == {"b"}, timeout_s=10)
            assert proc.stop() == 0, proc.output()
