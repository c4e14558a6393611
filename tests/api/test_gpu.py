"""HTTP routes of the vision resource manager (/api/v1/vision)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.conftest import bearer, run_with_client
from workbench.api import gpu as gpu_api
from workbench.api import system
from workbench.api.app import ROUTER_MODULES, create_app
from workbench.config import Settings
from workbench.gpu import ScenarioStep, SimulatedBackend
from workbench.gpu.service import VisionConfig, VisionService

TOKEN = "api-token-123"
H = bearer(TOKEN)
P = "/api/v1/vision"
GIB = 1024**3


def make(backend: SimulatedBackend | None = None, **config: Any) -> tuple[Any, VisionService]:
    settings = Settings(api_token=TOKEN)
    cfg = VisionConfig(backend="simulated", monitor_hz=20, janitor_interval_s=0.05, **config)
    service = VisionService(cfg, backend=backend or SimulatedBackend(devices=1, memory_gib=24))
    app = create_app(
        settings, routers=[system.router, gpu_api.router], services={"vision": service.start()}
    )
    return app, service


def test_router_is_mounted_by_default() -> None:
    assert "workbench.api.gpu" in ROUTER_MODULES


def test_routes_need_the_token() -> None:
    app, _ = make()

    async def scenario(c: TestClient) -> None:
        r = await c.get(f"{P}/status")
        assert r.status == 401
        r = await c.get(f"{P}/status", headers=H)
        assert r.status == 200

    run_with_client(app, scenario)


def test_status_and_models_keep_the_platform_shapes() -> None:
    app, _ = make()

    async def scenario(c: TestClient) -> None:
        body = await (await c.get(f"{P}/status", headers=H)).json()
        assert body["success"] is True and body["metadata"]["requestId"]
        data = body["data"]
        metrics = data["gpuMetrics"]
        assert metrics["totalVRAM"] == 24.0 and metrics["budgetVRAM"] == 20.0
        assert {"usedVRAM", "availableVRAM", "temperature", "utilization"} <= set(metrics)
        assert data["loadedModels"] == [] and data["queueLength"] == 0
        models = (await (await c.get(f"{P}/models", headers=H)).json())["data"]
        assert [m["name"] for m in models] == ["yolo-v8n", "clip-vit-b32", "sd3b", "sdxl-refiner"]
        sd3b = models[2]
        assert sd3b["sizeGB"] == 6.0 and sd3b["type"] == "generation" and sd3b["loaded"] is False
        devices = (await (await c.get(f"{P}/devices", headers=H)).json())["data"]
        assert devices[0]["allocator"]["budget_bytes"] == 20 * GIB
        assert devices[0]["reading"]["available"] is True

    run_with_client(app, scenario)


def test_reservation_lifecycle() -> None:
    app, service = make()

    async def scenario(c: TestClient) -> None:
        r = await c.post(f"{P}/reservations", json={"owner": "w1", "sizeGB": 6}, headers=H)
        assert r.status == 201
        res = (await r.json())["data"]
        assert res["nbytes"] == 6 * GIB and res["device"] == 0 and res["lease_expires_at"]
        assert service.allocator.reserved(0) == 6 * GIB
        listed = (await (await c.get(f"{P}/reservations", headers=H)).json())["data"]
        assert [x["id"] for x in listed] == [res["id"]]
        r = await c.post(f"{P}/reservations/{res['id']}/renew", json={"leaseS": 60}, headers=H)
        assert r.status == 200
        r = await c.delete(f"{P}/reservations/{res['id']}", headers=H)
        assert r.status == 200 and service.allocator.reserved(0) == 0
        r = await c.delete(f"{P}/reservations/{res['id']}", headers=H)
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "NOT_FOUND"

    run_with_client(app, scenario)


def test_reservation_errors() -> None:
    app, _ = make()

    async def scenario(c: TestClient) -> None:
        r = await c.post(f"{P}/reservations", json={"owner": "w", "sizeGB": 21}, headers=H)
        assert r.status == 409
        assert (await r.json())["error"]["code"] == "CAPACITY_EXCEEDED"
        r = await c.post(f"{P}/reservations", json={"owner": "w"}, headers=H)
        assert r.status == 400
        r = await c.post(f"{P}/reservations", json={"owner": "w", "nbytes": -1}, headers=H)
        body = await r.json()
        assert r.status == 400 and "nbytes" in body["error"]["message"]
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "nbytes": 1, "device": 3}, headers=H
        )
        assert r.status == 400
        r = await c.post(f"{P}/reservations", json={"owner": "a", "sizeGB": 15}, headers=H)
        assert r.status == 201
        r = await c.post(
            f"{P}/reservations", json={"owner": "b", "sizeGB": 10, "timeoutS": 0.05}, headers=H
        )
        assert r.status == 504
        assert (await r.json())["error"]["code"] == "TIMEOUT"
        r = await c.get(f"{P}/reservations/abc", headers=H)
        assert r.status == 400

    run_with_client(app, scenario)


def test_a_waiting_reservation_is_granted_over_http() -> None:
    app, _ = make()

    async def scenario(c: TestClient) -> None:
        first = await (
            await c.post(f"{P}/reservations", json={"owner": "a", "sizeGB": 15}, headers=H)
        ).json()
        waiting = asyncio.ensure_future(
            c.post(f"{P}/reservations", json={"owner": "b", "sizeGB": 10, "timeoutS": 5}, headers=H)
        )
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await c.delete(f"{P}/reservations/{first['data']['id']}", headers=H)
        r = await waiting
        assert r.status == 201

    run_with_client(app, scenario)


def test_expired_leases_are_cleaned_up() -> None:
    app, service = make()

    async def scenario(c: TestClient) -> None:
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "leaseS": 0.05}, headers=H
        )
        assert r.status == 201
        for _ in range(100):
            if service.allocator.reserved(0) == 0:
                break
            await asyncio.sleep(0.02)
        assert service.allocator.reserved(0) == 0

    run_with_client(app, scenario)


def test_external_job_lifecycle() -> None:
    app, service = make()

    async def wait_status(c: TestClient, jid: str, status: str) -> dict[str, Any]:
        for _ in range(200):
            job = (await (await c.get(f"{P}/jobs/{jid}", headers=H)).json())["data"]
            if job["status"] == status:
                return job
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {jid} never reached {status}: {job}")

    async def scenario(c: TestClient) -> None:
        r = await c.post(f"{P}/jobs", json={"model": "sd3b", "priority": 3}, headers=H)
        assert r.status == 201
        first = (await r.json())["data"]
        await wait_status(c, first["id"], "running")
        second = (await (await c.post(f"{P}/jobs", json={"model": "sd3b"}, headers=H)).json())[
            "data"
        ]
        assert second["status"] == "queued"
        status = (await (await c.get(f"{P}/status", headers=H)).json())["data"]
        assert status["queueLength"] == 1 and status["activeTasks"] == 1
        assert [m["name"] for m in status["loadedModels"]] == ["sd3b"]
        r = await c.delete(f"{P}/jobs/{first['id']}", headers=H)
        assert r.status == 409  # running jobs end by completing
        (sd3b,) = [r for r in service.allocator.reservations() if r.model == "sd3b"]
        r = await c.delete(f"{P}/reservations/{sd3b.id}", headers=H)
        assert r.status == 409  # the running job uses it
        r = await c.delete(f"{P}/jobs/{second['id']}", headers=H)
        assert (await r.json())["data"]["status"] == "cancelled"
        r = await c.post(f"{P}/jobs/{first['id']}/complete", json={"success": True}, headers=H)
        assert (await r.json())["data"]["status"] == "completed"
        r = await c.post(f"{P}/jobs/{first['id']}/complete", json={}, headers=H)
        assert r.status == 409
        third = (await (await c.post(f"{P}/jobs", json={"model": "yolo-v8n"}, headers=H)).json())[
            "data"
        ]
        await wait_status(c, third["id"], "running")
        r = await c.post(
            f"{P}/jobs/{third['id']}/complete", json={"success": False, "error": "bad"}, headers=H
        )
        done = (await r.json())["data"]
        assert done["status"] == "failed" and "bad" in done["error"]
        (resident,) = [r for r in service.allocator.reservations() if r.model == "yolo-v8n"]
        assert resident.refs == 0
        r = await c.delete(f"{P}/reservations/{resident.id}", headers=H)
        assert r.status == 200  # idle: released and unloaded
        r = await c.post(f"{P}/jobs", json={"model": "nope"}, headers=H)
        assert r.status == 404
        listed = (await (await c.get(f"{P}/jobs", headers=H)).json())["data"]
        assert len(listed) == 3
        metrics = (await (await c.get(f"{P}/metrics", headers=H)).json())["data"]
        assert metrics["jobs"] == {"completed": 1, "cancelled": 1, "failed": 1}
        assert metrics["monitor"]["samples"] >= 1

    run_with_client(app, scenario)
    assert service.allocator.waiting() == 0


def test_health_reports_reasons_and_503_when_unhealthy() -> None:
    backend = SimulatedBackend(devices=2, memory_gib=24)
    app, service = make(backend=backend)

    async def scenario(c: TestClient) -> None:
        r = await c.get(f"{P}/health", headers=H)
        assert r.status == 200 and (await r.json())["data"]["status"] == "healthy"
        backend.apply([ScenarioStep(0, 1, "fall_off"), ScenarioStep(0, 0, "throttle", 92)])
        service.monitor.sample()
        r = await c.get(f"{P}/health", headers=H)
        body = await r.json()
        assert r.status == 503
        data = body["data"]
        assert data["status"] == "unhealthy"
        assert any("lost" in reason for reason in data["reasons"])
        assert {e["check"] for e in data["events"]} >= {"device_lost", "temperature"}

    run_with_client(app, scenario)


def test_service_starts_at_startup_from_settings() -> None:
    settings = Settings(
        api_token=TOKEN, sections={"gpu": {"backend": "simulated", "devices": 2, "memory_gib": 16}}
    )
    app = create_app(settings, routers=[system.router, gpu_api.router])
    assert gpu_api.SERVICE.key not in app  # built at start-up, not when the app is made

    async def scenario(c: TestClient) -> None:
        assert isinstance(app[gpu_api.SERVICE.key], VisionService)
        data = (await (await c.get(f"{P}/status", headers=H)).json())["data"]
        assert data["deviceCount"] == 2 and data["gpuMetrics"]["totalVRAM"] == 32.0

    run_with_client(app, scenario)
