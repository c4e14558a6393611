"""HTTP routes of the vision resource manager under ``/api/v1/vision``.

The platform's routes keep their shapes (``GET /status``, ``GET /models``); the rest expose
what the manager now really does: devices and their readings, VRAM reservations (create,
renew, release), vision jobs run by external workers (submit, status, complete, cancel),
in-process metrics and health with reasons. Every route needs the API token when one is
configured. The service behind them (:class:`~workbench.gpu.service.VisionService`) is built
from the validated ``[gpu]`` settings at start-up (see :mod:`workbench.api.services`) and
stops with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.errors import InputError
from workbench.gpu.service import VisionConfig, VisionService

__all__ = ["SERVICE", "router"]


def _build(config: VisionConfig, settings: Any) -> VisionService:
    return VisionService(config).start()


#: The vision service: built at start-up in the worker that owns it, closed with the app.
SERVICE: ServiceSpec[VisionConfig, VisionService] = ServiceSpec(
    "vision", config=VisionConfig.from_settings, build=_build, close=VisionService.close
)

router = ApiRouter("/api/v1/vision", tag="vision", service=SERVICE)


def _service(req: ApiRequest) -> VisionService:
    return SERVICE.of(req)


class _Model(WireModel):
    model_config = ConfigDict(extra="forbid")


class ReservationBody(_Model):
    """A VRAM reservation request. Give ``nbytes`` or ``sizeGB`` (GiB).

    ``pid`` ties the reservation to a process on the service's own host (it is released
    when that process exits); a client elsewhere relies on the lease (``leaseS``, renewed
    with ``POST .../renew``) instead.
    """

    owner: str = Field(min_length=1, max_length=200)
    nbytes: int | None = Field(default=None, gt=0)
    size_gb: float | None = Field(default=None, gt=0, alias="sizeGB")
    priority: int = Field(default=0, ge=-1000, le=1000)
    timeout_s: float = Field(default=0.0, ge=0, le=60)
    device: int | None = Field(default=None, ge=0)
    pid: int | None = Field(default=None, gt=0)
    lease_s: float | None = Field(default=300.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_size(self) -> ReservationBody:
        if (self.nbytes is None) == (self.size_gb is None):
            raise ValueError("give exactly one of nbytes and sizeGB")
        return self

    def size_bytes(self) -> int:
        if self.nbytes is not None:
            return self.nbytes
        return int((self.size_gb or 0) * 1024**3)


class RenewBody(_Model):
    lease_s: float | None = Field(default=None, gt=0, le=86_400)


class JobBody(_Model):
    model: str = Field(min_length=1)
    priority: int = Field(default=5, ge=-1000, le=1000)
    max_run_s: float | None = Field(default=None, gt=0)


class CompleteBody(_Model):
    success: bool = True
    error: str | None = Field(default=None, max_length=2000)


def _reservation_id(req: ApiRequest) -> int:
    raw = req.path["reservation_id"]
    if not raw.isdigit():
        raise InputError(f"reservation id {raw!r} must be an integer", details={"field": "id"})
    return int(raw)


@router.get("/status", summary="GPU metrics, loaded models and queue (platform shape)")
async def status(req: ApiRequest) -> Any:
    return _service(req).status()


@router.get("/models", summary="The vision model table with residency (platform shape)")
async def models(req: ApiRequest) -> Any:
    return _service(req).models()


@router.get("/devices", summary="Devices, their latest readings and VRAM ledgers")
async def devices(req: ApiRequest) -> Any:
    return _service(req).devices()


@router.get("/reservations", summary="Live VRAM reservations")
async def list_reservations(req: ApiRequest) -> Any:
    return [r.to_dict() for r in _service(req).allocator.reservations()]


@router.post(
    "/reservations",
    body=ReservationBody,
    status=201,
    summary="Reserve VRAM (waits up to timeoutS; leased for leaseS unless renewed)",
    responses={409: "larger than any budget", 504: "no memory within timeoutS"},
)
async def create_reservation(req: ApiRequest) -> Any:
    body: ReservationBody = req.body
    alloc = _service(req).allocator
    if body.device is not None and body.device >= alloc.device_count:
        raise InputError(
            f"device={body.device} is out of range; there are {alloc.device_count} device(s)",
            details={"field": "device"},
        )
    request = alloc.reserve(
        body.owner,
        body.size_bytes(),
        body.priority,
        body.timeout_s,
        device=body.device,
        pid=body.pid,
        lease_s=body.lease_s,
    )
    r = await request.acquire_async()
    return Reply(r.to_dict(), status=201, meta={"message": "VRAM reserved"})


@router.get("/reservations/{reservation_id}", summary="One live reservation")
async def get_reservation(req: ApiRequest) -> Any:
    return _service(req).allocator.get(_reservation_id(req)).to_dict()


@router.post(
    "/reservations/{reservation_id}/renew", body=RenewBody, summary="Extend a reservation's lease"
)
async def renew_reservation(req: ApiRequest) -> Any:
    r = _service(req).allocator.get(_reservation_id(req))
    r.renew(req.body.lease_s)
    return r.to_dict()


@router.delete("/reservations/{reservation_id}", summary="Release a reservation")
async def release_reservation(req: ApiRequest) -> Any:
    r = _service(req).allocator.release(_reservation_id(req))
    return Reply(r.to_dict(), meta={"message": "VRAM released"})


@router.get("/jobs", summary="Known vision jobs")
async def list_jobs(req: ApiRequest) -> Any:
    service = _service(req)
    return [service.job_view(j) for j in service.scheduler.jobs()]


@router.post("/jobs", body=JobBody, status=201, summary="Queue a vision job for a worker")
async def submit_job(req: ApiRequest) -> Any:
    service = _service(req)
    body: JobBody = req.body
    job = service.submit_external(body.model, body.priority, body.max_run_s)
    return Reply(service.job_view(job), status=201, meta={"message": "job queued"})


@router.get("/jobs/{job_id}", summary="A job's status (running = slot and model are held)")
async def job_status(req: ApiRequest) -> Any:
    service = _service(req)
    return service.job_view(service.scheduler.job(req.path["job_id"]))


@router.post("/jobs/{job_id}/complete", body=CompleteBody, summary="Report a job's end")
async def complete_job(req: ApiRequest) -> Any:
    service = _service(req)
    job = service.complete_external(req.path["job_id"], req.body.success, req.body.error)
    # The job's own outcome (completed or failed) is in its status.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.wrap_future(job.future), 5)
    return service.job_view(job)


@router.delete("/jobs/{job_id}", summary="Cancel a queued job")
async def cancel_job(req: ApiRequest) -> Any:
    service = _service(req)
    return service.job_view(service.cancel_queued(req.path["job_id"]))


@router.get("/metrics", summary="In-process counters of the allocator, scheduler and monitor")
async def vision_metrics(req: ApiRequest) -> Any:
    return _service(req).metrics()


@router.get("/health", summary="GPU health with reasons (503 when unhealthy)", public=True)
async def vision_health(req: ApiRequest) -> Any:
    status = _service(req).health_status()
    return Reply(status, status=503 if status["status"] == "unhealthy" else 200)
