"""HTTP routes of the vision resource manager under ``/api/v1/vision``.

The platform's routes keep their shapes (``GET /status``, ``GET /models``); the rest expose
what the manager now really does: devices and their readings, VRAM reservations (create,
renew, release), vision jobs run by external workers (submit, status, complete, cancel),
in-process metrics and health with reasons. Every route needs the API token when one is
configured. The service behind them (:class:`~workbench.gpu.service.VisionService`) is built
from the validated ``[gpu]`` settings at start-up (see :mod:`workbench.api.services`) and
stops with the app.

**Who may release a reservation.** A reservation belongs to the ``owner`` it was created
with. Releasing or renewing it needs the ``owner`` query parameter naming that owner, or the
admin token (``Authorization: Bearer <admin token>``); resident models (owner
``model:<name>``) are released only with the admin token. Anything else is 403 ``FORBIDDEN``.

**Bounds.** Every request field has a documented range (see the OpenAPI schemas), and what
a schema accepts is accepted (the fuzz contract): ids in paths are routed only as ASCII
digits (reservations, at most 18) or ``[A-Za-z0-9_-]`` (jobs, at most 64), anything else is
404; a lease longer than ``[gpu] max_lease_s`` is shortened to it (the answer's ``lease_s``
is the lease granted). A client that disconnects while its reservation waits is never
granted memory: ``workbench serve`` runs aiohttp without handler cancellation, so the
handler watches its connection while it waits.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from workbench.api.routing import ApiRequest, ApiRouter, Reply
from workbench.api.services import ServiceSpec
from workbench.api.wire import WireModel
from workbench.errors import NotFoundError
from workbench.gpu.allocator import PID_MAX
from workbench.gpu.service import MAX_LEASE_CEILING_S, VisionConfig, VisionService
from workbench.gpu.types import GIB

__all__ = ["MAX_RESERVATION_BYTES", "SERVICE", "router"]

#: Largest reservation a request may name, bytes (1 PiB: far above any device, within int64).
MAX_RESERVATION_BYTES = 2**50
_MAX_SIZE_GB = MAX_RESERVATION_BYTES / GIB
_NAME = 200  # longest owner or model name
_DEFAULT_LEASE_S = 300.0
_MAX_WAIT_S = 5.0
_MIN_LEASE_S = 1.0  # shorter would end before the client could use or renew it
# Path parameters routed only when they match (the OpenAPI document shows the patterns). A
# character class, not \d or str.isdigit: those also take other scripts' digits ("\u0663").
_RESERVATION = "{reservation_id:[0-9]{1,18}}"
_JOB = "{job_id:[A-Za-z0-9_-]{1,64}}"
_RESERVATION_ID = re.compile(r"[0-9]{1,18}", re.ASCII)
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


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


# "Exactly one of nbytes and sizeGB", said in the schema too, so clients and fuzzers know.
_ONE_SIZE: dict[str, Any] = {
    "oneOf": [
        {"required": ["nbytes"], "properties": {"nbytes": {"type": "integer"}}},
        {"required": ["sizeGB"], "properties": {"sizeGB": {"type": "number"}}},
    ]
}


class ReservationBody(_Model):
    """A VRAM reservation request. Give ``nbytes`` or ``sizeGB`` (GiB).

    ``pid`` ties the reservation to a process on the service's own host (it is released
    when that process exits); a client elsewhere relies on the lease (``leaseS``, renewed
    with ``POST .../renew``) instead. Every lease is finite and at most ``[gpu]
    max_lease_s``: without ``leaseS`` it is 300 s, ``leaseS: null`` means ``max_lease_s``.
    """

    model_config = ConfigDict(json_schema_extra=_ONE_SIZE)

    owner: str = Field(
        min_length=1,
        max_length=_NAME,
        description="Who holds the memory, 1-200 characters; only this owner (or the admin) "
        "may release or renew it.",
    )
    nbytes: int | None = Field(
        default=None,
        gt=0,
        le=MAX_RESERVATION_BYTES,
        description="Bytes to reserve, 1 to 2**50 (give this or sizeGB).",
    )
    size_gb: float | None = Field(
        default=None,
        ge=1 / GIB,
        le=_MAX_SIZE_GB,
        alias="sizeGB",
        description="GiB to reserve, 2**-30 (one byte) to 2**20 (give this or nbytes).",
    )
    priority: int = Field(
        default=0, ge=-1000, le=1000, description="-1000 to 1000; higher is granted first."
    )
    # At most 5 s: a held request ends well inside the read timeouts of clients and proxies
    # (and the fuzz contract's 10 s per response); a client that would wait longer retries
    # on the 409 and its Retry-After.
    timeout_s: float = Field(
        default=0.0,
        ge=0,
        le=_MAX_WAIT_S,
        description="Seconds to wait for memory, 0 to 5 (0: answer at once); when none comes "
        "free the answer is 409 with Retry-After.",
    )
    device: int | None = Field(
        default=None,
        ge=0,
        le=1023,
        description="Device index, 0 to 1023 (404 beyond the device count); null lets best "
        "fit choose.",
    )
    pid: int | None = Field(
        default=None,
        gt=0,
        le=PID_MAX,
        description=f"Owning process on the service's host, 1 to {PID_MAX}; it must be "
        "running (404 otherwise), and the reservation ends when it exits.",
    )
    lease_s: float | None = Field(
        default=_DEFAULT_LEASE_S,
        ge=_MIN_LEASE_S,
        le=MAX_LEASE_CEILING_S,
        description="Lease in seconds, 1 to 86400; longer than [gpu] max_lease_s (default "
        "3600) is shortened to it, and null means max_lease_s. The answer's lease_s is the "
        "lease granted.",
    )

    @model_validator(mode="after")
    def _one_size(self) -> ReservationBody:
        if (self.nbytes is None) == (self.size_gb is None):
            raise ValueError("give exactly one of nbytes and sizeGB")
        return self

    def size_bytes(self) -> int:
        if self.nbytes is not None:
            return self.nbytes
        return int((self.size_gb or 0) * GIB)


class RenewBody(_Model):
    lease_s: float | None = Field(
        default=None,
        ge=_MIN_LEASE_S,
        le=MAX_LEASE_CEILING_S,
        description="New lease from now, seconds, 1 to 86400 (shortened to [gpu] "
        "max_lease_s); null keeps the reservation's own lease length.",
    )


class OwnerQuery(_Model):
    # No length bounds to validate: an owner is 1-200 characters, so an empty or longer
    # value names no owner and is answered 403 like any other wrong owner.
    owner: str | None = Field(
        default=None,
        description="The reservation's owner as given at creation (1-200 characters); not "
        "needed with the admin token.",
    )


class JobBody(_Model):
    model: str = Field(
        min_length=1, max_length=_NAME, description="A model of GET /models, 1-200 characters."
    )
    priority: int = Field(
        default=5, ge=-1000, le=1000, description="-1000 to 1000; higher runs first."
    )
    max_run_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="Seconds the job may hold its slot, waiting for memory included; capped "
        "by [gpu] max_run_s (its default when null).",
    )


class CompleteBody(_Model):
    success: bool = Field(default=True, description="Whether the worker's work succeeded.")
    error: str | None = Field(
        default=None, max_length=2000, description="What went wrong, up to 2000 characters."
    )


def _reservation_id(req: ApiRequest) -> int:
    raw = req.path["reservation_id"]
    if not _RESERVATION_ID.fullmatch(raw):  # the route's pattern already refuses it
        raise NotFoundError(
            f"no reservation {raw[:40]!r}: ids are 1 to 18 ASCII digits",
            details={"field": "reservation_id"},
        )
    return int(raw)


def _job_id(req: ApiRequest) -> str:
    raw = req.path["job_id"]
    if not _JOB_ID.fullmatch(raw):  # the route's pattern already refuses it
        raise NotFoundError(
            f"no job {raw[:70]!r}: ids are 1 to 64 of A-Z, a-z, 0-9, '_' and '-'",
            details={"field": "job_id"},
        )
    return raw


def _owner(req: ApiRequest) -> str | None:
    owner = req.query.owner
    return owner if owner and len(owner) <= _NAME else None


def _is_admin(req: ApiRequest) -> bool:
    admin = req.settings.admin_token
    auth = req.request.headers.get("Authorization", "")
    if admin is None or not auth.startswith("Bearer "):
        return False
    return hmac.compare_digest(auth[7:].strip().encode(), admin.encode())


def _client_gone(req: ApiRequest) -> bool:
    transport = req.request.transport
    return transport is None or transport.is_closing()


_OWNER_RULE = (
    "Name yourself with the owner query parameter (the owner the reservation was created "
    "with), or send the admin token; resident models (owner model:<name>) need the admin "
    "token. Otherwise 403 FORBIDDEN. The id is 1 to 18 ASCII digits."
)
_BY_ID = {"path.reservation_id": "$response.body#/data/id"}
_AS_OWNER = {**_BY_ID, "query.owner": "$request.body#/owner"}
_JOB_BY_ID = {"path.job_id": "$response.body#/data/id"}


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
    description="A wait that runs out is 409 CAPACITY_EXCEEDED with Retry-After (memory was "
    "busy; retry), as is a request larger than any device's budget (it can never fit; no "
    "Retry-After). A client that disconnects while waiting is granted nothing.",
    responses={
        404: "the named device does not exist",
        409: "CAPACITY_EXCEEDED: larger than any budget (never fits), or no memory came free "
        "within timeoutS (see Retry-After)",
    },
    links={
        "GetReservation": {
            "operationId": "get_api_v1_vision_reservations_reservation_id",
            "parameters": _BY_ID,
        },
        "RenewReservation": {
            "operationId": "post_api_v1_vision_reservations_reservation_id_renew",
            "parameters": _AS_OWNER,
        },
        "ReleaseReservation": {
            "operationId": "delete_api_v1_vision_reservations_reservation_id",
            "parameters": _AS_OWNER,
        },
    },
)
async def create_reservation(req: ApiRequest) -> Any:
    body: ReservationBody = req.body
    service = _service(req)
    if body.device is not None and body.device >= service.allocator.device_count:
        raise NotFoundError(
            f"device={body.device} does not exist; there are "
            f"{service.allocator.device_count} device(s), numbered from 0",
            details={"field": "device"},
        )
    r = await service.reserve(
        body.owner,
        body.size_bytes(),
        priority=body.priority,
        timeout_s=body.timeout_s,
        device=body.device,
        pid=body.pid,
        lease_s=body.lease_s
        if "lease_s" in body.model_fields_set
        else min(_DEFAULT_LEASE_S, service.config.max_lease_s),
        size_field="nbytes" if body.nbytes is not None else "sizeGB",
        gone=lambda: _client_gone(req),
    )
    return Reply(r.to_dict(), status=201, meta={"message": "VRAM reserved"})


@router.get(
    f"/reservations/{_RESERVATION}",
    summary="One live reservation",
    description="The id is 1 to 18 ASCII digits.",
)
async def get_reservation(req: ApiRequest) -> Any:
    return _service(req).allocator.get(_reservation_id(req)).to_dict()


@router.post(
    f"/reservations/{_RESERVATION}/renew",
    body=RenewBody,
    query=OwnerQuery,
    summary="Extend a reservation's lease (its owner, or the admin)",
    description=_OWNER_RULE,
    responses={403: "FORBIDDEN: not the reservation's owner and no admin token"},
)
async def renew_reservation(req: ApiRequest) -> Any:
    r = _service(req).renew_reservation(
        _reservation_id(req), req.body.lease_s, owner=_owner(req), admin=_is_admin(req)
    )
    return r.to_dict()


@router.delete(
    f"/reservations/{_RESERVATION}",
    query=OwnerQuery,
    summary="Release a reservation (its owner, or the admin)",
    description=_OWNER_RULE,
    responses={
        403: "FORBIDDEN: not the reservation's owner and no admin token, or a resident model "
        "without the admin token",
        409: "a resident model in use by jobs",
    },
)
async def release_reservation(req: ApiRequest) -> Any:
    r = _service(req).release_reservation(
        _reservation_id(req), owner=_owner(req), admin=_is_admin(req)
    )
    return Reply(r.to_dict(), meta={"message": "VRAM released"})


@router.get("/jobs", summary="Known vision jobs")
async def list_jobs(req: ApiRequest) -> Any:
    service = _service(req)
    return [service.job_view(j) for j in service.scheduler.jobs()]


@router.post(
    "/jobs",
    body=JobBody,
    status=201,
    summary="Queue a vision job for a worker",
    description="At most [gpu] max_queued_jobs jobs (default 256) wait for a slot; beyond "
    "that the answer is 409 CAPACITY_EXCEEDED with Retry-After.",
    responses={
        404: "unknown model (the message lists the known ones)",
        409: "CAPACITY_EXCEEDED: the job queue is full (see Retry-After)",
    },
    links={
        "GetJob": {"operationId": "get_api_v1_vision_jobs_job_id", "parameters": _JOB_BY_ID},
        "CompleteJob": {
            "operationId": "post_api_v1_vision_jobs_job_id_complete",
            "parameters": _JOB_BY_ID,
        },
        "CancelJob": {
            "operationId": "delete_api_v1_vision_jobs_job_id",
            "parameters": _JOB_BY_ID,
        },
    },
)
async def submit_job(req: ApiRequest) -> Any:
    service = _service(req)
    body: JobBody = req.body
    job = service.submit_external(body.model, body.priority, body.max_run_s)
    return Reply(service.job_view(job), status=201, meta={"message": "job queued"})


@router.get(
    f"/jobs/{_JOB}",
    summary="A job's status (running = slot and model are held)",
    description="starting: the job holds a slot and waits for its model's memory.",
)
async def job_status(req: ApiRequest) -> Any:
    service = _service(req)
    return service.job_view(service.scheduler.job(_job_id(req)))


@router.post(
    f"/jobs/{_JOB}/complete",
    body=CompleteBody,
    summary="Report a job's end",
    responses={409: "the job is not running (a queued or starting job is cancelled instead)"},
)
async def complete_job(req: ApiRequest) -> Any:
    service = _service(req)
    job = service.complete_external(_job_id(req), req.body.success, req.body.error)
    # The job's own outcome (completed or failed) is in its status.
    await asyncio.wait({asyncio.wrap_future(job.future)}, timeout=5)
    return service.job_view(job)


@router.delete(
    f"/jobs/{_JOB}",
    summary="Cancel a queued or starting job",
    description="A starting job (waiting for its model's memory) gives back its slot and "
    "anything it was granted. A running job ends with POST .../complete instead (409).",
    responses={409: "the job is running or finished"},
)
async def cancel_job(req: ApiRequest) -> Any:
    service = _service(req)
    job = service.cancel_job(_job_id(req))
    # A starting job ends as soon as its wait is woken; its future may end cancelled, which
    # asyncio.wait (unlike awaiting it) does not raise.
    await asyncio.wait({asyncio.wrap_future(job.future)}, timeout=2)
    return service.job_view(job)


@router.get("/metrics", summary="In-process counters of the allocator, scheduler and monitor")
async def vision_metrics(req: ApiRequest) -> Any:
    return _service(req).metrics()


@router.get("/health", summary="GPU health with reasons (503 when unhealthy)", public=True)
async def vision_health(req: ApiRequest) -> Any:
    status = _service(req).health_status()
    return Reply(status, status=503 if status["status"] == "unhealthy" else 200)
