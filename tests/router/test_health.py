"""Active health probes against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import web

from workbench.errors import ConfigError
from workbench.router.balancer import Router
from workbench.router.config import RouterConfig
from workbench.router.health import HealthProber, OutlierDetector, probe_url
from workbench.testing import free_port


def test_probe_urls_by_kind() -> None:
    assert probe_url("http://h:8000/v1", "openai") == "http://h:8000/v1/models"
    assert probe_url("http://h:8000/v1/", "vllm") == "http://h:8000/v1/models"
    assert probe_url("http://h:11434", "ollama") == "http://h:11434/api/tags"
    assert probe_url("http://h:11434/v1", "ollama") == "http://h:11434/api/tags"


class Upstream:
    """A tiny server answering the probe routes, with a switch to fail them."""

    def __init__(self) -> None:
        self.status = 200
        self.hits: list[tuple[str, str | None]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        self.hits.append((request.path, request.headers.get("Authorization")))
        return web.json_response({"data": []}, status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._answer)
        app.router.add_get("/api/tags", self._answer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def _router(port: int, dead_port: int) -> Router:
    doc = {
        "router": {},
        "backends": [
            {
                "name": "oa",
                "url": f"http://127.0.0.1:{port}/v1",
                "models": ["chat"],
                "api_key_env": "OA_KEY",
            },
            {"name": "ol", "url": f"http://127.0.0.1:{port}", "models": ["chat"], "kind": "ollama"},
            {"name": "dead", "url": f"http://127.0.0.1:{dead_port}/v1", "models": ["chat"]},
        ],
    }
    config = RouterConfig.from_mapping(doc, environ={"OA_KEY": "sk-test-probe"})
    return Router(config, clock=lambda: 0.0, rng=random.Random(0))


def scenario(fn: Callable[[Upstream, Router], Awaitable[None]]) -> None:
    async def main() -> None:
        up = Upstream()
        await up.start()
        try:
            await fn(up, _router(up.port, free_port()))
        finally:
            await up.stop()

    asyncio.run(main())


def test_probes_mark_backends_unhealthy_and_healthy_again() -> None:
    async def body(up: Upstream, router: Router) -> None:
        prober = router.prober(interval_s=5.0, timeout_s=2.0, unhealthy_after=2)
        assert await prober.probe_all() == {"oa": True, "ol": True, "dead": False}
        assert router.backend("dead").healthy  # one failure is not enough
        await prober.probe_all()
        assert not router.backend("dead").healthy
        assert {s.name for s in router.plan("chat")} == {"oa", "ol"}
        assert router.snapshot()["dead"]["state"] == "unhealthy"
        assert prober.last["dead"]["error"] and prober.last["dead"]["status"] is None
        # The OpenAI kind reads /v1/models with its key; Ollama reads /api/tags.
        assert ("/v1/models", "Bearer sk-test-probe") in up.hits
        assert ("/api/tags", None) in up.hits
        up.status = 503
        await prober.probe_all()
        assert router.backend("oa").healthy
        await prober.probe_all()
        assert not router.backend("oa").healthy and not router.backend("ol").healthy
        assert prober.last["oa"]["status"] == 503
        assert router.plan("chat") == []
        assert router.time_to_first_available("chat") is None  # waits on a probe, no time
        up.status = 200
        await prober.probe_all()
        assert {s.name for s in router.plan("chat")} == {"oa", "ol"}

    scenario(body)


def test_run_loops_at_the_interval_until_cancelled() -> None:
    async def body(up: Upstream, router: Router) -> None:
        slept: list[float] = []
        third = asyncio.Event()

        async def sleep(s: float) -> None:
            slept.append(s)
            if len(slept) == 3:
                third.set()
            await asyncio.sleep(0)

        prober = router.prober(interval_s=7.5, timeout_s=2.0, sleep=sleep)
        task = asyncio.create_task(prober.run())
        await asyncio.wait_for(third.wait(), timeout=10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slept[:3] == [7.5, 7.5, 7.5] and prober.rounds >= 3
        assert sum(1 for path, _ in up.hits if path == "/api/tags") >= 3

    scenario(body)


def test_getter_failures_and_timeouts_are_failed_probes() -> None:
    calls: list[tuple[str, Mapping[str, str], float]] = []

    async def getter(url: str, headers: Mapping[str, str], timeout_s: float) -> int:
        calls.append((url, headers, timeout_s))
        if "127.0.0.1:1/" in url:
            raise TimeoutError("probe timed out")
        return 200

    config = RouterConfig.from_mapping(
        {
            "backends": [
                {"name": "slow", "url": "http://127.0.0.1:1/v1", "models": ["m"]},
                {"name": "ok", "url": "http://127.0.0.1:2/v1", "models": ["m"]},
            ]
        }
    )
    router = Router(config)
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    prober = HealthProber(router.backends, getter=getter, unhealthy_after=1, sleep=sleep)

    async def main() -> dict[str, Any]:
        await prober.run(rounds=2)
        return prober.last

    last = asyncio.run(main())
    assert not router.backend("slow").healthy and router.backend("ok").healthy
    assert "TimeoutError" in last["slow"]["error"]
    assert calls[0][2] == pytest.approx(3.0)  # connect_timeout_s + 1 by default
    assert len(calls) == 4 and waits == [10.0]  # two rounds, one wait between them


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="interval_s"):
        HealthProber([], interval_s=0)
    with pytest.raises(ConfigError, match="consecutive"):
        OutlierDetector(consecutive=0)
    with pytest.raises(ConfigError, match="base_s"):
        OutlierDetector(base_s=10.0, max_s=5.0)
