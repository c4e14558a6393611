"""Per client key rate limits (local and in Redis) and the access log, through the router."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.router.test_server import CHAT, backend_entry, err, fakes
from workbench.errors import ConfigError
from workbench.redis_adapter import RedisAdapter
from workbench.router.accesslog import LOGGER_NAME
from workbench.router.config import KeyLimits, RouterConfig
from workbench.router.fake_backend import AppThread
from workbench.router.limits import (
    RETRY_REDIS_S,
    Decision,
    LocalBuckets,
    Plan,
    RateLimits,
    RedisBuckets,
    estimate_prompt_tokens,
    format_reset,
    key_id,
    sse_usage_tokens,
)
from workbench.router.server import SERVICE, create_app, serve
from workbench.testing import RedisServer, ServeProcess

KEYS = {"TEAM_A_KEY": "sk-team-a", "TEAM_B_KEY": "sk-team-b"}


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of its own for one test; its keys are deleted afterwards."""
    p = f"wbtest:limits:{uuid.uuid4().hex[:12]}:"
    yield p
    RedisAdapter(redis_url, prefix=p).delete_prefixed()


def config(backends: list[dict[str, Any]], **router: Any) -> RouterConfig:
    router.setdefault("strategy", "round-robin")
    router.setdefault("client_keys_env", sorted(KEYS))
    return RouterConfig.from_mapping({"router": router, "backends": backends}, environ=KEYS)


@contextmanager
def serving(cfg: RouterConfig, clock: Clock | None = None, store: Any = None) -> Iterator[Any]:
    """The router in a thread on ``clock``; ``store`` replaces its bucket store."""
    app = create_app(cfg, clock=clock) if clock is not None else create_app(cfg)
    if store is not None:
        limits = app[SERVICE].limits
        assert limits is not None
        limits.store = store
    thread = AppThread(app).start()
    try:
        yield thread
    finally:
        thread.stop()


def post(url: str, key: str = "sk-team-a", body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=body or CHAT,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


# -- the bucket arithmetic, the same for both stores ------------------------------------------


@contextmanager
def store_of(kind: str, redis_url: str, prefix: str, clock: Clock) -> Iterator[Any]:
    if kind == "local":
        yield LocalBuckets(clock)
    else:
        yield RedisBuckets(redis_url, prefix=prefix, timeout_s=2.0, clock=clock)


STORES = ["local", "redis"]


@pytest.fixture(params=STORES)
def store(request: Any, redis_url: str, prefix: str) -> Iterator[tuple[Any, Clock]]:
    clock = Clock()
    with store_of(request.param, redis_url, prefix, clock) as s:
        yield s, clock


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_burst_then_refill(store: tuple[Any, Clock]) -> None:
    s, clock = store
    plan = Plan(rpm=60, burst=5, tpm=0)  # one request a second, five at once

    async def go() -> None:
        got = [await s.admit("k", plan, 0) for _ in range(6)]
        assert [d.allowed for d in got] == [True] * 5 + [False]
        assert got[-1].retry_after_s == pytest.approx(1.0)
        clock.t += 0.5
        half = await s.admit("k", plan, 0)
        assert not half.allowed and half.retry_after_s == pytest.approx(0.5)
        clock.t += 0.5
        assert (await s.admit("k", plan, 0)).allowed
        clock.t += 3600  # a long quiet spell refills to the burst, not beyond
        again = [(await s.admit("k", plan, 0)).allowed for _ in range(6)]
        assert again == [True] * 5 + [False]
        await s.aclose()

    run(go())


def test_tpm_reserve_then_charge_and_give_back(store: tuple[Any, Clock]) -> None:
    s, clock = store
    plan = Plan(rpm=0, burst=0, tpm=600)  # 10 tokens a second

    async def go() -> None:
        first = await s.admit("k", plan, 100)
        assert first.allowed and first.tokens == pytest.approx(500) and first.reserved == 100
        await s.charge("k", plan, 700 - 100)  # the answer reported 700 tokens in all
        d = await s.admit("k", plan, 100)
        assert not d.allowed and d.tokens == pytest.approx(-100)
        assert d.retry_after_s == pytest.approx(10.0)  # 100 tokens of debt at 10 a second
        clock.t += 10.0
        assert not (await s.admit("k", plan, 1)).allowed  # a balance of 0 is not > 0
        clock.t += 0.5
        d = await s.admit("k", plan, 1)
        assert d.allowed and d.tokens == pytest.approx(4)
        await s.charge("k", plan, -50)  # reserved more than used: given back
        d = await s.admit("k", plan, 0)
        assert d.allowed and d.tokens == pytest.approx(54)
        await s.charge("k", plan, 10**9)  # one huge answer: the debt stops at -tpm
        d = await s.admit("k", plan, 0)
        assert not d.allowed and d.tokens == pytest.approx(-600)
        await s.aclose()

    run(go())


def test_both_limits_refuse_for_the_longer_wait(store: tuple[Any, Clock]) -> None:
    s, _ = store
    plan = Plan(rpm=60, burst=1, tpm=60)

    async def go() -> None:
        assert (await s.admit("k", plan, 120)).allowed  # 60 tokens of debt: 60 s
        d = await s.admit("k", plan, 0)
        assert not d.allowed and d.retry_after_s == pytest.approx(60.0)
        assert d.limited_by == "requests"  # the request bucket is empty too
        await s.aclose()

    run(go())


def test_the_redis_script_is_atomic_under_concurrency(redis_url: str, prefix: str) -> None:
    """200 admissions at once on the real Redis, many connections, against a burst of 50:
    a read-then-write race would admit more than 50."""
    results: dict[str, int] = {}

    async def go(clock: Clock | None, name: str, plan: Plan) -> None:
        s = RedisBuckets(redis_url, prefix=prefix, timeout_s=5.0, clock=clock)
        got = await asyncio.gather(*(s.admit(name, plan, 0) for _ in range(200)))
        results[name] = sum(d.allowed for d in got)
        await s.aclose()

    run(go(Clock(), "frozen", Plan(rpm=50, burst=50, tpm=0)))
    # The Redis server's own clock: 1 request a minute refills far slower than 200 calls take.
    run(go(None, "server-clock", Plan(rpm=1, burst=50, tpm=0)))
    assert results == {"frozen": 50, "server-clock": 50}
    adapter = RedisAdapter(redis_url, prefix=prefix)
    ttl = adapter.ttl(prefix + "v1:frozen")
    assert ttl is not None and 0 < ttl <= 61  # the hash expires once the bucket is full again


def test_headers_and_reset_format() -> None:
    d = Decision(False, Plan(60, 60, 1000), requests=0.25, tokens=-20.0, retry_after_s=0.75)
    h = d.headers()
    assert h == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "59.75s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1m1.2s",
        "Retry-After": "1",
    }
    assert [format_reset(x) for x in (0.0203, 1.0, 360.0, 3600.5)] == [
        "21ms",
        "1s",
        "6m0s",
        "60m0.5s",
    ]


def test_prompt_estimate_and_stream_usage() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 41}, {"content": [{"text": "abc"}]}]}
    assert estimate_prompt_tokens("chat", body) == 11
    assert estimate_prompt_tokens("completions", {"prompt": ["abcd", "ef"]}) == 2
    assert estimate_prompt_tokens("embeddings", {}) == 1
    tail = b'data: {"choices":[]}\n\ndata: {"choices":[],"usage":{"total_tokens":42}}\n\n'
    assert sse_usage_tokens(tail + b"data: [DONE]\n\n") == 42
    assert sse_usage_tokens(b'data: {"choices":[{"delta":{}}]}\n\n') == 0
    assert sse_usage_tokens(b'"usage": {"total_tokens": 3}') == 0  # no frame start: ignored


def test_key_identity_is_a_hash() -> None:
    assert key_id("sk-team-a") != key_id("sk-team-b")
    assert len(key_id("sk-team-a")) == 32 and "team" not in key_id("sk-team-a")


# -- configuration --------------------------------------------------------------------------


def _doc(router: dict[str, Any]) -> dict[str, Any]:
    router = {"client_keys_env": sorted(KEYS), **router}
    return {"router": router, "backends": [{"name": "x", "url": "http://h/v1", "models": ["m"]}]}


def test_limits_config_overrides_by_env_name() -> None:
    cfg = RouterConfig.from_mapping(
        _doc(
            {
                "limits": {
                    "rpm": 600,
                    "tpm": 100_000,
                    "keys": {"TEAM_A_KEY": {"rpm": 60}, "TEAM_B_KEY": {"unlimited": True}},
                }
            }
        ),
        environ=KEYS,
    )
    assert cfg.limits.for_key("TEAM_A_KEY") == KeyLimits(rpm=60, tpm=100_000)
    assert cfg.limits.for_key("TEAM_B_KEY").unlimited
    assert cfg.limits.for_key(None) == KeyLimits(rpm=600, tpm=100_000)
    assert dict(cfg.client_key_names) == {"sk-team-a": "TEAM_A_KEY", "sk-team-b": "TEAM_B_KEY"}
    assert "sk-team" not in repr(cfg)
    # The older spelling still works, and lands in [router.limits].
    old = RouterConfig.from_mapping(_doc({"rate_limit_rpm": 30}), environ=KEYS)
    assert old.limits.rpm == 30 and old.limits.enabled
    assert not RouterConfig.from_mapping(_doc({}), environ=KEYS).limits.enabled


@pytest.mark.parametrize(
    ("router", "key"),
    [
        ({"limits": {"rpm": 0}}, "router.limits.rpm"),
        ({"limits": {"rpm": 10, "burst": 0}}, "router.limits.burst"),
        ({"limits": {"burst": 5}}, "router.limits.burst"),
        ({"limits": {"rmp": 5}}, "router.limits.rmp"),
        ({"limits": {"fail_open": "yes"}}, "router.limits.fail_open"),
        ({"limits": {"redis_timeout_s": 0}}, "router.limits.redis_timeout_s"),
        ({"limits": {"redis_prefix": "has space"}}, "router.limits.redis_prefix"),
        ({"limits": {"keys": {"NOT_A_KEY": {"rpm": 5}}}}, "router.limits.keys.NOT_A_KEY"),
        ({"limits": {"keys": {"TEAM_A_KEY": {"rpm": -1}}}}, "router.limits.keys.TEAM_A_KEY.rpm"),
        ({"limits": {"keys": {"TEAM_A_KEY": {"tmp": 1}}}}, "router.limits.keys.TEAM_A_KEY.tmp"),
        (
            {"limits": {"keys": {"TEAM_A_KEY": {"unlimited": True, "rpm": 5}}}},
            "router.limits.keys.TEAM_A_KEY.unlimited",
        ),
        ({"limits": {"keys": {"TEAM_A_KEY": {"burst": 5}}}}, "router.limits.keys.TEAM_A_KEY.burst"),
        ({"limits": 5}, "router.limits"),
        ({"rate_limit_rpm": 5, "limits": {"rpm": 6}}, "router.rate_limit_rpm"),
        ({"access_log": ""}, "router.access_log"),
        ({"access_log": 3}, "router.access_log"),
    ],
)
def test_bad_limits_name_their_key(router: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_mapping(_doc(router), environ=KEYS)
    assert info.value.details["field"] == key, str(info.value)
    assert "sk-team" not in str(info.value)


def test_serve_refuses_local_limits_over_several_workers() -> None:
    cfg = config([{"name": "x", "url": "http://h/v1", "models": ["m"]}], limits={"rpm": 5})
    with pytest.raises(ConfigError) as info:
        serve(cfg, workers=2)
    assert info.value.details["field"] == "router.redis_url"


# -- through the router ---------------------------------------------------------------------


def test_over_the_request_limit_is_an_openai_429_with_headers() -> None:
    clock = Clock()
    with (
        fakes({}) as (f,),
        serving(config([backend_entry(f, "a")], limits={"rpm": 2}), clock) as t,
    ):
        first, second, third = (post(t.url) for _ in range(3))
        assert first.status_code == second.status_code == 200
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        assert "x-ratelimit-limit-tokens" not in first.headers  # no token limit configured
        assert third.status_code == 429
        e = err(third)
        assert e["type"] == "rate_limit_error" and e["code"] == "rate_limit_exceeded"
        assert "2 requests per minute" in e["message"]
        assert third.headers["Retry-After"] == "30"  # a request every 30 s
        assert third.headers["x-ratelimit-remaining-requests"] == "0"
        assert third.headers["x-ratelimit-reset-requests"] == "1m0s"
        assert third.headers["x-request-id"]
        assert (
            f.stats.requests["/v1/chat/completions"] == 2
        )  # the refused one never reached the backend
        # The other key has buckets of its own; time refills the first.
        assert post(t.url, "sk-team-b").status_code == 200
        clock.t += 30.0
        assert post(t.url).status_code == 200


def test_without_client_keys_the_loopback_client_is_limited() -> None:
    with fakes({}) as (f,):
        cfg = config([backend_entry(f, "a")], client_keys_env=[], limits={"rpm": 1})
        with serving(cfg, Clock()) as t:
            first = httpx.post(t.url + "/v1/chat/completions", json=CHAT)
            second = httpx.post(t.url + "/v1/chat/completions", json=CHAT)
            assert (first.status_code, second.status_code) == (200, 429)


def test_per_key_overrides_and_unlimited_keys() -> None:
    limits = {"rpm": 3, "keys": {"TEAM_A_KEY": {"rpm": 1}, "TEAM_B_KEY": {"unlimited": True}}}
    with fakes({}) as (f,), serving(config([backend_entry(f, "a")], limits=limits), Clock()) as t:
        assert [post(t.url).status_code for _ in range(2)] == [200, 429]
        b = [post(t.url, "sk-team-b") for _ in range(5)]
        assert [r.status_code for r in b] == [200] * 5
        assert "x-ratelimit-limit-requests" not in b[0].headers


def test_tokens_per_minute_charge_the_reported_usage() -> None:
    clock = Clock()
    limits = {"tpm": 60}  # a token a second
    with (
        fakes({"completion_tokens": 100}) as (f,),
        serving(config([backend_entry(f, "a")], limits=limits), clock) as t,
    ):
        first = post(t.url)
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        assert used > 60 and first.headers["x-ratelimit-limit-tokens"] == "60"
        refused = post(t.url)
        assert refused.status_code == 429 and "60 tokens per minute" in err(refused)["message"]
        assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
        # The debt is the usage beyond the bucket, capped at -tpm: 60 s at most.
        assert int(refused.headers["Retry-After"]) == min(used - 60, 60)
        clock.t += 61.0
        # A stream that asks for usage is charged its usage too.
        stream = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        r = post(t.url, body=stream)
        assert r.status_code == 200 and '"total_tokens"' in r.text
        assert post(t.url).status_code == 429


def test_the_openai_sdk_raises_rate_limit_error() -> None:
    with (
        fakes({}) as (f,),
        serving(config([backend_entry(f, "a")], limits={"rpm": 1}), Clock()) as t,
    ):
        client = openai.OpenAI(base_url=t.url + "/v1", api_key="sk-team-a", max_retries=0)
        client.chat.completions.create(model="m", messages=CHAT["messages"])
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=CHAT["messages"])
        assert info.value.status_code == 429 and info.value.code == "rate_limit_exceeded"
        assert info.value.response.headers["retry-after"] == "60"


def test_two_routers_sharing_redis_enforce_one_limit(redis_url: str, prefix: str) -> None:
    """rpm=20 for one key across two router instances: 20 admitted in all, not 20 each."""
    clock = Clock()  # shared by both, so no refill happens while the test runs
    with fakes({}) as (f,):
        cfg = config(
            [backend_entry(f, "a")],
            redis_url=redis_url,
            limits={"rpm": 20, "redis_prefix": prefix},
        )

        def shared() -> RedisBuckets:
            return RedisBuckets(redis_url, prefix=prefix, timeout_s=2.0, clock=clock)

        with serving(cfg, store=shared()) as one, serving(cfg, store=shared()) as two:
            codes = [post(t.url).status_code for _ in range(15) for t in (one, two)]
            assert codes.count(200) == 20 and codes.count(429) == 10
            assert codes[:20] == [200] * 20
            assert post(one.url, "sk-team-b").status_code == 200  # another key, other buckets
        assert f.stats.requests["/v1/chat/completions"] == 21
    keys = list(RedisAdapter(redis_url).scan(prefix + "*"))
    assert sorted(keys) == sorted(f"{prefix}v1:{key_id(k)}" for k in KEYS.values())
    assert not any("sk-team" in k for k in keys)  # Redis only ever sees a hash of a key


def test_serve_workers_share_the_limit_through_redis(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    """``workbench router serve --workers 2`` from a TOML file: one limit over both workers.

    A burst of 20 refilling at one request a minute: the 21st could only pass if the 30
    requests took over a minute, which loopback requests never do; local buckets would let 40
    through."""
    import os
    import sys

    cli = [sys.executable, "-m", "workbench.cli", "router"]
    with fakes({}) as (f,):
        toml = tmp_path / "router.toml"
        toml.write_text(
            "[router]\n"
            'client_keys_env = ["TEAM_A_KEY"]\n'
            f'redis_url = "{redis_url}"\n'
            "[router.limits]\n"
            "rpm = 1\n"
            "burst = 20\n"
            f'redis_prefix = "{prefix}"\n'
            "[[backends]]\n"
            'name = "a"\n'
            f'url = "{f.openai_url}"\n'
            'models = ["m"]\n'
        )
        cmd = [*cli, "serve", "--config", str(toml), "--port", "{port}", "--workers", "2"]
        env = {**os.environ, "TEAM_A_KEY": "sk-team-a"}
        with ServeProcess(args=cmd, env=env, log=tmp_path / "router.log") as proc:
            proc.wait_ready(["/health"], every_worker=False, timeout_s=60)
            codes = [post(proc.url()).status_code for _ in range(30)]
        assert codes.count(200) == 20 and codes.count(429) == 10, proc.output()[-2000:]


@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_down_follows_the_configured_policy(fail_open: bool) -> None:
    offset = [0.0]

    def clock() -> float:  # real time, moved on past the limiter's pause when the test says
        import time

        return time.monotonic() + offset[0]

    with RedisServer() as redis_server, fakes({}) as (f,):
        limits = {"rpm": 100, "fail_open": fail_open, "redis_timeout_s": 0.2}
        cfg = config([backend_entry(f, "a")], redis_url=redis_server.url, limits=limits)
        app = create_app(cfg, clock=clock)
        with AppThread(app) as t:
            assert post(t.url).status_code == 200
            redis_server.stop()
            down = post(t.url)
            if fail_open:
                assert down.status_code == 200
                assert "x-ratelimit-limit-requests" not in down.headers  # nothing is known
            else:
                assert down.status_code == 503
                assert err(down)["code"] == "rate_limiter_unavailable"
                assert down.headers["Retry-After"] == str(int(RETRY_REDIS_S))
            redis_server.start()
            offset[0] += RETRY_REDIS_S + 0.1  # past the pause: the limiter asks Redis again
            back = post(t.url)
            assert back.status_code == 200 and back.headers["x-ratelimit-limit-requests"] == "100"
            # A server that hangs instead (SIGSTOP) costs a bounded wait, then the policy.
            redis_server.freeze()
            offset[0] += RETRY_REDIS_S + 0.1
            try:
                hung = post(t.url)  # httpx's 10 s timeout would fail the test first
            finally:
                redis_server.thaw()
            assert hung.status_code == (200 if fail_open else 503)


def test_rate_limits_skip_unlimited_plans_without_the_store() -> None:
    class Exploding(LocalBuckets):
        def admit_now(self, key: str, plan: Plan, reserve: int) -> Decision:
            raise AssertionError("an unlimited key must not touch the store")

    cfg = config([{"name": "x", "url": "http://h/v1", "models": ["m"]}], limits={"rpm": 1})
    limits = RateLimits(cfg.limits, Exploding())
    from workbench.router.limits import ClientKey

    d = run(limits.admit(ClientKey("X", "id", Plan(0, 0, 0)), 10))
    assert d.allowed and d.headers() == {}


def test_a_reload_keeps_local_bucket_levels() -> None:
    clock = Clock()
    with fakes({}) as (f,):
        cfg = config([backend_entry(f, "a")], limits={"rpm": 2})
        with serving(cfg, clock) as t:
            assert [post(t.url).status_code for _ in range(2)] == [200, 200]
            service = t.app[SERVICE]
            t.call(service.reload, cfg)
            assert post(t.url).status_code == 429  # the reload granted no fresh burst


# -- the access log ---------------------------------------------------------------------------


def test_access_log_file_has_one_json_line_per_request(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    with fakes({}) as (f,):
        cfg = config([backend_entry(f, "a")], access_log=str(path), limits={"rpm": 1})
        with serving(cfg, Clock()) as t:
            ok = httpx.post(
                t.url + "/v1/chat/completions",
                json=CHAT,
                headers={"Authorization": "Bearer sk-team-a", "x-request-id": "rid-7"},
            )
            assert ok.status_code == 200
            assert post(t.url).status_code == 429
            assert post(t.url, "wrong-key").status_code == 401
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3
    first, limited, denied = lines
    assert set(first) == {
        "ts",
        "request_id",
        "key",
        "key_name",
        "route",
        "model",
        "backend",
        "status",
        "attempts",
        "upstream_ms",
        "total_ms",
        "tokens",
        "cache",
    }
    assert first["request_id"] == "rid-7" and first["key"] == key_id("sk-team-a")[:12]
    assert first["key_name"] == "TEAM_A_KEY" and first["route"] == "chat"
    assert first["model"] == "m" and first["backend"] == "a" and first["status"] == 200
    assert first["attempts"] == 1 and first["tokens"] == ok.json()["usage"]["total_tokens"]
    assert first["upstream_ms"] >= 0 and first["total_ms"] >= 0
    assert limited["status"] == 429 and limited["attempts"] == 0 and limited["backend"] is None
    assert denied["status"] == 401 and denied["key"] is None
    text = path.read_text()
    assert "sk-team" not in text and "hello" not in text  # neither keys nor bodies


def test_an_unwritable_access_log_is_a_config_error(tmp_path: Path) -> None:
    cfg = config(
        [{"name": "x", "url": "http://h/v1", "models": ["m"]}],
        access_log=str(tmp_path / "missing-dir" / "access.jsonl"),
    )
    with pytest.raises(ConfigError) as info:
        create_app(cfg)
    assert info.value.details["field"] == "router.access_log"


def test_access_log_to_the_logger_and_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    with fakes({}) as (f,):
        with serving(config([backend_entry(f, "a")])) as t:
            assert post(t.url).status_code == 200
        assert not [r for r in caplog.records if r.name == LOGGER_NAME]
        with serving(config([backend_entry(f, "a")], access_log=True)) as t:
            assert post(t.url).status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER_NAME]
    assert len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["key_name"] == "TEAM_A_KEY"


def test_access_log_file_follows_log_rotation(tmp_path: Path) -> None:
    from tests.router.test_server import wait_for
    from workbench.router.accesslog import AccessLog, Exchange

    path = tmp_path / "access.jsonl"
    log = AccessLog(str(path))
    try:
        log.write("chat", 200, Exchange(0.0), 0.01)
        wait_for(lambda: path.exists() and path.read_bytes().endswith(b"\n"))
        path.rename(tmp_path / "access.jsonl.1")  # what logrotate does
        log.write("chat", 429, Exchange(0.0), 0.02)
    finally:
        log.close()  # writes what is queued
    assert [json.loads(x)["status"] for x in path.read_text().splitlines()] == [429]
    rotated = (tmp_path / "access.jsonl.1").read_text().splitlines()
    assert [json.loads(x)["status"] for x in rotated] == [200]
