from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from tests.api.conftest import bearer, run_with_client
from workbench.api import system
from workbench.api.app import create_app
from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.config import Settings
from workbench.errors import CapacityError, NotFoundError

TOKEN = "api-token-123"
ADMIN = "admin-token-456"


class EchoBody(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=10)


class PageQuery(BaseModel):
    limit: int = Field(default=10, ge=1, le=100)


demo = ApiRouter("/api/v1/demo", tag="demo")
raw = ApiRouter("/api/v1/raw", tag="raw", envelope=False)


@demo.post("/echo", body=EchoBody, summary="echo")
async def echo(req: ApiRequest) -> Any:
    return Reply(
        {"name": req.body.name, "count": req.body.count}, status=201, meta={"message": "ok"}
    )


@demo.get("/page", query=PageQuery, summary="page")
async def page(req: ApiRequest) -> Any:
    return {"limit": req.query.limit}


@demo.get("/items/{item_id}", summary="one item")
async def item(req: ApiRequest) -> Any:
    if req.path["item_id"] != "1":
        raise NotFoundError(f"no item {req.path['item_id']!r}")
    return {"id": 1}


@demo.get("/full", summary="capacity")
async def full(req: ApiRequest) -> Any:
    raise CapacityError("queue full (256 jobs); retry later", details={"limit": 256})


@demo.get("/boom", summary="bug")
async def boom(req: ApiRequest) -> Any:
    raise RuntimeError("secret internal detail")


@demo.delete("/reset", summary="reset", admin=True)
async def reset(req: ApiRequest) -> Any:
    return {"reset": True}


@raw.get("/stats", summary="raw stats")
async def stats(req: ApiRequest) -> Any:
    return {"success": True, "result": 3}


def make(**kw: Any) -> Any:
    settings = Settings(api_token=TOKEN, admin_token=ADMIN, **kw)
    return create_app(settings, routers=[system.router, demo, raw])


def test_health_is_public_and_other_routes_need_the_token() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.get("/health")
        assert r.status == 200
        body = await r.json()
        assert body["success"] is True and body["data"]["status"] == "healthy"
        assert body["metadata"]["version"] == "1.0.0"
        assert r.headers["X-Request-Id"] == body["metadata"]["requestId"]
        for method, path in [
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("POST", "/api/v1/demo/echo"),
            ("GET", "/no/such/route"),
        ]:
            r = await c.request(method, path)
            assert r.status == 401, path
            body = await r.json()
            assert body["success"] is False and body["error"]["code"] == "UNAUTHORIZED"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await c.get("/metrics", headers=bearer("wrong-token-000"))
        assert r.status == 401
        r = await c.get("/metrics", headers=bearer(TOKEN))
        assert r.status == 200 and "workbench_api_requests_total" in await r.text()

    run_with_client(make(), scenario)


def test_admin_routes_need_the_admin_token() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.delete("/api/v1/demo/reset", headers=bearer(TOKEN))
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "FORBIDDEN"
        r = await c.delete("/api/v1/demo/reset", headers=bearer(ADMIN))
        assert r.status == 200 and (await r.json())["data"] == {"reset": True}

    run_with_client(make(), scenario)


def test_admin_routes_are_closed_when_no_admin_token_is_set() -> None:
    app = create_app(Settings(), routers=[demo])

    async def scenario(c: TestClient) -> None:
        r = await c.delete("/api/v1/demo/reset")
        assert r.status == 403
        assert "WORKBENCH_ADMIN_TOKEN" in (await r.json())["error"]["message"]

    run_with_client(app, scenario)


def test_validation_errors_name_the_field() -> None:
    async def scenario(c: TestClient) -> None:
        h = bearer(TOKEN)
        r = await c.post("/api/v1/demo/echo", json={"name": "a", "count": 11}, headers=h)
        assert r.status == 400
        err = (await r.json())["error"]
        assert err["code"] == "VALIDATION_ERROR" and "'count'" in err["message"]
        assert err["details"][0]["field"] == "count"
        r = await c.post("/api/v1/demo/echo", json={"count": 1}, headers=h)
        assert "'name'" in (await r.json())["error"]["message"]
        r = await c.post(
            "/api/v1/demo/echo",
            data=b"{not json",
            headers={**h, "Content-Type": "application/json"},
        )
        assert r.status == 400 and "JSON" in (await r.json())["error"]["message"]
        r = await c.get("/api/v1/demo/page?limit=0", headers=h)
        assert r.status == 400 and "'limit'" in (await r.json())["error"]["message"]
        r = await c.get("/api/v1/demo/page?limit=5", headers=h)
        assert (await r.json())["data"] == {"limit": 5}
        r = await c.post("/api/v1/demo/echo", json={"name": "a", "count": 2}, headers=h)
        body = await r.json()
        assert r.status == 201 and body["data"] == {"name": "a", "count": 2}
        assert body["metadata"]["message"] == "ok"

    run_with_client(make(), scenario)


def test_errors_use_the_envelope_and_hide_internals() -> None:
    async def scenario(c: TestClient) -> None:
        h = bearer(TOKEN)
        r = await c.get("/api/v1/demo/items/2", headers=h)
        assert r.status == 404 and (await r.json())["error"]["message"] == "no item '2'"
        r = await c.get("/api/v1/demo/full", headers=h)
        body = await r.json()
        assert r.status == 409 and body["error"]["details"] == {"limit": 256}
        r = await c.get("/api/v1/demo/boom", headers=h)
        body = await r.json()
        assert r.status == 500 and body["error"]["code"] == "INTERNAL_ERROR"
        assert "secret" not in await r.text()
        r = await c.get("/api/v1/nothing", headers=h)
        assert r.status == 404 and (await r.json())["error"]["code"] == "NOT_FOUND"
        r = await c.put("/api/v1/demo/echo", headers=h)
        assert r.status == 405 and (await r.json())["error"]["code"] == "METHOD_NOT_ALLOWED"

    run_with_client(make(), scenario)


def test_oversize_bodies_get_413_before_the_handler() -> None:
    async def scenario(c: TestClient) -> None:
        h = bearer(TOKEN)
        big = b'{"name": "' + b"x" * 5000 + b'", "count": 1}'
        r = await c.post("/api/v1/demo/echo", data=big, headers=h)
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"

        async def chunks():  # no Content-Length: aiohttp stops reading at the limit
            for _ in range(10):
                yield b"x" * 1000

        r = await c.post("/api/v1/demo/echo", data=chunks(), headers=h)
        assert r.status == 413
        # even without a token, size is refused first (nothing is read)
        r = await c.post("/api/v1/demo/echo", data=big)
        assert r.status == 413

    run_with_client(make(max_body_bytes=2048), scenario)


def test_request_id_is_kept_when_well_formed() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.get("/health", headers={"X-Request-Id": "abc-123"})
        assert (await r.json())["metadata"]["requestId"] == "abc-123"
        r = await c.get("/health", headers={"X-Request-Id": "bad id with spaces"})
        assert (await r.json())["metadata"]["requestId"] != "bad id with spaces"

    run_with_client(make(), scenario)


def test_raw_routers_skip_the_envelope() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.get("/api/v1/raw/stats", headers=bearer(TOKEN))
        assert await r.json() == {"success": True, "result": 3}

    run_with_client(make(), scenario)


def test_openapi_document_is_valid_and_complete() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.get("/openapi.json", headers=bearer(TOKEN))
        doc = await r.json()
        validate(doc)
        assert set(doc["paths"]) >= {
            "/health",
            "/metrics",
            "/api/v1/demo/echo",
            "/api/v1/demo/items/{item_id}",
        }
        echo_op = doc["paths"]["/api/v1/demo/echo"]["post"]
        ref = echo_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["required"] == ["name", "count"]
        assert doc["paths"]["/health"]["get"]["security"] == []
        assert "403" in doc["paths"]["/api/v1/demo/reset"]["delete"]["responses"]

    run_with_client(make(), scenario)


def test_default_app_mounts_the_registered_routers() -> None:
    app = create_app(Settings())
    from workbench.api.app import ROUTER_MODULES, ROUTES_KEY

    mounted = {spec.path for spec in app[ROUTES_KEY]}
    assert {"/health", "/metrics", "/openapi.json"} <= mounted
    assert ROUTER_MODULES[0] == "workbench.api.system"
