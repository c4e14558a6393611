"""HTTP routes of the vision resource manager (/api/v1/vision)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.api.conftest import bearer, run_with_client
from workbench.api import gpu as gpu_api
from workbench.api import system
from workbench.api.app import ROUTER_MODULES, create_app
from workbench.config import Settings
from workbench.gpu import ScenarioStep, SimulatedBackend
from workbench.gpu.service import VisionConfig, VisionService
from workbench.testing import free_port

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


ADMIN = "admin-token-456"
A = bearer(ADMIN)


def make_admin(**config: Any) -> tuple[Any, VisionService]:
    settings = Settings(api_token=TOKEN, admin_token=ADMIN)
    cfg = VisionConfig(backend="simulated", monitor_hz=20, janitor_interval_s=0.05, **config)
    service = VisionService(cfg, backend=SimulatedBackend(devices=1, memory_gib=24))
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
        url = f"{P}/reservations/{res['id']}"
        r = await c.post(f"{url}/renew?owner=w1", json={"leaseS": 60}, headers=H)
        assert r.status == 200
        r = await c.delete(f"{url}?owner=w1", headers=H)
        assert r.status == 200 and service.allocator.reserved(0) == 0
        r = await c.delete(f"{url}?owner=w1", headers=H)
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
        assert r.status == 404 and _fields(await _error(r)) == {"device"}
        r = await c.post(f"{P}/reservations", json={"owner": "a", "sizeGB": 15}, headers=H)
        assert r.status == 201
        r = await c.post(
            f"{P}/reservations", json={"owner": "b", "sizeGB": 10, "timeoutS": 0.05}, headers=H
        )
        assert r.status == 409  # memory was busy; the server did not fail
        assert (await r.json())["error"]["code"] == "CAPACITY_EXCEEDED"
        r = await c.get(f"{P}/reservations/abc", headers=H)
        assert r.status == 404

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
        await c.delete(f"{P}/reservations/{first['data']['id']}?owner=a", headers=H)
        r = await waiting
        assert r.status == 201

    run_with_client(app, scenario)


def test_expired_leases_are_cleaned_up() -> None:
    app, service = make()

    async def scenario(c: TestClient) -> None:
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "leaseS": 1}, headers=H
        )
        assert r.status == 201
        for _ in range(200):
            if service.allocator.reserved(0) == 0:
                break
            await asyncio.sleep(0.02)
        assert service.allocator.reserved(0) == 0

    run_with_client(app, scenario)


def test_external_job_lifecycle() -> None:
    app, service = make_admin()

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
        r = await c.delete(f"{P}/reservations/{sd3b.id}", headers=A)
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
        r = await c.delete(f"{P}/reservations/{resident.id}", headers=A)
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


async def _error(r: Any) -> dict[str, Any]:
    body = await r.json()
    return dict(body["error"])


def _fields(error: dict[str, Any]) -> set[str]:
    details = error.get("details")
    if isinstance(details, dict):
        return {str(details.get("field"))}
    return {str(d.get("field")) for d in details or []}


def test_pid_is_bounded_at_the_boundary() -> None:
    app, service = make()

    async def scenario(c: TestClient) -> None:
        for pid in (99999999999999999999, 2**31, 0):
            r = await c.post(
                f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "pid": pid}, headers=H
            )
            assert r.status == 400, pid
            assert _fields(await _error(r)) == {"pid"}
        assert service.allocator.reservations() == []
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "pid": gone.pid}, headers=H
        )
        assert r.status == 404 and _fields(await _error(r)) == {"pid"}
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "pid": os.getpid()}, headers=H
        )
        assert r.status == 201 and (await r.json())["data"]["pid"] == os.getpid()

    run_with_client(app, scenario)


def test_sizes_beyond_any_device_are_clean_4xx_naming_the_field() -> None:
    app, service = make()

    async def scenario(c: TestClient) -> None:
        for body, field in (
            ({"sizeGB": 1e308}, "sizeGB"),
            ({"sizeGB": 1e-300}, "sizeGB"),
            ({"sizeGB": 0.5 / GIB}, "sizeGB"),
            ({"nbytes": 2**63}, "nbytes"),
            ({"nbytes": 10**30}, "nbytes"),
        ):
            r = await c.post(f"{P}/reservations", json={"owner": "w", **body}, headers=H)
            assert r.status == 400, body
            assert _fields(await _error(r)) == {field}
        for body, field in (({"sizeGB": 1000}, "sizeGB"), ({"nbytes": 2**40}, "nbytes")):
            r = await c.post(f"{P}/reservations", json={"owner": "w", **body}, headers=H)
            assert r.status == 409, body
            error = await _error(r)
            assert error["code"] == "CAPACITY_EXCEEDED" and _fields(error) == {field}
        assert service.allocator.reservations() == []

    run_with_client(app, scenario)


def test_ids_are_ascii_digits_only() -> None:
    app, service = make_admin()

    async def scenario(c: TestClient) -> None:
        ids = []
        for i in range(3):
            r = await c.post(f"{P}/reservations", json={"owner": f"w{i}", "sizeGB": 1}, headers=H)
            ids.append((await r.json())["data"]["id"])
        assert 3 in ids
        # Arabic-Indic three, superscript two, fullwidth three, too long, signed, padded.
        for raw in ("\u0663", "\u00b2", "\uff13", "1" * 19, "-3", "3 "):
            for method, path in (
                ("GET", f"{P}/reservations/{raw}"),
                ("DELETE", f"{P}/reservations/{raw}?owner=w2"),
                ("POST", f"{P}/reservations/{raw}/renew?owner=w2"),
            ):
                r = await c.request(method, path, json={}, headers=A)
                assert r.status == 404, (method, raw, r.status)
        assert len(service.allocator.reservations()) == 3  # id 3 is still there
        r = await c.get(f"{P}/reservations/{'9' * 18}", headers=H)
        assert r.status == 404 and "no live reservation" in (await _error(r))["message"]
        for raw in ("x" * 65, "vision_job_\u0663", "a.b"):
            r = await c.get(f"{P}/jobs/{raw}", headers=H)
            assert r.status == 404
        doc = await (await c.get("/openapi.json", headers=H)).json()
        patterns = {
            p["name"]: p["schema"]["pattern"]
            for path, ops in doc["paths"].items()
            if path.startswith(P)
            for op in ops.values()
            for p in op.get("parameters", [])
            if p["in"] == "path"
        }
        assert patterns == {
            "reservation_id": "^(?:[0-9]{1,18})$",
            "job_id": "^(?:[A-Za-z0-9_-]{1,64})$",
        }

    run_with_client(app, scenario)


def test_a_wait_that_runs_out_is_409_with_retry_after() -> None:
    app, _ = make()

    async def scenario(c: TestClient) -> None:
        r = await c.post(f"{P}/reservations", json={"owner": "a", "sizeGB": 15}, headers=H)
        assert r.status == 201
        r = await c.post(
            f"{P}/reservations", json={"owner": "b", "sizeGB": 10, "timeoutS": 0.05}, headers=H
        )
        error = await _error(r)
        assert r.status == 409 and error["code"] == "CAPACITY_EXCEEDED"
        assert int(r.headers["Retry-After"]) >= 1 and "within" in error["message"]
        r = await c.post(f"{P}/reservations", json={"owner": "b", "sizeGB": 21}, headers=H)
        never = await _error(r)
        assert r.status == 409 and "never" in never["message"] and "Retry-After" not in r.headers
        spec = (await (await c.get("/openapi.json", headers=H)).json())["paths"][
            f"{P}/reservations"
        ]["post"]
        assert "409" in spec["responses"] and "504" not in spec["responses"]

    run_with_client(app, scenario)


def test_a_waiter_whose_client_went_away_is_never_granted() -> None:
    # Served as `workbench serve` serves it: web.run_app leaves handler cancellation off
    # (the test client's server turns it on), so a gone client does not cancel the handler.
    app, service = make()

    async def main() -> None:
        runner = web.AppRunner(app, handler_cancellation=False, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await scenario(port)
        finally:
            await runner.cleanup()

    async def request(port: int, body: dict[str, Any]) -> asyncio.StreamWriter:
        raw = json.dumps(body)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"POST {P}/reservations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(raw)}\r\n\r\n{raw}"
            ).encode()
        )
        await writer.drain()
        return writer

    async def until(pred: Any, what: str) -> None:
        for _ in range(300):
            if pred():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(what)

    async def scenario(port: int) -> None:
        holder = service.allocator.acquire("a", 15 * GIB)
        writer = await request(port, {"owner": "ghost", "sizeGB": 10, "timeoutS": 5})
        await until(lambda: service.allocator.waiting() == 1, "the request never waited")
        writer.close()
        await writer.wait_closed()
        await until(lambda: service.allocator.waiting() == 0, "the wait outlived its client")
        holder.release()
        await asyncio.sleep(0.1)
        assert service.allocator.reservations() == []

    asyncio.run(main())


def test_leases_are_finite_and_bounded_by_max_lease_s() -> None:
    app, service = make(max_lease_s=600)

    async def scenario(c: TestClient) -> None:
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "leaseS": None}, headers=H
        )
        assert r.status == 201
        res = (await r.json())["data"]
        assert res["lease_s"] == 600
        assert res["lease_expires_at"] == pytest.approx(res["created_at"] + 600)
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "leaseS": 86_400}, headers=H
        )
        assert r.status == 201 and (await r.json())["data"]["lease_s"] == 600
        r = await c.post(f"{P}/reservations", json={"owner": "w", "sizeGB": 1}, headers=H)
        assert (await r.json())["data"]["lease_s"] == 300  # the default, within the maximum
        r = await c.post(
            f"{P}/reservations/{res['id']}/renew?owner=w", json={"leaseS": 86_400}, headers=H
        )
        assert r.status == 200 and (await r.json())["data"]["lease_s"] == 600
        r = await c.post(
            f"{P}/reservations", json={"owner": "w", "sizeGB": 1, "leaseS": 86_401}, headers=H
        )
        assert r.status == 400 and _fields(await _error(r)) == {"leaseS"}
        assert all(r.lease_expires_at is not None for r in service.allocator.reservations())

    run_with_client(app, scenario)


def test_only_the_owner_or_an_admin_releases_or_renews() -> None:
    app, service = make_admin()

    async def scenario(c: TestClient) -> None:
        r = await c.post(f"{P}/reservations", json={"owner": "alice", "sizeGB": 1}, headers=H)
        rid = (await r.json())["data"]["id"]
        for suffix in ("", "?owner=bob", "?owner=", f"?owner=alice{'x' * 300}"):
            r = await c.delete(f"{P}/reservations/{rid}{suffix}", headers=H)
            assert r.status == 403 and (await _error(r))["code"] == "FORBIDDEN"
            r = await c.post(f"{P}/reservations/{rid}/renew{suffix}", json={}, headers=H)
            assert r.status == 403
        r = await c.post(f"{P}/reservations/{rid}/renew?owner=alice", json={}, headers=H)
        assert r.status == 200
        r = await c.post(f"{P}/reservations/{rid}/renew", json={}, headers=A)
        assert r.status == 200
        r = await c.delete(f"{P}/reservations/{rid}?owner=alice", headers=H)
        assert r.status == 200
        r = await c.post(f"{P}/reservations", json={"owner": "carol", "sizeGB": 1}, headers=H)
        rid = (await r.json())["data"]["id"]
        r = await c.delete(f"{P}/reservations/{rid}", headers=A)
        assert r.status == 200
        job = (await (await c.post(f"{P}/jobs", json={"model": "yolo-v8n"}, headers=H)).json())[
            "data"
        ]
        for _ in range(200):
            if service.job_status(service.scheduler.job(job["id"])) == "running":
                break
            await asyncio.sleep(0.01)
        await c.post(f"{P}/jobs/{job['id']}/complete", json={}, headers=H)
        (model,) = service.allocator.resident_models()
        r = await c.delete(f"{P}/reservations/{model.id}?owner={model.owner}", headers=H)
        assert r.status == 403
        r = await c.delete(f"{P}/reservations/{model.id}", headers=A)
        assert r.status == 200 and service.allocator.resident_models() == []
        spec = (await (await c.get("/openapi.json", headers=H)).json())["paths"]
        delete = spec[f"{P}/reservations/{{reservation_id}}"]["delete"]
        assert "owner" in delete["description"] and "403" in delete["responses"]

    run_with_client(app, scenario)


def test_the_job_queue_and_model_names_are_bounded() -> None:
    app, service = make(max_queued_jobs=2)

    async def scenario(c: TestClient) -> None:
        first = (await (await c.post(f"{P}/jobs", json={"model": "sd3b"}, headers=H)).json())[
            "data"
        ]
        for _ in range(200):
            if service.job_status(service.scheduler.job(first["id"])) == "running":
                break
            await asyncio.sleep(0.01)
        for _ in range(2):
            assert (await c.post(f"{P}/jobs", json={"model": "sd3b"}, headers=H)).status == 201
        r = await c.post(f"{P}/jobs", json={"model": "sd3b"}, headers=H)
        assert r.status == 409 and (await _error(r))["code"] == "CAPACITY_EXCEEDED"
        assert "Retry-After" in r.headers
        r = await c.post(f"{P}/jobs", json={"model": "m" * 201}, headers=H)
        assert r.status == 400 and _fields(await _error(r)) == {"model"}
        r = await c.post(f"{P}/jobs", json={"model": "nope"}, headers=H)
        assert r.status == 404

    run_with_client(app, scenario)


def test_delete_cancels_a_starting_job() -> None:
    app, service = make()

    async def scenario(c: TestClient) -> None:
        r = await c.post(f"{P}/reservations", json={"owner": "t", "sizeGB": 20}, headers=H)
        assert r.status == 201
        job = (await (await c.post(f"{P}/jobs", json={"model": "sd3b"}, headers=H)).json())["data"]
        for _ in range(200):
            view = (await (await c.get(f"{P}/jobs/{job['id']}", headers=H)).json())["data"]
            if view["status"] == "starting":
                break
            await asyncio.sleep(0.01)
        assert view["status"] == "starting"
        r = await c.delete(f"{P}/jobs/{job['id']}", headers=H)
        assert r.status == 200
        for _ in range(200):
            view = (await (await c.get(f"{P}/jobs/{job['id']}", headers=H)).json())["data"]
            if view["status"] == "cancelled":
                break
            await asyncio.sleep(0.01)
        assert view["status"] == "cancelled"
        assert service.allocator.waiting() == 0 and service.scheduler.running() == 0

    run_with_client(app, scenario)


def test_every_vision_request_field_has_documented_bounds() -> None:
    app, _ = make()

    async def scenario(c: TestClient) -> None:
        doc = await (await c.get("/openapi.json", headers=H)).json()
        schemas = doc["components"]["schemas"]
        seen = 0
        for path, ops in doc["paths"].items():
            if not path.startswith(P):
                continue
            for op in ops.values():
                ref = (
                    op.get("requestBody", {})
                    .get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                    .get("$ref")
                )
                if ref is None:
                    continue
                schema = schemas[ref.rsplit("/", 1)[1]]
                for name, prop in schema["properties"].items():
                    seen += 1
                    assert prop.get("description"), (ref, name)
                    kinds = [prop, *prop.get("anyOf", [])]
                    for kind in kinds:
                        if kind.get("type") == "string":
                            assert "maxLength" in kind, (ref, name)
                        if kind.get("type") in ("integer", "number"):
                            assert "maximum" in kind or "exclusiveMaximum" in kind, (ref, name)
                            assert "minimum" in kind or "exclusiveMinimum" in kind, (ref, name)
        assert seen >= 12
        # Query parameters are strings in the document: their description gives the bound.
        queries = [
            p
            for path, ops in doc["paths"].items()
            if path.startswith(P)
            for op in ops.values()
            for p in op.get("parameters", [])
            if p["in"] == "query"
        ]
        assert queries
        for p in queries:
            assert "1-200 characters" in p.get("description", ""), p

    run_with_client(app, scenario)
