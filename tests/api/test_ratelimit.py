"""Per-client rate limits: the token bucket and the HTTP behaviour of a limited route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import run_with_client
from workbench.api import system
from workbench.api.app import create_app
from workbench.api.ratelimit import RateLimiter
from workbench.api.routing import ApiRequest, ApiRouter, rate_for
from workbench.api.services import ServiceSpec
from workbench.config import Settings, from_section
from workbench.errors import ConfigError, InputError, RateLimited


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    rl = RateLimiter(60, burst=3, clock=clock, name="GET /x")  # one token a second
    for _ in range(3):
        rl.check("10.0.0.1")
    with pytest.raises(RateLimited, match="60 requests a minute on GET /x") as info:
        rl.check("10.0.0.1")
    assert info.value.retry_after_s == pytest.approx(1.0)
    assert info.value.http_status == 429
    rl.check("10.0.0.2")  # another client has its own bucket
    clock.now += 0.5
    with pytest.raises(RateLimited) as info:
        rl.check("10.0.0.1")
    assert info.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    rl.check("10.0.0.1")  # one token came back after a second
    clock.now += 3600
    for _ in range(3):  # never more than the burst, however long the client was away
        rl.check("10.0.0.1")
    with pytest.raises(RateLimited):
        rl.check("10.0.0.1")


def test_clients_are_bounded_and_bad_settings_refused() -> None:
    rl = RateLimiter(10, max_clients=100, clock=FakeClock())
    for i in range(1000):
        rl.check(f"client-{i}")
    assert len(rl) == 100
    with pytest.raises(InputError, match="per_min"):
        RateLimiter(0)


@dataclass(frozen=True)
class PingConfig:
    ping_per_min: float = 2.0


LIMITED = ServiceSpec(
    "limited",
    config=lambda settings: from_section(PingConfig, settings.section("bench"), "bench"),
    build=lambda config, settings: object(),
)
router = ApiRouter("/limited", tag="test", service=LIMITED)


@router.get("/ping", summary="A limited route", rate_limit=2, rate_setting="ping_per_min")
async def ping(req: ApiRequest) -> Any:
    return {"pong": True}


@router.get("/free", summary="An unlimited route")
async def free(req: ApiRequest) -> Any:
    return {"free": True}


def test_a_limited_route_answers_429_with_retry_after() -> None:
    async def scenario(client: TestClient) -> None:
        for _ in range(2):
            assert (await client.get("/limited/ping")).status == 200
        r = await client.get("/limited/ping")
        body = await r.json()
        assert r.status == 429 and body["error"]["code"] == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-Request-Id"]
        for _ in range(5):
            assert (await client.get("/limited/free")).status == 200
        spec = (await (await client.get("/openapi.json")).json())["paths"]["/limited/ping"]
        assert "429" in spec["get"]["responses"]

    run_with_client(create_app(Settings(), routers=[system.router, router]), scenario)


def test_the_setting_overrides_or_turns_off_the_limit() -> None:
    spec = next(s for s in router.routes if s.path == "/limited/ping")

    def configs(**api: Any) -> dict[str, Any]:
        return {"limited": LIMITED.config(Settings(sections={"bench": api}))}

    assert rate_for(spec, configs()) == 2
    assert rate_for(spec, configs(ping_per_min="30")) == 30
    assert rate_for(spec, configs(ping_per_min=0)) is None
    with pytest.raises(ConfigError, match=r"\[bench\] ping_per_min"):
        create_app(
            Settings(sections={"bench": {"ping_per_min": "lots"}}), routers=[system.router, router]
        )

    async def scenario(client: TestClient) -> None:
        for _ in range(10):
            assert (await client.get("/limited/ping")).status == 200

    off = Settings(sections={"bench": {"ping_per_min": 0}})
    run_with_client(create_app(off, routers=[system.router, router]), scenario)
