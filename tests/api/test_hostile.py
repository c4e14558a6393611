"""The frame against hostile and browser-borne requests: every refusal a clear 4xx."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import Field

from tests.api.conftest import run_with_client
from workbench.api import system
from workbench.api.app import create_app
from workbench.api.routing import ApiRequest, ApiRouter
from workbench.api.wire import WireModel
from workbench.config import Settings

TOKEN = "hostile-test-token"

router = ApiRouter("/api/v1/hostile", tag="test")


class Body(WireModel):
    priority: int = Field(default=0, ge=-10, le=10)
    weight: float = 1.0
    context: dict[str, Any] = Field(default_factory=dict)


@router.post("/echo", body=Body, summary="Echo the body")
async def echo(req: ApiRequest) -> Any:
    return req.body.model_dump()


@router.get("/items/{item_id}", summary="An item")
async def item(req: ApiRequest) -> Any:
    return {"id": req.path["item_id"]}


def app(token: str | None = None, **api: Any) -> Any:
    settings = Settings(api_token=token, sections={"api": api} if api else {})
    return create_app(settings, routers=[system.router, router])


JSON = {"Content-Type": "application/json"}
URL = "/api/v1/hostile/echo"


async def _error(r: Any) -> dict[str, Any]:
    body = await r.json()
    assert body["success"] is False, body
    return body["error"]  # type: ignore[no-any-return]


def test_json_routes_take_only_json_bodies() -> None:
    async def scenario(c: TestClient) -> None:
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": ctype} if ctype else {}
            r = await c.post(URL, data=b'{"priority": 1}', headers=headers)
            assert r.status == 415, ctype
            err = await _error(r)
            assert err["code"] == "UNSUPPORTED_MEDIA_TYPE" and "application/json" in err["message"]
        r = await c.post(
            URL,
            data=b'{"priority": 1}',
            headers={"Content-Type": "Application/JSON; charset=utf-8"},
        )
        assert r.status == 200
        r = await c.post(URL, data=b"", headers=JSON)
        assert r.status == 400 and "empty" in (await _error(r))["message"]

    run_with_client(app(), scenario)


def test_types_are_strict_and_floats_finite() -> None:
    async def scenario(c: TestClient) -> None:
        for raw, field in (
            (b'{"priority": false}', "priority"),
            (b'{"priority": "5"}', "priority"),
            (b'{"priority": 1.5}', "priority"),
            (b'{"weight": "NaN"}', "weight"),
            (b'{"weight": NaN}', "body"),
            (b'{"weight": 1e400}', "weight"),
            (b'{"weight": Infinity}', "body"),
            (b"[1, 2]", "body"),
            (b'"text"', "body"),
        ):
            r = await c.post(URL, data=raw, headers=JSON)
            assert r.status == 400, raw
            err = await _error(r)
            assert err["code"] == "VALIDATION_ERROR", raw
            assert err["details"][0]["field"] == field, (raw, err)
        r = await c.post(URL, data=b'{"priority": 3, "weight": 2}', headers=JSON)
        assert r.status == 200 and (await r.json())["data"]["weight"] == 2.0

    run_with_client(app(), scenario)


def test_deep_nesting_is_a_400_not_a_500() -> None:
    async def scenario(c: TestClient) -> None:
        for depth in (500, 5_000, 100_000):
            raw = b'{"context": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
            r = await c.post(URL, data=raw, headers=JSON)
            assert r.status in (400, 413), depth
            assert (await _error(r))["code"] in {"VALIDATION_ERROR", "PAYLOAD_TOO_LARGE"}

    run_with_client(app(), scenario)


def test_foreign_host_names_are_refused_without_a_token() -> None:
    async def scenario(c: TestClient) -> None:
        for host in ("evil.example.com", "evil.example.com:8080", "127.0.0.1.nip.io"):
            r = await c.get("/api/v1/hostile/items/1", headers={"Host": host})
            assert r.status == 403, host
            assert "allowed_hosts" in (await _error(r))["message"]
        for host in ("localhost:8080", "127.0.0.1", "[::1]:9000", "LOCALHOST"):
            r = await c.get("/api/v1/hostile/items/1", headers={"Host": host})
            assert r.status == 200, host

    run_with_client(app(), scenario)

    async def configured(c: TestClient) -> None:
        r = await c.get("/api/v1/hostile/items/1", headers={"Host": "workbench.internal"})
        assert r.status == 200

    run_with_client(app(allowed_hosts=["workbench.internal"]), configured)

    async def with_token(c: TestClient) -> None:
        # With a token, the token protects: any Host is fine.
        r = await c.get(
            "/api/v1/hostile/items/1",
            headers={"Host": "evil.example.com", "Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status == 200

    run_with_client(app(TOKEN), with_token)


def test_the_bearer_scheme_is_case_insensitive() -> None:
    async def scenario(c: TestClient) -> None:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            r = await c.get(
                "/api/v1/hostile/items/1", headers={"Authorization": f"{scheme} {TOKEN}"}
            )
            assert r.status == 200, scheme
        for bad in (f"Basic {TOKEN}", "Bearer", f"Bearer{TOKEN}", f"Bearer {TOKEN}x"):
            r = await c.get("/api/v1/hostile/items/1", headers={"Authorization": bad})
            assert r.status == 401, bad

    run_with_client(app(TOKEN), scenario)


def test_405_names_the_allowed_methods() -> None:
    async def scenario(c: TestClient) -> None:
        r = await c.delete(URL)
        assert r.status == 405 and r.headers["Allow"] == "POST"
        assert "POST" in (await _error(r))["message"]

    run_with_client(app(), scenario)


def test_the_openapi_document_lists_the_frame_statuses() -> None:
    async def scenario(c: TestClient) -> None:
        doc = await (await c.get("/openapi.json")).json()
        post = doc["paths"][URL]["post"]["responses"]
        assert {"200", "400", "403", "413", "415"} <= set(post)
        get = doc["paths"]["/api/v1/hostile/items/{item_id}"]["get"]["responses"]
        assert {"200", "403", "404"} <= set(get) and "415" not in get

    run_with_client(app(), scenario)
